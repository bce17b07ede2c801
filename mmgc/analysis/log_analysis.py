"""Training curves and speed from mmengine's JSON logs.

The logs are the ``<work_dir>/<timestamp>/vis_data/<timestamp>.json`` (or
``scalars.json``) files mmengine writes: one JSON dict per line, training
lines with ``step`` (the global iteration), ``iter``, ``epoch``
(epoch-based runs), ``lr``, ``loss*``, ``time``, ``data_time``; validation
lines with the metrics (``coco/bbox_mAP``, ...) and ``step`` (the epoch of
an epoch-based run, else the iteration).

A key matches a log key exactly or as the part after its ``/``
(``bbox_mAP`` is ``coco/bbox_mAP``). Training keys are plotted against the
iteration; validation metrics too, at the last iteration of their epoch,
unless every key is a validation metric of epoch-based logs (then against
the epoch, as MMDetection does).

Used by ``tools/analysis_tools/analyze_logs.py`` (MMDetection 3.x's
interface, for iteration-based as well as epoch-based runs).
"""
import json
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

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


class CurvePlan(NamedTuple):
    """What :func:`draw_curves` plots: one ``(log, key, label)`` per curve,
    keys resolved (:func:`resolve_key`), and the x axis."""
    curves: List[Tuple[TrainLog, str, str]]
    by_epoch_axis: bool


def plan_curves(logs: Sequence[TrainLog],
                keys: Sequence[str],
                legend: Optional[Sequence[str]] = None,
                start_epoch: int = 1) -> CurvePlan:
    """Resolve ``keys`` in every log, label the curves and choose the x
    axis.

    Args:
        logs (Sequence[TrainLog]): The logs.
        keys (Sequence[str]): Keys to plot (see :func:`resolve_key`).
        legend (Sequence[str], optional): One label per log and key; by
            default ``<log file name>_<key>``.
        start_epoch (int): First epoch plotted; other than 1 only for
            epoch-based logs.

    Returns:
        CurvePlan: The curves, in log-major order.

    Raises:
        KeyError: A key is missing or ambiguous in a log.
        ValueError: ``legend`` has the wrong length, or ``start_epoch``
            is given for an iteration-based log.
    """
    resolved = [[resolve_key(log, key) for key in keys] for log in logs]
    if legend is None:
        legend = [
            f'{osp.splitext(osp.basename(log.path))[0]}_{key}'
            for log, log_keys in zip(logs, resolved) for key in log_keys
        ]
    if len(legend) != len(logs) * len(keys):
        raise ValueError(
            f'--legend has {len(legend)} entries; expected one per log and '
            f'key: {len(logs)} x {len(keys)} = {len(logs) * len(keys)}')
    for log in logs:
        if not log.by_epoch and start_epoch != 1:
            raise ValueError(f'--start-epoch={start_epoch}: {log.path} is '
                             'iteration-based; use --start-iter')
    by_epoch_axis = all(log.by_epoch for log in logs) and all(
        any(key in r for r in log.val)
        for log, log_keys in zip(logs, resolved) for key in log_keys)
    curves = [(log, key) for log, log_keys in zip(logs, resolved)
              for key in log_keys]
    return CurvePlan([(log, key, label)
                      for (log, key), label in zip(curves, legend)],
                     by_epoch_axis)


