"""The config matrix: every shipped config builds, places its blocks where
its description says, loads a baseline checkpoint with only the new keys
missing, adds exactly the parameters documented, trains one step and
predicts on a 64x64 image; metafile, model-index and docs list them all;
and (slow) each trains through tools/train.py on the embedded data set.
"""
import functools
import glob
import math
import os.path as osp
import re
import subprocess
import sys
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, tool_env
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import OptimWrapper
from mmengine.structures import InstanceData

import mmgc.models.backbones  # noqa: F401  (registers PluginResNet)
import mmgc.models.necks  # noqa: F401  (registers PluginFPN)
from mmgc.datasets import SYNTHETIC_CLASSES
from mmgc.models import (CATALOGUE, CBAMBlock, GCBlock, NLBlock, SASAConv,
                         SEBlock)

R50_BLOCKS = (3, 4, 6, 3)  # blocks of layer1..layer4 (c2..c5)
BLOCK_TYPES = tuple(entry.cls for entry in CATALOGUE)


def every_block(layers: Tuple[int, ...], attr: str) -> List[str]:
    """``backbone.layer{l}.{b}.{attr}`` for every block of ``layers``."""
    return [
        f'backbone.layer{layer}.{b}.{attr}' for layer in layers
        for b in range(R50_BLOCKS[layer - 1])
    ]


class Spec(NamedTuple):
    detector: str
    placed: Dict[type, List[str]]  # block type -> module names, in order
    param_delta: int  # exact, versus the baseline config
    published: Optional[Tuple[float, ...]] = None  # (box AP[, mask AP])
    syncbn: bool = False
    # the model without blocks (a config under configs/); default:
    # BASELINES[detector]
    baseline: Optional[str] = None


GC_C3_C5 = {GCBlock: every_block((2, 3, 4), 'context_block')}


def gc_params(channels: int, ratio: float = 1 / 16) -> int:
    """Parameters of one GC block (att pooling, channel_add, LayerNorm)."""
    hidden = int(channels * ratio)
    return (channels + 1) + (channels * hidden + hidden) + 2 * hidden + (
        hidden * channels + channels)


# ResNet-18 c3-c5 (2 BasicBlocks each, 128/256/512 channels); RegNetX-3.2GF
# c3-c5 (6/15/2 blocks of 192/432/1008 channels); Swin-T c3-c5 outputs
# (192/384/768 channels).
GC_R18_DELTA = 2 * sum(gc_params(c) for c in (128, 256, 512))
GC_REGNET_DELTA = (6 * gc_params(192) + 15 * gc_params(432) +
                   2 * gc_params(1008))
