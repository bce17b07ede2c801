"""A batch sampler that can start an epoch at a given batch.

Resuming mid-epoch has to reproduce the batches the interrupted run would
have drawn next. mmengine re-runs the data pipeline on every skipped batch;
this wrapper instead advances the wrapped batch sampler's *index* iterator,
which reproduces bucketing samplers such as MMDetection's
``AspectRatioBatchSampler`` exactly, loads no image, and works with
``num_workers > 0`` (indices are drawn in the main process).

Samplers such as mmengine's ``InfiniteSampler`` and MMDetection's
``MultiSourceSampler`` make their index stream once, in ``__init__``, and
every ``__iter__`` continues (or, once an abandoned iteration is closed,
ends) that one stream. A data loader's workers prefetch from it as soon as
its iterator is made, so repositioning such a sampler needs a new one:
given the sampler's config, :meth:`SkippableBatchSampler.skip_next` builds
a fresh sampler (same data set, seed and epoch) whose stream starts where
the interrupted run's did.
"""
import copy
import itertools
import logging
from typing import Callable, Iterator, List, Optional

from mmengine.logging import print_log
from mmengine.registry import DATA_SAMPLERS
from torch.utils.data import BatchSampler, Sampler


@DATA_SAMPLERS.register_module()
class SkippableBatchSampler:
    """Wraps a batch sampler (built from its config) and skips batches on
    request.

    Args:
        sampler (Sampler): The index sampler (e.g. ``DefaultSampler``).
        batch_size (int): Samples per batch.
        batch_sampler (dict, optional): Config of the wrapped batch sampler,
            built with ``sampler`` and ``batch_size``; None wraps
            ``torch.utils.data.BatchSampler``, as ``DataLoader`` would.
        drop_last (bool): ``drop_last`` of the default ``BatchSampler``.
            Defaults to False.
        sampler_cfg (dict, optional): Config ``sampler`` was built from;
            lets :meth:`skip_next` start a fresh index stream. None: the
            sampler is reused (right for samplers whose ``__iter__`` starts
            the epoch anew, such as ``DefaultSampler``).
    """

    def __init__(self,
                 sampler: Sampler,
                 batch_size: int,
                 batch_sampler: Optional[dict] = None,
                 drop_last: bool = False,
                 sampler_cfg: Optional[dict] = None) -> None:
        self.sampler = sampler
        self.batch_size = batch_size
        self.batch_sampler_cfg = copy.deepcopy(batch_sampler)
        self.drop_last = drop_last
        self.sampler_cfg = copy.deepcopy(sampler_cfg)
        self._skip = 0
        self._then: Optional[Callable[[], None]] = None
        self._build()

    def _build(self) -> None:
        if self.batch_sampler_cfg is None:
            self.batch_sampler = BatchSampler(self.sampler, self.batch_size,
                                              self.drop_last)
        else:
            self.batch_sampler = DATA_SAMPLERS.build(
                copy.deepcopy(self.batch_sampler_cfg),
                default_args=dict(
                    sampler=self.sampler, batch_size=self.batch_size))

    def skip_next(self,
                  num_batches: int,
                  then: Optional[Callable[[], None]] = None) -> None:
        """Make the next ``__iter__`` start after ``num_batches`` batches.

        The sampler is rebuilt from its config (see the module docstring)
        and the wrapped batch sampler too, so neither an index stream that
        prefetching advanced nor buffers an abandoned iteration left behind
        (aspect-ratio buckets) carry over.

        Args:
            num_batches (int): Batches of the coming epoch to skip.
            then (callable, optional): Called once the batches are skipped,
                before the first remaining batch is handed out: inside the
                data loader's first fetch (or, with workers, its first
                prefetch), i.e. after the loader's iterator is made.
        """
        if num_batches < 0:
            raise ValueError(f'num_batches must be >= 0, got {num_batches}')
        self._restart_sampler()
        self._build()
        self._skip = num_batches
        self._then = then

    def _restart_sampler(self) -> None:
        """Replace the sampler by a fresh one built from ``sampler_cfg``
        with its data set, seed and epoch."""
        if self.sampler_cfg is None:
            return
        missing = [
            name for name in ('dataset', 'seed')
            if not hasattr(self.sampler, name)
        ]
        if missing:
            print_log(
                f'{type(self.sampler).__name__} has no attribute(s) '
                f'{missing}, so it cannot be rebuilt to restart its index '
                'stream: the resumed epoch re-iterates it as it is (exact '
                'for samplers whose every iteration starts the epoch anew)',
                logger='current',
                level=logging.WARNING)
            return
        sampler = DATA_SAMPLERS.build(
            copy.deepcopy(self.sampler_cfg),
            default_args=dict(
                dataset=self.sampler.dataset, seed=self.sampler.seed))
        epoch = getattr(self.sampler, 'epoch', None)
        if epoch is not None and hasattr(sampler, 'set_epoch'):
            sampler.set_epoch(epoch)
        self.sampler = sampler

    def __iter__(self) -> Iterator[List[int]]:
        skip, self._skip = self._skip, 0
        then, self._then = self._then, None
        batches = iter(self.batch_sampler)
        for _ in itertools.islice(batches, skip):
            pass
        if then is not None:
            then()
        yield from batches

    def __len__(self) -> int:
        return len(self.batch_sampler)


def wrap_batch_sampler_cfg(dataloader_cfg: dict) -> dict:
    """Copy of a dataloader config whose batch sampler is wrapped in
    :class:`SkippableBatchSampler` (a no-op if it already is).

    Args:
        dataloader_cfg (dict): An mmengine dataloader config.

    Returns:
        dict: The new config.
    """
    cfg = copy.deepcopy(dataloader_cfg)
    sampler_cfg = cfg.get('sampler')
    inner = cfg.pop('batch_sampler', None)
    if inner is not None and not isinstance(inner, dict):
        cfg['batch_sampler'] = inner  # a built object: left as it is
        return cfg
    if inner is not None and inner.get('type') in ('SkippableBatchSampler',
                                                   SkippableBatchSampler):
        cfg['batch_sampler'] = inner
        return cfg
    cfg['batch_sampler'] = dict(
        type=SkippableBatchSampler,
        batch_sampler=inner,
        drop_last=cfg.pop('drop_last', False),
        sampler_cfg=sampler_cfg if isinstance(sampler_cfg, dict) else None)
    return cfg
