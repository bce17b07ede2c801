"""Reliability of training: exact resume, atomic checkpoints, NaN guard and
rank consistency (mmgc/engine).

Unit tests of each piece, then real ``tools/train.py`` processes on the
``tiny_coco`` set (12 train images, batch 2: 6 batches a loader epoch) that
are killed, resumed, fed a NaN loss, or run on 2 gloo ranks.
"""
import json
import os
import os.path as osp
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import DEMO_CONFIG, ROOT, data_cfg_options, fault_tool_env
from mmengine.config import Config
from mmengine.fileio import get_file_backend

from mmgc.engine import (AtomicLocalBackend, RankConsistencyHook,
                         SkipNonFiniteOptimWrapper, SkippableBatchSampler,
                         atomic_write, capture_rng_state, combined_digest,
                         enable_reliability, first_difference,
                         first_nonfinite_key, nonfinite_terms,
                         preserved_rng_state, restore_rng_state, state_digests)

MAX_ITERS = 8  # crosses the loader epoch boundary after iteration 6

# ---------------------------------------------------------------- units


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / 'ckpt.pth'
    atomic_write(target, b'old')
    assert target.read_bytes() == b'old'
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())

    def die(*args, **kwargs):
        raise KeyboardInterrupt('killed between write and rename')

    monkeypatch.setattr(os, 'replace', die)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, b'new' * 1000)
    assert target.read_bytes() == b'old'
    assert sorted(os.listdir(tmp_path)) == ['ckpt.pth']  # temp removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_local_backend_is_selected_by_backend_args(tmp_path):
    path = str(tmp_path / 'sub' / 'last_checkpoint')
    backend = get_file_backend(path, backend_args=dict(backend='atomic_local'))
    assert isinstance(backend, AtomicLocalBackend)
    backend.put_text('iter_3.pth', path)
    backend.put(b'\x00\x01', path + '.bin')
    assert open(path).read() == 'iter_3.pth'
    assert open(path + '.bin', 'rb').read() == b'\x00\x01'


def test_rng_state_round_trip_through_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # a cached gaussian is part of numpy's state
    state = capture_rng_state()
    torch.save(dict(rng=state), tmp_path / 's.pth')
    expected = (random.random(), np.random.randn(3), torch.rand(3))
    loaded = torch.load(tmp_path / 's.pth', weights_only=True)['rng']
    restore_rng_state(loaded)
    again = (random.random(), np.random.randn(3), torch.rand(3))
    assert again[0] == expected[0]
    np.testing.assert_array_equal(again[1], expected[1])
    assert torch.equal(again[2], expected[2])

    with preserved_rng_state():
        torch.rand(100), np.random.rand(100), random.random()
    restore_rng_state(loaded)
    assert torch.equal(torch.rand(3), expected[2])


class _Shapes(torch.utils.data.Dataset):
    """Images alternately portrait and landscape (aspect-ratio buckets)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def get_data_info(self, idx):
        return dict(width=10 + (idx % 3 == 0) * 20, height=20)


def test_skippable_batch_sampler_reproduces_aspect_ratio_batches():
    from mmengine.dataset import DefaultSampler
    sampler = DefaultSampler(_Shapes(23), shuffle=True, seed=5)
    wrapped = SkippableBatchSampler(
        sampler, 4, batch_sampler=dict(type='AspectRatioBatchSampler'))
    full = list(wrapped)
    assert len(full) == len(wrapped) == 6
    assert sorted(i for b in full for i in b) == list(range(23))
    for skip in (0, 2, 5, 6):
        partial = iter(wrapped)  # an abandoned iteration fills the buckets
        next(partial), next(partial)
        wrapped.skip_next(skip)
        assert list(wrapped) == full[skip:]
    assert list(wrapped) == full  # the skip applies once
    with pytest.raises(ValueError, match='num_batches must be >= 0'):
        wrapped.skip_next(-1)


def test_skip_next_restarts_a_sampler_that_makes_its_stream_once():
    """mmengine's InfiniteSampler makes one index stream in __init__; an
    abandoned iteration closes it for good. Given its config, skip_next
    builds a fresh sampler whose stream starts where a new run's does."""
    import itertools

    from mmengine.dataset import InfiniteSampler

    def sampler():
        return InfiniteSampler(_Shapes(10), shuffle=True, seed=3)

    wrapped = SkippableBatchSampler(
        sampler(), 4, sampler_cfg=dict(type='InfiniteSampler', shuffle=True))
    first = list(itertools.islice(wrapped, 5))  # abandoned: stream closed
    assert list(wrapped) == []  # what made runs stop at their first batch
    wrapped.skip_next(2)
    assert list(itertools.islice(wrapped, 3)) == first[2:5]

    reused = SkippableBatchSampler(sampler(), 4)  # no config: reused
    assert list(itertools.islice(reused, 5)) == first
    reused.skip_next(0)
    assert list(reused) == []


