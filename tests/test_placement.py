"""Placing mmgc blocks: mmdet's ResNet/ResNeXt plugins, PluginResNet's
per-block choice and SASA conv2 stages, and PluginFPN.

Narrow backbones (``base_channels=16``) and 64x64 inputs keep this fast.
"""
import copy
import re

import pytest
import torch
from mmcv.cnn import ConvModule
from mmdet.models.backbones import ResNet, ResNeXt
from mmdet.models.backbones.resnet import Bottleneck
from mmdet.models.necks import FPN
from mmdet.registry import MODELS

import mmgc.models.backbones  # noqa: F401  (registers PluginResNet)
import mmgc.models.necks  # noqa: F401  (registers PluginFPN)
from mmgc.models import GCBlock, NLBlock, SASAConv, SEBlock, catalogue

R50_BLOCKS = (3, 4, 6, 3)
WIDTH = 16  # base_channels: planes 16..128, outputs 64..512
# every plugin block of the catalogue, in its first (usual) configuration
BLOCK_CFGS = {
    entry.cls: entry.config()
    for entry in catalogue.entries(catalogue.PLUGIN)
}
ABBR = {entry.cls: entry.abbr for entry in catalogue.entries(catalogue.PLUGIN)}


def placed(model, cls):
    """Names of the ``cls`` modules of ``model``, in order."""
    return [name for name, m in model.named_modules() if isinstance(m, cls)]


def forward(model, size=64):
    torch.manual_seed(0)
    x = torch.randn(1, 3, size, size)  # [B, 3, H, W]
    model.eval()  # mmdet's ResNet.train() returns None: no chaining
    with torch.no_grad():
        return model(x)


def same_weights(src, dst):
    """Copy ``src``'s parameters and buffers into ``dst`` (same keys)."""
    dst.load_state_dict(src.state_dict(), strict=True)
    return dst


# --------------------------------------------------------------------------
# mmdet's own ResNet / ResNeXt plugins
# --------------------------------------------------------------------------


@pytest.mark.parametrize('position',
                         ['after_conv1', 'after_conv2', 'after_conv3'])
