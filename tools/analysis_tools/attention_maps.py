"""What mmgc's attention blocks look at, and how much it depends on the query.

Runs images through a detector's test pipeline, records the input and output
of every ``GCBlock``, ``NLBlock``, ``SASABlock`` and stand-alone ``SASAConv``
with forward hooks, and for each block and image

* draws its attention as heat-map overlays on the image
  (``<out-dir>/<image>_<module>.png``): GC's one softmax map (the same for
  every query), NL's rows ``f(x_i, .) / C(x)`` for a few query positions
  ``i`` (marked), SASA's ``k x k`` window weights (heads averaged) around
  the queries;
* computes the GCNet paper's query-independence statistics (Cao et al.
  2019, Table 1): the mean cosine distance between the attention maps of
  different query positions, between the block's input feature vectors at
  different positions, between its output vectors, and between its output
  minus input (the part the block adds, for same-shape blocks).

A contact sheet (``<out-dir>/attention_sheet.png``) puts the drawings of
the first ``--sheet-images`` images side by side: one row per image, one
column per drawn block.

Attention comes from the blocks' own ``attention_weights`` methods (the
weights their ``forward`` uses), only for the chosen queries: never the
``HW x HW`` matrix. SASA maps are compared in window coordinates (offset
from the query); GC and NL maps over the image. Statistics use
``--num-positions`` positions sampled inside the image (padding excluded),
the same ones as queries for the attention; they are printed as a table and
saved to ``<out-dir>/attention_stats.json`` (means over the images, and per
image).

Usage:
    python tools/analysis_tools/attention_maps.py CONFIG CHECKPOINT IMAGE...
        [--out-dir DIR] [--queries N | --query-points X,Y ...]
        [--blocks PATTERN ...] [--draw-blocks PATTERN ...]
        [--num-positions 64] [--alpha 0.5] [--sheet-images 16]
        [--device cpu] [--cfg-options k=v ...]
"""
import argparse
import fnmatch
import json
import math
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import mmcv
import numpy as np
import torch
from mmengine.visualization import Visualizer
from mmengine.visualization.utils import convert_overlay_heatmap
from terminaltables import AsciiTable
from torch import Tensor, nn

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
import mmgc  # noqa: E402,F401  (registers the blocks, checkpoint allow-list)
from mmgc.models import GCBlock, NLBlock, SASABlock, SASAConv  # noqa: E402
from mmgc.utils import add_cfg_options_arg, load_tool_config  # noqa: E402
from mmgc.visualization import save_contact_sheet  # noqa: E402

BLOCK_TYPES = (GCBlock, NLBlock, SASABlock, SASAConv)
STATS_FILE = 'attention_stats.json'
SHEET_FILE = 'attention_sheet.png'
SHEET_WIDTH = 1600  # px; columns share it (120..320 px each)
Point = Tuple[float, float]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Draw the attention of GC/NL/SASA blocks and measure '
        'how much it depends on the query position')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument(
        '--out-dir', default='work_dirs/attention_maps',
        help='directory for the PNGs and attention_stats.json')
    queries = parser.add_mutually_exclusive_group()
    queries.add_argument(
        '--queries', type=int, default=4,
        help='number of query positions drawn, on a grid over the image')
    queries.add_argument(
        '--query-points', nargs='+', metavar='X,Y',
        help='query positions drawn, in pixels of the original image')
    parser.add_argument(
        '--blocks', nargs='+', metavar='PATTERN',
        help='analyse only blocks whose module name matches one of these '
        'fnmatch patterns (default: all), e.g. "backbone.layer3.*"')
    parser.add_argument(
        '--draw-blocks', nargs='+', metavar='PATTERN',
        help='draw only these of the analysed blocks (default: all)')
    parser.add_argument(
        '--num-positions', type=int, default=64,
        help='positions sampled for the cosine distances (default: 64)')
    parser.add_argument(
        '--panel-size', type=int, default=None,
        help='draw each panel with this longer side in pixels (default: '
        'the original image size)')
    parser.add_argument(
        '--alpha', type=float, default=0.5,
        help='opacity of the heat map over the image (default: 0.5)')
    parser.add_argument(
        '--sheet-images', type=int, default=16,
        help='images on the contact sheet attention_sheet.png, one row '
        'each (default: 16; 0: no sheet)')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the position sampling')
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


