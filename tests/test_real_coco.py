"""Real COCO photos through mmgc's data set, evaluator and tools.

Uses the 80 + 79 real COCO 2017 images at ``<repo>/../shared/real_coco``
(or ``$MMGC_REAL_COCO``; COCO's layout: ``annotations/instances_{train,
val}2017.json``, ``train2017/``, ``val2017/``) and skips when they are
absent. What they have that the synthetic set has not: 80 categories with
non-contiguous ids, names with spaces, crowd objects (uncompressed RLE,
12-digit ids), multi-polygon objects, many small objects, odd image sizes.
"""
import contextlib
import io
import json
import math
import os
import os.path as osp
import pickle
import re
import subprocess
import sys

import pytest
from conftest import DEMO_CONFIG, ROOT, tool_env
from mmdet.registry import DATASETS
from mmengine.config import Config
from test_bad_data import LoggedWarnings
from test_coco_eval import (assert_same, pycocotools_eval, run_tool,
                            to_results_json)

from mmgc.evaluation import evaluate_results_json
from mmgc.utils import set_data_location
from mmgc.visualization.comparison_visualizer import TITLE_HEIGHT

REAL_COCO = os.environ.get('MMGC_REAL_COCO') or osp.normpath(
    osp.join(ROOT, '..', 'shared', 'real_coco'))
pytestmark = pytest.mark.skipif(
    not osp.isfile(
        osp.join(REAL_COCO, 'annotations', 'instances_val2017.json')),
    reason=f'real COCO test images not found at {REAL_COCO} (set '
    f'MMGC_REAL_COCO to a folder with annotations/instances_{{train,val}}'
    f'2017.json, train2017/, val2017/)')

SPLITS = dict(train=(80, 739), val=(79, 624))  # images, annotations
LAYOUT = [
    '--train-ann', 'annotations/instances_train2017.json', '--train-img',
    'train2017/', '--val-ann', 'annotations/instances_val2017.json',
    '--val-img', 'val2017/'
]


def ann_file(split):
    return osp.join(REAL_COCO, 'annotations', f'instances_{split}2017.json')


def load_json(split):
    with open(ann_file(split)) as f:
        return json.load(f)


def real_cfg(classes='from_file'):
    """The demo config pointed at the real images."""
    cfg = Config.fromfile(DEMO_CONFIG)
    return set_data_location(
        cfg,
        data_root=REAL_COCO,
        ann_files={
            s: f'annotations/instances_{s}2017.json'
            for s in ('train', 'val')
        },
        img_prefixes={s: f'{s}2017/'
                      for s in ('train', 'val')},
        classes=classes)


def build(split, classes='from_file', **changes):
    loader = real_cfg(classes)[f'{split}_dataloader']
    with LoggedWarnings() as logged:
        dataset = DATASETS.build(dict(loader.dataset, **changes))
    return dataset, logged.messages


def instances(dataset):
    return [
        inst for i in range(len(dataset))
        for inst in dataset.get_data_info(i)['instances']
    ]


@pytest.mark.parametrize('split', sorted(SPLITS))
def test_every_category_and_object(split):
    data = load_json(split)
    dataset, messages = build(split)
    assert messages == []
    names = tuple(c['name'] for c in data['categories'])
    assert dataset.metainfo['classes'] == names and len(names) == 80
    assert sum(' ' in n for n in names) == 15
    num_images, num_annotations = SPLITS[split]
    assert len(dataset) == num_images
    objects = instances(dataset)
    assert len(objects) == num_annotations == len(data['annotations'])
    crowd = [a for a in data['annotations'] if a['iscrowd']]
    assert sum(o['ignore_flag'] for o in objects) == len(crowd) > 0
    # labels follow the non-contiguous ids in file order
    label_of = {c['id']: i for i, c in enumerate(data['categories'])}
    assert sorted(o['bbox_label']
                  for o in objects) == sorted(label_of[a['category_id']]
                                              for a in data['annotations'])


@pytest.mark.parametrize('split', sorted(SPLITS))
def test_from_file_equals_mmdets_coco_classes(split):
    """On real COCO, 'from_file' and mmdet's own 80 COCO names (the default
    metainfo) give CocoDataset's data, item for item."""
    from_file, _ = build(split)
    plain, _ = build(split, classes=None, type='CocoDataset', metainfo=None)
    assert len(plain.cat_ids) == 80
    assert [from_file.get_data_info(i) for i in range(len(from_file))] == \
        [plain.get_data_info(i) for i in range(len(plain))]


