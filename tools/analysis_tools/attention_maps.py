"""What mmgc's attention blocks look at, and how much it depends on the query.

Runs images through a detector's test pipeline, records the input and output
of every block with attention maps (GC, NL, SASA; the catalogue in
``mmgc/models/catalogue.py`` lists them) and for each block and image

* draws its attention as heat-map overlays on the image
  (``<out-dir>/<image>_<module>.png``): one panel per query position
  (marked), or one panel for a block whose map is the same for every query
  (GC); local attention (SASA) is drawn cell by cell with a box around the
  window;
* computes the GCNet paper's query-independence statistics (Cao et al.
  2019, Table 1): the mean cosine distance between the attention maps of
  different query positions, between the block's input feature vectors at
  different positions, between its output vectors, and between its output
  minus input (the part the block adds, for same-shape blocks).

A contact sheet (``<out-dir>/attention_sheet.png``) puts the drawings of
the first ``--sheet-images`` images side by side: one row per image, one
column per drawn block.

Attention comes from the blocks' ``attention_maps(x, queries)``
(``[B, Q, H, W]``: the weights each query puts on every position of the
block's input, the weights its ``forward`` uses), only for the chosen
queries: never the ``HW x HW`` matrix. All maps are compared over the
image. Statistics use ``--num-positions`` positions sampled inside the
image (padding excluded), the same ones as queries for the attention; they
are printed as a table and saved to ``<out-dir>/attention_stats.json``
(means over the images, and per image). The work is
:func:`mmgc.analysis.attention.analyse_attention`.
"""
import argparse
from typing import Tuple

import mmgc  # noqa: F401  (registers the blocks, checkpoint allow-list)
from mmgc.analysis.attention import analyse_attention, format_table
from mmgc.utils import add_cfg_options_arg

Point = Tuple[float, float]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Draw the attention of GC/NL/SASA blocks and measure '
        'how much it depends on the query position')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument(
        '--out-dir',
        default='work_dirs/attention_maps',
        help='directory for the PNGs and attention_stats.json')
    queries = parser.add_mutually_exclusive_group()
    queries.add_argument(
        '--queries',
        type=int,
        default=4,
        help='number of query positions drawn, on a grid over the image')
    queries.add_argument(
        '--query-points',
        nargs='+',
        metavar='X,Y',
        help='query positions drawn, in pixels of the original image')
    parser.add_argument(
        '--blocks',
        nargs='+',
        metavar='PATTERN',
        help='analyse only blocks whose module name matches one of these '
        'fnmatch patterns (default: all), e.g. "backbone.layer3.*"')
    parser.add_argument(
        '--draw-blocks',
        nargs='+',
        metavar='PATTERN',
        help='draw only these of the analysed blocks (default: all)')
    parser.add_argument(
        '--num-positions',
        type=int,
        default=64,
        help='positions sampled for the cosine distances (default: 64)')
    parser.add_argument(
        '--panel-size',
        type=int,
        default=None,
        help='draw each panel with this longer side in pixels (default: '
        'the original image size)')
    parser.add_argument(
        '--alpha',
        type=float,
        default=0.5,
        help='opacity of the heat map over the image (default: 0.5)')
    parser.add_argument(
        '--sheet-images',
        type=int,
        default=16,
        help='images on the contact sheet attention_sheet.png, one row '
        'each (default: 16; 0: no sheet)')
    parser.add_argument(
        '--seed', type=int, default=0, help='seed of the position sampling')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    add_cfg_options_arg(parser, example='"model.backbone.depth=101"')
    args = parser.parse_args()
    if args.queries < 1:
        parser.error(f'--queries={args.queries}: must be at least 1')
    if args.num_positions < 2:
        parser.error(f'--num-positions={args.num_positions}: must be at '
                     'least 2 (distances need pairs)')
    if args.panel_size is not None and args.panel_size < 32:
        parser.error(f'--panel-size={args.panel_size}: must be at least 32')
    if args.sheet_images < 0:
        parser.error(f'--sheet-images={args.sheet_images}: must be >= 0')
    if not 0 <= args.alpha <= 1:
        parser.error(f'--alpha={args.alpha}: must be in [0, 1]')
    if args.query_points is not None:
        args.query_points = [parse_point(p, parser) for p in args.query_points]
    return args


def parse_point(text: str, parser: argparse.ArgumentParser) -> Point:
    """``'x,y'`` as a pair of floats."""
    try:
        x, y = (float(v) for v in text.split(','))
    except ValueError:
        parser.error(f'--query-points {text!r}: expected X,Y in pixels, '
                     'e.g. 120,64')
    return x, y


def main() -> None:
    args = parse_args()
    result = analyse_attention(
        args.config,
        args.checkpoint,
        args.images,
        args.out_dir,
        queries=args.queries,
        query_points=args.query_points,
        blocks=args.blocks,
        draw_blocks=args.draw_blocks,
        num_positions=args.num_positions,
        panel_size=args.panel_size,
        alpha=args.alpha,
        sheet_images=args.sheet_images,
        seed=args.seed,
        device=args.device,
        cfg_options=args.cfg_options)
    print(format_table(result['blocks']))
    print(f'statistics: {result["stats_file"]}')
    print(f'drawings:   {result["drawings"]} PNG in {args.out_dir}')
    if result['sheet'] is not None:
        print(f'sheet:      {result["sheet"]}')


if __name__ == '__main__':
    main()
