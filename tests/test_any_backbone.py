"""AttachPlugins: any mmgc block after any submodule of any registered
backbone (and neck), by module path; NCHW stage outputs of token backbones.

Tiny widths and 64x64 inputs keep this fast.
"""
import copy
import io

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import ConfigDict
from mmengine.runner.checkpoint import load_checkpoint

from mmgc.models import GCBlock, NLBlock, SASABlock, SEBlock, attach_plugins
from mmgc.models.utils import ArgumentError
from mmgc.models.utils.module_paths import compile_pattern

BLOCK_CFGS = {
    GCBlock: dict(type='GCBlock', ratio=1. / 4),
    NLBlock: dict(type='NLBlock'),
    SEBlock: dict(type='SEBlock', ratio=1. / 4),
    SASABlock: dict(type='SASABlock', kernel_size=3, num_heads=2),
}

# Tiny versions of MMDetection backbones: (cfg, attach keys, expected
# places as a function of the built backbone).
BACKBONES = {
    'RegNet': (dict(
        type='RegNet',
        arch=dict(w0=8, wa=8.0, wm=2.0, group_w=8, depth=8, bot_mul=1.0),
        out_indices=(0, 1, 2, 3)), dict(after='layer3.*'),
               lambda m: [f'layer3.{i}' for i in range(len(m.layer3))]),
    'Res2Net':
    (dict(type='Res2Net', depth=50, base_channels=16, base_width=8,
          scales=2), dict(after=['layer1.0', 'layer4.*.bn3']), lambda m:
     ['layer1.0'] + [f'layer4.{i}.bn3' for i in range(len(m.layer4))]),
    'ResNeSt': (dict(
        type='ResNeSt',
        depth=50,
        base_channels=16,
        stem_channels=16,
        radix=2,
        reduction_factor=4), dict(after='layer2.**.conv2'), lambda m: [
            n for n, _ in m.named_modules()
            if n.startswith('layer2.') and n.endswith('.conv2')
        ]),
    'HRNet': (dict(
        type='HRNet',
        extra=dict(
            stage1=dict(
                num_modules=1,
                num_branches=1,
                block='BOTTLENECK',
                num_blocks=(1, ),
                num_channels=(8, )),
            stage2=dict(
                num_modules=1,
                num_branches=2,
                block='BASIC',
                num_blocks=(1, 1),
                num_channels=(8, 16)),
            stage3=dict(
                num_modules=1,
                num_branches=3,
                block='BASIC',
                num_blocks=(1, 1, 1),
                num_channels=(8, 16, 32)),
            stage4=dict(
                num_modules=1,
                num_branches=4,
                block='BASIC',
                num_blocks=(1, 1, 1, 1),
                num_channels=(8, 16, 32, 64)))),
              dict(after='stage3.0.branches.*'),
              lambda m: [f'stage3.0.branches.{i}' for i in range(3)]),
    'CSPDarknet':
    (dict(type='CSPDarknet', deepen_factor=0.33,
          widen_factor=0.125), dict(after=['stem', 'stage[34].1']),
     lambda m: ['stem', 'stage3.1', 'stage4.1']),
    'SwinTransformer': (dict(
        type='SwinTransformer',
        embed_dims=16,
        depths=(1, 1, 1, 1),
        num_heads=(1, 2, 2, 4),
        window_size=7,
        pretrain_img_size=64,
        out_indices=(0, 1, 2, 3)), dict(outputs=(1, 2, 3)),
                        lambda m: [1, 2, 3]),
}


def abbr(cls):
    return cls._abbr_


def expected_names(cls, places):
    """Where AttachPlugins puts the blocks of ``places``."""
    return [
        f'attached_plugins.{p}.{abbr(cls)}'
        if isinstance(p, str) else f'attached_plugins.outputs.{p}.{abbr(cls)}'
        for p in places
    ]