def test_a_loader_that_yields_nothing_after_a_restart_is_named():
    from mmgc.engine.resumable_loops import ResumableDataIterator
    loader = torch.utils.data.DataLoader([], batch_size=2)
    with pytest.raises(
            RuntimeError,
            match=r'yields no batch, not even right after a restart '
            r'\(batch sampler BatchSampler\(SequentialSampler\), 0 '):
        next(ResumableDataIterator(loader))


def test_nonfinite_terms_names_only_bad_entries():
    outputs = dict(
        loss=torch.tensor(float('nan')),
        loss_cls=torch.tensor(float('nan')),
        loss_bbox=torch.tensor(0.5),
        acc=torch.tensor(90.),
        loss_mask=float('inf'))
    bad = nonfinite_terms(outputs)
    assert list(bad) == ['loss', 'loss_cls', 'loss_mask']
    assert np.isnan(bad['loss_cls']) and bad['loss_mask'] == float('inf')
    assert nonfinite_terms(dict(loss=torch.tensor(1.))) == {}


def test_skip_wrapper_skips_nonfinite_steps_only():
    model = torch.nn.Linear(3, 1)
    wrapper = SkipNonFiniteOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    before = model.weight.detach().clone()
    wrapper.update_params(model(torch.ones(2, 3)).sum() * float('nan'))
    assert wrapper.step_skipped and wrapper.skipped_steps == 1
    assert torch.equal(model.weight, before)
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    wrapper.update_params(model(torch.ones(2, 3)).sum())
    assert not wrapper.step_skipped and wrapper.skipped_steps == 1
    assert not torch.equal(model.weight, before)


def test_first_nonfinite_key():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    assert first_nonfinite_key(model) is None
    with torch.no_grad():
        model[1].running_var[1] = float('inf')
    assert first_nonfinite_key(model) == '1.running_var'


def test_first_difference_names_key_and_ranks():
    a = dict(x='1', y='2')
    assert first_difference([a, dict(a), dict(a)]) is None
    assert first_difference([a, dict(a), dict(x='1', y='3')]) == ('y', [2])
    assert first_difference([a, dict(x='1')]) == ('y', [1])


def _rank_check_worker(rank, port, result_dir):
    import torch.distributed as dist
    from mmengine.logging import MessageHub, MMLogger
    dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))

    class Runner:
        pass

    runner = Runner()
    runner.model = model
    runner.logger = MMLogger.get_instance(f'rank_check_{rank}')
    runner.message_hub = MessageHub.get_instance(f'rank_check_{rank}')
    messages = []
    for key in ('1.running_mean', '0.bias'):
        if rank == 1:  # a buffer (synchronised), then a parameter
            with torch.no_grad():
                model.state_dict()[key][2] += 1e-6
        try:
            RankConsistencyHook().after_train(runner)
            messages.append(f'no error, running_mean[2]='
                            f'{model[1].running_mean[2].item()}')
        except RuntimeError as e:
            messages.append(str(e))
    with open(osp.join(result_dir, f'rank{rank}.txt'), 'w') as f:
        f.write('\n'.join(messages))
    dist.destroy_process_group()


