"""GCBlock: numerics, mmcv compatibility, placement and initialisation."""
import itertools
import os.path as osp

import pytest
import torch
from mmcv.cnn.bricks import ContextBlock
from mmdet.registry import MODELS
from mmengine.config import Config

from mmgc.models import GCBlock
from mmgc.utils import randomize_

POOLINGS = ('att', 'avg')
FUSIONS = (('channel_add', ), ('channel_mul', ), ('channel_add',
                                                  'channel_mul'))


def paper_gc(block: GCBlock, x: torch.Tensor) -> torch.Tensor:
    """GCNet's formula, restated literally with einsum and explicit steps.

    z_i = x_i (*) sigmoid(T_mul(c)) + T_add(c),
    c = sum_j softmax_j(W_k x_j) x_j   (or mean_j x_j),
    T(c) = W_v2 ReLU(LN(W_v1 c)).
    """
    b, ch, h, w = x.shape
    flat = x.reshape(b, ch, h * w)
    if block.pooling_type == 'att':
        wk = block.conv_mask.weight.reshape(ch)
        logits = torch.einsum('c,bcn->bn', wk, flat) + block.conv_mask.bias
        attn = torch.exp(logits - logits.max(1, keepdim=True).values)
        attn = attn / attn.sum(1, keepdim=True)
        context = torch.einsum('bn,bcn->bc', attn, flat)
    else:
        context = flat.sum(2) / (h * w)

    def transform(seq):
        conv1, ln, _, conv2 = seq
        hdn = context @ conv1.weight.reshape(block.planes, ch).T + conv1.bias
        mu = hdn.mean(1, keepdim=True)
        var = ((hdn - mu)**2).mean(1, keepdim=True)
        hdn = (hdn - mu) / torch.sqrt(var + ln.eps)
        hdn = hdn * ln.weight.reshape(1, -1) + ln.bias.reshape(1, -1)
        hdn = hdn.clamp(min=0)
        return hdn @ conv2.weight.reshape(ch, block.planes).T + conv2.bias

    out = x
    if block.channel_mul_conv is not None:
        out = out * torch.sigmoid(transform(block.channel_mul_conv))[..., None,
                                                                     None]
    if block.channel_add_conv is not None:
        out = out + transform(block.channel_add_conv)[..., None, None]
    return out


@pytest.mark.parametrize('pooling,fusion',
                         list(itertools.product(POOLINGS, FUSIONS)))
