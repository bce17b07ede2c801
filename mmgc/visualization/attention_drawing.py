"""Attention maps drawn over the image they were computed on.

A block's attention maps (``attention_maps(x, queries)``, ``[Q, H, W]`` over
its input grid, see :mod:`mmgc.analysis.attention`) are laid over the
original image as heat maps with mmengine's ``Visualizer``: one panel per
query with the query marked, or a single panel for a block whose map is the
same for every query. A map that is zero outside a window (local attention)
is drawn cell by cell with a box around the window; a map over the whole
image is interpolated smoothly.

Coordinates: ``meta`` is a data sample's metainfo (``ori_shape``,
``img_shape``, ``batch_input_shape``, ``scale_factor``); points are
``(x, y)`` in pixels of the original image; cells ``(row, col)`` of a
feature map that covers the padded batch input.
"""
import math
from typing import List, Optional, Sequence, Tuple

import mmcv
import numpy as np
from mmengine.visualization import Visualizer
from mmengine.visualization.utils import convert_overlay_heatmap

from .contact_sheet import save_contact_sheet

Point = Tuple[float, float]
Cell = Tuple[int, int]

SHEET_WIDTH = 1600  # px; the sheet's columns share it (120..320 px each)


def to_image_coords(point: Point, meta: dict) -> Point:
    """Original-image pixel ``(x, y)`` in the (resized, padded) batch
    input."""
    scale_x, scale_y = meta['scale_factor']
    return point[0] * scale_x, point[1] * scale_y


def point_to_cell(point: Point, map_size: Tuple[int, int], meta: dict) -> Cell:
    """The map cell ``(row, col)`` containing an original-image point."""
    x, y = to_image_coords(point, meta)
    pad_h, pad_w = meta['batch_input_shape']
    height, width = map_size
    return (min(height - 1,
                int(y * height / pad_h)), min(width - 1,
                                              int(x * width / pad_w)))


def cell_to_point(cell: Cell, map_size: Tuple[int, int], meta: dict) -> Point:
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


def map_to_image(heat: np.ndarray,
                 meta: dict,
                 out_hw: Tuple[int, int],
                 interpolation: str = 'bilinear') -> np.ndarray:
    """A map over the batch input (its cells tile the padded input from the
    top-left), cropped to the image and resized to the drawing's size.

    Args:
        heat (np.ndarray): ``[h, w]`` float map.
        meta (dict): The data sample's metainfo.
        out_hw (tuple[int, int]): Height and width of the drawing.
        interpolation (str): mmcv interpolation of the upsampling.

    Returns:
        np.ndarray: ``[out_h, out_w]`` float32.
    """
    pad_h, pad_w = meta['batch_input_shape']
    img_h, img_w = meta['img_shape']
    resized = mmcv.imresize(
        heat.astype(np.float32), (pad_w, pad_h),
        interpolation=interpolation)  # [pad_h, pad_w]
    return mmcv.imresize(
        resized[:img_h, :img_w], (out_hw[1], out_hw[0]),
        interpolation=interpolation)


def draw_panel(
        visualizer: Visualizer,
        image: np.ndarray,
        heat: np.ndarray,
        alpha: float,
        label: str,
        query: Optional[Point] = None,
        box: Optional[Tuple[float, float, float, float]] = None) -> np.ndarray:
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
        visualizer.draw_bboxes(
            np.array([box]), edge_colors='white', line_widths=1)
    if query is not None:
        visualizer.draw_points(
            np.array([query]),
            colors='white',
            marker='X',
            sizes=np.array([font * 10]))
    visualizer.draw_texts(
        label,
        np.array([2, 2]),
        colors='white',
        font_sizes=font,
        bboxes=dict(facecolor='black', alpha=0.6, pad=1, edgecolor='none'))
    return visualizer.get_image()


def support_box(heat: np.ndarray) -> Optional[Tuple[Cell, Cell]]:
    """First and last cell ``(row, col)`` of the rectangle holding a map's
    non-zero weights, or None when that is the whole map."""
    rows = np.flatnonzero(heat.any(axis=1))
    cols = np.flatnonzero(heat.any(axis=0))
    if len(rows) == 0 or (len(rows) == heat.shape[0]
                          and len(cols) == heat.shape[1]):
        return None
    return (rows[0], cols[0]), (rows[-1], cols[-1])


def draw_attention(visualizer: Visualizer,
                   maps: np.ndarray,
                   cells: Sequence[Cell],
                   image: np.ndarray,
                   meta: dict,
                   alpha: float,
                   label: str,
                   query_independent: bool = False) -> np.ndarray:
    """Panels of one block's attention side by side, one per query (or one
    for all when ``query_independent``).

    Args:
        visualizer (Visualizer): mmengine visualizer used for drawing.
        maps (np.ndarray): ``[Q, H, W]`` attention of each query over the
            block's input map.
        cells (Sequence[Cell]): The query cells ``(row, col)``.
        image (np.ndarray): The original RGB image, possibly resized for
            display (``[h, w, 3]``).
        meta (dict): The data sample's metainfo.
        alpha (float): Heat-map opacity.
        label (str): The block's short name, e.g. ``'NL'``.
        query_independent (bool): Draw ``maps[0]`` once, without a query.

    Returns:
        np.ndarray: RGB ``[h, n * w, 3]``.
    """
    out_hw = image.shape[:2]
    zoom = out_hw[0] / meta['ori_shape'][0]  # display px per original px
    map_size = maps.shape[1:]
    if query_independent:
        heat = map_to_image(maps[0], meta, out_hw)
        return draw_panel(
            visualizer, image, heat, alpha,
            f'{label} {map_size[0]}x{map_size[1]}: one map for '
            f'all queries')
    pad_h, pad_w = meta['batch_input_shape']
    # half a cell in original-image pixels: boxes enclose whole cells
    half_x = pad_w / map_size[1] / 2 / meta['scale_factor'][0]
    half_y = pad_h / map_size[0] / 2 / meta['scale_factor'][1]
    panels = []
    for cell, weights in zip(cells, maps):
        query = cell_to_point(cell, map_size, meta)
        window = support_box(weights)
        box = None
        if window is not None:
            first = cell_to_point(window[0], map_size, meta)
            last = cell_to_point(window[1], map_size, meta)
            box = tuple(zoom * v
                        for v in (first[0] - half_x, first[1] - half_y,
                                  last[0] + half_x, last[1] + half_y))
        heat = map_to_image(weights, meta, out_hw,
                            'bilinear' if window is None else 'nearest')
        panels.append(
            draw_panel(visualizer, image, heat, alpha,
                       f'{label} q=({query[0]:.0f},{query[1]:.0f})',
                       (zoom * query[0], zoom * query[1]), box))
    return np.concatenate(panels, axis=1)


def save_attention_sheet(files: Sequence[Sequence[str]],
                         captions: Sequence[Sequence[str]],
                         out_file: str) -> Optional[str]:
    """The contact sheet of the drawings: a row per image, a column per
    block, each column ``SHEET_WIDTH / columns`` px wide (120..320).

    Args:
        files (Sequence[Sequence[str]]): Drawing files, a row per image.
        captions (Sequence[Sequence[str]]): Their captions, alike.
        out_file (str): The PNG to write.

    Returns:
        str | None: ``out_file``, or None when there is nothing to draw.
    """
    if not files or not files[0]:
        return None
    columns = len(files[0])
    tile = max(120, min(320, SHEET_WIDTH // columns))
    return save_contact_sheet([f for row in files for f in row],
                              out_file,
                              cols=columns,
                              tile_width=tile,
                              captions=[c for row in captions for c in row])
