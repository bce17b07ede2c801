"""What mmgc's attention blocks look at, and how much it depends on the query.

Every block with attention defines one interface (see the catalogue,
:mod:`mmgc.models.catalogue`)::

    block.attention_maps(x, queries) -> Tensor  # [B, Q, H, W], fp32

for an input ``x`` ``[B, C, H, W]`` and flat query positions ``queries``
``[Q]`` (``y * W + x``): map ``q`` holds the weights query ``q`` puts on
every position of the input grid, the weights the block's ``forward``
uses. GC's map is the same for every query; NL's rows are those of its
pairwise weights (a sub-sampled key grid spread back onto the input grid);
SASA's window weights, heads averaged, sit at their image positions with
zeros outside the window. Only the chosen queries are computed, never the
``HW x HW`` matrix.

:func:`analyse_attention` runs images through a detector's test pipeline,
records the input and output of every such block with forward hooks, and
for each block and image

* draws its attention over the image
  (:mod:`mmgc.visualization.attention_drawing`), one panel per query;
* computes the GCNet paper's query-independence statistics (Cao et al.
  2019, Table 1): the mean cosine distance between the attention maps of
  different query positions (over the image, for every block alike), and
  between the block's input, output and output - input vectors at
  different positions.

``tools/analysis_tools/attention_maps.py`` is its command line.
"""
import fnmatch
import json
import math
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import mmcv
import numpy as np
import torch
from terminaltables import AsciiTable
from torch import Tensor, nn

from ..models.catalogue import CATALOGUE, entry_of
from ..visualization.attention_drawing import (Point, draw_attention,
                                               grid_points, point_to_cell,
                                               save_attention_sheet)

STATS_FILE = 'attention_stats.json'
SHEET_FILE = 'attention_sheet.png'
STAT_KEYS = ('attention', 'input', 'output', 'delta')


# --------------------------------------------------------------- blocks --
def attention_types() -> Tuple[type, ...]:
    """The block classes that have ``attention_maps``."""
    return tuple(e.cls for e in CATALOGUE if e.has_attention_maps)


def find_blocks(
        model: nn.Module,
        patterns: Optional[Sequence[str]] = None) -> Dict[str, nn.Module]:
    """The model's attention blocks by module name, in model order.

    A block inside another attention block (the ``SASAConv`` of a
    ``SASABlock``) is part of it, not a block of its own.

    Args:
        model (nn.Module): The detector.
        patterns (Sequence[str], optional): fnmatch patterns on the names;
            default: every block.

    Returns:
        dict: ``{name: module}``.
    """
    types = attention_types()
    outer: List[str] = []
    blocks: Dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if not isinstance(module, types) or any(
                name.startswith(parent + '.') for parent in outer):
            continue
        outer.append(name)
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


@torch.no_grad()
def query_attention(block: nn.Module, x: Tensor, queries: Tensor) -> Tensor:
    """The block's attention map of every query, for one image.

    Args:
        block (nn.Module): A block with ``attention_maps``.
        x (Tensor): Its input ``[1, C, H, W]`` (on the block's device).
        queries (Tensor): Flat query positions ``[Q]``.

    Returns:
        Tensor: ``[Q, H, W]`` fp32 on the CPU.
    """
    return block.attention_maps(x, queries)[0].float().cpu()


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
        attention=mean_cosine_distance(maps.flatten(1)),  # [P, H*W]
        input=mean_cosine_distance(features),
        output=mean_cosine_distance(
            out[0].flatten(1)[:, out_positions].t()))  # [P', C']
    stats['delta'] = (
        mean_cosine_distance((out - x)[0].flatten(1)[:, positions].t())
        if out.shape == x.shape else None)
    return stats


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

    rows = [[
        'block', 'type', 'map size', 'cos-dist attention', 'cos-dist input',
        'cos-dist output', 'cos-dist out-in'
    ]]
    for name, entry in entries.items():
        height, width = entry['map_size']
        rows.append([name, entry['type'], f'{height}x{width}'] +
                    [fmt(entry['cos_dist'][k]) for k in STAT_KEYS])
    return AsciiTable(rows).table


# ------------------------------------------------------ model and images --
def build_model(config: str,
                checkpoint: str,
                cfg_options: Optional[dict] = None,
                device: str = 'cpu') -> nn.Module:
    """The detector with the checkpoint's weights, in eval mode."""
    from mmdet.apis import init_detector

    from ..utils import load_tool_config
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint file not found: {checkpoint!r}')
    cfg = load_tool_config(config, cfg_options=cfg_options)
    return init_detector(cfg, checkpoint, device=device)


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


def check_points(points: Sequence[Point], meta: dict, image: str) -> None:
    """Raise ``ValueError`` for a query point outside the original
    image."""
    ori_h, ori_w = meta['ori_shape']
    for x, y in points:
        if not (0 <= x < ori_w and 0 <= y < ori_h):
            raise ValueError(
                f'--query-points {x:g},{y:g} is outside {image!r}: '
                f'x must be in [0, {ori_w}), y in [0, {ori_h})')


def draw_block(visualizer, block: nn.Module, x: Tensor, image: np.ndarray,
               meta: dict, points: Sequence[Point], alpha: float,
               device: torch.device) -> np.ndarray:
    """The block's attention for the query points, drawn over ``image``
    (:func:`~mmgc.visualization.attention_drawing.draw_attention`)."""
    map_size = tuple(x.shape[2:])
    cells = [point_to_cell(p, map_size, meta) for p in points]
    queries = torch.tensor([r * map_size[1] + c for r, c in cells])
    maps = query_attention(block, x.to(device), queries.to(device))
    entry = entry_of(block)
    return draw_attention(visualizer, maps.numpy(), cells, image, meta, alpha,
                          entry.label, entry.query_independent)