GC_SWIN_DELTA = sum(gc_params(c) for c in (192, 384, 768))
CONFIGS: Dict[str, Spec] = {
    'baseline_r50_mask.py':
    Spec('MaskRCNN', {}, 0, (38.2, 34.7)),
    'baseline_r50_retina.py':
    Spec('RetinaNet', {}, 0, (36.5, )),
    'gc_r50_mask.py':
    Spec('MaskRCNN', GC_C3_C5, 2_521_741, (39.7, 35.9)),
    'gc_r50_mask_syncbn.py':
    Spec('MaskRCNN', GC_C3_C5, 2_521_741, (40.4, 36.2), syncbn=True),
    'gc-r4_r50_mask.py':
    Spec('MaskRCNN', GC_C3_C5, 10_000_909, (39.9, 36.0)),
    'gc-r4_r50_mask_syncbn.py':
    Spec('MaskRCNN', GC_C3_C5, 10_000_909, (40.7, 36.5), syncbn=True),
    'gc_r50_retina.py':
    Spec('RetinaNet', GC_C3_C5, 2_521_741),
    'gc-fpn_r50_mask.py':
    Spec(
        'MaskRCNN', {
            GCBlock:
            GC_C3_C5[GCBlock] +
            [f'neck.fpn_convs.{i}.context_block' for i in range(4)]
        }, 2_521_741 + 4 * 8_753),
    'nl_r50_mask.py':
    Spec('MaskRCNN', {NLBlock: ['backbone.layer3.4.nonlocal_block']},
         2_099_712),
    'nl_r50_retina.py':
    Spec('RetinaNet', {NLBlock: ['backbone.layer3.4.nonlocal_block']},
         2_099_712),
    'se_r50_mask.py':
    Spec('MaskRCNN', {SEBlock: every_block((1, 2, 3, 4), 'se_block')},
         2_530_992),
    'se_r50_retina.py':
    Spec('RetinaNet', {SEBlock: every_block((1, 2, 3, 4), 'se_block')},
         2_530_992),
    'cbam_r50_mask.py':
    Spec('MaskRCNN', {CBAMBlock: every_block((1, 2, 3, 4), 'cbam_block')},
         2_532_576),
    'cbam_r50_retina.py':
    Spec('RetinaNet', {CBAMBlock: every_block((1, 2, 3, 4), 'cbam_block')},
         2_532_576),
    'sasa_r50_mask.py':
    Spec('MaskRCNN', {SASAConv: every_block((3, 4), 'conv2')}, -7_075_200),
    'sasa_r50_retina.py':
    Spec('RetinaNet', {SASAConv: every_block((3, 4), 'conv2')}, -7_075_200),
    'sasa-full_r50_retina.py':
    Spec(
        'RetinaNet', {
            SASAConv:
            every_block((2, 3, 4), 'conv2') +
            [f'neck.fpn_convs.{i}.conv' for i in range(5)]
        }, -12_185_440),
    'gc_r18_retina.py':
    Spec(
        'RetinaNet', {
            GCBlock: [
                f'backbone.layer{s}.{b}.context_block' for s in (2, 3, 4)
                for b in (0, 1)
            ]
        },
        GC_R18_DELTA,
        baseline='baseline_r18_retina.py'),
    'gc_regnetx-3.2gf_mask.py':
    Spec(
        'MaskRCNN', {
            GCBlock: [
                f'backbone.attached_plugins.layer{s}.{b}.bn3.context_block'
                for s, blocks in ((2, 6), (3, 15), (4, 2))
                for b in range(blocks)
            ]
        },
        GC_REGNET_DELTA,
        baseline='baseline_regnetx-3.2gf_mask.py'),
    'gc_swin-t_mask.py':
    Spec(
        'MaskRCNN', {
            GCBlock: [
                f'backbone.attached_plugins.outputs.{i}.context_block'
                for i in (1, 2, 3)
            ]
        },
        GC_SWIN_DELTA,
        baseline='baseline_swin-t_mask.py'),
    'baseline_r18_retina.py':
    Spec('RetinaNet', {}, 0, (31.7, ), baseline='baseline_r18_retina.py'),
    'baseline_regnetx-3.2gf_mask.py':
    Spec(
        'MaskRCNN', {},
        0, (40.3, 36.6),
        baseline='baseline_regnetx-3.2gf_mask.py'),
    'baseline_swin-t_mask.py':
    Spec('MaskRCNN', {}, 0, (42.7, 39.3), baseline='baseline_swin-t_mask.py'),
}
BASELINES = {
    'MaskRCNN': 'baseline_r50_mask.py',
    'RetinaNet': 'baseline_r50_retina.py'
}


def load_cfg(name: str) -> Config:
    return Config.fromfile(osp.join(ROOT, 'configs', name))


def build(name: str) -> torch.nn.Module:
    """The detector of config ``name``, without the ImageNet download."""
    cfg = load_cfg(name)
    cfg.model.backbone.init_cfg = None
    return MODELS.build(cfg.model)


@functools.lru_cache(maxsize=None)
def baseline(name: str) -> Tuple[dict, int]:
    """State dict and parameter count of baseline config ``name``."""
    torch.manual_seed(0)
    model = build(name)
    return model.state_dict(), sum(p.numel() for p in model.parameters())


def tiny_batch(with_masks: bool) -> dict:
    """One 64x64 image with one object, as the data loader packs it."""
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(64, 64),
            ori_shape=(64, 64),
            pad_shape=(64, 64),
            scale_factor=(1.0, 1.0)))
    gt = InstanceData(
        bboxes=torch.tensor([[8., 12., 40., 52.]]), labels=torch.tensor([1]))
    if with_masks:
        mask = np.zeros((1, 64, 64), dtype=np.uint8)
        mask[0, 12:52, 8:40] = 1
        gt.masks = BitmapMasks(mask, 64, 64)
    sample.gt_instances = gt
    return dict(inputs=[image], data_samples=[sample])


