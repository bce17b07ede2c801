"""Generate the synthetic shapes data set in COCO instance-segmentation format.

Example::

    python tools/dataset_converters/generate_synthetic_coco.py \
        --out-dir data/synthetic --num-train 600 --num-val 100

A split where context decides the class (the same shape is one class in a
striped scene and another in a checkered one; the scene shows only in a
frame along the image border, away from the objects)::

    python tools/dataset_converters/generate_synthetic_coco.py \
        --mode context --out-dir data/synthetic_context
"""
from __future__ import annotations
import argparse
import time
from typing import List, Optional

from mmgc.datasets.synthetic_coco import MODES, generate_synthetic_coco


def _int_at_least(minimum: int):
    """argparse type: an int >= ``minimum``, with a clear error otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f'expected an integer, got {text!r}') from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f'must be an integer >= {minimum}, got {text!r}')
        return value

    return parse


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: Arguments without the program name (default: sys.argv[1:]).
    """
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--out-dir',
        default='data/synthetic',
        help='root folder of the data set')
    parser.add_argument(
        '--num-train',
        type=_int_at_least(1),
        default=600,
        help='number of training images')
    parser.add_argument(
        '--num-val',
        type=_int_at_least(1),
        default=100,
        help='number of validation images')
    parser.add_argument(
        '--image-size',
        type=_int_at_least(64),
        default=256,
        help='side of the square images in pixels')
    parser.add_argument(
        '--seed', type=_int_at_least(0), default=0, help='base random seed')
    parser.add_argument(
        '--mode',
        choices=MODES,
        default='standard',
        help='standard: class = shape; context: class = '
        'shape in the scene shown by a far-away frame')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='regenerate even if a matching data set exists')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point.

    Args:
        argv: Arguments without the program name (default: sys.argv[1:]).
    """
    args = parse_args(argv)
    start = time.perf_counter()
    summary = generate_synthetic_coco(
        args.out_dir,
        num_train=args.num_train,
        num_val=args.num_val,
        image_size=args.image_size,
        seed=args.seed,
        overwrite=args.overwrite,
        mode=args.mode)
    action = 'generated' if summary['generated'] else 'up to date, reused'
    print(f"synthetic COCO ({args.mode}) {action} in {summary['out_dir']}: "
          f"train {summary['num_train_images']} images / "
          f"{summary['num_train_annotations']} instances, "
          f"val {summary['num_val_images']} images / "
          f"{summary['num_val_annotations']} instances, "
          f"{len(summary['classes'])} classes "
          f"({time.perf_counter() - start:.1f}s)")


if __name__ == '__main__':
    main()
