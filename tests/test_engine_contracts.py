"""The mmengine behaviour mmgc's engine extends, checked on a toy runner
(seconds, no MMDetection model).

``ResumableIterBasedTrainLoop`` relies on mmengine's ``IterBasedTrainLoop.run``
skipping the trained iterations of a resumed run by drawing that many batches
from ``dataloader_iterator``; ``ResumableEpochBasedTrainLoop`` on
``EpochBasedTrainLoop.run_epoch`` iterating ``self.dataloader`` through
``run_iter``; ``AtomicCheckpointHook`` on ``CheckpointHook`` deleting old
checkpoints through its ``file_backend`` and writing ``last_checkpoint``
under ``runner.work_dir``. If a new mmengine release changes one of these,
a test here fails and names it.
"""
import os
import os.path as osp
import uuid

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from mmgc.engine import (AtomicCheckpointHook, ResumableEpochBasedTrainLoop,
                         ResumableIterBasedTrainLoop)
from mmgc.engine.resumable_loops import ResumableDataIterator

NUM_SAMPLES = 10  # batch 2: 5 batches a loader pass


class _NoisyData(Dataset):
    """Samples whose "augmentation" draws from numpy's global generator."""

    def __len__(self):
        return NUM_SAMPLES

    def __getitem__(self, idx):
        x = torch.full((4, ), float(idx)) + float(np.random.rand())
        return dict(inputs=x, idx=idx)