def analyse_attention(config: str,
                      checkpoint: str,
                      images: Sequence[str],
                      out_dir: str,
                      queries: int = 4,
                      query_points: Optional[Sequence[Point]] = None,
                      blocks: Optional[Sequence[str]] = None,
                      draw_blocks: Optional[Sequence[str]] = None,
                      num_positions: int = 64,
                      panel_size: Optional[int] = None,
                      alpha: float = 0.5,
                      sheet_images: int = 16,
                      seed: int = 0,
                      device: str = 'cpu',
                      cfg_options: Optional[dict] = None) -> dict:
    """Statistics and drawings of every attention block of a detector.

    Writes ``<out_dir>/<image>_<block>.png`` (one row of panels per drawn
    block and image), ``<out_dir>/attention_stats.json`` and the contact
    sheet ``<out_dir>/attention_sheet.png`` (the first ``sheet_images``
    images, a row each; a column per drawn block).

    Args:
        config (str): Detector config file.
        checkpoint (str): Its checkpoint.
        images (Sequence[str]): Image files.
        out_dir (str): Output directory (made if needed).
        queries (int): Query points drawn, on a grid over the image.
        query_points (Sequence[Point], optional): Query points drawn, in
            original-image pixels, instead of the grid.
        blocks (Sequence[str], optional): fnmatch patterns of the analysed
            block names; default: all.
        draw_blocks (Sequence[str], optional): Patterns of the drawn ones
            among them; default: all.
        num_positions (int): Positions sampled for the distances.
        panel_size (int, optional): Longer side of each panel in pixels;
            default: the original image size.
        alpha (float): Heat-map opacity.
        sheet_images (int): Images on the contact sheet (0: none).
        seed (int): Seed of the position sampling.
        device (str): Where the model runs.
        cfg_options (dict, optional): Config overrides.

    Returns:
        dict: ``blocks`` (``{name: {type, map_size, cos_dist, per_image,
        files}}``, as in the JSON file), ``stats_file``, ``drawings`` (the
        PNG count) and ``sheet`` (its path or None).
    """
    from mmdet.apis import inference_detector
    from mmengine.visualization import Visualizer
    for image in images:
        if not osp.isfile(image):
            raise FileNotFoundError(f'image file not found: {image!r}')
    model = build_model(config, checkpoint, cfg_options, device)
    torch_device = torch.device(device)
    found = find_blocks(model, blocks)
    if not found:
        names = '/'.join(t.__name__ for t in attention_types())
        raise ValueError(f'no {names} in the model of {config!r}' + (
            f' matching --blocks {list(blocks)}' if blocks else ''))
    drawn = (
        set(find_blocks(model, draw_blocks)) if draw_blocks else set(found))
    pipeline = build_pipeline(model)
    os.makedirs(out_dir, exist_ok=True)
    visualizer = Visualizer(name='attention_maps')

    per_image: Dict[str, List[dict]] = {name: [] for name in found}
    files: Dict[str, List[str]] = {name: [] for name in found}
    for image_path in images:
        recorder = BlockRecorder(found)
        try:
            result = inference_detector(
                model, image_path, test_pipeline=pipeline)
        finally:
            recorder.remove()
        meta = result.metainfo
        image = mmcv.imread(image_path, channel_order='rgb')
        if panel_size is not None:
            image = mmcv.imrescale(image, panel_size / max(meta['ori_shape']))
        points = query_points or grid_points(queries, meta)
        check_points(points, meta, image_path)
        for name, block in found.items():
            if name not in recorder.records:
                raise RuntimeError(f'block {name!r} did not run on '
                                   f'{image_path!r}')
            x, out = recorder.records[name]
            stats = block_statistics(block, x, out, meta, num_positions, seed,
                                     torch_device)
            stats['image'] = image_path
            per_image[name].append(stats)
            if name in drawn:
                out_file = osp.join(out_dir,
                                    f'{image_stem(image_path)}_{name}.png')
                mmcv.imwrite(
                    mmcv.rgb2bgr(
                        draw_block(visualizer, block, x, image, meta, points,
                                   alpha, torch_device)), out_file)
                files[name].append(out_file)

    entries = {
        name:
        dict(
            type=type(block).__name__,
            map_size=per_image[name][0]['map_size'],
            cos_dist=summarise(per_image[name]),
            per_image=per_image[name],
            files=files[name])
        for name, block in found.items()
    }
    stats_file = osp.join(out_dir, STATS_FILE)
    with open(stats_file, 'w') as f:
        json.dump(
            dict(
                config=config,
                checkpoint=checkpoint,
                images=list(images),
                num_positions=num_positions,
                seed=seed,
                blocks=entries),
            f,
            indent=1)
    columns = [name for name, drawings in files.items() if drawings]
    rows = [image_stem(image) for image in images[:sheet_images]]
    sheet = save_attention_sheet(
        [[osp.join(out_dir, f'{row}_{name}.png') for name in columns]
         for row in rows], [[f'{row} {name}'
                             for name in columns] for row in rows],
        osp.join(out_dir, SHEET_FILE)) if rows and columns else None
    return dict(
        blocks=entries,
        stats_file=stats_file,
        drawings=sum(len(v) for v in files.values()),
        sheet=sheet)
