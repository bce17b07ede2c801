"""Command lines and configs of mmgc's tools: the arguments they share
(``--cfg-options``, ``--shape``, the launcher's), loading a config as
MMDetection's tools do, and the whole command line and config of
``tools/train.py`` (:func:`build_train_parser`, :func:`build_train_config`)
and ``tools/test.py`` (:func:`build_test_parser`,
:func:`build_test_config`)."""
import argparse
import logging
import os
import os.path as osp
from typing import Optional, Sequence, Tuple

from mmengine.config import Config, DictAction
from mmengine.logging import print_log

from .cpu_dist import (adapt_dist_cfg_to_device, init_launcher_process_group,
                       restart_attempt)
from .data_location import add_data_args, apply_data_args
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
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help=f'override settings in {applies_to}, key=value pairs, e.g. '
        f'{example}')


def add_shape_arg(
    parser: argparse.ArgumentParser, default: Tuple[int, int] = (800, 1333)
) -> None:
    """Add ``--shape H [W]`` (MMDetection 2.x's get_flops convention: one
    value is a square); read it back with :func:`image_shape`.

    Args:
        parser (argparse.ArgumentParser): Modified in place.
        default (tuple[int, int]): ``(H, W)`` when the flag is not given.
    """
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        default=list(default),
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
    add_cfg_options_arg(
        parser, example='train_cfg.max_iters=10 '
        '"model.backbone.depth=101"')
    parser.add_argument(
        '--progress',
        action='store_true',
        help='console: one progress bar per phase (training: loss and ETA), '
        'warnings and errors; the full log still goes to '
        '<work_dir>/<timestamp>/<timestamp>.log')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
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


def load_tool_config(config: str,
                     launcher: str = 'none',
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
    without CUDA) and start the process group where mmengine cannot (no
    CUDA, a group torchrun restarted).

    Args:
        cfg (Config): Modified in place.

    Returns:
        Config: ``cfg``.
    """
    adapt_dist_cfg_to_device(cfg)
    init_launcher_process_group(cfg)
    return cfg


def build_train_parser() -> argparse.ArgumentParser:
    """The command line of ``tools/train.py`` (MMDetection's, with mmgc's
    data-location and ``--progress`` arguments); parse it with
    :func:`parse_tool_args`."""
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='enable automatically scaling LR to the actual batch size')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint; with no value or "auto", '
        'from the newest valid checkpoint in the work dir, or from the '
        'beginning if there is none (a group restarted by torchrun '
        'resumes so by itself)')
    add_data_args(parser)
    add_config_and_launch_args(parser)
    return parser


def build_train_config(args: argparse.Namespace) -> Config:
    """Load the training config and apply the command line of
    :func:`build_train_parser`: data location, ``--amp``,
    ``--auto-scale-lr``, ``--resume``, mmgc's class-count check and
    reliability hooks, and the launcher's process group.

    Args:
        args (argparse.Namespace): The parsed command line.

    Returns:
        Config: The config to build the runner from.

    Raises:
        ValueError: ``--amp`` with an optimizer wrapper other than
            ``OptimWrapper``.
        RuntimeError: ``--auto-scale-lr`` without ``auto_scale_lr`` in the
            config.
        FileNotFoundError: ``--resume`` names a missing checkpoint.
    """
    from ..engine import (BadCheckpointError, add_class_count_check,
                          check_checkpoint, enable_reliability,
                          find_resume_checkpoint)
    cfg = load_tool_config(args.config, args.launcher, args.cfg_options,
                           args.work_dir)
    apply_data_args(cfg, args)
    add_class_count_check(cfg)  # heads' num_classes vs the data sets
    if args.amp:
        wrapper_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper_type == 'AmpOptimWrapper':
            print_log(
                'AMP training is already enabled in your config.',
                logger='current',
                level=logging.WARNING)
        elif wrapper_type != 'OptimWrapper':
            raise ValueError(
                f'--amp needs optim_wrapper.type="OptimWrapper", got '
                f'{wrapper_type!r}')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        scale_cfg = cfg.get('auto_scale_lr', {})
        if 'base_batch_size' not in scale_cfg:
            raise RuntimeError('--auto-scale-lr needs auto_scale_lr = dict('
                               'base_batch_size=...) in the config')
        cfg.auto_scale_lr.enable = True
    resume = args.resume
    if resume is None and restart_attempt() > 0:
        resume = 'auto'  # torchrun restarted the group: continue the run
    if resume == 'auto':
        found = find_resume_checkpoint(cfg.work_dir)
        cfg.resume = found is not None
        if found is not None:  # else a fresh start (the config's load_from)
            cfg.load_from = found
    elif resume is not None:
        if not osp.isfile(resume):
            raise FileNotFoundError(
                f'--resume checkpoint not found: {resume!r}')
        try:
            check_checkpoint(resume)
        except BadCheckpointError as e:
            raise BadCheckpointError(
                f'--resume: {e}; pass another checkpoint, or --resume auto '
                'to take the newest valid one in the work dir') from None
        cfg.resume = True
        cfg.load_from = resume
    # exact resume, atomic checkpoints, NaN guard, rank check (opt out:
    # --cfg-options reliability.enable=False)
    enable_reliability(cfg)
    return prepare_launch(cfg)


def build_test_parser() -> argparse.ArgumentParser:
    """The command line of ``tools/test.py`` (MMDetection's, with mmgc's
    ``--metrics-out``, ``--no-classwise``, data-location and
    ``--progress`` arguments); parse it with :func:`parse_tool_args`."""
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a detector checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the directory to save the evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument(
        '--metrics-out',
        type=str,
        help='write the evaluation metrics to this JSON file')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory (inside the run\'s log dir) where drawings of the '
        'predictions are saved')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--no-classwise',
        dest='classwise',
        action='store_false',
        help='leave out the per-class AP table (on by default for COCO '
        'metrics: printed and written to --metrics-out)')
    add_data_args(parser)
    add_config_and_launch_args(parser)
    return parser


def build_test_config(args: argparse.Namespace) -> Config:
    """Load the test config and apply the command line of
    :func:`build_test_parser`: the checkpoint, data location, class-count
    check, per-class AP, drawing hook and the launcher's process group.

    Args:
        args (argparse.Namespace): The parsed command line.

    Returns:
        Config: The config to build the runner from.

    Raises:
        FileNotFoundError: The checkpoint does not exist.
        ValueError: ``--out`` is not a pickle file name.
    """
    from ..engine import add_class_count_check
    from ..evaluation import enable_classwise
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(
            f'checkpoint file not found: {args.checkpoint!r}')
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out={args.out!r}: the output file must be a '
                         'pickle file (.pkl or .pickle)')
    cfg = load_tool_config(args.config, args.launcher, args.cfg_options,
                           args.work_dir)
    apply_data_args(cfg, args)
    add_class_count_check(cfg)  # heads' num_classes vs the test data set
    if args.classwise:
        enable_classwise(cfg.test_evaluator)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        from mmdet.engine.hooks.utils import trigger_visualization_hook
        cfg = trigger_visualization_hook(cfg, args)
    return prepare_launch(cfg)