class _NoisyModel(BaseModel):
    """A linear model whose loss draws from torch's global generator (in
    training and in validation)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 1)

    def forward(self, inputs, idx, mode='loss'):
        out = self.fc(inputs) + 0.01 * torch.rand(len(inputs), 1)
        if mode == 'loss':
            return dict(loss=out.pow(2).mean())
        return [dict(out=o) for o in out]


class _RecordOrder(Hook):

    def __init__(self):
        self.seen = {}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.seen[runner.iter + 1] = data_batch['idx'].tolist()


def _runner(work_dir,
            loop: dict,
            resume_from=None,
            max_keep_ckpts=-1,
            recorder=None,
            save_best=None):
    return Runner(
        model=_NoisyModel(),
        work_dir=str(work_dir),
        experiment_name=f'contracts_{uuid.uuid4().hex[:8]}',
        train_dataloader=dict(
            dataset=_NoisyData(),
            batch_size=2,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate')),
        val_dataloader=dict(
            dataset=_NoisyData(),
            batch_size=5,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate')),
        val_evaluator=_evaluator(),
        val_cfg=dict(),
        train_cfg=loop,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(
            checkpoint=dict(
                type=AtomicCheckpointHook,
                interval=1,
                by_epoch=False,
                max_keep_ckpts=max_keep_ckpts,
                save_best=save_best,
                rule='greater'),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[recorder] if recorder else None,
        randomness=dict(seed=0),
        load_from=resume_from,
        resume=resume_from is not None,
        default_scope='mmdet')  # the tests' scope, left as it is


def _evaluator():
    from mmengine.evaluator import BaseMetric, Evaluator

    class _RisingMetric(BaseMetric):
        """Better at every evaluation (a new best checkpoint each time)."""
        calls = 0

        def process(self, data_batch, data_samples):
            pass

        def compute_metrics(self, results):
            self.calls += 1
            return dict(score=float(self.calls))

    return Evaluator(_RisingMetric())


def _weights(path):
    return torch.load(path, map_location='cpu')['state_dict']


def _assert_same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa), (a, b)


ITER_LOOP = dict(type=ResumableIterBasedTrainLoop, max_iters=7, val_interval=2)
EPOCH_LOOP = dict(
    type=ResumableEpochBasedTrainLoop, max_epochs=2, val_interval=1)


@pytest.mark.parametrize(
    'loop,ckpt',
    [
        (ITER_LOOP, 'iter_4.pth'),  # validation ran after it; crosses a pass
        (EPOCH_LOOP, 'iter_7.pth'),  # mid-epoch 2
        (EPOCH_LOOP, 'iter_5.pth'),  # last batch of epoch 1
    ])
def test_resumed_toy_run_is_bit_identical(tmp_path, loop, ckpt):
    """mmengine's run / run_epoch, extended by mmgc's loops, resume a toy
    run (data "augmentation" and model noise drawn from the global
    generators, validation on) exactly."""
    reference = _RecordOrder()
    _runner(tmp_path / 'ref', loop, recorder=reference).train()
    resumed = _RecordOrder()
    _runner(
        tmp_path / 'resumed',
        loop,
        resume_from=str(tmp_path / 'ref' / ckpt),
        recorder=resumed).train()
    last = max(reference.seen)
    assert resumed.seen == {
        i: reference.seen[i]
        for i in range(int(ckpt[5:-4]) + 1, last + 1)
    }
    _assert_same_weights(tmp_path / 'ref' / f'iter_{last}.pth',
                         tmp_path / 'resumed' / f'iter_{last}.pth')


def _resumed_iterator(skip: int) -> ResumableDataIterator:
    from mmengine.dataset import DefaultSampler
    from torch.utils.data import DataLoader

    from mmgc.engine import SkippableBatchSampler
    data = _NoisyData()
    loader = DataLoader(
        data,
        batch_sampler=SkippableBatchSampler(
            DefaultSampler(data, shuffle=False), batch_size=2))
    iterator = ResumableDataIterator(loader)
    iterator.resume(skip, None, dict(epoch=0, batches=skip))
    return iterator


@pytest.mark.parametrize('draws', [3, 5])
def test_a_changed_resume_skip_in_mmengine_fails_loudly(draws):
    """If mmengine's run() drew fewer or more batches than the 3 trained
    iterations before the one it trains (4 draws), that batch is refused
    with a message naming the broken assumption."""
    iterator = _resumed_iterator(skip=3)
    for _ in range(draws):
        next(iterator)
    with pytest.raises(
            RuntimeError,
            match=r"mmengine's IterBasedTrainLoop"
            r'\.run\(\) no longer skips the 3 trained'):
        iterator.check_resumed()
    ok = _resumed_iterator(skip=3)
    assert [next(ok) for _ in range(3)] == [None] * 3
    assert next(ok)['idx'].tolist() == [6, 7]
    ok.check_resumed()


@pytest.fixture
def file_events(tmp_path, monkeypatch):
    """(operation, file name) of every rename onto and deletion in
    tmp_path, in order."""
    events = []
    replace, remove = os.replace, os.remove

    def logged_replace(src, dst, *args, **kwargs):
        if osp.dirname(str(dst)) == str(tmp_path):
            events.append(('replace', osp.basename(str(dst))))
        return replace(src, dst, *args, **kwargs)

    def logged_remove(path, *args, **kwargs):
        if osp.dirname(str(path)) == str(tmp_path):
            events.append(('remove', osp.basename(str(path))))
        return remove(path, *args, **kwargs)

    monkeypatch.setattr(os, 'replace', logged_replace)
    monkeypatch.setattr(os, 'remove', logged_remove)
    return events


def test_checkpoint_hook_commits_then_deletes(tmp_path, file_events):
    """With max_keep_ckpts=1 every save writes the new checkpoint, then
    moves last_checkpoint to it, and only then deletes the old checkpoint;
    both writes are atomic renames and mmengine's own in-place pointer
    write never touches the work directory."""
    events = file_events
    _runner(
        tmp_path,
        dict(type=ResumableIterBasedTrainLoop, max_iters=3, val_interval=10),
        max_keep_ckpts=1).train()
    assert events == [
        ('replace', 'iter_1.pth'),
        ('replace', 'last_checkpoint'),
        ('replace', 'iter_2.pth'),
        ('replace', 'last_checkpoint'),
        ('remove', 'iter_1.pth'),
        ('replace', 'iter_3.pth'),
        ('replace', 'last_checkpoint'),
        ('remove', 'iter_2.pth'),
    ], ("mmengine's CheckpointHook no longer saves the way "
        'AtomicCheckpointHook (mmgc/engine/atomic_checkpoint_hook.py) '
        f'expects: {events}')
    with open(tmp_path / 'last_checkpoint') as f:
        assert f.read() == str(tmp_path / 'iter_3.pth')
    assert sorted(p for p in os.listdir(tmp_path)
                  if p.endswith('.pth')) == ['iter_3.pth']


def test_checkpoint_hook_refuses_nonfinite_weights(tmp_path):

    class _Poison(Hook):

        def after_train_iter(self,
                             runner,
                             batch_idx,
                             data_batch=None,
                             outputs=None):
            if runner.iter == 1:  # iteration 2
                runner.model.fc.bias.data.fill_(float('nan'))

    runner = _runner(
        tmp_path,
        dict(type=ResumableIterBasedTrainLoop, max_iters=3, val_interval=10),
        max_keep_ckpts=1,
        recorder=_Poison())
    with pytest.raises(
            FloatingPointError,
            match=r"iteration 2: 'fc.bias' holds NaN or inf "
            r'values; the last checkpoint \(.*iter_1.pth\)'):
        runner.train()
    with open(tmp_path / 'last_checkpoint') as f:
        assert f.read() == str(tmp_path / 'iter_1.pth')
    assert sorted(p for p in os.listdir(tmp_path)
                  if p.endswith('.pth')) == ['iter_1.pth']


def test_best_checkpoint_is_replaced_after_the_new_one_is_saved(
        tmp_path, file_events):
    """save_best: the previous best checkpoint is deleted only once the new
    best one (and the checkpoint mmengine saves again to record it) are in
    place."""
    _runner(
        tmp_path,
        dict(type=ResumableIterBasedTrainLoop, max_iters=4, val_interval=2),
        max_keep_ckpts=1,
        save_best='score').train()
    at_4 = file_events[file_events.index(('replace', 'iter_4.pth')):]
    assert at_4 == [
        ('replace', 'iter_4.pth'),
        ('replace', 'last_checkpoint'),
        ('remove', 'iter_3.pth'),
        ('replace', 'best_score_iter_4.pth'),  # validation after iter 4
        ('replace', 'iter_4.pth'),
        ('replace', 'last_checkpoint'),
        ('remove', 'best_score_iter_2.pth'),
    ], f'unexpected save sequence: {file_events}'
    assert sorted(p for p in os.listdir(tmp_path) if p.endswith('.pth')) == [
        'best_score_iter_4.pth', 'iter_4.pth'
    ]


def test_iter_loop_continues_the_loader_iterator_mmengine_made(
        tmp_path, monkeypatch):
    """mmengine's IterBasedTrainLoop.__init__ makes ``iter(dataloader)`` and
    keeps it as ``dataloader_iterator._iterator``; the resumable loop takes
    that one over instead of starting the workers again (a second iterator
    over an InfiniteSampler closes the stream the first one shares)."""
    from torch.utils.data import DataLoader
    made = []
    make = DataLoader.__iter__

    def counting_iter(loader):
        made.append(make(loader))
        return made[-1]

    monkeypatch.setattr(DataLoader, '__iter__', counting_iter)
    plain = _runner(tmp_path / 'plain',
                    dict(type='IterBasedTrainLoop', max_iters=2)).train_loop
    assert plain.dataloader_iterator._iterator is made[-1]
    loop = _runner(tmp_path / 'resumable',
                   dict(type=ResumableIterBasedTrainLoop,
                        max_iters=2)).train_loop
    assert len(made) == 2  # one per loop
    assert loop.dataloader_iterator._iterator is made[-1]
