"""ONNX export of mmgc models and its check against PyTorch.

Used by ``tools/deployment/export_onnx.py`` and the export tests: the
detector to export (:func:`load_detector`, :class:`BackboneNeck`, its input
size :func:`default_input_shape`), the export (:func:`export_onnx`) and the
comparison of onnxruntime with PyTorch (:func:`compare_with_torch`,
:func:`format_comparison`). Models go
through ``torch.onnx.export``'s ``torch.export``-based exporter (the
default since torch 2.9; it needs ``onnxscript``), which exports every mmgc
block: in eval mode under ``no_grad`` the blocks run op by op (GC/SE skip
their custom autograd function), fused attention becomes ``MatMul`` +
``Softmax``, and SASA's halo gathering becomes static slices. The legacy
TorchScript exporter (``dynamo=False``) fails on SASA's halo tensors and is
not used.
"""
import math
import os
import os.path as osp
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import onnx
import onnxruntime as ort
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from torch import Tensor, nn

from .complexity import build_detector

#: Lowest opset accepted (the first with ``LayerNormalization``, GC's
#: LayerNorm in one op). The exporter writes opset 18 natively and reaches
#: 17 through onnx's version converter, which fails on some graphs (e.g. a
#: ``ReduceMean`` of SE or GC average pooling); :func:`export_onnx` then
#: says so.
MIN_OPSET = 17

#: The exporter's native opset: no conversion.
DEFAULT_OPSET = 18

#: Default allowed difference ``ATOL + RTOL * max|output|`` between
#: onnxruntime and PyTorch (fp32): measured differences are about 1e-7 of
#: the output's scale per block and 1e-6 for a whole ResNet-50 + FPN, so
#: this leaves a margin of 100x while real export errors (a wrong op or
#: mask) are of the order of the output itself.
ATOL = 1e-5
RTOL = 1e-4

#: A single ONNX file is a protobuf message, limited to 2 GiB; larger
#: models keep their weights in a ``.data`` file beside it.
_PROTOBUF_LIMIT = 2**31 - 2**26


def max_opset() -> int:
    """Highest opset the installed torch exporter declares (23 for torch
    2.13), capped by what the installed ``onnx`` knows."""
    from torch.onnx import _constants
    return min(
        getattr(_constants, 'ONNX_MAX_OPSET', 23),
        onnx.defs.onnx_opset_version())


def check_opset(opset: int) -> int:
    """Return ``opset`` if this exporter supports it, else raise.

    Args:
        opset (int): Requested ONNX opset version.

    Raises:
        ValueError: Naming the value and the allowed range.
    """
    high = max_opset()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= high:
        raise ValueError(
            f'--opset {opset!r} is not supported: use an opset from '
            f'{MIN_OPSET} to {high} (opset >= {MIN_OPSET} has '
            f'LayerNormalization; {high} is the newest this torch exports)')
    return opset


def load_detector(cfg: Config, checkpoint: str) -> nn.Module:
    """The config's detector with all of ``checkpoint``'s weights, in eval
    mode on the CPU (SyncBN reverted to BN).

    Args:
        cfg (Config): A loaded config.
        checkpoint (str): A checkpoint of this config (``.pth``).

    Returns:
        nn.Module: The detector.

    Raises:
        FileNotFoundError: If ``checkpoint`` does not exist.
        RuntimeError: If its keys do not match the model's (a checkpoint of
            another config).
    """
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint file not found: {checkpoint!r}')
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = build_detector(cfg)
    load_checkpoint(
        model, checkpoint, map_location='cpu', strict=True, logger='silent')
    return model.eval()


def default_input_shape(cfg: Config) -> Tuple[int, int]:
    """``(H, W)`` the detector sees at test time: the test pipeline's
    ``Resize`` scale (``(w, h)`` in mmdet) rounded up to the data
    preprocessor's ``pad_size_divisor``.

    Raises:
        ValueError: If the config has no such ``Resize`` (pass ``--shape``).
    """
    pipeline = cfg.get('test_dataloader', {}).get('dataset',
                                                  {}).get('pipeline', [])
    scales = [
        step['scale'] for step in pipeline
        if step.get('type') == 'Resize' and 'scale' in step
    ]
    if not scales or not isinstance(scales[0], (list, tuple)):
        raise ValueError('the config\'s test pipeline has no Resize with a '
                         '(w, h) scale; pass --shape H W')
    width, height = scales[0]
    divisor = cfg.model.get('data_preprocessor', {}).get(
        'pad_size_divisor', 1) or 1
    return (math.ceil(height / divisor) * divisor,
            math.ceil(width / divisor) * divisor)