def test_rank_consistency_hook_detects_a_perturbed_rank(tmp_path):
    """Two gloo processes; rank 1 changes a BN buffer entry by 1e-6 (the
    hook gives it rank 0's buffers), then a parameter entry (it raises)."""
    port = 29600 + os.getpid() % 1000
    torch.multiprocessing.spawn(
        _rank_check_worker, args=(port, str(tmp_path)), nprocs=2)
    for rank in (0, 1):
        synced, perturbed = (tmp_path /
                             f'rank{rank}.txt').read_text().splitlines()
        assert synced == 'no error, running_mean[2]=0.0'
        assert perturbed == (
            "weights differ across ranks after training: '0.bias' on "
            'rank(s) [1] differs from rank 0 (7 parameters and buffers '
            'compared)')


def _demo_cfg(**reliability):
    cfg = Config.fromfile(DEMO_CONFIG)
    if reliability:
        cfg.reliability = reliability
    return cfg


def test_enable_reliability_switches_stock_types_only():
    cfg = enable_reliability(_demo_cfg())
    assert cfg.train_cfg.type == 'ResumableIterBasedTrainLoop'
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    assert cfg.optim_wrapper.type == 'SkipNonFiniteOptimWrapper'
    assert [h['type'] for h in cfg.custom_hooks] == [
        'NonFiniteLossHook', 'RankConsistencyHook', 'PreemptionHook',
        'StallWatchdogHook'
    ]
    assert cfg.custom_hooks[0]['action'] == 'raise'
    before = _demo_cfg(enable=False)
    assert enable_reliability(before).pretty_text == \
        _demo_cfg(enable=False).pretty_text  # opt-out: nothing changes
    cfg = _demo_cfg(
        nonfinite_loss='off',
        resume=False,
        check_ranks=False,
        preemption=False,
        stall_watchdog=False)
    enable_reliability(cfg)
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert cfg.custom_hooks == []
    epoch_cfg = _demo_cfg()
    epoch_cfg.train_cfg = dict(by_epoch=True, max_epochs=2)
    assert enable_reliability(epoch_cfg).train_cfg.type == \
        'ResumableEpochBasedTrainLoop'
    with pytest.raises(ValueError, match="nonfinite_loss must be one of"):
        enable_reliability(_demo_cfg(nonfinite_loss='ignore'))
    with pytest.raises(
            KeyError, match=r"unknown reliability option\(s\) "
            r"\['atomic'\]"):
        enable_reliability(_demo_cfg(atomic=True))
    amp = _demo_cfg(nonfinite_loss='skip')
    amp.optim_wrapper.type = 'AmpOptimWrapper'
    with pytest.raises(ValueError, match="got 'AmpOptimWrapper'"):
        enable_reliability(amp)


# ------------------------------------------------------ real processes


def _faults_config(tmp_path, name: str, hooks: list, body: str = '') -> str:
    """A config inheriting the demo that loads tests/reliability_faults
    (``body``: more config lines)."""
    path = tmp_path / f'{name}.py'
    path.write_text(
        f'_base_ = {DEMO_CONFIG!r}\n'
        "custom_imports = dict(imports=['mmgc', 'reliability_faults'], "
        'allow_failed_imports=False)\n'
        f'custom_hooks = {hooks!r}\n' + body)
    return str(path)


def _train_cmd(config, work_dir, data_root, max_iters=MAX_ITERS, extra=()):
    """``max_iters=None``: the config's own schedule (epoch loops)."""
    schedule = ([]
                if max_iters is None else [f'train_cfg.max_iters={max_iters}'])
    return [
        sys.executable, 'tools/train.py', config, '--work-dir', work_dir,
        '--cfg-options', *data_cfg_options(data_root),
        'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'val_cfg=None',
        'val_dataloader=None', 'val_evaluator=None',
        'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=-1',
        'param_scheduler.0.end=2', *schedule, 'randomness.seed=0',
        'randomness.deterministic=True', *extra
    ]


