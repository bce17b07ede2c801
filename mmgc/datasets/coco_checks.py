"""Checks of COCO-format annotations: the file as a whole and each object.

* :func:`load_coco_json` / :func:`check_coco_dict`: problems that make the
  whole file untrustworthy -- invalid JSON, a missing list, duplicate image,
  annotation or category ids, an annotation of an image or category the
  file does not define, a malformed box -- raise ``ValueError`` naming the
  file, the ids and what is expected. pycocotools would silently merge
  duplicate images (and their annotations) or drop annotations of unknown
  images; mmdet's ``CocoDataset`` silently drops unknown categories.
* :func:`sanitize_instance`: one object that cannot be trained on -- a box
  outside its image, a degenerate box or mask -- is reported with a reason,
  so that the data set can skip (or clip) it and say so.
"""
import json
import math
from collections import defaultdict
from numbers import Real
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
from pycocotools import mask as mask_utils

#: Reasons :func:`sanitize_instance` gives, with their descriptions.
OUTSIDE = 'box outside its image'
DEGENERATE_BOX = 'degenerate box (w or h < 1, or area <= 0)'
DEGENERATE_MASK = ('empty or degenerate mask (no polygon of >= 3 points, '
                   'zero area, or RLE size not the image size)')
CLIPPED = 'box partly outside its image, clipped to it'

#: Examples named in one message.
MAX_EXAMPLES = 5


def load_coco_json(path: str) -> Dict[str, Any]:
    """Read and check a COCO-format annotation file.

    Args:
        path (str): Local path of the JSON file.

    Returns:
        dict: The parsed file (``images``, ``annotations``, ``categories``).
    """
    try:
        with open(path, 'rb') as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f'{path}: not valid JSON: {e.msg} (line '
                         f'{e.lineno}, column {e.colno}, char {e.pos})') \
            from e
    except UnicodeDecodeError as e:
        raise ValueError(f'{path}: not valid JSON: not UTF-8 text ({e})') \
            from e
    check_coco_dict(data, path)
    return data


def _is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, Real) and not isinstance(value, bool) and \
        math.isfinite(value)


def _raise(path: str, problem: str, offenders: List[str],
           expected: str) -> None:
    """Raise ``ValueError`` naming the file, the first offenders and the
    total count."""
    raise ValueError(f'{path}: {len(offenders)} {problem}: '
                     f'{join_examples(offenders, "; ")}; {expected}')


def _duplicates(path: str, what: str, entries: List[dict],
                describe: Callable[[dict], str]) -> None:
    """Raise if two ``entries`` share an ``id``; ``describe`` names one."""
    groups = defaultdict(list)
    for entry in entries:
        groups[entry['id']].append(entry)
    offenders = [
        f'id {i!r} x{len(group)} ({", ".join(map(describe, group))})'
        for i, group in groups.items() if len(group) > 1
    ]
    if offenders:
        _raise(path, f'duplicate {what} id(s)', offenders,
               f'{what} ids must be unique')


def _check_fields(path: str, what: str, entries: Any,
                  fields: Dict[str, Tuple[str, Any]]) -> None:
    """Raise unless ``entries`` is a list of dicts whose ``fields`` pass
    their checks (``name -> (description, predicate)``)."""
    if not isinstance(entries, list):
        raise ValueError(f'{path}: "{what}" must be a list; got '
                         f'{type(entries).__name__}')
    bad = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            bad.append(f'{what}[{index}] is a {type(entry).__name__}')
            continue
        for name, (description, ok) in fields.items():
            if not ok(entry.get(name)):
                ident = f' (id {entry["id"]!r})' if 'id' in entry else ''
                bad.append(f'{what}[{index}]{ident} has {name}='
                           f'{entry.get(name)!r}, expected {description}')
                break
    if bad:
        _raise(path, f'malformed entry/entries of "{what}"', bad,
               'see the COCO format, https://cocodataset.org/#format-data')


