"""Let MMDetection's distributed set-up run on machines without GPUs.

MMDetection's ``default_runtime.py`` asks for the NCCL backend and mmengine
wraps the model in DDP with ``device_ids=[LOCAL_RANK]``; both assume CUDA.
On a CPU-only machine (CI, laptops) ``tools/dist_train.sh CONFIG 2`` must
still work, so the tools switch to gloo and CPU DDP there.
"""
import datetime
import logging

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


def init_cpu_process_group(cfg: Config) -> None:
    """Start the gloo process group for ``--launcher pytorch`` without CUDA.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` first, which a
    CPU-only torch cannot do; once a group exists, mmengine's runner skips
    its own initialisation. GPU runs and other launchers are untouched.

    Args:
        cfg (Config): Config already passed through
            :func:`adapt_dist_cfg_to_device`.
    """
    if (cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available()
            or torch_dist.is_initialized()):
        return
    dist_cfg = cfg.get('env_cfg', {}).get('dist_cfg', {})
    timeout = dist_cfg.get('timeout', 1800)
    torch_dist.init_process_group(
        backend=dist_cfg.get('backend', 'gloo'),
        timeout=datetime.timedelta(seconds=timeout))
