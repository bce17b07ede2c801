"""A study's table: per-variant aggregation over seeds and its reports
(Markdown, JSON, PNG chart).

Input: one record per finished run (``variant``, ``seed``, ``metrics``
as ``tools/test.py --metrics-out`` wrote them, ``train_s_per_iter``,
``peak_memory_mb``, ``infer_s_per_img``) and the complexity (``params``,
``flops``) of each variant. AP is aggregated as the mean and the spread
(sample standard deviation, ``ddof=1``; none for a single seed) over
seeds; values stay as the metrics files hold them (COCO AP in [0, 1]),
the Markdown shows them x100.
"""
import json
import math
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

from ..engine.atomic_io import atomic_write

#: Metric keys of mmdet's CocoMetric (``coco/<iou_type>_mAP``) per column.
AP_KEYS = {'bbox': 'coco/bbox_mAP', 'segm': 'coco/segm_mAP'}


def mean_spread(values: Sequence[float]) -> Dict[str, Optional[float]]:
    """Mean and sample standard deviation (``ddof=1``) of ``values``.

    Args:
        values (Sequence[float]): One value per seed.

    Returns:
        dict: ``mean``, ``spread`` (None for fewer than two values) and
        ``n``; ``mean`` is None for no values.
    """
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return dict(mean=None, spread=None, n=0)
    mean = math.fsum(values) / n
    spread = (
        math.sqrt(math.fsum(
            (v - mean)**2 for v in values) / (n - 1)) if n > 1 else None)
    return dict(mean=mean, spread=spread, n=n)


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return math.fsum(values) / len(values) if values else None


def aggregate(runs: List[dict], complexity: Dict[str, dict],
              variants: Sequence[str], baseline: str) -> List[dict]:
    """One row per variant (in ``variants`` order).

    Args:
        runs (list[dict]): Finished runs' records.
        complexity (dict): ``{variant: {'params': int, 'flops': int}}``.
        variants (Sequence[str]): Variant order of the table.
        baseline (str): Variant the deltas are taken against.

    Returns:
        list[dict]: ``variant``, ``seeds``, ``bbox``/``segm``
        (:func:`mean_spread` of the AP), ``per_seed`` (``{'bbox': [...],
        'segm': [...]}``, the AP of each of ``seeds`` in order, None where
        a run lacks it), ``params``, ``flops``,
        ``delta_params``, ``delta_flops``, ``train_s_per_iter`` (mean),
        ``peak_memory_mb`` (max), ``memory_source``, ``infer_s_per_img``
        (mean); missing values are None.
    """
    base = complexity.get(baseline, {})
    rows = []
    for variant in variants:
        mine = sorted((r for r in runs if r['variant'] == variant),
                      key=lambda r: r['seed'])
        cost = complexity.get(variant, {})
        row = dict(variant=variant, seeds=[r['seed'] for r in mine])
        row['per_seed'] = {
            column: [r['metrics'].get(key) for r in mine]
            for column, key in AP_KEYS.items()
        }
        for column, values in row['per_seed'].items():
            row[column] = mean_spread([v for v in values if v is not None])
        for key in ('params', 'flops'):
            row[key] = cost.get(key)
            row[f'delta_{key}'] = (
                cost[key] - base[key] if key in cost and key in base else None)
        row['train_s_per_iter'] = _mean(
            [r.get('train_s_per_iter') for r in mine])
        memory = [
            r['peak_memory_mb'] for r in mine
            if r.get('peak_memory_mb') is not None
        ]
        row['peak_memory_mb'] = max(memory) if memory else None
        row['memory_source'] = next(
            (r['memory_source'] for r in mine if r.get('memory_source')), None)
        row['infer_s_per_img'] = _mean(
            [r.get('infer_s_per_img') for r in mine])
        rows.append(row)
    return rows


def _ap(stat: dict) -> str:
    if stat['mean'] is None:
        return '-'
    text = f"{100 * stat['mean']:.1f}"
    if stat['spread'] is not None:
        text += f" ± {100 * stat['spread']:.1f}"
    return text


def _signed(value: Optional[float], scale: float, fmt: str) -> str:
    if value is None:
        return '-'
    return ('+' if value >= 0 else '-') + format(abs(value) / scale, fmt)


def _plain(value: Optional[float], fmt: str) -> str:
    return '-' if value is None else format(value, fmt)


def _markdown(head: List[str], body: List[List[str]]) -> str:
    """A Markdown table: the first column left-aligned (the variant), the
    others right-aligned (numbers)."""
    lines = [
        '| ' + ' | '.join(head) + ' |',
        '|' + '|'.join(['---'] + ['---:'] * (len(head) - 1)) + '|'
    ]
    lines += ['| ' + ' | '.join(cells) + ' |' for cells in body]
    return '\n'.join(lines)