@pytest.mark.parametrize('cls', list(BLOCK_CFGS), ids=lambda c: c.__name__)
def test_every_block_type_in_mmdet_resnet(cls, position):
    stages = (True, False, True, True)
    backbone = ResNet(
        depth=50,
        base_channels=WIDTH,
        plugins=[dict(cfg=BLOCK_CFGS[cls], stages=stages, position=position)])
    expected = [
        f'layer{s + 1}.{b}.{ABBR[cls]}' for s in range(4) if stages[s]
        for b in range(R50_BLOCKS[s])
    ]
    assert placed(backbone, cls) == expected  # 3 + 6 + 3 blocks
    for name in expected:
        block = backbone.get_submodule(name.rsplit('.', 1)[0])
        planes = block.planes
        width = planes * 4 if position == 'after_conv3' else planes
        assert backbone.get_submodule(name).in_channels == width
    outs = forward(backbone)
    assert [tuple(o.shape) for o in outs] == [
        (1, WIDTH * 4 * 2**i, 16 // 2**i, 16 // 2**i) for i in range(4)
    ]


@pytest.mark.parametrize('position',
                         ['after_conv1', 'after_conv2', 'after_conv3'])
def test_gc_block_in_mmdet_resnext(position):
    backbone = ResNeXt(
        depth=50,
        groups=8,
        base_width=4,
        base_channels=WIDTH,
        plugins=[
            dict(
                cfg=BLOCK_CFGS[GCBlock],
                stages=(False, True, True, True),
                position=position)
        ])
    names = placed(backbone, GCBlock)
    assert len(names) == 4 + 6 + 3
    # after conv1/conv2 the plugin sees ResNeXt's grouped width
    block = backbone.layer2[0]
    width = (
        block.planes *
        4 if position == 'after_conv3' else block.conv2.out_channels)
    assert block.context_block.in_channels == width
    assert [o.shape[1] for o in forward(backbone)] == [64, 128, 256, 512]


# --------------------------------------------------------------------------
# PluginResNet: blocks within a stage, after_block, key compatibility
# --------------------------------------------------------------------------


def plugin_resnet(plugins=None, **kwargs):
    return MODELS.build(
        dict(
            type='PluginResNet',
            depth=50,
            base_channels=WIDTH,
            plugins=plugins,
            **kwargs))


NL_C4 = dict(
    cfg=dict(type='NLBlock'),
    stages=(False, False, True, False),
    blocks=(None, None, (-2, ), None),
    position='after_block')


def test_one_nl_block_after_the_last_but_one_block_of_c4():
    torch.manual_seed(0)
    backbone = plugin_resnet([NL_C4])
    assert placed(backbone, NLBlock) == ['layer3.4.nonlocal_block']
    plain = ResNet(depth=50, base_channels=WIDTH)
    keys, plain_keys = set(backbone.state_dict()), set(plain.state_dict())
    assert plain_keys <= keys
    assert all(
        k.startswith('layer3.4.nonlocal_block.') for k in keys - plain_keys)
    # 'after_block': on the block's output, after the residual sum + ReLU
    block = backbone.layer3[4]
    for p in block.nonlocal_block.conv_out.parameters():
        torch.nn.init.normal_(p, std=0.1)  # not the identity any more
    block.eval()
    x = torch.randn(1, WIDTH * 16, 4, 4)  # [B, C, H, W]
    with torch.no_grad():
        expected = block.nonlocal_block(Bottleneck.forward(block, x))
        assert torch.allclose(block(x), expected)


def test_plugin_resnet_is_mmdet_resnet_without_blocks_key():
    """No ``blocks`` key: the modules, keys and outputs of mmdet's ResNet
    with the same plugins."""
    plugins = [
        dict(
            cfg=BLOCK_CFGS[GCBlock],
            stages=(False, True, True, True),
            position='after_conv3'),
        dict(
            cfg=BLOCK_CFGS[SEBlock],
            stages=(True, False, False, True),
            position='after_conv2')
    ]
    ours = plugin_resnet(copy.deepcopy(plugins))
    theirs = ResNet(depth=50, base_channels=WIDTH, plugins=plugins)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_modules()] == \
        [n for n, _ in theirs.named_modules()]
    same_weights(theirs, ours)
    for a, b in zip(forward(ours), forward(theirs)):
        assert torch.equal(a, b)
    bare = plugin_resnet()
    plain = ResNet(depth=50, base_channels=WIDTH)
    assert list(bare.state_dict()) == list(plain.state_dict())


def test_every_other_block_and_checkpoint_keys():
    every_other = dict(
        cfg=BLOCK_CFGS[GCBlock],
        stages=(False, True, True, True),
        blocks=(None, (0, 2), (0, 2, 4), 'all'),
        position='after_conv3')
    backbone = plugin_resnet([every_other])
    chosen = [
        'layer2.0', 'layer2.2', 'layer3.0', 'layer3.2', 'layer3.4', 'layer4.0',
        'layer4.1', 'layer4.2'
    ]
    assert placed(backbone, GCBlock) == [f'{b}.context_block' for b in chosen]
    # keys: exactly mmdet's for the chosen blocks, none elsewhere
    full = ResNet(
        depth=50,
        base_channels=WIDTH,
        plugins=[
            dict(
                cfg=BLOCK_CFGS[GCBlock],
                stages=(False, True, True, True),
                position='after_conv3')
        ])
    full_keys = set(full.state_dict())
    keys = set(backbone.state_dict())
    assert keys <= full_keys
    dropped = {
        re.match(r'(layer\d\.\d+)\.context_block\.', k).group(1)
        for k in full_keys - keys
    }
    assert dropped == {
        'layer2.1', 'layer2.3', 'layer3.1', 'layer3.3', 'layer3.5'
    }
    # a checkpoint of mmdet's GC ResNet loads; with trained-looking GC
    # blocks in the chosen blocks and identity ones elsewhere, the outputs
    # match
    full.init_weights()
    for block in chosen:
        last = full.get_submodule(f'{block}.context_block.channel_add_conv.3')
        torch.nn.init.normal_(last.weight, std=0.1)
    backbone.load_state_dict(full.state_dict(), strict=False)
    for a, b in zip(forward(backbone), forward(full)):
        assert torch.allclose(a, b, atol=1e-5)
    # every plugin of a block runs, in the order of `plugins`
    two = plugin_resnet([
        dict(
            cfg=dict(BLOCK_CFGS[SEBlock], postfix='_a'),
            stages=(False, False, False, True),
            blocks=(None, None, None, (-1, )),
            position='after_block'),
        dict(
            cfg=dict(BLOCK_CFGS[GCBlock], postfix='_b'),
            stages=(False, False, False, True),
            position='after_block'),
    ])
    assert two.layer4[2].output_plugin_names == [
        'se_block_a', 'context_block_b'
    ]
    assert two.layer4[0].output_plugin_names == ['context_block_b']


