"""A console a person reads: progress bars, the quiet runner (everything in
the log file), narrow filters for known third-party warnings."""
import io
import logging
import os.path as osp
import warnings

import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from torch import nn

from mmgc.engine import ProgressRunner
from mmgc.engine.progress_runner import summary_metrics
from mmgc.utils import ProgressBar, build_runner, filter_third_party_warnings


class FakeClock:
    """``time.perf_counter`` stand-in: seconds advance only on request."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr('mmgc.utils.progress.time.perf_counter', fake)
    return fake


def test_progress_bar_text_rate_eta_and_status(clock):
    out = io.StringIO()
    bar = ProgressBar(10, 'train', 'it', file=out, bar_width=10)
    clock.now += 4
    bar.update(2, status='loss 1.250')
    # 2 of 10 in 4 s: 2 s per step, 8 left
    assert bar.text() == ('train     [>>        ] 2/10, 2.0 s/it, '
                          'elapsed 4s, ETA 16s, loss 1.250')
    clock.now += 4
    bar.update(8)
    assert bar.text() == ('train     [>>>>>>>>>>] 10/10, 1.2 it/s, '
                          'elapsed 8s, loss 1.250')
    bar.finish()
    bar.finish()  # once only
    # the last drawing, blanking what the longer one before left
    assert out.getvalue().split('\r')[-1] == bar.text() + ' ' * 8 + '\n'
    assert out.getvalue().count('\n') == 1


def test_progress_bar_resumed_counts_only_this_runs_steps(clock):
    bar = ProgressBar(
        100, 'train', start_at=60, file=io.StringIO(), bar_width=10)
    clock.now += 10
    bar.update(20)
    # 20 steps in 10 s this run; 20 left
    assert bar.text() == ('train     [>>>>>>>>  ] 80/100, 2.0 it/s, '
                          'elapsed 10s, ETA 10s')


def test_progress_bar_off_a_terminal_redraws_at_tenths(clock):
    out = io.StringIO()  # not a tty
    bar = ProgressBar(100, 'draw', 'img', file=out)
    for _ in range(100):
        clock.now += 0.01
        bar.update()
    bar.finish()
    # the start, then at 10%, 20%, ... 100%; finishing adds the newline
    assert out.getvalue().count('\r') == 1 + 10
    assert out.getvalue().count('\n') == 1


def test_summary_metrics_prefers_the_map_keys():
    assert summary_metrics({'coco/bbox_mAP': 0.5694, 'coco/bbox_mAP_50': 0.7,
                            'coco/segm_mAP': 0.6411}) == \
        'bbox_mAP 0.569, segm_mAP 0.641'
    assert summary_metrics({'acc': 0.25}) == 'acc 0.250'


# --------------------------------------------------- ProgressRunner --


class ToyModel(BaseModel):

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        if mode == 'loss':
            return {'loss': ((out.squeeze(1) - torch.stack(labels))**2).mean()}
        return [dict(pred=o) for o in out]


class PrintingMetric(BaseMetric):
    """Prints as pycocotools does while it computes."""

    def process(self, data_batch, data_samples) -> None:
        self.results.extend(float(s['pred']) for s in data_samples)

    def compute_metrics(self, results) -> dict:
        print('Accumulating evaluation results... DONE (t=0.01s).')
        return {'toy/mAP': 0.5}


def toy_runner(work_dir: str) -> ProgressRunner:
    """A 6-iteration toy training with validation at its end."""
    data = [
        dict(
            inputs=torch.tensor([float(i), 1.]), labels=torch.tensor(float(i)))
        for i in range(8)
    ]
    loader = dict(
        dataset=data,
        sampler=dict(type='DefaultSampler', shuffle=False),
        batch_size=2,
        collate_fn=dict(type='pseudo_collate'))
    return ProgressRunner(
        model=ToyModel(),
        work_dir=work_dir,
        train_dataloader=loader,
        val_dataloader=loader,
        test_dataloader=loader,
        val_evaluator=[PrintingMetric()],
        test_evaluator=[PrintingMetric()],
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=6, val_interval=6),
        val_cfg=dict(),
        test_cfg=dict(),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1)),
        log_processor=dict(by_epoch=False),
        default_scope='mmdet',  # the tests' scope, left as it is
        experiment_name=f'toy_{osp.basename(work_dir)}')


def test_progress_runner_console_shows_bars_and_the_log_has_everything(
        tmp_path, capsys):
    runner = toy_runner(str(tmp_path))
    runner.train()
    runner.test()
    console = capsys.readouterr().out
    # the toy run's own warnings (no data set metainfo...) on lines of
    # their own; mmengine's notices about its deprecated FileClient not
    assert 'FileClient' not in console
    lines = [
        line for line in console.split('\n')
        if ' - mmengine - WARNING - ' not in line
    ]
    log_file = osp.join(runner.log_dir, f'{runner.timestamp}.log')
    # train bar (continued on a new line after a warning), val bar (at the
    # end of training), the log path; then the evaluate bar and the log
    # path again
    firsts = [line.rsplit('\r', 1)[-1].split()[0] for line in lines if line]
    assert [w for i, w in enumerate(firsts) if firsts[i - 1:i] != [w]
            ] == ['train', 'val', 'full', 'evaluate', 'full']
    bars = {
        line.rsplit('\r', 1)[-1].split()[0]: line.rsplit('\r', 1)[-1]
        for line in lines if line
    }
    assert '6/6' in bars['train'] and 'loss ' in bars['train']
    assert ' 4/4, ' in bars['val'] and bars['val'].endswith(', mAP 0.500')
    assert bars['evaluate'].endswith('mAP 0.500')
    assert f'full log: {log_file}' in lines
    assert 'Iter(train)' not in console and 'Accumulating' not in console
    with open(log_file) as f:
        log = f.read()
    assert 'Iter(train) [6/6]' in log  # mmengine's log lines
    assert 'System environment' in log
    assert log.count('Accumulating evaluation results') == 2  # val, test
    assert '"FileClient" will be deprecated' in log


def test_progress_runner_still_shows_warnings(tmp_path, capsys):
    runner = toy_runner(str(tmp_path))
    runner.logger.info('an info line')
    runner.logger.warning('a warning line')
    console = capsys.readouterr().out
    assert 'a warning line' in console and 'an info line' not in console
    assert [
        h.level for h in runner.logger.handlers
        if type(h) is logging.StreamHandler
    ] == [logging.WARNING]


def test_build_runner_refuses_progress_with_another_runner_type():
    from mmengine.config import Config
    with pytest.raises(
            ValueError,
            match=r"--progress replaces the runner, "
            r"but the config sets runner_type='MyRunner'"):
        build_runner(Config(dict(runner_type='MyRunner')), progress=True)


# ---------------------------------------------------------- warnings --


def emit(message: str, module: str) -> None:
    warnings.warn_explicit(
        message, UserWarning, f'/x/{module}.py', 1, module=module)


def test_known_warnings_are_filtered_by_message_and_module():
    message = ('pkg_resources is deprecated as an API. See '
               'https://setuptools.pypa.io/en/latest/pkg_resources.html.')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        filter_third_party_warnings()
        emit(message, 'mmengine.utils.package_utils')  # filtered
        emit(message, 'pkg_resources')  # filtered
        emit(message, 'importlib')  # filtered (importlib.reload)
        emit(message, 'my_project.tools')  # another module: shown
        emit('pkg_resources is great', 'mmengine.utils')  # other text: shown
        warnings.warn('anything else', UserWarning)  # shown
    assert [str(w.message) for w in caught
            ] == [message, 'pkg_resources is great', 'anything else']


def test_known_log_messages_are_dropped_by_logger_and_text():
    from mmgc.utils import KnownLogMessageFilter

    def record(name: str, message: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.WARNING, __file__, 1, message,
                                 None, None)

    restart = ('Reach the end of the dataloader, it will be restarted and '
               'continue to iterate.')
    keep = KnownLogMessageFilter().filter
    assert not keep(record('mmengine', restart))
    assert not keep(record('gc_r50_mask_synthetic_20261203_191500', restart))
    assert keep(record('my_project', restart))  # another logger: shown
    assert keep(record('mmengine', 'Reach the end of the road'))  # other text
    assert not keep(
        record(
            'mmengine', '"FileClient" will be deprecated in '
            'future. Please use io functions'))
