"""Cost tools: get_flops.py, benchmark.py, config_table.py and the shared
counting / measuring helpers (mmgc.utils.complexity, mmgc.utils.benchmark,
mmgc.analysis.config_cost).

Full R50 detectors are built (seconds) but counted at 128x128; the
benchmark runs the width-reduced demo config at 128x128, one repeat.
"""
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Dict, List, Tuple

import pytest
import torch
from conftest import DEMO_CONFIG, tool_env

from mmgc.models import GCBlock, NLBlock
from mmgc.utils.benchmark import (interleaved_min_times, peak_extra_bytes,
                                  peak_tensor_bytes)
from mmgc.utils.complexity import (backbone_neck_flops, build_detector,
                                   count_flops, default_baseline,
                                   detector_flops, load_config)

GC_DELTA = 2_521_741  # GC r16 in c3-c5 of ResNet-50 (docs/configs.md)
NL_DELTA = 2_099_712
BASE_PARAMS = 44_396_336  # Mask R-CNN R50-FPN, 80 classes


def run(args: List[str],
        repo_root: str,
        check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable] + args,
        cwd=repo_root,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=300)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + \
            result.stderr[-3000:]
    return result


def markdown_rows(text: str) -> Dict[str, List[str]]:
    """Body rows of the Markdown table(s) in ``text``, by first cell."""
    rows = {}
    for line in text.splitlines():
        if line.startswith('| ') and not line.startswith('| metric') \
                and not line.startswith('| config'):
            cells = [c.strip() for c in line.strip('|').split('|')]
            rows[cells[0]] = cells[1:]
    return rows


# ------------------------------------------------------------ get_flops.py
@pytest.fixture(scope='module')
def compare_output(repo_root) -> str:
    return run([
        'tools/analysis_tools/get_flops.py', 'configs/baseline_r50_mask.py',
        '--shape', '128', '--compare', 'configs/gc_r50_mask.py',
        'configs/nl_r50_mask.py'
    ], repo_root).stdout


@pytest.mark.slow
def test_get_flops_compare_table(compare_output):
    out = compare_output
    assert 'Counter: mmengine FlopAnalyzer + mmgc attention handles ' \
        '(aten::scaled_dot_product_attention' in out
    assert out.count('Input shape: (3, 128, 128)') == 3
    assert 'Compute type: backbone + neck' in out
    assert 'Params: 44.396 M' in out and 'Params: 46.918 M' in out
    flops = [float(f) for f in re.findall(r'^Flops: (\S+) GFLOPs$', out, re.M)]
    assert len(flops) == 3

    rows = markdown_rows(out)
    base = rows['`baseline_r50_mask.py` (baseline)']
    gc, nl = rows['`gc_r50_mask.py`'], rows['`nl_r50_mask.py`']
    assert base[0] == f'{BASE_PARAMS:,}' and base[1:3] == ['', '']
    assert gc[0] == f'{BASE_PARAMS + GC_DELTA:,}'
    assert gc[1] == f'+{GC_DELTA:,}' and nl[1] == f'+{NL_DELTA:,}'
    assert gc[2] == f'+{100 * GC_DELTA / BASE_PARAMS:.2f}%' == '+5.68%'
    assert nl[2] == f'+{100 * NL_DELTA / BASE_PARAMS:.2f}%'
    # table GFLOPs = the summaries' FLOPs; delta % = their ratio (rounding)
    for row, value in zip((base, gc, nl), flops):
        assert float(row[3]) == pytest.approx(value, abs=0.006)
    for row, value in ((gc, flops[1]), (nl, flops[2])):
        pct = float(row[5].rstrip('%'))
        assert pct == pytest.approx(100 * (value / flops[0] - 1), abs=0.06)
        assert float(row[4]) == pytest.approx(value - flops[0], abs=0.006)
    # NL's pairwise attention at c4 (8x8 at 128 px) is counted: +0.19%
    assert float(nl[5].rstrip('%')) > float(gc[5].rstrip('%')) > 0


@pytest.mark.slow
def test_config_table_deltas_to_each_baseline(repo_root):
    """config_table.py compares each config with its own baseline: the
    documented parameter counts (docs/configs.md)."""
    out = run([
        'tools/analysis_tools/config_table.py', 'configs/baseline_r50_mask.py',
        'configs/gc_r50_mask.py', '--height', '128', '--width', '128'
    ], repo_root).stdout
    table = markdown_rows(out)
    assert table['`baseline_r50_mask.py`'][:2] == [f'{BASE_PARAMS:,}', '+0']
    assert table['`gc_r50_mask.py`'][:2] == [
        f'{BASE_PARAMS + GC_DELTA:,}', f'+{GC_DELTA:,}'
    ]


