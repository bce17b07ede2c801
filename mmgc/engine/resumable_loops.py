"""Train loops that resume exactly where the interrupted run stopped.

mmengine 0.10.7 resumes the iteration counter, weights, optimizer and
schedulers, but (1) the iteration-based loop re-runs the data pipeline over
every batch it skips and re-seeds nothing, so augmentation and sampling
randomness differ from the uninterrupted run, and (2) the epoch-based loop
restarts an interrupted epoch from its first batch (data seen twice).

These loops record, in each checkpoint (through :class:`TrainStateHook`),
the global RNG states and the data position (loader epoch, batches drawn in
it). On resume they reposition the batch sampler without loading data
(:class:`SkippableBatchSampler`) and restore the RNG states at the moment the
uninterrupted run was at: after the iterator is created and positioned,
before the next batch is fetched. With ``num_workers=0`` and a fixed seed
the resumed run is bit-identical; with workers it draws exactly the
remaining batches (the workers' own augmentation streams restart).
Validation runs with the training RNG states preserved, so a resumed run
(which does not repeat the validation after its checkpoint) stays in step.
Without the data loader config (a built ``DataLoader``) they fall back to
mmengine's skipping by fetching.
"""
import logging
from typing import Dict, Optional, Sequence

from mmengine.logging import print_log
from mmengine.registry import LOOPS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop
from mmengine.runner.loops import _InfiniteDataloaderIterator
from torch.utils.data import DataLoader

from .rng_state import preserved_rng_state, restore_rng_state
from .skippable_batch_sampler import (SkippableBatchSampler,
                                      wrap_batch_sampler_cfg)
from .train_state_hook import TrainStateHook


def _set_sampler_epoch(dataloader: DataLoader, epoch: int) -> None:
    """``set_epoch`` on the loader's sampler, as mmengine's loops do."""
    if hasattr(dataloader.sampler, 'set_epoch'):
        dataloader.sampler.set_epoch(epoch)
    elif hasattr(getattr(dataloader.batch_sampler, 'sampler', None),
                 'set_epoch'):
        dataloader.batch_sampler.sampler.set_epoch(epoch)


class _ResumableMixin:
    """State shared by the resumable loops: a skippable batch sampler, the
    hook that saves and stashes the train state, the batch count.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader or dict): The training data loader (config).
        **kwargs: The mmengine loop's other arguments (``max_iters`` or
            ``max_epochs``, ``val_begin``, ``val_interval``, ...).
    """

    def __init__(self, runner, dataloader, **kwargs) -> None:
        if isinstance(dataloader, dict):
            dataloader = wrap_batch_sampler_cfg(dataloader)
        self.resume_state: Optional[dict] = None
        runner.register_hook(TrainStateHook(self))
        super().__init__(runner, dataloader, **kwargs)
        self._batches_in_epoch = 0

    @property
    def _skippable(self) -> Optional[SkippableBatchSampler]:
        sampler = self.dataloader.batch_sampler
        return sampler if isinstance(sampler, SkippableBatchSampler) else None

    def _take_resume_state(self) -> Optional[dict]:
        """The stashed checkpoint state if this run resumed, else None."""
        state, self.resume_state = self.resume_state, None
        if self._iter == 0 and self._epoch == 0:
            return None  # load_from, not resume
        if state is None:
            print_log(
                'The resumed checkpoint has no RNG/data-position state '
                '(not written by a resumable loop): data order is restored '
                'by re-fetching, random streams are not.',
                logger='current', level=logging.WARNING)
        return state

    def _run_val(self) -> None:
        with preserved_rng_state():
            self.runner.val_loop.run()


