"""MMDetection GCNet / NL checkpoints (mmcv block keys) load into mmgc."""
import os.path as osp
import sys

import pytest
import torch
from mmengine.runner.checkpoint import load_checkpoint
from mmdet.registry import MODELS

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(
    __file__))), 'tools', 'model_converters'))
from mmdet_to_mmgc import convert_checkpoint, convert_key  # noqa: E402


@pytest.mark.parametrize('key,expected', [
    ('backbone.layer2.0.context_block.channel_add_conv.0.weight',
     'backbone.layer2.0.gc_block.channel_add_conv.0.weight'),
    ('backbone.layer3.4.context_block1.conv_mask.bias',
     'backbone.layer3.4.gc_block1.conv_mask.bias'),
    ('backbone.layer3.4.nonlocal_block.g.conv.weight',
     'backbone.layer3.4.nl_block.g.conv.weight'),
    ('backbone.layer1.0.conv1.weight', 'backbone.layer1.0.conv1.weight'),
    ('neck.my_context_block_extra.weight', 'neck.my_context_block_extra.weight'),
])
def test_convert_key(key, expected):
    assert convert_key(key) == expected


def _resnet(block_type: str, ratio_key: dict):
    model = MODELS.build(dict(
        type='ResNet', depth=50, base_channels=16, plugins=[
            dict(cfg=dict(type=block_type, **ratio_key),
                 stages=(False, True, True, True), position='after_conv3')
        ]))
    model.eval()  # mmdet's ResNet.train() returns None: no chaining
    return model


@pytest.mark.parametrize('mmcv_type,mmgc_type,kwargs', [
    ('ContextBlock', 'GCBlock', dict(ratio=1 / 4)),
    ('NonLocal2d', 'NLBlock', dict()),
])
def test_mmcv_checkpoint_gives_identical_outputs(tmp_path, mmcv_type,
                                                 mmgc_type, kwargs):
    torch.manual_seed(0)
    reference = _resnet(mmcv_type, kwargs)
    with torch.no_grad():  # make the zero-initialised convs matter
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    src, dst = str(tmp_path / 'mmdet.pth'), str(tmp_path / 'mmgc.pth')
    torch.save({'state_dict': reference.state_dict(), 'meta': {}}, src)
    renamed = convert_checkpoint(src, dst)
    blocks = 4 + 6 + 3
    per_block = sum(1 for k in reference.state_dict()
                    if k.startswith('layer2.0.') and 'block' in k)
    assert renamed == blocks * per_block

    ours = _resnet(mmgc_type, kwargs)
    load_checkpoint(ours, dst, strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(ours(x), reference(x)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_refuses_to_overwrite_source(tmp_path):
    src = str(tmp_path / 'a.pth')
    torch.save({'state_dict': {}}, src)
    with pytest.raises(ValueError, match='a.pth'):
        convert_checkpoint(src, src)