class BackboneNeck(nn.Module):
    """A detector's feature extractor as a plain module: image batch in,
    the tuple of neck (FPN) outputs out -- what ``extract_feat`` returns.

    Args:
        detector (nn.Module): An mmdet detector with ``extract_feat``.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        """Args:
            inputs (Tensor): Preprocessed images ``[B, 3, H, W]``.

        Returns:
            tuple[Tensor]: One ``[B, C, H / s, W / s]`` map per level.
        """
        return tuple(self.detector.extract_feat(inputs))


def level_names(inputs: Tensor, outputs: Sequence[Tensor]) -> List[str]:
    """Names ``p<k>`` of feature maps of stride ``2**k`` (``p2`` .. ``p6``
    for Mask R-CNN's FPN), ``out<i>`` where strides are not distinct."""
    names = [
        f'p{round(np.log2(inputs.shape[-2] / out.shape[-2]))}'
        for out in outputs
    ]
    if len(set(names)) != len(names):
        names = [f'out{i}' for i in range(len(outputs))]
    return names


def backbone_neck_for_export(
        cfg: Config, checkpoint: str, height: int,
        width: int) -> Tuple[BackboneNeck, Tensor, List[str]]:
    """What ``tools/deployment/export_onnx.py`` exports.

    Args:
        cfg (Config): A loaded config.
        checkpoint (str): Its weights (:func:`load_detector`).
        height (int): Input height.
        width (int): Input width.

    Returns:
        tuple: The detector's :class:`BackboneNeck`, an example input
        ``[1, 3, H, W]`` (``N(0, 1)``, seed 0) and the names of the
        outputs (:func:`level_names`).
    """
    module = BackboneNeck(load_detector(cfg, checkpoint))
    inputs = torch.randn(
        1, 3, height, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        names = level_names(inputs, module(inputs))
    return module, inputs, names


def export_onnx(module: nn.Module,
                inputs: Tensor,
                path: str,
                opset: int,
                input_name: str = 'input',
                output_names: Optional[Sequence[str]] = None,
                dynamic_shape: bool = False) -> onnx.ModelProto:
    """Export ``module`` (in eval mode, without gradients) to ``path``.

    Args:
        module (nn.Module): Takes one tensor.
        inputs (Tensor): Example input; its shape is the model's input shape
            unless ``dynamic_shape``.
        path (str): Output ``.onnx`` file.
        opset (int): ONNX opset, checked by :func:`check_opset`.
        input_name (str): Name of the graph input. Default: ``'input'``.
        output_names (Sequence[str], optional): Names of the outputs.
        dynamic_shape (bool): Make height and width symbolic.
            Modules whose Python code depends on the input size (SASA's
            block choice, NL's sub-sampling) cannot be exported so.

    Returns:
        onnx.ModelProto: The exported graph (without external weights).
    """
    check_opset(opset)
    module.eval()
    # Height and width only: torch.export specialises a size-1 batch.
    dynamic_shapes = ({
        2: torch.export.Dim('height'),
        3: torch.export.Dim('width')
    }, ) if dynamic_shape else None
    param_bytes = sum(p.numel() * p.element_size()
                      for p in module.parameters())
    with torch.no_grad():
        torch.onnx.export(
            module, (inputs, ),
            path,
            input_names=[input_name],
            output_names=list(output_names) if output_names else None,
            opset_version=opset,
            dynamic_shapes=dynamic_shapes,
            external_data=param_bytes > _PROTOBUF_LIMIT,
            dynamo=True,
            verbose=False)
    model = onnx.load(path, load_external_data=False)
    got = model_opset(model)
    if got != opset:
        raise RuntimeError(
            f'asked for opset {opset}, but the exporter wrote opset {got} '
            f'to {path} (its conversion to {opset} failed); use --opset {got}')
    return model


def model_opset(model: onnx.ModelProto) -> int:
    """Opset of the default (``ai.onnx``) domain of ``model``."""
    return next(
        entry.version for entry in model.opset_import
        if entry.domain in ('', 'ai.onnx'))


def run_onnxruntime(path: str, inputs: Tensor) -> List[np.ndarray]:
    """Outputs of the ONNX model at ``path`` on ``inputs`` with
    onnxruntime's CPU provider at its default (full) graph optimisation, as
    a deployment runs it, on ``OMP_NUM_THREADS`` threads if that is set."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get('OMP_NUM_THREADS', 0))
    session = ort.InferenceSession(
        path, options, providers=['CPUExecutionProvider'])
    feed = {session.get_inputs()[0].name: inputs.numpy()}
    return session.run(None, feed)


class OutputDiff(NamedTuple):
    """One output of the comparison: shape, ``max |torch|``, ``max |onnx -
    torch|``, the allowed difference and whether it is within it."""
    name: str
    shape: Tuple[int, ...]
    scale: float
    max_diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_diff <= self.tolerance


def compare_outputs(names: Sequence[str], expected: Sequence[Tensor],
                    got: Sequence[np.ndarray], atol: float,
                    rtol: float) -> List[OutputDiff]:
    """Compare ONNX outputs with PyTorch's, output by output.

    The allowed difference of an output is ``atol + rtol * max|torch|``:
    fp32 kernels that sum in another order (onnxruntime's vs PyTorch's)
    differ by a few ulps of the values summed, so the error scales with the
    output's magnitude, not element by element (elements near zero would
    make a per-element relative test fail on noise).

    Args:
        names (Sequence[str]): Output names.
        expected (Sequence[Tensor]): PyTorch outputs.
        got (Sequence[np.ndarray]): ONNX outputs.
        atol (float): Absolute part of the tolerance.
        rtol (float): Part relative to the output's largest magnitude.

    Returns:
        list[OutputDiff]: One record per output.
    """
    if len(expected) != len(got):
        raise RuntimeError(f'the ONNX model has {len(got)} outputs, '
                           f'PyTorch {len(expected)}')
    diffs = []
    for name, ref, out in zip(names, expected, got):
        ref = ref.detach().float().numpy()
        if ref.shape != out.shape:
            raise RuntimeError(f'output {name}: ONNX shape {out.shape} != '
                               f'PyTorch shape {ref.shape}')
        scale = float(np.abs(ref).max()) if ref.size else 0.0
        diff = float(np.abs(out.astype(np.float64) -
                            ref).max()) if ref.size else 0.0
        diffs.append(
            OutputDiff(name, tuple(ref.shape), scale, diff,
                       atol + rtol * scale))
    return diffs


def compare_with_torch(path: str, module: nn.Module, names: Sequence[str],
                       inputs: Tensor, atol: float,
                       rtol: float) -> List[OutputDiff]:
    """Run the ONNX model at ``path`` and ``module`` on ``inputs`` and
    compare them (see :func:`compare_outputs`).

    Args:
        path (str): The exported ``.onnx`` file.
        module (nn.Module): What was exported, in eval mode; returns a
            tensor or a tuple.
        names (Sequence[str]): Output names.
        inputs (Tensor): Input of both runs.
        atol (float): Absolute part of the tolerance.
        rtol (float): Part relative to each output's largest magnitude.

    Returns:
        list[OutputDiff]: One record per output.
    """
    with torch.no_grad():
        expected = module(inputs)
    if isinstance(expected, Tensor):
        expected = (expected, )
    return compare_outputs(names, expected, run_onnxruntime(path, inputs),
                           atol, rtol)


def format_table(diffs: Sequence[OutputDiff]) -> str:
    """The comparison as aligned text, one output per row."""
    lines = [
        f'{"output":<8}{"shape":<18}{"max |torch|":>12}'
        f'{"max abs diff":>14}{"tolerance":>11}  ok'
    ]
    for diff in diffs:
        shape = 'x'.join(str(s) for s in diff.shape)
        lines.append(f'{diff.name:<8}{shape:<18}{diff.scale:>12.4g}'
                     f'{diff.max_diff:>14.3e}{diff.tolerance:>11.3e}  '
                     f'{"yes" if diff.ok else "NO"}')
    return '\n'.join(lines)


def format_verdict(diffs: Sequence[OutputDiff]) -> str:
    """One line: the largest difference and the outputs beyond tolerance."""
    beyond = [d.name for d in diffs if not d.ok]
    return (f'max abs diff: {max(d.max_diff for d in diffs):.3e} over '
            f'{len(diffs)} outputs, ' +
            (f'beyond tolerance: {", ".join(beyond)}'
             if beyond else 'all within tolerance'))


def format_comparison(diffs: Sequence[OutputDiff], inputs: Tensor, atol: float,
                      rtol: float) -> str:
    """The report of one comparison: versions, input and tolerance, then
    :func:`format_table` and :func:`format_verdict`."""
    shape = 'x'.join(str(s) for s in inputs.shape)
    return (f'onnxruntime {ort.__version__} vs PyTorch {torch.__version__}, '
            f'random N(0, 1) input {shape}, allowed difference {atol:g} + '
            f'{rtol:g} * max|torch|:\n{format_table(diffs)}\n'
            f'{format_verdict(diffs)}')


def check_sizes(path: str, module: nn.Module, names: Sequence[str],
                shapes: Sequence[Tuple[int, int]], atol: float,
                rtol: float) -> Tuple[bool, List[str]]:
    """Compare onnxruntime with PyTorch on a seeded ``N(0, 1)`` input at
    each ``(height, width)`` in ``shapes``.

    Returns:
        tuple[bool, list[str]]: Whether every output of every size is
        within tolerance, and one :func:`format_comparison` report per size.
    """
    all_ok, reports = True, []
    generator = torch.Generator().manual_seed(0)
    for height, width in shapes:
        inputs = torch.randn(1, 3, height, width, generator=generator)
        diffs = compare_with_torch(path, module, names, inputs, atol, rtol)
        reports.append(format_comparison(diffs, inputs, atol, rtol))
        all_ok &= all(d.ok for d in diffs)
    return all_ok, reports


def export_and_compare(module: nn.Module, inputs: Tensor, path: str,
                       opset: int, atol: float, rtol: float,
                       **kwargs) -> List[OutputDiff]:
    """Export ``module`` to ``path``, run it with onnxruntime on ``inputs``
    and compare with PyTorch (see :func:`compare_outputs`).

    Args:
        module (nn.Module): Takes one tensor, returns a tensor or a tuple.
        inputs (Tensor): Input of both runs.
        path (str): Output ``.onnx`` file.
        opset (int): ONNX opset.
        atol (float): Absolute part of the tolerance.
        rtol (float): Part relative to each output's largest magnitude.
        **kwargs: Passed to :func:`export_onnx`.

    Returns:
        list[OutputDiff]: One record per output.
    """
    module.eval()
    with torch.no_grad():
        expected = module(inputs)
    if isinstance(expected, Tensor):
        expected = (expected, )
    kwargs.setdefault('output_names',
                      [f'out{i}' for i in range(len(expected))])
    export_onnx(module, inputs, path, opset, **kwargs)
    names = kwargs['output_names']
    return compare_outputs(names, expected, run_onnxruntime(path, inputs),
                           atol, rtol)


def onnx_file_size(path: str) -> int:
    """Bytes of the model file plus its external ``.data`` file, if any."""
    data = path + '.data'
    return osp.getsize(path) + (osp.getsize(data) if osp.isfile(data) else 0)


__all__ = [
    'MIN_OPSET', 'DEFAULT_OPSET', 'ATOL', 'RTOL', 'max_opset', 'check_opset',
    'load_detector', 'default_input_shape', 'BackboneNeck', 'level_names',
    'backbone_neck_for_export', 'export_onnx', 'model_opset',
    'run_onnxruntime', 'OutputDiff', 'compare_outputs', 'compare_with_torch',
    'format_table', 'format_verdict', 'format_comparison',
    'export_and_compare', 'onnx_file_size'
]
