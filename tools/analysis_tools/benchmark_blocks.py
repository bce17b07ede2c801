"""Time and memory of mmgc's blocks at detection-sized feature maps.

Every figure is a ratio to references measured in the same process, with
the same thread count, so tables from different machines compare:

* ``copy_``: copying the feature map into a preallocated tensor (the
  memory-bandwidth unit; GC and SE are memory-bound);
* ``conv3x3``: a 3x3 convolution of the same width (the layer SASA
  replaces);
* mmcv's ``ContextBlock`` / ``NonLocal2d`` and mmdet's ``SELayer`` with the
  same weights, and a naive unfold SASA (``k^2`` copies of keys/values).

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

Levels (an 800x1333 image): c3 = 512ch 100x168, c4 = 1024ch 50x84,
c5 = 2048ch 25x42, batch ``--batch`` (default 2). Non-local is measured at
N = 16800 positions (c3, batch 1) and N = 4200 (c4); SASA (k=7, 8 heads) at
256 channels and c4's 50x84.

Example::

    python tools/analysis_tools/benchmark_blocks.py            # full run
    python tools/analysis_tools/benchmark_blocks.py --quick --blocks gc se
"""
import argparse
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
    parser.add_argument(
        '--nl-ref-backward', action='store_true',
        help='also run mmcv NonLocal2d forward+backward at N=16800 '
        '(needs about 8 GB)')
    return parser.parse_args()


sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mmcv.cnn.bricks import ContextBlock, NonLocal2d  # noqa: E402
from mmdet.models.layers import SELayer  # noqa: E402

from mmgc.models.gc_block import GCBlock  # noqa: E402
from mmgc.models.nl_block import NLBlock  # noqa: E402
from mmgc.models.sasa import SASAConv  # noqa: E402
from mmgc.models.se_block import SEBlock  # noqa: E402
from mmgc.utils.benchmark import (min_time, peak_extra_bytes,  # noqa: E402
                                  prepare_process)

LEVELS = {'c3': (512, 100, 168), 'c4': (1024, 50, 84), 'c5': (2048, 25, 42)}
Fn = Callable[[], object]


# --------------------------------------------------------------- measuring
class Measure:
    """Forward / forward+backward time and extra memory of one module."""

    def __init__(self, module: Optional[torch.nn.Module], x: torch.Tensor,
                 repeats: int, backward: bool = True,
                 forward_fn: Optional[Callable] = None) -> None:
        call = forward_fn or module
        x_grad = x.detach().clone().requires_grad_()
        grad_out = None  # the upstream gradient, made once (not timed)

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

        self.fwd = min_time(forward, repeats)
        self.fwd_mem = peak_extra_bytes(forward)
        self.fb = self.fb_mem = None
        if backward:
            self.fb = min_time(forward_backward, repeats)
            self.fb_mem = peak_extra_bytes(forward_backward)


def copy_time(x: torch.Tensor, repeats: int) -> float:
    dst = torch.empty_like(x)
    return min_time(lambda: dst.copy_(x), repeats)


# ------------------------------------------------------------- references
def randomize_(module: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)


