"""The generator's context mode: class decided by a far-away scene frame;
the standard mode's files unchanged."""
import hashlib
import json
import pathlib

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mmgc.datasets.synthetic_coco import (CONTEXT_CLASSES, CONTEXT_SCENES,
                                          CONTEXT_SHAPES, FRAME_FRACTION,
                                          generate_synthetic_coco)

# sha256 over (relative path, bytes) of every file written by
# generate_synthetic_coco(num_train=3, num_val=2, image_size=64, seed=3),
# recorded with the generator as it was before the context mode existed:
# adding the mode must not change the standard data set.
STANDARD_DIGEST = (
    '9dfe8557f3788ab45bdb39b00e29649d6784a54a749e7640eaff654ea1372f30')


def tree_digest(root: pathlib.Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob('*')):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_standard_mode_files_unchanged(tmp_path):
    generate_synthetic_coco(
        tmp_path / 'a', num_train=3, num_val=2, image_size=64, seed=3)
    generate_synthetic_coco(
        tmp_path / 'b',
        num_train=3,
        num_val=2,
        image_size=64,
        seed=3,
        mode='standard')
    assert tree_digest(tmp_path / 'a') == STANDARD_DIGEST
    assert tree_digest(tmp_path / 'b') == STANDARD_DIGEST


@pytest.fixture(scope='module')
def context_set(tmp_path_factory):
    root = tmp_path_factory.mktemp('context')
    summary = generate_synthetic_coco(
        root, num_train=40, num_val=4, image_size=128, seed=5, mode='context')
    coco = json.loads(
        (root / 'annotations' / 'instances_train.json').read_text())
    return root, summary, coco


def test_context_class_is_shape_in_scene(context_set):
    _, summary, coco = context_set
    assert tuple(summary['classes']) == CONTEXT_CLASSES
    names = {c['id']: c['name'] for c in coco['categories']}
    scene_of = {img['id']: img['scene'] for img in coco['images']}
    assert set(scene_of.values()) == set(CONTEXT_SCENES)
    seen = set()
    for ann in coco['annotations']:
        shape, scene = names[ann['category_id']].rsplit('_', 1)
        # the class's scene is exactly the image's scene ...
        assert scene == scene_of[ann['image_id']]
        assert shape in CONTEXT_SHAPES
        seen.add((shape, scene))
    # ... and every shape occurs as two classes, one per scene
    assert seen == {(s, c) for s in CONTEXT_SHAPES for c in CONTEXT_SCENES}


def test_context_objects_keep_off_the_frame(context_set):
    root, _, coco = context_set
    frame = round(FRAME_FRACTION * 128)
    for ann in coco['annotations']:
        x, y, w, h = ann['bbox']
        assert min(x, y) > frame and max(x + w, y + h) < 128 - frame, ann
    # the frame is the only place where scenes differ systematically:
    # stripes are constant along a border, a checkerboard alternates
    import cv2
    for img in coco['images'][:10]:
        pixels = cv2.imread(str(root / 'train' / img['file_name']))
        row = pixels[1, frame:128 - frame].astype(float)  # inside top band
        varies = np.abs(np.diff(row, axis=0)).max() > 60
        assert varies == (img['scene'] == 'checkered'), img


def test_context_masks_match_boxes(context_set):
    _, _, coco = context_set
    for ann in coco['annotations'][:20]:
        mask = mask_utils.decode(ann['segmentation'])
        assert int(mask.sum()) == ann['area']


def test_context_is_seeded_and_marker_separates_modes(tmp_path):
    a = generate_synthetic_coco(
        tmp_path / 'a',
        num_train=2,
        num_val=1,
        image_size=64,
        seed=2,
        mode='context')
    b = generate_synthetic_coco(
        tmp_path / 'b',
        num_train=2,
        num_val=1,
        image_size=64,
        seed=2,
        mode='context')
    assert a['generated'] and b['generated']
    assert tree_digest(tmp_path / 'a') == tree_digest(tmp_path / 'b')
    # a standard request on a context set regenerates instead of reusing
    again = generate_synthetic_coco(
        tmp_path / 'a', num_train=2, num_val=1, image_size=64, seed=2)
    assert again['generated']
    assert tree_digest(tmp_path / 'a') != tree_digest(tmp_path / 'b')


def test_unknown_mode_is_named(tmp_path):
    with pytest.raises(ValueError, match="mode='scene'.*standard.*context"):
        generate_synthetic_coco(tmp_path, num_train=1, num_val=1, mode='scene')
    assert not any(tmp_path.iterdir())
