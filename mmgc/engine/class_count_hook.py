"""Check the heads' ``num_classes`` against the data sets when the runner
has built them, before the first iteration.

A Mask R-CNN left at 5 classes for an 80-class file otherwise trains until
its loss indexes a label >= 5 (``IndexError: Target 56 is out of bounds``)
-- or, with fewer classes in the file than in the heads, never complains at
all. :class:`ClassCountCheckHook` raises ``ValueError`` naming each head,
its ``num_classes`` and the data set's class count. ``tools/train.py`` and
``tools/test.py`` add it (:func:`add_class_count_check`); in your own
configs: ``custom_hooks = [dict(type='ClassCountCheckHook')]``.
"""
from typing import Any, List, Tuple

from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def class_heads(model: Any) -> List[Tuple[str, int]]:
    """The modules of ``model`` that predict one score per class:
    ``(name, num_classes)`` of every module with an int ``num_classes``
    except class-agnostic RPN heads.

    Args:
        model (nn.Module): A detector (possibly wrapped for DDP).

    Returns:
        list[tuple[str, int]]: e.g. ``[('roi_head.bbox_head', 80),
        ('roi_head.mask_head', 80)]``.
    """
    from mmdet.models.dense_heads import RPNHead
    if is_model_wrapper(model):
        model = model.module
    heads = []
    for name, module in model.named_modules():
        num_classes = getattr(module, 'num_classes', None)
        if isinstance(module, RPNHead) or isinstance(num_classes, bool) or \
                not isinstance(num_classes, int):
            continue
        heads.append((name, num_classes))
    return heads


def check_class_count(model: Any, dataset: Any, split: str) -> None:
    """Raise ``ValueError`` if a head's ``num_classes`` is not the number
    of ``dataset.metainfo['classes']``.

    Args:
        model (nn.Module): The detector.
        dataset: A built data set with ``metainfo``.
        split (str): ``'train'``, ``'val'`` or ``'test'`` for the message.
    """
    classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
    if classes is None or isinstance(classes, str):
        return
    wrong = [(name, n) for name, n in class_heads(model) if n != len(classes)]
    if not wrong:
        return
    heads = ', '.join(f'model.{name}.num_classes={n}' for name, n in wrong)
    source = getattr(dataset, 'ann_file', None) or type(dataset).__name__
    shown = ', '.join(map(repr, classes[:5])) + \
        (', ...' if len(classes) > 5 else '')
    raise ValueError(
        f'{heads}, but the {split} data set ({source}) has {len(classes)} '
        f'classes ({shown}); set num_classes={len(classes)} on every head')


@HOOKS.register_module()
class ClassCountCheckHook(Hook):
    """Raise before the first iteration when a head's ``num_classes`` is
    not the class count of a built train, val or test data set."""

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        """Check every data set the runner has built."""
        from mmengine.runner import BaseLoop
        for split in ('train', 'val', 'test'):
            loop = getattr(runner, f'_{split}_loop', None)
            if isinstance(loop, BaseLoop):
                check_class_count(runner.model, loop.dataloader.dataset, split)


def add_class_count_check(cfg: Config) -> Config:
    """Add :class:`ClassCountCheckHook` to ``cfg.custom_hooks`` (once).

    Args:
        cfg (Config): Modified in place.

    Returns:
        Config: ``cfg``.
    """
    hooks = list(cfg.get('custom_hooks', None) or [])
    names = ('ClassCountCheckHook', 'mmgc.ClassCountCheckHook')
    if not any(isinstance(h, dict) and h.get('type') in names for h in hooks):
        hooks.append(dict(type='ClassCountCheckHook'))
    cfg.custom_hooks = hooks
    return cfg
