"""Parameters and FLOPs of a detector config, optionally against others.

MMDetection's ``tools/analysis_tools/get_flops.py`` with mmgc's counter:
mmengine's ``FlopAnalyzer`` (operator tracing: ``bmm``/``matmul`` count)
plus handles for the operators it would skip
(``aten::scaled_dot_product_attention`` of NL and SASA, ``aten::mv``,
``aten::mean`` of SE's squeeze; see :mod:`mmgc.utils.complexity`). The
module-hook counter used for the GCNet paper (MMDetection 2.x's) misses
the attention matmuls, so non-local blocks look almost free there;
``--no-attention-handles`` gives the plain analyzer's count (without
NL's pairwise attention and SE's squeeze). One FLOP is one multiply-add;
element-wise operations are free.

What is counted (``--part``):

* ``backbone-neck`` (default): backbone + neck on one ``--shape`` image
  as given (no padding) -- where mmgc's blocks live; deterministic; the
  figure of ``config_table.py``, ``docs/configs.md`` and the README;
* ``detector``: the whole detector's tensor forward (``_forward``:
  backbone, neck, heads) on one image packed by the detector's
  ``data_preprocessor`` (padded to its size divisor), as MMDetection 3.x's
  tool counts it; for two-stage detectors the RoI heads run on the RPN's
  proposals of the randomly initialised model, so that part depends on
  the weights.

``--shape H [W]`` follows MMDetection 2.x's tool (one value: a square
image); the default is 800x1333, the 1x COCO test scale (MMDetection 3.x
counts data-loader images instead, 2.x defaulted to 1280x800). Params
are the whole detector's, exact.

With ``--compare CONFIG ...`` the positional config is the baseline and
one Markdown table gives every config's params and FLOPs with the
differences to it, absolute and in percent. ``--cfg-options`` apply to
every config.

Example::

    python tools/analysis_tools/get_flops.py configs/baseline_r50_mask.py \\
        --compare configs/gc_r50_mask.py configs/nl_r50_mask.py
"""
import argparse
import os.path as osp
import sys

from mmengine.registry import init_default_scope

import mmgc  # noqa: F401  (registers the blocks)
from mmgc.analysis.config_cost import PARTS, compare_table, measure, report
from mmgc.utils import add_cfg_options_arg, add_shape_arg, image_shape


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'config', help='config file (the baseline with '
        '--compare)')
    parser.add_argument(
        '--compare',
        nargs='+',
        default=[],
        metavar='CONFIG',
        help='configs to compare with CONFIG')
    add_shape_arg(parser)
    parser.add_argument(
        '--part',
        choices=sorted(PARTS),
        default='backbone-neck',
        help='what is counted (default backbone-neck)')
    parser.add_argument(
        '--no-attention-handles',
        action='store_true',
        help='plain FlopAnalyzer: do not count the '
        'attention matmuls')
    add_cfg_options_arg(parser, 'every config', '"model.backbone.depth=101"')
    args = parser.parse_args()
    args.shape = image_shape(parser, args.shape)
    for config in [args.config] + args.compare:
        if not osp.isfile(config):
            parser.error(f'config file not found: {config!r}')
    return args


def main() -> None:
    args = parse_args()
    init_default_scope('mmdet')
    handles = not args.no_attention_handles
    rows = []
    for config in [args.config] + args.compare:
        rows.append(
            measure(config, args.shape, args.part, handles, args.cfg_options))
        print(report(rows[-1], args.shape, args.part, handles))
        print(f"({rows[-1]['seconds']:.0f} s)", file=sys.stderr)
    print()
    print(compare_table(rows, args.part))


if __name__ == '__main__':
    main()