# --------------------------------------------------------------- blocks --


def find_blocks(model: nn.Module,
                patterns: Optional[Sequence[str]] = None
                ) -> Dict[str, nn.Module]:
    """The model's attention blocks by module name, in model order.

    A ``SASAConv`` inside a ``SASABlock`` is part of that block, not a
    block of its own.

    Args:
        model (nn.Module): The detector.
        patterns (Sequence[str], optional): fnmatch patterns on the names;
            default: every block.

    Returns:
        dict: ``{name: module}``.
    """
    blocks: Dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if not isinstance(module, BLOCK_TYPES):
            continue
        if isinstance(module, SASAConv) and any(
                name.startswith(parent + '.') for parent, m in blocks.items()
                if isinstance(m, SASABlock)):
            continue
        if patterns is None or any(
                fnmatch.fnmatchcase(name, p) for p in patterns):
            blocks[name] = module
    return blocks


class BlockRecorder:
    """Forward hooks keeping copies of each block's first input and output
    of a forward pass (on the CPU, fp32).

    Args:
        blocks (dict): ``{name: module}``.
    """

    def __init__(self, blocks: Dict[str, nn.Module]) -> None:
        self.records: Dict[str, Tuple[Tensor, Tensor]] = {}
        self.handles = [
            module.register_forward_hook(self._hook(name))
            for name, module in blocks.items()
        ]

    def _hook(self, name: str):

        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            if name not in self.records:  # a shared module: its first call
                # copies: the caller may change the tensors in place (mmdet's
                # Bottleneck adds the identity to a plugin's output)
                self.records[name] = tuple(
                    t.detach().to('cpu', torch.float32, copy=True)
                    for t in (inputs[0], output))

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def block_kind(block: nn.Module) -> str:
    """``'GC'``, ``'NL'`` or ``'SASA'``."""
    if isinstance(block, GCBlock):
        return 'GC'
    if isinstance(block, NLBlock):
        return 'NL'
    return 'SASA'


@torch.no_grad()
def query_attention(block: nn.Module, x: Tensor,
                    queries: Tensor) -> Tensor:
    """The block's attention map of every query.

    Args:
        block (nn.Module): A GC, NL or SASA block.
        x (Tensor): Its input ``[1, C, H, W]`` (on the block's device).
        queries (Tensor): Flat query positions ``[Q]``.

    Returns:
        Tensor: ``[Q, h, w]`` on the CPU: GC's map repeated (it has no
        query), NL's rows over the key grid, SASA's ``kh x kw`` window
        weights averaged over the heads.
    """
    height, width = x.shape[2:]
    if isinstance(block, GCBlock):
        weights = block.attention_weights(x)  # [1, H*W]
        maps = weights.view(1, height, width).expand(len(queries), -1, -1)
    elif isinstance(block, NLBlock):
        maps = block.attention_weights(x, queries)[0]  # [Q, Hk, Wk]
    else:
        maps = block.attention_weights(x, queries)[0].mean(1)  # [Q, kh, kw]
    return maps.float().cpu()


# ----------------------------------------------------------- statistics --


def mean_cosine_distance(vectors: Tensor) -> Optional[float]:
    """Mean of ``1 - cos(v_i, v_j)`` over all pairs ``i < j`` (fp64; each
    distance clamped to ``[0, 2]`` against rounding).

    Zero vectors (no direction) are left out; None if fewer than two
    remain.

    Args:
        vectors (Tensor): ``[P, D]``.
    """
    vectors = vectors.double()
    norms = vectors.norm(dim=1)  # [P]
    keep = norms > 1e-12 * max(float(norms.max()), 1e-300)
    vectors, norms = vectors[keep], norms[keep]
    count = vectors.shape[0]
    if count < 2:
        return None
    unit = vectors / norms[:, None]  # [P, D]
    cosine = unit @ unit.t()  # [P, P]
    pairs = torch.triu_indices(count, count, offset=1)
    return float((1 - cosine[pairs[0], pairs[1]]).clamp(0, 2).mean())


