"""Inference time, training-step time and peak memory of a detector config
against its baseline, measured side by side in one process.

Both detectors are built from their configs with random initialisation
(``init_weights()``; no ImageNet download), or loaded from ``--checkpoint``
/ ``--baseline-checkpoint``; a randomly initialised config model shares
every weight it has in common with the baseline. What is measured, and
how, is described in :mod:`mmgc.analysis.detector_benchmark`.

The default baseline is the shipped baseline of the config's detector
type (``baseline_r50_mask.py`` for Mask R-CNN, ``baseline_r50_retina.py``
for RetinaNet). ``--cfg-options`` apply to both configs; e.g.
``model.test_cfg.rcnn.score_thr=0`` makes a random Mask R-CNN keep its 100
best detections, so that the mask head runs as on a busy image (at the
config's 0.05 a random model detects nothing).

Example (the GC r16 c3-c5 Mask R-CNN's cost on a shared 2-core CPU)::

    python tools/analysis_tools/benchmark.py configs/gc_r50_mask.py \\
        --threads 1 --clock cpu --repeats 2
"""
import argparse
import os
import os.path as osp
import sys

import torch
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope

import mmgc  # noqa: F401  (registers the blocks)
from mmgc.analysis.detector_benchmark import (Candidate, build, measure,
                                              share_weights, table)
from mmgc.utils import add_cfg_options_arg, add_shape_arg, image_shape
from mmgc.utils.benchmark import prepare_process
from mmgc.utils.complexity import default_baseline


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--baseline',
        help='baseline config file (default: '
        "the shipped baseline of the config's detector)")
    parser.add_argument(
        '--checkpoint',
        help='weights of the config model '
        '(default: random initialisation)')
    parser.add_argument(
        '--baseline-checkpoint', help='weights of the baseline model')
    add_shape_arg(parser)
    parser.add_argument(
        '--batch-size',
        type=int,
        default=1,
        help='images per call (default 1)')
    parser.add_argument(
        '--threads',
        type=int,
        default=2,
        help='torch intra-op threads (default 2)')
    parser.add_argument(
        '--repeats',
        type=int,
        default=3,
        help='timed runs; the minimum counts (default 3)')
    parser.add_argument(
        '--warmup', type=int, default=1, help='untimed runs first (default 1)')
    parser.add_argument(
        '--clock',
        choices=['wall', 'cpu'],
        default='wall',
        help="'wall' (default) or 'cpu': this process's CPU "
        'time, which on a shared machine with --threads 1 '
        'does not count time other processes hold the core')
    parser.add_argument(
        '--no-train', action='store_true', help='measure inference only')
    parser.add_argument(
        '--device',
        default=None,
        help="'cpu' or 'cuda[:N]' (default: cuda if "
        'available)')
    add_cfg_options_arg(parser, 'both configs',
                        'model.test_cfg.rcnn.score_thr=0')
    args = parser.parse_args()
    args.shape = image_shape(parser, args.shape)
    for name in ('batch_size', 'threads', 'repeats'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got '
                         f'{getattr(args, name)}')
    if args.clock == 'cpu' and (args.device or '').startswith('cuda'):
        parser.error('--clock cpu times the host only; use --clock wall '
                     'with --device cuda')
    if args.warmup < 0:
        parser.error(f'--warmup must be >= 0, got {args.warmup}')
    for path in (args.config, args.baseline, args.checkpoint,
                 args.baseline_checkpoint):
        if path is not None and not osp.isfile(path):
            parser.error(f'file not found: {path!r}')
    return args


def main() -> None:
    args = parse_args()
    prepare_process(args.threads)
    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    init_default_scope('mmdet')
    # the current logger: keeps init_weights' per-parameter report quiet
    MMLogger.get_instance('mmgc_benchmark', log_level='WARNING')

    cfg, model = build(args.config, args.checkpoint, args.cfg_options,
                       args.device)
    baseline = args.baseline or default_baseline(
        type(model).__name__, args.config)
    base_cfg, base_model = build(baseline, args.baseline_checkpoint,
                                 args.cfg_options, args.device)
    shared = None
    if args.checkpoint is None:
        shared = share_weights(base_model, model)
    train = not args.no_train
    ours = Candidate(
        osp.basename(args.config), model, cfg, args.shape, args.batch_size,
        train)
    base = Candidate(
        osp.basename(baseline), base_model, base_cfg, args.shape,
        args.batch_size, train)

    height, width = args.shape
    print(f'torch {torch.__version__}, device {args.device}, '
          f'{torch.get_num_threads()} threads, MALLOC_MMAP_THRESHOLD_='
          f'{os.environ.get("MALLOC_MMAP_THRESHOLD_")}')
    print(f'input {args.batch_size}x3x{height}x{width} (synthetic), '
          f'{args.warmup} warm-up + min of {args.repeats} interleaved runs, '
          f'{args.clock} clock')
    weights = (f'checkpoint {args.checkpoint}' if args.checkpoint else
               'random init, ' + f'{shared[0]} of {shared[1]} tensors '
               'shared with the baseline')
    base_weights = (f'checkpoint {args.baseline_checkpoint}'
                    if args.baseline_checkpoint else 'random init')
    print(f'weights: {ours.name}: {weights}; {base.name}: {base_weights}')
    sys.stdout.flush()

    rows = measure(ours, base, args.batch_size, args.repeats, args.warmup,
                   args.device, args.clock, train)
    print()
    print(table(rows, ours.name, base.name))


if __name__ == '__main__':
    main()
