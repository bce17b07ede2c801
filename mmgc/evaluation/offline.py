"""Evaluate saved predictions without running the model again.

* :func:`evaluate_predictions`: the predictions ``tools/test.py --out``
  wrote (mmdet's ``DumpDetResults`` pickle) through the config's test data
  set and evaluator -- the numbers ``tools/test.py`` printed, without the
  model (MMDetection's ``tools/analysis_tools/eval_metric.py``).
* :func:`evaluate_results_json`: COCO results files (``[{"image_id",
  "category_id", "score", "bbox" | "segmentation"}, ...]``, e.g. from
  ``CocoMetric(outfile_prefix=...)`` or another code base) against any
  COCO annotation file, through the same ``CheckedCocoMetric``.

Both refuse input that would give a silently wrong mAP: predictions of
images the ground truth does not have, predictions that miss some of its
images (their objects would count as missed), categories it does not
define.
"""
import json
import os.path as osp
from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from mmengine.config import Config

from ..datasets.coco_checks import join_examples
from .checked_coco_metric import CheckedCocoMetric, enable_classwise
from .test_outcome import empty_test_reason


class NothingEvaluatedError(RuntimeError):
    """The predictions hold no detection (or the evaluators no metric)."""


def load_predictions(path: str) -> List[dict]:
    """Read a ``tools/test.py --out`` pickle.

    Args:
        path (str): The ``.pkl`` file.

    Returns:
        list[dict]: One data sample per image (``img_id``,
        ``pred_instances``, ``ori_shape``, ...).
    """
    import mmengine
    if not osp.isfile(path):
        raise FileNotFoundError(f'predictions file not found: {path!r}')
    try:
        predictions = mmengine.load(path, file_format='pkl')
    except Exception as e:  # unpickling errors have many types
        raise ValueError(f'{path}: not a pickle file of predictions '
                         f'({type(e).__name__}: {e})') from e
    if not isinstance(predictions, list) or not all(
            isinstance(p, dict) and 'img_id' in p and 'pred_instances' in p
            for p in predictions):
        found = type(predictions).__name__ if not isinstance(
            predictions, list) else 'a list whose items lack img_id / ' \
            'pred_instances'
        raise ValueError(
            f'{path}: expected the list of per-image predictions that '
            f'tools/test.py --out writes (dicts with img_id and '
            f'pred_instances); got {found}')
    return predictions


def check_coverage(pred_ids: Sequence[Any], img_ids: Sequence[Any],
                   source: str, truth: str) -> None:
    """Raise ``ValueError`` unless the predictions name every image of the
    ground truth exactly once.

    Args:
        pred_ids (Sequence): Image id of each prediction.
        img_ids (Sequence): Image ids of the ground truth.
        source (str): The predictions, for the message.
        truth (str): The ground truth, for the message.
    """
    known = set(img_ids)
    counts = defaultdict(int)
    for img_id in pred_ids:
        counts[img_id] += 1
    twice = [repr(i) for i, n in counts.items() if n > 1]
    unknown = [repr(i) for i in counts if i not in known]
    missing = [repr(i) for i in img_ids if i not in counts]
    if twice:
        raise ValueError(f'{source}: {len(twice)} image id(s) predicted '
                         f'more than once: {join_examples(twice)}')
    if unknown:
        raise ValueError(
            f'{source}: predictions of {len(unknown)} image id(s) that '
            f'{truth} does not have: {join_examples(unknown)}; were they '
            f'made on another data set?')
    if missing:
        raise ValueError(
            f'{source}: predictions cover {len(img_ids) - len(missing)} of '
            f'the {len(img_ids)} images of {truth}; missing image id(s) '
            f'{join_examples(missing)} (their objects would count as '
            f'missed). Predict the whole test set (tools/test.py --out)')


def evaluate_predictions(cfg: Config,
                         predictions: List[dict],
                         source: str = 'predictions',
                         classwise: bool = True) -> Dict[str, Any]:
    """Evaluate ``tools/test.py --out`` predictions with the config's test
    data set and evaluator.

    Args:
        cfg (Config): The config the predictions were made with (data
            location flags already applied).
        predictions (list[dict]): From :func:`load_predictions`.
        source (str): Their file, for messages.
        classwise (bool): Per-class AP of COCO metrics.

    Returns:
        dict: ``{'coco/bbox_mAP': ..., ...}`` as ``tools/test.py`` reports.

    Raises:
        NothingEvaluatedError: when there is no detection to evaluate.
    """
    from mmdet.registry import DATASETS
    from mmengine.evaluator import Evaluator
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    evaluator_cfg = cfg.test_evaluator
    if classwise:
        enable_classwise(evaluator_cfg)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    img_ids = [dataset.get_data_info(i)['img_id'] for i in range(len(dataset))]
    check_coverage([p['img_id'] for p in predictions], img_ids, source,
                   f'the test data set ({dataset.ann_file})')
    evaluator = Evaluator(evaluator_cfg)
    evaluator.dataset_meta = dataset.metainfo
    metrics = evaluator.offline_evaluate(predictions)
    reason = empty_test_reason(metrics, evaluator)
    if reason is not None:
        raise NothingEvaluatedError(f'{source}: {reason}')
    return metrics