def test_counter_matches_hand_counted_blocks():
    """The counter against the multiply-adds of each layer counted by hand,
    for one GC and one NL block on a ``[1, 64, 8, 8]`` input (N = 64
    positions; 1x1 convolutions count C_in * C_out per position, biases
    are free; a LayerNorm with affine parameters counts 5 per element,
    mmengine's norm convention)."""
    channels, positions = 64, 8 * 8
    x = torch.randn(1, channels, 8, 8)

    gc = GCBlock(channels, ratio=1 / 4).eval()
    hidden = channels // 4
    expected = (
        positions * channels  # conv_mask: C -> 1 per position
        + channels * positions  # attention pooling [C, N] @ [N, 1]
        + channels * hidden  # channel_add: C -> C/4
        + 5 * hidden  # LayerNorm over C/4
        + hidden * channels)  # C/4 -> C
    assert count_flops(gc, (x, )) == expected == 10_320

    nl = NLBlock(channels).eval()  # inter_channels = C / 2
    inter = channels // 2
    convs = 3 * positions * channels * inter  # theta, phi, g: C -> C/2
    convs += positions * inter * channels  # conv_out: C/2 -> C
    pairwise = positions * positions * (inter + inter)  # q k^T, attn @ v
    assert count_flops(nl, (x, ), attention_handles=False) == convs
    assert count_flops(nl, (x, )) == convs + pairwise == 786_432


def test_attention_handles_count_exactly():
    """The handles add exactly the attention products the plain analyzer
    skips: NL's ``softmax(q k^T) v`` and SE's squeeze (a 128x128 image)."""
    nl = build_detector(load_config('configs/nl_r50_mask.py'))
    with_handles = backbone_neck_flops(nl, 128, 128)
    plain = backbone_neck_flops(nl, 128, 128, attention_handles=False)
    # one NL block at c4: N = 8*8 positions, 512-channel q/k and v
    assert with_handles - plain == 64 * 64 * (512 + 512)

    se = build_detector(load_config('configs/se_r50_mask.py'))
    squeeze = sum(blocks * channels * size**2
                  for blocks, channels, size in ((3, 256, 32), (4, 512, 16),
                                                 (6, 1024, 8), (3, 2048, 4)))
    assert backbone_neck_flops(se, 128, 128) - backbone_neck_flops(
        se, 128, 128, attention_handles=False) == squeeze == 1_802_240


def test_detector_part_pads_and_counts_the_heads():
    model = build_detector(load_config(DEMO_CONFIG))
    flops, padded = detector_flops(model, 100, 130)
    assert padded == (128, 160)  # the data preprocessor's size divisor 32
    assert flops > 2 * backbone_neck_flops(model, 128, 160)


def test_default_baseline():
    assert default_baseline('MaskRCNN').endswith(
        osp.join('configs', 'baseline_r50_mask.py'))
    # a config's own baseline: baseline_<backbone>_<detector>.py if shipped
    for config, base in (('configs/gc_r18_retina.py', 'baseline_r18_retina'),
                         ('gc_swin-t_mask.py', 'baseline_swin-t_mask'),
                         ('gc-r4_r50_mask_syncbn.py', 'baseline_r50_mask'),
                         ('gc_x101_mask.py', 'baseline_r50_mask')):
        assert default_baseline('MaskRCNN', config).endswith(
            osp.join('configs', base + '.py')), config
    assert osp.isfile(default_baseline('RetinaNet'))
    with pytest.raises(ValueError, match="'FasterRCNN'"):
        default_baseline('FasterRCNN')
    with pytest.raises(FileNotFoundError, match='no_such.py'):
        load_config('configs/no_such.py')


@pytest.mark.slow
def test_missing_config_is_named(repo_root):
    result = run([
        'tools/analysis_tools/get_flops.py', 'configs/baseline_r50_mask.py',
        '--compare', 'configs/gc_r50_mask.py', 'configs/missing.py'
    ],
                 repo_root,
                 check=False)
    assert result.returncode == 2
    assert "config file not found: 'configs/missing.py'" in result.stderr
    result = run([
        'tools/analysis_tools/benchmark.py', DEMO_CONFIG, '--baseline',
        'configs/missing.py'
    ],
                 repo_root,
                 check=False)
    assert result.returncode == 2
    assert "file not found: 'configs/missing.py'" in result.stderr


