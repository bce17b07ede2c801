"""Study tools: attention maps and query independence, log analysis,
dataset browsing; and the blocks' ``attention_maps`` they rely on.

The detector is the demo config shrunk to 128 px with one SASABlock (c3),
one NLBlock (c4), SASAConv as conv2 of c5 and one GCBlock (c5), random
weights.
"""
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import DEMO_CONFIG, ROOT, data_cfg_options, tool_env

from mmgc.analysis import attention
from mmgc.analysis.log_analysis import (curve, load_json_log, resolve_key,
                                        train_time_summary)
from mmgc.models import GCBlock, NLBlock, SASABlock, SASAConv
from mmgc.models.sasa import local_attention

ATTENTION_TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'attention_maps.py')
LOGS_TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'analyze_logs.py')
BROWSE_TOOL = osp.join(ROOT, 'tools', 'browse_dataset.py')

TINY_CONFIG = f'''
_base_ = {DEMO_CONFIG!r}
model = dict(
    backbone=dict(
        type='PluginResNet',
        plugins=[
            dict(cfg=dict(type='SASABlock', kernel_size=3, num_heads=2),
                 stages=(False, True, False, False),
                 blocks=(None, (0, ), None, None), position='after_conv2'),
            dict(cfg=dict(type='NLBlock'), stages=(False, False, True, False),
                 blocks=(None, None, (-1, ), None), position='after_block'),
            dict(cfg=dict(type='GCBlock', ratio=1. / 16),
                 stages=(False, False, False, True),
                 blocks=(None, None, None, (-1, )), position='after_conv3'),
        ],
        sasa=dict(type='SASAConv', kernel_size=3, num_heads=2),
        stage_with_sasa=(False, False, False, True)))
test_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor')),
]))
'''
TINY_BLOCKS = {
    'backbone.layer2.0.sasa_block': 'SASABlock',
    'backbone.layer3.5.nonlocal_block': 'NLBlock',
    'backbone.layer4.0.conv2': 'SASAConv',
    'backbone.layer4.1.conv2': 'SASAConv',
    'backbone.layer4.2.conv2': 'SASAConv',
    'backbone.layer4.2.context_block': 'GCBlock',
}


def run_tool(args, timeout=300) -> str:
    result = subprocess.run([sys.executable, *args],
                            cwd=ROOT,
                            env=tool_env(),
                            capture_output=True,
                            text=True,
                            timeout=timeout)
    assert result.returncode == 0, (
        result.stdout[-3000:] + result.stderr[-3000:])
    return result.stdout


def randomize(module: torch.nn.Module, std: float) -> None:
    """Non-trivial weights (the blocks start as identities)."""
    for param in module.parameters():
        torch.nn.init.normal_(param, std=std)