def load_results_json(path: str) -> List[dict]:
    """Read and check a COCO results file."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'results file not found: {path!r}')
    try:
        with open(path) as f:
            results = json.load(f)
    except ValueError as e:
        raise ValueError(f'{path}: not valid JSON ({e})') from e
    keys = ('image_id', 'category_id', 'score')

    def is_result(r) -> bool:
        return (isinstance(r, dict) and all(k in r for k in keys)
                and ('bbox' in r or 'segmentation' in r))

    if not isinstance(results, list) or not all(map(is_result, results)):
        raise ValueError(
            f'{path}: expected a COCO results list: [{{"image_id", '
            f'"category_id", "score", "bbox" or "segmentation"}}, ...]')
    return results


def check_results(results: List[dict], ground_truth: dict, path: str,
                  ann_file: str) -> None:
    """Raise ``ValueError`` if COCO results name categories or images the
    ground truth does not define (pycocotools would drop them, or stop at
    a bare assertion).

    Args:
        results (list[dict]): From :func:`load_results_json`.
        ground_truth (dict): The parsed annotation file.
        path (str): The results file, for the message.
        ann_file (str): The annotation file, for the message.
    """
    cat_ids = [c['id'] for c in ground_truth['categories']]
    bad_cats = sorted({r['category_id'] for r in results} - set(cat_ids))
    if bad_cats:
        raise ValueError(f'{path}: category id(s) {bad_cats} are not in '
                         f'{ann_file} (its ids: {cat_ids})')
    image_ids = {img['id'] for img in ground_truth['images']}
    unknown = sorted({r['image_id'] for r in results} - image_ids, key=str)
    if unknown:
        raise ValueError(
            f'{path}: results for {len(unknown)} image id(s) that '
            f'{ann_file} does not have: '
            f'{join_examples([repr(i) for i in unknown])}')


def results_iou_type(results: List[dict], path: str) -> str:
    """``'segm'`` when every result has a ``segmentation``, ``'bbox'`` when
    every one has a ``bbox`` and none a segmentation."""
    if results and all('segmentation' in r for r in results):
        return 'segm'
    if all('bbox' in r and 'segmentation' not in r for r in results):
        return 'bbox'
    raise ValueError(f'{path}: some results have a "segmentation" and some '
                     f'not; give box and mask results as two files')


def evaluate_results_json(ann_file: str,
                          results_files: Sequence[str],
                          classwise: bool = True,
                          metric_cfg: Optional[dict] = None) -> Dict[str, Any]:
    """Evaluate COCO results files against a COCO annotation file.

    Args:
        ann_file (str): The ground truth (checked like the data sets').
        results_files (list[str]): One box and/or one mask results file.
        classwise (bool): Per-class AP.
        metric_cfg (dict, optional): Further ``CocoMetric`` arguments
            (e.g. ``proposal_nums``).

    Returns:
        dict: ``{'coco/bbox_mAP': ..., 'coco/segm_mAP': ...}``.
    """
    from pycocotools import mask as mask_utils
    metrics: Dict[str, Any] = {}
    seen = {}
    for path in results_files:
        results = load_results_json(path)
        iou_type = results_iou_type(results, path)
        if iou_type in seen:
            raise ValueError(f'{seen[iou_type]} and {path} are both '
                             f'{iou_type} results; give one file per type')
        seen[iou_type] = path
        metric = CheckedCocoMetric(
            ann_file=ann_file,
            metric=iou_type,
            classwise=classwise,
            **(metric_cfg or {}))
        metric.dataset_meta = dict(classes='from_file')
        coco = metric._coco_api
        check_results(results, coco.dataset, path, ann_file)
        cat_ids = coco.get_cat_ids()
        images = {img['id']: img for img in coco.dataset['images']}
        per_image = defaultdict(list)
        for r in results:
            per_image[r['image_id']].append(r)
        label = {cat_id: i for i, cat_id in enumerate(cat_ids)}
        pairs = []
        for img_id, img in images.items():  # images without results too
            found = per_image.get(img_id, [])
            boxes = [
                r['bbox'] if 'bbox' in r else mask_utils.toBbox(
                    r['segmentation']).tolist() for r in found
            ]
            xywh = np.array(boxes, dtype=np.float64).reshape(-1, 4)  # [N, 4]
            pred = dict(
                img_id=img_id,
                bboxes=np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]],
                                      axis=1),  # [N, 4] xyxy
                scores=np.array([r['score'] for r in found]),  # [N]
                labels=np.array([label[r['category_id']] for r in found],
                                dtype=np.int64))  # [N]
            if iou_type == 'segm':
                pred['masks'] = [r['segmentation'] for r in found]
            gt = dict(img_id=img_id, width=img['width'], height=img['height'])
            pairs.append((gt, pred))
        part = metric.compute_metrics(pairs)
        reason = empty_test_reason(part, dict(metrics=[metric]))
        if reason is not None:
            raise NothingEvaluatedError(f'{path}: {reason}')
        metrics.update({f'{metric.prefix}/{k}': v for k, v in part.items()})
    return metrics
