"""mmgc's engine under every stock data setting of MMEngine 0.10 and
MMDetection 3.3: samplers, batch samplers, workers, loops.

Each cell trains the tiny ``ToyDetector`` (tests/toy_detector.py) on the
12-image ``tiny_coco`` set through the code of ``tools/train.py``
(:func:`mmgc.utils.build_train_config` and :func:`build_runner`, engine on),
in this process, with a checkpoint every iteration, and checks:

- the run trains to the end (the final checkpoint's iteration);
- a run resumed from a checkpoint in the middle draws the uninterrupted
  run's batches (image ids, iteration by iteration) and, without workers,
  ends with bit-identical weights and buffers;
- the same config with the engine off (plain mmengine) ends with the same
  weights as the engine on.

With workers, augmentation runs in the worker processes, which mmengine
seeds from the run's seed each time a loader iterator starts them: a
resumed run restarts their random streams, so only the data order, not
the flips, is exact (README, "Stock settings and cluster faults").

Infinite samplers (InfiniteSampler, MultiSourceSampler,
GroupMultiSourceSampler) never end an epoch, so they pair with the
iteration loop only, as in MMEngine and MMDetection. The multi-source ones
form their batches themselves (``batch_sampler=None``, as MMDetection's
semi-supervised configs set it).
"""
import gc
import json
import uuid

import pytest
import torch
from conftest import toy_train_config

from mmgc.utils import build_runner, build_train_config, build_train_parser

ITER_LOOP = dict(type='IterBasedTrainLoop', max_iters=8, val_interval=100)
EPOCH_LOOP = dict(type='EpochBasedTrainLoop', max_epochs=2, val_interval=100)
#: (loop, iterations in all, iteration resumed from): the iteration run
#: crosses a loader epoch after 6 batches; the epoch run resumes mid-epoch 2
LOOPS = {'iter': (ITER_LOOP, 8, 3), 'epoch': (EPOCH_LOOP, 12, 9)}
SAMPLERS = {
    'DefaultSampler':
    dict(type='DefaultSampler', shuffle=True),
    'ClassAwareSampler':
    dict(type='ClassAwareSampler', num_sample_class=1),
    'InfiniteSampler':
    dict(type='InfiniteSampler', shuffle=True),
    'MultiSourceSampler':
    dict(type='MultiSourceSampler', batch_size=2, source_ratio=[1, 1]),
    'GroupMultiSourceSampler':
    dict(type='GroupMultiSourceSampler', batch_size=2, source_ratio=[1, 1]),
}
INFINITE = ('InfiniteSampler', 'MultiSourceSampler', 'GroupMultiSourceSampler')
MULTI_SOURCE = ('MultiSourceSampler', 'GroupMultiSourceSampler')
BATCH_SAMPLERS = {
    'BatchSampler': None,
    'AspectRatioBatchSampler': dict(type='AspectRatioBatchSampler')
}
WORKERS = {'workers0': (0, False), 'workers2': (2, False),
           'workers2persistent': (2, True)}  # yapf: disable


def _cells():
    for sampler in SAMPLERS:
        for batch_sampler in BATCH_SAMPLERS:
            if sampler in MULTI_SOURCE and batch_sampler != 'BatchSampler':
                continue
            for workers in WORKERS:
                for loop in LOOPS:
                    if sampler in INFINITE and loop == 'epoch':
                        continue
                    yield pytest.param(
                        sampler,
                        batch_sampler,
                        workers,
                        loop,
                        id=f'{sampler}-{batch_sampler}-{workers}-{loop}')


CELLS = list(_cells())


def _config(tmp_path, data_root, sampler, batch_sampler, workers, loop) -> str:
    """The cell's toy config, written to ``tmp_path``."""
    dataset = None
    if sampler in MULTI_SOURCE:
        dataset = dict(type='ConcatDataset', datasets=['train', 'train'])
    num_workers, persistent = WORKERS[workers]
    return toy_train_config(
        tmp_path,
        data_root,
        train_cfg=LOOPS[loop][0],
        dataset=dataset,
        num_workers=num_workers,
        persistent_workers=persistent,
        sampler=SAMPLERS[sampler],
        batch_sampler=BATCH_SAMPLERS[batch_sampler])


def _train(config: str, work_dir: str, *options: str, resume=None) -> None:
    """What tools/train.py does, in this process."""
    argv = [
        config, '--work-dir', work_dir, '--cfg-options',
        f'experiment_name=cell_{uuid.uuid4().hex[:8]}', *options
    ]
    if resume is not None:
        argv += ['--resume', resume]
    runner = build_runner(
        build_train_config(build_train_parser().parse_args(argv)))
    try:
        runner.train()
    finally:
        # Drop the loader iterators before the runner: collected with the
        # runner's reference cycles, their workers take 5 s each to stop.
        runner.train_loop.dataloader_iterator = None
        runner.train_loop.dataloader._iterator = None  # persistent workers
        del runner
        gc.collect()


def _records(path: str) -> dict:
    with open(path) as f:
        return {r['iter']: r['img_ids'] for r in map(json.loads, f)}


def _weights(path: str) -> dict:
    return torch.load(path, map_location='cpu')['state_dict']


def _differing(a: dict, b: dict) -> list:
    assert list(a) == list(b)
    return [k for k in a if not torch.equal(a[k], b[k])]


@pytest.mark.parametrize('sampler,batch_sampler,workers,loop', CELLS)
def test_stock_setting_trains_and_resumes(tiny_coco, tmp_path, sampler,
                                          batch_sampler, workers, loop):
    total, resume_at = LOOPS[loop][1:]
    reference = tmp_path / 'reference'
    reference.mkdir()
    config = _config(reference, tiny_coco, sampler, batch_sampler, workers,
                     loop)
    _train(config, str(reference / 'work'))
    final = str(reference / 'work' / f'iter_{total}.pth')
    assert torch.load(final, map_location='cpu')['meta']['iter'] == total
    ids = _records(str(reference / 'ids_0.jsonl'))
    assert sorted(ids) == list(range(1, total + 1))
    assert all(len(batch) == 2 for batch in ids.values())

    resumed = tmp_path / 'resumed'
    resumed.mkdir()
    config = _config(resumed, tiny_coco, sampler, batch_sampler, workers, loop)
    _train(
        config,
        str(resumed / 'work'),
        resume=str(reference / 'work' / f'iter_{resume_at}.pth'))
    assert _records(str(resumed / 'ids_0.jsonl')) == {
        i: ids[i]
        for i in range(resume_at + 1, total + 1)
    }
    if WORKERS[workers][0] == 0:
        differing = _differing(
            _weights(final),
            _weights(str(resumed / 'work' / f'iter_{total}.pth')))
        assert not differing, f'resumed run differs in {differing[:5]}'

    plain = tmp_path / 'plain'
    plain.mkdir()
    config = _config(plain, tiny_coco, sampler, batch_sampler, workers, loop)
    _train(config, str(plain / 'work'), 'reliability.enable=False')
    assert _records(str(plain / 'ids_0.jsonl')) == ids
    differing = _differing(
        _weights(final), _weights(str(plain / 'work' / f'iter_{total}.pth')))
    assert not differing, f'engine on and off differ in {differing[:5]}'
