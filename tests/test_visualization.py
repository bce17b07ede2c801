"""Drawings: class colours, ground truth beside prediction at a score
threshold with a legend, saved predictions drawn, contact sheets."""
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from mmgc.visualization import (DetComparisonVisualizer, class_colours,
                                contact_sheet, draw_predictions, legend,
                                save_contact_sheet)
from mmgc.visualization.comparison_visualizer import (GAP, TITLE_HEIGHT,
                                                      _text_strip)

CLASSES = ('circle', 'square', 'triangle')


def test_class_colours_are_distinct_and_stable():
    colours = class_colours(5)
    assert len(set(colours)) == 5 and colours == class_colours(5)
    assert colours[0] == (31, 119, 180)  # tab10 blue
    palette = [(i, i, i) for i in range(30)]
    assert class_colours(30, palette) == palette
    hues = class_colours(40)  # no palette: evenly spaced hues
    assert len(set(hues)) == 40


def sample(height=64, width=80) -> DetDataSample:
    """One square of class 0 as ground truth; predictions of class 1
    (0.9) and class 2 (0.3)."""
    mask = np.zeros((height, width), bool)
    mask[10:30, 20:40] = True
    data = DetDataSample()
    data.gt_instances = InstanceData(
        bboxes=torch.tensor([[20., 10., 40., 30.]]),
        labels=torch.tensor([0]),
        masks=mask[None])
    data.pred_instances = InstanceData(
        bboxes=torch.tensor([[19., 9., 41., 31.], [-5., -5., 90., 70.]]),
        labels=torch.tensor([1, 2]),
        scores=torch.tensor([0.9, 0.3]),
        masks=np.stack([mask, np.ones_like(mask)]))
    return data


@pytest.mark.parametrize('thr,pred_classes', [(0.5, [1]), (0.2, [1, 2])])
def test_ground_truth_beside_prediction_with_a_legend(tmp_path, thr,
                                                      pred_classes):
    visualizer = DetComparisonVisualizer(name=f'test_cmp_{thr}')
    visualizer.dataset_meta = dict(classes=CLASSES)
    image = np.full((64, 80, 3), 128, np.uint8)
    out_file = str(tmp_path / 'drawing.png')
    visualizer.add_datasample(
        'x', image, sample(), out_file=out_file, pred_score_thr=thr)
    drawn = mmcv.imread(out_file, channel_order='rgb')
    colours = class_colours(len(CLASSES))
    present = sorted({0, *pred_classes})
    strip = legend(2 * 80 + GAP, [CLASSES[i] for i in present],
                   [colours[i] for i in present])
    # titles, the two panels side by side, then the legend of the classes
    # shown (class 2 only when its 0.3 prediction passes the threshold)
    assert drawn.shape == (TITLE_HEIGHT + 64 + strip.shape[0], 164, 3)
    np.testing.assert_array_equal(drawn[-strip.shape[0]:], strip)
    np.testing.assert_array_equal(
        drawn[:TITLE_HEIGHT, 84:],
        _text_strip(80, TITLE_HEIGHT,
                    f'prediction (score >= {thr:g}): {len(pred_classes)}'))
    np.testing.assert_array_equal(
        drawn[:TITLE_HEIGHT, :80],
        _text_strip(80, TITLE_HEIGHT, 'ground truth: 1 object'))
    # masks are tinted with their class colour: the square's inside in the
    # ground truth panel towards class 0, in the prediction towards class 1
    gt_inside = drawn[TITLE_HEIGHT + 15:TITLE_HEIGHT + 25, 25:35]
    pred_inside = drawn[TITLE_HEIGHT + 15:TITLE_HEIGHT + 25, 84 + 25:84 + 35]

    def closest(pixels):
        mean = pixels.reshape(-1, 3).mean(0)
        tinted = [0.55 * 128 + 0.45 * np.array(c) for c in colours]
        return int(np.argmin([np.abs(mean - t).sum() for t in tinted]))

    assert closest(gt_inside) == 0
    if thr == 0.5:
        assert closest(pred_inside) == 1
    # the untouched corner of the prediction panel: class 2's full-image
    # mask tints it only when drawn
    corner = drawn[TITLE_HEIGHT + 50:TITLE_HEIGHT + 60, 84 + 60:84 + 75]
    assert (np.abs(corner.astype(int) - 128).max() <= 2) == (thr == 0.5)