def check_coco_dict(data: Any, path: str) -> None:
    """Raise ``ValueError`` unless ``data`` is a consistent COCO instances
    file.

    Checked: ``images`` (``id``, ``file_name``, ``height``, ``width``) and
    ``categories`` (``id``, ``name``) lists, the optional ``annotations``
    list (``id``, ``image_id``, ``category_id``, a 4-number ``bbox``, a
    numeric ``area``); unique ids in each list; every annotation's image
    and category defined in the file.

    Args:
        data: The parsed JSON.
        path (str): File name for the messages.
    """
    if not isinstance(data, dict):
        raise ValueError(f'{path}: the top level must be a JSON object with '
                         f'"images", "annotations" and "categories"; got a '
                         f'{type(data).__name__}')
    for key in ('images', 'categories'):
        if key not in data:
            raise ValueError(f'{path}: no "{key}" list; a COCO instances '
                             f'file has "images", "annotations" and '
                             f'"categories" (keys found: {sorted(data)})')
    positive_int = (
        'an int > 0',
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0)
    has_id = ('an id', lambda v: v is not None)
    _check_fields(
        path, 'images', data['images'], {
            'id': has_id,
            'file_name': ('a file name', lambda v: isinstance(v, str) and v),
            'height': positive_int,
            'width': positive_int,
        })
    _check_fields(path, 'categories', data['categories'], {
        'id': has_id,
        'name': ('a name', lambda v: isinstance(v, str)),
    })
    annotations = data.get('annotations', [])
    _check_fields(
        path, 'annotations', annotations, {
            'id':
            has_id,
            'image_id':
            has_id,
            'category_id':
            has_id,
            'bbox': ('[x, y, w, h] of finite numbers', lambda v: isinstance(
                v, list) and len(v) == 4 and all(_is_number(x) for x in v)),
            'area': ('a finite number', _is_number),
        })
    _duplicates(path, 'image', data['images'], lambda e: repr(e['file_name']))
    _duplicates(path, 'category', data['categories'],
                lambda e: repr(e['name']))
    _duplicates(path, 'annotation', annotations,
                lambda e: f'image id {e["image_id"]!r}')

    image_ids = {image['id'] for image in data['images']}
    unknown_images = [
        f'annotation id {ann["id"]!r} has image_id {ann["image_id"]!r}'
        for ann in annotations if ann['image_id'] not in image_ids
    ]
    if unknown_images:
        _raise(path, 'annotation(s) of images the file does not define',
               unknown_images, 'every image_id must be the id of an entry of '
               '"images"')
    category_ids = [category['id'] for category in data['categories']]
    known = set(category_ids)
    unknown_categories = [
        f'annotation id {ann["id"]!r} (image id {ann["image_id"]!r}) has '
        f'category_id {ann["category_id"]!r}' for ann in annotations
        if ann['category_id'] not in known
    ]
    if unknown_categories:
        _raise(path, 'annotation(s) with a category id not in "categories"',
               unknown_categories,
               f'allowed category ids: {sorted(category_ids, key=str)}')


def _mask_area(segmentation: Any, height: int, width: int) -> float:
    """Area of a COCO ``segmentation`` (0 if it is not a usable mask)."""
    if isinstance(segmentation, list):  # polygons [[x1, y1, x2, ...], ...]
        area = 0.
        for poly in segmentation:
            if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2 \
                    or not all(_is_number(v) for v in poly):
                continue  # mmdet's LoadAnnotations drops such polygons
            xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)  # [N, 2]
            x, y = xy[:, 0], xy[:, 1]
            area += 0.5 * abs(
                np.dot(x, np.roll(y, 1)) -
                np.dot(y, np.roll(x, 1)))  # shoelace
        return area
    if isinstance(segmentation, dict):  # RLE
        if list(segmentation.get('size', ())) != [height, width] or \
                not isinstance(segmentation.get('counts'), (list, str)):
            return 0.
        rle = segmentation
        if isinstance(rle['counts'], list):  # uncompressed
            rle = mask_utils.frPyObjects(rle, height, width)
        return float(mask_utils.area(rle))
    return 0.


def sanitize_instance(ann: Dict[str, Any], height: int,
                      width: int) -> Tuple[Optional[str], Optional[dict]]:
    """Check one annotation against its image.

    Args:
        ann (dict): A COCO annotation (already through
            :func:`check_coco_dict`).
        height (int): Its image's height.
        width (int): Its image's width.

    Returns:
        tuple: ``(reason, ann)``: ``(None, ann)`` if fine; ``(CLIPPED,
        copy with the box clipped to the image)``; ``(OUTSIDE |
        DEGENERATE_BOX | DEGENERATE_MASK, None)`` if it must be skipped.
    """
    x1, y1, w, h = ann['bbox']
    x2, y2 = x1 + w, y1 + h
    cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, width), \
        min(y2, height)
    if w < 1 or h < 1 or ann['area'] <= 0:
        return DEGENERATE_BOX, None
    if cx2 <= cx1 or cy2 <= cy1:
        return OUTSIDE, None
    if ann.get('segmentation') is not None and \
            _mask_area(ann['segmentation'], height, width) <= 0:
        return DEGENERATE_MASK, None
    if (cx1, cy1, cx2, cy2) == (x1, y1, x2, y2):
        return None, ann
    if cx2 - cx1 < 1 or cy2 - cy1 < 1:
        return DEGENERATE_BOX, None
    return CLIPPED, dict(ann, bbox=[cx1, cy1, cx2 - cx1, cy2 - cy1])


def describe_problems(problems: Dict[str, List[Tuple[Any, Any]]],
                      total: int) -> str:
    """One line per reason: count and the first annotation/image ids.

    Args:
        problems (dict): reason -> ``[(ann_id, image_id), ...]``.
        total (int): Number of annotations looked at.

    Returns:
        str: e.g. ``'2 of 41 annotations: box outside its image (ann id 7
        of image 2; ann id 9 of image 3)'``.
    """
    lines = []
    for reason, ids in problems.items():
        shown = join_examples([f'ann id {a!r} of image {i!r}' for a, i in ids],
                              '; ')
        lines.append(f'{len(ids)} of {total} annotations: {reason} '
                     f'({shown})')
    return '; '.join(lines)


def join_examples(items: List[str], sep: str = ', ') -> str:
    """The first :data:`MAX_EXAMPLES` items joined, then how many more."""
    more = (f' (and {len(items) - MAX_EXAMPLES} more)'
            if len(items) > MAX_EXAMPLES else '')
    return sep.join(items[:MAX_EXAMPLES]) + more