@pytest.fixture(scope='module')
def tiny_detector(tmp_path_factory):
    """Config and random-weight checkpoint of the tiny detector."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.runner import save_checkpoint

    from mmgc.datasets import SYNTHETIC_CLASSES
    root = tmp_path_factory.mktemp('tiny_detector')
    config = str(root / 'tiny_attention.py')
    with open(config, 'w') as f:
        f.write(TINY_CONFIG)
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(config).model)
    for module in model.modules():
        if isinstance(module, NLBlock):
            # features here are small (norm ~0.4): weights large enough for
            # query-dependent logits, no biases (they would not depend on
            # the query)
            for param in module.parameters():
                if param.dim() > 1:
                    torch.nn.init.normal_(param, std=1.0)
                else:
                    torch.nn.init.zeros_(param)
        elif isinstance(module, SASABlock):
            randomize(module.out_proj, 0.05)
        elif isinstance(module, GCBlock):
            randomize(module.channel_add_conv, 0.05)
    checkpoint = str(root / 'random.pth')
    save_checkpoint(
        dict(
            state_dict=model.state_dict(),
            meta=dict(dataset_meta=dict(classes=SYNTHETIC_CLASSES))),
        checkpoint)
    return config, checkpoint


def val_images(data_root: str, count: int) -> list:
    folder = osp.join(data_root, 'val')
    return [osp.join(folder, name)
            for name in sorted(os.listdir(folder))][:count]


# -------------------------------------------------- blocks' attention maps --


@pytest.mark.parametrize('pooling', ['att', 'avg'])
def test_gc_attention_maps_are_what_forward_pools_with(pooling):
    torch.manual_seed(0)
    block = GCBlock(
        16,
        1 / 4,
        pooling_type=pooling,
        fusion_types=('channel_add', 'channel_mul'))
    randomize(block, 0.3)
    x = torch.randn(2, 16, 5, 7)
    queries = torch.tensor([0, 17, 34])
    with torch.no_grad():
        maps = block.attention_maps(x, queries)  # [2, 3, 5, 7]
        weights = maps[:, 0].flatten(1)  # [2, 35]
        context = torch.einsum('bn,bcn->bc', weights, x.flatten(2))
        scale = torch.sigmoid(block.channel_mul_conv(context[..., None, None]))
        shift = block.channel_add_conv(context[..., None, None])
        expected = x * scale + shift
        out = block(x)
    assert maps.shape == (2, 3, 5, 7) and maps.dtype == torch.float32
    # one map for every query
    torch.testing.assert_close(maps, maps[:, :1].expand(-1, 3, -1, -1))
    torch.testing.assert_close(weights.sum(1), torch.ones(2))
    if pooling == 'avg':
        torch.testing.assert_close(weights, torch.full((2, 35), 1 / 35))
    else:
        assert weights.std() > 1e-3  # a real softmax, not uniform
    torch.testing.assert_close(context[..., None, None], block.spatial_pool(x))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('sub_sample', [False, True])
@pytest.mark.parametrize(
    'mode', ['embedded_gaussian', 'gaussian', 'dot_product', 'concatenation'])
def test_nl_attention_maps_are_rows_of_forward(mode, sub_sample):
    torch.manual_seed(0)
    block = NLBlock(16, mode=mode, sub_sample=sub_sample)
    randomize(block, 0.3)
    x = torch.randn(2, 16, 7, 9)
    queries = torch.tensor([0, 8, 31, 62])
    with torch.no_grad():
        maps = block.attention_maps(x, queries)
        _, _, values = block._project(x)  # [2, M, Ci]
        y = block.pairwise_aggregate(x)[:, queries]  # [2, Q, Ci]
    assert maps.shape == (2, 4, 7, 9)
    if sub_sample:
        # a key's weight is spread evenly over the 2x2 cells it pools; the
        # odd last row and column are dropped by the pooling
        assert maps[..., 6, :].abs().max() == 0
        assert maps[..., :, 8].abs().max() == 0
        cells = maps[..., :6, :8].unflatten(2, (3, 2)).unflatten(
            4, (4, 2))  # [2, Q, 3, 2, 4, 2]
        torch.testing.assert_close(cells,
                                   cells[:, :, :, :1, :, :1].expand_as(cells))
        weights = cells.sum((3, 5))  # [2, Q, 3, 4]: one per key
    else:
        weights = maps
    torch.testing.assert_close(
        torch.einsum('bqm,bmc->bqc', weights.flatten(2), values),
        y,
        atol=1e-5,
        rtol=1e-4)
    if mode in ('embedded_gaussian', 'gaussian'):
        torch.testing.assert_close(maps.flatten(2).sum(2), torch.ones(2, 4))


def test_nl_attention_maps_equal_explicit_softmax():
    """Rows of softmax(theta^T phi / sqrt(Ci)) built in full here."""
    torch.manual_seed(1)
    block = NLBlock(8, reduction=2)
    randomize(block, 0.5)
    x = torch.randn(1, 8, 4, 5)
    queries = torch.tensor([3, 11, 19])
    with torch.no_grad():
        theta = block.theta(x).flatten(2)[0]  # [Ci, N]
        phi = block.phi(x).flatten(2)[0]  # [Ci, N]
        full = torch.softmax(theta.t() @ phi / 4**0.5, dim=1)  # [N, N]
        maps = block.attention_maps(x, queries)[0]  # [Q, 4, 5]
    torch.testing.assert_close(maps.flatten(1), full[queries])


@pytest.mark.parametrize('window', [3, 5])
def test_sasa_attention_maps_are_what_forward_attends_with(window):
    torch.manual_seed(0)
    conv = SASAConv(16, 16, window, num_heads=2)
    randomize(conv, 0.3)
    x = torch.randn(2, 16, 6, 7)
    queries = torch.tensor([0, 9, 23, 41])  # 0 and 41: corners
    with torch.no_grad():
        weights = conv.window_weights(x, queries)  # [2, Q, 2, k, k]
        maps = conv.attention_maps(x, queries)  # [2, Q, 6, 7]
        qkv = conv._project_qkv(x)  # [2, 6, 7, 48]
        out = local_attention(qkv, conv.rel_h, conv.rel_w, 2)  # [2,6,7,16]
    assert weights.shape == (2, 4, 2, window, window)
    assert maps.shape == (2, 4, 6, 7)
    torch.testing.assert_close(weights.flatten(3).sum(3), torch.ones(2, 4, 2))
    torch.testing.assert_close(maps.flatten(2).sum(2), torch.ones(2, 4))
    radius = window // 2
    values = torch.nn.functional.pad(qkv[..., 32:],
                                     (0, 0, radius, radius, radius, radius))
    for i, query in enumerate(queries.tolist()):
        row, col = divmod(query, 7)
        patch = values[:, row:row + window,
                       col:col + window].reshape(2, window, window, 2, 8)
        attended = torch.einsum('bhyx,byxhd->bhd', weights[:, i], patch)
        torch.testing.assert_close(
            attended.reshape(2, 16), out[:, row, col], atol=1e-5, rtol=1e-4)
        # the map: heads averaged, at the window's image positions, 0 else
        placed = torch.nn.functional.pad(maps[:, i],
                                         (radius, radius, radius, radius))
        window_part = placed[:, row:row + window, col:col + window]
        torch.testing.assert_close(window_part, weights[:, i].mean(1))
        assert placed.sum((1, 2)).sub(window_part.sum(
            (1, 2))).abs().max() < 1e-6
    # the top-left query's window has nothing above or left of it
    assert weights[:, 0, :, :radius].abs().max() == 0
    assert weights[:, 0, :, :, :radius].abs().max() == 0
    block = SASABlock(16, window, num_heads=2)
    block.attention = conv
    torch.testing.assert_close(block.attention_maps(x, queries), maps)


# --------------------------------------------------------- attention_maps --


def test_mean_cosine_distance_values():
    vectors = torch.tensor([[1., 0.], [0., 1.], [1., 1.], [0., 0.]])
    # pairs: 1, 1 - 1/sqrt(2), 1 - 1/sqrt(2); the zero vector is left out
    expected = (1 + 2 * (1 - 2**-0.5)) / 3
    assert attention.mean_cosine_distance(vectors) == pytest.approx(
        expected, abs=1e-12)
    assert attention.mean_cosine_distance(torch.ones(5, 3)) == 0
    assert attention.mean_cosine_distance(torch.tensor([[1., 2.],
                                                        [0., 0.]])) is None


def test_attention_maps_cli(tiny_detector, tiny_coco, tmp_path):
    config, checkpoint = tiny_detector
    images = val_images(tiny_coco, 2)
    out_dir = str(tmp_path / 'attention')
    stdout = run_tool([
        ATTENTION_TOOL, config, checkpoint, *images, '--out-dir', out_dir,
        '--queries', '3', '--num-positions', '16', '--panel-size', '96'
    ])
    with open(osp.join(out_dir, 'attention_stats.json')) as f:
        stats = json.load(f)
    blocks = stats['blocks']
    assert {name: b['type'] for name, b in blocks.items()} == TINY_BLOCKS
    for name, entry in blocks.items():
        assert name in stdout  # one table row per block
        assert set(entry) == {
            'type', 'map_size', 'cos_dist', 'per_image', 'files'
        }
        assert set(
            entry['cos_dist']) == {'attention', 'input', 'output', 'delta'}
        assert [s['image'] for s in entry['per_image']] == images
        assert entry['files'] == [
            osp.join(out_dir, f'{osp.splitext(osp.basename(image))[0]}_'
                     f'{name}.png') for image in images
        ]
        panels = 1 if entry['type'] == 'GCBlock' else 3
        for path in entry['files']:
            assert cv2.imread(path).shape == (96, 96 * panels, 3)
        for image_stats in entry['per_image']:
            for key in ('attention', 'input', 'output'):
                assert 0 <= image_stats[key] <= 2
    gc = blocks['backbone.layer4.2.context_block']
    nl = blocks['backbone.layer3.5.nonlocal_block']
    assert gc['cos_dist']['attention'] < 1e-6  # query-independent
    assert gc['cos_dist']['delta'] < 1e-6  # one vector added everywhere
    assert nl['cos_dist']['attention'] > 1e-3  # depends on the query
    assert gc['map_size'] == [4, 4] and nl['map_size'] == [8, 8]
    # the SASAConv with stride 2 changes the map size: no delta
    assert blocks['backbone.layer4.0.conv2']['cos_dist']['delta'] is None
    # the contact sheet: a row per image, a column per block, each tile
    # 1600 / blocks px wide (120..320), a 16 px caption, 6 px gaps; the
    # square GC panel is the tallest tile of a row
    tile = max(120, min(320, 1600 // len(TINY_BLOCKS)))
    sheet = osp.join(out_dir, 'attention_sheet.png')
    assert f'sheet:      {sheet}' in stdout
    assert cv2.imread(sheet).shape == (6 + 2 * (tile + 16 + 6),
                                       6 + len(TINY_BLOCKS) * (tile + 6), 3)
    assert len(os.listdir(out_dir)) == 2 * len(TINY_BLOCKS) + 2


def test_attention_maps_values_in_process(tiny_detector, tiny_coco):
    """Maps from the recorded inputs: sums, GC's repeated map, NL's rows of
    the explicit softmax(theta^T phi), SASA's windows."""
    from mmdet.apis import inference_detector
    config, checkpoint = tiny_detector
    model = attention.build_model(config, checkpoint, device='cpu')
    blocks = attention.find_blocks(model)
    assert list(blocks) == list(TINY_BLOCKS)
    recorder = attention.BlockRecorder(blocks)
    result = inference_detector(
        model,
        val_images(tiny_coco, 1)[0],
        test_pipeline=attention.build_pipeline(model))
    recorder.remove()
    meta = result.metainfo
    assert meta['batch_input_shape'] == (128, 128)

    gc_name = 'backbone.layer4.2.context_block'
    nl_name = 'backbone.layer3.5.nonlocal_block'
    gc_x, gc_out = recorder.records[gc_name]
    queries = torch.tensor([0, 5, 15])
    gc_maps = attention.query_attention(blocks[gc_name], gc_x, queries)
    assert gc_maps.shape == (3, 4, 4)
    torch.testing.assert_close(gc_maps.flatten(1).sum(1), torch.ones(3))
    assert torch.equal(gc_maps[0], gc_maps[2])
    assert attention.mean_cosine_distance(gc_maps.flatten(1)) < 1e-6

    nl, (nl_x, _) = blocks[nl_name], recorder.records[nl_name]
    queries = torch.tensor([0, 9, 27, 63])
    nl_maps = attention.query_attention(nl, nl_x, queries)  # [4, 8, 8]
    with torch.no_grad():
        theta = nl.theta(nl_x).flatten(2)[0]  # [Ci, 64]
        phi = nl.phi(nl_x).flatten(2)[0]  # [Ci, 64]
        full = torch.softmax(
            theta.t() @ phi * nl.inter_channels**-0.5, dim=1)  # [64, 64]
    torch.testing.assert_close(
        nl_maps.flatten(1), full[queries], atol=1e-6, rtol=1e-5)
    assert attention.mean_cosine_distance(nl_maps.flatten(1)) > 1e-3

    for name in ('backbone.layer2.0.sasa_block', 'backbone.layer4.1.conv2'):
        x, _ = recorder.records[name]
        maps = attention.query_attention(blocks[name], x, queries[:2])
        height, width = x.shape[2:]
        assert maps.shape == (2, height, width)
        torch.testing.assert_close(maps.flatten(1).sum(1), torch.ones(2))
        # query 0 (top-left corner): a 3x3 window holds every weight
        assert maps[0, :2, :2].sum() == pytest.approx(1, abs=1e-6)

    stats = attention.block_statistics(blocks[gc_name], gc_x, gc_out, meta, 8,
                                       0, torch.device('cpu'))
    assert stats['map_size'] == [4, 4] and stats['num_positions'] == 8
    assert stats['attention'] < 1e-6 and stats['input'] > 0