@LOOPS.register_module()
class ResumableIterBasedTrainLoop(_ResumableMixin, IterBasedTrainLoop):
    """``IterBasedTrainLoop`` with exact resume (see the module docstring).

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader or dict): The training data loader (config).
        max_iters (int): Total training iterations.
        **kwargs: ``val_begin``, ``val_interval``, ``dynamic_intervals``.
    """

    def data_position(self) -> Dict[str, int]:
        """Loader epoch and batches drawn in it so far.

        Returns:
            dict: ``epoch`` and ``batches``.
        """
        return dict(epoch=self.dataloader_iterator._epoch,
                    batches=self._batches_in_epoch)

    def _next_batch(self) -> Sequence[dict]:
        epoch = self.dataloader_iterator._epoch
        data_batch = next(self.dataloader_iterator)
        if self.dataloader_iterator._epoch != epoch:  # wrapped around
            self._batches_in_epoch = 0
        self._batches_in_epoch += 1
        return data_batch

    def _reposition(self, state: Optional[dict]) -> None:
        """Point the data iterator at the checkpoint's position and restore
        the RNG states."""
        if state is None or self._skippable is None:
            print_log(f'Advance dataloader {self._iter} steps by fetching',
                      logger='current', level=logging.WARNING)
            for _ in range(self._iter):
                self._next_batch()
        else:
            epoch, batches = state['data']['epoch'], state['data']['batches']
            _set_sampler_epoch(self.dataloader, epoch)
            self._skippable.skip_next(batches)
            self.dataloader_iterator = _InfiniteDataloaderIterator(
                self.dataloader)
            self.dataloader_iterator._epoch = epoch
            self._batches_in_epoch = batches
            print_log(f'Resumed the data at loader epoch {epoch}, batch '
                      f'{batches} (skipped by index, no data loaded)',
                      logger='current')
        if state is not None:
            restore_rng_state(state['rng'])

    def run(self) -> None:
        """Launch training (mmengine's ``run`` with the exact resume)."""
        self.runner.call_hook('before_train')
        self.runner.call_hook('before_train_epoch')
        if self._iter > 0:
            self._reposition(self._take_resume_state())
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            self.run_iter(self._next_batch())
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None
                    and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0
                         or self._iter == self._max_iters)):
                self._run_val()
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(_ResumableMixin, EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` with exact resume, at epoch boundaries and
    from checkpoints saved mid-epoch (see the module docstring).

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader or dict): The training data loader (config).
        max_epochs (int): Total training epochs.
        **kwargs: ``val_begin``, ``val_interval``, ``dynamic_intervals``.
    """

    def data_position(self) -> Dict[str, int]:
        """Epoch and batches trained in it so far.

        Returns:
            dict: ``epoch`` and ``batches``.
        """
        return dict(epoch=self._epoch, batches=self._batches_in_epoch)

    def run(self) -> None:
        """Launch training (mmengine's ``run``, validation RNG-neutral)."""
        self.runner.call_hook('before_train')
        self._pending = (self._take_resume_state()
                         if self._iter > 0 or self._epoch > 0 else None)
        while self._epoch < self._max_epochs and not self.stop_training:
            self.run_epoch()
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None
                    and self._epoch >= self.val_begin
                    and (self._epoch % self.val_interval == 0
                         or self._epoch == self._max_epochs)):
                self._run_val()
        self.runner.call_hook('after_train')
        return self.runner.model

    def run_epoch(self) -> None:
        """Iterate one epoch, from the resumed batch if resuming into it."""
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        state, self._pending = self._pending, None
        start = 0
        if state is not None and state['data']['epoch'] == self._epoch:
            start = state['data']['batches']  # checkpoint saved mid-epoch
            if start and self._skippable is None:
                raise RuntimeError(
                    'resuming mid-epoch needs the train dataloader as a '
                    'config (its batch sampler is wrapped to skip batches)')
        if start:
            self._skippable.skip_next(start)
        elif state is not None:  # epoch boundary: the iterator is not made
            restore_rng_state(state['rng'])
        iterator = iter(self.dataloader)
        if start:
            restore_rng_state(state['rng'])
        for idx, data_batch in enumerate(iterator, start):
            self._batches_in_epoch = idx + 1
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
        self._batches_in_epoch = 0
