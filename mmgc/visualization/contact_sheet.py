"""Contact sheets: many drawings in one PNG, to see a run at a glance."""
import os
import os.path as osp
from typing import Optional, Sequence

import cv2
import mmcv
import numpy as np

CAPTION_HEIGHT = 16  # px under each tile
BACKGROUND = 255


def contact_sheet(images: Sequence[np.ndarray],
                  captions: Optional[Sequence[str]] = None,
                  cols: int = 4,
                  tile_width: int = 400,
                  gap: int = 6) -> np.ndarray:
    """Images in a grid, row by row, each scaled to ``tile_width`` pixels
    wide (aspect kept; a row is as tall as its tallest tile), with an
    optional caption under each. Tiles are never wider than the widest
    image (small drawings are not blown up).

    Args:
        images (Sequence[np.ndarray]): ``[H, W, 3]`` uint8 images (any
            channel order; the sheet keeps it).
        captions (Sequence[str], optional): One text per image.
        cols (int): Tiles per row (>= 1).
        tile_width (int): Width of each tile in pixels (>= 16).
        gap (int): Pixels between tiles and around the sheet.

    Returns:
        np.ndarray: The sheet, ``[H, W, 3]`` uint8.
    """
    if not images:
        raise ValueError('contact_sheet: no images given')
    if cols < 1 or tile_width < 16:
        raise ValueError(f'contact_sheet: cols={cols} must be >= 1 and '
                         f'tile_width={tile_width} >= 16')
    if captions is not None and len(captions) != len(images):
        raise ValueError(f'contact_sheet: {len(captions)} captions for '
                         f'{len(images)} images')
    tile_width = min(tile_width, max(image.shape[1] for image in images))
    caption_height = CAPTION_HEIGHT if captions is not None else 0
    tiles = []
    for i, image in enumerate(images):
        tile = mmcv.imresize(
            image,
            (tile_width,
             max(1, round(image.shape[0] * tile_width / image.shape[1]))))
        if captions is not None:
            strip = np.full((caption_height, tile_width, 3), BACKGROUND,
                            np.uint8)
            cv2.putText(strip, captions[i], (2, caption_height - 4),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                        cv2.LINE_AA)
            tile = np.concatenate([tile, strip], axis=0)
        tiles.append(tile)
    cols = min(cols, len(tiles))
    rows = [tiles[i:i + cols] for i in range(0, len(tiles), cols)]
    row_heights = [max(t.shape[0] for t in row) for row in rows]
    sheet = np.full(
        (gap + sum(h + gap
                   for h in row_heights), gap + cols * (tile_width + gap), 3),
        BACKGROUND, np.uint8)
    y = gap
    for row, height in zip(rows, row_heights):
        for c, tile in enumerate(row):
            x = gap + c * (tile_width + gap)
            sheet[y:y + tile.shape[0], x:x + tile_width] = tile
        y += height + gap
    return sheet


def save_contact_sheet(files: Sequence[str],
                       out_file: str,
                       cols: int = 4,
                       tile_width: int = 400,
                       captions: Optional[Sequence[str]] = None) -> str:
    """Read image files and write their contact sheet as ``out_file``.

    Args:
        files (Sequence[str]): Image files, in sheet order.
        out_file (str): The PNG to write.
        cols (int): Tiles per row.
        tile_width (int): Width of each tile in pixels.
        captions (Sequence[str], optional): Default: the file names.

    Returns:
        str: ``out_file``.
    """
    images = [mmcv.imread(f) for f in files]
    if captions is None:
        captions = [osp.basename(f) for f in files]
    sheet = contact_sheet(images, captions, cols, tile_width)
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    mmcv.imwrite(sheet, out_file)
    return out_file