def test_space_stripped_names_are_an_error():
    """The issue's case: names through --cfg-options lose their spaces;
    mmdet silently resolves 65 of 80 categories, mmgc refuses."""
    names = [
        c['name'].replace(' ', '') for c in load_json('val')['categories']
    ]
    with pytest.raises(ValueError) as info:
        build('val', classes=tuple(names))
    message = str(info.value)
    assert '15 of 80 configured class name(s) are not among the file\'s 80 ' \
        'category names: ' in message
    assert "'trafficlight' (closest: 'traffic light')" in message
    plain, _ = build('val', classes=tuple(names), type='CocoDataset')
    assert len(plain.cat_ids) == 65
    assert len(instances(plain)) == 567  # of 624


def test_crowd_objects_are_ignored_for_training():
    """After the train pipeline, crowd objects are ignored instances, not
    ground truth the detector must find."""
    data = load_json('train')
    crowd_images = {a['image_id'] for a in data['annotations'] if a['iscrowd']}
    dataset, _ = build('train')
    seen = 0
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        if info['img_id'] not in crowd_images:
            continue
        sample = dataset[index]['data_samples']
        anns = [
            a for a in data['annotations'] if a['image_id'] == info['img_id']
        ]
        assert len(sample.gt_instances) == sum(not a['iscrowd'] for a in anns)
        assert len(sample.ignored_instances) == sum(a['iscrowd'] for a in anns)
        seen += len(sample.ignored_instances)
    assert seen == sum(a['iscrowd'] for a in data['annotations']) == 8


def perfect_results(data, with_crowd_boxes):
    """Results equal to the non-crowd ground truth (score .9); optionally
    also a box on every crowd region (score .5)."""
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
    bbox, segm = [], []
    for ann in data['annotations']:
        if ann['iscrowd'] and not with_crowd_boxes:
            continue
        common = dict(
            image_id=ann['image_id'],
            category_id=ann['category_id'],
            score=0.5 if ann['iscrowd'] else 0.9)
        rle = coco.annToRLE(ann)
        bbox.append(dict(common, bbox=ann['bbox']))
        segm.append(
            dict(
                common,
                segmentation=dict(
                    size=rle['size'],
                    counts=rle['counts'].decode() if isinstance(
                        rle['counts'], bytes) else rle['counts'])))
    return bbox, segm


def evaluate(tmp_path, data, results, name, iou_types=('bbox', 'segm')):
    """CheckedCocoMetric (through eval_metric's JSON path) and pycocotools
    on the same results; they must agree."""
    ann = tmp_path / f'{name}.ann.json'
    ann.write_text(json.dumps(data))
    files, expected = [], {}
    for iou_type, content in zip(('bbox', 'segm'), results):
        if iou_type not in iou_types:
            continue
        files.append(str(tmp_path / f'{name}.{iou_type}.json'))
        with open(files[-1], 'w') as f:
            json.dump(content, f)
        expected.update(pycocotools_eval(str(ann), content, iou_type))
    metrics = evaluate_results_json(str(ann), files, classwise=False)
    assert_same(metrics, {
        k: v
        for k, v in expected.items() if not k.endswith('_precision')
    })
    return metrics


def test_crowd_is_ignored_in_evaluation(tmp_path):
    """Finding every non-crowd object scores 1.0 although the crowd regions
    are not found, and boxes (masks) on crowd regions are not false
    positives -- pycocotools' crowd handling, through CheckedCocoMetric.
    Counted as ordinary objects, the crowd regions lower the mAP."""
    data = load_json('val')
    metrics = evaluate(
        tmp_path,
        data,
        perfect_results(data, False),
        'crowd',
        iou_types=('bbox', ))
    assert metrics['coco/bbox_mAP'] == 1.0
    metrics = evaluate(tmp_path, data, perfect_results(data, True),
                       'crowd_boxes')
    assert metrics['coco/bbox_mAP'] == metrics['coco/segm_mAP'] == 1.0
    no_crowd = json.loads(json.dumps(data))
    for ann in no_crowd['annotations']:
        ann['iscrowd'] = 0
    metrics = evaluate(
        tmp_path,
        no_crowd,
        perfect_results(data, False),
        'no_crowd',
        iou_types=('bbox', ))
    assert metrics['coco/bbox_mAP'] < 1.0