def build(name, cls, **extra):
    cfg, where, _ = BACKBONES[name]
    cfg = copy.deepcopy(cfg)
    base_type = cfg.pop('type')
    return MODELS.build(
        dict(
            type='AttachPlugins',
            base_type=base_type,
            attach=[dict(cfg=BLOCK_CFGS[cls], **where)],
            **cfg,
            **extra))


def train_step(model):
    torch.manual_seed(0)
    model.train()
    outs = model(torch.randn(2, 3, 64, 64))  # [B, 3, H, W]
    loss = sum(o.float().pow(2).mean() for o in outs)
    loss.backward()
    return outs


@pytest.mark.parametrize('cls', list(BLOCK_CFGS), ids=lambda c: c.__name__)
@pytest.mark.parametrize('name', list(BACKBONES))
def test_block_in_backbone(tmp_path, name, cls):
    cfg, _, places_of = BACKBONES[name]
    torch.manual_seed(0)
    plain = MODELS.build(copy.deepcopy(cfg))
    pretrained = str(tmp_path / 'plain.pth')
    # a detector's checkpoint: 'backbone.' keys (all Swin's init takes)
    torch.save(
        {
            'state_dict': {
                f'backbone.{k}': v
                for k, v in plain.state_dict().items()
            }
        }, pretrained)
    init_cfg = ConfigDict(type='Pretrained', checkpoint=pretrained)
    if name != 'SwinTransformer':  # Swin strips the prefix itself
        init_cfg.prefix = 'backbone.'
    model = build(name, cls, init_cfg=init_cfg)
    # still the backbone's own class
    assert type(model) is type(plain)
    names = expected_names(cls, places_of(plain))
    assert len(names) >= 2
    assert [n for n, m in model.named_modules() if isinstance(m, cls)] == names

    # the backbone's own keys are unchanged; only the blocks' are new
    own, plain_keys = model.state_dict(), plain.state_dict()
    new = set(own) - set(plain_keys)
    assert set(plain_keys) <= set(own)
    assert new and all(any(k.startswith(n + '.') for n in names) for k in new)
    assert all(k.startswith('attached_plugins.') for k in new)
    model.init_weights()  # loads the pretrained weights (strict=False)
    for key, value in plain_keys.items():
        torch.testing.assert_close(own[key], value, msg=key)

    # every block runs once per forward; a training step reaches them all
    calls = {n: 0 for n in names}

    def count(name, *_):
        calls[name] += 1

    for n in names:
        model.get_submodule(n).register_forward_hook(lambda *a, n=n: count(n))
    outs = train_step(model)
    assert calls == {n: 1 for n in names}
    plain.train()
    torch.manual_seed(0)
    ref = plain(torch.randn(2, 3, 64, 64))
    assert [o.shape for o in outs] == [o.shape for o in ref]
    for n in names:
        grads = [p.grad for p in model.get_submodule(n).parameters()]
        assert grads and any(g is not None and g.abs().sum() > 0
                             for g in grads), n


def test_neck_by_module_path():
    fpn = MODELS.build(
        dict(
            type='AttachPlugins',
            base_type='FPN',
            in_channels=[8, 16, 32],
            out_channels=16,
            num_outs=3,
            attach=[
                dict(
                    cfg=dict(type='GCBlock', ratio=1 / 4), after='fpn_convs.*')
            ]))
    assert [n for n, m in fpn.named_modules() if isinstance(m, GCBlock)] == [
        f'attached_plugins.fpn_convs.{i}.context_block' for i in range(3)
    ]
    outs = fpn(
        [torch.randn(1, c, s, s) for c, s in ((8, 16), (16, 8), (32, 4))])
    assert [tuple(o.shape) for o in outs] == [(1, 16, 16, 16), (1, 16, 8, 8),
                                              (1, 16, 4, 4)]


