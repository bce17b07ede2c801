"""Inference time, training-step time and peak memory of a detector against
its baseline, measured side by side in one process.

Used by ``tools/analysis_tools/benchmark.py``; the timing and memory
primitives are :mod:`mmgc.utils.benchmark`.

Measured on one synthetic batch of ``batch_size`` images of ``shape``
(random pixels; for training ``3`` random boxes and masks per image, via
mmdet's ``demo_mm_inputs``):

* inference: ``model.test_step`` (data preprocessor, ``predict`` with
  rescaling) in eval mode under ``no_grad``, per image;
* train step: ``model.train_step`` with an optimizer wrapper built from
  the config's ``optim_wrapper`` with the learning rate set to 0 (the
  optimizer's arithmetic runs, the weights stay, so every repeat does the
  same work), per step of ``batch_size`` images;
* peak tensor memory of one call (after the timed runs): the peak of the
  bytes held by the tensors allocated during the call (activations,
  outputs, gradients, temporaries; not the weights or the optimizer state
  made by the warm-up) -- on the CPU from the torch profiler's allocation
  events, on CUDA ``max_memory_allocated`` over the memory allocated
  before the call. Exact and repeatable, but blind to memory outside
  torch's allocator (BLAS workspaces, C++ containers of mmcv's ops); the
  process's peak resident set, which sees those, varies by +-15% from run
  to run for a whole detector and is not used here.

Method: ``threads`` intra-op threads (``torch.set_num_threads``),
``warmup`` untimed runs, then the minimum of ``repeats`` runs, the two
detectors interleaved (config, baseline, config, ...) so that load from
other processes hits both alike (``clock='cpu'`` times this process's CPU
time instead of the wall clock: on a shared machine with one thread
it leaves out the time other processes hold the core); the process
re-executes itself with a raised ``MALLOC_MMAP_THRESHOLD_``
(:mod:`mmgc.utils.benchmark`, shared with ``benchmark_blocks.py``).

A randomly initialised config model first takes over every baseline tensor
of the same name and shape (:func:`share_weights`), so both detectors share
their common weights: a GC or NL model (zero-initialised blocks, exact
identities) then sees the same features, proposals and detections as the
baseline, and the data-dependent work (NMS, RoIs, mask head) is the same --
the time difference is the blocks'.
"""
from typing import List, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.runner import load_checkpoint
from torch import nn

from ..utils.benchmark import interleaved_min_times, peak_tensor_bytes
from ..utils.complexity import (build_detector, count_params, load_config,
                                synthetic_batch)

#: A table row: metric, config value, baseline value, format spec.
Row = Tuple[str, Optional[float], Optional[float], str]


class Candidate:
    """One detector with its synthetic batches and bound calls.

    Args:
        name (str): Config file name, for the table.
        model (nn.Module): The detector, on its device.
        cfg (Config): Its config (for ``optim_wrapper``).
        shape (tuple[int, int]): ``(H, W)`` of the synthetic images.
        batch_size (int): Images per call.
        train (bool): Build the optimizer wrapper for :meth:`train`, from
            the config's ``optim_wrapper`` with the learning rate set to 0
            (the optimizer's arithmetic runs, the weights stay, so every
            repeat does the same work).
    """

    def __init__(self,
                 name: str,
                 model: nn.Module,
                 cfg: Config,
                 shape: Tuple[int, int],
                 batch_size: int,
                 train: bool = True) -> None:
        self.name, self.model = name, model
        height, width = shape
        self.test_data = synthetic_batch(
            model, height, width, batch_size, with_targets=False)
        self.train_data = synthetic_batch(
            model, height, width, batch_size, with_targets=True)
        self.optim_wrapper = None
        if train:
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


