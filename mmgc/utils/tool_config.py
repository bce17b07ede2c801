"""Config loading shared by ``tools/train.py`` and ``tools/test.py``."""
import os.path as osp
from typing import Optional

from mmengine.config import Config

from .cpu_dist import adapt_dist_cfg_to_device, init_cpu_process_group


def load_tool_config(config: str, launcher: str = 'none',
                     cfg_options: Optional[dict] = None,
                     work_dir: Optional[str] = None) -> Config:
    """Load a config the way MMDetection's tools do.

    Args:
        config (str): Path of the config file.
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
        cfg_options (dict, optional): ``--cfg-options`` overrides.
        work_dir (str, optional): ``--work-dir``; by default the config's own
            ``work_dir`` or ``./work_dirs/<config name>``.

    Returns:
        Config: The merged config.
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file not found: {config!r}')
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])
    return cfg


def prepare_launch(cfg: Config) -> Config:
    """Make a distributed config runnable on this machine (gloo and CPU DDP
    without CUDA) and start the CPU process group if needed.

    Args:
        cfg (Config): Modified in place.

    Returns:
        Config: ``cfg``.
    """
    adapt_dist_cfg_to_device(cfg)
    init_cpu_process_group(cfg)
    return cfg
