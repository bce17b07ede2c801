"""The configured class list against an annotation file's categories.

MMDetection's ``CocoDataset`` and ``CocoMetric`` look the configured class
names up in the file (``COCO.get_cat_ids(cat_names=classes)``) and silently
drop every name that does not match -- with its objects. mmengine's
``--cfg-options`` deletes spaces from values, so ``'traffic light'`` arrives
as ``'trafficlight'`` and 15 of COCO's 80 categories vanish without a word.
:func:`resolve_classes` makes that impossible:

* ``classes='from_file'`` takes the names from the file (its
  ``categories`` order), so nobody retypes 80 names;
* a configured name the file does not have is a ``ValueError`` naming it
  and the file's closest names (``difflib``);
* a name twice, or names in another order than the file's categories
  (mmdet numbers labels in file order, so the names would be attached to
  the wrong objects), is a ``ValueError`` showing the order to use;
* file categories left out of the configured classes are returned, so the
  caller can warn with the number of objects and images left out (a class
  subset, e.g. ``('person',)``, is a normal MMDetection use).
"""
import difflib
from collections import defaultdict
from typing import Any, Dict, List, Sequence, Tuple

from .coco_checks import join_examples

#: ``metainfo=dict(classes=FROM_FILE)`` takes the file's category names.
FROM_FILE = 'from_file'


def file_class_names(categories: List[Dict[str, Any]],
                     source: str) -> Tuple[str, ...]:
    """The names of a COCO file's ``categories`` in file order.

    Args:
        categories (list[dict]): The file's ``categories`` list.
        source (str): File name for the messages.

    Returns:
        tuple[str]: One name per category.
    """
    names = tuple(category['name'] for category in categories)
    counts = defaultdict(list)
    for category in categories:
        counts[category['name']].append(category['id'])
    twice = [
        f'{name!r} (ids {ids})' for name, ids in counts.items() if len(ids) > 1
    ]
    if twice:
        raise ValueError(
            f'{source}: {len(twice)} category name(s) used by several '
            f'categories: {join_examples(twice, "; ")}; class names must be '
            f'unique to map labels to categories')
    return names


def resolve_classes(
        configured: Any, categories: List[Dict[str, Any]],
        source: str) -> Tuple[Tuple[str, ...], List[Dict[str, Any]]]:
    """Check the configured classes against a file's categories.

    Args:
        configured: ``metainfo['classes']``: a sequence of names or
            :data:`FROM_FILE`.
        categories (list[dict]): The file's ``categories`` list.
        source (str): File name for the messages.

    Returns:
        tuple: The class names to use (tuple of str) and the file's
        categories left out of them (list of dicts, file order).
    """
    names = file_class_names(categories, source)
    if isinstance(configured, str):
        if configured != FROM_FILE:
            raise ValueError(
                f'{source}: classes={configured!r}: expected a tuple of class '
                f'names, {FROM_FILE!r} (the file\'s {len(names)} category '
                f'names) or a text file of names, one a line (mmengine reads '
                f'it; no such file)')
        return names, []
    if configured is None or not isinstance(configured, Sequence) or \
            not all(isinstance(name, str) for name in configured):
        raise ValueError(
            f'{source}: classes={configured!r}: expected a tuple of class '
            f'names or {FROM_FILE!r}')
    configured = tuple(configured)
    repeated = sorted({n for n in configured if configured.count(n) > 1})
    if repeated:
        raise ValueError(f'{source}: class name(s) given more than once: '
                         f'{join_examples([repr(n) for n in repeated])}')
    missing = [name for name in configured if name not in names]
    if missing:
        described = []
        for name in missing:
            close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
            hint = (' (closest: ' + ', '.join(map(repr, close)) +
                    ')' if close else ' (no close name)')
            described.append(f'{name!r}{hint}')
        raise ValueError(
            f'{source}: {len(missing)} of {len(configured)} configured class '
            f'name(s) are not among the file\'s {len(names)} category '
            f'names: {join_examples(described, "; ")}. Names must match '
            f'"categories" exactly; metainfo=dict(classes={FROM_FILE!r}) '
            f'takes them from the file, and on the command line --classes '
            f'keeps spaces (--cfg-options deletes them)')
    order = sorted(configured, key=names.index)
    if list(configured) != order:
        raise ValueError(
            f'{source}: the configured classes are not in the order of the '
            f'file\'s categories; mmdet numbers labels in file order, so '
            f'names would be attached to other classes\' objects. Use '
            f'classes={tuple(order)!r}')
    left_out = [c for c in categories if c['name'] not in configured]
    return configured, left_out


def describe_left_out(left_out: List[Dict[str, Any]],
                      annotations: List[Dict[str, Any]],
                      num_categories: int) -> str:
    """How much of a file the left-out categories hold.

    Args:
        left_out (list[dict]): Categories not in the configured classes.
        annotations (list[dict]): The file's annotations.
        num_categories (int): Number of categories of the file.

    Returns:
        str: e.g. ``"2 of 80 categories of the file are not in the
        configured classes: 'hot dog', 'dog'; their 57 of 624 objects (in 43
        images, 2 of which have no other object) are left out"``.
    """
    ids = {c['id'] for c in left_out}
    per_image = defaultdict(lambda: [0, 0])  # image -> [kept, left out]
    for ann in annotations:
        per_image[ann['image_id']][ann['category_id'] in ids] += 1
    objects = sum(out for _, out in per_image.values())
    images = sum(1 for _, out in per_image.values() if out)
    emptied = sum(1 for kept, out in per_image.values() if out and not kept)
    shown = join_examples([repr(c['name']) for c in left_out])
    return (f'{len(left_out)} of {num_categories} categories of the file '
            f'are not in the configured classes: {shown}; their {objects} '
            f'of {len(annotations)} objects (in {images} images, {emptied} '
            f'of which have no other object) are left out')
