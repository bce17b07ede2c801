"""Inference time, training-step time and peak memory of a detector config
against its baseline, measured side by side in one process.

Both detectors are built from their configs with random initialisation
(``init_weights()``; no ImageNet download), or loaded from ``--checkpoint``
/ ``--baseline-checkpoint``. A randomly initialised config model first
takes over every baseline tensor of the same name and shape, so both
detectors share their common weights: a GC or NL model (zero-initialised
blocks, exact identities) then sees the same features, proposals and
detections as the baseline, and the data-dependent work (NMS, RoIs, mask
head) is the same -- the time difference is the blocks'. The table shows
the detections per image of each.

Measured on one synthetic batch of ``--batch-size`` images of ``--shape``
(random pixels; for training ``3`` random boxes and masks per image, via
mmdet's ``demo_mm_inputs``):

* inference: ``model.test_step`` (data preprocessor, ``predict`` with
  rescaling) in eval mode under ``no_grad``, per image;
* train step: ``model.train_step`` with an optimizer wrapper built from
  the config's ``optim_wrapper`` with the learning rate set to 0 (the
  optimizer's arithmetic runs, the weights stay, so every repeat does the
  same work), per step of ``--batch-size`` images;
* peak tensor memory of one call (after the timed runs): the peak of the
  bytes held by the tensors allocated during the call (activations,
  outputs, gradients, temporaries; not the weights or the optimizer state
  made by the warm-up) -- on the CPU from the torch profiler's allocation
  events, on CUDA ``max_memory_allocated`` over the memory allocated
  before the call. Exact and repeatable, but blind to memory outside
  torch's allocator (BLAS workspaces, C++ containers of mmcv's ops); the
  process's peak resident set, which sees those, varies by +-15% from run
  to run for a whole detector and is not used here.

Method: ``--threads`` intra-op threads (``torch.set_num_threads``),
``--warmup`` untimed runs, then the minimum of ``--repeats`` runs, the two
detectors interleaved (config, baseline, config, ...) so that load from
other processes hits both alike (``--clock cpu`` times this process's CPU
time instead of the wall clock: on a shared machine with ``--threads 1``
it leaves out the time other processes hold the core); the process
re-executes itself with a raised ``MALLOC_MMAP_THRESHOLD_``
(:mod:`mmgc.utils.benchmark`, shared with ``benchmark_blocks.py``).

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
from typing import List, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from torch import nn

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))
import mmgc  # noqa: E402,F401  (registers the blocks)
from mmgc.utils import (add_cfg_options_arg, add_shape_arg,  # noqa: E402
                        image_shape)
from mmgc.utils.benchmark import (interleaved_min_times,  # noqa: E402
                                  peak_tensor_bytes, prepare_process)
from mmgc.utils.complexity import (build_detector, count_params,  # noqa
                                   default_baseline, load_config,
                                   synthetic_batch)

Row = Tuple[str, Optional[float], Optional[float], str]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('--baseline', help='baseline config file (default: '
                        "the shipped baseline of the config's detector)")
    parser.add_argument('--checkpoint', help='weights of the config model '
                        '(default: random initialisation)')
    parser.add_argument('--baseline-checkpoint',
                        help='weights of the baseline model')
    add_shape_arg(parser)
    parser.add_argument('--batch-size', type=int, default=1,
                        help='images per call (default 1)')
    parser.add_argument('--threads', type=int, default=2,
                        help='torch intra-op threads (default 2)')
    parser.add_argument('--repeats', type=int, default=3,
                        help='timed runs; the minimum counts (default 3)')
    parser.add_argument('--warmup', type=int, default=1,
                        help='untimed runs first (default 1)')
    parser.add_argument('--clock', choices=['wall', 'cpu'], default='wall',
                        help="'wall' (default) or 'cpu': this process's CPU "
                        'time, which on a shared machine with --threads 1 '
                        'does not count time other processes hold the core')
    parser.add_argument('--no-train', action='store_true',
                        help='measure inference only')
    parser.add_argument('--device', default=None,
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


class Candidate:
    """One detector with its synthetic batches and bound calls.

    Args:
        name (str): Config file name, for the table.
        model (nn.Module): The detector, on ``device``.
        cfg (Config): Its config (for ``optim_wrapper``).
        args (argparse.Namespace): The command line.
    """

    def __init__(self, name: str, model: nn.Module, cfg: Config,
                 args: argparse.Namespace) -> None:
        self.name, self.model = name, model
        height, width = args.shape
        self.test_data = synthetic_batch(model, height, width,
                                         args.batch_size, with_targets=False)
        self.train_data = synthetic_batch(model, height, width,
                                          args.batch_size, with_targets=True)
        self.optim_wrapper = None
        if not args.no_train:
            optim_cfg = cfg.optim_wrapper.copy()
            optim_cfg.optimizer = dict(optim_cfg.optimizer, lr=0.)
            self.optim_wrapper = build_optim_wrapper(model, optim_cfg)
        self.detections: List[int] = []

    def infer(self) -> list:
        """``test_step`` on the test batch, in eval mode."""
        self.model.eval()
        with torch.no_grad():
            results = self.model.test_step(self.test_data)
        self.detections = [len(r.pred_instances) for r in results]
        return results

    def train(self) -> dict:
        """``train_step`` on the train batch, in train mode."""
        self.model.train()
        return self.model.train_step(self.train_data, self.optim_wrapper)


def build(config: str, checkpoint: Optional[str],
          args: argparse.Namespace) -> Tuple[Config, nn.Module]:
    """Config and detector (seeded random init or ``checkpoint``).

    Args:
        config (str): Config file path.
        checkpoint (str, optional): Weights to load.
        args (argparse.Namespace): The command line.

    Returns:
        tuple: ``(cfg, model)``, the model on ``args.device``.
    """
    cfg = load_config(config, args.cfg_options)
    torch.manual_seed(0)
    model = build_detector(cfg, init_weights=checkpoint is None)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu')
    return cfg, model.to(args.device)


def share_weights(src: nn.Module, dst: nn.Module) -> Tuple[int, int]:
    """Copy every tensor of ``src``'s state dict into ``dst`` where ``dst``
    has one of the same name and shape.

    Args:
        src (nn.Module): The baseline.
        dst (nn.Module): The config model (modified).

    Returns:
        tuple: Tensors copied, tensors of ``dst``.
    """
    dst_state = dst.state_dict()
    common = {k: v for k, v in src.state_dict().items()
              if k in dst_state and dst_state[k].shape == v.shape}
    dst.load_state_dict(common, strict=False)
    return len(common), len(dst_state)


def ratio(value: Optional[float], base: Optional[float]) -> str:
    """``value / base`` to 3 decimals, ``'-'`` where undefined."""
    if value is None or not base:
        return '-'
    return f'{value / base:.3f}'


def table(rows: List[Row], name: str, base_name: str) -> str:
    """Markdown table ``metric | config | baseline | ratio``.

    Args:
        rows (list[tuple]): ``(metric, value, baseline value, format)``.
        name (str): Config name (column header).
        base_name (str): Baseline name (column header).

    Returns:
        str: The table.
    """
    lines = [f'| metric | `{name}` | `{base_name}` | ratio |',
             '|---|---:|---:|---:|']
    for metric, value, base, fmt in rows:
        lines.append(f'| {metric} | {format(value, fmt)} | '
                     f'{format(base, fmt)} | {ratio(value, base)} |')
    return '\n'.join(lines)


def main() -> None:
    args = parse_args()
    prepare_process(args.threads)
    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    init_default_scope('mmdet')
    # the current logger: keeps init_weights' per-parameter report quiet
    MMLogger.get_instance('mmgc_benchmark', log_level='WARNING')

    cfg, model = build(args.config, args.checkpoint, args)
    baseline = args.baseline or default_baseline(type(model).__name__,
                                                 args.config)
    base_cfg, base_model = build(baseline, args.baseline_checkpoint, args)
    shared = None
    if args.checkpoint is None:
        shared = share_weights(base_model, model)
    ours = Candidate(osp.basename(args.config), model, cfg, args)
    base = Candidate(osp.basename(baseline), base_model, base_cfg, args)

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

    mb, n = 2.**20, args.batch_size
    rows: List[Row] = []
    t_inf = interleaved_min_times([ours.infer, base.infer], args.repeats,
                                  args.warmup, args.device, args.clock)
    rows.append(('inference, ms / image', t_inf[0] * 1e3 / n,
                 t_inf[1] * 1e3 / n, '.1f'))
    m_inf = [peak_tensor_bytes(c.infer, args.device) for c in (ours, base)]
    rows.append(('inference peak tensor memory, MB', m_inf[0] / mb,
                 m_inf[1] / mb, '.1f'))
    det = [sum(c.detections) / n for c in (ours, base)]
    rows.append(('detections / image', det[0], det[1], '.1f'))
    if not args.no_train:
        t_tr = interleaved_min_times([ours.train, base.train], args.repeats,
                                     args.warmup, args.device, args.clock)
        rows.append((f'train step ({n} image{"s" * (n > 1)}), ms',
                     t_tr[0] * 1e3, t_tr[1] * 1e3, '.1f'))
        m_tr = [peak_tensor_bytes(c.train, args.device)
                for c in (ours, base)]
        rows.append(('train step peak tensor memory, MB', m_tr[0] / mb,
                     m_tr[1] / mb, '.1f'))
    rows.append(('params', count_params(model), count_params(base_model),
                 ','))
    print()
    print(table(rows, ours.name, base.name))


if __name__ == '__main__':
    main()
