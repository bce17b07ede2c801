"""Drop-in for MMDetection users: zoo GCNet / NL checkpoints load as they
are, earlier mmgc checkpoints convert, errors are of mmcv's / mmdet's types,
mmcv's attributes exist, and mmgc's blocks are found without a default
scope."""
import os.path as osp
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, tool_env
from mmcv.cnn.bricks import ContextBlock, NonLocal2d
from mmdet.models.backbones import ResNet
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.runner.checkpoint import _load_checkpoint

from mmgc.models import GCBlock, NLBlock, PluginResNet
from mmgc.models.utils import ArgumentError, ArgumentKeyError
from mmgc.utils.checkpoint_convert import convert_checkpoint, convert_key


def perturb(model, only='', scale=0.05):
    """Make the zero-initialised convs matter: noise on the parameters whose
    names contain ``only`` (the blocks'; the backbone's stay as
    initialised, so the features keep their scale)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if only in name:
                p.add_(torch.randn_like(p) * scale)
    return model


def load_strict_report(model, path):
    """``(missing, unexpected)`` keys of loading ``path`` into ``model``."""
    state = _load_checkpoint(path, map_location='cpu')['state_dict']
    result = model.load_state_dict(state, strict=False)
    return result.missing_keys, result.unexpected_keys


# --------------------------------------------------------------------------
# 1. zoo checkpoints load as they are
# --------------------------------------------------------------------------


def test_mmdet_gcnet_checkpoint_loads_into_gc_config(tmp_path):
    """MMDetection's GCNet model (mmdet ResNet + mmcv ContextBlock, as in
    gcnet/mask-rcnn_r50-gcb-r16-c3-c5_fpn_1x_coco.py), saved and loaded
    with load_from into configs/gc_r50_mask.py: nothing missing or
    unexpected, same features."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'gc_r50_mask.py'))
    cfg.model.backbone.init_cfg = None
    mmgc_model = MODELS.build(cfg.model)
    cfg.model.backbone.type = 'ResNet'
    cfg.model.backbone.plugins[0].cfg.type = 'ContextBlock'
    zoo_model = perturb(MODELS.build(cfg.model), 'context_block')
    assert 'backbone.layer2.0.context_block.conv_mask.weight' in \
        zoo_model.state_dict()
    path = str(tmp_path / 'zoo_gcnet.pth')
    torch.save({'state_dict': zoo_model.state_dict(), 'meta': {}}, path)

    assert load_strict_report(mmgc_model, path) == ([], [])
    x = torch.randn(1, 3, 64, 64)  # [B, 3, H, W]
    zoo_model.eval()
    mmgc_model.eval()
    with torch.no_grad():
        for a, b in zip(mmgc_model.extract_feat(x), zoo_model.extract_feat(x)):
            # fp32 sums in another order: features of size ~1 agree to 1e-4
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    'kwargs', [dict(), dict(reduction=4),
               dict(mode='dot_product')])
