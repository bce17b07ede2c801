"""Convert MMDetection GCNet / non-local checkpoints to mmgc key names.

Inside each block, mmgc's ``GCBlock`` and ``NLBlock`` have the state-dict
keys of mmcv's ``ContextBlock`` and ``NonLocal2d``; only the attribute name
the ResNet gives the plugin differs (its ``_abbr_``):
``backbone.layer2.0.context_block.conv_mask.weight`` becomes
``backbone.layer2.0.gc_block.conv_mask.weight``, and ``nonlocal_block``
becomes ``nl_block``. Everything else (tensors, meta) is copied unchanged.

Usage:
    python tools/model_converters/mmdet_to_mmgc.py SRC.pth DST.pth
"""
import argparse
import os
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, Mapping

import torch

# mmcv's plugin attribute names -> mmgc's, as whole dotted path components
KEY_RENAMES = (('context_block', 'gc_block'), ('nonlocal_block', 'nl_block'))


def convert_key(key: str) -> str:
    """Rename mmcv plugin attribute names in one state-dict key.

    Args:
        key (str): e.g. ``'backbone.layer2.0.context_block1.conv_mask.bias'``.

    Returns:
        str: e.g. ``'backbone.layer2.0.gc_block1.conv_mask.bias'``; a key of
        no mmcv plugin is returned unchanged.
    """
    for old, new in KEY_RENAMES:
        # a plugin's postfix (e.g. ``context_block1``) is kept
        key = re.sub(rf'(^|\.){old}(\w*)\.', rf'\g<1>{new}\g<2>.', key)
    return key


def convert_state_dict(state_dict: Mapping[str, torch.Tensor]
                       ) -> Dict[str, torch.Tensor]:
    """Apply :func:`convert_key` to every key, keeping the order."""
    converted = OrderedDict()
    for key, value in state_dict.items():
        new_key = convert_key(key)
        if new_key in converted:
            raise KeyError(f'two keys map to {new_key!r}; is {key!r} '
                           'already converted?')
        converted[new_key] = value
    return converted


def convert_checkpoint(src: str, dst: str) -> int:
    """Write ``dst`` with renamed keys; returns the number of keys renamed.

    Args:
        src (str): MMDetection checkpoint (``{'state_dict': ...}`` or a bare
            state dict).
        dst (str): Output path; must differ from ``src``.
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
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    tmp = dst + '.tmp'
    torch.save(checkpoint, tmp)
    os.replace(tmp, dst)  # never leave a half-written file at dst
    return renamed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='MMDetection checkpoint')
    parser.add_argument('dst', help='output checkpoint for mmgc configs')
    args = parser.parse_args()
    renamed = convert_checkpoint(args.src, args.dst)
    print(f'{args.dst}: renamed {renamed} keys')


if __name__ == '__main__':
    main()
