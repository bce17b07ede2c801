"""Plot curves and measure training speed from mmengine's JSON logs.

MMDetection 3.x's ``tools/analysis_tools/analyze_logs.py`` interface, for
iteration-based as well as epoch-based runs. The logs are the
``<work_dir>/<timestamp>/vis_data/<timestamp>.json`` (or ``scalars.json``)
files mmengine writes: one JSON dict per line, training lines with
``step`` (the global iteration), ``iter``, ``epoch`` (epoch-based runs),
``lr``, ``loss*``, ``time``, ``data_time``; validation lines with the
metrics (``coco/bbox_mAP``, ...) and ``step`` (the epoch of an
epoch-based run, else the iteration).

Usage:
    python tools/analysis_tools/analyze_logs.py plot_curve LOG.json ...
        [--keys loss loss_cls coco/bbox_mAP] [--legend ...] [--title T]
        [--out curve.png] [--backend Agg] [--style dark]
        [--start-epoch 1 | --start-iter 1]
    python tools/analysis_tools/analyze_logs.py cal_train_time LOG.json ...
        [--include-outliers]

A key matches a log key exactly or as the part after its ``/``
(``bbox_mAP`` is ``coco/bbox_mAP``). Training keys are plotted against the
iteration; validation metrics too, at the last iteration of their epoch,
unless every key is a validation metric of epoch-based logs (then against
the epoch, as MMDetection does).
"""
import argparse
import json
import os
import os.path as osp
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

#: MMDetection's ``--style`` values are seaborn styles; matplotlib ships
#: them as ``seaborn-v0_8-<name>``.
SEABORN_STYLES = ('dark', 'darkgrid', 'white', 'whitegrid', 'ticks')


@dataclass
class TrainLog:
    """One JSON log, split into training and validation records.

    Args:
        path (str): The log file.
        train (list[dict]): Training records (no ``/`` in their keys).
        val (list[dict]): Validation records (metrics like
            ``coco/bbox_mAP``).
    """

    path: str
    train: List[dict] = field(default_factory=list)
    val: List[dict] = field(default_factory=list)

    @property
    def by_epoch(self) -> bool:
        """Whether the run was epoch-based (its training records have an
        ``epoch``)."""
        return any('epoch' in r for r in self.train)

    def keys(self) -> List[str]:
        """All scalar keys, training then validation, in first-seen
        order."""
        seen: Dict[str, None] = {}
        for record in self.train + self.val:
            seen.update(dict.fromkeys(record))
        return list(seen)


def iteration(record: dict) -> int:
    """Global iteration of a training record."""
    return int(record['step'] if 'step' in record else record['iter'])


def load_json_log(path: str) -> TrainLog:
    """Read an mmengine JSON log.

    Args:
        path (str): ``vis_data/<timestamp>.json`` or ``scalars.json``.

    Returns:
        TrainLog: The records; lines with one key only (as MMDetection
        does) and metrics without a ``step`` (a test run's) are skipped.
    """
    if not path.endswith('.json'):
        raise ValueError(f'{path!r} is not a JSON log (expected *.json, '
                         'e.g. work_dir/<timestamp>/vis_data/scalars.json)')
    if not osp.isfile(path):
        raise FileNotFoundError(f'log file not found: {path!r}')
    log = TrainLog(path)
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f'{path}:{number}: not a JSON line '
                                 f'({err.msg})') from None
            if not isinstance(record, dict) or len(record) <= 1:
                continue
            if any('/' in key for key in record):
                if 'step' in record:  # not a test run's metrics
                    log.val.append(record)
            elif 'step' in record or 'iter' in record:
                log.train.append(record)
    if not log.train and not log.val:
        raise ValueError(
            f'{path!r} has no training or validation records (lines with a '
            '"step"); a tools/test.py log holds test metrics only')
    return log


