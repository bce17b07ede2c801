"""Evaluate a checkpoint with COCO metrics (MMDetection's tools/test.py).

Usage:
    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out preds.pkl]
        [--show-dir DIR] [--metrics-out metrics.json] [--no-classwise]
        [--data-root DIR] [--test-ann FILE] [--test-img PREFIX]
        [--classes NAME ... | from_file] [--progress] [--cfg-options k=v ...]
        [--launcher ...]

A run that evaluated nothing (no detection, no metric) exits with status 1
and a message, and writes no metrics file; ``--out`` is written anyway.
"""
import argparse
import logging
import os.path as osp
import sys

from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.logging import print_log

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import mmgc  # noqa: E402,F401  (registers blocks, checkpoint allow-list)
from mmgc.engine import add_class_count_check  # noqa: E402
from mmgc.evaluation import (empty_test_reason,  # noqa: E402
                             enable_classwise, write_metrics)
from mmgc.utils import (add_config_and_launch_args,  # noqa: E402
                        add_data_args, apply_data_args, build_runner,
                        load_tool_config, parse_tool_args, prepare_launch)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a detector checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the directory to save the evaluation metrics')
    parser.add_argument(
        '--out', type=str,
        help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument(
        '--metrics-out', type=str,
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
        '--no-classwise', dest='classwise', action='store_false',
        help='leave out the per-class AP table (on by default for COCO '
        'metrics: printed and written to --metrics-out)')
    add_data_args(parser)
    add_config_and_launch_args(parser)
    return parse_tool_args(parser)


def build_config(args: argparse.Namespace) -> Config:
    """Load the config and apply the command-line overrides."""
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


def main() -> None:
    args = parse_args()
    cfg = build_config(args)
    runner = build_runner(cfg, args.progress)
    if args.out is not None:
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(
            DumpDetResults(out_file_path=args.out))
    metrics = runner.test()
    reason = empty_test_reason(metrics, runner.test_evaluator,
                               cfg.get('model'))
    if reason is not None:
        unwritten = (f'; {args.metrics_out} was not written'
                     if args.metrics_out else '')
        print_log(f'tools/test.py: {reason}{unwritten}', logger='current',
                  level=logging.ERROR)
        sys.exit(1)
    if args.metrics_out and is_main_process():
        write_metrics(metrics, args.metrics_out)


if __name__ == '__main__':
    main()
