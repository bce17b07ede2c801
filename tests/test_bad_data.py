"""Bad data never gives a silently wrong mAP: every corruption of the tiny
synthetic set either raises an error naming the file / ids when the data
set is built (or, for an undecodable image, when it is loaded), or is
skipped with a logged warning naming the annotation ids.

The data sets are built from the demo config's dataloader entries (type
``CheckedCocoDataset``), pointed at a corrupted copy of ``tiny_coco``
(12 train / 6 val images of 256x256, 1-5 objects each).
"""
import copy
import json
import logging
import os
import os.path as osp
import re
import shutil
from typing import Callable, Dict, List, NamedTuple, Optional, Union

import pytest
from conftest import DEMO_CONFIG
from mmdet.registry import DATASETS
from mmengine.config import Config
from mmengine.logging import MMLogger

Facts = Dict[str, object]


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------
def ann_file(root: str, split: str) -> str:
    return osp.join(root, 'annotations', f'instances_{split}.json')


def edit_json(root: str, split: str, edit: Callable[[dict], Facts]) -> Facts:
    """Apply ``edit`` to a split's annotation file; return its facts."""
    with open(ann_file(root, split)) as f:
        data = json.load(f)
    facts = edit(data)
    with open(ann_file(root, split), 'w') as f:
        json.dump(data, f)
    return facts


def dataset_cfg(root: str, split: str) -> dict:
    """The demo config's data set entry for ``split``, rooted at ``root``."""
    cfg = Config.fromfile(DEMO_CONFIG)
    loader = cfg.train_dataloader if split == 'train' else cfg.val_dataloader
    ds_cfg = copy.deepcopy(loader.dataset.to_dict())
    ds_cfg['data_root'] = root.rstrip('/') + '/'
    return ds_cfg


