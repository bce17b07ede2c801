"""Parameters and FLOPs of detector configs, as rows and tables.

Used by ``tools/analysis_tools/get_flops.py`` (one config, or one against
others) and ``config_table.py`` (the shipped configs against their
baselines). Counting itself is :mod:`mmgc.utils.complexity` (mmengine's
``FlopAnalyzer`` plus handles for the attention operators of mmgc's
blocks; see that module for the convention).
"""
import os.path as osp
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..utils.complexity import (COUNTER, PLAIN_COUNTER, backbone_neck_flops,
                                build_detector, count_params, default_baseline,
                                detector_flops, load_config, signed)

#: What can be counted, with its description for the reports.
PARTS = {
    'backbone-neck':
    'backbone + neck, one image, not padded',
    'detector':
    'whole detector (_forward: backbone, neck, heads), one '
    'image packed by its data_preprocessor'
}


def measure(config: str,
            shape: Tuple[int, int],
            part: str = 'backbone-neck',
            attention_handles: bool = True,
            cfg_options: Optional[dict] = None) -> Dict[str, Any]:
    """Params and FLOPs of one config.

    Args:
        config (str): Config file path.
        shape (tuple[int, int]): ``(H, W)`` of the image counted.
        part (str): A key of :data:`PARTS`: ``'backbone-neck'`` on the
            image as given (deterministic), or ``'detector'``: the whole
            tensor forward on the image padded by the data preprocessor
            (two-stage heads run on the random model's proposals).
        attention_handles (bool): Count mmgc's attention operators
            (``False``: the plain analyzer's number).
        cfg_options (dict, optional): ``--cfg-options`` overrides.

    Returns:
        dict: ``config`` (file name), ``detector`` (class name),
        ``params``, ``flops``, ``shape`` (the ``(C, H, W)`` counted) and
        ``seconds``.
    """
    if part not in PARTS:
        raise ValueError(f'part {part!r}: expected one of {sorted(PARTS)}')
    start = time.time()
    model = build_detector(load_config(config, cfg_options))
    height, width = shape
    if part == 'detector':
        flops, padded = detector_flops(model, height, width, attention_handles)
    else:
        flops = backbone_neck_flops(model, height, width, attention_handles)
        padded = (height, width)
    return dict(
        config=osp.basename(config),
        detector=type(model).__name__,
        params=count_params(model),
        flops=flops,
        shape=(3, ) + tuple(padded),
        seconds=time.time() - start)


def report(row: Dict[str, Any],
           shape: Tuple[int, int],
           part: str,
           attention_handles: bool = True) -> str:
    """MMDetection-style summary of one :func:`measure` row (2.x's units:
    GFLOPs, M).

    Args:
        row (dict): The measurement.
        shape (tuple[int, int]): ``(H, W)`` asked for (a padded count says
            so).
        part (str): The counted part.
        attention_handles (bool): Which counter counted.

    Returns:
        str: The summary lines.
    """
    split_line = '=' * 30
    lines = [split_line, f"Config: {row['config']}"]
    if row['shape'][1:] != tuple(shape):
        lines.append(f'Use size divisor set input shape from '
                     f'{tuple(shape)} to {row["shape"][1:]}')
    lines += [
        f"Compute type: {PARTS[part]}",
        f"Counter: {COUNTER if attention_handles else PLAIN_COUNTER}",
        f"Input shape: {row['shape']}",
        f"Flops: {row['flops'] / 1e9:.3f} GFLOPs",
        f"Params: {row['params'] / 1e6:.3f} M",
        split_line,
    ]
    return '\n'.join(lines)


def percent(value: int, base: int) -> str:
    """``value`` as a signed percentage of ``base``."""
    return signed(100. * value / base, '.2f') + '%' if base else 'n/a'


def compare_table(rows: Sequence[Dict[str, Any]], part: str) -> str:
    """Markdown table of every row against the first (the baseline), with
    absolute and relative differences.

    Args:
        rows (Sequence[dict]): :func:`measure` results, baseline first.
        part (str): The counted part.

    Returns:
        str: The table.
    """
    base = rows[0]
    lines = [
        f'| config | params | Δ params | Δ params % | GFLOPs ({part}) '
        f'| Δ GFLOPs | Δ GFLOPs % |', '|---|---:|---:|---:|---:|---:|---:|'
    ]
    for i, row in enumerate(rows):
        cells = [
            f"`{row['config']}`" +
            (' (baseline)' if i == 0 and len(rows) > 1 else ''),
            f"{row['params']:,}"
        ]
        if i == 0:
            cells += ['', '']
        else:
            d_params = row['params'] - base['params']
            cells += [signed(d_params, ','), percent(d_params, base['params'])]
        cells.append(f"{row['flops'] / 1e9:.2f}")
        if i == 0:
            cells += ['', '']
        else:
            d_flops = row['flops'] - base['flops']
            cells += [
                signed(d_flops / 1e9, '.2f'),
                percent(d_flops, base['flops'])
            ]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def baseline_table(rows: List[Dict[str, Any]]) -> str:
    """Markdown table of every row against its own baseline
    (:func:`~mmgc.utils.complexity.default_baseline`), where that is among
    the rows; ``n/a`` otherwise.

    Args:
        rows (list[dict]): :func:`measure` results (backbone + neck).

    Returns:
        str: The table.
    """
    by_name = {r['config']: r for r in rows}
    lines = [
        '| config | params | Δ params | GFLOPs (backbone+neck) | '
        'Δ GFLOPs |', '|---|---:|---:|---:|---:|'
    ]
    for row in rows:
        try:
            ref: Optional[Dict[str, Any]] = by_name.get(
                osp.basename(default_baseline(row['detector'], row['config'])))
        except ValueError:  # a detector type without a shipped baseline
            ref = None
        d_params = (
            signed(row['params'] - ref['params'], ',') if ref else 'n/a')
        d_flops = (
            signed(
                (row['flops'] - ref['flops']) / 1e9, '.2f') if ref else 'n/a')
        lines.append(f"| `{row['config']}` | {row['params']:,} | "
                     f"{d_params} | {row['flops'] / 1e9:.2f} | {d_flops} |")
    return '\n'.join(lines)