def test_matches_paper_formula(pooling, fusion):
    torch.manual_seed(0)
    block = GCBlock(
        32, ratio=1 / 4, pooling_type=pooling, fusion_types=fusion).eval()
    randomize_(block, std=0.5)
    x = torch.randn(2, 32, 9, 13)
    torch.testing.assert_close(
        block(x), paper_gc(block, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('pooling,fusion',
                         list(itertools.product(POOLINGS, FUSIONS)))
def test_matches_mmcv_context_block(pooling, fusion):
    """Same keys both ways (strict) and the same outputs and gradients."""
    ours = GCBlock(64, ratio=1 / 16, pooling_type=pooling, fusion_types=fusion)
    ref = ContextBlock(
        64, ratio=1 / 16, pooling_type=pooling, fusion_types=fusion)
    randomize_(ref, seed=3, std=0.5)
    assert set(ours.state_dict()) == set(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 64, 15, 11, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out, out_ref = ours(x), ref(x_ref)
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-6)
    grad = torch.randn_like(out)
    out.backward(grad)
    out_ref.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    for (name, p), p_ref in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(
            p.grad, p_ref.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_simplified_nl_and_se_transforms():
    """The framework's other transforms: keys, sizes and formula."""
    snl = GCBlock(16, ratio=1 / 4, transform='conv1x1')
    assert set(snl.state_dict()) == {
        'conv_mask.weight', 'conv_mask.bias', 'channel_add_conv.0.weight',
        'channel_add_conv.0.bias'
    }
    randomize_(snl, std=0.5)
    x = torch.randn(1, 16, 5, 7)
    flat = x.reshape(1, 16, 35)
    logits = torch.einsum('c,bcn->bn', snl.conv_mask.weight.reshape(16),
                          flat) + snl.conv_mask.bias
    context = torch.einsum('bn,bcn->bc', logits.softmax(1), flat)
    conv = snl.channel_add_conv[0]
    expected = x + (context @ conv.weight.reshape(16, 16).T +
                    conv.bias)[..., None, None]
    torch.testing.assert_close(snl(x), expected, rtol=1e-5, atol=1e-5)

    se_like = GCBlock(
        16,
        ratio=1 / 4,
        pooling_type='avg',
        fusion_types=('channel_mul', ),
        transform='bottleneck')
    assert [type(m).__name__
            for m in se_like.channel_mul_conv] == ['Conv2d', 'ReLU', 'Conv2d']


@pytest.mark.parametrize('kwargs,match', [
    (dict(ratio=0), 'ratio=0'),
    (dict(ratio=-0.25), 'ratio=-0.25'),
    (dict(ratio=1 / 64), 'ratio=0.015625'),
    (dict(pooling_type='max'), "pooling_type='max'"),
    (dict(fusion_types=()), 'fusion_types=()'),
    (dict(fusion_types='channel_add'), "fusion_types='channel_add'"),
    (dict(fusion_types=('channel_sub', )), "'channel_sub'"),
    (dict(transform='mlp'), "transform='mlp'"),
])
def test_bad_arguments_are_named(kwargs, match):
    args = dict(in_channels=32, ratio=1 / 4)
    args.update(kwargs)
    with pytest.raises(
            ValueError, match=match.replace('(', r'\(').replace(')', r'\)')):
        GCBlock(**args)


def test_registered_as_resnet_plugin():
    backbone = MODELS.build(
        dict(
            type='ResNet',
            depth=50,
            base_channels=16,
            plugins=[
                dict(
                    cfg=dict(type='GCBlock', ratio=1 / 4),
                    stages=(False, True, True, True),
                    position='after_conv3')
            ]))
    names = [n for n, m in backbone.named_modules() if isinstance(m, GCBlock)]
    assert len(names) == 4 + 6 + 3  # every bottleneck of c3, c4, c5
    assert names[0] == 'layer2.0.context_block'
    assert backbone.layer2[0].context_block.in_channels == 16 * 2 * 4
    out = backbone(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in out] == [64, 128, 256, 512]


def _build_detector(config: str, plugins: bool = True):
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None  # no ImageNet download in tests
    if not plugins:
        cfg.model.backbone.plugins = None
    return MODELS.build(cfg.model)


def test_fresh_detector_blocks_are_identities(repo_root):
    """Zero-init survives ResNet's Kaiming init of every conv."""
    torch.manual_seed(0)
    model = _build_detector(
        osp.join(repo_root, 'configs', 'demo', 'gc_r50_mask_synthetic.py'))
    model.backbone.init_cfg = [dict(type='Kaiming', layer='Conv2d')]
    model.init_weights()
    blocks = [m for m in model.modules() if isinstance(m, GCBlock)]
    assert len(blocks) == 13
    for block in blocks:
        assert block.conv_mask.weight.abs().sum() > 0
        last = block.channel_add_conv[-1]
        assert last.weight.abs().sum() == 0 and last.bias.abs().sum() == 0
        x = torch.randn(2, block.in_channels, 6, 5)
        assert torch.equal(block(x), x)


def _num_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_gc_r16_adds_exact_parameter_count(repo_root):
    """The published parameter delta: GC r16 in every block of c3-c5 of
    Mask R-CNN R50 adds 2,521,741."""
    config = osp.join(repo_root, 'configs', 'gc_r50_mask.py')
    gc = _num_params(_build_detector(config))
    baseline = _num_params(_build_detector(config, plugins=False))
    assert gc - baseline == 2_521_741
