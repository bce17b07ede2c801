"""Parameters and FLOPs of detector configs, attention matmuls included.

Shared by the cost tools (:mod:`mmgc.analysis.config_cost`,
:mod:`mmgc.analysis.detector_benchmark`), the study runner and the ONNX
export: building a detector from a config file, the baseline config of
each detector type, and counting.

FLOPs follow mmengine's ``FlopAnalyzer`` (fvcore) convention: one
multiply-add is one FLOP, and only matrix-product-like operators count
(convolutions, matmuls, norms; element-wise ops and pooling are free).
The analyzer traces operators, so the attention products written as
``bmm``/``matmul`` (GC's attention pooling, NL's projections) count; a
module-hook counter such as the one used for the GCNet paper (mmcv's
``get_model_complexity_info`` of MMDetection 2.x) sees only the conv and
linear layers and misses every attention matmul. :data:`ATTENTION_HANDLES`
adds the operators the analyzer itself would skip (the model is traced
under ``no_grad``, where GC and SE run op by op; their fused autograd
functions are for training only):

* ``aten::scaled_dot_product_attention`` (NL's pairwise attention, SASA):
  ``L * S * (E + Ev)`` per batch and head, i.e. as executed -- for SASA's
  blocked attention this includes the masked keys of each query block's
  halo and the mask channels, so it is more than the ideal ``k^2`` keys
  per query;
* ``aten::mv``: ``n * m`` for an ``[n, m]`` matrix (matrix-vector
  products, which the analyzer skips; GC's attention pooling is a ``bmm``,
  which it counts itself);
* ``aten::mean`` (SE's squeeze, GC's ``'avg'`` pooling): one per input
  element, as the analyzer counts ``adaptive_avg_pool2d``.

Element-wise products and sums (GC's fusion, SE's rescaling, residual
additions) stay free, as everywhere in this convention.
"""
import os.path as osp
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import elementwise_flop_counter, get_shape
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from torch import nn

from .package import shipped_path
from .tool_config import load_tool_config

#: Baseline config (file name in the shipped configs) of each detector type.
BASELINES = {
    'MaskRCNN': 'baseline_r50_mask.py',
    'RetinaNet': 'baseline_r50_retina.py'
}

#: Which counter the FLOPs come from, for tools to print.
COUNTER = ('mmengine FlopAnalyzer + mmgc attention handles '
           '(aten::scaled_dot_product_attention, aten::mv, aten::mean)')
PLAIN_COUNTER = ('mmengine FlopAnalyzer without mmgc attention handles '
                 '(attention matmuls not counted)')


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


#: Operator handles added to ``FlopAnalyzer`` (see the module docstring).
ATTENTION_HANDLES: Dict[str, Callable] = {
    'aten::scaled_dot_product_attention': sdpa_flops,
    'aten::mv': mv_flops,
    'aten::mean': elementwise_flop_counter(1, 0),
}


def load_config(config: str, cfg_options: Optional[dict] = None) -> Config:
    """A detector config as the tools load it.

    Args:
        config (str): Config file path.
        cfg_options (dict, optional): ``--cfg-options`` overrides.

    Returns:
        Config: The merged config.

    Raises:
        FileNotFoundError: ``config`` does not exist (named in the message).
    """
    return load_tool_config(config, cfg_options=cfg_options)


def build_detector(cfg: Config, init_weights: bool = False) -> nn.Module:
    """The detector of ``cfg`` without pretrained weights, on the CPU.

    The backbone's ``init_cfg`` (an ImageNet checkpoint) is dropped and
    SyncBN is reverted to BN, so every config builds in one process.

    Args:
        cfg (Config): A loaded config (not modified).
        init_weights (bool): Run the detector's random initialisation
            (``init_weights()``); without it layers keep PyTorch's default
            initialisation (enough for counting).

    Returns:
        nn.Module: The detector.
    """
    from mmdet.registry import MODELS
    model_cfg = cfg.model.copy()
    model_cfg.backbone = dict(model_cfg.backbone, init_cfg=None)
    model = revert_sync_batchnorm(MODELS.build(model_cfg))
    if init_weights:
        model.init_weights()
    return model


def default_baseline(detector_type: str, config: Optional[str] = None) -> str:
    """The shipped baseline config of a config or of a detector type.

    Shipped configs are named ``<blocks>_<backbone>_<detector>[_...].py``;
    the baseline of one is ``baseline_<backbone>_<detector>.py`` where that
    is shipped (e.g. ``baseline_r18_retina.py`` for ``gc_r18_retina.py``),
    else the detector type's (:data:`BASELINES`).

    Args:
        detector_type (str): Detector class name, e.g. ``'MaskRCNN'``.
        config (str, optional): The config to compare with its baseline.

    Returns:
        str: Path of the baseline config.

    Raises:
        ValueError: No baseline is known for ``detector_type``.
    """
    config_dir = shipped_path('configs')
    parts = osp.splitext(osp.basename(config or ''))[0].split('_')
    if len(parts) >= 3:
        own = osp.join(config_dir, f'baseline_{parts[1]}_{parts[2]}.py')
        if osp.isfile(own):
            return own
    if detector_type not in BASELINES:
        raise ValueError(
            f'no default baseline for detector type {detector_type!r}; '
            f'known: {sorted(BASELINES)} -- pass one explicitly')
    return osp.join(config_dir, BASELINES[detector_type])


def count_params(model: nn.Module) -> int:
    """Number of parameter elements (trainable or not).

    Args:
        model (nn.Module): Any module.

    Returns:
        int: Exact count.
    """
    return sum(p.numel() for p in model.parameters())


