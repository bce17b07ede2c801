"""SASA: exactness of the blocked (halo) attention against an obviously
correct unfold implementation, conv drop-in shapes, plugin behaviour."""
import ctypes
import gc
import itertools
import os

import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer, build_plugin_layer
from mmdet.models.backbones import ResNet

from mmgc.models.sasa import SASABlock, SASAConv, choose_block


def reference_sasa(layer: SASAConv, x: torch.Tensor) -> torch.Tensor:
    """``layer``'s output through its reference path: local attention
    written out over explicitly unfolded k x k windows
    (:meth:`SASAConv.local_attention_reference`: keys outside the image
    masked, not zero keys), then the stride's ceil-mode average pooling and
    the bias -- with the same parameters, so gradients compare too."""
    impl = layer.impl
    layer.impl = 'reference'
    try:
        return layer(x)
    finally:
        layer.impl = impl


SIZES = [(1, 1), (1, 6), (5, 1), (2, 3), (5, 7), (8, 8), (13, 9), (3, 20),
         (17, 11)]


@pytest.mark.parametrize('size,kernel,stride',
                         [(s, k, st) for s in SIZES
                          for k, st in ((7, 1), (3, 1), (7, 2), ((3, 5), 2))])
def test_matches_unfold_reference(size, kernel, stride):
    torch.manual_seed(100 * size[0] + size[1])
    layer = SASAConv(
        8, 16, kernel_size=kernel, stride=stride, num_heads=2, bias=True)
    torch.nn.init.normal_(layer.bias)
    x = torch.randn(2, 8, *size)
    torch.testing.assert_close(
        layer(x), reference_sasa(layer, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('block', [(1, 1), (2, 3), (4, 4), (16, 16)])
def test_every_block_size_is_exact_and_differentiable(block):
    """The block shape only changes speed: outputs and gradients (of the
    input, the projections and the relative tables) match the reference."""
    torch.manual_seed(1)
    layer = SASAConv(8, 16, 5, num_heads=2, block_size=block)
    x = torch.randn(2, 8, 9, 7, requires_grad=True)
    grad = torch.randn(2, 16, 9, 7)
    out = layer(x)
    got = torch.autograd.grad(out, [x, *layer.parameters()], grad)
    want_out = reference_sasa(layer, x)
    want = torch.autograd.grad(want_out, [x, *layer.parameters()], grad)
    torch.testing.assert_close(out, want_out, atol=1e-5, rtol=1e-5)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)


def test_out_of_image_keys_are_masked_not_zero():
    """A 1x1 map: the only key is the query itself, so the output is its
    value whatever the relative embeddings; zero-padded keys would dilute
    it with a softmax over 49 logits."""
    layer = SASAConv(4, 8, 7, num_heads=2)
    torch.nn.init.normal_(layer.rel_h, std=3.0)
    x = torch.randn(3, 4, 1, 1)
    value = F.conv2d(x, layer.qkv.weight)[:, 16:]
    torch.testing.assert_close(layer(x), value)


@pytest.mark.parametrize('stride', [1, 2, 3])
def test_output_shape_equals_conv(stride):
    """Attention + ceil-mode pooling gives a padded conv's output size."""
    layer = SASAConv(4, 8, 3, stride=stride, padding=1, num_heads=2)
    conv = torch.nn.Conv2d(4, 8, 3, stride=stride, padding=1)
    for h, w in itertools.product([1, 2, 3, 4, 5, 7, 8, 15, 16, 33],
                                  [1, 6, 9, 20]):
        x = torch.randn(1, 4, h, w)
        assert layer(x).shape == conv(x).shape, (h, w)


def test_build_conv_layer_drop_in():
    layer = build_conv_layer(
        dict(type='SASAConv', num_heads=8),
        32,
        64,
        kernel_size=7,
        stride=2,
        padding=3)
    assert isinstance(layer, SASAConv)
    x = torch.randn(2, 32, 11, 14)
    conv = torch.nn.Conv2d(32, 64, 7, stride=2, padding=3)
    assert layer(x).shape == conv(x).shape == (2, 64, 6, 7)


def test_resnet_with_sasa_as_spatial_conv():
    """mmdet's Bottleneck builds its 3x3 conv from ``dcn``; ``window_size``
    turns it into 7x7 attention (the paper's replacement of conv2),
    including the stride-2 first blocks."""
    net = ResNet(
        depth=50,
        base_channels=16,
        dcn=dict(type='SASAConv', num_heads=8, window_size=7),
        stage_with_dcn=(False, False, True, True),
        out_indices=(0, 1, 2, 3))
    net.init_weights()
    assert isinstance(net.layer3[0].conv2, SASAConv)
    assert net.layer3[0].conv2.window_size == (7, 7)
    outs = net(torch.randn(1, 3, 67, 45))
    conv_net = ResNet(depth=50, base_channels=16, out_indices=(0, 1, 2, 3))
    ref_shapes = [o.shape for o in conv_net(torch.randn(1, 3, 67, 45))]
    assert [o.shape for o in outs] == ref_shapes
    assert all(torch.isfinite(o).all() for o in outs)


def test_block_is_identity_in_resnet_after_init_weights():
    net = ResNet(
        depth=50,
        base_channels=16,
        plugins=[
            dict(
                cfg=dict(type='SASABlock', kernel_size=7, num_heads=4),
                stages=(False, False, True, True),
                position='after_conv2')
        ])
    net.init_weights()  # Kaiming over every conv, then the blocks' own init
    block = net.layer3[0].sasa_block
    assert isinstance(block, SASABlock)
    assert block.out_proj.weight.abs().sum() == 0
    x = torch.randn(2, 64, 9, 6)
    torch.testing.assert_close(block(x), x)


def test_plugin_builds_with_abbr():
    name, layer = build_plugin_layer(
        dict(type='SASABlock', num_heads=2), in_channels=8, postfix='_1')
    assert name == 'sasa_block_1' and isinstance(layer, SASABlock)


def test_block_choice_avoids_padding_when_cheap():
    """The cost model prefers blocks that tile the map; never exceeds it."""
    assert choose_block(1, 1, (7, 7), 32) == (1, 1)
    bh, bw = choose_block(50, 84, (7, 7), 32)
    assert 50 % bh == 0 and 84 % bw == 0 and 4 <= bh * bw <= 100
    bh, bw = choose_block(3, 200, (7, 7), 32)
    assert bh <= 3


def _peak_extra_bytes(fn) -> int:
    """Rise of the process's peak resident set during ``fn`` (Linux)."""

    def status(key):
        with open('/proc/self/status') as f:
            return next(
                int(line.split()[1]) * 1024 for line in f
                if line.startswith(key))

    gc.collect()
    ctypes.CDLL('libc.so.6').malloc_trim(0)
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset the peak to the current resident set
    before = status('VmRSS')
    out = fn()  # noqa: F841  (the output counts)
    return status('VmHWM') - before


@pytest.mark.skipif(
    not os.access('/proc/self/clear_refs', os.W_OK),
    reason='needs Linux /proc/self/clear_refs')
def test_no_k_squared_copies():
    """Forward peak extra memory stays below 40 maps at 8 heads of 32
    channels; an unfold implementation holds 2 x 49 maps of unfolded keys
    and values alone."""
    layer = SASAConv(256, 256, 7, num_heads=8)
    x = torch.randn(1, 256, 30, 36)
    with torch.no_grad():
        layer(x)  # warm-up: one-time allocations
        extra = _peak_extra_bytes(lambda: layer(x))
    assert extra < 40 * x.numel() * 4, extra / (x.numel() * 4)