def test_several_blocks_at_one_module_run_in_order():
    """GC then SE after one module (and NL then GC after another): distinct
    names, each runs on the previous one's output."""
    torch.manual_seed(0)
    model = MODELS.build(
        dict(
            type='AttachPlugins',
            base_type='ResNet',
            depth=18,
            base_channels=8,
            attach=[
                dict(cfg=dict(type='GCBlock', ratio=1 / 4), after='layer2.0'),
                dict(cfg=dict(type='SEBlock', ratio=1 / 4), after='layer2.0'),
                dict(cfg=dict(type='NLBlock'), after='layer3.1'),
                dict(cfg=dict(type='GCBlock', ratio=1 / 4), after='layer3.1'),
            ]))
    slot = model.attached_plugins.layer2.get_submodule('0')
    assert slot.plugin_names == ['context_block', 'se_block']
    assert model.get_submodule('attached_plugins.layer3.1').plugin_names == [
        'nonlocal_block', 'context_block'
    ]
    with torch.no_grad():  # make the zero-initialised convs matter
        for p in model.attached_plugins.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.eval()
    block = model.layer2[0]
    x = torch.randn(1, 8, 16, 16)  # [B, C, H, W] into layer2
    with torch.no_grad():
        out = block(x)
        bare = type(block).forward(block, x)  # no hooks
        expected = slot.se_block(slot.context_block(bare))
        torch.testing.assert_close(out, expected)
        wrong = slot.context_block(slot.se_block(bare))
        assert not torch.allclose(out, wrong)


def test_blocks_after_a_sequential_run_once():
    """A block after an nn.Sequential (a whole ResNet stage) is not one of
    its children, so the stage does not run it a second time."""
    model = MODELS.build(
        dict(
            type='AttachPlugins',
            base_type='ResNet',
            depth=18,
            base_channels=8,
            attach=[
                dict(cfg=dict(type='SEBlock', ratio=1 / 4), after='layer[12]')
            ]))
    assert [n for n, _ in model.layer1.named_children()] == ['0', '1']
    calls = []
    for name in ('layer1', 'layer2'):
        model.get_submodule(f'attached_plugins.{name}.se_block') \
            .register_forward_hook(lambda *a, n=name: calls.append(n))
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert calls == ['layer1', 'layer2']


def _resnet18():
    return MODELS.build(dict(type='ResNet', depth=18, base_channels=8))


@pytest.mark.parametrize('attach,message', [
    ([dict(cfg=dict(type='GCBlock', ratio=1 / 4), after='layer9.*')],
     "AttachPlugins(ResNet): attach[0].after pattern 'layer9.*' matches no "
     "module; closest module names: "),
    ([dict(cfg=dict(type='GCBlock', ratio=1 / 4), after='layer1.0.relu')],
     "AttachPlugins(ResNet): attach[0].after matches 'layer1.0.relu', which "
     'runs 2 times per forward pass; a block there would run after each '
     'call. Allowed: modules that run once (e.g. its parent block)'),
    ([dict(cfg=dict(type='GCBlock', ratio=1 / 4))
      ], 'AttachPlugins(ResNet): attach[0] needs exactly one of after= '
     "(module-path patterns, e.g. 'stages.2.*') and outputs= (indices of "
     "the returned maps, e.g. (1, 2, 3)); got keys ['cfg']"),
    ([dict(cfg=dict(type='GCBlock', ratio=1 / 4), outputs=(4, ))
      ], 'AttachPlugins(ResNet): attach[0].outputs=(4,): index 4 is out of '
     'range for 4 outputs; allowed: 0 .. 3'),
    ([dict(cfg=dict(type='GCBlock', ratio=1 / 4), outputs=(1, 1))
      ], 'AttachPlugins(ResNet): attach[0].outputs=(1, 1) must be a non-empty '
     'tuple of distinct output indices (ints >= 0), e.g. (1, 2, 3)'),
    ([
        dict(cfg=dict(type='GCBlock', ratio=1 / 4), after='layer1'),
        dict(cfg=dict(type='GCBlock', ratio=1 / 2), after='layer[12]')
    ], "AttachPlugins(ResNet): plugin name 'context_block' is already taken "
     "in attached_plugins.layer1; give the plugin cfg a distinct postfix, "
     "e.g. dict(type='GCBlock', postfix='_2')"),
    ([dict(cfg=dict(type='GCBlock', ratio=1 / 4), after='layer1', where='x')
      ], "AttachPlugins(ResNet): attach[0] has unknown key(s) ['where']; "
     'allowed: cfg, after, outputs'),
    ([], "AttachPlugins(ResNet): attach=[] must be a non-empty list of "
     "dicts like dict(cfg=dict(type='GCBlock', ratio=1 / 16), "
     "after='stages.2.*')"),
])
def test_bad_attach_is_named_and_changes_nothing(attach, message):
    model = _resnet18()
    keys = list(model.state_dict())
    with pytest.raises(ArgumentError) as info:
        attach_plugins(model, attach)
    assert str(info.value).startswith(message)
    assert isinstance(info.value, (ValueError, AssertionError))
    assert list(model.state_dict()) == keys
    assert not model._forward_hooks