def _run(cmd, env=None, expect_ok=True):
    result = subprocess.run(
        cmd,
        cwd=ROOT,
        env=env or fault_tool_env(),
        capture_output=True,
        text=True,
        timeout=600)
    out = result.stdout + result.stderr
    if expect_ok:
        assert result.returncode == 0, out[-4000:]
    return result.returncode, out


def _state(path):
    return torch.load(path, map_location='cpu')


def _assert_same_weights(path_a, path_b):
    a, b = _state(path_a)['state_dict'], _state(path_b)['state_dict']
    assert list(a) == list(b)
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f'{len(differing)} tensors differ: {differing[:5]}'


def _records(path):
    with open(path) as f:
        return {r['iter']: r['img_ids'] for r in map(json.loads, f)}


def _last_pointer(work_dir):
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


@pytest.fixture(scope='module')
def reference_run(tiny_coco, tmp_path_factory):
    """One uninterrupted 8-iteration run, a checkpoint every iteration."""
    tmp = tmp_path_factory.mktemp('reference')
    ids = str(tmp / 'ids.jsonl')
    config = _faults_config(tmp, 'record',
                            [dict(type='SampleRecorderHook', path=ids)])
    work_dir = str(tmp / 'work')
    _, log = _run(_train_cmd(config, work_dir, tiny_coco))
    return dict(work_dir=work_dir, ids=_records(ids), log=log, tmp=tmp)


@pytest.mark.slow
def test_uninterrupted_run_is_unchanged_by_the_reliability_defaults(
        reference_run, tiny_coco, tmp_path):
    """The demo's results stay what they were: plain mmengine types give the
    same weights as mmgc's defaults (compared at iteration 4)."""
    assert 'identical on 1 rank(s)' in reference_run['log']
    work_dir = str(tmp_path / 'plain')
    _run(
        _train_cmd(
            DEMO_CONFIG,
            work_dir,
            tiny_coco,
            max_iters=4,
            extra=['reliability.enable=False']))
    _assert_same_weights(
        osp.join(work_dir, 'iter_4.pth'),
        osp.join(reference_run['work_dir'], 'iter_4.pth'))


@pytest.mark.slow
def test_killed_run_resumes_bit_identical(reference_run, tiny_coco, tmp_path):
    """SIGKILL after iteration 3 is saved, then --resume: every weight and
    buffer equals the uninterrupted run's, and so does the data order."""
    ids = str(tmp_path / 'ids.jsonl')
    config = _faults_config(tmp_path, 'record',
                            [dict(type='SampleRecorderHook', path=ids)])
    work_dir = str(tmp_path / 'work')
    cmd = _train_cmd(config, work_dir, tiny_coco)
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=fault_tool_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    pointer = osp.join(work_dir, 'last_checkpoint')
    deadline = time.time() + 300
    while not (osp.isfile(pointer)
               and _last_pointer(work_dir).endswith('iter_3.pth')):
        assert proc.poll() is None, 'training ended before iteration 3'
        assert time.time() < deadline, 'no checkpoint after 300 s'
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _state(_last_pointer(work_dir))['meta']['iter']
    assert 3 <= killed_at < MAX_ITERS

    _, log = _run(cmd + ['--resume'])
    assert f'resumed epoch: 0, iter: {killed_at}' in log
    assert 'skipped by index, no data loaded' in log
    _assert_same_weights(
        osp.join(work_dir, f'iter_{MAX_ITERS}.pth'),
        osp.join(reference_run['work_dir'], f'iter_{MAX_ITERS}.pth'))
    seen = _records(ids)  # the resumed run overwrote iterations it redid
    assert seen == reference_run['ids']


