"""Class lists cannot silently drop data: the configured classes of
``CheckedCocoDataset`` / ``CheckedCocoMetric`` against the file's
categories, ``classes='from_file'``, and ``--classes`` keeping spaces.

The files are copies of ``tiny_coco`` (5 categories) with one category
renamed to a COCO name with a space.
"""
import argparse
import copy
import json
import re
import shutil

import pytest
from conftest import DEMO_CONFIG
from mmdet.registry import DATASETS, METRICS
from mmengine.config import Config, DictAction
from test_bad_data import LoggedWarnings, ann_file, dataset_cfg

from mmgc.datasets.class_checks import resolve_classes
from mmgc.utils import add_data_args, apply_data_args

#: tiny_coco's categories after :func:`spaced_copy` (file order).
SPACED = ('circle', 'traffic light', 'triangle', 'star', 'cross')


@pytest.fixture
def spaced(tiny_coco, tmp_path) -> str:
    """A copy of tiny_coco whose 'square' is called 'traffic light'."""
    root = str(tmp_path / 'data')
    shutil.copytree(tiny_coco, root)
    for split in ('train', 'val'):
        with open(ann_file(root, split)) as f:
            data = json.load(f)
        for category in data['categories']:
            if category['name'] == 'square':
                category['name'] = 'traffic light'
        with open(ann_file(root, split), 'w') as f:
            json.dump(data, f)
    return root


def build(root, split, classes):
    cfg = dataset_cfg(root, split)
    cfg['metainfo'] = dict(classes=classes)
    with LoggedWarnings() as logged:
        dataset = DATASETS.build(cfg)
    return dataset, logged.messages


def instances(dataset):
    return [
        inst for i in range(len(dataset))
        for inst in dataset.get_data_info(i)['instances']
    ]


