"""Draw saved predictions (``tools/test.py --out preds.pkl``) against a data
set's ground truth, without running the model again."""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import mmcv
import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from pycocotools import mask as mask_utils

from ..utils.progress import ProgressBar
from .comparison_visualizer import DetComparisonVisualizer


def decode_mask(mask, height: int, width: int) -> np.ndarray:
    """A COCO mask (polygons, uncompressed or compressed RLE) as
    ``[H, W]`` bool."""
    if isinstance(mask, list):  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(mask, height, width))
    elif isinstance(mask.get('counts'), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(mask, height, width)
    else:
        rle = mask
    return mask_utils.decode(rle).astype(bool)


def gt_instances(data_info: dict, height: int, width: int) -> InstanceData:
    """The objects of a data set item (``get_data_info``) that count as
    ground truth (``ignore_flag`` 0: crowd regions are left out)."""
    objects = [
        obj for obj in data_info.get('instances', [])
        if not obj.get('ignore_flag', 0)
    ]
    instances = InstanceData()
    instances.bboxes = torch.tensor([obj['bbox'] for obj in objects],
                                    dtype=torch.float32).reshape(-1, 4)
    instances.labels = torch.tensor([obj['bbox_label'] for obj in objects],
                                    dtype=torch.long)
    if objects and all('mask' in obj for obj in objects):
        instances.masks = np.stack(
            [decode_mask(obj['mask'], height, width) for obj in objects])
    return instances


def pred_instances(result: dict, height: int, width: int) -> InstanceData:
    """The ``pred_instances`` of one ``DumpDetResults`` entry (masks as
    RLE) as tensors and ``[N, H, W]`` bool masks."""
    pred = result['pred_instances']
    instances = InstanceData()
    instances.bboxes = torch.as_tensor(pred['bboxes']).float().reshape(-1, 4)
    instances.scores = torch.as_tensor(pred['scores']).float()
    instances.labels = torch.as_tensor(pred['labels']).long()
    if 'masks' in pred:
        masks = pred['masks']
        if isinstance(masks, (list, tuple)):
            masks = (
                np.stack([decode_mask(m, height, width)
                          for m in masks]) if len(masks) else np.zeros(
                              (0, height, width), bool))
        instances.masks = np.asarray(masks).astype(bool)
    return instances


def draw_predictions(dataset,
                     results: Sequence[dict],
                     out_dir: str,
                     score_thr: float = 0.5,
                     max_images: Optional[int] = None,
                     progress: bool = True) -> List[str]:
    """One PNG per image: ground truth beside the predictions scoring at
    least ``score_thr`` (:class:`DetComparisonVisualizer`).

    Args:
        dataset: A built mmdet data set (``get_data_info``, ``metainfo``),
            e.g. the config's test set.
        results (Sequence[dict]): ``DumpDetResults`` entries (``img_id``,
            ``pred_instances``), e.g. ``tools/test.py --out``'s pickle.
        out_dir (str): Where the PNGs go (``<image name>.png``).
        score_thr (float): Lowest score drawn, in ``[0, 1]``.
        max_images (int, optional): Draw only the first images of the set.
        progress (bool): Show a ``draw`` progress bar.

    Returns:
        list[str]: The PNG files, in data set order.
    """
    if not 0 <= score_thr <= 1:
        raise ValueError(f'score_thr={score_thr} must be in [0, 1]')
    by_id: Dict[int, dict] = {r['img_id']: r for r in results}
    count = len(dataset) if max_images is None else min(
        len(dataset), max_images)
    visualizer = DetComparisonVisualizer(name='mmgc_prediction_drawing')
    visualizer.dataset_meta = dataset.metainfo
    os.makedirs(out_dir, exist_ok=True)
    bar = ProgressBar(count, 'draw', 'img') if progress else None
    files = []
    for index in range(count):
        info = dataset.get_data_info(index)
        if info['img_id'] not in by_id:
            raise KeyError(f'no prediction for image id {info["img_id"]} '
                           f'({info["img_path"]}) among {len(by_id)} '
                           'results: predictions of another data set?')
        image = mmcv.imread(info['img_path'], channel_order='rgb')
        height, width = image.shape[:2]
        sample = DetDataSample()
        sample.gt_instances = gt_instances(info, height, width)
        sample.pred_instances = pred_instances(by_id[info['img_id']], height,
                                               width)
        out_file = osp.join(
            out_dir,
            osp.splitext(osp.basename(info['img_path']))[0] + '.png')
        visualizer.add_datasample(
            osp.basename(info['img_path']),
            image,
            sample,
            pred_score_thr=score_thr,
            out_file=out_file)
        files.append(out_file)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.finish(f'score >= {score_thr:g}')
    return files