@pytest.mark.slow
def test_resume_with_a_worker_draws_exactly_the_remaining_samples(
        reference_run, tiny_coco, tmp_path):
    """num_workers=1: iterations 4..8 get the uninterrupted run's batches
    (no sample lost or repeated across the loader epoch boundary)."""
    ids = str(tmp_path / 'ids.jsonl')
    config = _faults_config(tmp_path, 'record',
                            [dict(type='SampleRecorderHook', path=ids)])
    ckpt = osp.join(reference_run['work_dir'], 'iter_3.pth')
    _run(
        _train_cmd(
            config,
            str(tmp_path / 'work'),
            tiny_coco,
            extra=['train_dataloader.num_workers=1']) + ['--resume', ckpt])
    resumed = _records(ids)
    reference = reference_run['ids']
    assert sorted(resumed) == list(range(4, MAX_ITERS + 1))
    assert resumed == {i: reference[i] for i in resumed}
    # 12 images: iterations 1-6 are one pass, 7-8 start the next
    first_pass = [i for it in range(1, 7) for i in reference[it]]
    assert sorted(first_pass) == list(range(1, 13))


@pytest.mark.slow
@pytest.mark.parametrize('killed_file', ['iter_4.pth', 'last_checkpoint:4'])
def test_kill_during_save_keeps_previous_checkpoint(reference_run, tiny_coco,
                                                    tmp_path, killed_file):
    """SIGKILL inside the save of iteration 4 (temporary file written, not
    yet renamed), with max_keep_ckpts=1: iteration 3's checkpoint is still
    there, loadable, and last_checkpoint points to a valid file."""
    config = _faults_config(tmp_path, 'faults', [])
    work_dir = str(tmp_path / 'work')
    cmd = _train_cmd(
        config,
        work_dir,
        tiny_coco,
        max_iters=MAX_ITERS,
        extra=['default_hooks.checkpoint.max_keep_ckpts=1'])
    code, out = _run(
        cmd,
        expect_ok=False,
        env=fault_tool_env(MMGC_TEST_KILL_ON_REPLACE=killed_file))
    assert code == -signal.SIGKILL, out[-3000:]
    pointer = _last_pointer(work_dir)
    assert pointer == osp.join(work_dir, 'iter_3.pth')
    assert _state(pointer)['meta']['iter'] == 3
    files = sorted(os.listdir(work_dir))
    if killed_file == 'iter_4.pth':
        assert 'iter_4.pth' not in files
        assert any(f.startswith('.iter_4.pth.') for f in files)  # the temp
        _run(cmd + ['--resume'])
        _assert_same_weights(
            osp.join(work_dir, f'iter_{MAX_ITERS}.pth'),
            osp.join(reference_run['work_dir'], f'iter_{MAX_ITERS}.pth'))
    else:
        # iteration 4 was committed; iteration 3 is deleted only after the
        # pointer moved on, which the kill prevented
        assert {'iter_3.pth', 'iter_4.pth'} <= set(files)
        assert 'iter_2.pth' not in files  # max_keep_ckpts=1 still applies
        assert _state(osp.join(work_dir, 'iter_4.pth'))['meta']['iter'] == 4


@pytest.mark.slow
def test_nan_loss_stops_before_it_is_checkpointed(tiny_coco, tmp_path):
    config = _faults_config(
        tmp_path, 'nan', [dict(type='NaNLossInjectionHook', iterations=[3])])
    work_dir = str(tmp_path / 'work')
    code, out = _run(
        _train_cmd(config, work_dir, tiny_coco, max_iters=4), expect_ok=False)
    assert code != 0
    assert 'FloatingPointError: Non-finite loss at iteration 3: ' \
        'loss_cls=nan' in out, out[-3000:]
    assert _last_pointer(work_dir) == osp.join(work_dir, 'iter_2.pth')
    assert not osp.exists(osp.join(work_dir, 'iter_3.pth'))
    state = _state(osp.join(work_dir, 'iter_2.pth'))['state_dict']
    assert all(
        torch.isfinite(v).all() for v in state.values()
        if v.is_floating_point())