def test_plugin_resnext_selects_blocks():
    backbone = MODELS.build(
        dict(
            type='PluginResNeXt',
            depth=50,
            groups=8,
            base_width=4,
            base_channels=WIDTH,
            plugins=[
                dict(
                    cfg=BLOCK_CFGS[SEBlock],
                    stages=(False, False, True, True),
                    blocks=(None, None, (1, -1), (0, )),
                    position='after_conv2')
            ]))
    assert placed(backbone, SEBlock) == [
        'layer3.1.se_block', 'layer3.5.se_block', 'layer4.0.se_block'
    ]
    width = backbone.layer3[1].conv2.out_channels  # grouped width
    assert backbone.layer3[1].se_block.in_channels == width
    assert [o.shape[1] for o in forward(backbone)] == [64, 128, 256, 512]


# --------------------------------------------------------------------------
# SASA in place of conv2
# --------------------------------------------------------------------------


def test_sasa_replaces_conv2_in_chosen_stages():
    backbone = plugin_resnet(
        sasa=dict(type='SASAConv', kernel_size=7, num_heads=8),
        stage_with_sasa=(False, False, True, True))
    names = placed(backbone, SASAConv)
    assert names == [
        f'layer{s}.{b}.conv2' for s in (3, 4) for b in range(R50_BLOCKS[s - 1])
    ]
    first = backbone.layer3[0].conv2
    assert first.stride == (2, 2) and first.window_size == (7, 7)
    assert backbone.layer3[1].conv2.stride == (1, 1)
    assert type(backbone.layer2[0].conv2) is torch.nn.Conv2d
    # keys: conv2.weight -> conv2.{qkv.weight, rel_h, rel_w} in c4, c5 only
    plain = ResNet(depth=50, base_channels=WIDTH)
    keys, plain_keys = set(backbone.state_dict()), set(plain.state_dict())
    conv2 = {f'{n}.weight' for n in names}
    assert plain_keys - keys == conv2
    assert keys - plain_keys == {
        f'{n}.{p}'
        for n in names
        for p in ('qkv.weight', 'rel_h', 'rel_w')
    }
    outs = forward(backbone)
    assert [tuple(o.shape[1:]) for o in outs] == \
        [tuple(o.shape[1:]) for o in forward(plain)]
    # trains: the attention's relative embeddings get gradients
    backbone.train()
    sum(o.sum() for o in backbone(torch.randn(1, 3, 64, 64))).backward()
    assert backbone.layer4[0].conv2.rel_h.grad.abs().sum() > 0


def test_sasa_and_plugins_together():
    backbone = plugin_resnet([NL_C4],
                             sasa=dict(
                                 type='SASAConv', kernel_size=3, num_heads=8),
                             stage_with_sasa=(False, False, False, True))
    assert placed(backbone, NLBlock) == ['layer3.4.nonlocal_block']
    assert len(placed(backbone, SASAConv)) == 3
    assert forward(backbone)[-1].shape == (1, WIDTH * 32, 2, 2)


# --------------------------------------------------------------------------
# Validation: ValueError naming key, value and what is allowed
# --------------------------------------------------------------------------

GC = dict(type='GCBlock', ratio=1. / 16)