def draw_curves(plan: CurvePlan,
                start_epoch: int = 1,
                start_iter: int = 1,
                title: Optional[str] = None,
                out: Optional[str] = None,
                backend: Optional[str] = None,
                style: str = 'dark') -> None:
    """Plot every curve of ``plan`` in one figure; save it to ``out`` (or
    show it).

    Args:
        plan (CurvePlan): From :func:`plan_curves`.
        start_epoch (int): First epoch plotted (epoch-based logs).
        start_iter (int): First iteration plotted.
        title (str, optional): Figure title.
        out (str, optional): Image file; its folder is created.
        backend (str, optional): matplotlib backend (default: ``Agg``
            when saving).
        style (str): matplotlib style; seaborn names are accepted
            (:func:`use_style`).
    """
    import matplotlib
    if backend is not None:
        matplotlib.use(backend)
    elif out is not None:
        matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    use_style(plt, style)

    figure = plt.figure(figsize=(8, 4.5))
    for log, key, label in plan.curves:
        xs, ys, is_val = curve(log, key, plan.by_epoch_axis, start_epoch,
                               start_iter)
        if is_val:  # few points: markers
            plt.plot(xs, ys, label=label, marker='o')
        else:
            plt.plot(xs, ys, label=label, linewidth=0.8)
    plt.xlabel('epoch' if plan.by_epoch_axis else 'iter')
    plt.legend()
    if title is not None:
        plt.title(title)
    if out is None:
        plt.show()
    else:
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        plt.savefig(out, dpi=100, bbox_inches='tight')
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


def train_time_summary(log: TrainLog, include_outliers: bool = False) -> dict:
    """Slowest and fastest logged iteration (epoch-based: epoch), average
    time per iteration and its spread.

    Args:
        log (TrainLog): The log.
        include_outliers (bool): Keep the first timed record of every
            epoch (iteration-based: of the log), a warm-up.

    Returns:
        dict: ``average`` (s/iter), ``std``, ``slowest`` and ``fastest``
        (``(iteration or epoch, s/iter)``), ``last_iter`` (the last logged
        iteration) and, for epoch-based logs, ``epochs``
        (``{epoch: (iters, s/iter, s)}``).
    """
    groups = train_times(log, include_outliers)
    last_iter = max(iteration(r) for r in log.train)
    if not log.by_epoch:
        records = groups[None]
        times = np.array([r['time'] for r in records])
        slowest, fastest = int(times.argmax()), int(times.argmin())
        return dict(
            average=float(times.mean()),
            std=float(times.std()),
            slowest=(iteration(records[slowest]), float(times[slowest])),
            fastest=(iteration(records[fastest]), float(times[fastest])),
            last_iter=last_iter)
    ends = epoch_end_iterations(log)
    epochs = sorted(groups)
    means = np.array([np.mean([r['time'] for r in groups[e]]) for e in epochs])
    slowest, fastest = int(means.argmax()), int(means.argmin())
    summary = dict(
        average=float(means.mean()),
        std=float(means.std()),
        slowest=(epochs[slowest], float(means[slowest])),
        fastest=(epochs[fastest], float(means[fastest])),
        last_iter=last_iter,
        epochs={})
    for epoch, mean in zip(epochs, means):
        iters = ends[epoch] - max(
            [it for ep, it in ends.items() if ep < epoch], default=0)
        summary['epochs'][epoch] = (iters, float(mean), float(mean * iters))
    return summary


def format_train_time(summary: dict) -> str:
    """MMDetection's ``cal_train_time`` report of one
    :func:`train_time_summary`, ending with an empty line."""
    (slow, slow_t), (fast, fast_t) = summary['slowest'], summary['fastest']
    if 'epochs' in summary:
        lines = [
            f'slowest epoch {slow}, average time is {slow_t:.4f} s/iter',
            f'fastest epoch {fast}, average time is {fast_t:.4f} s/iter',
            f'time std over epochs is {summary["std"]:.4f}'
        ]
        lines += [
            f'epoch {epoch}: {iters} iters, {mean:.4f} s/iter, '
            f'{seconds:.1f} s/epoch'
            for epoch, (iters, mean, seconds) in summary['epochs'].items()
        ]
    else:
        lines = [
            f'slowest logged iter {slow}, time is {slow_t:.4f} s/iter',
            f'fastest logged iter {fast}, time is {fast_t:.4f} s/iter',
            f'time std over logged iters is {summary["std"]:.4f}'
        ]
    average, last = summary['average'], summary['last_iter']
    lines.append(f'average iter time: {average:.4f} s/iter ({last} iters: '
                 f'about {average * last:.0f} s)\n')
    return '\n'.join(lines)
