"""Config loading shared by ``tools/train.py`` and ``tools/test.py``."""
import argparse
import os
import os.path as osp
from typing import Optional, Sequence, Tuple

from mmengine.config import Config, DictAction

from .cpu_dist import adapt_dist_cfg_to_device, init_cpu_process_group
from .known_warnings import filter_third_party_warnings


def add_cfg_options_arg(parser: argparse.ArgumentParser,
                        applies_to: str = 'the config',
                        example: str = '"model.backbone.depth=101"') -> None:
    """Add MMDetection's ``--cfg-options key=value ...`` argument.

    Args:
        parser (argparse.ArgumentParser): Modified in place.
        applies_to (str): What the overrides change, for the help text.
        example (str): An example override for the help text.
    """
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help=f'override settings in {applies_to}, key=value pairs, e.g. '
        f'{example}')


def add_shape_arg(parser: argparse.ArgumentParser,
                  default: Tuple[int, int] = (800, 1333)) -> None:
    """Add ``--shape H [W]`` (MMDetection 2.x's get_flops convention: one
    value is a square); read it back with :func:`image_shape`.

    Args:
        parser (argparse.ArgumentParser): Modified in place.
        default (tuple[int, int]): ``(H, W)`` when the flag is not given.
    """
    parser.add_argument(
        '--shape', type=int, nargs='+', default=list(default),
        help=f'input image size H W (one value: square); default '
        f'{default[0]} {default[1]}')


def image_shape(parser: argparse.ArgumentParser,
                shape: Sequence[int]) -> Tuple[int, int]:
    """``--shape`` as ``(H, W)``; a parser error names a bad value.

    Args:
        parser (argparse.ArgumentParser): For the error message.
        shape (Sequence[int]): The parsed ``--shape`` values.

    Returns:
        tuple[int, int]: Height and width.
    """
    if len(shape) not in (1, 2) or min(shape) < 1:
        parser.error(f'--shape takes H [W], positive; got {list(shape)}')
    return (shape[0], shape[-1])


def add_config_and_launch_args(parser: argparse.ArgumentParser) -> None:
    """Add MMDetection's ``--cfg-options``, ``--launcher`` and
    ``--local-rank`` arguments, and mmgc's ``--progress``, to a tool's
    parser.

    Args:
        parser (argparse.ArgumentParser): Modified in place.
    """
    add_cfg_options_arg(parser, example='train_cfg.max_iters=10 '
                        '"model.backbone.depth=101"')
    parser.add_argument(
        '--progress', action='store_true',
        help='console: one progress bar per phase (training: loss and ETA), '
        'warnings and errors; the full log still goes to '
        '<work_dir>/<timestamp>/<timestamp>.log')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_tool_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the command line and export ``LOCAL_RANK`` if no launcher did;
    with ``--progress``, hide the known third-party warnings.

    Args:
        parser (argparse.ArgumentParser): A parser that went through
            :func:`add_config_and_launch_args`.

    Returns:
        argparse.Namespace: The parsed arguments.
    """
    args = parser.parse_args()
    if getattr(args, 'progress', False):
        filter_third_party_warnings()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


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


def build_runner(cfg: Config, progress: bool = False):
    """The runner of ``tools/train.py`` and ``tools/test.py``.

    Args:
        cfg (Config): The prepared config.
        progress (bool): ``--progress``: mmgc's ``ProgressRunner`` (progress
            bars on the console, the full log in the work dir).

    Returns:
        Runner: mmengine's ``Runner``, the config's ``runner_type``, or
        ``ProgressRunner``.
    """
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if progress:
        if cfg.get('runner_type', None) is not None:
            raise ValueError(
                f'--progress replaces the runner, but the config sets '
                f'runner_type={cfg.runner_type!r}; drop one of the two')
        from mmgc.engine import ProgressRunner
        return ProgressRunner.from_cfg(cfg)
    return (Runner.from_cfg(cfg)
            if 'runner_type' not in cfg else RUNNERS.build(cfg))


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
