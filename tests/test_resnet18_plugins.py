"""ResNet-18/34 (BasicBlock) plugins in PluginResNet, and several plugins at
one position running in order (BasicBlock and Bottleneck)."""
import pytest
import torch
from mmdet.models.backbones.resnet import BasicBlock
from mmdet.registry import MODELS

from mmgc.models import GCBlock, NLBlock, SASABlock, SEBlock
from mmgc.models.backbones.plugin_resnet import PluginBasicBlock
from mmgc.models.utils import ArgumentError

WIDTH = 8  # base_channels: planes 8..64
BLOCK_CFGS = {
    GCBlock: dict(type='GCBlock', ratio=1. / 4),
    NLBlock: dict(type='NLBlock'),
    SEBlock: dict(type='SEBlock', ratio=1. / 4),
    SASABlock: dict(type='SASABlock', kernel_size=3, num_heads=2),
}


def resnet(depth=18, **kwargs):
    return MODELS.build(
        dict(type='PluginResNet', depth=depth, base_channels=WIDTH, **kwargs))


def placed(model, cls):
    return [n for n, m in model.named_modules() if isinstance(m, cls)]


@pytest.mark.parametrize('position',
                         ['after_conv1', 'after_conv2', 'after_block'])
@pytest.mark.parametrize('cls', list(BLOCK_CFGS), ids=lambda c: c.__name__)
def test_every_block_in_resnet18(cls, position):
    stages = (False, True, False, True)
    blocks = (None, (-1, ), None, 'all')
    model = resnet(plugins=[
        dict(
            cfg=BLOCK_CFGS[cls],
            stages=stages,
            blocks=blocks,
            position=position)
    ])
    abbr = cls._abbr_
    expected = [f'layer2.1.{abbr}', f'layer4.0.{abbr}', f'layer4.1.{abbr}']
    assert placed(model, cls) == expected
    for name in expected:
        block = model.get_submodule(name.rsplit('.', 1)[0])
        assert model.get_submodule(name).in_channels == \
            block.conv2.out_channels
        # blocks with conv plugins are PluginBasicBlocks, the rest mmdet's
        assert isinstance(block, PluginBasicBlock) == \
            (position != 'after_block')
    assert type(model.layer2[0]) is BasicBlock
    plain = MODELS.build(dict(type='ResNet', depth=18, base_channels=WIDTH))
    extra = set(model.state_dict()) - set(plain.state_dict())
    assert set(plain.state_dict()) <= set(model.state_dict())
    assert all(any(k.startswith(n + '.') for n in expected) for k in extra)
    model.train()
    outs = model(torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs
            ] == [(2, WIDTH * 2**i, 16 // 2**i, 16 // 2**i) for i in range(4)]
    sum(o.pow(2).mean() for o in outs).backward()
    for name in expected:
        assert any(p.grad is not None and p.grad.abs().sum() > 0
                   for p in model.get_submodule(name).parameters()), name


def test_basic_block_plugins_sit_where_documented():
    """after_conv1: after norm1 and ReLU; after_conv2: after norm2, before
    the residual sum; checked against BasicBlock's own ops."""
    torch.manual_seed(0)
    model = resnet(
        depth=34,
        plugins=[
            dict(
                cfg=dict(type='SEBlock', ratio=1 / 4, postfix='_a'),
                stages=(True, False, False, False),
                position='after_conv1'),
            dict(
                cfg=dict(type='GCBlock', ratio=1 / 4),
                stages=(True, False, False, False),
                position='after_conv2'),
        ])
    assert len(model.layer3) == 6  # ResNet-34
    block = model.layer1[0]
    with torch.no_grad():
        for p in block.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    block.eval()
    x = torch.randn(1, WIDTH, 16, 16)  # [B, C, H, W]
    with torch.no_grad():
        out = block.relu(block.norm1(block.conv1(x)))
        out = block.se_block_a(out)
        out = block.context_block(block.norm2(block.conv2(out)))
        expected = block.relu(out + x)
        torch.testing.assert_close(block(x), expected)


def test_resnet18_checkpoint_keys_are_mmdets(tmp_path):
    plain = MODELS.build(dict(type='ResNet', depth=18, base_channels=WIDTH))
    model = resnet(plugins=[
        dict(
            cfg=dict(type='GCBlock', ratio=1 / 4),
            stages=(False, True, True, True),
            position='after_conv2')
    ])
    result = model.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert {k.split('.context_block.')[0]
            for k in result.missing_keys
            } == {f'layer{s}.{b}'
                  for s in (2, 3, 4)
                  for b in (0, 1)}


@pytest.mark.parametrize('kwargs,message', [
    (dict(plugins=[
        dict(cfg=dict(type='GCBlock', ratio=1 / 4), position='after_conv3')
    ]), "PluginResNet: plugins[0].position='after_conv3' is not supported; "
     "allowed: 'after_conv1', 'after_conv2', 'after_block'"),
    (dict(
        sasa=dict(type='SASAConv', kernel_size=3, num_heads=2),
        stage_with_sasa=(False, False, False, True)),
     "PluginResNet: sasa={'type': 'SASAConv', 'kernel_size': 3, "
     "'num_heads': 2} replaces a bottleneck's 3x3 conv2, but depth=18 uses "
     'BasicBlock; allowed depths: 50, 101, 152'),
])
def test_resnet18_errors(kwargs, message):
    with pytest.raises(ArgumentError) as info:
        resnet(**kwargs)
    assert str(info.value) == message


def test_two_plugins_after_conv3_and_after_block_run_in_order():
    """GC and SE after conv3, NL and GC after the block: distinct names,
    chained in the order given."""
    torch.manual_seed(0)
    model = resnet(
        depth=50,
        plugins=[
            dict(
                cfg=dict(type='GCBlock', ratio=1 / 4),
                stages=(False, False, False, True),
                blocks=(None, None, None, (0, )),
                position='after_conv3'),
            dict(
                cfg=dict(type='SEBlock', ratio=1 / 4),
                stages=(False, False, False, True),
                blocks=(None, None, None, (0, )),
                position='after_conv3'),
            dict(
                cfg=dict(type='NLBlock'),
                stages=(False, False, False, True),
                blocks=(None, None, None, (0, )),
                position='after_block'),
            dict(
                cfg=dict(type='GCBlock', ratio=1 / 4, postfix='_out'),
                stages=(False, False, False, True),
                blocks=(None, None, None, (0, )),
                position='after_block'),
        ])
    block = model.layer4[0]
    assert block.after_conv3_plugin_names == ['context_block', 'se_block']
    assert block.output_plugin_names == ['nonlocal_block', 'context_block_out']
    with torch.no_grad():
        for p in block.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    block.eval()
    x = torch.randn(1, WIDTH * 16, 8, 8)  # [B, C, H, W] into layer4
    with torch.no_grad():
        out = block.relu(block.norm1(block.conv1(x)))
        out = block.relu(block.norm2(block.conv2(out)))
        out = block.norm3(block.conv3(out))
        out = block.se_block(block.context_block(out))
        out = block.relu(out + block.downsample(x))
        expected = block.context_block_out(block.nonlocal_block(out))
        torch.testing.assert_close(block(x), expected)
