"""A checkpoint hook whose saves survive a kill at any moment.

mmengine 0.10.7's ``CheckpointHook`` (1) deletes the oldest kept checkpoint
(and the previous best one) *before* writing the new one, (2) writes the
checkpoint in place and (3) writes ``last_checkpoint`` in place. A process
killed during a save can therefore leave a truncated ``iter_N.pth``, an
empty ``last_checkpoint``, or (with ``max_keep_ckpts=1``) no loadable
checkpoint at all.

:class:`AtomicCheckpointHook` runs mmengine's own saving (``after_train_iter``,
``after_train_epoch``, ``after_val_epoch``) as a transaction: the checkpoint
goes through the ``atomic_local`` storage backend; the deletions mmengine
asks of the hook's ``file_backend`` are held back; mmengine's in-place
pointer write lands in a scratch directory (it is given the runner with
another ``work_dir``); then the pointer is committed with
:func:`atomic_write` and only then are the held-back files deleted. It also
refuses to write weights that are NaN or infinite.
``tests/test_engine_contracts.py`` checks the mmengine behaviour this
relies on.
"""
import os.path as osp
import tempfile
from contextlib import contextmanager
from typing import Iterator, List, Optional, Tuple

import torch
from mmengine.hooks import CheckpointHook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from .atomic_io import atomic_write

POINTER = 'last_checkpoint'


def committed_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``work_dir``'s ``last_checkpoint`` names, if any.

    Args:
        work_dir (str): The run's work dir.

    Returns:
        str or None: The path written in the pointer file.
    """
    path = osp.join(work_dir, POINTER)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return f.read().strip() or None


def first_nonfinite_key(module: torch.nn.Module) -> Optional[str]:
    """Name of the first floating-point state entry holding NaN or inf.

    Args:
        module (nn.Module): The model (unwrapped).

    Returns:
        str or None: The state-dict key, or None when all are finite.
    """
    for key, value in module.state_dict().items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return key
    return None


class _DeferredRemovals:
    """A file backend that forwards everything to ``backend`` except
    ``remove`` and ``rmtree``, which it records for :meth:`commit`."""

    def __init__(self, backend) -> None:
        self._backend = backend
        self._pending: List[Tuple[str, str]] = []

    def __getattr__(self, name: str):
        return getattr(self._backend, name)

    def remove(self, filepath) -> None:
        self._pending.append(('remove', filepath))

    def rmtree(self, dir_path) -> None:
        self._pending.append(('rmtree', dir_path))

    def commit(self) -> None:
        """Delete the recorded paths (those still there)."""
        for method, path in self._pending:
            exists = (
                self._backend.isfile(path)
                if method == 'remove' else self._backend.isdir(path))
            if exists:
                getattr(self._backend, method)(path)
        self._pending.clear()


class _RunnerWithWorkDir:
    """The runner, seen with another ``work_dir`` (mmengine writes the
    ``last_checkpoint`` pointer under the runner's ``work_dir``)."""

    def __init__(self, runner, work_dir: str) -> None:
        self._runner = runner
        self.work_dir = work_dir

    def __getattr__(self, name: str):
        return getattr(self._runner, name)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with atomic checkpoint and ``last_checkpoint``
    writes, deletion of old checkpoints after the new one is in place, and
    a finiteness check of the weights.

    Takes every argument of mmengine's ``CheckpointHook``. With a local
    ``out_dir`` and no ``backend_args``, checkpoints are written through the
    ``atomic_local`` backend; other storage backends are used as given.

    Args:
        check_finite (bool): Raise ``FloatingPointError`` instead of saving
            weights or buffers that contain NaN or inf. Defaults to True.
        **kwargs: ``CheckpointHook`` arguments.
    """

    def __init__(self, *args, check_finite: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.check_finite = check_finite

    def before_train(self, runner) -> None:
        """Resolve ``out_dir`` and pick the atomic backend for local paths.

        Args:
            runner (Runner): The runner of the training process.
        """
        if (self.backend_args is None and self.file_client_args is None
                and '://' not in str(self.out_dir or runner.work_dir)):
            self.backend_args = dict(backend='atomic_local')
        super().before_train(runner)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        """Save a checkpoint when due (mmengine's), atomically.

        Args:
            runner (Runner): The runner of the training process.
            batch_idx (int): The index of the batch in the train loop.
            data_batch (dict or tuple or list, optional): The batch.
            outputs (dict, optional): The model's outputs.
        """
        with self._transaction(runner) as view:
            super().after_train_iter(view, batch_idx, data_batch, outputs)

    def after_train_epoch(self, runner) -> None:
        """Save a checkpoint when due (mmengine's), atomically.

        Args:
            runner (Runner): The runner of the training process.
        """
        with self._transaction(runner) as view:
            super().after_train_epoch(view)

    def after_val_epoch(self, runner, metrics) -> None:
        """Save the best checkpoint when improved (mmengine's), atomically.

        Args:
            runner (Runner): The runner of the training process.
            metrics (dict): Evaluation results of all metrics.
        """
        with self._transaction(runner) as view:
            super().after_val_epoch(view, metrics)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Refuse to save non-finite weights (``check_finite``).

        Args:
            runner (Runner): The runner of the training process.
            checkpoint (dict): The checkpoint about to be written.

        Raises:
            FloatingPointError: A weight or buffer holds NaN or inf.
        """
        if not self.check_finite:
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        bad_key = first_nonfinite_key(model)
        if bad_key is not None:
            meta = checkpoint.get('meta', {})
            raise FloatingPointError(
                f'refusing to save a checkpoint at iteration '
                f"{meta.get('iter', runner.iter + 1)}: {bad_key!r} holds NaN "
                f'or inf values; the last checkpoint '
                f'({committed_checkpoint(runner.work_dir)}) is left as it is')

    @contextmanager
    def _transaction(self, runner) -> Iterator[_RunnerWithWorkDir]:
        """Run mmengine's saving with deletions held back and the pointer
        written to a scratch directory; on success commit the pointer
        atomically, then delete."""
        backend = getattr(self, 'file_backend', None)
        if backend is None:  # before_train has not run: nothing is saved
            yield runner
            return
        deferred = _DeferredRemovals(backend)
        self.file_backend = deferred
        try:
            with tempfile.TemporaryDirectory(prefix='mmgc-ckpt-') as scratch:
                yield _RunnerWithWorkDir(runner, scratch)
                pointer = osp.join(scratch, POINTER)
                if osp.isfile(pointer):  # mmengine saved a checkpoint
                    with open(pointer) as f:
                        atomic_write(
                            osp.join(runner.work_dir, POINTER), f.read())
        except OSError as e:
            if e.errno is None:
                raise
            raise OSError(
                e.errno, f'checkpoint not saved at iteration '
                f'{runner.iter + 1}: {e.strerror}; training stops. The last '
                f'checkpoint ({committed_checkpoint(runner.work_dir)}) is '
                'intact and nothing was deleted: make room, then continue '
                'with --resume auto') from e
        finally:
            self.file_backend = backend
        deferred.commit()