class LoggedWarnings(logging.Handler):
    """Collects WARNING records of mmengine's current logger."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> 'LoggedWarnings':
        MMLogger.get_current_instance().addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        MMLogger.get_current_instance().removeHandler(self)


def build(root: str, split: str):
    with LoggedWarnings() as logged:
        dataset = DATASETS.build(dataset_cfg(root, split))
    return dataset, logged.messages


def first_ann(data: dict, index: int = 0) -> dict:
    return data['annotations'][index]


def image_of(data: dict, ann: dict) -> dict:
    return next(i for i in data['images'] if i['id'] == ann['image_id'])


# --------------------------------------------------------------------------
# Corruptions: each edits the copy at ``root`` and returns facts that the
# expected messages are formatted with.
# --------------------------------------------------------------------------
def missing_image(root: str) -> Facts:
    image = edit_json(root, 'train', lambda d: d['images'][2])
    os.remove(osp.join(root, 'train', image['file_name']))
    return dict(file=image['file_name'], image_id=image['id'])


def empty_image(root: str) -> Facts:
    image = edit_json(root, 'val', lambda d: d['images'][1])
    open(osp.join(root, 'val', image['file_name']), 'wb').close()
    return dict(file=image['file_name'], image_id=image['id'])


def corrupt_image(root: str) -> Facts:
    image = edit_json(root, 'val', lambda d: d['images'][3])
    with open(osp.join(root, 'val', image['file_name']), 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + b'not really an image' * 20)
    return dict(file=image['file_name'], image_id=image['id'])


def truncated_json(root: str) -> Facts:
    with open(ann_file(root, 'train')) as f:
        text = f.read()
    with open(ann_file(root, 'train'), 'w') as f:
        f.write(text[:len(text) // 2])
    return dict(file='instances_train.json')


def missing_json(root: str) -> Facts:
    os.remove(ann_file(root, 'val'))
    return dict(file='instances_val.json')


def not_a_coco_dict(root: str) -> Facts:
    with open(ann_file(root, 'train'), 'w') as f:
        json.dump([1, 2, 3], f)
    return dict(file='instances_train.json')


def no_images_list(root: str) -> Facts:
    edit_json(root, 'val', lambda d: d.pop('images') and {})
    return dict(file='instances_val.json')


def unknown_category(root: str, split: str = 'train') -> Facts:

    def edit(data):
        ann = first_ann(data, 4)
        ann['category_id'] = 9
        return dict(ann_id=ann['id'], image_id=ann['image_id'])

    return edit_json(root, split, edit)


def val_unknown_category(root: str) -> Facts:
    return unknown_category(root, 'val')


def duplicate_image_id(root: str) -> Facts:

    def edit(data):
        first, second = data['images'][0], data['images'][1]
        second['id'] = first['id']
        return dict(
            image_id=first['id'],
            file_a=first['file_name'],
            file_b=second['file_name'])

    return edit_json(root, 'val', edit)


def duplicate_ann_id(root: str) -> Facts:

    def edit(data):
        first_ann(data, 3)['id'] = first_ann(data, 0)['id']
        return dict(ann_id=first_ann(data, 0)['id'])

    return edit_json(root, 'train', edit)


def ann_of_unknown_image(root: str) -> Facts:

    def edit(data):
        ann = first_ann(data, 2)
        ann['image_id'] = 999
        return dict(ann_id=ann['id'])

    return edit_json(root, 'train', edit)


def nan_box(root: str) -> Facts:

    def edit(data):
        ann = first_ann(data, 1)
        ann['bbox'][2] = float('nan')
        return dict(ann_id=ann['id'])

    return edit_json(root, 'train', edit)


def box_outside(root: str) -> Facts:

    def edit(data):
        ann = first_ann(data, 0)
        image = image_of(data, ann)
        ann['bbox'] = [image['width'] + 5, 10, 20, 20]
        return dict(ann_id=ann['id'], image_id=image['id'])

    return edit_json(root, 'val', edit)


def box_partly_outside(root: str) -> Facts:

    def edit(data):
        ann = first_ann(data, 0)
        image = image_of(data, ann)
        x, y, w, h = ann['bbox']
        ann['bbox'] = [image['width'] - 10, y, 30, h]
        return dict(
            ann_id=ann['id'],
            image_id=image['id'],
            clipped=[image['width'] - 10, y, image['width'], y + h])

    return edit_json(root, 'train', edit)


def degenerate_box(root: str) -> Facts:

    def edit(data):
        ann = first_ann(data, 5)
        ann['bbox'][3] = 0.5
        return dict(ann_id=ann['id'], image_id=ann['image_id'])

    return edit_json(root, 'train', edit)


def empty_mask(root: str) -> Facts:

    def edit(data):
        ann = first_ann(data, 2)
        ann['segmentation'] = []
        return dict(ann_id=ann['id'], image_id=ann['image_id'])

    return edit_json(root, 'train', edit)


def flat_polygon(root: str) -> Facts:

    def edit(data):
        ann = first_ann(data, 1)
        ann['segmentation'] = [[10, 10, 20, 20, 30, 30]]  # collinear
        return dict(ann_id=ann['id'], image_id=ann['image_id'])

    return edit_json(root, 'val', edit)


def rle_of_wrong_size(root: str) -> Facts:

    def edit(data):
        ann = first_ann(data, 0)
        ann['segmentation']['size'] = [128, 128]
        return dict(ann_id=ann['id'], image_id=ann['image_id'])

    return edit_json(root, 'val', edit)


def unannotated_image(split: str) -> Callable[[str], Facts]:

    def corrupt(root: str) -> Facts:

        def edit(data):
            image_id = data['images'][0]['id']
            kept = [
                a for a in data['annotations'] if a['image_id'] != image_id
            ]
            removed = len(data['annotations']) - len(kept)
            data['annotations'] = kept
            return dict(image_id=image_id, removed=removed)

        return edit_json(root, split, edit)

    return corrupt


def all_annotations_degenerate(root: str) -> Facts:

    def edit(data):
        image_id = data['images'][0]['id']
        anns = [a for a in data['annotations'] if a['image_id'] == image_id]
        for ann in anns:
            ann['bbox'][2] = 0
        return dict(image_id=image_id, ann_id=anns[0]['id'], count=len(anns))

    return edit_json(root, 'train', edit)


class Case(NamedTuple):
    name: str
    split: str
    corrupt: Callable[[str], Facts]
    #: raised by the build (or, with ``load``, by loading the image)
    error: Optional[type]
    #: regexes (formatted with the facts) the error or warning must match
    patterns: List[str]
    #: expected len(dataset) when it builds
    length: Optional[int] = None
    #: instances lost when it builds: a number or the name of a fact
    lost: Union[int, str] = 0
    load: bool = False


SKIP = r'{count} of \d+ annotations: '
CASES = [
    Case('missing-image', 'train', missing_image, FileNotFoundError, [
        r'1 of 12 images of .*instances_train\.json cannot be read',
        r'train/{file} \(image id {image_id}\): missing'
    ]),
    Case('empty-image-file', 'val', empty_image, FileNotFoundError,
         [r'val/{file} \(image id {image_id}\): empty \(0 bytes\)']),
    Case(
        'corrupt-image',
        'val',
        corrupt_image,
        AssertionError, [r'failed to load image: .*val/{file}$'],
        load=True),
    Case('truncated-json', 'train', truncated_json, ValueError, [
        r'annotations/{file}: not valid JSON: .* \(line 1, column \d+, '
        r'char \d+\)$'
    ]),
    Case('missing-json', 'val', missing_json, FileNotFoundError,
         [r'No such file or directory: .*annotations/{file}']),
    Case('json-not-a-coco-dict', 'train', not_a_coco_dict, ValueError, [
        r'{file}: the top level must be a JSON object with "images", '
        r'"annotations" and "categories"; got a list'
    ]),
    Case('json-without-images', 'val', no_images_list, ValueError,
         [r'{file}: no "images" list']),
    Case('unknown-category', 'train', unknown_category, ValueError, [
        r"1 annotation\(s\) with a category id not in \"categories\": "
        r'annotation id {ann_id} \(image id {image_id}\) has '
        r'category_id 9; allowed category ids: \[1, 2, 3, 4, 5\]'
    ]),
    Case('duplicate-image-id', 'val', duplicate_image_id, ValueError, [
        r"1 duplicate image id\(s\): id {image_id} x2 \('{file_a}', "
        r"'{file_b}'\); image ids must be unique"
    ]),
    Case('duplicate-annotation-id', 'train', duplicate_ann_id, ValueError,
         [r'1 duplicate annotation id\(s\): id {ann_id} x2 ']),
    Case('annotation-of-unknown-image', 'train', ann_of_unknown_image,
         ValueError, [
             r'annotation id {ann_id} has image_id 999; every image_id must '
             r'be the id of an entry of "images"'
         ]),
    Case('nan-box', 'train', nan_box, ValueError, [
        r'1 malformed entry/entries of "annotations": '
        r'annotations\[1\] \(id {ann_id}\) has bbox=\[.*nan.*\], expected '
        r'\[x, y, w, h\] of finite numbers'
    ]),
    Case(
        'box-outside-image',
        'val',
        box_outside,
        None, [
            SKIP.format(count=1) + r'box outside its image \(ann id {ann_id} '
            r'of image {image_id}\)'
        ],
        length=6,
        lost=1),
    Case(
        'box-partly-outside-image',
        'train',
        box_partly_outside,
        None, [
            SKIP.format(count=1) + r'box partly outside its image, clipped to '
            r'it \(ann id {ann_id} of image {image_id}\)'
        ],
        length=12),
    Case(
        'degenerate-box',
        'train',
        degenerate_box,
        None, [
            SKIP.format(count=1) + r'degenerate box \(w or h < 1, or area <= '
            r'0\) \(ann id {ann_id} of image {image_id}\)'
        ],
        length=12,
        lost=1),
    Case(
        'empty-mask',
        'train',
        empty_mask,
        None, [
            SKIP.format(count=1) + r'empty or degenerate mask .*\(ann id '
            r'{ann_id} of image {image_id}\)'
        ],
        length=12,
        lost=1),
    Case(
        'zero-area-polygon',
        'val',
        flat_polygon,
        None, [
            SKIP.format(count=1) + r'empty or degenerate mask .*\(ann id '
            r'{ann_id} of image {image_id}\)'
        ],
        length=6,
        lost=1),
    Case(
        'rle-of-wrong-size',
        'val',
        rle_of_wrong_size,
        None, [
            r'RLE size not the image size\) \(ann id {ann_id} of image '
            r'{image_id}\)'
        ],
        length=6,
        lost=1),
    # kept in val (it counts for mAP), dropped for training (filter_empty_gt)
    Case(
        'unannotated-image-train',
        'train',
        unannotated_image('train'),
        None, [],
        length=11,
        lost='removed'),
    Case(
        'unannotated-image-val',
        'val',
        unannotated_image('val'),
        None, [],
        length=6,
        lost='removed'),
    Case(
        'all-annotations-of-an-image-degenerate',
        'train',
        all_annotations_degenerate,
        None, [
            SKIP.format(count='{count}') + r'degenerate box .*\(ann id '
            r'{ann_id} of image {image_id}[;)]'
        ],
        length=11,
        lost='count'),
]


def count_instances(dataset) -> int:
    return sum(
        len(dataset.get_data_info(i)['instances'])
        for i in range(len(dataset)))


@pytest.fixture(scope='module')
def clean_counts(tiny_coco) -> Dict[str, int]:
    """Instances and images of the clean tiny set, per split."""
    counts = {}
    for split in ('train', 'val'):
        dataset, messages = build(tiny_coco, split)
        assert messages == []
        counts[split] = count_instances(dataset)
    return counts


@pytest.mark.parametrize('case', CASES, ids=[c.name for c in CASES])
def test_bad_data_raises_or_is_skipped_with_a_warning(case, tiny_coco,
                                                      clean_counts, tmp_path):
    root = str(tmp_path / 'data')
    shutil.copytree(tiny_coco, root)
    facts = case.corrupt(root) or {}
    patterns = [p.format(**facts) for p in case.patterns]
    if case.error is not None and not case.load:
        with pytest.raises(case.error) as info:
            build(root, case.split)
        for pattern in patterns:
            assert re.search(pattern,
                             str(info.value)), (pattern, str(info.value))
        return
    dataset, messages = build(root, case.split)
    if case.load:
        index = next(
            i for i in range(len(dataset))
            if dataset.get_data_info(i)['img_id'] == facts['image_id'])
        with pytest.raises(case.error) as info:
            dataset[index]
        for pattern in patterns:
            assert re.search(pattern,
                             str(info.value)), (pattern, str(info.value))
        return
    assert len(dataset) == case.length
    if not patterns:
        assert messages == []
    else:
        assert len(messages) == 1, messages  # one summary warning
        for pattern in patterns:
            assert re.search(pattern, messages[0]), (pattern, messages[0])
    lost = facts[case.lost] if isinstance(case.lost, str) else case.lost
    assert count_instances(dataset) == clean_counts[case.split] - lost
    if 'clipped' in facts:
        boxes = [
            inst['bbox'] for i in range(len(dataset))
            for inst in dataset.get_data_info(i)['instances']
            if dataset.get_data_info(i)['img_id'] == facts['image_id']
        ]
        assert facts['clipped'] in boxes


def test_demo_config_uses_the_checked_dataset():
    cfg = Config.fromfile(DEMO_CONFIG)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.type == 'CheckedCocoDataset'


@pytest.mark.parametrize('split', ['train', 'val'])
def test_clean_data_list_is_coco_datasets(tiny_coco, split):
    """On clean data the checks change nothing: same data_list as mmdet's
    CocoDataset (so the demo's results do not change), no warning."""
    checked, messages = build(tiny_coco, split)
    plain = DATASETS.build(
        dict(dataset_cfg(tiny_coco, split), type='CocoDataset'))
    assert type(checked).__name__ == 'CheckedCocoDataset'
    assert messages == []
    assert len(checked) == len(plain) == {'train': 12, 'val': 6}[split]
    assert [checked.get_data_info(i) for i in range(len(checked))] == \
        [plain.get_data_info(i) for i in range(len(plain))]


@pytest.mark.parametrize(
    'corrupt,lost_images,lost_instances',
    [
        (duplicate_image_id, 1, 0),  # pycocotools keeps one image of the two
        (unknown_category, 0, 1),  # CocoDataset drops the annotation
    ])
def test_mmdet_coco_dataset_is_silent_on_these(tiny_coco, tmp_path, corrupt,
                                               lost_images, lost_instances):
    """Why the checks exist: mmdet's CocoDataset builds from these files
    without a word, with images or objects missing."""
    root = str(tmp_path / 'data')
    shutil.copytree(tiny_coco, root)
    split = 'val' if corrupt is duplicate_image_id else 'train'
    corrupt(root)
    with LoggedWarnings() as logged:
        plain = DATASETS.build(
            dict(dataset_cfg(root, split), type='CocoDataset'))
    clean = DATASETS.build(
        dict(dataset_cfg(tiny_coco, split), type='CocoDataset'))
    assert logged.messages == []
    assert len(clean) - len(plain) == lost_images
    if lost_instances:
        assert count_instances(clean) - count_instances(plain) == \
            lost_instances


# --------------------------------------------------------------------------
# The evaluator's ground truth file
# --------------------------------------------------------------------------
def evaluator_cfg(root: str) -> dict:
    """The demo config's val evaluator, reading ``root``'s val file."""
    cfg = Config.fromfile(DEMO_CONFIG)
    return dict(cfg.val_evaluator.to_dict(), ann_file=ann_file(root, 'val'))


@pytest.mark.parametrize('corrupt,pattern', [
    (duplicate_image_id,
     r"instances_val\.json: 1 duplicate image id\(s\): id {image_id} x2 "
     r"\('{file_a}', '{file_b}'\); image ids must be unique"),
    (val_unknown_category,
     r'instances_val\.json: 1 annotation\(s\) with a category id not in '
     r'"categories": annotation id {ann_id} \(image id {image_id}\) has '
     r'category_id 9; allowed category ids: \[1, 2, 3, 4, 5\]'),
])
def test_evaluator_checks_its_ground_truth_file(tiny_coco, tmp_path, corrupt,
                                                pattern):
    """The demo's CheckedCocoMetric refuses a broken val file where mmdet's
    CocoMetric (pycocotools) would evaluate against it without a word."""
    from mmdet.registry import METRICS
    root = str(tmp_path / 'data')
    shutil.copytree(tiny_coco, root)
    facts = corrupt(root)
    cfg = evaluator_cfg(root)
    assert cfg['type'] == 'CheckedCocoMetric'
    with pytest.raises(ValueError) as info:
        METRICS.build(cfg)
    assert re.search(pattern.format(**facts), str(info.value)), \
        str(info.value)
    plain = METRICS.build(dict(cfg, type='CocoMetric'))  # silent
    assert plain._coco_api is not None


def test_evaluator_on_clean_file_is_coco_metrics(tiny_coco):
    from mmdet.registry import METRICS
    cfg = evaluator_cfg(tiny_coco)
    checked = METRICS.build(cfg)
    plain = METRICS.build(dict(cfg, type='CocoMetric'))
    assert type(checked).__name__ == 'CheckedCocoMetric'
    assert checked._coco_api.dataset == plain._coco_api.dataset
    assert checked._coco_api.getImgIds() == plain._coco_api.getImgIds()
