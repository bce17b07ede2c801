"""Parameters and FLOPs of the shipped configs against their baselines.

For every ``configs/*.py`` (or the ones named), builds the detector and
prints a Markdown table: exact parameter count and delta versus the
baseline of the same detector and backbone (``baseline_r50_mask.py``,
``baseline_r18_retina.py``, ...: ``complexity.default_baseline``), and
the FLOPs of backbone + neck on one ``--height`` x ``--width`` image
(default 800x1333) with their delta.

FLOPs are counted by :mod:`mmgc.utils.complexity` (mmengine's
``FlopAnalyzer`` plus handles for the attention operators of mmgc's blocks;
see that module for the convention). ``tools/analysis_tools/get_flops.py``
gives the same numbers for one config, or one config against others.

Usage:
    python tools/analysis_tools/config_table.py [CONFIG ...]
        [--height 800] [--width 1333]
"""
import argparse
import glob
import os.path as osp
import sys
import time
from typing import Any, Dict, List, Optional

from mmengine.registry import init_default_scope

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
import mmgc  # noqa: E402,F401  (registers the blocks)
from mmgc.utils.complexity import (backbone_neck_flops,  # noqa: E402
                                   build_detector, count_params,
                                   default_baseline, load_config, signed)


def measure(config: str, height: int, width: int) -> Dict[str, Any]:
    """Detector type, parameter count and backbone+neck FLOPs.

    Args:
        config (str): Config file path.
        height (int): Image height for the FLOPs.
        width (int): Image width for the FLOPs.

    Returns:
        dict: ``config`` (file name), ``detector``, ``params``, ``flops``,
        ``seconds``.
    """
    start = time.time()
    model = build_detector(load_config(config))
    row = dict(
        config=osp.basename(config),
        detector=type(model).__name__,
        params=count_params(model),
        flops=backbone_neck_flops(model, height, width))
    row['seconds'] = time.time() - start
    return row


def table(rows: List[Dict[str, Any]]) -> str:
    """Markdown table with deltas to each config's baseline.

    Args:
        rows (list[dict]): :func:`measure` results.

    Returns:
        str: The table.
    """
    by_name = {r['config']: r for r in rows}
    lines = ['| config | params | Δ params | GFLOPs (backbone+neck) | '
             'Δ GFLOPs |', '|---|---:|---:|---:|---:|']
    for row in rows:
        try:
            ref: Optional[Dict[str, Any]] = by_name.get(osp.basename(
                default_baseline(row['detector'], row['config'])))
        except ValueError:  # a detector type without a shipped baseline
            ref = None
        d_params = (signed(row['params'] - ref['params'], ',')
                    if ref else 'n/a')
        d_flops = (signed((row['flops'] - ref['flops']) / 1e9, '.2f')
                   if ref else 'n/a')
        lines.append(f"| `{row['config']}` | {row['params']:,} | "
                     f"{d_params} | {row['flops'] / 1e9:.2f} | {d_flops} |")
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='*',
                        help='config files (default: configs/*.py)')
    parser.add_argument('--height', type=int, default=800)
    parser.add_argument('--width', type=int, default=1333)
    args = parser.parse_args()
    init_default_scope('mmdet')
    configs = args.configs or sorted(
        glob.glob(osp.join(ROOT, 'configs', '*.py')))
    rows = []
    for config in configs:
        rows.append(measure(config, args.height, args.width))
        print(f"{rows[-1]['config']}: {rows[-1]['params']:,} params, "
              f"{rows[-1]['flops'] / 1e9:.2f} GFLOPs "
              f"({rows[-1]['seconds']:.0f} s)", file=sys.stderr)
    print(table(rows))


if __name__ == '__main__':
    main()