# --------------------------------------------------------------------------
# every config: build, placement, checkpoint keys, parameters, step, predict
# --------------------------------------------------------------------------


def test_matrix_lists_every_config(repo_root):
    shipped = {
        osp.basename(p)
        for p in glob.glob(osp.join(repo_root, 'configs', '*.py'))
    }
    assert shipped == set(CONFIGS)


def test_tools_compare_each_config_with_its_baseline():
    """config_table.py / benchmark.py take the baseline this matrix uses."""
    from mmgc.utils.complexity import default_baseline
    for name, spec in CONFIGS.items():
        assert osp.basename(default_baseline(
            spec.detector, name)) == (spec.baseline
                                      or BASELINES[spec.detector]), name


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_config_places_blocks_trains_and_predicts(name):
    spec = CONFIGS[name]
    cfg = load_cfg(name)
    assert cfg.custom_imports == dict(
        imports=['mmgc'], allow_failed_imports=False)
    assert cfg.default_scope == 'mmdet'  # inherited from mmdet's runtime
    torch.manual_seed(0)
    model = build(name)
    assert type(model).__name__ == spec.detector

    # placement: type, count and location of every block
    for cls in BLOCK_TYPES:
        names = [n for n, m in model.named_modules() if isinstance(m, cls)]
        assert names == spec.placed.get(cls, []), cls.__name__

    # parameters: exact delta to the baseline
    base_state, base_params = baseline(spec.baseline
                                       or BASELINES[spec.detector])
    params = sum(p.numel() for p in model.parameters())
    assert params - base_params == spec.param_delta

    # a baseline checkpoint loads with only the new modules' keys missing;
    # the only unexpected keys are the conv weights SASA replaced
    result = model.load_state_dict(base_state, strict=False)
    new_modules = tuple(n + '.' for names in spec.placed.values()
                        for n in names)
    assert all(k.startswith(new_modules) for k in result.missing_keys)
    replaced = {f'{n}.weight' for n in spec.placed.get(SASAConv, [])}
    assert set(result.unexpected_keys) == replaced
    for module in new_modules:  # every placed module brought new keys
        assert any(k.startswith(module) for k in result.missing_keys)

    if spec.syncbn:
        norms = {
            type(m).__name__
            for m in model.backbone.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        }
        assert norms == {'SyncBatchNorm'}
        assert cfg.model.backbone.norm_eval is False
        # SyncBN needs a process group; a non-distributed Runner reverts it
        # the same way
        model = revert_sync_batchnorm(model)

    # one training step on a 64x64 image reaches every placed block
    with_masks = spec.detector == 'MaskRCNN'
    model.train()
    data = model.data_preprocessor(tiny_batch(with_masks), True)
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    assert math.isfinite(loss.item())
    loss.backward()
    for module in new_modules:
        grads = [
            p.grad for p in model.get_submodule(module[:-1]).parameters()
            if p.requires_grad
        ]
        assert grads and all(g is not None for g in grads), module
    OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-3)).step()

    # prediction
    model.eval()
    with torch.no_grad():
        results = model.test_step(tiny_batch(with_masks))
    pred = results[0].pred_instances
    assert pred.bboxes.shape[1:] == (4, )
    assert len(pred.scores) == len(pred.labels) == len(pred.bboxes)
    if with_masks:
        assert pred.masks.shape[1:] == (64, 64)


# --------------------------------------------------------------------------
# metafile.yml, model-index.yml, docs/configs.md
# --------------------------------------------------------------------------


