"""Time and peak memory of a callable, measured in this process.

Shared by ``tools/analysis_tools/benchmark_blocks.py`` (blocks) and
``benchmark.py`` (whole detectors):

* :func:`prepare_process`: glibc's malloc returns large blocks to the
  kernel on every free, so each run page-faults its tensors in again; the
  process re-executes itself with a high ``MALLOC_MMAP_THRESHOLD_`` (and
  ``MALLOC_TRIM_THRESHOLD_``; glibc reads them only at start-up) so that
  timings measure the kernels rather than page faults, and fixes torch's
  intra-op thread count;
* :func:`min_time` / :func:`interleaved_min_times`: warm-up runs, then the
  minimum of several runs (interleaved when comparing, so that load from
  other processes hits all candidates alike), by the wall clock or by the
  process's CPU time (:data:`CLOCKS`; the latter, with one thread, does not
  count the time other processes hold the cores);
* :func:`peak_extra_bytes`: on the CPU the rise of the process's peak
  resident set (``VmHWM``, reset through ``/proc/self/clear_refs`` after
  ``malloc_trim``) over its resident set before the call -- it sees every
  allocation, torch's and the BLAS's, including outputs and gradients, but
  pages that the allocator keeps resident are reused without showing, so
  whole detectors vary by +-15% from run to run;
* :func:`peak_tensor_bytes`: the peak of the bytes held by tensors
  allocated during the call -- on the CPU from the profiler's allocation
  events (``profile_memory=True``), on CUDA ``max_memory_allocated``;
  exact and repeatable, but blind to memory outside torch's allocator
  (BLAS and OpenMP workspaces, C++ containers of mmcv's ops).
"""
import ctypes
import gc
import os
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

MALLOC_ENV = {
    'MALLOC_MMAP_THRESHOLD_': str(1 << 34),
    'MALLOC_TRIM_THRESHOLD_': str(1 << 34),
}

Fn = Callable[[], object]

#: Clocks for the timings: wall time, or CPU time of this process (all its
#: threads; spin-waiting threads count).
CLOCKS: Dict[str, Callable[[], float]] = {
    'wall': time.perf_counter,
    'cpu': time.process_time,
}


def reexec_with_malloc_env(threads: Optional[int] = None) -> None:
    """Restart the interpreter with :data:`MALLOC_ENV` (and
    ``OMP_NUM_THREADS=threads``) unless this process already has them.

    Args:
        threads (int, optional): Thread count to export.
    """
    want = dict(MALLOC_ENV)
    if threads is not None:
        want['OMP_NUM_THREADS'] = str(threads)
    if all(os.environ.get(k)
           for k in MALLOC_ENV) and (threads is None
                                     or os.environ.get('OMP_NUM_THREADS')
                                     == str(threads)):
        return
    env = dict(os.environ)
    for key, value in want.items():
        if key == 'OMP_NUM_THREADS' or not env.get(key):
            env[key] = value
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def cpu_model() -> str:
    """The CPU's model name and logical core count, from ``/proc/cpuinfo``
    (Linux), or ``platform.processor()`` elsewhere; every timing table
    names it, since ratios differ between CPUs."""
    try:
        with open('/proc/cpuinfo') as f:
            lines = f.read().splitlines()
        names = [
            line.split(':', 1)[1].strip() for line in lines
            if line.startswith('model name')
        ]
        if names:
            return f'{names[0]} ({len(names)} logical cores)'
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine() or 'unknown CPU'


def prepare_process(threads: int) -> None:
    """Re-execute with :data:`MALLOC_ENV` if needed, then use ``threads``
    intra-op threads.

    Args:
        threads (int): ``torch.set_num_threads`` value.
    """
    reexec_with_malloc_env(threads)
    import torch
    torch.set_num_threads(threads)


def _synchronize(device: str) -> None:
    if device.startswith('cuda'):
        import torch
        torch.cuda.synchronize(device)


def _run_time(fn: Fn, device: str, clock: Callable[[], float]) -> float:
    _synchronize(device)
    start = clock()
    fn()
    _synchronize(device)
    return clock() - start


def interleaved_min_times(fns: Sequence[Fn],
                          repeats: int,
                          warmup: int = 1,
                          device: str = 'cpu',
                          clock: str = 'wall') -> List[float]:
    """Minimum run time of each function, runs interleaved
    (``a b a b ...``).

    Args:
        fns (Sequence[callable]): Functions without arguments.
        repeats (int): Timed runs of each.
        warmup (int): Untimed runs of each first.
        device (str): ``'cuda...'`` synchronises around every run.
        clock (str): A key of :data:`CLOCKS`.

    Returns:
        list[float]: Seconds, one per function.
    """
    if clock not in CLOCKS:
        raise ValueError(f'clock must be one of {sorted(CLOCKS)}, got '
                         f'{clock!r}')
    for _ in range(warmup):
        for fn in fns:
            fn()
    best = [float('inf')] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], _run_time(fn, device, CLOCKS[clock]))
    return best


def min_time(fn: Fn,
             repeats: int,
             warmup: int = 1,
             device: str = 'cpu',
             clock: str = 'wall') -> float:
    """Minimum run time of ``fn`` over ``repeats`` runs after ``warmup``.

    Args:
        fn (callable): A function without arguments.
        repeats (int): Timed runs.
        warmup (int): Untimed runs first.
        device (str): ``'cuda...'`` synchronises around every run.
        clock (str): A key of :data:`CLOCKS`.

    Returns:
        float: Seconds.
    """
    return interleaved_min_times([fn], repeats, warmup, device, clock)[0]


def _status_bytes(key: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f'{key} not in /proc/self/status')


def peak_extra_bytes(fn: Fn, device: str = 'cpu') -> int:
    """Peak memory ``fn`` adds to what is allocated before it.

    Args:
        fn (callable): A function without arguments; its result is kept
            alive until the end (the output counts).
        device (str): ``'cpu'``: peak resident set rise (Linux); ``'cuda...'``:
            torch's CUDA allocator peak.

    Returns:
        int: Bytes.
    """
    gc.collect()
    if device.startswith('cuda'):
        import torch
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        result = fn()  # noqa: F841  (kept alive: the output counts)
        torch.cuda.synchronize(device)
        return max(torch.cuda.max_memory_allocated(device) - before, 0)
    ctypes.CDLL('libc.so.6').malloc_trim(0)
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset VmHWM to VmRSS
    before = _status_bytes('VmRSS')
    result = fn()  # noqa: F841
    return max(_status_bytes('VmHWM') - before, 0)


def peak_tensor_bytes(fn: Fn, device: str = 'cpu') -> int:
    """Peak bytes of the tensors allocated during ``fn`` (freed or not).

    Args:
        fn (callable): A function without arguments; its result is kept
            alive until the end (the output counts).
        device (str): ``'cpu'``: torch profiler allocation events;
            ``'cuda...'``: torch's CUDA allocator peak.

    Returns:
        int: Bytes.
    """
    if device.startswith('cuda'):
        return peak_extra_bytes(fn, device)
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    gc.collect()
    with profile(
            activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()  # noqa: F841
    changes = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == '[memory]' and e.device_type() == DeviceType.CPU)
    held = peak = 0
    for _, nbytes in changes:  # frees of older tensors count negative
        held += nbytes
        peak = max(peak, held)
    return peak
