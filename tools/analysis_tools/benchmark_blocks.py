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

The blocks are those of the catalogue (``mmgc/models/catalogue.py``);
``--blocks`` names them by label. GC, SE, NL and SASA are compared with the
modules above; a block without such a comparison (CBAM) is timed at the
levels below against ``copy_``. The code is
:mod:`mmgc.utils.block_benchmark`.

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


def parse_args() -> argparse.Namespace:
    from mmgc.utils.block_benchmark import block_names
    names = block_names()
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--blocks', nargs='+', default=names, choices=names)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument(
        '--quick',
        action='store_true',
        help='c3 only, NL at N=4200 only, 2 repeats')
    parser.add_argument(
        '--device', default='cpu', help="'cpu' (default) or 'cuda' / 'cuda:N'")
    parser.add_argument(
        '--amp',
        action='store_true',
        help='autocast: fp16 on CUDA, bf16 on the CPU')
    parser.add_argument(
        '--impl',
        default='auto',
        choices=['auto', 'reference', 'fused'],
        help="path of the mmgc blocks (default 'auto')")
    parser.add_argument(
        '--ops-only',
        action='store_true',
        help='print the op-count table only')
    parser.add_argument(
        '--nl-ref-backward',
        action='store_true',
        help='also run mmcv NonLocal2d forward+backward at N=16800 '
        '(needs about 8 GB)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from mmgc.utils.benchmark import prepare_process
    prepare_process(args.threads)  # may restart this process
    from mmgc.utils.block_benchmark import run
    run(args)


if __name__ == '__main__':
    main()