def metafile_models(repo_root: str) -> Dict[str, dict]:
    with open(osp.join(repo_root, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    models = {}
    for path in index['Import']:
        with open(osp.join(repo_root, path)) as f:
            meta = yaml.safe_load(f)
        for model in meta['Models']:
            models[model['Config']] = model
    return models


def test_metafile_lists_every_config_with_published_numbers(repo_root):
    models = metafile_models(repo_root)
    assert set(models) == {f'configs/{n}' for n in CONFIGS}
    for name, spec in CONFIGS.items():
        model = models[f'configs/{name}']
        assert model['Metadata']['Training Data'] == 'COCO'
        if spec.published is None:
            assert 'Results' not in model
            assert model['Metadata']['Status'] == 'not yet trained'
            continue
        metrics = {}
        for result in model['Results']:
            metrics.update(result['Metrics'])
        expected = {'box AP': spec.published[0]}
        if len(spec.published) > 1:
            expected['mask AP'] = spec.published[1]
        assert metrics == expected, name
        assert 'MMDetection' in model['Metadata']['Status']


def test_docs_table_has_every_config_and_its_parameter_delta(repo_root):
    with open(osp.join(repo_root, 'docs', 'configs.md')) as f:
        rows = {
            m.group(1): line
            for line in f
            for m in [re.match(r'\| `([^`]+\.py)` \|', line)] if m
        }
    assert set(rows) == set(CONFIGS)
    for name, spec in CONFIGS.items():
        assert f'{spec.param_delta:+,}' in rows[name], name


# --------------------------------------------------------------------------
# slow: every config through tools/train.py on the embedded data set
# --------------------------------------------------------------------------

SUBPROCESS_CONFIG = 'sasa-full_r50_retina.py'  # PluginResNet + PluginFPN


def train_options(data_root: str, detector: str) -> List[str]:
    """``--cfg-options`` for 1 iteration of 2 images at 128 px."""
    data_root = data_root.rstrip('/') + '/'
    classes = '(' + ','.join(SYNTHETIC_CLASSES) + ',)'
    n = len(SYNTHETIC_CLASSES)
    heads = ([
        f'model.roi_head.bbox_head.num_classes={n}',
        f'model.roi_head.mask_head.num_classes={n}'
    ] if detector == 'MaskRCNN' else [f'model.bbox_head.num_classes={n}'])
    return [
        f'train_dataloader.dataset.data_root={data_root}',
        'train_dataloader.dataset.ann_file=annotations/instances_train.json',
        'train_dataloader.dataset.data_prefix.img=train/',
        f'train_dataloader.dataset.metainfo.classes={classes}',
        'train_dataloader.dataset.pipeline.2.scale=(128,128)',
        'train_dataloader.dataset.indices=2',
        'train_dataloader.batch_size=2',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'train_cfg.max_epochs=1',
        'val_cfg=None',
        'val_dataloader=None',
        'val_evaluator=None',
        'model.backbone.init_cfg=None',
        'default_hooks.logger.interval=1',
        *heads,
    ]


def tool_args(name: str, data_root: str, work_dir: str) -> List[str]:
    return [
        'tools/train.py',
        osp.join('configs', name), '--work-dir', work_dir, '--cfg-options',
        *train_options(data_root, CONFIGS[name].detector)
    ]


@pytest.mark.slow
def test_every_config_trains_through_tools_train(tiny_coco, repo_root,
                                                 tmp_path, monkeypatch):
    """One iteration per config: in this process through tools/train.py's
    argument parsing and config building (the package's, one interpreter
    for all), and one config as a user runs it, in a child process."""
    from mmengine.runner import Runner

    from mmgc.utils import (build_train_config, build_train_parser,
                            parse_tool_args)
    monkeypatch.chdir(repo_root)
    no_ckpt = [
        'default_hooks.checkpoint.interval=-1',
        'default_hooks.checkpoint.save_last=False'
    ]
    for name in sorted(set(CONFIGS) - {SUBPROCESS_CONFIG}):
        argv = tool_args(name, tiny_coco, str(tmp_path / name)) + no_ckpt
        monkeypatch.setattr(sys, 'argv', argv)
        runner = Runner.from_cfg(
            build_train_config(parse_tool_args(build_train_parser())))
        runner.train()
        assert runner.iter == 1, name
        loss = runner.message_hub.get_scalar('train/loss').current()
        assert math.isfinite(loss), name

    work_dir = str(tmp_path / 'subprocess')
    result = subprocess.run(
        [sys.executable, *tool_args(SUBPROCESS_CONFIG, tiny_coco, work_dir)],
        cwd=repo_root,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert 'Epoch(train) [1][1/1]' in out
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))