def test_cfg_options_delete_spaces_in_class_names():
    """Why --classes exists: mmengine's DictAction deletes every space of a
    value, quoted or not, in a list or alone."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    for value in ("['traffic light','hot dog']", '"traffic light",hot dog',
                  "('traffic light', 'hot dog')"):
        args = parser.parse_args(['--cfg-options', f'classes={value}'])
        assert list(args.cfg_options['classes']) == ['trafficlight', 'hotdog']
    args = parser.parse_args(['--cfg-options', "x='traffic light'"])
    assert args.cfg_options['x'] == 'trafficlight'
    # the documented --cfg-options form of 'from_file' survives
    key = 'train_dataloader.dataset.metainfo.classes'
    args = parser.parse_args(['--cfg-options', f'{key}=from_file'])
    assert args.cfg_options[key] == 'from_file'


def test_space_stripped_name_is_an_error_naming_the_closest(spaced):
    stripped = tuple(n.replace(' ', '') for n in SPACED)
    with pytest.raises(ValueError) as info:
        build(spaced, 'val', stripped)
    message = str(info.value)
    assert re.search(
        r"instances_val\.json: 1 of 5 configured class name\(s\) are not "
        r"among the file's 5 category names: 'trafficlight' \(closest: "
        r"'traffic light'\)\. ", message), message
    assert "classes='from_file'" in message and '--classes' in message


def test_unknown_name_without_close_match_says_so(spaced):
    with pytest.raises(ValueError, match=r"'zebra' \(no close name\)"):
        build(spaced, 'train', ('circle', 'zebra'))


def test_mmdet_coco_dataset_drops_the_class_silently(spaced):
    """The bug the check prevents: mmdet's CocoDataset resolves 4 of the 5
    names and loses the objects of the fifth without a word."""
    stripped = tuple(n.replace(' ', '') for n in SPACED)
    cfg = dict(
        dataset_cfg(spaced, 'val'),
        type='CocoDataset',
        metainfo=dict(classes=stripped))
    with LoggedWarnings() as logged:
        plain = DATASETS.build(cfg)
    full, _ = build(spaced, 'val', SPACED)
    assert logged.messages == []
    assert len(plain.cat_ids) == 4
    assert len(instances(plain)) < len(instances(full))


def test_from_file_takes_every_category_in_file_order(spaced):
    dataset, messages = build(spaced, 'val', 'from_file')
    explicit, _ = build(spaced, 'val', SPACED)
    assert messages == []
    assert dataset.metainfo['classes'] == SPACED
    with open(ann_file(spaced, 'val')) as f:
        data = json.load(f)
    assert len(instances(dataset)) == len(data['annotations'])
    assert [dataset.get_data_info(i) for i in range(len(dataset))] == \
        [explicit.get_data_info(i) for i in range(len(explicit))]


def test_left_out_categories_warn_with_objects_and_images(spaced):
    """A subset is a normal MMDetection use: allowed, with one warning that
    counts what is left out (independently counted here)."""
    with open(ann_file(spaced, 'train')) as f:
        data = json.load(f)
    kept_ids = {1, 3}  # circle, triangle
    per_image = {}
    for ann in data['annotations']:
        kept, out = per_image.get(ann['image_id'], (0, 0))
        per_image[ann['image_id']] = ((kept + 1, out) if ann['category_id']
                                      in kept_ids else (kept, out + 1))
    objects = sum(out for _, out in per_image.values())
    images = sum(1 for _, out in per_image.values() if out)
    emptied = sum(1 for kept, out in per_image.values() if out and not kept)
    dataset, messages = build(spaced, 'train', ('circle', 'triangle'))
    assert len(messages) == 1, messages
    assert re.search(
        rf"instances_train\.json: 3 of 5 categories of the file are not in "
        rf"the configured classes: 'traffic light', 'star', 'cross'; their "
        rf"{objects} of {len(data['annotations'])} objects \(in {images} "
        rf"images, {emptied} of which have no other object\) are left out\. "
        rf"metainfo=dict\(classes='from_file'\) uses every category",
        messages[0]), messages[0]
    assert len(instances(dataset)) == len(data['annotations']) - objects
    assert len(dataset) == 12 - emptied  # filter_empty_gt for training


def test_classes_out_of_file_order_are_an_error(spaced):
    """mmdet numbers labels in the file's order whatever the configured
    order, so ('triangle', 'circle') would call circles triangles."""
    with pytest.raises(ValueError) as info:
        build(spaced, 'val', ('triangle', 'circle'))
    assert "Use classes=('circle', 'triangle')" in str(info.value)


@pytest.mark.parametrize('classes,pattern', [
    (('circle', 'circle'), r"class name\(s\) given more than once: "
     r"'circle'"),
    ('circle', r"classes='circle': expected a tuple of class names, "
     r"'from_file' \(the file's 5 category names\) or a text file of "
     r"names, one a line \(mmengine reads it; no such file\)"),
])
def test_bad_class_values_are_named(spaced, classes, pattern):
    with pytest.raises(ValueError, match=pattern):
        build(spaced, 'val', classes)


def test_duplicate_category_names_in_the_file_are_an_error(spaced):
    with open(ann_file(spaced, 'val')) as f:
        data = json.load(f)
    data['categories'][3]['name'] = 'circle'
    with open(ann_file(spaced, 'val'), 'w') as f:
        json.dump(data, f)
    with pytest.raises(
            ValueError,
            match=r"1 category name\(s\) used by "
            r"several categories: 'circle' \(ids \[1, 4\]\)"):
        build(spaced, 'val', 'from_file')


# --------------------------------------------------------------------------
# The evaluator
# --------------------------------------------------------------------------
def metric(root):
    cfg = Config.fromfile(DEMO_CONFIG).val_evaluator.to_dict()
    return METRICS.build(dict(cfg, ann_file=ann_file(root, 'val')))


def test_metric_checks_the_data_sets_classes(spaced):
    evaluator = metric(spaced)
    with pytest.raises(
            ValueError, match=r"'trafficlight' \(closest: "
            r"'traffic light'\)"):
        evaluator.dataset_meta = dict(
            classes=tuple(n.replace(' ', '') for n in SPACED))
    evaluator.dataset_meta = dict(classes='from_file', palette='x')
    assert evaluator.dataset_meta == dict(classes=SPACED, palette='x')
    with LoggedWarnings() as logged:
        evaluator.dataset_meta = dict(classes=('circle', 'star'))
    assert len(logged.messages) == 1
    assert re.search(
        r"3 of 5 categories of the file are not in the "
        r"configured classes: 'traffic light', 'triangle', "
        r"'cross'; their \d+ of \d+ objects .* -- not "
        r"evaluated", logged.messages[0]), logged.messages[0]


def test_metric_meta_is_a_copy(spaced):
    meta = dict(classes='from_file')
    metric(spaced).dataset_meta = meta
    assert meta == dict(classes='from_file')


# --------------------------------------------------------------------------
# --classes on the command line
# --------------------------------------------------------------------------
def parse(argv):
    parser = argparse.ArgumentParser()
    add_data_args(parser)
    return parser.parse_args(argv)


def test_classes_flag_keeps_spaces_and_reaches_every_data_set():
    cfg = Config.fromfile(DEMO_CONFIG)
    apply_data_args(cfg,
                    parse(['--classes', 'person', 'traffic light', 'hot dog']))
    for split in ('train', 'val', 'test'):
        assert cfg[f'{split}_dataloader'].dataset.metainfo.classes == \
            ('person', 'traffic light', 'hot dog')


def test_classes_flag_from_file():
    cfg = Config.fromfile(DEMO_CONFIG)
    apply_data_args(cfg, parse(['--classes', 'from_file']))
    assert cfg.test_dataloader.dataset.metainfo.classes == 'from_file'
    with pytest.raises(
            ValueError, match='--classes from_file takes no '
            'other name'):
        apply_data_args(cfg, parse(['--classes', 'from_file', 'person']))


def test_resolve_classes_returns_left_out_categories():
    categories = [
        dict(id=i, name=n) for i, n in ((1, 'a b'), (5, 'c'), (9, 'd'))
    ]
    classes, left_out = resolve_classes(['a b', 'd'], categories, 'f.json')
    assert classes == ('a b', 'd')
    assert left_out == [dict(id=5, name='c')]
    assert resolve_classes('from_file', copy.deepcopy(categories),
                           'f.json') == (('a b', 'c', 'd'), [])


def test_a_text_file_of_class_names_is_checked_too(spaced, tmp_path):
    """mmengine reads ``classes='names.txt'`` (one name a line) before the
    check: the names, spaces kept, are checked like a tuple."""
    names = tmp_path / 'names.txt'
    names.write_text('circle\ntraffic light\n')
    dataset, messages = build(spaced, 'val', str(names))
    assert dataset.metainfo['classes'] == ('circle', 'traffic light')
    assert len(messages) == 1 and '3 of 5 categories' in messages[0]
    names.write_text('circle\ntrafficlight\n')
    with pytest.raises(
            ValueError, match=r"'trafficlight' \(closest: "
            r"'traffic light'\)"):
        build(spaced, 'val', str(names))