def resolve_key(log: TrainLog, key: str) -> str:
    """The log's name for ``key``: itself, or the one key ending in
    ``/<key>``."""
    keys = log.keys()
    if key in keys:
        return key
    matches = [k for k in keys if k.endswith('/' + key)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise KeyError(f'{key!r} is ambiguous in {log.path}: {matches}')
    hint = (' (validation metrics are logged only by runs with a val loop)'
            if 'mAP' in key else '')
    raise KeyError(f'{log.path} has no key {key!r}{hint}; available: '
                   f'{", ".join(keys)}')


def epoch_end_iterations(log: TrainLog) -> Dict[int, int]:
    """Last logged iteration of every epoch of an epoch-based log."""
    ends: Dict[int, int] = {}
    for record in log.train:
        if 'epoch' in record:
            epoch = int(record['epoch'])
            ends[epoch] = max(ends.get(epoch, 0), iteration(record))
    return ends


def curve(log: TrainLog, key: str, by_epoch_axis: bool, start_epoch: int,
          start_iter: int) -> Tuple[np.ndarray, np.ndarray, bool]:
    """Points of one key.

    Args:
        log (TrainLog): The log.
        key (str): A key of the log (see :func:`resolve_key`).
        by_epoch_axis (bool): x is the epoch (validation metrics of an
            epoch-based log only), else the iteration.
        start_epoch (int): First epoch plotted (epoch-based logs).
        start_iter (int): First iteration plotted.

    Returns:
        tuple: ``xs``, ``ys`` and whether the key is a validation metric.
    """
    is_val = any(key in r for r in log.val)
    ends = epoch_end_iterations(log)
    xs, ys = [], []
    if is_val:
        for record in log.val:
            if key not in record:
                continue
            step = int(record['step'])
            if log.by_epoch:
                if step < start_epoch:
                    continue
                if not by_epoch_axis:  # the epoch's last iteration
                    ended = [it for ep, it in ends.items() if ep <= step]
                    if not ended:
                        continue
                    step = max(ended)
            if by_epoch_axis or step >= start_iter:
                xs.append(step)
                ys.append(record[key])
    else:
        for record in log.train:
            if key not in record or iteration(record) < start_iter or (
                    'epoch' in record and record['epoch'] < start_epoch):
                continue
            xs.append(iteration(record))
            ys.append(record[key])
    return np.array(xs), np.array(ys, dtype=float), is_val


def use_style(plt, style: str) -> None:
    """Apply a matplotlib style, accepting MMDetection's seaborn names."""
    name = (f'seaborn-v0_8-{style}' if style in SEABORN_STYLES
            and style not in plt.style.available else style)
    if name not in plt.style.available and name != 'default':
        raise ValueError(
            f'--style={style!r} is not a matplotlib style; use one of '
            f'{", ".join(SEABORN_STYLES + ("default", ))}, '
            f'{", ".join(plt.style.available)}')
    plt.style.use(name)


def plot_curve(logs: Sequence[TrainLog], args: argparse.Namespace) -> None:
    """Plot ``args.keys`` of every log in one figure; save it to
    ``args.out`` (or show it)."""
    import matplotlib
    if args.backend is not None:
        matplotlib.use(args.backend)
    elif args.out is not None:
        matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    use_style(plt, args.style)

    resolved = [[resolve_key(log, key) for key in args.keys] for log in logs]
    legend = args.legend
    if legend is None:
        legend = [
            f'{osp.splitext(osp.basename(log.path))[0]}_{key}'
            for log, keys in zip(logs, resolved) for key in keys
        ]
    if len(legend) != len(logs) * len(args.keys):
        raise ValueError(
            f'--legend has {len(legend)} entries; expected one per log and '
            f'key: {len(logs)} x {len(args.keys)} = '
            f'{len(logs) * len(args.keys)}')
    for log in logs:
        if not log.by_epoch and args.start_epoch != 1:
            raise ValueError(f'--start-epoch={args.start_epoch}: '
                             f'{log.path} is iteration-based; use '
                             '--start-iter')
    by_epoch_axis = all(log.by_epoch for log in logs) and all(
        any(key in r for r in log.val)
        for log, keys in zip(logs, resolved) for key in keys)

    figure = plt.figure(figsize=(8, 4.5))
    labels = iter(legend)
    for log, keys in zip(logs, resolved):
        for key in keys:
            print(f'plot curve of {log.path}, metric is {key}')
            xs, ys, is_val = curve(log, key, by_epoch_axis, args.start_epoch,
                                   args.start_iter)
            if is_val:
                plt.plot(xs, ys, label=next(labels), marker='o')
            else:
                plt.plot(xs, ys, label=next(labels), linewidth=0.8)
    plt.xlabel('epoch' if by_epoch_axis else 'iter')
    plt.legend()
    if args.title is not None:
        plt.title(args.title)
    if args.out is None:
        plt.show()
    else:
        out_dir = osp.dirname(osp.abspath(args.out))
        os.makedirs(out_dir, exist_ok=True)
        plt.savefig(args.out, dpi=100, bbox_inches='tight')
        print(f'save curve to: {args.out}')
    plt.close(figure)


def train_times(log: TrainLog,
                include_outliers: bool) -> Dict[Optional[int], List[dict]]:
    """Training records with a ``time`` per epoch (one group, key None, for
    an iteration-based log), without each group's first record (warm-up)
    unless ``include_outliers``."""
    groups: Dict[Optional[int], List[dict]] = {}
    for record in log.train:
        if 'time' in record:
            groups.setdefault(record.get('epoch'), []).append(record)
    if not include_outliers:
        groups = {k: v[1:] for k, v in groups.items() if len(v) > 1}
    if not groups:
        raise ValueError(
            f'{log.path} has too few timed training records (the first of '
            'each epoch is left out; reduce the log interval or pass '
            '--include-outliers)')
    return groups


def cal_train_time(logs: Sequence[TrainLog],
                   args: argparse.Namespace) -> List[dict]:
    """Print the slowest/fastest logged iteration (epoch) and the average
    time per iteration (and per epoch) of every log.

    Returns:
        list[dict]: Per log: ``average`` (s/iter), ``slowest``,
        ``fastest`` (``(iteration or epoch, s/iter)``), ``std`` and, for
        epoch-based logs, ``epochs`` (``{epoch: (iters, s/iter, s)}``).
    """
    summaries = []
    for log in logs:
        print(f'{"-" * 5}Analyze train time of {log.path}{"-" * 5}')
        groups = train_times(log, args.include_outliers)
        if log.by_epoch:
            ends = epoch_end_iterations(log)
            epochs = sorted(groups)
            means = np.array([np.mean([r['time'] for r in groups[e]])
                              for e in epochs])
            slowest, fastest = int(means.argmax()), int(means.argmin())
            summary = dict(
                average=float(means.mean()), std=float(means.std()),
                slowest=(epochs[slowest], float(means[slowest])),
                fastest=(epochs[fastest], float(means[fastest])),
                epochs={})
            print(f'slowest epoch {epochs[slowest]}, average time is '
                  f'{means[slowest]:.4f} s/iter')
            print(f'fastest epoch {epochs[fastest]}, average time is '
                  f'{means[fastest]:.4f} s/iter')
            print(f'time std over epochs is {summary["std"]:.4f}')
            for epoch, mean in zip(epochs, means):
                iters = ends[epoch] - max(
                    [it for ep, it in ends.items() if ep < epoch],
                    default=0)
                summary['epochs'][epoch] = (iters, float(mean),
                                            float(mean * iters))
                print(f'epoch {epoch}: {iters} iters, {mean:.4f} s/iter, '
                      f'{mean * iters:.1f} s/epoch')
        else:
            records = groups[None]
            times = np.array([r['time'] for r in records])
            slowest, fastest = int(times.argmax()), int(times.argmin())
            summary = dict(
                average=float(times.mean()), std=float(times.std()),
                slowest=(iteration(records[slowest]), float(times[slowest])),
                fastest=(iteration(records[fastest]), float(times[fastest])))
            print(f'slowest logged iter {summary["slowest"][0]}, time is '
                  f'{times[slowest]:.4f} s/iter')
            print(f'fastest logged iter {summary["fastest"][0]}, time is '
                  f'{times[fastest]:.4f} s/iter')
            print(f'time std over logged iters is {summary["std"]:.4f}')
        last = max(iteration(r) for r in log.train)
        print(f'average iter time: {summary["average"]:.4f} s/iter '
              f'({last} iters: about {summary["average"] * last:.0f} s)\n')
        summaries.append(summary)
    return summaries


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Analyze Json Log')
    subparsers = parser.add_subparsers(dest='task', required=True,
                                       help='task parser')
    plot = subparsers.add_parser('plot_curve',
                                 help='parser for plotting curves')
    plot.add_argument('json_logs', nargs='+',
                      help='path of train log in json format')
    plot.add_argument('--keys', nargs='+', default=['bbox_mAP'],
                      help='the metrics to plot, e.g. loss loss_cls '
                      'bbox_mAP (default: bbox_mAP)')
    plot.add_argument('--start-epoch', type=int, default=1,
                      help='first epoch plotted (epoch-based logs)')
    plot.add_argument('--start-iter', type=int, default=1,
                      help='first iteration plotted')
    plot.add_argument(
        '--eval-interval', type=int, default=1,
        help='accepted for MMDetection compatibility; not needed: mmengine '
        'logs record the step of every evaluation')
    plot.add_argument('--title', help='title of figure')
    plot.add_argument('--legend', nargs='+', default=None,
                      help='legend of each plot (one per log and key)')
    plot.add_argument('--backend', default=None,
                      help='matplotlib backend (default: Agg with --out)')
    plot.add_argument('--style', default='dark',
                      help='matplotlib style; seaborn names (dark, '
                      'whitegrid, ...) are accepted (default: dark)')
    plot.add_argument('--out', default=None,
                      help='save the figure here instead of showing it')
    time_parser = subparsers.add_parser(
        'cal_train_time',
        help='parser for computing the average time per training iteration')
    time_parser.add_argument('json_logs', nargs='+',
                             help='path of train log in json format')
    time_parser.add_argument(
        '--include-outliers', action='store_true',
        help='include the first value of every epoch (iteration-based: of '
        'the log) when computing the average time')
    args = parser.parse_args(argv)
    if args.task == 'plot_curve':
        for name in ('start_epoch', 'start_iter', 'eval_interval'):
            if getattr(args, name) < 1:
                parser.error(f'--{name.replace("_", "-")}='
                             f'{getattr(args, name)}: must be at least 1')
    return args


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