def count_flops(module: nn.Module,
                inputs: Tuple[Any, ...],
                attention_handles: bool = True,
                verbose: bool = False) -> int:
    """FLOPs of ``module(*inputs)`` under ``no_grad``.

    Args:
        module (nn.Module): Traced with ``torch.jit`` by the analyzer.
        inputs (tuple): Positional inputs.
        attention_handles (bool): Count mmgc's attention operators
            (:data:`ATTENTION_HANDLES`); ``False`` gives the plain
            analyzer's number.
        verbose (bool): Warn about operators that count as free.

    Returns:
        int: Multiply-adds.
    """
    analyzer = FlopAnalyzer(module, inputs)
    if attention_handles:
        analyzer.set_op_handle(**ATTENTION_HANDLES)
    analyzer.unsupported_ops_warnings(verbose)
    analyzer.uncalled_modules_warnings(False)
    with torch.no_grad():
        return analyzer.total()


def backbone_neck_flops(model: nn.Module,
                        height: int,
                        width: int,
                        attention_handles: bool = True,
                        verbose: bool = False) -> int:
    """FLOPs of ``model``'s backbone and neck on one image (not padded).

    Args:
        model (nn.Module): A detector with ``backbone`` and ``neck``.
        height (int): Image height.
        width (int): Image width.
        attention_handles (bool): See :func:`count_flops`.
        verbose (bool): Warn about operators that count as free.

    Returns:
        int: Multiply-adds.
    """
    features = nn.Sequential(model.backbone, model.neck).eval()
    image = torch.randn(1, 3, height, width)  # [1, 3, H, W]
    return count_flops(features, (image, ), attention_handles, verbose)


class _TensorForward(nn.Module):
    """``detector._forward(inputs, data_samples)`` as a one-input module
    (what MMDetection 3.x's ``get_flops.py`` traces)."""

    def __init__(self, detector: nn.Module, data_samples: list) -> None:
        super().__init__()
        self.detector = detector
        self.data_samples = data_samples

    def forward(self, inputs: torch.Tensor) -> Any:  # [B, 3, H, W]
        return self.detector._forward(inputs, self.data_samples)


def detector_flops(model: nn.Module,
                   height: int,
                   width: int,
                   attention_handles: bool = True,
                   verbose: bool = False) -> Tuple[int, Tuple[int, int]]:
    """FLOPs of the whole detector's tensor forward (``_forward``: backbone,
    neck, heads; for two-stage detectors the RoI heads on the RPN's
    proposals, so the count depends on the weights) on one image packed by
    the detector's ``data_preprocessor`` (normalised, padded).

    Args:
        model (nn.Module): An mmdet detector.
        height (int): Image height before padding.
        width (int): Image width before padding.
        attention_handles (bool): See :func:`count_flops`.
        verbose (bool): Warn about operators that count as free.

    Returns:
        tuple: Multiply-adds and the padded ``(H, W)`` that was counted.
    """
    model.eval()
    data = synthetic_batch(
        model, height, width, batch_size=1, with_targets=False)
    with torch.no_grad():
        data = model.data_preprocessor(data, False)
    padded = tuple(data['inputs'].shape[-2:])
    wrapper = _TensorForward(model, data['data_samples'])
    flops = count_flops(wrapper, (data['inputs'], ), attention_handles,
                        verbose)
    return flops, padded


def num_classes(model: nn.Module) -> int:
    """The detector's number of classes (its first head that has one).

    Args:
        model (nn.Module): An mmdet detector.

    Returns:
        int: ``num_classes`` of the first submodule that defines it.
    """
    for module in model.modules():
        if isinstance(getattr(module, 'num_classes', None), int):
            return module.num_classes
    raise ValueError(f'{type(model).__name__} has no head with num_classes')


def synthetic_batch(model: nn.Module,
                    height: int,
                    width: int,
                    batch_size: int = 1,
                    with_targets: bool = True,
                    boxes_per_image: int = 3) -> Dict[str, Sequence]:
    """A packed batch as a data loader gives it (uint8 images, data
    samples), made by mmdet's ``demo_mm_inputs``: random pixels and, with
    targets, ``boxes_per_image`` random boxes (and masks when the detector
    has a mask head) per image.

    Args:
        model (nn.Module): The detector (for its classes and mask head).
        height (int): Image height.
        width (int): Image width.
        batch_size (int): Images in the batch.
        with_targets (bool): Keep the ground-truth instances.
        boxes_per_image (int): Ground-truth instances per image.

    Returns:
        dict: ``inputs`` (list of ``[3, H, W]`` uint8 tensors) and
        ``data_samples``.
    """
    from mmdet.testing import demo_mm_inputs
    classes = num_classes(model)
    data = demo_mm_inputs(
        batch_size=batch_size,
        image_shapes=(3, height, width),
        num_items=[boxes_per_image] * batch_size,
        num_classes=max(classes, 2),
        with_mask=bool(getattr(model, 'with_mask', False)))
    for sample in data['data_samples']:
        sample.set_metainfo(dict(scale_factor=(1., 1.)))
        if not with_targets:
            del sample.gt_instances
            del sample.ignored_instances
        elif classes == 1:  # demo_mm_inputs draws labels from 1..n-1
            sample.gt_instances.labels.zero_()
    return data


def signed(value: float, fmt: str) -> str:
    """``value`` formatted by ``fmt`` with an explicit sign (``+0``).

    Args:
        value (float): The number.
        fmt (str): A format spec, e.g. ``','`` or ``'.2f'``.

    Returns:
        str: E.g. ``'+2,521,741'``, ``'-3.99'``.
    """
    return ('+' if value >= 0 else '-') + format(abs(value), fmt)
