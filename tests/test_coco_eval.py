"""COCO evaluation scripts, each against an independent pycocotools
evaluation: re-evaluating saved predictions (``eval_metric.py``), COCO
results JSON files against an annotation file, the per-class AP table and
the error-analysis PR curves.

Predictions are made from the tiny synthetic set's ground truth (jittered
boxes, dropped objects, wrong classes, false positives) in the format
``tools/test.py --out`` writes, so every metric lands strictly between 0
and 1.
"""
import contextlib
import copy
import io
import json
import math
import os.path as osp
import pickle
import runpy
import sys

import numpy as np
import pytest
import torch
from conftest import DEMO_CONFIG
from mmengine.config import Config
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mmgc.evaluation import (NothingEvaluatedError, evaluate_predictions,
                             evaluate_results_json, write_metrics)
from mmgc.evaluation.error_analysis import AREAS, CURVES, error_curves
from mmgc.utils import set_data_location

ITEMS = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')


def val_file(root):
    return osp.join(root, 'annotations', 'instances_val.json')


def make_predictions(ann_file, seed=0):
    """``DumpDetResults``-style predictions from the ground truth: each
    object kept with p=.85, box jittered, a quarter of the masks replaced
    by the box, 1 in 8 labelled with another class; plus 2 false
    positives per image."""
    rng = np.random.default_rng(seed)
    coco = COCO(ann_file)
    cat_ids = coco.getCatIds()
    predictions = []
    for img_id in coco.getImgIds():
        img = coco.imgs[img_id]
        h, w = img['height'], img['width']
        boxes, scores, labels, masks = [], [], [], []
        for ann in coco.imgToAnns[img_id]:
            if rng.random() > 0.85:
                continue
            x, y, bw, bh = ann['bbox']
            x1, y1 = x + rng.normal(0, 0.08) * bw, y + rng.normal(0, 0.08) * bh
            x2 = x1 + bw * (1 + rng.normal(0, 0.1))
            y2 = y1 + bh * (1 + rng.normal(0, 0.1))
            boxes.append([x1, y1, x2, y2])
            scores.append(rng.uniform(0.3, 1.0))
            label = cat_ids.index(ann['category_id'])
            if rng.random() < 0.125:
                label = (label + 1) % len(cat_ids)
            labels.append(label)
            if rng.random() < 0.25:
                box = np.zeros((h, w), np.uint8)  # [H, W]
                top, left = max(int(y1), 0), max(int(x1), 0)
                box[top:int(y2) + 1, left:int(x2) + 1] = 1
                masks.append(mask_utils.encode(np.asfortranarray(box)))
            else:
                masks.append(coco.annToRLE(ann))
        for _ in range(2):
            x1, y1 = rng.uniform(0, w - 40), rng.uniform(0, h - 40)
            boxes.append([x1, y1, x1 + 30, y1 + 30])
            scores.append(rng.uniform(0.0, 0.6))
            labels.append(int(rng.integers(len(cat_ids))))
            box = np.zeros((h, w), np.uint8)
            box[int(y1):int(y1) + 30, int(x1):int(x1) + 30] = 1
            masks.append(mask_utils.encode(np.asfortranarray(box)))
        predictions.append(
            dict(
                img_id=img_id,
                ori_shape=(h, w),
                img_shape=(h, w),
                pred_instances=dict(
                    bboxes=torch.tensor(boxes,
                                        dtype=torch.float32).reshape(-1, 4),
                    scores=torch.tensor(scores, dtype=torch.float32),
                    labels=torch.tensor(labels, dtype=torch.int64),
                    masks=masks)))
    return predictions


def to_results_json(predictions, cat_ids):
    """COCO results lists (bbox, segm) of the predictions, written
    independently of mmdet."""
    bbox, segm = [], []
    for pred in predictions:
        inst = pred['pred_instances']
        for box, score, label, mask in zip(inst['bboxes'].tolist(),
                                           inst['scores'].tolist(),
                                           inst['labels'].tolist(),
                                           inst['masks']):
            x1, y1, x2, y2 = box
            common = dict(
                image_id=pred['img_id'],
                category_id=cat_ids[label],
                score=score)
            bbox.append(dict(common, bbox=[x1, y1, x2 - x1, y2 - y1]))
            counts = mask['counts']
            segm.append(
                dict(
                    common,
                    segmentation=dict(
                        size=[int(v) for v in mask['size']],
                        counts=counts.decode()
                        if isinstance(counts, bytes) else counts)))
    return bbox, segm