def test_token_modules_are_refused_with_the_way_out():
    cfg = copy.deepcopy(BACKBONES['SwinTransformer'][0])
    swin = MODELS.build(cfg)
    message = (
        r"attach\[0\]: module 'stages.1' gives a tuple, not an NCHW map "
        r'\[B, C, H, W\], which mmgc\'s blocks take. Token backbones '
        r'\(Swin, PVT\): place blocks on their NCHW stage outputs with '
        r'outputs=\(...\) instead of after=')
    with pytest.raises(ArgumentError, match=message):
        attach_plugins(swin,
                       [dict(cfg=dict(type='SEBlock'), after='stages.1')])


@pytest.mark.parametrize('pattern,name,hit', [
    ('stages.2.*', 'stages.2.0', True),
    ('stages.2.*', 'stages.2.0.conv1', False),
    ('stages.**.conv3', 'stages.2.0.conv3', True),
    ('layer[234].*.bn3', 'layer3.11.bn3', True),
    ('layer[234].*.bn3', 'layer1.0.bn3', False),
    ('layer?', 'layer1', True),
    ('layer1', 'layer10', False),
])
def test_module_path_patterns(pattern, name, hit):
    assert bool(compile_pattern(pattern).match(name)) is hit


def test_pretrained_detector_checkpoint_loads_into_attached_backbone(tmp_path):
    """load_from of a plain backbone's checkpoint: only the blocks' keys
    are missing."""
    plain = _resnet18()
    path = str(tmp_path / 'r18.pth')
    torch.save({'state_dict': plain.state_dict()}, path)
    model = _resnet18()
    placed = attach_plugins(
        model,
        [dict(cfg=dict(type='GCBlock', ratio=1 / 4), after='layer[34].*')])
    assert placed == [
        f'attached_plugins.layer{s}.{b}.context_block' for s in (3, 4)
        for b in (0, 1)
    ]
    missing = set(model.state_dict()) - set(plain.state_dict())
    assert {k.rsplit('.context_block.', 1)[0]
            for k in missing} == {
                'attached_plugins.layer3.0', 'attached_plugins.layer3.1',
                'attached_plugins.layer4.0', 'attached_plugins.layer4.1'
            }
    load_checkpoint(model, path, strict=False)


def test_copies_run_their_own_blocks():
    """deepcopy (EMA, model copies) and pickling keep the hooks pointing at
    the copy's own blocks."""
    model = MODELS.build(
        dict(
            type='AttachPlugins',
            base_type='ResNet',
            depth=18,
            base_channels=8,
            attach=[
                dict(cfg=dict(type='SEBlock', ratio=1 / 4), after='layer2'),
                dict(cfg=dict(type='GCBlock', ratio=1 / 4), outputs=(3, ))
            ]))
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.attached_plugins.parameters():
            p.add_(1.0)
    model.eval()
    twin.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        same = [torch.equal(a, b) for a, b in zip(model(x), twin(x))]
    assert same == [True, False, False, False]  # layer1 has no block
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    loaded.eval()  # mmdet's ResNet.train() returns None: no chaining
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x)):
            assert torch.equal(a, b)
