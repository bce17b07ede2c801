"""CBAMBlock: the paper's formula against a plain-torch computation,
shapes, gradients, argument errors and placement through mmcv's builder.

Argument validation, autocast, odd sizes, memory formats, ResNet/FPN
placement and ONNX export are covered for every block, CBAM included, by the
catalogue-driven tests (test_block_common, test_placement,
test_onnx_export)."""
import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn import build_plugin_layer

from mmgc.models import CBAMBlock
from mmgc.utils import randomize_


def paper_cbam(block: CBAMBlock, x: torch.Tensor) -> torch.Tensor:
    """Woo et al. 2018, eq. (1)-(3), written out with explicit weights:
    ``F' = M_c(F) * F``, ``F'' = M_s(F') * F'``."""
    w0 = block.channel_mlp[0].weight.flatten(1)  # [C/r, C]
    b0 = block.channel_mlp[0].bias
    w1 = block.channel_mlp[2].weight.flatten(1)  # [C, C/r]
    b1 = block.channel_mlp[2].bias

    def mlp(v):  # [B, C] -> [B, C]
        return (v @ w0.t() + b0).clamp(min=0) @ w1.t() + b1

    avg = x.sum(dim=(2, 3)) / (x.shape[2] * x.shape[3])  # [B, C]
    peak = x.flatten(2).max(dim=2).values  # [B, C]
    m_c = 1 / (1 + torch.exp(-(mlp(avg) + mlp(peak))))  # [B, C]
    f1 = x * m_c[:, :, None, None]
    pooled = torch.stack(
        [f1.sum(1) / f1.shape[1], f1.max(1).values], dim=1)  # [B, 2, H, W]
    k = block.kernel_size
    logits = F.conv2d(
        F.pad(pooled, [k // 2] * 4), block.spatial_conv.weight,
        block.spatial_conv.bias)  # [B, 1, H, W]
    m_s = 1 / (1 + torch.exp(-logits))
    return f1 * m_s


@pytest.mark.parametrize('kernel_size', [7, 3, 1])
@pytest.mark.parametrize('size', [(1, 1), (5, 9), (12, 7)])
def test_matches_the_paper_forward_and_backward(kernel_size, size):
    block = CBAMBlock(32, ratio=1 / 8, kernel_size=kernel_size)
    randomize_(block, std=0.3)
    x = torch.randn(3, 32, *size, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    grad = torch.randn(3, 32, *size)
    out = block(x)
    expected = paper_cbam(block, x_ref)
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    got = torch.autograd.grad(out, [x, *block.parameters()], grad)
    want = torch.autograd.grad(expected, [x_ref, *block.parameters()], grad)
    for g, w in zip(got, want):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)
    # every parameter is used: all gradients non-zero
    assert all(g.abs().max() > 0 for g in got)


def test_gates_are_in_zero_one_and_shaped_per_channel_and_position():
    block = CBAMBlock(16, ratio=1 / 4)
    randomize_(block, std=0.5)
    x = torch.randn(2, 16, 6, 5)
    with torch.no_grad():
        m_c = block.channel_attention(x)
        m_s = block.spatial_attention(x * m_c)
    assert m_c.shape == (2, 16, 1, 1) and m_s.shape == (2, 1, 6, 5)
    assert m_c.dtype == m_s.dtype == torch.float32
    for gate in (m_c, m_s):
        assert 0 < gate.min() and gate.max() < 1
        assert gate.std() > 1e-3  # depends on the input
    torch.testing.assert_close(block(x), x * m_c * m_s)


def test_default_init_is_pytorchs_and_gates_halve_at_zero_weights():
    """No zero-init: a multiplicative block cannot start as the identity;
    with zero weights both gates are sigmoid(0) = 1/2, y = x / 4."""
    block = CBAMBlock(16)
    assert block.hidden_channels == 1  # 16 / 16
    assert block.spatial_conv.weight.shape == (1, 2, 7, 7)
    assert block.channel_mlp[2].weight.abs().max() > 0  # not zero-init
    for param in block.parameters():
        torch.nn.init.zeros_(param)
    x = torch.randn(1, 16, 4, 4)
    torch.testing.assert_close(block(x), x / 4)


def test_hidden_width_and_parameter_count():
    block = CBAMBlock(256, ratio=1 / 16, kernel_size=7)
    assert block.hidden_channels == 16
    # MLP 256*16 + 16 + 16*256 + 256, spatial conv 2*7*7 + 1
    assert sum(p.numel()
               for p in block.parameters()) == (256 * 16 + 16 + 16 * 256 +
                                                256 + 2 * 49 + 1)


@pytest.mark.parametrize('name,value,match', [
    ('in_channels', 1.5, 'in_channels=1.5 must be an int >= 1'),
    ('ratio', 1 / 32, 'allowed: ratio >= 1/16'),
    ('ratio', 'big', "ratio='big' must be a number > 0"),
    ('kernel_size', 6, 'kernel_size=6 must be odd'),
    ('kernel_size', (7, 7), 'kernel_size=(7, 7) must be an int >= 1'),
])
def test_bad_arguments_name_value_and_allowed(name, value, match):
    with pytest.raises(
            ValueError,
            match=match.replace('(', r'\(').replace(')',
                                                    r'\)').replace('.',
                                                                   r'\.')):
        CBAMBlock(**dict(dict(in_channels=16), **{name: value}))


def test_build_plugin_layer_names_it_cbam_block():
    name, layer = build_plugin_layer(dict(type='CBAMBlock'), in_channels=64)
    assert name == 'cbam_block' and isinstance(layer, CBAMBlock)
    assert layer.ratio == 1 / 16 and layer.kernel_size == 7