def pycocotools_eval(ann_file, results, iou_type):
    """Plain COCOeval (default parameters) and its per-class AP."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann_file)  # loadRes adds keys to the results: a copy
        coco_eval = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), iou_type)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    expected = {
        f'coco/{iou_type}_{item}': round(coco_eval.stats[i], 3)
        for i, item in enumerate(ITEMS)
    }
    precision = coco_eval.eval['precision']  # [T, R, K, A, M]
    for k, cat_id in enumerate(gt.getCatIds()):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        expected[f'coco/{iou_type}_{gt.cats[cat_id]["name"]}_precision'] = \
            round(float(np.mean(values)), 3) if values.size else math.nan
    return expected


def assert_same(metrics, expected):
    assert set(expected) <= set(metrics), sorted(set(expected) - set(metrics))
    for key, value in expected.items():
        if math.isnan(value):
            assert math.isnan(metrics[key]), key
        else:
            assert metrics[key] == pytest.approx(value, abs=1e-12), key


@pytest.fixture(scope='module')
def predicted(tiny_coco):
    predictions = make_predictions(val_file(tiny_coco))
    cat_ids = COCO(val_file(tiny_coco)).getCatIds()
    bbox, segm = to_results_json(predictions, cat_ids)
    expected = {
        **pycocotools_eval(val_file(tiny_coco), bbox, 'bbox'),
        **pycocotools_eval(val_file(tiny_coco), segm, 'segm')
    }
    return predictions, bbox, segm, expected


def demo_cfg(root):
    cfg = Config.fromfile(DEMO_CONFIG)
    return set_data_location(cfg, data_root=root)


def test_expected_metrics_are_not_trivial(predicted):
    expected = predicted[3]
    for key in ('coco/bbox_mAP', 'coco/segm_mAP', 'coco/bbox_mAP_50'):
        assert 0.2 < expected[key] < 0.95, (key, expected[key])
    assert expected['coco/bbox_mAP'] != expected['coco/segm_mAP']


def test_saved_predictions_equal_pycocotools(tiny_coco, predicted):
    predictions, _, _, expected = predicted
    metrics = evaluate_predictions(demo_cfg(tiny_coco), predictions)
    assert_same(metrics, expected)


def test_results_json_equal_pycocotools(tiny_coco, predicted, tmp_path):
    _, bbox, segm, expected = predicted
    files = []
    for name, results in (('r.bbox.json', bbox), ('r.segm.json', segm)):
        files.append(str(tmp_path / name))
        with open(files[-1], 'w') as f:
            json.dump(results, f)
    metrics = evaluate_results_json(val_file(tiny_coco), files)
    assert_same(metrics, expected)
    # one type alone
    only_bbox = evaluate_results_json(
        val_file(tiny_coco), files[:1], classwise=False)
    assert set(only_bbox) == {f'coco/bbox_{i}' for i in ITEMS}


def test_predictions_missing_an_image_are_an_error(tiny_coco, predicted):
    predictions = predicted[0][1:]
    with pytest.raises(
            ValueError,
            match=r'preds\.pkl: predictions cover 5 '
            r'of the 6 images of the test data set \(.*instances_'
            r'val\.json\); missing image id\(s\) 1 '):
        evaluate_predictions(demo_cfg(tiny_coco), predictions, 'preds.pkl')


def test_predictions_of_another_data_set_are_an_error(tiny_coco, predicted):
    predictions = [dict(p) for p in predicted[0]]
    predictions[0]['img_id'] = 77
    with pytest.raises(
            ValueError,
            match=r'predictions of 1 image id\(s\) '
            r'that the test data set .* does not have: 77'):
        evaluate_predictions(demo_cfg(tiny_coco), predictions)


def test_no_detection_is_an_error_not_empty_metrics(tiny_coco, predicted,
                                                    tmp_path):
    empty = []
    for pred in predicted[0]:
        inst = pred['pred_instances']
        empty.append(
            dict(
                pred,
                pred_instances=dict(
                    bboxes=inst['bboxes'][:0],
                    scores=inst['scores'][:0],
                    labels=inst['labels'][:0],
                    masks=[])))
    with pytest.raises(
            NothingEvaluatedError, match=r'no detection on the 6 test images'):
        evaluate_predictions(demo_cfg(tiny_coco), empty)
    path = tmp_path / 'empty.bbox.json'
    path.write_text('[]')
    with pytest.raises(NothingEvaluatedError, match='no detection'):
        evaluate_results_json(val_file(tiny_coco), [str(path)])


@pytest.mark.parametrize('content,pattern', [
    ('{"a": 1}', r'expected a COCO results list'),
    ('[{"image_id": 1, "category_id": 9, "score": 1, "bbox": [0,0,1,1]}]',
     r'category id\(s\) \[9\] are not in .*instances_val\.json \(its ids: '
     r'\[1, 2, 3, 4, 5\]\)'),
    ('[{"image_id": 99, "category_id": 1, "score": 1, "bbox": [0,0,1,1]}]',
     r'results for 1 image id\(s\) that .*instances_val\.json does not '
     r'have: 99'),
    ('[{"image_id": 1, "category_id": 1, "score": 1, "bbox": [0,0,1,1]}, '
     '{"image_id": 1, "category_id": 1, "score": 1, "segmentation": []}]',
     r'some results have a "segmentation" and some not'),
])
def test_bad_results_json_is_named(tiny_coco, tmp_path, content, pattern):
    path = tmp_path / 'bad.json'
    path.write_text(content)
    with pytest.raises(ValueError, match=pattern):
        evaluate_results_json(val_file(tiny_coco), [str(path)])


def test_metrics_file_writes_nan_as_null(tmp_path):
    path = tmp_path / 'm' / 'metrics.json'
    write_metrics(
        {
            'coco/bbox_mAP': np.float64(0.5),
            'coco/bbox_x_precision': float('nan'),
            'k': 'text'
        }, str(path))
    assert json.loads(path.read_text()) == {
        'coco/bbox_mAP': 0.5,
        'coco/bbox_x_precision': None,
        'k': 'text'
    }


def run_tool(repo_root, script, argv, monkeypatch):
    """Run a tool's ``__main__`` in this process (no interpreter start);
    ``script`` is relative to ``tools/analysis_tools`` or to the root."""
    path = osp.join(repo_root, 'tools', 'analysis_tools', script)
    if not osp.isfile(path):
        path = osp.join(repo_root, script)
    monkeypatch.setattr(sys, 'argv', [path, *argv])
    runpy.run_path(path, run_name='__main__')


def test_eval_metric_cli_on_a_pickle_and_on_json(tiny_coco, predicted,
                                                 repo_root, tmp_path,
                                                 monkeypatch, capsys):
    predictions, bbox, _, expected = predicted
    pkl = tmp_path / 'preds.pkl'
    with open(pkl, 'wb') as f:
        pickle.dump(predictions, f)
    out = tmp_path / 'metrics.json'
    run_tool(repo_root, 'eval_metric.py', [
        DEMO_CONFIG,
        str(pkl), '--data-root', tiny_coco, '--metrics-out',
        str(out)
    ], monkeypatch)
    written = {
        k: math.nan if v is None else v
        for k, v in json.loads(out.read_text()).items()
    }
    assert_same(written, expected)
    printed = capsys.readouterr().out
    assert f"coco/bbox_mAP: {expected['coco/bbox_mAP']}\n" in printed
    assert f'metrics written to {out}' in printed

    bbox_file = tmp_path / 'r.bbox.json'
    bbox_file.write_text(json.dumps(bbox))
    run_tool(repo_root, 'eval_metric.py',
             ['--ann-file', val_file(tiny_coco),
              str(bbox_file)], monkeypatch)
    printed = capsys.readouterr().out
    assert f"coco/bbox_mAP: {expected['coco/bbox_mAP']}\n" in printed
    assert 'coco/segm_mAP' not in printed

    with pytest.raises(SystemExit) as info:
        run_tool(repo_root, 'eval_metric.py',
                 [DEMO_CONFIG, str(bbox_file)], monkeypatch)
    assert info.value.code == 2
    assert 'expected CONFIG PREDICTIONS.pkl' in capsys.readouterr().err

    empty = tmp_path / 'empty.bbox.json'
    empty.write_text('[]')
    with pytest.raises(SystemExit) as info:
        run_tool(repo_root, 'eval_metric.py',
                 ['--ann-file', val_file(tiny_coco),
                  str(empty)], monkeypatch)
    assert str(info.value.code).startswith(
        f'eval_metric.py: {empty}: no detection on the 6 test images')


# --------------------------------------------------------------------------
# Error analysis
# --------------------------------------------------------------------------
def quiet_eval(gt, results, iou_type, iou_thrs):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), iou_type)
        coco_eval.params.iouThrs = np.array(iou_thrs)
        coco_eval.params.maxDets = [100]
        coco_eval.evaluate()
        coco_eval.accumulate()
    return coco_eval.eval['precision'][..., 0]  # [T, R, K, A]


@pytest.mark.parametrize('iou_type', ['bbox', 'segm'])
def test_error_curves_c75_c50_loc_are_pycocotools(tiny_coco, predicted,
                                                  iou_type):
    _, bbox, segm, _ = predicted
    results = bbox if iou_type == 'bbox' else segm
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(val_file(tiny_coco))
        dt = gt.loadRes(copy.deepcopy(results))
    curves, rec_thrs = error_curves(gt, dt, iou_type)
    reference = quiet_eval(gt, results, iou_type, [0.75, 0.5, 0.1])
    reference[reference == -1] = 0
    assert curves.shape == (7, 101, 5, 4)
    np.testing.assert_array_equal(curves[:3], reference)
    np.testing.assert_array_equal(rec_thrs, np.linspace(0, 1, 101))
    np.testing.assert_array_equal(curves[5], curves[4] > 0)
    assert (curves[6] == 1).all()
    # lenient curves lie above the strict ones
    assert (np.diff(curves[:5], axis=0) >= 0).all()


def test_confusions_are_ignored_like_removed_detections(tiny_coco):
    """Class 'circle' detects half of its objects perfectly (score .5) and
    puts higher-scored boxes on every 'square' (same supercategory): C50
    suffers, Sim and Oth equal the curves of the detections without the
    confused boxes, computed by pycocotools."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(val_file(tiny_coco))
    circles = [a for a in gt.dataset['annotations'] if a['category_id'] == 1]
    squares = [a for a in gt.dataset['annotations'] if a['category_id'] == 2]
    assert len(circles) >= 2 and squares
    kept = [
        dict(image_id=a['image_id'], category_id=1, score=0.5, bbox=a['bbox'])
        for a in circles[::2]
    ]
    confused = [
        dict(image_id=a['image_id'], category_id=1, score=0.9, bbox=a['bbox'])
        for a in squares
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(kept + confused)
    curves, _ = error_curves(gt, dt, 'bbox')
    without = quiet_eval(gt, kept, 'bbox', [0.1])[0, :, 0, :]  # [R, A]
    without[without == -1] = 0
    np.testing.assert_array_equal(curves[3, :, 0], without)  # Sim
    np.testing.assert_array_equal(curves[4, :, 0], without)  # Oth
    assert curves[1, :, 0, 0].mean() < without[:, 0].mean()  # C50 suffers
    assert without[:, 0].mean() > 0.4


def test_coco_error_analysis_cli_writes_every_picture(tiny_coco, predicted,
                                                      repo_root, tmp_path,
                                                      monkeypatch):
    _, _, segm, _ = predicted
    results = tmp_path / 'r.segm.json'
    results.write_text(json.dumps(segm))
    out_dir = tmp_path / 'analysis'
    run_tool(repo_root, 'coco_error_analysis.py', [
        str(results),
        str(out_dir), '--ann',
        val_file(tiny_coco), '--types', 'bbox', 'segm', '--classes', 'circle'
    ], monkeypatch)
    import cv2
    for iou_type in ('bbox', 'segm'):
        for name in ('circle', 'allclass'):
            for area in AREAS:
                image = cv2.imread(
                    str(out_dir / iou_type / f'{iou_type}-{name}-{area}.png'))
                assert image is not None and image.shape == (450, 600, 3)
                assert image.std() > 10  # not blank
        assert not (out_dir / iou_type /
                    f'{iou_type}-square-allarea.png').exists()
    summary = json.loads((out_dir / 'error_analysis.json').read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(val_file(tiny_coco))
    reference = quiet_eval(gt, segm, 'segm', [0.75, 0.5])
    reference[reference == -1] = 0
    assert summary['segm']['circle']['allarea']['C50'] == pytest.approx(
        reference[1, :, 0, 0].mean(), abs=1e-12)
    assert summary['segm']['allclass']['small']['C75'] == pytest.approx(
        reference[0, :, :, 1].mean(), abs=1e-12)
    assert list(summary['bbox']['star']['large']) == list(CURVES)


def test_coco_error_analysis_names_results_of_unknown_images(
        tiny_coco, repo_root, tmp_path, monkeypatch):
    results = tmp_path / 'r.bbox.json'
    results.write_text(
        json.dumps(
            [dict(image_id=99, category_id=1, score=0.5, bbox=[0, 0, 9, 9])]))
    with pytest.raises(SystemExit) as info:
        run_tool(repo_root, 'coco_error_analysis.py', [
            str(results),
            str(tmp_path / 'out'), '--ann',
            val_file(tiny_coco)
        ], monkeypatch)
    assert str(info.value.code) == (
        f'coco_error_analysis.py: {results}: results for 1 image id(s) that '
        f'{val_file(tiny_coco)} does not have: 99')
    assert not (tmp_path / 'out').exists()
