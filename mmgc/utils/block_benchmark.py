"""Time and memory of mmgc's blocks next to references, for
``tools/analysis_tools/benchmark_blocks.py`` (whose docstring describes the
method and the tables).

The blocks are the catalogue's (:mod:`mmgc.models.catalogue`), named by
their lower-case label (``gc``, ``se``, ``nl``, ``sasa``, ``cbam``). GC,
SE, NL and SASA are compared with the modules they replace (mmcv's
``ContextBlock`` / ``NonLocal2d``, mmdet's ``SELayer``, a 3x3 conv and the
naive unfold SASA) and checked against speed goals; a block without such a
comparison is timed at the c3-c5 levels against ``copy_`` of its input.
"""
import copy
import os
import sys
from typing import Callable, Dict, List, Optional, Tuple

import torch
from mmcv.cnn.bricks import ContextBlock, NonLocal2d
from mmdet.models.layers import SELayer

from ..models.catalogue import CATALOGUE
from ..models.gc_block import GCBlock
from ..models.nl_block import NLBlock
from ..models.sasa import SASAConv
from ..models.se_block import SEBlock
from ..models.utils import set_impl
from .benchmark import cpu_model, min_time, peak_extra_bytes
from .op_count import OP_GOAL, block_op_counts
from .random_init import randomize_


def block_names() -> List[str]:
    """The benchmark's names of the blocks: the catalogue's labels, lower
    case, in catalogue order."""
    return list(dict.fromkeys(e.label.lower() for e in CATALOGUE))


LEVELS = {'c3': (512, 100, 168), 'c4': (1024, 50, 84), 'c5': (2048, 25, 42)}
#: (label, channels, height, width, batch or None for --batch) of NL.
NL_CASES = [('N=16800 c3', 512, 100, 168, 1),
            ('N=4200 c4', 1024, 50, 84, None)]
SASA_INPUT = (256, 50, 84)  # channels, height, width (c4)
Fn = Callable[[], object]


# --------------------------------------------------------------- measuring
class Measure:
    """Forward / forward+backward time and extra memory of one module."""

    def __init__(self,
                 module: Optional[torch.nn.Module],
                 x: torch.Tensor,
                 repeats: int,
                 backward: bool = True,
                 forward_fn: Optional[Callable] = None) -> None:
        plain_call = forward_fn or module
        x_grad = x.detach().clone().requires_grad_()
        grad_out = None  # the upstream gradient, made once (not timed)
        device = str(x.device)

        def call(t):
            with autocast(x.device.type):
                return plain_call(t)

        def forward():
            with torch.no_grad():
                return call(x)

        def forward_backward():
            nonlocal grad_out
            out = call(x_grad)
            if grad_out is None:
                grad_out = torch.ones_like(out)
            out.backward(grad_out)
            x_grad.grad = None
            if module is not None:
                for p in module.parameters():
                    p.grad = None
            return out

        self.fwd = min_time(forward, repeats, device=device)
        self.fwd_mem = peak_extra_bytes(forward, device=device)
        self.fb = self.fb_mem = None
        if backward:
            self.fb = min_time(forward_backward, repeats, device=device)
            self.fb_mem = peak_extra_bytes(forward_backward, device=device)


#: Autocast dtype per device type, set by ``--amp`` (None: no autocast).
AMP: Dict[str, torch.dtype] = {}


def autocast(device_type: str):
    """``torch.autocast`` with the ``--amp`` dtype, or a no-op."""
    dtype = AMP.get(device_type)
    return torch.autocast(device_type, dtype=dtype, enabled=dtype is not None)


def copy_time(x: torch.Tensor, repeats: int) -> float:
    dst = torch.empty_like(x)
    return min_time(lambda: dst.copy_(x), repeats, device=str(x.device))


