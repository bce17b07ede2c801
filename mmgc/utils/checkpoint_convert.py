"""Upgrade checkpoints written by earlier mmgc versions to today's keys.

mmgc's ``GCBlock`` and ``NLBlock`` carry mmcv's ``_abbr_``
(``context_block``, ``nonlocal_block``), so a ResNet names their plugins as
MMDetection does and MMDetection's published GCNet / non-local checkpoints
load with ``load_from`` as they are. mmgc versions before that named them
``gc_block`` and ``nl_block``; this module renames those attributes in
such a checkpoint: ``backbone.layer2.0.gc_block.conv_mask.weight`` becomes
``backbone.layer2.0.context_block.conv_mask.weight`` (a plugin's postfix,
e.g. ``gc_block1``, is kept). Keys inside a block, tensors and meta are
unchanged.
"""
import io
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, Mapping

import torch

from ..engine.atomic_io import atomic_write

#: Attribute names of earlier mmgc versions -> today's (mmcv's), as whole
#: dotted path components.
KEY_RENAMES = (('gc_block', 'context_block'), ('nl_block', 'nonlocal_block'))


def convert_key(key: str) -> str:
    """Rename earlier mmgc plugin attribute names in one state-dict key.

    Args:
        key (str): e.g. ``'backbone.layer2.0.gc_block1.conv_mask.bias'``.

    Returns:
        str: e.g. ``'backbone.layer2.0.context_block1.conv_mask.bias'``; a
        key without such an attribute is returned unchanged.
    """
    for old, new in KEY_RENAMES:
        # the plugin's postfix (e.g. ``gc_block1``, ``gc_block_b``) is kept
        key = re.sub(rf'(^|\.){old}(\w*)\.', rf'\g<1>{new}\g<2>.', key)
    return key


def convert_state_dict(
        state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Apply :func:`convert_key` to every key, keeping the order.

    Raises:
        KeyError: if two keys map to one (e.g. a checkpoint that has both
            ``gc_block`` and ``context_block`` keys at one place).
    """
    converted: Dict[str, torch.Tensor] = OrderedDict()
    for key, value in state_dict.items():
        new_key = convert_key(key)
        if new_key in converted:
            raise KeyError(f'two keys map to {new_key!r}; is {key!r} '
                           'already converted?')
        converted[new_key] = value
    return converted


def convert_checkpoint(src: str, dst: str) -> int:
    """Write ``dst``: the checkpoint ``src`` with renamed keys.

    ``dst`` is written atomically (a crash leaves the old file or the new
    one) and never over ``src``.

    Args:
        src (str): Checkpoint of an earlier mmgc version (``{'state_dict':
            ...}`` or a bare state dict).
        dst (str): Output path; must differ from ``src``.

    Returns:
        int: Number of keys renamed.
    """
    if osp.abspath(src) == osp.abspath(dst):
        raise ValueError(f'refusing to overwrite the source checkpoint '
                         f'{src!r}; choose another output path')
    if not osp.isfile(src):
        raise FileNotFoundError(f'checkpoint not found: {src!r}')
    checkpoint = torch.load(src, map_location='cpu', weights_only=False)
    has_wrapper = isinstance(checkpoint, dict) and 'state_dict' in checkpoint
    state_dict = checkpoint['state_dict'] if has_wrapper else checkpoint
    converted = convert_state_dict(state_dict)
    renamed = sum(a != b for a, b in zip(state_dict, converted))
    if has_wrapper:
        checkpoint['state_dict'] = converted
    else:
        checkpoint = converted
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    atomic_write(dst, buffer.getvalue())
    return renamed