def test_contact_sheet_layout_and_errors():
    red = np.zeros((20, 40, 3), np.uint8)
    red[..., 2] = 255
    tall = np.full((40, 20, 3), 7, np.uint8)
    sheet = contact_sheet([red, tall, red], cols=2, tile_width=40, gap=6)
    # rows: [red (20 px), tall scaled to 40x80]; [red]
    assert sheet.shape == (6 + 80 + 6 + 20 + 6, 6 + 2 * (40 + 6), 3)
    np.testing.assert_array_equal(sheet[6:26, 6:46], red)
    np.testing.assert_array_equal(sheet[6:86, 52:92], 7)
    np.testing.assert_array_equal(sheet[92:112, 6:46], red)
    assert (sheet[92:112, 52:92] == 255).all()  # empty cell: background
    # no blowing up: tiles at most as wide as the widest image
    assert contact_sheet([red], tile_width=400, gap=6).shape == (32, 52, 3)
    with pytest.raises(ValueError, match='no images given'):
        contact_sheet([])
    with pytest.raises(ValueError, match='cols=0 must be >= 1'):
        contact_sheet([red], cols=0)
    with pytest.raises(ValueError, match='1 captions for 3 images'):
        contact_sheet([red, tall, red], captions=['a'])


def test_save_contact_sheet_captions_under_tiles(tmp_path):
    files = []
    for i in range(5):
        path = str(tmp_path / f'{i}.png')
        mmcv.imwrite(np.full((30, 30, 3), 40 * i, np.uint8), path)
        files.append(path)
    out = save_contact_sheet(
        files, str(tmp_path / 'sheet.png'), cols=4, tile_width=30)
    sheet = mmcv.imread(out)
    # 2 rows of (30 px tile + 16 px caption); 4 columns
    assert sheet.shape == (6 + 2 * (30 + 16 + 6), 6 + 4 * 36, 3)
    np.testing.assert_array_equal(sheet[6 + 52:6 + 52 + 30, 6:36], 160)


def test_draw_predictions_from_saved_results(tiny_coco, tmp_path):
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    dataset = DATASETS.build(
        dict(
            type='CheckedCocoDataset',
            data_root=tiny_coco,
            ann_file='annotations/instances_val.json',
            data_prefix=dict(img='val/'),
            test_mode=True,
            pipeline=[],
            metainfo=dict(
                classes=('circle', 'square', 'triangle', 'star', 'cross'))))
    results = []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        boxes = [obj['bbox'] for obj in info['instances']]
        results.append(
            dict(
                img_id=info['img_id'],
                pred_instances=dict(
                    bboxes=torch.tensor(boxes).reshape(-1, 4),
                    scores=torch.full((len(boxes), ), 0.9),
                    labels=torch.tensor(
                        [o['bbox_label'] for o in info['instances']]))))
    out_dir = str(tmp_path / 'drawings')
    files = draw_predictions(
        dataset, results, out_dir, 0.5, max_images=3, progress=False)
    assert [osp.basename(f)
            for f in files] == ['000000.png', '000001.png', '000002.png']
    width = mmcv.imread(files[0]).shape[1]
    assert width == 2 * dataset.get_data_info(0)['width'] + GAP
    with pytest.raises(KeyError, match='no prediction for image id 1 '):
        draw_predictions(dataset, results[1:], out_dir, progress=False)
    with pytest.raises(ValueError, match=r'score_thr=1.5 must be in \[0, 1\]'):
        draw_predictions(dataset, results, out_dir, 1.5, progress=False)


def test_mmdet_box_and_mask_types_draw_as_plain_arrays(tmp_path):
    """What ``tools/test.py --show-dir`` hands over (HorizontalBoxes,
    BitmapMasks, mask tensors) draws exactly as plain arrays."""
    from mmdet.structures.bbox import HorizontalBoxes
    from mmdet.structures.mask import BitmapMasks
    plain = sample()
    typed = sample()
    typed.gt_instances.bboxes = HorizontalBoxes(plain.gt_instances.bboxes)
    typed.gt_instances.masks = BitmapMasks(plain.gt_instances.masks, 64, 80)
    typed.pred_instances.masks = torch.from_numpy(plain.pred_instances.masks)
    image = np.full((64, 80, 3), 128, np.uint8)
    drawings = []
    for name, data in (('plain', plain), ('typed', typed)):
        visualizer = DetComparisonVisualizer(name=f'test_types_{name}')
        visualizer.dataset_meta = dict(classes=CLASSES)
        out_file = str(tmp_path / f'{name}.png')
        visualizer.add_datasample(name, image, data, out_file=out_file)
        drawings.append(mmcv.imread(out_file))
    np.testing.assert_array_equal(drawings[0], drawings[1])
