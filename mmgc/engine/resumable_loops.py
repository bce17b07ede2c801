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
uninterrupted run was at: after the loader's iterator is created and
positioned, before the next batch is fetched. With ``num_workers=0`` and a
fixed seed the resumed run is bit-identical; with workers it draws exactly
the remaining batches (the workers' own augmentation streams restart).
Validation leaves the training RNG states as it found them
(:class:`TrainStateHook`), so a resumed run, which does not repeat the
validation after its checkpoint, stays in step. Without the data loader
config (a built ``DataLoader``) they fall back to mmengine's skipping by
fetching.

Both loops run mmengine's own ``run`` / ``run_epoch`` and extend them only
through public points: the iteration-based loop's ``dataloader_iterator``
(replaced by :class:`ResumableDataIterator`), ``run_iter``, and the batch
sampler. ``tests/test_engine_contracts.py`` checks the mmengine behaviour
this relies on.
"""
import logging
import time
from functools import partial
from typing import Dict, Iterator, Optional, Sequence

from mmengine.logging import print_log
from mmengine.registry import LOOPS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop
from torch.utils.data import DataLoader

from .rng_state import preserved_rng_state, restore_rng_state
from .skippable_batch_sampler import (SkippableBatchSampler,
                                      wrap_batch_sampler_cfg)
from .train_state_hook import TrainStateHook


def _set_sampler_epoch(dataloader: DataLoader, epoch: int) -> None:
    """``set_epoch`` on the loader's sampler, as mmengine's loops do."""
    if hasattr(dataloader.sampler, 'set_epoch'):
        dataloader.sampler.set_epoch(epoch)
    elif hasattr(
            getattr(dataloader.batch_sampler, 'sampler', None), 'set_epoch'):
        dataloader.batch_sampler.sampler.set_epoch(epoch)


def _sampler_names(dataloader: DataLoader) -> str:
    """``'Outer(Inner(Sampler))'``: the loader's batch sampler and sampler
    types, for messages."""
    names, obj = [], dataloader.batch_sampler
    while obj is not None and len(names) < 4:
        names.append(type(obj).__name__)
        obj = getattr(obj, 'batch_sampler', None) or getattr(
            obj, 'sampler', None)
    return '('.join(names) + ')' * (len(names) - 1)


def _skippable(dataloader: DataLoader) -> Optional[SkippableBatchSampler]:
    sampler = dataloader.batch_sampler
    return sampler if isinstance(sampler, SkippableBatchSampler) else None


class ResumableDataIterator:
    """Draws batches from a data loader pass after pass, restarting it at
    its end as mmengine's ``IterBasedTrainLoop`` does, and knows where it
    is: ``epoch`` (passes completed) and ``batches`` (drawn in this pass).

    After :meth:`resume` it answers the draws with which mmengine's ``run``
    skips the trained iterations, then restores the checkpoint's RNG states
    right before the first batch that is trained.

    Args:
        dataloader (DataLoader): The training data loader.
        iterator (Iterator, optional): An iterator of ``dataloader`` that
            has not handed out a batch yet, to continue; None makes one.
    """

    def __init__(self,
                 dataloader: DataLoader,
                 iterator: Optional[Iterator] = None) -> None:
        self.dataloader = dataloader
        self.epoch = 0
        self.batches = 0
        self._iterator = iter(dataloader) if iterator is None else iterator
        self._skip_draws = 0  # draws of mmengine's resume skip still due
        self._skip_by_index = False  # answer them with None, load nothing
        self._rng_state: Optional[dict] = None  # restored at the next fetch
        self._expected_skip = None  # set while the resume is unchecked
        self._fetched_since_skip = 0

    def __iter__(self) -> 'ResumableDataIterator':
        return self

    def resume(self,
               skip_draws: int,
               rng_state: Optional[dict],
               position: Optional[Dict[str, int]] = None) -> None:
        """Prepare for mmengine's skip of ``skip_draws`` trained iterations.

        Args:
            skip_draws (int): Draws mmengine makes to skip the trained
                iterations (the resumed iteration count).
            rng_state (dict, optional): RNG states restored before the first
                batch after the skip.
            position (dict, optional): ``epoch`` and ``batches`` of the
                checkpoint. Given (the loader's batch sampler must be a
                :class:`SkippableBatchSampler`), the sampler is positioned
                by index and the skip draws load no data; None: the skip
                draws fetch batches as mmengine expects.
        """
        self._skip_draws = self._expected_skip = skip_draws
        self._fetched_since_skip = 0
        self._rng_state = rng_state
        self._skip_by_index = position is not None
        if position is not None:
            self.epoch, self.batches = position['epoch'], position['batches']
            _set_sampler_epoch(self.dataloader, self.epoch)
            # the RNG states are restored once the skipped batches are
            # drawn (a sampler may draw random numbers for each, as
            # GroupMultiSourceSampler does), before the first one trained
            then = None if rng_state is None else partial(
                restore_rng_state, rng_state)
            self._rng_state = None
            _skippable(self.dataloader).skip_next(self.batches, then=then)
            self._iterator = None  # made, positioned, at the next fetch

    def check_resumed(self) -> None:
        """Raise if mmengine's ``run`` did not skip the trained iterations
        with exactly ``skip_draws`` draws before training on the next batch
        (called with each batch trained).

        Raises:
            RuntimeError: The skip differs from the one mmgc relies on.
        """
        if self._expected_skip is None:
            return
        if self._skip_draws or self._fetched_since_skip != 1:
            raise RuntimeError(
                "mmengine's IterBasedTrainLoop.run() no longer skips the "
                f'{self._expected_skip} trained iterations of a resumed run '
                f'by drawing {self._expected_skip} batches from '
                f'dataloader_iterator before training ('
                f'{self._expected_skip - self._skip_draws} skip draws made, '
                f'{self._fetched_since_skip} batches fetched after them), '
                'which the exact resume of ResumableIterBasedTrainLoop '
                '(mmgc/engine/resumable_loops.py) relies on')
        self._expected_skip = None

    def __next__(self) -> Optional[Sequence[dict]]:
        if self._skip_draws:
            self._skip_draws -= 1
            if self._skip_by_index:
                return None  # mmengine drops it; the sampler skipped it
            return self._fetch()
        if self._iterator is None:
            self._iterator = iter(self.dataloader)
        if self._rng_state is not None:
            restore_rng_state(self._rng_state)
            self._rng_state = None
        self._fetched_since_skip += 1
        return self._fetch()

    def _fetch(self) -> Sequence[dict]:
        try:
            batch = next(self._iterator)
        except StopIteration:
            print_log(
                'Reach the end of the dataloader, it will be restarted and '
                'continue to iterate. It is recommended to use '
                '`mmengine.dataset.InfiniteSampler` to enable the dataloader '
                'to iterate infinitely.',
                logger='current',
                level=logging.WARNING)
            self.epoch += 1
            self.batches = 0
            _set_sampler_epoch(self.dataloader, self.epoch)
            if self.dataloader.num_workers > 0:
                time.sleep(2)  # as mmengine: let the old workers shut down
            self._iterator = iter(self.dataloader)
            try:
                batch = next(self._iterator)
            except StopIteration:
                raise RuntimeError(
                    'the training data loader yields no batch, not even '
                    'right after a restart (batch sampler '
                    f'{_sampler_names(self.dataloader)}, '
                    f'{len(self.dataloader)} batch(es) by its length): an '
                    'empty data set, or a sampler whose iteration cannot '
                    'start again') from None
        self.batches += 1
        return batch


class _ResumableMixin:
    """State shared by the resumable loops: a skippable batch sampler and
    the hook that saves and stashes the train state.

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

    def _take_resume_state(self) -> Optional[dict]:
        """The stashed checkpoint state if this run resumed, else None."""
        state, self.resume_state = self.resume_state, None
        if self.iter == 0 and self.epoch == 0:
            return None  # load_from, not resume
        if state is None:
            print_log(
                'The resumed checkpoint has no RNG/data-position state '
                '(not written by a resumable loop): data order is restored '
                'by re-fetching, random streams are not.',
                logger='current',
                level=logging.WARNING)
        return state


@LOOPS.register_module()
class ResumableIterBasedTrainLoop(_ResumableMixin, IterBasedTrainLoop):
    """``IterBasedTrainLoop`` with exact resume (see the module docstring).

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader or dict): The training data loader (config).
        max_iters (int): Total training iterations.
        **kwargs: ``val_begin``, ``val_interval``, ``dynamic_intervals``.
    """

    def __init__(self, runner, dataloader, **kwargs) -> None:
        super().__init__(runner, dataloader, **kwargs)
        # Continue the loader iterator mmengine's __init__ made: a second
        # one would start the workers again, draw another base seed from
        # the global RNG and, with samplers that make their index stream
        # once (InfiniteSampler), take indices from the stream the first
        # one's workers prefetch from and close it when the first is
        # dropped (StopIteration or a hang at the first batch).
        iterator = getattr(self.dataloader_iterator, '_iterator', None)
        if iterator is None:  # a changed mmengine: make our own, drawing
            with preserved_rng_state():  # nothing from the global RNG
                iterator = iter(self.dataloader)
        self.dataloader_iterator = ResumableDataIterator(
            self.dataloader, iterator)

    def data_position(self) -> Dict[str, int]:
        """Loader epoch and batches drawn in it so far.

        Returns:
            dict: ``epoch`` and ``batches``.
        """
        return dict(
            epoch=self.dataloader_iterator.epoch,
            batches=self.dataloader_iterator.batches)

    def run(self) -> None:
        """Launch training (mmengine's ``run``, resuming the data exactly)."""
        if self.iter > 0:
            state = self._take_resume_state()
            by_index = (
                state is not None and _skippable(self.dataloader) is not None)
            self.dataloader_iterator.resume(
                self.iter, state and state['rng'],
                state['data'] if by_index else None)
            if by_index:
                print_log(
                    f'Resuming the data at loader epoch '
                    f"{state['data']['epoch']}, batch "
                    f"{state['data']['batches']}: the {self.iter} trained "
                    'iterations are skipped by index, no data loaded',
                    logger='current')
        return super().run()

    def run_iter(self, data_batch: Sequence[dict]) -> None:
        """Train on one batch (mmengine's ``run_iter``).

        Args:
            data_batch (Sequence[dict]): Batch of data from the loader.
        """
        self.dataloader_iterator.check_resumed()
        super().run_iter(data_batch)


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

    def __init__(self, runner, dataloader, **kwargs) -> None:
        super().__init__(runner, dataloader, **kwargs)
        self._pending: Optional[dict] = None
        self._first_batch = 0  # index of this epoch's first trained batch
        self._batches_in_epoch = 0

    def data_position(self) -> Dict[str, int]:
        """Epoch and batches trained in it so far.

        Returns:
            dict: ``epoch`` and ``batches``.
        """
        return dict(epoch=self.epoch, batches=self._batches_in_epoch)

    def run(self) -> None:
        """Launch training (mmengine's ``run``)."""
        self._pending = self._take_resume_state()
        return super().run()

    def run_epoch(self) -> None:
        """Iterate one epoch (mmengine's ``run_epoch``), from the resumed
        batch if resuming into it."""
        state, self._pending = self._pending, None
        self._first_batch = 0
        if state is not None:
            data = state['data']
            if data['epoch'] == self.epoch and data['batches']:
                skippable = _skippable(self.dataloader)
                if skippable is None:
                    raise RuntimeError(
                        'resuming mid-epoch needs the train dataloader as a '
                        'config (its batch sampler is wrapped to skip '
                        'batches)')
                self._first_batch = data['batches']  # saved mid-epoch
                # restored once the loader's iterator is made and
                # positioned, before it fetches
                skippable.skip_next(
                    self._first_batch,
                    then=partial(restore_rng_state, state['rng']))
            else:  # epoch boundary: before the loader's iterator is made
                restore_rng_state(state['rng'])
        super().run_epoch()
        self._batches_in_epoch = 0

    def run_iter(self, idx, data_batch: Sequence[dict]) -> None:
        """Train on one batch (mmengine's ``run_iter``), numbered within the
        whole epoch.

        Args:
            idx (int): Index of the batch among those drawn this epoch.
            data_batch (Sequence[dict]): Batch of data from the loader.
        """
        idx += self._first_batch
        self._batches_in_epoch = idx + 1
        super().run_iter(idx, data_batch)
