"""Let MMDetection's distributed set-up run on machines without GPUs and in
groups that torchrun restarts.

MMDetection's ``default_runtime.py`` asks for the NCCL backend and mmengine
wraps the model in DDP with ``device_ids=[LOCAL_RANK]``; both assume CUDA.
On a CPU-only machine (CI, laptops) ``tools/dist_train.sh CONFIG 2`` must
still work, so the tools switch to gloo and CPU DDP there.
"""
import datetime
import logging
import os

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import print_log


def adapt_dist_cfg_to_device(cfg: Config) -> Config:
    """Switch a distributed config to gloo and CPU DDP when CUDA is absent.

    Only acts when ``cfg.launcher`` is not ``'none'`` and CUDA is
    unavailable; GPU runs are left exactly as configured.

    Args:
        cfg (Config): The full config; modified in place.

    Returns:
        Config: ``cfg``.
    """
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return cfg
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') != 'gloo':
        print_log(
            f"CUDA is not available: using the 'gloo' backend instead "
            f"of {dist_cfg.get('backend', 'nccl')!r}",
            logger='current',
            level=logging.WARNING)
        dist_cfg['backend'] = 'gloo'
    wrapper_cfg = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel')
    # CPU DDP takes no device ids; mmengine's default passes [LOCAL_RANK].
    wrapper_cfg['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper_cfg
    return cfg


def restart_attempt() -> int:
    """How often torchrun has restarted this process's group (0: the first
    attempt, or not launched by torchrun)."""
    return int(os.environ.get('TORCHELASTIC_RESTART_COUNT', 0))


def _restarted_group_store(timeout: datetime.timedelta):
    """A store for a group that torchrun restarted, or None.

    torchrun's static rendezvous (``--master_addr/--master_port``, as
    ``dist_train.sh`` uses it) serves every restart of the group from one
    TCPStore, and ``init_process_group`` keys the default group's entries
    the same way each time: a restarted rank can read a peer's address of
    the previous, dead attempt and fail (``Gloo connectFullMesh failed ...
    Connection refused``). Each attempt gets keys of its own here.
    """
    attempt = restart_attempt()
    if attempt == 0 or os.environ.get('TORCHELASTIC_USE_AGENT_STORE') != str(
            True):
        return None
    store = torch_dist.TCPStore(
        os.environ['MASTER_ADDR'],
        int(os.environ['MASTER_PORT']),
        int(os.environ['WORLD_SIZE']),
        is_master=False,
        timeout=timeout)
    return torch_dist.PrefixStore(f'mmgc/attempt_{attempt}', store)


def init_launcher_process_group(cfg: Config) -> None:
    """Start the process group for ``--launcher pytorch`` where mmengine's
    ``init_dist`` cannot: without CUDA (it calls ``torch.cuda.set_device``
    first), and in a group torchrun restarted (see
    :func:`_restarted_group_store`). Otherwise (a first CUDA attempt, other
    launchers) mmengine's runner starts it as configured; once a group
    exists, the runner skips its own initialisation.

    Args:
        cfg (Config): Config already passed through
            :func:`adapt_dist_cfg_to_device`.
    """
    if cfg.get('launcher', 'none') != 'pytorch' or \
            torch_dist.is_initialized():
        return
    cuda = torch.cuda.is_available()
    dist_cfg = cfg.get('env_cfg', {}).get('dist_cfg', {})
    timeout = datetime.timedelta(seconds=dist_cfg.get('timeout', 1800))
    store = _restarted_group_store(timeout)
    if cuda and store is None:
        return
    if cuda:
        torch.cuda.set_device(int(os.environ['LOCAL_RANK']))
    kwargs = dict(
        backend=dist_cfg.get('backend', 'nccl' if cuda else 'gloo'),
        timeout=timeout)
    if store is not None:
        kwargs.update(
            store=store,
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']))
    torch_dist.init_process_group(**kwargs)