def naive_unfold_sasa(layer: SASAConv, x: torch.Tensor) -> torch.Tensor:
    """The common SASA implementation: unfold keys and values over the
    ``k x k`` window (``k^2`` copies each), masked softmax, weighted sum."""
    b, _, h, w = x.shape
    heads, d = layer.num_heads, layer.head_dim
    kh, kw = layer.window_size
    q, k, v = F.conv2d(x, layer.qkv.weight).chunk(3, dim=1)

    def windows(t):  # [B, heads, d, k*k, H*W]
        return F.unfold(t, (kh, kw), padding=(kh // 2, kw // 2)).view(
            b, heads, d, kh * kw, h * w)

    inside = F.unfold(x.new_ones(1, 1, h, w), (kh, kw),
                      padding=(kh // 2, kw // 2)).view(kh * kw, h * w) > 0
    rel = torch.cat([
        layer.rel_h[:, None].expand(kh, kw, d // 2),
        layer.rel_w[None].expand(kh, kw, d // 2)
    ], -1).reshape(kh * kw, d)
    q = q.reshape(b, heads, d, h * w) * d**-0.5
    logits = torch.einsum('bhdn,bhdkn->bhkn', q, windows(k)) + torch.einsum(
        'bhdn,kd->bhkn', q, rel)
    attn = logits.masked_fill(~inside, float('-inf')).softmax(dim=2)
    out = torch.einsum('bhkn,bhdkn->bhdn', attn, windows(v))
    return out.reshape(b, -1, h, w)


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


def _shape(x: torch.Tensor) -> str:
    return 'x'.join(str(s) for s in x.shape)


# ---------------------------------------------------------------- the runs
def bench_gc_se(kind: str, levels: List[str], args) -> None:
    rows: List[Row] = []
    for level in levels:
        c, h, w = LEVELS[level]
        x = torch.randn(args.batch, c, h, w)
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
    print_table(f'{kind.upper()} (batch {args.batch}, {args.threads} '
                f'threads)', rows, 'copy_')


class _CopyRow:
    """The ``copy_`` reference as a row (no backward, no extra memory)."""

    def __init__(self, t: float) -> None:
        self.fwd, self.fb, self.fwd_mem, self.fb_mem = t, None, 0, None


def bench_nl(args) -> None:
    rows: List[Row] = []
    configs = [('N=4200 c4', 1024, 50, 84, args.batch)]
    if not args.quick:
        configs.insert(0, ('N=16800 c3', 512, 100, 168, 1))
    for label, c, h, w, batch in configs:
        x = torch.randn(batch, c, h, w)
        unit = copy_time(x, args.repeats)
        ref_mod = NonLocal2d(c)
        randomize_(ref_mod)
        ours = NLBlock(c)
        ours.load_state_dict(ref_mod.state_dict())
        big = h * w > 10000
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
        if big:
            goal('NL N=16800 fwd >= 3x faster than mmcv NonLocal2d',
                 ref.fwd >= 3 * m.fwd, f'{ref.fwd / m.fwd:.2f}x faster')
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
    print_table(f'NL embedded_gaussian ({args.threads} threads)', rows,
                'copy_')


def bench_sasa(args) -> None:
    c, h, w = 256, 50, 84
    x = torch.randn(args.batch, c, h, w)
    unit = copy_time(x, args.repeats)
    conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
    ref_conv = Measure(conv, x, args.repeats)
    ours = SASAConv(c, c, 7, num_heads=8)
    m = Measure(ours, x, args.repeats)
    naive = Measure(ours, x, max(1, min(args.repeats, 3)),
                    forward_fn=lambda t: naive_unfold_sasa(ours, t))
    common = dict(input=f'c4 {_shape(x)}', unit=ref_conv.fwd,
                  map_bytes=x.numel() * 4)
    rows = [
        dict(name=f'copy_ ({_fmt_ms(unit)} ms)', m=_CopyRow(unit), **common),
        dict(name='conv3x3', m=ref_conv, **common),
        dict(name='naive unfold SASA', m=naive, ref=ref_conv, **common),
        dict(name='SASAConv k7 (ref: naive)', m=m, ref=naive, **common),
    ]
    print_table(f'SASA k=7, 8 heads ({args.threads} threads; unit = '
                f'conv3x3 fwd)', rows, 'conv3x3')
    goal('SASA fwd <= 2x conv3x3', m.fwd <= 2 * ref_conv.fwd,
         f'{m.fwd / ref_conv.fwd:.2f}x (f+b {m.fb / ref_conv.fb:.2f}x '
         f'conv f+b)')
    goal('SASA extra memory <= 40x feature map (fwd; f+b shown)',
         m.fwd_mem <= 40 * x.numel() * 4,
         f'{m.fwd_mem / (x.numel() * 4):.1f}x fwd, '
         f'{m.fb_mem / (x.numel() * 4):.1f}x f+b (naive '
         f'{naive.fwd_mem / (x.numel() * 4):.1f}x fwd)')


def main() -> None:
    args = parse_args()
    prepare_process(args.threads)
    torch.manual_seed(0)
    if args.quick:
        args.repeats = min(args.repeats, 2)
    levels = ['c3'] if args.quick else ['c3', 'c4', 'c5']
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'batch {args.batch}, min of {args.repeats} runs, '
          f'MALLOC_MMAP_THRESHOLD_={os.environ.get("MALLOC_MMAP_THRESHOLD_")}')
    for kind in args.blocks:
        if kind in ('gc', 'se'):
            bench_gc_se(kind, levels, args)
        elif kind == 'nl':
            bench_nl(args)
        else:
            bench_sasa(args)
    print('\n### Goals\n')
    for text, ok, detail in GOALS:
        print(f'- [{"x" if ok else " "}] {text}: {detail}')


if __name__ == '__main__':
    main()
