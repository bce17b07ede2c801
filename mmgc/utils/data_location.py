"""Point a config at other data with one set of command-line flags.

An MMDetection config names its data in up to five places: the train, val
and test data sets (``data_root``, ``ann_file``, ``data_prefix.img``,
``metainfo.classes``) and the val and test evaluators (``ann_file``, a full
path). ``--cfg-options data_root=...`` reaches none of them (the base config
has already expanded it) and the test loader is its own copy of the val
loader. :func:`add_data_args` adds ``--data-root``, per-split annotation
files and image folders and ``--classes``; :func:`apply_data_args` writes
them into every loader and evaluator, each evaluator reading the annotation
file of its own loader's data set.
"""
import argparse
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

from mmengine.config import Config

from ..datasets.class_checks import FROM_FILE

SPLITS = ('train', 'val', 'test')


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--data-root``, ``--{train,val,test}-ann``,
    ``--{train,val,test}-img`` and ``--classes`` to a tool's parser.

    Args:
        parser (argparse.ArgumentParser): Modified in place.
    """
    group = parser.add_argument_group(
        'data location (every loader and evaluator; test defaults to val)')
    group.add_argument(
        '--data-root',
        metavar='DIR',
        help='data_root of the train, val and test data sets; the '
        'evaluators read DIR/<their data set\'s ann_file>')
    for split in SPLITS:
        default = ' (default: the val value)' if split == 'test' else ''
        group.add_argument(
            f'--{split}-ann',
            metavar='FILE',
            help=f'ann_file of the {split} data set, relative to the data '
            f'root{default}')
        group.add_argument(
            f'--{split}-img',
            metavar='PREFIX',
            help=f'image folder (data_prefix.img) of the {split} data set, '
            f'relative to the data root{default}')
    group.add_argument(
        '--classes',
        nargs='+',
        metavar='NAME',
        help=f'class names of every data set (spaces kept: --classes '
        f'person "traffic light"), or "{FROM_FILE}" for the annotation '
        f'file\'s categories')


def _leaf_datasets(dataset: Any) -> List[dict]:
    """The data sets inside wrappers (``RepeatDataset``, ``ConcatDataset``,
    ``ClassBalancedDataset``, ...)."""
    if 'datasets' in dataset:
        return [
            leaf for inner in dataset['datasets']
            for leaf in _leaf_datasets(inner)
        ]
    if 'dataset' in dataset:
        return _leaf_datasets(dataset['dataset'])
    return [dataset]


def _metrics(evaluator: Any) -> List[dict]:
    """The metric configs of an evaluator config (a dict, a list of
    dicts, or ``dict(type='Evaluator', metrics=...)``)."""
    if evaluator is None:
        return []
    if isinstance(evaluator, dict) and 'metrics' in evaluator:
        evaluator = evaluator['metrics']
    return list(evaluator) if isinstance(evaluator, (list, tuple)) \
        else [evaluator]


def set_data_location(cfg: Config,
                      data_root: Optional[str] = None,
                      ann_files: Optional[Dict[str, str]] = None,
                      img_prefixes: Optional[Dict[str, str]] = None,
                      classes: Optional[Any] = None) -> Config:
    """Write a data location into every loader and evaluator of ``cfg``.

    Args:
        cfg (Config): Modified in place.
        data_root (str, optional): ``data_root`` of every data set.
        ann_files (dict, optional): split -> ``ann_file`` (relative to the
            data root); ``test`` falls back to ``val``.
        img_prefixes (dict, optional): split -> ``data_prefix.img``;
            ``test`` falls back to ``val``.
        classes (tuple[str] | str, optional): ``metainfo.classes`` of every
            data set (a tuple of names or ``'from_file'``).

    Returns:
        Config: ``cfg``.
    """
    ann_files = dict(ann_files or {})
    img_prefixes = dict(img_prefixes or {})
    for given in (ann_files, img_prefixes):
        if 'val' in given:
            given.setdefault('test', given['val'])
    if data_root is not None:
        if not osp.isdir(data_root):
            raise FileNotFoundError(
                f'--data-root {data_root!r}: no such directory')
        data_root = data_root.rstrip('/') + '/'
        cfg.data_root = data_root
    for split in SPLITS:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        leaves = _leaf_datasets(loader['dataset'])
        if len(leaves) > 1 and (split in ann_files or split in img_prefixes):
            raise ValueError(
                f'{split}_dataloader holds {len(leaves)} data sets; '
                f'--{split}-ann / --{split}-img would not know which to '
                f'change (set them with --cfg-options)')
        for dataset in leaves:
            if data_root is not None:
                dataset['data_root'] = data_root
            if split in ann_files:
                dataset['ann_file'] = ann_files[split]
            if split in img_prefixes:
                dataset['data_prefix'] = dict(
                    dataset.get('data_prefix', None) or {},
                    img=img_prefixes[split])
            if classes is not None:
                dataset['metainfo'] = dict(
                    dataset.get('metainfo', None) or {}, classes=classes)
        moved = data_root is not None or split in ann_files
        if split == 'train' or len(leaves) != 1 or not moved:
            continue
        dataset = leaves[0]
        ann_file = dataset.get('ann_file')
        if ann_file is None:
            continue
        if not osp.isabs(ann_file) and dataset.get('data_root'):
            ann_file = osp.join(dataset['data_root'], ann_file)
        for metric in _metrics(cfg.get(f'{split}_evaluator')):
            if isinstance(metric, dict) and 'ann_file' in metric:
                metric['ann_file'] = ann_file
    return cfg


def parse_classes(values: Optional[Sequence[str]]) -> Optional[Any]:
    """``--classes`` values as ``metainfo.classes``.

    Args:
        values (list[str], optional): The parsed flag.

    Returns:
        tuple[str] | str | None: ``'from_file'``, the names, or None.
    """
    if values is None:
        return None
    if FROM_FILE in values:
        if len(values) > 1:
            raise ValueError(f'--classes {FROM_FILE} takes no other name; got '
                             f'{list(values)}')
        return FROM_FILE
    return tuple(values)


def apply_data_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the flags of :func:`add_data_args` to ``cfg``.

    Args:
        cfg (Config): Modified in place.
        args (argparse.Namespace): Parsed arguments.

    Returns:
        Config: ``cfg``.
    """

    def given(kind: str) -> Dict[str, str]:
        return {
            split: getattr(args, f'{split}_{kind}')
            for split in SPLITS
            if getattr(args, f'{split}_{kind}', None) is not None
        }

    return set_data_location(
        cfg,
        data_root=getattr(args, 'data_root', None),
        ann_files=given('ann'),
        img_prefixes=given('img'),
        classes=parse_classes(getattr(args, 'classes', None)))
