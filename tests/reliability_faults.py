"""Fault injection for tests/test_reliability.py, imported by training child
processes through ``custom_imports`` (tests/ on PYTHONPATH).

- ``NaNLossInjectionHook``: makes one loss module return NaN at chosen
  iterations (1-based, as logged).
- ``SampleRecorderHook``: appends each iteration's image ids to a JSON-lines
  file.
- ``SlowIterationHook``: sleeps after each iteration (time to send a
  signal mid-run) and writes the process id to ``pid_<rank>``.
- ``StallHook``: one rank sleeps for a long time after one iteration.
- ``MMGC_TEST_KILL_ON_REPLACE=<file name>[:<n>]``: the process SIGKILLs
  itself at the n-th (default 1st) ``os.replace`` that would commit that
  file (its temporary file fully written), i.e. a kill in the middle of a
  save.
- ``MMGC_TEST_DISK_FULL_ON=<file name>``: writing that file's temporary
  file raises ``OSError(ENOSPC)``, as a full disk does.
"""
import errno
import json
import os
import os.path as osp
import signal
import time
from typing import Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

_KILL_ON = os.environ.get('MMGC_TEST_KILL_ON_REPLACE')
if _KILL_ON:
    _name, _, _nth = _KILL_ON.partition(':')
    _left = [int(_nth or 1)]
    _replace = os.replace

    def _replace_or_die(src, dst, *args, **kwargs):
        if osp.basename(str(dst)) == _name:
            _left[0] -= 1
            if _left[0] == 0:
                os.kill(os.getpid(), signal.SIGKILL)
        return _replace(src, dst, *args, **kwargs)

    os.replace = _replace_or_die

_FULL_ON = os.environ.get('MMGC_TEST_DISK_FULL_ON')
if _FULL_ON:
    _fdopen = os.fdopen

    class _FullDisk:
        """A file object whose writes fail as on a full disk."""

        def __init__(self, f):
            self._f = f

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def _fdopen_full(fd, *args, **kwargs):
        f = _fdopen(fd, *args, **kwargs)
        name = osp.basename(os.readlink(f'/proc/self/fd/{fd}'))
        return _FullDisk(f) if name.startswith(f'.{_FULL_ON}.') else f

    os.fdopen = _fdopen_full


@HOOKS.register_module()
class NaNLossInjectionHook(Hook):
    """Multiply one loss module's output by NaN at the given iterations.

    Args:
        iterations (Sequence[int]): 1-based iterations.
        module (str): Dotted path of the loss module in the model.
    """

    def __init__(self,
                 iterations: Sequence[int],
                 module: str = 'roi_head.bbox_head.loss_cls') -> None:
        self.iterations = set(iterations)
        self.module = module
        self._handle = None

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if runner.iter + 1 not in self.iterations:
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        self._handle = model.get_submodule(self.module).register_forward_hook(
            lambda mod, args, out: out * float('nan'))

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


@HOOKS.register_module()
class SampleRecorderHook(Hook):
    """Append ``{"iter": i, "img_ids": [...]}`` per iteration to a file.

    Args:
        path (str): JSON-lines file; ``{rank}`` in it is replaced by the
            process's rank.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        ids = [s.img_id for s in data_batch['data_samples']]
        with open(self.path.format(rank=runner.rank), 'a') as f:
            f.write(json.dumps(dict(iter=runner.iter + 1, img_ids=ids)) + '\n')


@HOOKS.register_module()
class SlowIterationHook(Hook):
    """Sleep ``seconds`` after each iteration; write ``os.getpid()`` to
    ``<pid_dir>/pid_<rank>`` before training.

    Args:
        pid_dir (str): Directory of the pid files.
        seconds (float): Sleep per iteration.
    """

    def __init__(self, pid_dir: str, seconds: float = 0.5) -> None:
        self.pid_dir = pid_dir
        self.seconds = seconds

    def before_train(self, runner) -> None:
        with open(osp.join(self.pid_dir, f'pid_{runner.rank}'), 'w') as f:
            f.write(str(os.getpid()))

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        time.sleep(self.seconds)


@HOOKS.register_module()
class StallHook(Hook):
    """On ``rank``, sleep ``seconds`` after ``iteration`` (1-based).

    Args:
        rank (int): The rank that stalls.
        iteration (int): After which iteration.
        seconds (float): How long.
    """

    def __init__(self, rank: int, iteration: int, seconds: float) -> None:
        self.rank, self.iteration, self.seconds = rank, iteration, seconds

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        if runner.rank == self.rank and runner.iter + 1 == self.iteration:
            time.sleep(self.seconds)
