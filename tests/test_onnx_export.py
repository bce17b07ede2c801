"""ONNX export of every block and of a detector's backbone + neck, checked
against PyTorch with onnxruntime (mmgc/utils/onnx_export.py,
tools/deployment/export_onnx.py)."""
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from conftest import DEMO_CONFIG, tool_env
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.runner.checkpoint import save_checkpoint

from mmgc.models import GCBlock, catalogue
from mmgc.models.nl_block import _bisect_right
from mmgc.utils import randomize_
from mmgc.utils.onnx_export import (ATOL, DEFAULT_OPSET, MIN_OPSET, RTOL,
                                    check_opset, compare_outputs,
                                    export_and_compare, max_opset, model_opset,
                                    run_onnxruntime)

# odd sizes: SASA pads to its query blocks, NL's sub-sampling floors
INPUT_SHAPE = (1, 32, 13, 17)

# every example of every block the catalogue marks as exportable
BLOCKS = {
    name: (lambda e=entry, v=variant: e.build(INPUT_SHAPE[1], v))
    for name, (entry, variant) in catalogue.examples().items() if entry.onnx
}


def randomized(block: torch.nn.Module) -> torch.nn.Module:
    """``block`` in eval mode with every parameter ~ N(0, 0.3^2): the
    zero-initialised last convs become non-zero (no identity blocks) and
    the attention logits are far from uniform."""
    randomize_(block, std=0.3)
    return block.eval()


@pytest.mark.parametrize('name', sorted(BLOCKS))
def test_block_matches_pytorch(name, tmp_path):
    block = randomized(BLOCKS[name]())
    x = torch.randn(*INPUT_SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = block(x)
    if out.shape == x.shape:  # not an identity
        assert (out - x).abs().max() > 0.1
    path = str(tmp_path / f'{name}.onnx')
    diffs = export_and_compare(block, x, path, DEFAULT_OPSET, ATOL, RTOL)
    assert len(diffs) == 1
    diff = diffs[0]
    assert diff.shape == tuple(out.shape)
    assert diff.scale > 0.5  # meaningful outputs
    assert diff.max_diff < ATOL + RTOL * diff.scale, diff
    assert diff.max_diff <= 2e-6 * diff.scale  # ~1e-7 measured: fp32 noise
    assert model_opset(onnx.load(path)) == DEFAULT_OPSET


def test_dynamic_shape_block(tmp_path):
    """A GC block exported with symbolic H and W runs at other sizes."""
    block = randomized(GCBlock(32, 1 / 4))
    path = str(tmp_path / 'gc_dynamic.onnx')
    diffs = export_and_compare(
        block,
        torch.randn(*INPUT_SHAPE),
        path,
        18,
        ATOL,
        RTOL,
        dynamic_shape=True)
    assert diffs[0].ok
    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[:2]] == [1, 32]
    assert all(d.dim_param for d in dims[2:])  # symbolic H, W
    for size in ((7, 30), (20, 9)):
        x = torch.randn(1, 32, *size)
        with torch.no_grad():
            expected = block(x)
        got = run_onnxruntime(path, x)[0]
        assert got.shape == (1, 32, *size)
        assert np.abs(got - expected.numpy()).max() < 1e-5


def test_bisect_right_equals_searchsorted():
    """The exported search of the concatenation mode gives the integers of
    ``torch.searchsorted(right=True)``, ties and both ends included."""
    generator = torch.Generator().manual_seed(0)
    for length in (1, 2, 3, 7, 8, 9, 64, 100):
        rows = torch.randint(
            -4, 5, (3, length), generator=generator).float().sort(1).values
        values = torch.cat(
            [
                torch.randint(-6, 7, (3, 40), generator=generator).float(),
                rows,  # exact ties
                torch.full((3, 1), -1e9),
                torch.full((3, 1), 1e9)
            ],
            dim=1)
        assert torch.equal(
            _bisect_right(rows, values),
            torch.searchsorted(rows, values, right=True))


def test_opset_limits():
    assert check_opset(MIN_OPSET) == MIN_OPSET
    assert max_opset() >= 18
    for bad in (MIN_OPSET - 1, max_opset() + 1):
        with pytest.raises(
                ValueError,
                match=rf'--opset {bad} .*use an '
                rf'opset from {MIN_OPSET} to {max_opset()}'):
            check_opset(bad)


def test_compare_outputs_flags_a_wrong_output():
    expected = [torch.full((2, 3), 10.0), torch.ones(4)]
    got = [np.full((2, 3), 10.0005, np.float32), np.ones(4, np.float32)]
    diffs = compare_outputs(['a', 'b'], expected, got, 1e-5, 1e-4)
    assert [d.ok for d in diffs] == [True, True]  # 5e-4 <= 1e-5 + 1e-3
    got[1][2] += 1e-3
    diffs = compare_outputs(['a', 'b'], expected, got, 1e-5, 1e-4)
    assert [d.ok for d in diffs] == [True, False]
    assert diffs[1].max_diff == pytest.approx(1e-3, rel=1e-3)
    assert diffs[1].tolerance == pytest.approx(1e-5 + 1e-4)
    with pytest.raises(RuntimeError, match='ONNX shape'):
        compare_outputs(['a'], expected[:1], [np.zeros((3, 2))], 0, 0)


def _random_demo_checkpoint(path: str) -> None:
    """The demo detector, freshly built, with its GC blocks' zero last
    convs made non-zero, saved as mmengine saves checkpoints."""
    cfg = Config.fromfile(DEMO_CONFIG)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if 'context_block.channel_add_conv.3' in name:
                param.normal_(0, 0.1)
    save_checkpoint({'state_dict': model.state_dict()}, path)


@pytest.mark.slow
def test_export_tool(repo_root, tmp_path):
    checkpoint = str(tmp_path / 'random.pth')
    _random_demo_checkpoint(checkpoint)
    out = tmp_path / 'demo.onnx'
    tool = [
        sys.executable, 'tools/deployment/export_onnx.py', DEMO_CONFIG,
        checkpoint
    ]
    result = subprocess.run(
        tool + ['--shape', '128', '128', '--opset', '17', '--out',
                str(out)],
        cwd=repo_root,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    model = onnx.load(str(out))
    assert model_opset(model) == 17  # converted from the exporter's 18
    outputs = {
        o.name: [d.dim_value for d in o.type.tensor_type.shape.dim]
        for o in model.graph.output
    }
    # FPN levels p2..p6 of the 64-channel demo neck at 128x128
    assert outputs == {
        f'p{k}': [1, 64, 128 >> k, 128 >> k]
        for k in range(2, 7)
    }
    rows = re.findall(r'^(p\d)\s+1x64x\d+x\d+\s+(\S+)\s+(\S+)\s+(\S+)\s+yes$',
                      result.stdout, re.M)
    assert [r[0] for r in rows] == ['p2', 'p3', 'p4', 'p5', 'p6']
    for _, scale, diff, tolerance in rows:
        assert float(diff) <= float(tolerance)
        assert float(tolerance) == pytest.approx(
            ATOL + RTOL * float(scale), rel=1e-2)
    max_diff = float(
        re.search(
            r'max abs diff: (\S+) over 5 outputs, all '
            r'within tolerance', result.stdout).group(1))
    assert 0 < max_diff < 1e-4

    bad = subprocess.run(
        tool + ['--opset', '16'],
        cwd=repo_root,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=120)
    assert bad.returncode == 2
    assert (f'--opset 16 is not supported: use an opset from 17 to '
            f'{max_opset()}') in bad.stderr
