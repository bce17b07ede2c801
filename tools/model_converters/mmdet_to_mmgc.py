"""Upgrade a checkpoint of an earlier mmgc version to today's key names.

MMDetection's GCNet / non-local checkpoints need no conversion: mmgc's
``GCBlock`` / ``NLBlock`` are named ``context_block`` / ``nonlocal_block``
in a ResNet, as mmcv's blocks are, so ``load_from`` takes them as they are.
Checkpoints written by mmgc before that say ``gc_block`` / ``nl_block``;
this tool renames those (see :mod:`mmgc.utils.checkpoint_convert`).

Usage:
    python tools/model_converters/mmdet_to_mmgc.py OLD.pth NEW.pth
"""
import argparse

from mmgc.utils.checkpoint_convert import convert_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='checkpoint of an earlier mmgc version')
    parser.add_argument('dst', help='output checkpoint (not src)')
    args = parser.parse_args()
    renamed = convert_checkpoint(args.src, args.dst)
    print(f'{args.dst}: renamed {renamed} keys')


if __name__ == '__main__':
    main()