def markdown_table(rows: List[dict]) -> str:
    """The table as GitHub Markdown.

    Args:
        rows (list[dict]): From :func:`aggregate`.

    Returns:
        str: Header, alignment row and one line per variant.
    """
    memory = next((r['memory_source'] for r in rows if r['memory_source']),
                  None)
    mem_head = {
        'cuda': 'peak GPU mem (MB)',
        'rss': 'peak RSS (MB)'
    }.get(memory, 'peak mem (MB)')
    head = [
        'variant', 'seeds', 'bbox AP', 'segm AP', 'Δparams (M)', 'ΔGFLOPs',
        'train s/iter', mem_head, 'infer s/img'
    ]
    body = []
    for row in rows:
        body.append([
            row['variant'],
            str(len(row['seeds'])),
            _ap(row['bbox']),
            _ap(row['segm']),
            _signed(row['delta_params'], 1e6, '.3f'),
            _signed(row['delta_flops'], 1e9, '.3f'),
            _plain(row['train_s_per_iter'], '.3f'),
            _plain(row['peak_memory_mb'], '.0f'),
            _plain(row['infer_s_per_img'], '.4f'),
        ])
    return _markdown(head, body)


def markdown_per_seed(rows: List[dict]) -> str:
    """Each run's AP, one line per variant: the mean ± spread of the main
    table can hide runs that disagree (one seed learned, the other did
    not).

    Args:
        rows (list[dict]): From :func:`aggregate`.

    Returns:
        str: A Markdown table, ``-`` for a seed a variant has not run.
    """
    seeds = sorted({s for r in rows for s in r['seeds']})
    label = ' / '.join(str(s) for s in seeds)
    head = ['variant'] + [f'{c} AP seed {label}' for c in AP_KEYS]
    body = []
    for row in rows:
        cells = [row['variant']]
        for column in AP_KEYS:
            by_seed = dict(zip(row['seeds'], row['per_seed'][column]))
            cells.append(' / '.join(
                _plain(None if by_seed.get(s) is None else 100 *
                       by_seed[s], '.1f') for s in seeds))
        body.append(cells)
    return _markdown(head, body)


def write_json(path: str, content: dict) -> None:
    """``content`` as indented JSON, written atomically."""
    atomic_write(path, json.dumps(content, indent=1).encode())


def plot_chart(rows: List[dict], path: str, title: str) -> None:
    """Bar chart of bbox and segm AP (mean, spread as error bars, each
    seed's AP as a dot) and training time per iteration, one group per
    variant (PNG).

    Args:
        rows (list[dict]): From :func:`aggregate`.
        path (str): Output PNG.
        title (str): Figure title.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = [r['variant'] for r in rows]
    xs = list(range(len(rows)))
    fig, (ax_ap, ax_time) = plt.subplots(
        2,
        1,
        figsize=(max(6, 0.9 * len(rows) + 2), 6),
        sharex=True,
        gridspec_kw=dict(height_ratios=(2, 1)))
    width = 0.38
    for offset, column in ((-width / 2, 'bbox'), (width / 2, 'segm')):
        means = [100 * (r[column]['mean'] or 0) for r in rows]
        errors = [100 * (r[column]['spread'] or 0) for r in rows]
        ax_ap.bar([x + offset for x in xs],
                  means,
                  width,
                  yerr=errors,
                  capsize=3,
                  ecolor='grey',
                  label=f'{column} AP')
        dots = [(x + offset, 100 * v) for x, r in zip(xs, rows)
                for v in r['per_seed'][column] if v is not None]
        ax_ap.scatter([d[0] for d in dots], [d[1] for d in dots],
                      s=16,
                      color='black',
                      edgecolors='white',
                      linewidths=0.5,
                      zorder=3,
                      label='one seed' if column == 'bbox' else None)
    ax_ap.set_ylabel('AP x100 (mean ± std, dots: seeds)')
    ax_ap.legend()
    ax_ap.set_title(title)
    ax_time.bar(
        xs, [r['train_s_per_iter'] or 0 for r in rows], 0.6, color='grey')
    ax_time.set_ylabel('train s/iter')
    ax_time.set_xticks(xs)
    ax_time.set_xticklabels(names, rotation=30, ha='right')
    fig.tight_layout()
    tmp = osp.join(
        osp.dirname(osp.abspath(path)), '.' + osp.basename(path) + '.tmp.png')
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