@pytest.mark.slow
def test_nan_loss_skip_mode_skips_the_step_and_finishes(tiny_coco, tmp_path):
    config = _faults_config(
        tmp_path, 'nan', [dict(type='NaNLossInjectionHook', iterations=[3])])
    work_dir = str(tmp_path / 'work')
    _, out = _run(
        _train_cmd(
            config,
            work_dir,
            tiny_coco,
            max_iters=4,
            extra=['reliability.nonfinite_loss=skip']))
    assert 'Skipped the optimizer step of iteration 3: non-finite loss ' \
        'loss_cls=nan (1 step(s) skipped so far)' in out
    ckpts = {i: _state(osp.join(work_dir, f'iter_{i}.pth')) for i in (2, 3, 4)}
    assert all(
        torch.isfinite(v).all() for c in ckpts.values()
        for v in c['state_dict'].values() if v.is_floating_point())
    # iteration 3 changed no parameter (BN statistics still moved) and did
    # not count as an AdamW step; iteration 4 trained again
    params = [
        k for k in ckpts[2]['state_dict']
        if 'running_' not in k and 'num_batches' not in k
    ]
    assert all(
        torch.equal(ckpts[2]['state_dict'][k], ckpts[3]['state_dict'][k])
        for k in params)
    steps = [c['optimizer']['state'][0]['step'].item() for c in ckpts.values()]
    assert steps == [2, 2, 3]
    assert not all(
        torch.equal(ckpts[3]['state_dict'][k], ckpts[4]['state_dict'][k])
        for k in params)


@pytest.mark.slow
def test_dist_train_ranks_end_with_identical_weights(tiny_coco, tmp_path):
    env = fault_tool_env(
        PYTHON=sys.executable, PORT=str(29700 + os.getpid() % 1000))
    work_dir = str(tmp_path / 'dist')
    cmd = _train_cmd(DEMO_CONFIG, work_dir, tiny_coco, max_iters=2)
    code, out = _run(['bash', 'tools/dist_train.sh', cmd[2], '2', *cmd[3:]],
                     env=env)
    line = next(ln for ln in out.splitlines() if 'Rank consistency' in ln)
    assert 'identical on 2 rank(s)' in line
    digests = line.split('weights sha256 per rank: ')[1].split(', ')
    assert len(digests) == 2 and digests[0] == digests[1]
    state = _state(osp.join(work_dir, 'iter_2.pth'))['state_dict']
    assert combined_digest(state_digests(state))[:16] == digests[0]


# ------------------------------------------- epoch-based loop (processes)

EPOCH_LOOP = ("train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', "
              'max_epochs=2, val_interval=100)\n')
EPOCH_ITERS = 12  # 2 epochs x 6 batches of 2 images


def _epoch_cmd(tmp_path, name, data_root, hooks=(), extra=()):
    """(ids file, command) of a 2-epoch run of the demo on ``data_root``
    recording its image ids, with an iteration checkpoint every 3
    iterations (iter_3, 6, 9, 12; iter_9 is mid-epoch 2)."""
    ids = str(tmp_path / f'{name}_ids.jsonl')
    hooks = [dict(type='SampleRecorderHook', path=ids), *hooks]
    config = _faults_config(tmp_path, name, hooks, EPOCH_LOOP)
    return ids, _train_cmd(
        config,
        str(tmp_path / name),
        data_root,
        max_iters=None,
        extra=['default_hooks.checkpoint.interval=3', *extra])


