"""Time and memory of mmgc's blocks at detection-sized feature maps.

Every figure is a ratio to references measured in the same process, with
the same thread count, so tables from different machines compare:

* ``copy_``: copying the feature map into a preallocated tensor (the
  memory-bandwidth unit; GC and SE are memory-bound);
* ``conv3x3``: a 3x3 convolution of the same width (the layer SASA
  replaces);
* mmcv's ``ContextBlock`` / ``NonLocal2d`` and mmdet's ``SELayer`` with the
  same weights, and a naive unfold SASA (``k^2`` copies of keys/values:
  ``SASAConv``'s reference path).

Method: ``--threads`` intra-op threads (default 2), one warm-up run, then
the minimum of ``--repeats`` runs. Forward is timed under ``no_grad``;
forward+backward with an input that requires grad and a preallocated
upstream gradient (not timed, not counted). Peak extra memory is the
rise of the process's peak resident set over its resident set before the
call: it sees every allocation, torch's and the BLAS's, including the
output and, for forward+backward, the gradients. The script re-executes
itself with a high ``MALLOC_MMAP_THRESHOLD_`` so that timings measure the
kernels rather than page faults (:mod:`mmgc.utils.benchmark` has the
details; ``benchmark.py`` measures whole detectors the same way).

Op counts (always printed first, instant): aten ops dispatched by one
forward+backward on the ``meta`` device (:mod:`mmgc.utils.op_count`), the
launch budget of a GPU, for each block next to its reference; goal <= 1.5x.

``--device cuda`` times on the GPU (synchronised; memory from torch's
allocator) and ``--amp`` runs everything under autocast (fp16 on CUDA,
bf16 on the CPU). ``--impl`` forces a path of the mmgc blocks (default
``auto``: the one a user gets on that device). The header names the CPU
(``/proc/cpuinfo``) and GPU the figures belong to.

Levels (an 800x1333 image): c3 = 512ch 100x168, c4 = 1024ch 50x84,
c5 = 2048ch 25x42, batch ``--batch`` (default 2). Non-local is measured at
N = 16800 positions (c3, batch 1) and N = 4200 (c4); SASA (k=7, 8 heads) at
256 channels and c4's 50x84.

Example::

    python tools/analysis_tools/benchmark_blocks.py            # full run
    python tools/analysis_tools/benchmark_blocks.py --quick --blocks gc se
    python tools/analysis_tools/benchmark_blocks.py --ops-only   # op counts
    python tools/analysis_tools/benchmark_blocks.py --device cuda --amp
"""
import argparse
import copy
import os
import os.path as osp
import sys
from typing import Callable, Dict, List, Optional, Tuple

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--blocks', nargs='+', default=['gc', 'se', 'nl',
                                                         'sasa'],
                        choices=['gc', 'se', 'nl', 'sasa'])
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--quick', action='store_true',
                        help='c3 only, NL at N=4200 only, 2 repeats')
    parser.add_argument('--device', default='cpu',
                        help="'cpu' (default) or 'cuda' / 'cuda:N'")
    parser.add_argument('--amp', action='store_true',
                        help='autocast: fp16 on CUDA, bf16 on the CPU')
    parser.add_argument('--impl', default='auto',
                        choices=['auto', 'reference', 'fused'],
                        help="path of the mmgc blocks (default 'auto')")
    parser.add_argument('--ops-only', action='store_true',
                        help='print the op-count table only')
    parser.add_argument(
        '--nl-ref-backward', action='store_true',
        help='also run mmcv NonLocal2d forward+backward at N=16800 '
        '(needs about 8 GB)')
    return parser.parse_args()


sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))

import torch  # noqa: E402
from mmcv.cnn.bricks import ContextBlock, NonLocal2d  # noqa: E402
from mmdet.models.layers import SELayer  # noqa: E402

from mmgc.models.gc_block import GCBlock  # noqa: E402
from mmgc.models.nl_block import NLBlock  # noqa: E402
from mmgc.models.sasa import SASAConv  # noqa: E402
from mmgc.models.se_block import SEBlock  # noqa: E402
from mmgc.models.utils import set_impl  # noqa: E402
from mmgc.utils.benchmark import (cpu_model, min_time,  # noqa: E402
                                  peak_extra_bytes, prepare_process)
