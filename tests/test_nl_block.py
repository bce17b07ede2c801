"""NLBlock: mmcv NonLocal2d compatibility (keys, outputs, gradients) for
every mode, no HW x HW matrix, and initialisation inside a ResNet."""
import itertools

import pytest
import torch
from mmcv.cnn import build_plugin_layer
from mmcv.cnn.bricks import NonLocal2d
from mmdet.models.backbones import ResNet
from torch.profiler import ProfilerActivity, profile

from mmgc.models.nl_block import NLBlock
from mmgc.utils import randomize_

MODES = ('embedded_gaussian', 'gaussian', 'dot_product', 'concatenation')


def pair(mode, sub_sample, **kwargs):
    """An mmcv block with random weights and ours loaded from it (strict)."""
    ref = NonLocal2d(16, mode=mode, sub_sample=sub_sample, **kwargs)
    randomize_(ref, std=0.3, norm_stats=True)
    ours = NLBlock(16, mode=mode, sub_sample=sub_sample, **kwargs)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref.eval(), ours.eval()


def dense_concatenation(block: NLBlock, x: torch.Tensor) -> torch.Tensor:
    """Concatenation mode with the explicit [HW, M] ReLU matrix (mmcv's own
    forward divides the ReLU output in place, so it cannot backpropagate).
    """
    theta = block.theta(x).flatten(2)  # [B, Ci, N]
    phi = block.phi(x).flatten(2)  # [B, Ci, M]
    g = block.g(x).flatten(2)  # [B, Ci, M]
    w = block.concat_project.conv.weight.flatten()
    ci = block.inter_channels
    a = torch.einsum('c,bcn->bn', w[:ci], theta)
    b = torch.einsum('c,bcm->bm', w[ci:], phi)
    pairwise = torch.relu(a[:, :, None] + b[:, None, :]) / phi.shape[-1]
    y = torch.einsum('bnm,bcm->bcn', pairwise,
                     g).reshape(x.shape[0], ci, *x.shape[2:])
    return x + block.conv_out(y)


@pytest.mark.parametrize(
    'mode,sub_sample,use_scale',
    [(m, s, u) for m in MODES for s in (False, True)
     for u in (True, False) if u or m == 'embedded_gaussian'])
def test_matches_mmcv_nonlocal2d(mode, sub_sample, use_scale):
    """Same state-dict keys, outputs and gradients as mmcv's NonLocal2d
    (odd sizes: sub-sampling floors like mmcv's max-pool)."""
    ref, ours = pair(mode, sub_sample, use_scale=use_scale)
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(2, 16, 9, 7)
    if mode == 'gaussian':
        x = x * 0.3  # x . x logits: keep the softmax non-degenerate
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
    if mode == 'concatenation':  # see dense_concatenation
        ref = ours
        ref_forward = lambda t: dense_concatenation(ours, t)  # noqa: E731
    else:
        ref_forward = ref
    x_ref = x.clone().requires_grad_()
    x_ours = x.clone().requires_grad_()
    out_ref, out_ours = ref_forward(x_ref), ours(x_ours)
    torch.testing.assert_close(out_ours, out_ref, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(out_ref)
    ref_grads = torch.autograd.grad(out_ref, [x_ref, *ref.parameters()], grad)
    our_grads = torch.autograd.grad(out_ours, [x_ours, *ours.parameters()],
                                    grad)
    names = ['x'] + [n for n, _ in ours.named_parameters()]
    for name, got, want in zip(names, our_grads, ref_grads):
        # atol 1e-4: gradients reach ~50 (and phi's bias gradient is 0 up
        # to rounding: the softmax ignores per-query shifts)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4, msg=name)


@pytest.mark.parametrize(
    'norm_cfg',
    [dict(type='BN'), dict(type='GN', num_groups=4)])
def test_norm_keys_and_outputs_match_mmcv(norm_cfg):
    ref, ours = pair('embedded_gaussian', True, norm_cfg=norm_cfg)
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(2, 16, 6, 10)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_sub_sample_keys_gain_index():
    keys = set(NLBlock(8, sub_sample=True).state_dict())
    assert {
        'g.0.conv.weight', 'phi.0.conv.weight', 'theta.conv.weight',
        'conv_out.conv.weight'
    } <= keys
    keys = set(NLBlock(8, mode='concatenation').state_dict())
    assert 'concat_project.conv.weight' in keys


@pytest.mark.parametrize('mode', MODES)
def test_never_allocates_the_pairwise_matrix(mode):
    """At HW = 2500 no allocation comes near the 25 MB ``HW x HW`` fp32
    matrix (forward and backward)."""
    block = NLBlock(32, mode=mode)
    randomize_(block, std=0.3, norm_stats=True)
    x = torch.randn(1, 32, 50, 50, requires_grad=True)
    pairwise_bytes = (50 * 50)**2 * 4
    with profile(
            activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        block(x).sum().backward()
    largest = max(e.cpu_memory_usage for e in prof.events())
    assert largest < pairwise_bytes / 8, largest


@pytest.mark.parametrize('mode,sub_sample',
                         list(itertools.product(MODES, (False, True))))
def test_tiny_maps(mode, sub_sample):
    """1xN and Nx1 maps work with sub-sampling (mmcv's max-pool fails)."""
    block = NLBlock(8, mode=mode, sub_sample=sub_sample)
    randomize_(block, std=0.3, norm_stats=True)
    for size in [(1, 1), (1, 5), (4, 1), (3, 3)]:
        out = block(torch.randn(2, 8, *size))
        assert out.shape == (2, 8, *size) and torch.isfinite(out).all()


@pytest.mark.parametrize('norm_cfg', [None, dict(type='BN')])
def test_identity_in_resnet_after_init_weights(norm_cfg):
    """ResNet from scratch: Kaiming over every conv (and BN constant init),
    then the block re-zeroes its output conv / norm: identity."""
    net = ResNet(
        depth=50,
        base_channels=16,
        plugins=[
            dict(
                cfg=dict(type='NLBlock', norm_cfg=norm_cfg),
                stages=(False, True, True, False),
                position='after_conv3')
        ])
    net.init_weights()
    block = net.layer2[0].nonlocal_block
    assert isinstance(block, NLBlock)
    x = torch.randn(2, block.in_channels, 7, 5)
    torch.testing.assert_close(block.eval()(x), x)


def test_plugin_name():
    name, layer = build_plugin_layer(
        dict(type='NLBlock', mode='dot_product'), in_channels=8)
    assert name == 'nonlocal_block' and isinstance(layer, NLBlock)


def test_zeros_init_false_and_std():
    block = NLBlock(8, zeros_init=False, std=0.5)
    assert block.conv_out.conv.weight.abs().sum() > 0
    assert 0.2 < block.g.conv.weight.std() < 1.0