def gemm_rate(device: str, repeats: int, size: int = 2048) -> float:
    """Measured matmul rate, FLOP/s (fp32, or the ``--amp`` dtype), of a
    ``size``-cube product on ``device``: the bound that exact attention
    (NL) cannot beat."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    with autocast(a.device.type):
        seconds = min_time(lambda: a @ b, repeats, device=device)
    return 2 * size**3 / seconds


# ------------------------------------------------------------------ tables
Row = Dict[str, object]
GOALS: List[Tuple[str, bool, str]] = []


def _fmt_ms(t: Optional[float]) -> str:
    return '-' if t is None else f'{t * 1e3:.1f}'


def _fmt_ratio(a: Optional[float], b: Optional[float]) -> str:
    return '-' if a is None or not b else f'{a / b:.2f}x'


def _fmt_mem(m: Optional[int], unit: int) -> str:
    return '-' if m is None else f'{m / 2**20:.0f} ({m / unit:.1f}x)'


def print_table(title: str, rows: List[Row], unit_name: str) -> None:
    print(f'\n### {title}\n')
    head = [
        'module', 'input', 'fwd ms', f'fwd/{unit_name}', 'fwd/ref', 'f+b ms',
        f'f+b/{unit_name}', 'f+b/ref', 'fwd mem MB (xmap)',
        'f+b mem MB (xmap)', 'mem/ref fwd, f+b'
    ]
    print('| ' + ' | '.join(head) + ' |')
    print('|' + '---|' * len(head))
    for r in rows:
        m, unit, ref = r['m'], r['unit'], r.get('ref')
        cells = [
            r['name'], r['input'],
            _fmt_ms(m.fwd),
            _fmt_ratio(m.fwd, unit),
            _fmt_ratio(m.fwd, ref.fwd if ref else None),
            _fmt_ms(m.fb),
            _fmt_ratio(m.fb, unit),
            _fmt_ratio(m.fb, ref.fb if ref else None),
            _fmt_mem(m.fwd_mem, r['map_bytes']),
            _fmt_mem(m.fb_mem, r['map_bytes']),
            (f'{_fmt_ratio(m.fwd_mem, ref.fwd_mem if ref else None)}, '
             f'{_fmt_ratio(m.fb_mem, ref.fb_mem if ref else None)}')
        ]
        print('| ' + ' | '.join(cells) + ' |')
    sys.stdout.flush()


def goal(text: str, ok: bool, detail: str) -> None:
    GOALS.append((text, ok, detail))


def _shape(x) -> str:
    """``'2x512x100x168'`` for a tensor or a shape."""
    return 'x'.join(str(s) for s in getattr(x, 'shape', x))


# ---------------------------------------------------------------- the runs
def bench_gc_se(kind: str, levels: List[str], args) -> None:
    """GCBlock vs mmcv ``ContextBlock`` or SEBlock vs mmdet ``SELayer``
    (the same weights) at each level."""
    rows: List[Row] = []
    for level in levels:
        c, h, w = LEVELS[level]
        x = torch.randn(args.batch, c, h, w, device=args.device)
        unit = copy_time(x, args.repeats)
        if kind == 'gc':
            ref_mod = ContextBlock(c, ratio=1 / 16)
            ours = GCBlock(c, ratio=1 / 16)
            ref_name, ours_name = 'mmcv ContextBlock', 'GCBlock r16'
        else:
            ref_mod = SELayer(c, ratio=16)
            ours = SEBlock(c, ratio=1 / 16)
            ref_name, ours_name = 'mmdet SELayer', 'SEBlock r16'
        randomize_(ref_mod, std=0.02)
        ours.load_state_dict(ref_mod.state_dict())
        ref_mod.to(args.device)
        set_impl(ours.to(args.device), args.impl)
        ref = Measure(ref_mod, x, args.repeats)
        m = Measure(ours, x, args.repeats)
        common = dict(
            input=f'{level} {_shape(x)}', unit=unit, map_bytes=x.numel() * 4)
        rows.append(
            dict(
                name=f'copy_ ({_fmt_ms(unit)} ms)', m=_CopyRow(unit),
                **common))
        rows.append(dict(name=ref_name, m=ref, **common))
        rows.append(dict(name=ours_name, m=m, ref=ref, **common))
        if level == 'c3' and kind == 'gc':
            goal('GC c3 fwd <= 2.0x copy_', m.fwd <= 2.0 * unit,
                 f'{m.fwd / unit:.2f}x')
            goal('GC c3 fwd+bwd <= 6x copy_', m.fb <= 6 * unit,
                 f'{m.fb / unit:.2f}x')
            goal('GC c3 no slower than mmcv ContextBlock (fwd, fwd+bwd)',
                 m.fwd <= ref.fwd and m.fb <= ref.fb,
                 f'{m.fwd / ref.fwd:.2f}x, {m.fb / ref.fb:.2f}x')
        if level == 'c3' and kind == 'se':
            goal('SE c3 fwd+bwd <= 4x copy_', m.fb <= 4 * unit,
                 f'{m.fb / unit:.2f}x')
        del x
    print_table(f'{kind.upper()} (batch {args.batch}, {_where(args)})', rows,
                'copy_')


class _CopyRow:
    """The ``copy_`` reference as a row (no backward, no extra memory)."""

    def __init__(self, t: float) -> None:
        self.fwd, self.fb, self.fwd_mem, self.fb_mem = t, None, 0, None


def bench_nl(kind: str, levels: List[str], args) -> None:
    """NLBlock vs mmcv ``NonLocal2d`` at N = 16800 and 4200 (not
    ``levels``: non-local is quadratic in the positions)."""
    rows: List[Row] = []
    configs = [(label, c, h, w, batch or args.batch)
               for label, c, h, w, batch in NL_CASES
               if not (args.quick and batch == 1)]
    rate = gemm_rate(args.device, args.repeats)
    for label, c, h, w, batch in configs:
        x = torch.randn(batch, c, h, w, device=args.device)
        unit = copy_time(x, args.repeats)
        ref_mod = NonLocal2d(c)
        randomize_(ref_mod, std=0.02)
        ours = NLBlock(c)
        ours.load_state_dict(ref_mod.state_dict())
        ref_mod.to(args.device)
        set_impl(ours.to(args.device), args.impl)
        big = batch == 1  # N = 16800: mmcv's backward needs ~8 GB
        repeats = min(args.repeats, 3) if big else args.repeats
        ref = Measure(
            ref_mod, x, repeats, backward=not big or args.nl_ref_backward)
        m = Measure(ours, x, repeats)
        common = dict(
            input=f'{label} {_shape(x)}', unit=unit, map_bytes=x.numel() * 4)
        rows.append(
            dict(
                name=f'copy_ ({_fmt_ms(unit)} ms)', m=_CopyRow(unit),
                **common))
        rows.append(dict(name='mmcv NonLocal2d', m=ref, **common))
        rows.append(dict(name='NLBlock', m=m, ref=ref, **common))
        # the two attention matmuls, N x N x Ci each way, per image
        bound = batch * 4 * (h * w)**2 * ours.inter_channels / rate
        if big:
            goal(
                'NL N=16800 fwd within 1.3x of its two attention matmuls '
                f'at the measured GEMM rate ({rate / 1e9:.0f} GFLOP/s: '
                f'{bound * 1e3:.0f} ms)', m.fwd <= 1.3 * bound,
                f'{m.fwd / bound:.2f}x')
            goal(
                'NL N=16800 extra memory < 100 MB (fwd; f+b shown)', m.fwd_mem
                < 100 * 2**20, f'{m.fwd_mem / 2**20:.0f} MB fwd, '
                f'{m.fb_mem / 2**20:.0f} MB f+b (mmcv fwd '
                f'{ref.fwd_mem / 2**20:.0f} MB)')
        else:
            goal('NL N=4200 not slower than mmcv (fwd, fwd+bwd)',
                 m.fwd <= ref.fwd and m.fb <= ref.fb,
                 f'{m.fwd / ref.fwd:.2f}x, {m.fb / ref.fb:.2f}x')
        del x
    print_table(f'NL embedded_gaussian ({_where(args)})', rows, 'copy_')


def bench_sasa(kind: str, levels: List[str], args) -> None:
    """SASAConv k7 vs a 3x3 conv and the naive unfold SASA at c4's
    size."""
    c, h, w = SASA_INPUT
    x = torch.randn(args.batch, c, h, w, device=args.device)
    unit = copy_time(x, args.repeats)
    conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False).to(args.device)
    ref_conv = Measure(conv, x, args.repeats)
    ours = SASAConv(c, c, 7, num_heads=8).to(args.device)
    set_impl(ours, args.impl)
    m = Measure(ours, x, args.repeats)
    naive_layer = copy.deepcopy(ours)
    set_impl(naive_layer, 'reference')  # the plain unfold local attention
    naive = Measure(naive_layer, x, max(1, min(args.repeats, 3)))
    common = dict(
        input=f'c4 {_shape(x)}', unit=ref_conv.fwd, map_bytes=x.numel() * 4)
    rows = [
        dict(name=f'copy_ ({_fmt_ms(unit)} ms)', m=_CopyRow(unit), **common),
        dict(name='conv3x3', m=ref_conv, **common),
        dict(name='naive unfold SASA', m=naive, ref=ref_conv, **common),
        dict(name='SASAConv k7 (ref: naive)', m=m, ref=naive, **common),
    ]
    print_table(f'SASA k=7, 8 heads ({_where(args)}; unit = conv3x3 fwd)',
                rows, 'conv3x3')
    goal(
        'SASA fwd <= 2x conv3x3', m.fwd <= 2 * ref_conv.fwd,
        f'{m.fwd / ref_conv.fwd:.2f}x (f+b {m.fb / ref_conv.fb:.2f}x '
        f'conv f+b)')
    goal(
        'SASA extra memory <= 40x feature map (fwd; f+b shown)', m.fwd_mem
        <= 40 * x.numel() * 4, f'{m.fwd_mem / (x.numel() * 4):.1f}x fwd, '
        f'{m.fb_mem / (x.numel() * 4):.1f}x f+b (naive '
        f'{naive.fwd_mem / (x.numel() * 4):.1f}x fwd)')


def bench_plain(kind: str, levels: List[str], args) -> None:
    """The first catalogue block labelled ``kind`` in its usual
    configuration, at each level, against ``copy_``."""
    entry = next(e for e in CATALOGUE if e.label.lower() == kind)
    variant = next(iter(entry.examples))
    rows: List[Row] = []
    for level in levels:
        c, h, w = LEVELS[level]
        x = torch.randn(args.batch, c, h, w, device=args.device)
        unit = copy_time(x, args.repeats)
        block = entry.build(c).to(args.device)
        set_impl(block, args.impl)
        m = Measure(block, x, args.repeats)
        common = dict(
            input=f'{level} {_shape(x)}', unit=unit, map_bytes=x.numel() * 4)
        rows.append(
            dict(
                name=f'copy_ ({_fmt_ms(unit)} ms)', m=_CopyRow(unit),
                **common))
        rows.append(dict(name=f'{entry.type} {variant}', m=m, **common))
        del x
    print_table(f'{entry.label} (batch {args.batch}, {_where(args)})', rows,
                'copy_')


# --------------------------------------------------------------- op counts
def print_op_counts() -> None:
    print('\n### Op count: aten ops of one forward+backward on the meta '
          'device (GPU launch budget)\n')
    print('| block, input | reference | ref ops | mmgc auto (GPU path) | '
          'ratio | mmgc fused | ratio |')
    print('|---|---|---|---|---|---|---|')
    for row in block_op_counts():
        ref_ops, ours = row['reference_ops'], row['ops']
        print(f'| {row["name"]} {_shape(row["shape"])} | {row["reference"]} '
              f'| {ref_ops} | {ours["auto"]} | {ours["auto"] / ref_ops:.2f}x '
              f'| {ours["fused"]} | {ours["fused"] / ref_ops:.2f}x |')
        goal(
            f'{row["name"]} ops <= {OP_GOAL}x {row["reference"]} (auto '
            f'path)', ours['auto'] <= OP_GOAL * ref_ops,
            f'{ours["auto"]} / {ref_ops} = {ours["auto"] / ref_ops:.2f}x')
    sys.stdout.flush()


#: Blocks compared with the modules they replace, by benchmark name; the
#: others run :func:`bench_plain`.
COMPARISONS: Dict[str, Callable[[str, List[str], object], None]] = {
    'gc': bench_gc_se,
    'se': bench_gc_se,
    'nl': bench_nl,
    'sasa': bench_sasa
}


def _where(args) -> str:
    amp = f', autocast {AMP[torch.device(args.device).type]}' if AMP else ''
    if args.device.startswith('cuda'):
        return f'{torch.cuda.get_device_name(args.device)}{amp}'
    return f'{args.threads} threads{amp}'


def run(args) -> None:
    """Print the op counts, the tables of ``args.blocks`` and the goals.

    Args:
        args (argparse.Namespace): The tool's arguments (``blocks``,
            ``batch``, ``threads``, ``repeats``, ``quick``, ``device``,
            ``amp``, ``impl``, ``ops_only``, ``nl_ref_backward``).
    """
    torch.manual_seed(0)
    device_type = torch.device(args.device).type
    if device_type == 'cuda' and not torch.cuda.is_available():
        sys.exit(f'--device {args.device}: torch {torch.__version__} sees '
                 f'no CUDA device')
    if args.amp:
        AMP[device_type] = (
            torch.float16 if device_type == 'cuda' else torch.bfloat16)
    if args.quick:
        args.repeats = min(args.repeats, 2)
    levels = ['c3'] if args.quick else ['c3', 'c4', 'c5']
    print(f'CPU: {cpu_model()}; torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads, device {args.device}' +
          (f' ({torch.cuda.get_device_name(args.device)})' if device_type ==
           'cuda' else '') +
          f', impl {args.impl}, amp {AMP.get(device_type)}, '
          f'batch {args.batch}, min of {args.repeats} runs, '
          f'MALLOC_MMAP_THRESHOLD_={os.environ.get("MALLOC_MMAP_THRESHOLD_")}')
    print_op_counts()
    for kind in ([] if args.ops_only else args.blocks):
        COMPARISONS.get(kind, bench_plain)(kind, levels, args)
    print(f'\n### Goals ({cpu_model()}' +
          (f', {torch.cuda.get_device_name(args.device)}' if device_type ==
           'cuda' else '') + ')\n')
    for text, ok, detail in GOALS:
        print(f'- [{"x" if ok else " "}] {text}: {detail}')