@pytest.fixture(scope='module')
def epoch_reference_run(tiny_coco, tmp_path_factory):
    """One uninterrupted 2-epoch run; a second (plain) CheckpointHook also
    saves at each epoch end (epoch_1.pth: the epoch-boundary checkpoint)."""
    tmp = tmp_path_factory.mktemp('epoch_reference')
    ids, cmd = _epoch_cmd(
        tmp,
        'work',
        tiny_coco,
        hooks=[dict(type='CheckpointHook', by_epoch=True, interval=1)])
    _, log = _run(cmd)
    return dict(work_dir=str(tmp / 'work'), ids=_records(ids), log=log)


@pytest.mark.slow
@pytest.mark.parametrize(
    'ckpt,epoch,it,position',
    [
        ('epoch_1.pth', 1, 6, dict(epoch=0, batches=6)),  # epoch boundary
        ('iter_6.pth', 0, 6, dict(epoch=0, batches=6)),  # last batch, by iter
        ('iter_9.pth', 1, 9, dict(epoch=1, batches=3)),  # mid-epoch 2
    ])
def test_epoch_loop_resumes_bit_identical(epoch_reference_run, tiny_coco,
                                          tmp_path, ckpt, epoch, it, position):
    """ResumableEpochBasedTrainLoop: --resume (new work dir) from the end of
    epoch 1 (saved by epoch, or by iteration after its last batch: mmengine
    then resumes into epoch 1 with nothing left to draw) or from the middle
    of epoch 2 trains exactly the remaining batches and ends with the
    uninterrupted run's weights and buffers."""
    ref = epoch_reference_run
    assert 'ResumableEpochBasedTrainLoop' in ref['log']
    reference = ref['ids']
    assert sorted(reference) == list(range(1, EPOCH_ITERS + 1))
    epochs = [[
        i for it_ in range(e * 6 + 1, e * 6 + 7) for i in reference[it_]
    ] for e in (0, 1)]
    assert [sorted(e) for e in epochs] == [list(range(1, 13))] * 2
    assert epochs[0] != epochs[1]  # reshuffled (set_epoch)

    checkpoint = osp.join(ref['work_dir'], ckpt)
    state = _state(checkpoint)
    assert (state['meta']['epoch'], state['meta']['iter']) == (epoch, it)
    assert state['train_state']['data'] == position
    ids, cmd = _epoch_cmd(tmp_path, 'resumed', tiny_coco)
    _, log = _run(cmd + ['--resume', checkpoint])
    assert f'resumed epoch: {epoch}, iter: {it}' in log
    _assert_same_weights(
        osp.join(tmp_path, 'resumed', f'iter_{EPOCH_ITERS}.pth'),
        osp.join(ref['work_dir'], f'iter_{EPOCH_ITERS}.pth'))
    assert _records(ids) == {
        i: reference[i]
        for i in range(it + 1, EPOCH_ITERS + 1)
    }


@pytest.mark.slow
def test_plain_mmengine_epoch_resume_repeats_the_interrupted_epoch(
        epoch_reference_run, tiny_coco, tmp_path):
    """Why the loop exists: mmengine 0.10.7's EpochBasedTrainLoop resumed
    from iteration 9 (3 batches into epoch 2) restarts epoch 2 at its first
    batch, so batches 1-3 are trained twice, the run ends at iteration 15
    and its weights at iteration 12 are not the uninterrupted ones."""
    ref = epoch_reference_run
    ids, cmd = _epoch_cmd(
        tmp_path, 'plain', tiny_coco, extra=['reliability.enable=False'])
    _, log = _run(cmd + ['--resume', osp.join(ref['work_dir'], 'iter_9.pth')])
    assert 'ResumableEpochBasedTrainLoop' not in log
    assert _records(ids) == {
        i + 3: ref['ids'][i]
        for i in range(7, EPOCH_ITERS + 1)
    }
    plain = _state(osp.join(tmp_path, 'plain', 'iter_12.pth'))['state_dict']
    final = _state(osp.join(ref['work_dir'],
                            f'iter_{EPOCH_ITERS}.pth'))['state_dict']
    assert not all(torch.equal(plain[k], final[k]) for k in final)