@pytest.mark.parametrize('kwargs,pattern', [
    (dict(plugins=[
        dict(
            cfg=GC,
            stages=(False, False, True, False),
            blocks=(None, None, (6, ), None),
            position='after_conv3')
    ]), r'plugins\[0\]\.blocks\[2\]=\(6,\).*index 6 is out of range.*'
     r'allowed: -6 \.\. 5'),
    (dict(plugins=[
        dict(
            cfg=GC,
            stages=(False, False, True, False),
            blocks=(None, (-7, ), None, None),
            position='after_conv3')
    ]), r'plugins\[0\]\.blocks\[1\]=\(-7,\).*allowed: -4 \.\. 3'),
    (dict(plugins=[dict(cfg=GC, blocks=(None,
                                        (0, )), position='after_conv3')]),
     r'plugins\[0\]\.blocks=\(None, \(0,\)\) must be a tuple of 4 entries'),
    (dict(plugins=[dict(cfg=GC, stages=(True, True), position='after_conv3')]),
     r'plugins\[0\]\.stages=\(True, True\) must be .* 4 bools'),
    (dict(plugins=[dict(cfg=GC, position='after_conv4')]),
     r"plugins\[0\]\.position='after_conv4' is not supported; allowed: "
     r"'after_conv1', 'after_conv2', 'after_conv3', 'after_block'"),
    (dict(plugins=[dict(cfg=GC, stage=(True, ) * 4, position='after_conv3')]),
     r"plugins\[0\] has unknown key\(s\) \['stage'\]; allowed: cfg, "
     r'position, stages, blocks'),
    (dict(plugins=[
        dict(
            cfg=GC,
            stages=(False, False, True, False),
            blocks=(None, (0, ), None, None),
            position='after_conv3')
    ]), r'plugins\[0\]\.blocks\[1\]=\(0,\) picks blocks of stage 1, which '
     r'plugins\[0\]\.stages=.* leaves out; allowed there: None'),
    (dict(plugins=[
        dict(
            cfg=GC, blocks=(None, (0, 0), None, None), position='after_conv3')
    ]), r'plugins\[0\]\.blocks\[1\]=\(0, 0\) selects an item twice'),
    (dict(plugins=[dict(cfg=dict(ratio=0.25), position='after_conv3')]),
     r'plugins\[0\]\.cfg=.* must be a dict with a "type"'),
    (dict(depth=18, plugins=[dict(cfg=GC, position='after_conv3')]),
     r"plugins\[0\]\.position='after_conv3' is not supported; allowed: "
     r"'after_conv1', 'after_conv2', 'after_block'"),
    (dict(depth=34, sasa=dict(type='SASAConv')),
     r"sasa=.* replaces a bottleneck's 3x3 conv2, but depth=34 uses "
     r'BasicBlock; allowed depths: 50, 101, 152'),
    (dict(depth=42), r'depth=42 is not supported; allowed: 18, 34, 50'),
    (dict(stage_with_sasa=(False, False, True, True)),
     r'stage_with_sasa=\(False, False, True, True\) picks stages but '
     r'sasa=None'),
    (dict(sasa=dict(type='SASAConv'), stage_with_sasa=(True, False)),
     r'stage_with_sasa=\(True, False\) must be .* 4 bools, one per stage'),
    (dict(
        sasa=dict(type='SASAConv'),
        stage_with_sasa=(False, False, True, True),
        dcn=dict(type='DCN', deform_groups=1),
        stage_with_dcn=(False, True, True, False)),
     r'stage_with_sasa=.* and stage_with_dcn=.* both pick stage\(s\) \[2\]'),
    (dict(
        sasa=dict(type='SASAConv', kernel_size=7, window_size=5),
        stage_with_sasa=(False, False, False, True)),
     r'both kernel_size and window_size'),
    (dict(plugins=[
        dict(cfg=GC, position='after_block'),
        dict(cfg=GC, position='after_block')
    ]),
     r"plugin name 'context_block' is already taken in Bottleneck; give the "
     r'plugin cfg a distinct postfix'),
])
def test_plugin_resnet_rejects_bad_placement(kwargs, pattern):
    kwargs = dict(dict(depth=50, base_channels=WIDTH), **kwargs)
    with pytest.raises(ValueError, match=pattern):
        MODELS.build(dict(type='PluginResNet', **kwargs))


