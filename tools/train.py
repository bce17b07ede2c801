"""Train a detector with mmgc blocks (MMDetection's tools/train.py).

Usage:
    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--data-root DIR] [--{train,val,test}-ann FILE]
        [--{train,val,test}-img PREFIX] [--classes NAME ... | from_file]
        [--progress] [--cfg-options k=v ...] [--launcher ...]
"""
import argparse
import logging
import os.path as osp
import sys

from mmengine.config import Config
from mmengine.logging import print_log

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import mmgc  # noqa: E402,F401  (registers blocks, checkpoint allow-list)
from mmgc.engine import (add_class_count_check,  # noqa: E402
                         enable_reliability)
from mmgc.utils import (add_config_and_launch_args,  # noqa: E402
                        add_data_args, apply_data_args, build_runner,
                        load_tool_config, parse_tool_args, prepare_launch)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp', action='store_true', default=False,
        help='enable automatic-mixed-precision training')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='enable automatically scaling LR to the actual batch size')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or, with no value, from the '
        'latest checkpoint in the work dir')
    add_data_args(parser)
    add_config_and_launch_args(parser)
    return parse_tool_args(parser)


def build_config(args: argparse.Namespace) -> Config:
    """Load the config and apply the command-line overrides."""
    cfg = load_tool_config(args.config, args.launcher, args.cfg_options,
                           args.work_dir)
    apply_data_args(cfg, args)
    add_class_count_check(cfg)  # heads' num_classes vs the data sets
    if args.amp:
        wrapper_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper_type == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in your config.',
                      logger='current', level=logging.WARNING)
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
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(
                f'--resume checkpoint not found: {args.resume!r}')
        cfg.resume = True
        cfg.load_from = args.resume
    # exact resume, atomic checkpoints, NaN guard, rank check (opt out:
    # --cfg-options reliability.enable=False)
    enable_reliability(cfg)
    return prepare_launch(cfg)


def main() -> None:
    args = parse_args()
    cfg = build_config(args)
    runner = build_runner(cfg, args.progress)
    runner.train()


if __name__ == '__main__':
    main()