def valid_size(map_size: Tuple[int, int], meta: dict) -> Tuple[int, int]:
    """Rows and columns of a feature map that cover the image (not the
    padding of the batch)."""
    pad_h, pad_w = meta['batch_input_shape']
    img_h, img_w = meta['img_shape']
    height, width = map_size
    return (max(1, min(height, math.ceil(img_h * height / pad_h))),
            max(1, min(width, math.ceil(img_w * width / pad_w))))


def sample_positions(map_size: Tuple[int, int], meta: dict, num: int,
                     generator: torch.Generator) -> Tensor:
    """Up to ``num`` distinct flat positions inside the image part of a
    map, sorted.

    Args:
        map_size (tuple[int, int]): ``(H, W)`` of the map.
        meta (dict): The data sample's metainfo.
        num (int): Positions wanted.
        generator (torch.Generator): Random source.

    Returns:
        Tensor: ``[min(num, rows * cols)]`` int64 indices ``y * W + x``.
    """
    rows, cols = valid_size(map_size, meta)
    picked = torch.randperm(rows * cols, generator=generator)[:num]
    return ((picked // cols) * map_size[1] + picked % cols).sort().values


def block_statistics(block: nn.Module, x: Tensor, out: Tensor, meta: dict,
                     num_positions: int, seed: int,
                     device: torch.device) -> dict:
    """Query-independence statistics of one block on one image.

    Args:
        block (nn.Module): The block.
        x (Tensor): Its input ``[1, C, H, W]`` (CPU).
        out (Tensor): Its output ``[1, C', H', W']`` (CPU).
        meta (dict): The data sample's metainfo.
        num_positions (int): Positions sampled per map.
        seed (int): Seed of the sampling.
        device (torch.device): Where the block runs.

    Returns:
        dict: ``map_size``, ``num_positions`` and the cosine distances
        ``attention``, ``input``, ``output``, ``delta`` (output - input;
        None when the shapes differ or the block adds nothing).
    """
    generator = torch.Generator().manual_seed(seed)
    positions = sample_positions(x.shape[2:], meta, num_positions, generator)
    out_positions = sample_positions(out.shape[2:], meta, num_positions,
                                     generator)
    maps = query_attention(block, x.to(device), positions.to(device))
    features = x[0].flatten(1)[:, positions].t()  # [P, C]
    stats = dict(
        map_size=list(x.shape[2:]),
        num_positions=len(positions),
        attention=mean_cosine_distance(maps.flatten(1)),
        input=mean_cosine_distance(features),
        output=mean_cosine_distance(
            out[0].flatten(1)[:, out_positions].t()))  # [P', C']
    stats['delta'] = (mean_cosine_distance(
        (out - x)[0].flatten(1)[:, positions].t())
                      if out.shape == x.shape else None)
    return stats


STAT_KEYS = ('attention', 'input', 'output', 'delta')


def summarise(per_image: List[dict]) -> dict:
    """Means over the images of each statistic (None where no image has
    one)."""
    summary = {}
    for key in STAT_KEYS:
        values = [s[key] for s in per_image if s[key] is not None]
        summary[key] = float(np.mean(values)) if values else None
    return summary


def format_table(entries: Dict[str, dict]) -> str:
    """The statistics as an ASCII table, one row per block."""

    def fmt(value: Optional[float]) -> str:
        return '-' if value is None else f'{value:.4f}'

    rows = [['block', 'type', 'map size', 'cos-dist attention',
             'cos-dist input', 'cos-dist output', 'cos-dist out-in']]
    for name, entry in entries.items():
        height, width = entry['map_size']
        rows.append([name, entry['type'], f'{height}x{width}'] +
                    [fmt(entry['cos_dist'][k]) for k in STAT_KEYS])
    return AsciiTable(rows).table


# -------------------------------------------------------------- drawing --


def to_image_coords(point: Point, meta: dict) -> Point:
    """Original-image pixel ``(x, y)`` in the (resized, padded) batch
    input."""
    scale_x, scale_y = meta['scale_factor']
    return point[0] * scale_x, point[1] * scale_y


def point_to_cell(point: Point, map_size: Tuple[int, int],
                  meta: dict) -> Tuple[int, int]:
    """The map cell ``(row, col)`` containing an original-image point."""
    x, y = to_image_coords(point, meta)
    pad_h, pad_w = meta['batch_input_shape']
    height, width = map_size
    return (min(height - 1, int(y * height / pad_h)),
            min(width - 1, int(x * width / pad_w)))


def cell_to_point(cell: Tuple[int, int], map_size: Tuple[int, int],
                  meta: dict) -> Point:
    """Centre of a map cell in original-image pixels."""
    pad_h, pad_w = meta['batch_input_shape']
    scale_x, scale_y = meta['scale_factor']
    return ((cell[1] + 0.5) * pad_w / map_size[1] / scale_x,
            (cell[0] + 0.5) * pad_h / map_size[0] / scale_y)


def grid_points(num: int, meta: dict) -> List[Point]:
    """``num`` points on a near-square grid over the original image."""
    img_h, img_w = meta['ori_shape']
    cols = math.ceil(math.sqrt(num))
    rows = math.ceil(num / cols)
    points = [((c + 0.5) * img_w / cols, (r + 0.5) * img_h / rows)
              for r in range(rows) for c in range(cols)]
    return points[:num]


def map_to_image(heat: np.ndarray, cell_px: Tuple[float, float],
                 meta: dict, out_hw: Tuple[int, int],
                 interpolation: str = 'bilinear') -> np.ndarray:
    """A map laid over the batch input (``cell_px`` input pixels per map
    cell, from the top-left), cropped to the image and resized to the
    drawing's size.

    Args:
        heat (np.ndarray): ``[h, w]`` float map.
        cell_px (tuple[float, float]): Cell height and width in pixels of
            the batch input.
        meta (dict): The data sample's metainfo.
        out_hw (tuple[int, int]): Height and width of the drawing.
        interpolation (str): mmcv interpolation of the upsampling.

    Returns:
        np.ndarray: ``[out_h, out_w]`` float32.
    """
    pad_h, pad_w = meta['batch_input_shape']
    img_h, img_w = meta['img_shape']
    size = (max(1, round(heat.shape[1] * cell_px[1])),
            max(1, round(heat.shape[0] * cell_px[0])))  # (w, h)
    resized = mmcv.imresize(heat.astype(np.float32), size,
                            interpolation=interpolation)  # [h_px, w_px]
    canvas = np.zeros((pad_h, pad_w), np.float32)
    rows, cols = min(pad_h, size[1]), min(pad_w, size[0])
    canvas[:rows, :cols] = resized[:rows, :cols]
    return mmcv.imresize(canvas[:img_h, :img_w], (out_hw[1], out_hw[0]),
                         interpolation=interpolation)


def draw_panel(visualizer: Visualizer, image: np.ndarray,
               heat: np.ndarray, alpha: float, label: str,
               query: Optional[Point] = None,
               box: Optional[Tuple[float, float, float, float]] = None
               ) -> np.ndarray:
    """One heat-map overlay with an optional query marker and window box.

    Args:
        visualizer (Visualizer): mmengine visualizer used for drawing.
        image (np.ndarray): RGB image ``[H, W, 3]`` uint8.
        heat (np.ndarray): ``[H, W]`` map (min-max normalised for colour).
        alpha (float): Heat-map opacity.
        label (str): Text in the top-left corner.
        query (tuple, optional): ``(x, y)`` of the query marker.
        box (tuple, optional): ``(x1, y1, x2, y2)`` of the window.

    Returns:
        np.ndarray: RGB ``[H, W, 3]`` uint8.
    """
    visualizer.set_image(convert_overlay_heatmap(heat, image, alpha))
    font = max(6, image.shape[0] // 28)
    if box is not None:
        visualizer.draw_bboxes(np.array([box]), edge_colors='white',
                               line_widths=1)
    if query is not None:
        visualizer.draw_points(np.array([query]), colors='white',
                               marker='X', sizes=np.array([font * 10]))
    visualizer.draw_texts(label, np.array([2, 2]), colors='white',
                          font_sizes=font,
                          bboxes=dict(facecolor='black', alpha=0.6, pad=1,
                                      edgecolor='none'))
    return visualizer.get_image()


def draw_block(visualizer: Visualizer, block: nn.Module, x: Tensor,
               image: np.ndarray, meta: dict, points: Sequence[Point],
               alpha: float, device: torch.device) -> np.ndarray:
    """Panels of one block side by side: GC's single map, NL's map per
    query, SASA's window per query.

    Args:
        visualizer (Visualizer): mmengine visualizer used for drawing.
        block (nn.Module): The block.
        x (Tensor): Its input ``[1, C, H, W]`` (CPU).
        image (np.ndarray): The original RGB image, possibly resized for
            display (``[h, w, 3]``).
        meta (dict): The data sample's metainfo.
        points (Sequence[Point]): Query points in original-image pixels.
        alpha (float): Heat-map opacity.
        device (torch.device): Where the block runs.

    Returns:
        np.ndarray: RGB ``[h, n * w, 3]``.
    """
    out_hw = image.shape[:2]
    zoom = out_hw[0] / meta['ori_shape'][0]  # display px per original px
    map_size = tuple(x.shape[2:])
    pad_h, pad_w = meta['batch_input_shape']
    cell = (pad_h / map_size[0], pad_w / map_size[1])  # px per input cell
    cells = [point_to_cell(p, map_size, meta) for p in points]
    queries = torch.tensor([r * map_size[1] + c for r, c in cells])
    maps = query_attention(block, x.to(device), queries.to(device)).numpy()
    kind = block_kind(block)
    if kind == 'GC':
        heat = map_to_image(maps[0], cell, meta, out_hw)
        label = (f'GC {map_size[0]}x{map_size[1]}: one map for all queries'
                 if block.pooling_type == 'att' else 'GC avg: uniform')
        return draw_panel(visualizer, image, heat, alpha, label)
    panels = []
    for cell_rc, weights in zip(cells, maps):
        query = cell_to_point(cell_rc, map_size, meta)
        label = f'{kind} q=({query[0]:.0f},{query[1]:.0f})'
        box = None
        if kind == 'NL':
            # keys on the (possibly 2x2-pooled) grid: input cells per key
            key_cell = (cell[0] * (map_size[0] // weights.shape[0]),
                        cell[1] * (map_size[1] // weights.shape[1]))
            heat = map_to_image(weights, key_cell, meta, out_hw)
        else:
            win_h, win_w = weights.shape
            full = np.zeros(map_size, np.float32)
            top, left = cell_rc[0] - win_h // 2, cell_rc[1] - win_w // 2
            rows = slice(max(0, top), min(map_size[0], top + win_h))
            cols = slice(max(0, left), min(map_size[1], left + win_w))
            full[rows, cols] = weights[rows.start - top:rows.stop - top,
                                       cols.start - left:cols.stop - left]
            heat = map_to_image(full, cell, meta, out_hw, 'nearest')
            corner = cell_to_point((rows.start, cols.start), map_size, meta)
            end = cell_to_point((rows.stop - 1, cols.stop - 1), map_size,
                                meta)
            half_x = cell[1] / 2 / meta['scale_factor'][0]
            half_y = cell[0] / 2 / meta['scale_factor'][1]
            box = tuple(zoom * v for v in (corner[0] - half_x,
                                           corner[1] - half_y,
                                           end[0] + half_x, end[1] + half_y))
        panels.append(
            draw_panel(visualizer, image, heat, alpha, label,
                       (zoom * query[0], zoom * query[1]), box))
    return np.concatenate(panels, axis=1)


# ----------------------------------------------------------------- main --


def build_model(args: argparse.Namespace) -> nn.Module:
    """The detector with the checkpoint's weights, in eval mode."""
    from mmdet.apis import init_detector
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(
            f'checkpoint file not found: {args.checkpoint!r}')
    cfg = load_tool_config(args.config, cfg_options=args.cfg_options)
    return init_detector(cfg, args.checkpoint, device=args.device)


def build_pipeline(model: nn.Module):
    """The config's test pipeline without ``LoadAnnotations`` (as mmdet's
    ``DetInferencer``): images need no annotation file."""
    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg
    pipeline = [
        t for t in get_test_pipeline_cfg(model.cfg.copy())
        if t['type'].split('.')[-1] != 'LoadAnnotations'
    ]
    return Compose(pipeline)


def image_stem(path: str) -> str:
    return osp.splitext(osp.basename(path))[0]


def main() -> None:
    args = parse_args()
    for image in args.images:
        if not osp.isfile(image):
            raise FileNotFoundError(f'image file not found: {image!r}')
    from mmdet.apis import inference_detector
    model = build_model(args)
    device = torch.device(args.device)
    blocks = find_blocks(model, args.blocks)
    if not blocks:
        raise ValueError(
            f'no GCBlock/NLBlock/SASABlock/SASAConv in the model of '
            f'{args.config!r}' + (f' matching --blocks {args.blocks}'
                                  if args.blocks else ''))
    drawn = (set(find_blocks(model, args.draw_blocks))
             if args.draw_blocks else set(blocks))
    pipeline = build_pipeline(model)
    os.makedirs(args.out_dir, exist_ok=True)
    visualizer = Visualizer(name='attention_maps')

    per_image: Dict[str, List[dict]] = {name: [] for name in blocks}
    files: Dict[str, List[str]] = {name: [] for name in blocks}
    for image_path in args.images:
        recorder = BlockRecorder(blocks)
        try:
            result = inference_detector(model, image_path,
                                        test_pipeline=pipeline)
        finally:
            recorder.remove()
        meta = result.metainfo
        image = mmcv.imread(image_path, channel_order='rgb')
        ori_h, ori_w = meta['ori_shape']
        if args.panel_size is not None:
            image = mmcv.imrescale(image, args.panel_size / max(ori_h, ori_w))
        points = args.query_points or grid_points(args.queries, meta)
        for x, y in points:
            if not (0 <= x < ori_w and 0 <= y < ori_h):
                raise ValueError(
                    f'--query-points {x:g},{y:g} is outside {image_path!r}: '
                    f'x must be in [0, {ori_w}), y in [0, {ori_h})')
        for name, block in blocks.items():
            if name not in recorder.records:
                raise RuntimeError(f'block {name!r} did not run on '
                                   f'{image_path!r}')
            x, out = recorder.records[name]
            stats = block_statistics(block, x, out, meta, args.num_positions,
                                     args.seed, device)
            stats['image'] = image_path
            per_image[name].append(stats)
            if name in drawn:
                out_file = osp.join(args.out_dir,
                                    f'{image_stem(image_path)}_{name}.png')
                mmcv.imwrite(
                    mmcv.rgb2bgr(
                        draw_block(visualizer, block, x, image, meta, points,
                                   args.alpha, device)), out_file)
                files[name].append(out_file)

    entries = {
        name: dict(
            type=type(block).__name__,
            map_size=per_image[name][0]['map_size'],
            cos_dist=summarise(per_image[name]),
            per_image=per_image[name],
            files=files[name])
        for name, block in blocks.items()
    }
    print(format_table(entries))
    stats_file = osp.join(args.out_dir, STATS_FILE)
    with open(stats_file, 'w') as f:
        json.dump(
            dict(config=args.config, checkpoint=args.checkpoint,
                 images=args.images, num_positions=args.num_positions,
                 seed=args.seed, blocks=entries), f, indent=1)
    print(f'statistics: {stats_file}')
    print(f'drawings:   {sum(len(v) for v in files.values())} PNG in '
          f'{args.out_dir}')
    sheet = write_sheet(files, args.images[:args.sheet_images], args.out_dir)
    if sheet is not None:
        print(f'sheet:      {sheet}')


def write_sheet(files: Dict[str, List[str]], images: Sequence[str],
                out_dir: str) -> Optional[str]:
    """The contact sheet of the drawings: a row per image (of
    ``images``), a column per drawn block; None when nothing was drawn."""
    columns = [name for name, drawn in files.items() if drawn]
    if not columns or not images:
        return None
    cells = [(image, name) for image in images for name in columns]
    tile = max(120, min(320, SHEET_WIDTH // len(columns)))
    return save_contact_sheet(
        [osp.join(out_dir, f'{image_stem(image)}_{name}.png')
         for image, name in cells],
        osp.join(out_dir, SHEET_FILE), cols=len(columns), tile_width=tile,
        captions=[f'{image_stem(image)} {name}' for image, name in cells])


if __name__ == '__main__':
    main()