def test_sasa_in_grouped_resnext_is_rejected_by_name():
    with pytest.raises(
            ValueError, match=r'groups=8 is not supported; '
            r'allowed: 1'):
        MODELS.build(
            dict(
                type='PluginResNeXt',
                depth=50,
                groups=8,
                base_channels=WIDTH,
                sasa=dict(type='SASAConv', num_heads=8),
                stage_with_sasa=(False, False, False, True)))


# --------------------------------------------------------------------------
# PluginFPN
# --------------------------------------------------------------------------

FPN_IN = [16, 32, 64, 128]
FPN_KINDS = {
    # Mask R-CNN's FPN: 4 laterals, 4 output convs, P6 by max-pool
    'mask': dict(num_outs=5),
    # RetinaNet's: from c3, P6/P7 by stride-2 convs on c5 / P6
    'retina': dict(num_outs=5, start_level=1, add_extra_convs='on_input'),
}


def pyramid():
    torch.manual_seed(1)
    return [
        torch.randn(1, c, 32 // 2**i, 32 // 2**i)  # [B, C_i, H_i, W_i]
        for i, c in enumerate(FPN_IN)
    ]


def plugin_fpn(kind='mask', **kwargs):
    return MODELS.build(
        dict(
            type='PluginFPN',
            in_channels=FPN_IN,
            out_channels=32,
            **FPN_KINDS[kind],
            **kwargs))


@pytest.mark.parametrize('kind', sorted(FPN_KINDS))
def test_plugin_fpn_without_plugins_is_mmdet_fpn(kind):
    fpn = FPN(FPN_IN, 32, **FPN_KINDS[kind])
    fpn.init_weights()
    ours = plugin_fpn(kind)
    assert list(ours.state_dict()) == list(fpn.state_dict())
    ours.load_state_dict(fpn.state_dict(), strict=True)
    feats = pyramid()
    with torch.no_grad():
        for a, b in zip(ours(feats), fpn(feats)):
            assert torch.equal(a, b)


@pytest.mark.parametrize('cls', list(BLOCK_CFGS), ids=lambda c: c.__name__)
def test_every_block_type_in_plugin_fpn(cls):
    fpn = plugin_fpn(
        'retina',
        plugins=[
            dict(
                cfg=BLOCK_CFGS[cls],
                position='after_lateral',
                levels=(True, False, True)),
            dict(cfg=BLOCK_CFGS[cls], position='after_fpn_conv'),
        ])
    abbr = ABBR[cls]
    assert placed(fpn, cls) == ([f'lateral_convs.{i}.{abbr}' for i in (0, 2)] +
                                [f'fpn_convs.{i}.{abbr}' for i in range(5)])
    outs = fpn(pyramid())
    assert [tuple(o.shape)
            for o in outs] == [(1, 32, 16 // 2**i, 16 // 2**i)
                               for i in range(4)] + [(1, 32, 1, 1)]


def test_fpn_plugins_act_where_placed():
    """A non-identity SE after one output conv changes that level only;
    after a lateral conv, it changes the levels fed by the top-down path."""
    fpn = FPN(FPN_IN, 32, num_outs=5)
    fpn.init_weights()
    feats = pyramid()
    conv_input = []  # what FPN's P3 output conv receives
    fpn.fpn_convs[1].register_forward_hook(
        lambda module, args, output: conv_input.append(args[0]))
    with torch.no_grad():
        reference = fpn(feats)
        out_plug = plugin_fpn(plugins=[
            dict(
                cfg=BLOCK_CFGS[SEBlock],
                position='after_fpn_conv',
                levels=(False, True, False, False))
        ])
        out_plug.load_state_dict(fpn.state_dict(), strict=False)
        outs = out_plug(feats)
        changed = [not torch.equal(a, b) for a, b in zip(outs, reference)]
        assert changed == [False, True, False, False, False]
        conv = out_plug.fpn_convs[1]
        assert torch.allclose(
            outs[1], conv.se_block(fpn.fpn_convs[1](conv_input[0])), atol=1e-6)

        lat_plug = plugin_fpn(plugins=[
            dict(
                cfg=BLOCK_CFGS[SEBlock],
                position='after_lateral',
                levels=(False, False, True, False))
        ])
        lat_plug.load_state_dict(fpn.state_dict(), strict=False)
        changed = [
            not torch.equal(a, b) for a, b in zip(lat_plug(feats), reference)
        ]
        assert changed == [True, True, True, False, False]


@pytest.mark.parametrize('kind', sorted(FPN_KINDS))
def test_sasa_output_convs_in_plugin_fpn(kind):
    fpn = plugin_fpn(
        kind, fpn_conv_cfg=dict(type='SASAConv', kernel_size=7, num_heads=8))
    n_convs = len(fpn.fpn_convs)
    assert placed(fpn,
                  SASAConv) == [f'fpn_convs.{i}.conv' for i in range(n_convs)]
    assert all(c.conv.window_size == (7, 7) for c in fpn.fpn_convs)
    plain = FPN(FPN_IN, 32, **FPN_KINDS[kind])
    keys, plain_keys = set(fpn.state_dict()), set(plain.state_dict())
    assert plain_keys - keys == {
        f'fpn_convs.{i}.conv.weight'
        for i in range(n_convs)
    }
    assert keys - plain_keys == {
        f'fpn_convs.{i}.conv.{p}'
        for i in range(n_convs)
        for p in ('qkv.weight', 'rel_h', 'rel_w')
    }
    with torch.no_grad():
        assert [o.shape for o in fpn(pyramid())] == \
            [o.shape for o in plain(pyramid())]
    some = plugin_fpn(
        kind,
        fpn_conv_cfg=dict(type='SASAConv', num_heads=8),
        fpn_conv_levels=(True, ) + (False, ) * (n_convs - 1))
    assert placed(some, SASAConv) == ['fpn_convs.0.conv']
    assert some.fpn_convs[0].conv.window_size == (3, 3)


@pytest.mark.parametrize('kwargs,pattern', [
    (dict(
        plugins=[dict(cfg=GC, position='after_lateral', levels=(True, ) * 5)]),
     r'plugins\[0\]\.levels=\(True, True, True, True, True\) must be None '
     r'\(all\) or a tuple of 4 bools, one per lateral conv'),
    (dict(
        plugins=[dict(cfg=GC, position='after_fpn_conv', levels=(1, 1, 1,
                                                                 1))]),
     r'plugins\[0\]\.levels=\(1, 1, 1, 1\) must be .* 4 bools, one per '
     r'output conv'),
    (dict(plugins=[dict(cfg=GC, position='after_neck')]),
     r"plugins\[0\]\.position='after_neck' is not supported; allowed: "
     r"'after_lateral', 'after_fpn_conv'"),
    (dict(
        plugins=[dict(cfg=GC, position='after_fpn_conv', stages=(True, ) *
                      4)]),
     r"unknown key\(s\) \['stages'\]; allowed: cfg, position, levels"),
    (dict(fpn_conv_levels=(True, ) * 4),
     r'fpn_conv_levels=.* needs an fpn_conv_cfg'),
    (dict(fpn_conv_cfg=dict(type='SASAConv'), fpn_conv_levels=(True, )),
     r'fpn_conv_levels=\(True,\) must be .* 4 bools, one per output conv'),
    (dict(fpn_conv_cfg=dict(num_heads=8)),
     r"fpn_conv_cfg=.* must be a conv config with a 'type'"),
    (dict(plugins=dict(cfg=GC, position='after_fpn_conv')),
     r'plugins=.* must be a list of dicts'),
])
def test_plugin_fpn_rejects_bad_placement(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        plugin_fpn(**kwargs)


def test_output_plugins_survive_deepcopy():
    """The hook is a module-level function: a deep copy (e.g. an EMA model)
    runs its own plugins, not the original's."""
    fpn = plugin_fpn(
        plugins=[dict(cfg=BLOCK_CFGS[SEBlock], position='after_fpn_conv')])
    twin = copy.deepcopy(fpn)
    for p in twin.fpn_convs[0].se_block.parameters():
        torch.nn.init.zeros_(p)  # gate = sigmoid(0) = 0.5
    x = torch.randn(1, 32, 16, 16)  # [B, C, H, W]
    with torch.no_grad():
        bare = ConvModule.forward(twin.fpn_convs[0], x)  # no hooks
        assert torch.allclose(twin.fpn_convs[0](x), 0.5 * bare)
        assert not torch.allclose(fpn.fpn_convs[0](x), 0.5 * bare)