def test_attention_maps_rejects_points_outside_image(tiny_detector, tiny_coco,
                                                     tmp_path):
    config, checkpoint = tiny_detector
    result = subprocess.run([
        sys.executable, ATTENTION_TOOL, config, checkpoint,
        val_images(tiny_coco, 1)[0], '--out-dir',
        str(tmp_path), '--query-points', '10,300', '--blocks', '*context_block'
    ],
                            cwd=ROOT,
                            env=tool_env(),
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode != 0
    assert '--query-points 10,300 is outside' in result.stderr
    assert 'y in [0, 256)' in result.stderr


# ------------------------------------------------------------ analyze_logs --

ITER_LOG = [
    dict(
        lr=0.01,
        loss=2.0,
        loss_cls=1.0,
        time=0.5,
        data_time=0.1,
        iter=10,
        step=10),
    dict(
        lr=0.01,
        loss=1.5,
        loss_cls=0.8,
        time=0.3,
        data_time=0.1,
        iter=20,
        step=20),
    dict(
        lr=0.01,
        loss=1.2,
        loss_cls=0.6,
        time=0.2,
        data_time=0.1,
        iter=30,
        step=30),
    dict(
        lr=0.01,
        loss=1.0,
        loss_cls=0.5,
        time=0.4,
        data_time=0.1,
        iter=40,
        step=40),
    {
        'coco/bbox_mAP': 0.3,
        'coco/bbox_mAP_50': 0.5,
        'data_time': 0.05,
        'time': 0.9,
        'step': 40
    },
]
EPOCH_LOG = [
    dict(loss=2.0, time=0.5, epoch=1, iter=5, step=5),
    dict(loss=1.8, time=0.3, epoch=1, iter=10, step=10),
    dict(loss=1.6, time=0.1, epoch=1, iter=12, step=12),
    {
        'coco/bbox_mAP': 0.2,
        'time': 0.7,
        'step': 1
    },
    dict(loss=1.4, time=0.6, epoch=2, iter=17, step=17),
    dict(loss=1.2, time=0.4, epoch=2, iter=22, step=22),
    dict(loss=1.1, time=0.2, epoch=2, iter=24, step=24),
    {
        'coco/bbox_mAP': 0.4,
        'time': 0.7,
        'step': 2
    },
]


def write_log(path, records) -> str:
    with open(path, 'w') as f:
        f.write(json.dumps(dict(lr=0.01)) + '\n')  # one-key lines: skipped
        for record in records:
            f.write(json.dumps(record) + '\n')
    return str(path)


def test_cal_train_time_iteration_log(tmp_path):
    log = write_log(tmp_path / 'scalars.json', ITER_LOG)
    stdout = run_tool([LOGS_TOOL, 'cal_train_time', log])
    # first record left out (warm-up), val line's time ignored
    assert 'average iter time: 0.3000 s/iter' in stdout
    assert 'slowest logged iter 40, time is 0.4000 s/iter' in stdout
    assert 'fastest logged iter 30, time is 0.2000 s/iter' in stdout
    stdout = run_tool([LOGS_TOOL, 'cal_train_time', log, '--include-outliers'])
    assert 'average iter time: 0.3500 s/iter' in stdout


def test_cal_train_time_epoch_log(tmp_path):
    log = load_json_log(write_log(tmp_path / 'e.json', EPOCH_LOG))
    assert log.by_epoch and len(log.train) == 6 and len(log.val) == 2
    summary = train_time_summary(log, include_outliers=False)
    assert summary['average'] == pytest.approx(0.25, abs=1e-12)
    assert summary['slowest'] == (2, pytest.approx(0.3, abs=1e-12))
    assert summary['fastest'] == (1, pytest.approx(0.2, abs=1e-12))
    assert summary['epochs'][1] == (12, pytest.approx(0.2), pytest.approx(2.4))
    assert summary['epochs'][2] == (12, pytest.approx(0.3), pytest.approx(3.6))


def test_plot_curve_writes_png(tmp_path):
    log = write_log(tmp_path / 'scalars.json', ITER_LOG)
    out = str(tmp_path / 'curve.png')
    stdout = run_tool([
        LOGS_TOOL, 'plot_curve', log, '--keys', 'loss', 'loss_cls', 'bbox_mAP',
        '--legend', 'a', 'b', 'c', '--title', 'tiny', '--out', out
    ])
    assert f'save curve to: {out}' in stdout
    assert 'metric is coco/bbox_mAP' in stdout
    image = cv2.imread(out)
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100


def test_plot_curve_points_and_errors(tmp_path):
    iter_log = load_json_log(write_log(tmp_path / 'i.json', ITER_LOG))
    epoch_log = load_json_log(write_log(tmp_path / 'e.json', EPOCH_LOG))
    assert resolve_key(iter_log, 'bbox_mAP') == 'coco/bbox_mAP'
    xs, ys, is_val = curve(iter_log, 'loss', False, 1, 15)
    assert xs.tolist() == [20, 30, 40] and ys.tolist() == [1.5, 1.2, 1.0]
    assert not is_val
    # val metric of an epoch log: at the epoch, or the epoch's last iter
    xs, ys, is_val = curve(epoch_log, 'coco/bbox_mAP', True, 1, 1)
    assert xs.tolist() == [1, 2] and ys.tolist() == [0.2, 0.4] and is_val
    xs, _, _ = curve(epoch_log, 'coco/bbox_mAP', False, 2, 1)
    assert xs.tolist() == [24]
    with pytest.raises(KeyError, match="no key 'segm_mAP'"):
        resolve_key(iter_log, 'segm_mAP')
    result = subprocess.run([
        sys.executable, LOGS_TOOL, 'plot_curve',
        str(tmp_path / 'i.json'), '--keys', 'loss', '--legend', 'a', 'b',
        '--out',
        str(tmp_path / 'x.png')
    ],
                            cwd=ROOT,
                            env=tool_env(),
                            capture_output=True,
                            text=True,
                            timeout=60)
    assert result.returncode == 1
    assert '--legend has 2 entries; expected one per log and key: 1 x 1' \
        in result.stderr


# ---------------------------------------------------------- browse_dataset --


def test_browse_dataset_writes_images(tiny_coco, tmp_path):
    out_dir = str(tmp_path / 'browse')
    stdout = run_tool([
        BROWSE_TOOL, DEMO_CONFIG, '--output-dir', out_dir, '--not-show',
        '--max-images', '3', '--cfg-options', *data_cfg_options(tiny_coco)
    ])
    names = sorted(os.listdir(out_dir))
    assert len(names) == 3
    assert set(names) <= set(os.listdir(osp.join(tiny_coco, 'train')))
    for name in names:
        drawn = cv2.imread(osp.join(out_dir, name))
        source = cv2.imread(osp.join(tiny_coco, 'train', name))
        # the demo config's DetComparisonVisualizer: an 18 px title strip,
        # the image, a one-row (22 px) legend of the classes shown
        assert source.shape == (256, 256, 3)
        assert drawn.shape == (18 + 256 + 22, 256, 3)
        # ground truth drawn on top: the pictures differ from the sources
        image = drawn[18:18 + 256].astype(int)
        assert np.abs(image - source.astype(int)).mean() > 1
    assert '3/3' in stdout
