"""Other data in one flag, mistakes at build time: ``--data-root`` and
friends reach every loader and evaluator; heads' ``num_classes`` against
the data set; a test that evaluated nothing is an error."""
import argparse
import os.path as osp
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from conftest import DEMO_CONFIG, tool_env
from mmdet.registry import DATASETS, MODELS
from mmengine.config import Config
from mmengine.runner import BaseLoop

from mmgc.engine import (ClassCountCheckHook, add_class_count_check,
                         check_class_count, class_heads)
from mmgc.evaluation import empty_test_reason, score_thr_keys
from mmgc.utils import add_data_args, apply_data_args, set_data_location


def parse(argv):
    parser = argparse.ArgumentParser()
    add_data_args(parser)
    return parser.parse_args(argv)


REAL_LAYOUT = [
    '--train-ann', 'annotations/instances_train2017.json', '--train-img',
    'train2017/', '--val-ann', 'annotations/instances_val2017.json',
    '--val-img', 'val2017/'
]


def test_data_root_reaches_every_loader_and_evaluator(tmp_path):
    root = str(tmp_path)
    cfg = Config.fromfile(DEMO_CONFIG)
    apply_data_args(cfg, parse(['--data-root', root, *REAL_LAYOUT]))
    expected = dict(
        train=('annotations/instances_train2017.json', 'train2017/'),
        val=('annotations/instances_val2017.json', 'val2017/'),
        test=('annotations/instances_val2017.json', 'val2017/'))
    for split, (ann, img) in expected.items():
        dataset = cfg[f'{split}_dataloader'].dataset
        assert dataset.data_root == root + '/'
        assert dataset.ann_file == ann
        assert dataset.data_prefix == dict(img=img)
    for split in ('val', 'test'):
        assert cfg[f'{split}_evaluator'].ann_file == osp.join(
            root + '/', 'annotations/instances_val2017.json')
    assert cfg.data_root == root + '/'


def test_test_split_has_its_own_flags(tmp_path):
    cfg = Config.fromfile(DEMO_CONFIG)
    apply_data_args(
        cfg,
        parse([
            '--data-root',
            str(tmp_path), '--test-ann', 'a/test.json', '--test-img', 'test/'
        ]))
    assert cfg.test_dataloader.dataset.ann_file == 'a/test.json'
    assert cfg.test_evaluator.ann_file == str(tmp_path) + '/a/test.json'
    # val keeps the config's names under the new root
    assert cfg.val_dataloader.dataset.ann_file == \
        'annotations/instances_val.json'
    assert cfg.val_evaluator.ann_file == \
        str(tmp_path) + '/annotations/instances_val.json'


def test_no_flag_changes_nothing():
    cfg = Config.fromfile(DEMO_CONFIG)
    before = cfg.to_dict()
    apply_data_args(cfg, parse([]))
    assert cfg.to_dict() == before


def test_wrapped_data_sets_and_evaluator_lists(tmp_path):
    cfg = Config(
        dict(
            train_dataloader=dict(
                dataset=dict(
                    type='RepeatDataset',
                    times=2,
                    dataset=dict(
                        type='CocoDataset',
                        ann_file='a.json',
                        data_root='old/'))),
            test_dataloader=dict(
                dataset=dict(type='CocoDataset', ann_file='t.json')),
            test_evaluator=[
                dict(type='CocoMetric', ann_file='old/t.json'),
                dict(type='DumpDetResults', out_file_path='x')
            ]))
    set_data_location(cfg, data_root=str(tmp_path))
    assert cfg.train_dataloader.dataset.dataset.data_root == \
        str(tmp_path) + '/'
    assert cfg.test_evaluator[0].ann_file == str(tmp_path) + '/t.json'
    assert 'ann_file' not in cfg.test_evaluator[1]

    cfg.train_dataloader.dataset = dict(
        type='ConcatDataset',
        datasets=[dict(ann_file='a'), dict(ann_file='b')])
    with pytest.raises(
            ValueError,
            match=r'train_dataloader holds 2 data '
            r'sets; --train-ann / --train-img would not know'):
        set_data_location(cfg, ann_files=dict(train='c.json'))


def test_missing_data_root_is_named(tmp_path):
    missing = str(tmp_path / 'nope')
    with pytest.raises(
            FileNotFoundError,
            match=f'--data-root '
            f"'{missing}': no such directory"):
        set_data_location(Config.fromfile(DEMO_CONFIG), data_root=missing)


# --------------------------------------------------------------------------
# num_classes of the heads
# --------------------------------------------------------------------------
def demo_model(num_classes):
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.model.roi_head.bbox_head.num_classes = num_classes
    cfg.model.roi_head.mask_head.num_classes = num_classes
    return MODELS.build(cfg.model)


def test_class_heads_of_mask_rcnn_and_retinanet(repo_root):
    assert class_heads(demo_model(5)) == [('roi_head.bbox_head', 5),
                                          ('roi_head.mask_head', 5)]
    cfg = Config.fromfile(
        osp.join(repo_root, 'configs', 'baseline_r50_retina.py'))
    cfg.model.backbone.init_cfg = None
    assert class_heads(MODELS.build(cfg.model)) == [('bbox_head', 80)]


