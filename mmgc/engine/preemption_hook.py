"""Stop a training run cleanly when the cluster asks it to.

Schedulers announce preemption and the end of a time limit with a signal:
Slurm sends SIGTERM (``scancel``, preemption) or, with
``--signal=USR1@90``, SIGUSR1 90 seconds before the limit; torchrun passes
SIGTERM on to its workers. :class:`PreemptionHook` catches these signals,
lets the current iteration finish, has every rank agree on the iteration
to stop after, writes an atomic checkpoint of it (rank 0 writes it for all
ranks, as every mmengine checkpoint), and exits with
:data:`PREEMPTED_EXIT_CODE`. ``tools/train.py --resume auto`` continues
from that checkpoint; ``tools/slurm_train.sh`` requeues the job when it
sees the exit status.
"""
import logging
import os.path as osp
import signal
from typing import Dict, Optional, Sequence

import torch
from mmengine.dist import all_reduce, barrier, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from .atomic_checkpoint_hook import POINTER, committed_checkpoint
from .atomic_io import atomic_write

#: Exit status of a preempted run (``EX_TEMPFAIL`` of sysexits.h: a
#: temporary failure, try again).
PREEMPTED_EXIT_CODE = 75


class Preempted(SystemExit):
    """Raised on every rank after the preemption checkpoint is written;
    exits the process with :data:`PREEMPTED_EXIT_CODE`."""

    def __init__(self, message: str) -> None:
        super().__init__(PREEMPTED_EXIT_CODE)
        self.message = message

    def __str__(self) -> str:
        return self.message


@HOOKS.register_module()
class PreemptionHook(Hook):
    """On one of ``signals``, finish the iteration, save a checkpoint and
    exit with :data:`PREEMPTED_EXIT_CODE`.

    The handlers are installed when the hook is made, before the data
    loader starts its workers: a worker process inherits them, so a signal
    sent to the whole job (Slurm signals every process of a step) does not
    kill it. They are restored after the run. In distributed training the
    ranks agree after every iteration (one all-reduce of one number) so that
    all stop after the same one, wherever the signal arrived.

    Args:
        signals (Sequence[str]): Signal names. Defaults to SIGTERM and
            SIGUSR1.
    """

    priority = 'LOWEST'  # after the checkpoint hook has saved, if due

    def __init__(self, signals: Sequence[str] = ('SIGTERM', 'SIGUSR1')):
        unknown = [s for s in signals if not hasattr(signal, str(s))]
        if unknown:
            raise ValueError(f'unknown signal name(s) {unknown}; e.g. '
                             "'SIGTERM', 'SIGUSR1', 'SIGUSR2', 'SIGINT'")
        self.signals = [getattr(signal, s) for s in signals]
        self.received: Optional[int] = None
        self._previous: Dict[int, object] = {}
        self._install()

    def _install(self) -> None:
        try:
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: signals cannot be caught
            self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum

    def after_run(self, runner) -> None:
        """Restore the signal handlers found when the hook was made."""
        self._restore()

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        """Stop after this iteration if any rank was signalled.

        Args:
            runner (Runner): The runner of the training process.
            batch_idx (int): The index of the batch in the train loop.
            data_batch (dict or tuple or list, optional): The batch.
            outputs (dict, optional): The model's outputs.

        Raises:
            Preempted: After the checkpoint is written (exit status
                :data:`PREEMPTED_EXIT_CODE`).
        """
        signum = self.received or 0
        if get_world_size() > 1:
            flag = torch.tensor([signum], dtype=torch.int64)
            all_reduce(flag, op='max')
            signum = int(flag.item())
        if not signum:
            return
        step = runner.iter + 1
        path = osp.join(runner.work_dir, f'iter_{step}.pth')
        committed = committed_checkpoint(runner.work_dir)
        if committed is not None and osp.basename(committed) == \
                osp.basename(path):  # the checkpoint hook has just saved it
            path = committed
        else:
            runner.save_checkpoint(
                runner.work_dir,
                osp.basename(path),
                by_epoch=False,
                backend_args=dict(backend='atomic_local'))
            if runner.rank == 0:
                atomic_write(osp.join(runner.work_dir, POINTER), path)
        barrier()
        message = (f'{signal.Signals(signum).name} received: stopped after '
                   f'iteration {step}, checkpoint {path}; exiting with '
                   f'status {PREEMPTED_EXIT_CODE}. Continue with '
                   '`tools/train.py CONFIG --resume auto` (same work dir)')
        print_log(message, logger='current', level=logging.WARNING)
        self._restore()
        raise Preempted(message)