def test_mmcv_nonlocal_checkpoint_loads_into_nl_block(tmp_path, kwargs):

    def backbone(block_type, backbone_type):
        return MODELS.build(
            dict(
                type=backbone_type,
                depth=50,
                base_channels=8,
                plugins=[
                    dict(
                        cfg=dict(type=block_type, **kwargs),
                        stages=(False, False, True, False),
                        position='after_conv3')
                ]))

    zoo = perturb(backbone('NonLocal2d', 'ResNet'), 'nonlocal_block')
    assert 'layer3.0.nonlocal_block.g.conv.weight' in zoo.state_dict()
    path = str(tmp_path / 'nl.pth')
    torch.save({'state_dict': zoo.state_dict()}, path)
    ours = backbone('NLBlock', 'PluginResNet')
    assert load_strict_report(ours, path) == ([], [])
    zoo.eval()
    ours.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(ours(x), zoo(x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('key,expected', [
    ('backbone.layer2.0.gc_block.channel_add_conv.0.weight',
     'backbone.layer2.0.context_block.channel_add_conv.0.weight'),
    ('backbone.layer3.4.gc_block1.conv_mask.bias',
     'backbone.layer3.4.context_block1.conv_mask.bias'),
    ('backbone.layer3.4.nl_block.g.conv.weight',
     'backbone.layer3.4.nonlocal_block.g.conv.weight'),
    ('neck.fpn_convs.2.gc_block_b.conv_mask.weight',
     'neck.fpn_convs.2.context_block_b.conv_mask.weight'),
    ('backbone.layer1.0.se_block.conv1.conv.weight',
     'backbone.layer1.0.se_block.conv1.conv.weight'),
    ('backbone.layer1.0.conv1.weight', 'backbone.layer1.0.conv1.weight'),
    ('neck.my_gc_block_extra.weight', 'neck.my_gc_block_extra.weight'),
])
def test_convert_key(key, expected):
    assert convert_key(key) == expected


def test_earlier_mmgc_checkpoint_converts_and_loads(tmp_path):
    """A checkpoint with the old gc_block / nl_block names: the CLI renames
    exactly those keys and today's model loads it strictly."""
    torch.manual_seed(0)
    model = perturb(
        PluginResNet(
            depth=50,
            base_channels=8,
            plugins=[
                dict(
                    cfg=dict(type='GCBlock', ratio=1 / 4),
                    stages=(False, True, False, False),
                    position='after_conv3'),
                dict(
                    cfg=dict(type='NLBlock'),
                    stages=(False, False, True, False),
                    blocks=(None, None, (-2, ), None),
                    position='after_block')
            ]))
    old = {
        k.replace('.context_block.', '.gc_block.').replace(
            '.nonlocal_block.', '.nl_block.'):
        v
        for k, v in model.state_dict().items()
    }
    renamed = sum(k != n for k, n in zip(old, model.state_dict()))
    assert renamed > 0
    src, dst = str(tmp_path / 'old.pth'), str(tmp_path / 'new.pth')
    torch.save({'state_dict': old, 'meta': {'epoch': 3}}, src)
    result = subprocess.run(
        [sys.executable, 'tools/model_converters/mmdet_to_mmgc.py', src, dst],
        cwd=ROOT,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f'{dst}: renamed {renamed} keys'
    checkpoint = torch.load(dst, weights_only=False)
    assert checkpoint['meta'] == {'epoch': 3}
    fresh = PluginResNet(depth=50, base_channels=8, plugins=model.plugins)
    fresh.load_state_dict(checkpoint['state_dict'], strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_converter_refuses_to_overwrite_its_source(tmp_path):
    src = str(tmp_path / 'a.pth')
    torch.save({'state_dict': {}}, src)
    with pytest.raises(ValueError, match='a.pth'):
        convert_checkpoint(src, src)
    assert torch.load(src, weights_only=False) == {'state_dict': {}}


# --------------------------------------------------------------------------
# 2. errors of the upstream types, messages kept
# --------------------------------------------------------------------------

GC_CTX = dict(in_channels=16, ratio=1. / 4)
NL_ARGS = dict(in_channels=32)
R50_GC = dict(cfg=dict(type='GCBlock', ratio=1 / 16))
MMDET_GC = dict(cfg=dict(type='ContextBlock', ratio=1 / 16))
# three stages where four are expected: both ResNets must refuse it
THREE_STAGES = dict(stages=(False, True, True), position='after_conv3')

# (mmgc call, mmcv/mmdet call for the same mistake, type upstream raises,
#  mmgc's message)
UPSTREAM_MISTAKES = [
    (lambda: GCBlock(**GC_CTX, pooling_type='unsupport_type'),
     lambda: ContextBlock(**GC_CTX, pooling_type='unsupport_type'),
     AssertionError,
     "GCBlock: pooling_type='unsupport_type' is not supported; allowed: "
     "'att', 'avg'"),
    (lambda: GCBlock(**GC_CTX, fusion_types='unsupport_type'),
     lambda: ContextBlock(**GC_CTX, fusion_types='unsupport_type'),
     AssertionError,
     "GCBlock: fusion_types='unsupport_type' must be a non-empty list or "
     "tuple drawn from ('channel_add', 'channel_mul')"),
    (lambda: GCBlock(**GC_CTX, fusion_types=('unsupport_type', )),
     lambda: ContextBlock(**GC_CTX, fusion_types=('unsupport_type', )),
     AssertionError,
     "GCBlock: fusion_types item='unsupport_type' is not supported; "
     "allowed: 'channel_add', 'channel_mul'"),
    (lambda: GCBlock(**GC_CTX, fusion_types=()),
     lambda: ContextBlock(**GC_CTX, fusion_types=()), AssertionError,
     'GCBlock: fusion_types=() must be a non-empty list or tuple drawn from '
     "('channel_add', 'channel_mul')"),
    (
        lambda: NLBlock(**NL_ARGS, mode='unsupport_mode'),
        lambda: NonLocal2d(**NL_ARGS, mode='unsupport_mode'),
        ValueError,  # mmcv 2.1's NonLocal2d raises ValueError here
        "NLBlock: mode='unsupport_mode' is not supported; allowed: "
        "'embedded_gaussian', 'gaussian', 'dot_product', 'concatenation'"),
    (lambda: PluginResNet(20), lambda: ResNet(20), KeyError,
     'PluginResNet: depth=20 is not supported; allowed: 18, 34, 50, 101, '
     '152'),
    (lambda: PluginResNet(50, plugins=[dict(**R50_GC, **THREE_STAGES)]),
     lambda: ResNet(50, plugins=[dict(**MMDET_GC, **THREE_STAGES)]),
     AssertionError,
     'PluginResNet: plugins[0].stages=(False, True, True) must be None '
     '(all) or a tuple of 4 bools, one per stage'),
    (lambda: PluginResNet(
        50, plugins=[dict(**R50_GC, position='after_conv4')]),
     lambda: ResNet(50, plugins=[dict(**MMDET_GC, position='after_conv4')]),
     AssertionError,
     "PluginResNet: plugins[0].position='after_conv4' is not supported; "
     "allowed: 'after_conv1', 'after_conv2', 'after_conv3', 'after_block'"),
    (lambda: PluginResNet(
        50, plugins=[dict(cfg=dict(type='GCBlok'), position='after_conv3')]),
     lambda: ResNet(
         50, plugins=[dict(cfg=dict(type='GCBlok'), position='after_conv3')]),
     KeyError,
     "PluginResNet: plugins[0].cfg.type='GCBlok' is not a registered "
     "plugin block (did you mean 'GCBlock'?); allowed: "),
]


@pytest.mark.parametrize('ours,upstream,exc_type,message', UPSTREAM_MISTAKES)
def test_errors_are_of_the_upstream_type(ours, upstream, exc_type, message):
    with pytest.raises(exc_type):
        upstream()  # the type mmcv / mmdet raise for this mistake
    with pytest.raises(exc_type) as info:
        ours()
    assert isinstance(info.value, ArgumentError)
    assert isinstance(info.value, ValueError)  # as before
    assert str(info.value).startswith(message)
    assert 'custom_imports' not in str(info.value)  # mmgc is imported


def test_key_error_message_reads_plainly():
    error = ArgumentKeyError('PluginResNet: depth=20 is not supported')
    assert str(error) == 'PluginResNet: depth=20 is not supported'
    assert isinstance(error, KeyError) and isinstance(error, AssertionError)


# --------------------------------------------------------------------------
# 3. attributes of mmcv's blocks
# --------------------------------------------------------------------------


@pytest.mark.parametrize('pooling', ['att', 'avg'])
@pytest.mark.parametrize('fusion', [('channel_add', ), ('channel_mul', ),
                                    ('channel_add', 'channel_mul')])
def test_gc_block_has_mmcv_submodules_and_keys(pooling, fusion):
    ours = GCBlock(16, 1 / 4, pooling_type=pooling, fusion_types=fusion)
    theirs = ContextBlock(16, 1 / 4, pooling_type=pooling, fusion_types=fusion)
    assert dict(ours.named_modules()).keys() == \
        dict(theirs.named_modules()).keys()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    if pooling == 'avg':
        assert isinstance(ours.avg_pool, torch.nn.AdaptiveAvgPool2d)
        assert ours.avg_pool.output_size == 1
        assert not hasattr(ours, 'softmax')
    else:
        assert isinstance(ours.softmax, torch.nn.Softmax)
        assert ours.softmax.dim == 2
        assert not hasattr(ours, 'avg_pool')


@pytest.mark.parametrize('in_channels,reduction', [(1, 2), (3, 4), (8, 16),
                                                   (32, 2)])
def test_nl_block_inner_channels_as_mmcv(in_channels, reduction):
    torch.manual_seed(0)
    theirs = NonLocal2d(in_channels, reduction=reduction)
    ours = NLBlock(in_channels, reduction=reduction)
    assert ours.inter_channels == theirs.inter_channels == max(
        in_channels // reduction, 1)
    assert dict(ours.named_modules()).keys() == \
        dict(theirs.named_modules()).keys()
    perturb(theirs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, in_channels, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------
# 4. found without a default scope
# --------------------------------------------------------------------------

NO_SCOPE_SCRIPT = r'''
from mmengine.registry import DefaultScope
import mmgc  # noqa: F401
assert DefaultScope.get_current_instance() is None
from mmdet.models.backbones import ResNet
from mmgc.models import PluginFPN, PluginResNet
gc = dict(cfg=dict(type='GCBlock', ratio=1 / 4),
          stages=(False, False, False, True), position='after_conv3')
for cls in (ResNet, PluginResNet):
    net = cls(depth=50, base_channels=8, plugins=[gc])
    print(cls.__name__, type(net.layer4[0].context_block).__name__)
fpn = PluginFPN(in_channels=[8, 16], out_channels=8, num_outs=2,
                plugins=[dict(cfg=dict(type='SEBlock', ratio=1 / 4),
                              position='after_fpn_conv')])
print('PluginFPN', type(fpn.fpn_convs[0].se_block).__name__)
net = PluginResNet(depth=50, base_channels=8,
                   sasa=dict(type='SASAConv', kernel_size=3, num_heads=2),
                   stage_with_sasa=(False, False, False, True))
print('SASA', type(net.layer4[0].conv2).__name__)
for case in ('typo', 'unregistered'):
    if case == 'unregistered':  # as if mmgc's models were never imported
        from mmengine.registry import MODELS as ROOT
        from mmdet.registry import MODELS as MMDET
        ROOT._module_dict.pop('GCBlock')
        MMDET._module_dict.pop('GCBlock')
    try:
        PluginResNet(depth=50, plugins=[dict(
            cfg=dict(type='GCBlok' if case == 'typo' else 'GCBlock'),
            position='after_conv3')])
    except KeyError as error:
        print(case, str(error).split('; allowed')[0], '|',
              str(error).split('. ')[-1])
'''


def test_blocks_found_without_default_scope():
    result = subprocess.run([sys.executable, '-c', NO_SCOPE_SCRIPT],
                            cwd=ROOT,
                            env=tool_env(),
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[:4] == [
        'ResNet GCBlock', 'PluginResNet GCBlock', 'PluginFPN SEBlock',
        'SASA SASAConv'
    ]
    typo, unregistered = lines[4:]
    assert typo.startswith(
        "typo PluginResNet: plugins[0].cfg.type='GCBlok' is not a "
        "registered plugin block (did you mean 'ContextBlock'?)") or \
        typo.startswith(
        "typo PluginResNet: plugins[0].cfg.type='GCBlok' is not a "
        "registered plugin block (did you mean 'GCBlock'?)")
    assert 'custom_imports' not in typo
    assert unregistered.startswith(
        "unregistered PluginResNet: plugins[0].cfg.type='GCBlock' is not a "
        'registered plugin block')
    assert unregistered.endswith(
        "mmgc's blocks need import mmgc, or custom_imports=dict(imports="
        "['mmgc']) in the config")
