"""Fail a distributed job whose rank stopped making progress, naming it.

A rank stuck in a hook, a data loader or a dead file system leaves the
other ranks waiting in their next collective: with NCCL until its watchdog
fires, with gloo until ``env_cfg.dist_cfg.timeout`` (mmengine's default
1800 s), and neither says which rank stalled or where. On every rank,
:class:`StallWatchdogHook` notes the runner's phase at each hook call
(``'before_train_iter'`` of iteration 5, ...). A daemon thread checks it;
when the phase has not changed for 90% of ``dist_cfg.timeout`` seconds
(before the peers' collectives time out) it logs the
rank, the phase, the iteration and every thread's Python stack, then ends
the process with :data:`STALLED_EXIT_CODE`. Its peers' next collective
then fails at once (the connection is gone) and the launcher ends the job.
"""
import faulthandler
import logging
import os
import sys
import threading
import time
from typing import Optional

from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

#: Exit status of a rank the watchdog ended (``EX_SOFTWARE``).
STALLED_EXIT_CODE = 70


@HOOKS.register_module()
class StallWatchdogHook(Hook):
    """End a rank whose phase has not changed for ``timeout`` seconds.

    Only acts in distributed runs (more than one rank).

    Args:
        timeout (float, optional): Seconds without progress; None: 90% of
            the config's ``env_cfg.dist_cfg.timeout`` (mmengine's default
            1800 s), the time a collective waits for a peer, so that the
            stalled rank is named before its peers time out.
        interval (float, optional): Seconds between checks; None: a
            twentieth of the timeout, at most 5.
    """

    priority = 'VERY_HIGH'  # note the phase before other hooks run

    def __init__(self,
                 timeout: Optional[float] = None,
                 interval: Optional[float] = None) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError(f'timeout must be > 0 seconds, got {timeout!r}')
        self.timeout = timeout
        self.interval = interval
        self.phase = 'start'
        self.iteration = 0
        self._since = time.monotonic()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _note(self, runner, phase: str) -> None:
        self.phase, self.iteration = phase, runner.iter + 1
        self._since = time.monotonic()

    def before_run(self, runner) -> None:
        """Start the watchdog thread (distributed runs only).

        Args:
            runner (Runner): The runner.
        """
        if get_world_size() < 2:
            return
        if self.timeout is None:
            dist_cfg = runner.cfg.get('env_cfg', {}).get('dist_cfg', {})
            self.timeout = 0.9 * float(dist_cfg.get('timeout', 1800))
        interval = self.interval or min(self.timeout / 20, 5.)
        self._since = time.monotonic()
        self._thread = threading.Thread(
            target=self._watch,
            args=(get_rank(), interval),
            name='mmgc-stall-watchdog',
            daemon=True)
        self._thread.start()

    def _watch(self, rank: int, interval: float) -> None:
        while not self._stop.wait(interval):
            idle = time.monotonic() - self._since
            if idle < self.timeout:
                continue
            print_log(
                f'rank {rank} made no progress for {idle:.0f} s (timeout '
                f'{self.timeout:g} s, from env_cfg.dist_cfg.timeout): it '
                f'has been in {self.phase} of iteration {self.iteration} '
                'since; '
                f'ending it with status {STALLED_EXIT_CODE}. Its threads:',
                logger='current',
                level=logging.ERROR)
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            sys.stderr.flush()
            os._exit(STALLED_EXIT_CODE)

    # mmengine's Hook routes before/after_{train,val,test}_{iter,epoch}
    # through these four.
    def _before_iter(self, runner, batch_idx, data_batch=None, mode='train'):
        self._note(runner, f'before_{mode}_iter')

    def _after_iter(self,
                    runner,
                    batch_idx,
                    data_batch=None,
                    outputs=None,
                    mode='train'):
        self._note(runner, f'after_{mode}_iter')

    def _before_epoch(self, runner, mode='train'):
        self._note(runner, f'before_{mode}_epoch')

    def _after_epoch(self, runner, mode='train'):
        self._note(runner, f'after_{mode}_epoch')

    def before_train(self, runner) -> None:
        self._note(runner, 'before_train')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        self._note(runner, 'before_save_checkpoint')

    def after_run(self, runner) -> None:
        """Stop the watchdog thread.

        Args:
            runner (Runner): The runner.
        """
        self._stop.set()