from mmgc.utils.op_count import OP_GOAL, block_op_counts  # noqa: E402

LEVELS = {'c3': (512, 100, 168), 'c4': (1024, 50, 84), 'c5': (2048, 25, 42)}
#: (label, channels, height, width, batch or None for --batch) of NL.
NL_CASES = [('N=16800 c3', 512, 100, 168, 1), ('N=4200 c4', 1024, 50, 84,
                                                None)]
SASA_INPUT = (256, 50, 84)  # channels, height, width (c4)
Fn = Callable[[], object]


# --------------------------------------------------------------- measuring
class Measure:
    """Forward / forward+backward time and extra memory of one module."""

    def __init__(self, module: Optional[torch.nn.Module], x: torch.Tensor,
                 repeats: int, backward: bool = True,
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


# ------------------------------------------------------------- references
def randomize_(module: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)


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
    head = ['module', 'input', 'fwd ms', f'fwd/{unit_name}', 'fwd/ref',
            'f+b ms', f'f+b/{unit_name}', 'f+b/ref', 'fwd mem MB (xmap)',
            'f+b mem MB (xmap)', 'mem/ref fwd, f+b']
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
        randomize_(ref_mod)
        ours.load_state_dict(ref_mod.state_dict())
        ref_mod.to(args.device)
        set_impl(ours.to(args.device), args.impl)
        ref = Measure(ref_mod, x, args.repeats)
        m = Measure(ours, x, args.repeats)
        common = dict(input=f'{level} {_shape(x)}', unit=unit,
                      map_bytes=x.numel() * 4)
        rows.append(dict(name=f'copy_ ({_fmt_ms(unit)} ms)',
                         m=_CopyRow(unit), **common))
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
    print_table(f'{kind.upper()} (batch {args.batch}, {_where(args)})',
                rows, 'copy_')


class _CopyRow:
    """The ``copy_`` reference as a row (no backward, no extra memory)."""

    def __init__(self, t: float) -> None:
        self.fwd, self.fb, self.fwd_mem, self.fb_mem = t, None, 0, None


def bench_nl(args) -> None:
    rows: List[Row] = []
    configs = [(label, c, h, w, batch or args.batch)
               for label, c, h, w, batch in NL_CASES
               if not (args.quick and batch == 1)]
    rate = gemm_rate(args.device, args.repeats)
    for label, c, h, w, batch in configs:
        x = torch.randn(batch, c, h, w, device=args.device)
        unit = copy_time(x, args.repeats)
        ref_mod = NonLocal2d(c)
        randomize_(ref_mod)
        ours = NLBlock(c)
        ours.load_state_dict(ref_mod.state_dict())
        ref_mod.to(args.device)
        set_impl(ours.to(args.device), args.impl)
        big = batch == 1  # N = 16800: mmcv's backward needs ~8 GB
        repeats = min(args.repeats, 3) if big else args.repeats
        ref = Measure(ref_mod, x, repeats,
                      backward=not big or args.nl_ref_backward)
        m = Measure(ours, x, repeats)
        common = dict(input=f'{label} {_shape(x)}', unit=unit,
                      map_bytes=x.numel() * 4)
        rows.append(dict(name=f'copy_ ({_fmt_ms(unit)} ms)',
                         m=_CopyRow(unit), **common))
        rows.append(dict(name='mmcv NonLocal2d', m=ref, **common))
        rows.append(dict(name='NLBlock', m=m, ref=ref, **common))
        # the two attention matmuls, N x N x Ci each way, per image
        bound = batch * 4 * (h * w)**2 * ours.inter_channels / rate
        if big:
            goal('NL N=16800 fwd within 1.3x of its two attention matmuls '
                 f'at the measured GEMM rate ({rate / 1e9:.0f} GFLOP/s: '
                 f'{bound * 1e3:.0f} ms)', m.fwd <= 1.3 * bound,
                 f'{m.fwd / bound:.2f}x')
            goal('NL N=16800 extra memory < 100 MB (fwd; f+b shown)',
                 m.fwd_mem < 100 * 2**20,
                 f'{m.fwd_mem / 2**20:.0f} MB fwd, '
                 f'{m.fb_mem / 2**20:.0f} MB f+b (mmcv fwd '
                 f'{ref.fwd_mem / 2**20:.0f} MB)')
        else:
            goal('NL N=4200 not slower than mmcv (fwd, fwd+bwd)',
                 m.fwd <= ref.fwd and m.fb <= ref.fb,
                 f'{m.fwd / ref.fwd:.2f}x, {m.fb / ref.fb:.2f}x')
        del x
    print_table(f'NL embedded_gaussian ({_where(args)})', rows, 'copy_')


def bench_sasa(args) -> None:
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
    common = dict(input=f'c4 {_shape(x)}', unit=ref_conv.fwd,
                  map_bytes=x.numel() * 4)
    rows = [
        dict(name=f'copy_ ({_fmt_ms(unit)} ms)', m=_CopyRow(unit), **common),
        dict(name='conv3x3', m=ref_conv, **common),
        dict(name='naive unfold SASA', m=naive, ref=ref_conv, **common),
        dict(name='SASAConv k7 (ref: naive)', m=m, ref=naive, **common),
    ]
    print_table(f'SASA k=7, 8 heads ({_where(args)}; unit = conv3x3 fwd)',
                rows, 'conv3x3')
    goal('SASA fwd <= 2x conv3x3', m.fwd <= 2 * ref_conv.fwd,
         f'{m.fwd / ref_conv.fwd:.2f}x (f+b {m.fb / ref_conv.fb:.2f}x '
         f'conv f+b)')
    goal('SASA extra memory <= 40x feature map (fwd; f+b shown)',
         m.fwd_mem <= 40 * x.numel() * 4,
         f'{m.fwd_mem / (x.numel() * 4):.1f}x fwd, '
         f'{m.fb_mem / (x.numel() * 4):.1f}x f+b (naive '
         f'{naive.fwd_mem / (x.numel() * 4):.1f}x fwd)')


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
        goal(f'{row["name"]} ops <= {OP_GOAL}x {row["reference"]} (auto '
             f'path)', ours['auto'] <= OP_GOAL * ref_ops,
             f'{ours["auto"]} / {ref_ops} = {ours["auto"] / ref_ops:.2f}x')
    sys.stdout.flush()


def _where(args) -> str:
    amp = f', autocast {AMP[torch.device(args.device).type]}' if AMP else ''
    if args.device.startswith('cuda'):
        return f'{torch.cuda.get_device_name(args.device)}{amp}'
    return f'{args.threads} threads{amp}'


def main() -> None:
    args = parse_args()
    prepare_process(args.threads)
    torch.manual_seed(0)
    device_type = torch.device(args.device).type
    if device_type == 'cuda' and not torch.cuda.is_available():
        sys.exit(f'--device {args.device}: torch {torch.__version__} sees '
                 f'no CUDA device')
    if args.amp:
        AMP[device_type] = (torch.float16
                            if device_type == 'cuda' else torch.bfloat16)
    if args.quick:
        args.repeats = min(args.repeats, 2)
    levels = ['c3'] if args.quick else ['c3', 'c4', 'c5']
    print(f'CPU: {cpu_model()}; torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads, device {args.device}'
          + (f' ({torch.cuda.get_device_name(args.device)})'
             if device_type == 'cuda' else '')
          + f', impl {args.impl}, amp {AMP.get(device_type)}, '
          f'batch {args.batch}, min of {args.repeats} runs, '
          f'MALLOC_MMAP_THRESHOLD_={os.environ.get("MALLOC_MMAP_THRESHOLD_")}')
    print_op_counts()
    for kind in ([] if args.ops_only else args.blocks):
        if kind in ('gc', 'se'):
            bench_gc_se(kind, levels, args)
        elif kind == 'nl':
            bench_nl(args)
        else:
            bench_sasa(args)
    print(f'\n### Goals ({cpu_model()}'
          + (f', {torch.cuda.get_device_name(args.device)}'
             if device_type == 'cuda' else '') + ')\n')
    for text, ok, detail in GOALS:
        print(f'- [{"x" if ok else " "}] {text}: {detail}')


if __name__ == '__main__':
    main()
