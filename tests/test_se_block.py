"""SEBlock: the paper's formula, mmdet SELayer compatibility, the fused
backward, ratio semantics."""
import pytest
import torch
from mmcv.cnn import build_plugin_layer
from mmdet.models.layers import SELayer

from mmgc.models.se_block import SEBlock
from mmgc.utils import randomize_


def paper_se(block: SEBlock, x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(W2 ReLU(W1 mean_hw(x) + b1) + b2), written out."""
    b, c = x.shape[:2]
    squeeze = x.sum(dim=(2, 3)) / (x.shape[2] * x.shape[3])  # [B, C]
    w1 = block.conv1.conv.weight.reshape(block.hidden_channels, c)
    w2 = block.conv2.conv.weight.reshape(c, block.hidden_channels)
    hidden = (squeeze @ w1.T + block.conv1.conv.bias).clamp(min=0)
    gate = 1 / (1 + torch.exp(-(hidden @ w2.T + block.conv2.conv.bias)))
    return x * gate[:, :, None, None]


@pytest.mark.parametrize('channels_last', [False, True])
def test_matches_formula_forward_and_backward(channels_last):
    """Outputs and every gradient (input, both FCs) of the fused backward
    equal autograd through the literal formula."""
    block = SEBlock(32, ratio=1 / 4)
    randomize_(block, std=0.5)
    x = torch.randn(3, 32, 7, 5)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    out, want = block(x1), paper_se(block, x2)
    torch.testing.assert_close(out, want, atol=1e-6, rtol=1e-5)
    grad = torch.randn_like(want)
    got = torch.autograd.grad(out, [x1, *block.parameters()], grad)
    ref = torch.autograd.grad(want, [x2, *block.parameters()], grad)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4)


def test_frozen_parameters_and_no_grad_paths():
    block = SEBlock(16, ratio=1 / 4)
    randomize_(block, std=0.5)
    x = torch.randn(2, 16, 4, 4)
    with torch.no_grad():
        expected = block(x)
    for p in block.conv1.parameters():
        p.requires_grad_(False)
    x.requires_grad_()
    out = block(x)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert x.grad is not None and block.conv1.conv.weight.grad is None
    assert block.conv2.conv.weight.grad is not None


def test_matches_mmdet_selayer():
    """ratio=1/16 here is SELayer's ratio=16; state dicts load both ways."""
    theirs = SELayer(64, ratio=16)
    randomize_(theirs, std=0.5)
    ours = SEBlock(64, ratio=1 / 16)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 64, 9, 11)
    torch.testing.assert_close(ours(x), theirs(x))


def test_ratio_is_a_fraction_and_act_cfg():
    assert SEBlock(64).hidden_channels == 4
    assert SEBlock(64, ratio=0.25).hidden_channels == 16
    block = SEBlock(8, ratio=0.5, act_cfg=dict(type='ReLU'))
    assert isinstance(block.conv2.activate, torch.nn.ReLU)


def test_plugin_name():
    name, layer = build_plugin_layer(
        dict(type='SEBlock'), in_channels=32, postfix=2)
    assert name == 'se_block2' and isinstance(layer, SEBlock)
