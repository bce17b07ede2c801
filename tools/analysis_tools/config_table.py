"""Parameters and FLOPs of the shipped configs against their baselines.

For every ``configs/*.py`` (or the ones named), builds the detector and
prints a Markdown table: exact parameter count and delta versus the
baseline of the same detector (``baseline_r50_mask.py`` /
``baseline_r50_retina.py``), and the FLOPs of backbone + neck on one
``--height`` x ``--width`` image (default 800x1333) with their delta.

FLOPs follow mmengine's ``FlopAnalyzer`` (fvcore) convention: one
multiply-add is one FLOP, and only matrix-product-like operators count
(convolutions, matmuls, norms; element-wise ops and pooling are free).
Handles are added for the operators of mmgc's blocks that the analyzer
would otherwise skip (the model runs under ``no_grad``, where GC and SE run
op by op; their fused autograd function is for training only):

* ``aten::scaled_dot_product_attention`` (NL, SASA): ``L * S * (E + Ev)``
  per batch and head, i.e. as executed -- for SASA's blocked attention this
  includes the masked keys of each query block's halo and the mask
  channels, so it is more than the ideal ``k^2`` keys per query;
* ``aten::mv`` (GC's attention pooling): ``n * m`` for an ``[n, m]``
  matrix;
* ``aten::mean`` (SE's squeeze): one per input element, as the analyzer
  counts ``adaptive_avg_pool2d``.

Element-wise products and sums (GC's fusion, SE's rescaling, residual
additions) stay free, as everywhere in this convention.

Usage:
    python tools/analysis_tools/config_table.py [CONFIG ...]
        [--height 800] [--width 1333]
"""
import argparse
import glob
import os.path as osp
import sys
import time
from typing import Any, Dict, List, Optional

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import elementwise_flop_counter, get_shape
from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch import nn

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
import mmgc  # noqa: E402,F401  (registers the blocks)
import mmgc.models.backbones  # noqa: E402,F401  (PluginResNet)
import mmgc.models.necks  # noqa: E402,F401  (PluginFPN)

BASELINES = {'MaskRCNN': 'baseline_r50_mask.py',
             'RetinaNet': 'baseline_r50_retina.py'}


def sdpa_flops(inputs: List[Any], outputs: List[Any]) -> int:
    """FLOPs of ``scaled_dot_product_attention(q, k, v)``: ``q @ k^T`` and
    ``attn @ v``.

    Args:
        inputs (list): Traced inputs; ``q`` ``[..., L, E]``, ``k``
            ``[..., S, E]``, ``v`` ``[..., S, Ev]`` first.
        outputs (list): Traced outputs (unused).

    Returns:
        int: ``prod(batch dims) * L * S * (E + Ev)``.
    """
    query, key, value = (get_shape(v) for v in inputs[:3])
    batch = 1
    for size in query[:-2]:
        batch *= size
    return batch * query[-2] * key[-2] * (query[-1] + value[-1])


def mv_flops(inputs: List[Any], outputs: List[Any]) -> int:
    """FLOPs of ``matrix @ vector``.

    Args:
        inputs (list): Traced inputs; the ``[n, m]`` matrix first.
        outputs (list): Traced outputs (unused).

    Returns:
        int: ``n * m``.
    """
    rows, cols = get_shape(inputs[0])
    return rows * cols


def build(config: str) -> nn.Module:
    """The detector of ``config``, without pretrained weights.

    Args:
        config (str): Config file path.

    Returns:
        nn.Module: The detector.
    """
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    from mmdet.registry import MODELS
    return MODELS.build(cfg.model)


def backbone_neck_flops(model: nn.Module, height: int, width: int,
                        verbose: bool = False) -> int:
    """FLOPs of ``model``'s backbone and neck on one image.

    Args:
        model (nn.Module): A detector with ``backbone`` and ``neck``.
        height (int): Image height.
        width (int): Image width.
        verbose (bool): Warn about operators that count as free.

    Returns:
        int: Multiply-adds.
    """
    features = nn.Sequential(model.backbone, model.neck).eval()
    image = torch.randn(1, 3, height, width)  # [1, 3, H, W]
    analyzer = FlopAnalyzer(features, (image, ))
    analyzer.set_op_handle(**{
        'aten::scaled_dot_product_attention': sdpa_flops,
        'aten::mv': mv_flops,
        'aten::mean': elementwise_flop_counter(1, 0),
    })
    analyzer.unsupported_ops_warnings(verbose)
    analyzer.uncalled_modules_warnings(False)
    with torch.no_grad():
        return analyzer.total()


def measure(config: str, height: int, width: int) -> Dict[str, Any]:
    """Detector type, parameter count and backbone+neck FLOPs.

    Args:
        config (str): Config file path.
        height (int): Image height for the FLOPs.
        width (int): Image width for the FLOPs.

    Returns:
        dict: ``config`` (file name), ``detector``, ``params``, ``flops``,
        ``seconds``.
    """
    start = time.time()
    model = build(config)
    row = dict(
        config=osp.basename(config),
        detector=type(model).__name__,
        params=sum(p.numel() for p in model.parameters()),
        flops=backbone_neck_flops(model, height, width))
    row['seconds'] = time.time() - start
    return row


def signed(value: float, fmt: str) -> str:
    """``value`` formatted by ``fmt`` with an explicit sign (``+0``)."""
    return ('+' if value >= 0 else '-') + format(abs(value), fmt)


def table(rows: List[Dict[str, Any]]) -> str:
    """Markdown table with deltas to the detector's baseline.

    Args:
        rows (list[dict]): :func:`measure` results.

    Returns:
        str: The table.
    """
    base = {r['detector']: r for r in rows
            if r['config'] == BASELINES.get(r['detector'])}
    lines = ['| config | params | Δ params | GFLOPs (backbone+neck) | '
             'Δ GFLOPs |', '|---|---:|---:|---:|---:|']
    for row in rows:
        ref: Optional[Dict[str, Any]] = base.get(row['detector'])
        d_params = (signed(row['params'] - ref['params'], ',')
                    if ref else 'n/a')
        d_flops = (signed((row['flops'] - ref['flops']) / 1e9, '.2f')
                   if ref else 'n/a')
        lines.append(f"| `{row['config']}` | {row['params']:,} | "
                     f"{d_params} | {row['flops'] / 1e9:.2f} | {d_flops} |")
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='*',
                        help='config files (default: configs/*.py)')
    parser.add_argument('--height', type=int, default=800)
    parser.add_argument('--width', type=int, default=1333)
    args = parser.parse_args()
    init_default_scope('mmdet')
    configs = args.configs or sorted(
        glob.glob(osp.join(ROOT, 'configs', '*.py')))
    rows = []
    for config in configs:
        rows.append(measure(config, args.height, args.width))
        print(f"{rows[-1]['config']}: {rows[-1]['params']:,} params, "
              f"{rows[-1]['flops'] / 1e9:.2f} GFLOPs "
              f"({rows[-1]['seconds']:.0f} s)", file=sys.stderr)
    print(table(rows))


if __name__ == '__main__':
    main()
