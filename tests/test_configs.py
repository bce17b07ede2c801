"""The shipped configs: inheritance from mmdet, custom_imports, placement."""
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config

from mmgc.datasets import SYNTHETIC_CLASSES
from mmgc.models import GCBlock

CONFIGS = {
    'gc_r50_mask.py': 'MaskRCNN',
    'gc_r50_retina.py': 'RetinaNet',
    'demo/gc_r50_mask_synthetic.py': 'MaskRCNN',
}


def load(repo_root, name):
    return Config.fromfile(osp.join(repo_root, 'configs', name))


@pytest.mark.parametrize('name,detector', sorted(CONFIGS.items()))
def test_config_builds_with_gc_in_c3_to_c5(repo_root, name, detector):
    cfg = load(repo_root, name)
    assert cfg.custom_imports == dict(
        imports=['mmgc'], allow_failed_imports=False)
    assert cfg.default_scope == 'mmdet'  # inherited from mmdet's runtime
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == detector
    names = [n for n, m in model.named_modules() if isinstance(m, GCBlock)]
    expected = [
        f'backbone.layer{s}.{b}.context_block'
        for s, blocks in ((2, 4), (3, 6), (4, 3)) for b in range(blocks)
    ]
    assert names == expected
    assert all(m.ratio == 1 / 16 for m in model.modules()
               if isinstance(m, GCBlock))


def test_demo_config_matches_generated_classes(repo_root):
    cfg = load(repo_root, 'demo/gc_r50_mask_synthetic.py')
    assert tuple(cfg.classes) == SYNTHETIC_CLASSES
    assert cfg.model.roi_head.bbox_head.num_classes == len(SYNTHETIC_CLASSES)
    assert cfg.model.roi_head.mask_head.num_classes == len(SYNTHETIC_CLASSES)
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        assert tuple(loader.dataset.metainfo.classes) == SYNTHETIC_CLASSES


def test_demo_model_predicts_on_a_tiny_input(repo_root):
    from mmdet.structures import DetDataSample
    cfg = load(repo_root, 'demo/gc_r50_mask_synthetic.py')
    model = MODELS.build(cfg.model).eval()
    model.init_weights()
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(64, 96), ori_shape=(64, 96), scale_factor=(1.0, 1.0)))
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 64, 96))
        results = model.predict(torch.randn(1, 3, 64, 96), [sample])
    assert [f.shape[1] for f in feats] == [64] * 5
    assert [f.shape[-2:] for f in feats][0] == (16, 24)
    pred = results[0].pred_instances
    assert pred.bboxes.shape[1] == 4 and len(pred.scores) == len(pred.labels)


@pytest.mark.parametrize('name',
                         ['demo/gc_r50_mask_synthetic.py', 'se_r50_retina.py'])
def test_plugin_resnet_in_shipped_configs_builds_mmdets_resnet(
        repo_root, name):
    """The GC/SE configs name PluginResNet only for its error messages: under
    one seed it initialises exactly the weights mmdet's ResNet does."""
    states = {}
    for backbone in ('ResNet', 'PluginResNet'):
        cfg = load(repo_root, name)
        assert cfg.model.backbone.type == 'PluginResNet'
        cfg.model.backbone.type = backbone
        cfg.model.backbone.init_cfg = None
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
        model.init_weights()
        states[backbone] = model.state_dict()
    assert list(states['ResNet']) == list(states['PluginResNet'])
    for key, value in states['ResNet'].items():
        assert torch.equal(value, states['PluginResNet'][key]), key