def test_browse_dataset_draws_real_images(repo_root, tmp_path, monkeypatch):
    import cv2
    out_dir = tmp_path / 'browse'
    run_tool(repo_root, 'tools/browse_dataset.py', [
        DEMO_CONFIG, '--data-root', REAL_COCO, *LAYOUT, '--classes',
        'from_file', '--not-show', '--output-dir',
        str(out_dir), '--max-images', '3'
    ], monkeypatch)
    data = load_json('train')
    dataset, _ = build('train')
    for index in range(3):
        info = dataset.get_data_info(index)
        image = next(i for i in data['images'] if i['id'] == info['img_id'])
        drawn = cv2.imread(str(out_dir / image['file_name']))
        assert drawn is not None, image['file_name']
        # the train pipeline's keep-ratio resize to 256 (long side 256),
        # under a title strip and above the legend strip of the classes
        h, w = image['height'], image['width']
        scale = 256 / max(h, w)
        resized_h, resized_w = int(h * scale + 0.5), int(w * scale + 0.5)
        assert abs(drawn.shape[1] - resized_w) <= 1
        legend_height = drawn.shape[0] - TITLE_HEIGHT - resized_h
        assert legend_height >= 22 and (legend_height - 4) % 18 <= 1
    assert len(list(out_dir.iterdir())) == 3


@pytest.mark.slow
def test_train_test_and_re_evaluate_on_real_images(repo_root, tmp_path):
    """A tiny model (16-wide ResNet-50, 256 px) trains 2 iterations on the
    real photos through tools/train.py (data in one set of flags, classes
    from the file); the heads left at the demo's 5 classes fail first,
    naming 5 and 80. tools/test.py's metrics (with the per-class table)
    equal pycocotools on its saved predictions, and eval_metric.py
    re-evaluates them to the same numbers."""
    loaders = [
        'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False'
    ]
    train = [
        sys.executable, 'tools/train.py', DEMO_CONFIG, '--work-dir',
        str(tmp_path / 'work'), '--data-root', REAL_COCO, *LAYOUT, '--classes',
        'from_file', '--cfg-options', *loaders, 'val_cfg=None',
        'val_dataloader=None', 'val_evaluator=None', 'train_cfg.max_iters=2',
        'param_scheduler.0.end=2', 'default_hooks.checkpoint.interval=2',
        'default_hooks.logger.interval=1'
    ]
    result = subprocess.run(
        train,
        cwd=repo_root,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert 'model.roi_head.bbox_head.num_classes=5, model.roi_head.' \
        'mask_head.num_classes=5, but the train data set' in out, out[-3000:]
    assert 'has 80 classes' in out and 'Iter(train)' not in out

    heads = [
        'model.roi_head.bbox_head.num_classes=80',
        'model.roi_head.mask_head.num_classes=80'
    ]
    result = subprocess.run(
        train + heads,
        cwd=repo_root,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert 'Iter(train) [2/2]' in out
    ckpt = str(tmp_path / 'work' / 'iter_2.pth')

    metrics_file, pkl = tmp_path / 'metrics.json', tmp_path / 'preds.pkl'
    result = subprocess.run([
        sys.executable, 'tools/test.py', DEMO_CONFIG, ckpt, '--work-dir',
        str(tmp_path / 'work'), '--data-root', REAL_COCO, *LAYOUT, '--classes',
        'from_file', '--out',
        str(pkl), '--metrics-out',
        str(metrics_file), '--cfg-options', *loaders, *heads,
        'model.test_cfg.rcnn.score_thr=0.0',
        'model.test_cfg.rcnn.max_per_img=20'
    ],
                            cwd=repo_root,
                            env=tool_env(),
                            capture_output=True,
                            text=True,
                            timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert re.search(r'\| category +\| mAP +\| mAP_50 +\|', out), out[-3000:]
    assert re.search(r'\| traffic light +\| ', out)

    written = {
        k: math.nan if v is None else v
        for k, v in json.loads(metrics_file.read_text()).items()
    }
    with open(pkl, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 79
    data = load_json('val')
    bbox, segm = to_results_json(predictions,
                                 [c['id'] for c in data['categories']])
    assert len(bbox) > 0
    expected = {
        **pycocotools_eval(ann_file('val'), bbox, 'bbox'),
        **pycocotools_eval(ann_file('val'), segm, 'segm')
    }
    assert len(expected) == 2 * (6 + 80)
    assert_same(written, expected)
    assert math.isnan(written['coco/bbox_hot dog_precision'])  # no GT

    again = tmp_path / 'again.json'
    result = subprocess.run([
        sys.executable, 'tools/analysis_tools/eval_metric.py', DEMO_CONFIG,
        str(pkl), '--data-root', REAL_COCO, *LAYOUT, '--classes', 'from_file',
        '--metrics-out',
        str(again)
    ],
                            cwd=repo_root,
                            env=tool_env(),
                            capture_output=True,
                            text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(again.read_text()) == json.loads(
        metrics_file.read_text())
