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
import logging
import sys

from mmengine.dist import is_main_process
from mmengine.logging import print_log

import mmgc  # noqa: F401  (registers blocks, checkpoint allow-list)
from mmgc.evaluation import empty_test_reason, write_metrics
from mmgc.utils import (build_runner, build_test_config, build_test_parser,
                        parse_tool_args, released_process_group)


def run() -> None:
    args = parse_tool_args(build_test_parser())
    cfg = build_test_config(args)
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
        print_log(
            f'tools/test.py: {reason}{unwritten}',
            logger='current',
            level=logging.ERROR)
        sys.exit(1)
    if args.metrics_out and is_main_process():
        write_metrics(metrics, args.metrics_out)


def main() -> None:
    with released_process_group(exit_process_after=True):
        run()


if __name__ == '__main__':
    main()
