"""Plot curves and measure training speed from mmengine's JSON logs.

MMDetection 3.x's ``tools/analysis_tools/analyze_logs.py`` interface, for
iteration-based as well as epoch-based runs; the logic (log format, key
matching, axes) is :mod:`mmgc.analysis.log_analysis`.

Usage:
    python tools/analysis_tools/analyze_logs.py plot_curve LOG.json ...
        [--keys loss loss_cls coco/bbox_mAP] [--legend ...] [--title T]
        [--out curve.png] [--backend Agg] [--style dark]
        [--start-epoch 1 | --start-iter 1]
    python tools/analysis_tools/analyze_logs.py cal_train_time LOG.json ...
        [--include-outliers]
"""
import argparse
import sys
from typing import List, Optional, Sequence

from mmgc.analysis.log_analysis import (TrainLog, draw_curves,
                                        format_train_time, load_json_log,
                                        plan_curves, train_time_summary)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Analyze Json Log')
    subparsers = parser.add_subparsers(
        dest='task', required=True, help='task parser')
    plot = subparsers.add_parser(
        'plot_curve', help='parser for plotting curves')
    plot.add_argument(
        'json_logs', nargs='+', help='path of train log in json format')
    plot.add_argument(
        '--keys',
        nargs='+',
        default=['bbox_mAP'],
        help='the metrics to plot, e.g. loss loss_cls '
        'bbox_mAP (default: bbox_mAP)')
    plot.add_argument(
        '--start-epoch',
        type=int,
        default=1,
        help='first epoch plotted (epoch-based logs)')
    plot.add_argument(
        '--start-iter', type=int, default=1, help='first iteration plotted')
    plot.add_argument(
        '--eval-interval',
        type=int,
        default=1,
        help='accepted for MMDetection compatibility; not needed: mmengine '
        'logs record the step of every evaluation')
    plot.add_argument('--title', help='title of figure')
    plot.add_argument(
        '--legend',
        nargs='+',
        default=None,
        help='legend of each plot (one per log and key)')
    plot.add_argument(
        '--backend',
        default=None,
        help='matplotlib backend (default: Agg with --out)')
    plot.add_argument(
        '--style',
        default='dark',
        help='matplotlib style; seaborn names (dark, '
        'whitegrid, ...) are accepted (default: dark)')
    plot.add_argument(
        '--out',
        default=None,
        help='save the figure here instead of showing it')
    time_parser = subparsers.add_parser(
        'cal_train_time',
        help='parser for computing the average time per training iteration')
    time_parser.add_argument(
        'json_logs', nargs='+', help='path of train log in json format')
    time_parser.add_argument(
        '--include-outliers',
        action='store_true',
        help='include the first value of every epoch (iteration-based: of '
        'the log) when computing the average time')
    args = parser.parse_args(argv)
    if args.task == 'plot_curve':
        for name in ('start_epoch', 'start_iter', 'eval_interval'):
            if getattr(args, name) < 1:
                parser.error(f'--{name.replace("_", "-")}='
                             f'{getattr(args, name)}: must be at least 1')
    return args


def plot_curve(logs: List[TrainLog], args: argparse.Namespace) -> None:
    """Plot ``args.keys`` of every log in one figure."""
    plan = plan_curves(logs, args.keys, args.legend, args.start_epoch)
    for log, key, _ in plan.curves:
        print(f'plot curve of {log.path}, metric is {key}')
    draw_curves(plan, args.start_epoch, args.start_iter, args.title, args.out,
                args.backend, args.style)
    if args.out is not None:
        print(f'save curve to: {args.out}')


def cal_train_time(logs: List[TrainLog], args: argparse.Namespace) -> None:
    """Print the training speed of every log."""
    for log in logs:
        print(f'{"-" * 5}Analyze train time of {log.path}{"-" * 5}')
        print(
            format_train_time(train_time_summary(log, args.include_outliers)))


def main() -> None:
    args = parse_args()
    task = dict(plot_curve=plot_curve, cal_train_time=cal_train_time)
    try:
        logs = [load_json_log(path) for path in args.json_logs]
        task[args.task](logs, args)
    except (FileNotFoundError, LookupError, ValueError) as err:
        message = err.args[0] if err.args else str(err)
        sys.exit(f'analyze_logs.py {args.task}: error: {message}')


if __name__ == '__main__':
    main()