# ------------------------------------------------------------ benchmark.py
def test_interleaved_min_times_order_and_minimum():
    calls = []

    def make(name: str, seconds: float):

        def fn():
            calls.append(name)
            time.sleep(seconds)

        return fn

    fast, slow = interleaved_min_times(
        [make('a', 0.01), make('b', 0.03)], repeats=2, warmup=1)
    assert calls == ['a', 'b'] * 3
    assert 0.01 <= fast < 0.025 and 0.03 <= slow < 0.045
    # the CPU clock does not count sleeping (or waiting for a core)
    cpu, = interleaved_min_times([make('c', 0.03)], 2, 0, clock='cpu')
    assert 0 <= cpu < 0.01
    with pytest.raises(ValueError, match="'gpu'"):
        interleaved_min_times([make('d', 0)], 1, clock='gpu')


def test_peak_extra_bytes_sees_a_touched_tensor():
    size = 64 * 2**20
    extra = peak_extra_bytes(lambda: torch.ones(size // 4))  # 64 MiB
    assert size <= extra < size + 16 * 2**20
    assert peak_extra_bytes(lambda: None) < 8 * 2**20


def test_peak_tensor_bytes_is_the_exact_peak():
    kept = torch.ones(2**20)

    def fn():
        nonlocal kept
        kept = None  # allocated before: its free is not counted
        a = torch.ones(2**18)  # 1 MiB
        b = torch.ones(2**19)  # 2 MiB: peak 3 MiB
        del a
        c = torch.ones(2**17)  # noqa: F841  (0.5 MiB, under the peak)
        return b

    assert peak_tensor_bytes(fn) == 3 * 2**20


def printed(cell: str) -> Tuple[float, float]:
    """A printed number and half its last digit (the rounding error)."""
    digits = cell.split('.')[1] if '.' in cell else ''
    return float(cell.replace(',', '')), 0.5 * 10.**-len(digits)


def benchmark_rows(out: str) -> Dict[str, Tuple[float, float, float]]:
    """``metric: (value, baseline, ratio)``; checks that every printed
    ratio is the ratio of the printed values, up to their rounding."""
    rows = {}
    for metric, (value, base, ratio) in markdown_rows(out).items():
        (v, dv), (b, db) = printed(value), printed(base)
        assert v > 0 and b > db, metric
        r = float(ratio)
        assert (v - dv) / (b + db) - 5e-4 <= r <= (v + dv) / (b - db) + 5e-4
        rows[metric] = (v, b, r)
    return rows


@pytest.mark.slow
def test_benchmark_gc_against_its_baseline(repo_root, tmp_path):
    """The demo GC model against the same model without GC, 128x128."""
    baseline = tmp_path / 'demo_no_gc.py'
    baseline.write_text(f'_base_ = {DEMO_CONFIG!r}\n'
                        'model = dict(backbone=dict(plugins=None))\n')
    out = run([
        'tools/analysis_tools/benchmark.py', DEMO_CONFIG, '--baseline',
        str(baseline), '--shape', '128', '128', '--threads', '1', '--repeats',
        '1'
    ], repo_root).stdout
    # re-executed with the malloc settings, 1 thread
    assert '1 threads, MALLOC_MMAP_THRESHOLD_=17179869184' in out
    assert 'input 1x3x128x128 (synthetic)' in out
    assert '360 of 464 tensors shared with the baseline' in out
    rows = benchmark_rows(out)
    assert set(rows) == {
        'inference, ms / image', 'inference peak tensor memory, MB',
        'detections / image', 'train step (1 image), ms',
        'train step peak tensor memory, MB', 'params'
    }
    assert all(0 < r < 100 for _, _, r in rows.values())
    # GC blocks start as identities and share the baseline's weights:
    # the same detections, so the same data-dependent work
    assert rows['detections / image'][:2] == (100.0, 100.0)
    # 13 GC r16 blocks at 1/4 width (c3..c5 = 128, 256, 512 channels)
    gc_params = sum(n * (c * c // 8 + 2 * c + 3 * c // 16 + 1)
                    for n, c in ((4, 128), (6, 256), (3, 512)))
    assert rows['params'][:2] == (2_931_819, 2_931_819 - gc_params)