def tiny_dataset(tiny_coco, classes='from_file'):
    cfg = Config.fromfile(DEMO_CONFIG)
    set_data_location(cfg, data_root=tiny_coco, classes=classes)
    return DATASETS.build(cfg.train_dataloader.dataset)


def test_wrong_num_classes_names_both_numbers(tiny_coco):
    dataset = tiny_dataset(tiny_coco)
    check_class_count(demo_model(5), dataset, 'train')  # right: silent
    with pytest.raises(ValueError) as info:
        check_class_count(demo_model(80), dataset, 'train')
    assert str(info.value) == (
        'model.roi_head.bbox_head.num_classes=80, '
        'model.roi_head.mask_head.num_classes=80, but the train data set ('
        f'{tiny_coco}/annotations/instances_train.json) has 5 classes '
        "('circle', 'square', 'triangle', 'star', 'cross'); set "
        'num_classes=5 on every head')


class _Loop(BaseLoop):
    """A built loop holding only a data set."""

    def __init__(self, dataset):  # noqa: D107 (no BaseLoop.__init__)
        self.dataloader = SimpleNamespace(dataset=dataset)

    def run(self):
        pass


def test_hook_checks_every_built_loop(tiny_coco):
    hook = ClassCountCheckHook()
    runner = SimpleNamespace(
        model=demo_model(5),
        _train_loop=dict(),
        _val_loop=None,
        _test_loop=_Loop(tiny_dataset(tiny_coco)))
    hook.before_run(runner)
    runner._test_loop = _Loop(tiny_dataset(tiny_coco, ('circle', 'star')))
    with pytest.raises(
            ValueError,
            match=r'mask_head.num_classes=5, but '
            r'the test data set .* has 2 classes'):
        hook.before_run(runner)


def test_hook_is_added_once():
    cfg = Config(dict(custom_hooks=[dict(type='X')]))
    add_class_count_check(add_class_count_check(cfg))
    assert cfg.custom_hooks == [
        dict(type='X'), dict(type='ClassCountCheckHook')
    ]


# --------------------------------------------------------------------------
# A test that evaluated nothing
# --------------------------------------------------------------------------
def test_empty_test_reason():
    from mmgc.evaluation import CheckedCocoMetric
    model_cfg = Config.fromfile(DEMO_CONFIG).model
    assert score_thr_keys(model_cfg) == ['model.test_cfg.rcnn.score_thr=0.05']
    metric = CheckedCocoMetric.__new__(CheckedCocoMetric)
    metric.format_only, metric.num_images, metric.num_detections = \
        False, 6, 0
    evaluator = SimpleNamespace(metrics=[metric])
    assert empty_test_reason({}, evaluator, model_cfg) == (
        'no detection on the 6 test images (model.test_cfg.rcnn.score_thr='
        '0.05): an early checkpoint often scores every box below it; lower '
        'it with --cfg-options, or check the checkpoint; there is nothing '
        'to evaluate')
    metric.num_detections = 3
    assert empty_test_reason({'coco/bbox_mAP': 0.0}, evaluator) is None
    assert empty_test_reason({}, SimpleNamespace(metrics=[])).startswith(
        "the evaluator returned no metric (mmdet's CocoMetric does so")
    metric.format_only = True  # results files only: nothing to measure
    assert empty_test_reason({}, evaluator) is None


@pytest.mark.slow
def test_test_py_without_detection_exits_1_and_writes_no_metrics(
        tiny_coco, repo_root, tmp_path):
    """With every score under score_thr, tools/test.py says so, exits 1,
    writes no metrics file but keeps --out."""
    torch.manual_seed(0)
    ckpt = str(tmp_path / 'random.pth')
    torch.save(dict(state_dict=demo_model(5).state_dict(), meta=dict()), ckpt)
    metrics_file = tmp_path / 'metrics.json'
    result = subprocess.run([
        sys.executable, 'tools/test.py', DEMO_CONFIG, ckpt, '--work-dir',
        str(tmp_path / 'work'), '--metrics-out',
        str(metrics_file), '--out',
        str(tmp_path / 'preds.pkl'), '--data-root', tiny_coco, '--cfg-options',
        'model.test_cfg.rcnn.score_thr=1.01', 'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False'
    ],
                            cwd=repo_root,
                            env=tool_env(),
                            capture_output=True,
                            text=True,
                            timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out[-3000:]
    assert ('tools/test.py: no detection on the 6 test images '
            '(model.test_cfg.rcnn.score_thr=1.01): ') in out
    assert f'{metrics_file} was not written' in out
    assert not metrics_file.exists()
    assert (tmp_path / 'preds.pkl').is_file()


@pytest.mark.slow
def test_train_py_with_wrong_num_classes_fails_before_iteration_1(
        tiny_coco, repo_root, tmp_path):
    result = subprocess.run([
        sys.executable, 'tools/train.py', DEMO_CONFIG, '--work-dir',
        str(tmp_path), '--data-root', tiny_coco, '--classes', 'circle',
        'square', '--cfg-options', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False'
    ],
                            cwd=repo_root,
                            env=tool_env(),
                            capture_output=True,
                            text=True,
                            timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert ('ValueError: model.roi_head.bbox_head.num_classes=5, '
            'model.roi_head.mask_head.num_classes=5, but the train data set'
            ) in out, out[-3000:]
    assert 'has 2 classes' in out
    assert 'Iter(train)' not in out
