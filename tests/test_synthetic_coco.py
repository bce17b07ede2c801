"""Tests of the synthetic COCO shapes generator (fast: small data sets)."""
from __future__ import annotations
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mmgc.datasets import SYNTHETIC_CLASSES, generate_synthetic_coco
from mmgc.datasets.synthetic_coco import render_image

REPO_ROOT = Path(__file__).resolve().parents[1]
CLI_PATH = REPO_ROOT / 'tools' / 'dataset_converters' / \
    'generate_synthetic_coco.py'
SPLITS = ('train', 'val')


@pytest.fixture(scope='module')
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """A 60 + 10 image data set shared by the read-only tests."""
    out_dir = tmp_path_factory.mktemp('synthetic')
    return generate_synthetic_coco(
        out_dir, num_train=60, num_val=10, image_size=128, seed=0)


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the CLI script as a user does."""
    return subprocess.run(
        [sys.executable, str(CLI_PATH), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60)


def test_cocoapi_loads_and_annotations_are_consistent(dataset):
    for split in SPLITS:
        coco = COCO(dataset[f'{split}_ann_file'])
        image_ids = [img['id'] for img in coco.dataset['images']]
        assert len(image_ids) == len(set(image_ids)) == \
            dataset[f'num_{split}_images']
        ann_ids = [ann['id'] for ann in coco.dataset['annotations']]
        assert len(ann_ids) == len(set(ann_ids)) == \
            dataset[f'num_{split}_annotations'] > 0
        cat_ids = set(coco.getCatIds())
        assert [coco.cats[i]['name'] for i in sorted(cat_ids)] == \
            list(SYNTHETIC_CLASSES)
        for ann in coco.dataset['annotations']:
            assert ann['category_id'] in cat_ids
            assert ann['image_id'] in coco.imgs
            assert ann['iscrowd'] == 0
            assert isinstance(ann['segmentation']['counts'], str)
            mask = coco.annToMask(ann)  # (H, W) uint8
            ys, xs = np.nonzero(mask)
            tight = [
                xs.min(),
                ys.min(),
                xs.max() - xs.min() + 1,
                ys.max() - ys.min() + 1
            ]
            assert ann['bbox'] == [int(v) for v in tight]
            assert ann['area'] == int(mask.sum())
            assert ann['bbox'] == mask_utils.toBbox(
                ann['segmentation']).tolist()


def test_every_class_appears_in_train(dataset):
    coco = COCO(dataset['train_ann_file'])
    used = {ann['category_id'] for ann in coco.dataset['annotations']}
    assert used == set(coco.getCatIds())


def test_images_read_back_with_right_size(dataset):
    for split in SPLITS:
        coco = json.loads(Path(dataset[f'{split}_ann_file']).read_text())
        for img in coco['images'][:5]:
            path = Path(dataset[f'{split}_img_dir']) / img['file_name']
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            assert image.shape == (img['height'], img['width'], 3) == \
                (128, 128, 3)
            assert image.dtype == np.uint8


def test_deterministic_per_seed(tmp_path):
    kwargs = dict(num_train=4, num_val=2, image_size=96)
    first = generate_synthetic_coco(tmp_path / 'a', seed=3, **kwargs)
    second = generate_synthetic_coco(tmp_path / 'b', seed=3, **kwargs)
    other = generate_synthetic_coco(tmp_path / 'c', seed=4, **kwargs)
    for split in SPLITS:
        ann = f'{split}_ann_file'
        assert Path(first[ann]).read_bytes() == Path(second[ann]).read_bytes()
        assert Path(first[ann]).read_bytes() != Path(other[ann]).read_bytes()
        for png in sorted(Path(first[f'{split}_img_dir']).glob('*.png')):
            twin = Path(second[f'{split}_img_dir']) / png.name
            assert png.read_bytes() == twin.read_bytes()
    # train and val are drawn from different seeds
    assert (Path(first['train_img_dir']) / '000000.png').read_bytes() != \
        (Path(first['val_img_dir']) / '000000.png').read_bytes()


def test_occlusion_occurs_and_masks_are_visible_parts():
    occluded = 0
    for index in range(40):
        rng = np.random.default_rng([0, 0, index])
        image, instances = render_image(128, rng)
        assert image.shape == (128, 128, 3)
        for inst in instances:
            assert not (inst.visible_mask & ~inst.full_mask).any()
            assert inst.visible_area >= 0.35 * inst.full_area
            occluded += inst.visible_area < inst.full_area
        # visible masks of one image never overlap
        stacked = np.stack([inst.visible_mask for inst in instances])
        assert stacked.sum(axis=0).max() <= 1
    assert occluded > 0


def test_marker_reuses_and_overwrite_regenerates(tmp_path):
    kwargs = dict(num_train=3, num_val=2, image_size=64, seed=1)
    first = generate_synthetic_coco(tmp_path, **kwargs)
    assert first['generated'] and (tmp_path / '.complete').is_file()
    ann = Path(first['train_ann_file'])
    png = Path(first['train_img_dir']) / '000000.png'
    old = 1_000_000_000  # backdate so any rewrite is visible in mtime
    for path in (ann, png):
        os.utime(path, (old, old))

    again = generate_synthetic_coco(tmp_path, **kwargs)
    assert not again['generated']
    assert again['num_train_images'] == first['num_train_images']
    assert ann.stat().st_mtime == png.stat().st_mtime == old

    redone = generate_synthetic_coco(tmp_path, overwrite=True, **kwargs)
    assert redone['generated']
    assert ann.stat().st_mtime > old and png.stat().st_mtime > old

    # different parameters regenerate too (and drop surplus images)
    smaller = generate_synthetic_coco(tmp_path, **dict(kwargs, num_train=2))
    assert smaller['generated']
    assert sorted(p.name for p in Path(smaller['train_img_dir']).iterdir()) \
        == ['000000.png', '000001.png']


def test_interrupted_run_regenerates(tmp_path):
    kwargs = dict(num_train=2, num_val=1, image_size=64)
    generate_synthetic_coco(tmp_path, **kwargs)
    (tmp_path / '.complete').unlink()  # as if killed before the marker
    assert generate_synthetic_coco(tmp_path, **kwargs)['generated']


@pytest.mark.parametrize('name', ['num_train', 'num_val', 'image_size'])
def test_api_rejects_bad_values(tmp_path, name):
    with pytest.raises(ValueError, match=name):
        generate_synthetic_coco(tmp_path, **{name: 0})


def test_cli_rejects_zero_train(tmp_path):
    result = _run_cli('--num-train', '0', cwd=tmp_path)
    assert result.returncode == 2
    assert '--num-train' in result.stderr
    assert "'0'" in result.stderr
    assert not (tmp_path / 'data').exists()


def test_cli_generates_and_prints_one_line(tmp_path):
    result = _run_cli(
        '--out-dir',
        str(tmp_path / 'data'),
        '--num-train',
        '2',
        '--num-val',
        '1',
        '--image-size',
        '64',
        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('\n') == 1
    assert 'train 2 images' in result.stdout
    assert (tmp_path / 'data' / 'annotations' / 'instances_val.json').is_file()


def test_mmdet_coco_dataset_loads_all_instances(dataset):
    mmdet_datasets = pytest.importorskip('mmdet.datasets')
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    for split in SPLITS:
        coco_dataset = mmdet_datasets.CocoDataset(
            ann_file=dataset[f'{split}_ann_file'],
            data_prefix=dict(img=dataset[f'{split}_img_dir'] + '/'),
            metainfo=dict(classes=SYNTHETIC_CLASSES),
            pipeline=[],
            test_mode=False)
        infos = [
            coco_dataset.get_data_info(i) for i in range(len(coco_dataset))
        ]
        instances = [inst for info in infos for inst in info['instances']]
        assert len(coco_dataset) == dataset[f'num_{split}_images']
        assert len(instances) == dataset[f'num_{split}_annotations']
        assert not any(inst['ignore_flag'] for inst in instances)
        assert Path(infos[0]['img_path']).is_file()
