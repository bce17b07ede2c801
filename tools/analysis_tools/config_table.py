"""Parameters and FLOPs of the shipped configs against their baselines.

For every ``configs/*.py`` (or the ones named), builds the detector and
prints a Markdown table: exact parameter count and delta versus the
baseline of the same detector and backbone (``baseline_r50_mask.py``,
``baseline_r18_retina.py``, ...: ``complexity.default_baseline``), and
the FLOPs of backbone + neck on one ``--height`` x ``--width`` image
(default 800x1333) with their delta.

FLOPs are counted by :mod:`mmgc.utils.complexity` (mmengine's
``FlopAnalyzer`` plus handles for the attention operators of mmgc's blocks;
see that module for the convention); the rows and the table are
:mod:`mmgc.analysis.config_cost`, shared with ``get_flops.py``.

Usage:
    python tools/analysis_tools/config_table.py [CONFIG ...]
        [--height 800] [--width 1333]
"""
import argparse
import glob
import os.path as osp
import sys

from mmengine.registry import init_default_scope

import mmgc  # noqa: F401  (registers the blocks)
from mmgc.analysis.config_cost import baseline_table, measure

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'configs', nargs='*', help='config files (default: configs/*.py)')
    parser.add_argument('--height', type=int, default=800)
    parser.add_argument('--width', type=int, default=1333)
    args = parser.parse_args()
    init_default_scope('mmdet')
    configs = args.configs or sorted(
        glob.glob(osp.join(ROOT, 'configs', '*.py')))
    rows = []
    for config in configs:
        rows.append(measure(config, (args.height, args.width)))
        print(
            f"{rows[-1]['config']}: {rows[-1]['params']:,} params, "
            f"{rows[-1]['flops'] / 1e9:.2f} GFLOPs "
            f"({rows[-1]['seconds']:.0f} s)",
            file=sys.stderr)
    print(baseline_table(rows))


if __name__ == '__main__':
    main()
