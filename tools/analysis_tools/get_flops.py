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
import time
from typing import Any, Dict, List

from mmengine.registry import init_default_scope

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))
import mmgc  # noqa: E402,F401  (registers the blocks)
from mmgc.utils import (add_cfg_options_arg, add_shape_arg,  # noqa: E402
                        image_shape)
from mmgc.utils.complexity import (COUNTER, PLAIN_COUNTER,  # noqa: E402
                                   backbone_neck_flops, build_detector,
                                   count_params, detector_flops, load_config,
                                   signed)

PARTS = {'backbone-neck': 'backbone + neck, one image, not padded',
         'detector': 'whole detector (_forward: backbone, neck, heads), one '
                     'image packed by its data_preprocessor'}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file (the baseline with '
                        '--compare)')
    parser.add_argument('--compare', nargs='+', default=[], metavar='CONFIG',
                        help='configs to compare with CONFIG')
    add_shape_arg(parser)
    parser.add_argument('--part', choices=sorted(PARTS),
                        default='backbone-neck',
                        help='what is counted (default backbone-neck)')
    parser.add_argument('--no-attention-handles', action='store_true',
                        help='plain FlopAnalyzer: do not count the '
                        'attention matmuls')
    add_cfg_options_arg(parser, 'every config', '"model.backbone.depth=101"')
    args = parser.parse_args()
    args.shape = image_shape(parser, args.shape)
    for config in [args.config] + args.compare:
        if not osp.isfile(config):
            parser.error(f'config file not found: {config!r}')
    return args


def measure(config: str, args: argparse.Namespace) -> Dict[str, Any]:
    """Params and FLOPs of one config.

    Args:
        config (str): Config file path.
        args (argparse.Namespace): The command line.

    Returns:
        dict: ``config`` (file name), ``params``, ``flops``, ``shape``
        (the ``(C, H, W)`` counted), ``seconds``.
    """
    start = time.time()
    model = build_detector(load_config(config, args.cfg_options))
    height, width = args.shape
    handles = not args.no_attention_handles
    if args.part == 'detector':
        flops, padded = detector_flops(model, height, width, handles)
    else:
        flops = backbone_neck_flops(model, height, width, handles)
        padded = (height, width)
    return dict(config=osp.basename(config), params=count_params(model),
                flops=flops, shape=(3, ) + tuple(padded),
                seconds=time.time() - start)


def report(row: Dict[str, Any], args: argparse.Namespace) -> str:
    """MMDetection-style summary of one config (2.x's units: GFLOPs, M)."""
    split_line = '=' * 30
    lines = [split_line, f"Config: {row['config']}"]
    if row['shape'][1:] != tuple(args.shape):
        lines.append(f'Use size divisor set input shape from '
                     f'{tuple(args.shape)} to {row["shape"][1:]}')
    lines += [
        f"Compute type: {PARTS[args.part]}",
        f"Counter: {PLAIN_COUNTER if args.no_attention_handles else COUNTER}",
        f"Input shape: {row['shape']}",
        f"Flops: {row['flops'] / 1e9:.3f} GFLOPs",
        f"Params: {row['params'] / 1e6:.3f} M",
        split_line,
    ]
    return '\n'.join(lines)


def percent(value: int, base: int) -> str:
    """``value`` as a signed percentage of ``base``."""
    return signed(100. * value / base, '.2f') + '%' if base else 'n/a'


def table(rows: List[Dict[str, Any]], part: str) -> str:
    """Markdown table; the first row is the baseline of the others.

    Args:
        rows (list[dict]): :func:`measure` results, baseline first.
        part (str): The counted part (``--part``).

    Returns:
        str: The table.
    """
    base = rows[0]
    lines = [f'| config | params | Δ params | Δ params % | GFLOPs ({part}) '
             f'| Δ GFLOPs | Δ GFLOPs % |',
             '|---|---:|---:|---:|---:|---:|---:|']
    for i, row in enumerate(rows):
        cells = [f"`{row['config']}`" + (' (baseline)' if i == 0 and
                                         len(rows) > 1 else ''),
                 f"{row['params']:,}"]
        if i == 0:
            cells += ['', '']
        else:
            d_params = row['params'] - base['params']
            cells += [signed(d_params, ','), percent(d_params,
                                                     base['params'])]
        cells.append(f"{row['flops'] / 1e9:.2f}")
        if i == 0:
            cells += ['', '']
        else:
            d_flops = row['flops'] - base['flops']
            cells += [signed(d_flops / 1e9, '.2f'),
                      percent(d_flops, base['flops'])]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main() -> None:
    args = parse_args()
    init_default_scope('mmdet')
    rows = []
    for config in [args.config] + args.compare:
        rows.append(measure(config, args))
        print(report(rows[-1], args))
        print(f"({rows[-1]['seconds']:.0f} s)", file=sys.stderr)
    print()
    print(table(rows, args.part))


if __name__ == '__main__':
    main()