def build(config: str,
          checkpoint: Optional[str],
          cfg_options: Optional[dict] = None,
          device: str = 'cpu') -> Tuple[Config, nn.Module]:
    """Config and detector: seeded random initialisation, or the weights
    of ``checkpoint``.

    Args:
        config (str): Config file path.
        checkpoint (str, optional): Weights to load.
        cfg_options (dict, optional): ``--cfg-options`` overrides.
        device (str): Where the model goes.

    Returns:
        tuple: ``(cfg, model)``, the model on ``device``.
    """
    cfg = load_config(config, cfg_options)
    torch.manual_seed(0)
    model = build_detector(cfg, init_weights=checkpoint is None)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu')
    return cfg, model.to(device)


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
    common = {
        k: v
        for k, v in src.state_dict().items()
        if k in dst_state and dst_state[k].shape == v.shape
    }
    dst.load_state_dict(common, strict=False)
    return len(common), len(dst_state)


def measure(ours: Candidate,
            base: Candidate,
            batch_size: int,
            repeats: int,
            warmup: int,
            device: str,
            clock: str,
            train: bool = True) -> List[Row]:
    """Time and peak tensor memory of both candidates, runs interleaved
    (config, baseline, config, ...) so that load from other processes hits
    both alike; the peak memory is measured after the timed runs.

    Args:
        ours (Candidate): The config model.
        base (Candidate): The baseline.
        batch_size (int): Images per call (for the per-image rows).
        repeats (int): Timed runs; the minimum counts.
        warmup (int): Untimed runs first.
        device (str): ``'cpu'`` or ``'cuda[:N]'``.
        clock (str): ``'wall'`` or ``'cpu'``
            (:data:`mmgc.utils.benchmark.CLOCKS`).
        train (bool): Measure the training step too.

    Returns:
        list[Row]: Inference time and memory, detections per image,
        (train step time and memory,) parameters.
    """
    mb, n = 2.**20, batch_size
    pair = (ours, base)
    rows: List[Row] = []
    t_inf = interleaved_min_times([c.infer for c in pair], repeats, warmup,
                                  device, clock)
    rows.append(('inference, ms / image', t_inf[0] * 1e3 / n,
                 t_inf[1] * 1e3 / n, '.1f'))
    m_inf = [peak_tensor_bytes(c.infer, device) for c in pair]
    rows.append(('inference peak tensor memory, MB', m_inf[0] / mb,
                 m_inf[1] / mb, '.1f'))
    det = [sum(c.detections) / n for c in pair]
    rows.append(('detections / image', det[0], det[1], '.1f'))
    if train:
        t_tr = interleaved_min_times([c.train for c in pair], repeats, warmup,
                                     device, clock)
        rows.append((f'train step ({n} image{"s" * (n > 1)}), ms',
                     t_tr[0] * 1e3, t_tr[1] * 1e3, '.1f'))
        m_tr = [peak_tensor_bytes(c.train, device) for c in pair]
        rows.append(('train step peak tensor memory, MB', m_tr[0] / mb,
                     m_tr[1] / mb, '.1f'))
    rows.append(
        ('params', count_params(ours.model), count_params(base.model), ','))
    return rows


def ratio(value: Optional[float], base: Optional[float]) -> str:
    """``value / base`` to 3 decimals, ``'-'`` where undefined."""
    if value is None or not base:
        return '-'
    return f'{value / base:.3f}'


def table(rows: List[Row], name: str, base_name: str) -> str:
    """Markdown table ``metric | config | baseline | ratio``.

    Args:
        rows (list[Row]): From :func:`measure`.
        name (str): Config name (column header).
        base_name (str): Baseline name (column header).

    Returns:
        str: The table.
    """
    lines = [
        f'| metric | `{name}` | `{base_name}` | ratio |',
        '|---|---:|---:|---:|'
    ]
    for metric, value, base, fmt in rows:
        lines.append(f'| {metric} | {format(value, fmt)} | '
                     f'{format(base, fmt)} | {ratio(value, base)} |')
    return '\n'.join(lines)
