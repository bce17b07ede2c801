"""The study runner: definitions, aggregation and an end-to-end study."""
import json
import os.path as osp
import subprocess
import sys

import pytest
from conftest import DEMO_CONFIG, ROOT, tool_env

from mmgc.analysis.studies import BUILTIN_STUDIES, check_study, load_study
from mmgc.analysis.study import eta_seconds, image_shape_of
from mmgc.analysis.study_table import (aggregate, markdown_per_seed,
                                       markdown_table, mean_spread)


# ------------------------------------------------------------ fast tests --
def test_mean_spread_is_mean_and_sample_std():
    stat = mean_spread([0.30, 0.34, 0.35])
    assert stat['n'] == 3
    assert stat['mean'] == pytest.approx(0.33)
    # sample std: sqrt(((-.03)^2 + .01^2 + .02^2) / 2)
    assert stat['spread'] == pytest.approx((0.0014 / 2)**0.5)
    assert mean_spread([0.4]) == dict(mean=0.4, spread=None, n=1)
    assert mean_spread([]) == dict(mean=None, spread=None, n=0)


def run(variant, seed, bbox, segm, s_iter=1.0, mem=100.0):
    return dict(
        variant=variant,
        seed=seed,
        metrics={
            'coco/bbox_mAP': bbox,
            'coco/segm_mAP': segm
        },
        train_s_per_iter=s_iter,
        peak_memory_mb=mem,
        memory_source='rss',
        infer_s_per_img=0.1)


def test_aggregate_rows_deltas_and_markdown():
    runs = [
        run('base', 0, 0.30, 0.20, 1.0, 900),
        run('base', 1, 0.32, 0.22, 1.2, 950),
        run('gc', 1, 0.36, 0.25, 2.0, 1000),
        run('gc', 0, 0.34, 0.23, 1.8, 990)
    ]
    cost = {
        'base': dict(params=1000, flops=5_000_000_000),
        'gc': dict(params=1500, flops=5_250_000_000)
    }
    rows = aggregate(runs, cost, ['base', 'gc'], 'base')
    assert [r['variant'] for r in rows] == ['base', 'gc']
    gc = rows[1]
    assert gc['seeds'] == [0, 1]
    assert gc['bbox']['mean'] == pytest.approx(0.35)
    assert gc['bbox']['spread'] == pytest.approx(2**0.5 * 0.01)
    assert gc['segm']['mean'] == pytest.approx(0.24)
    assert (gc['delta_params'], gc['delta_flops']) == (500, 250_000_000)
    assert rows[0]['delta_params'] == 0
    assert gc['train_s_per_iter'] == pytest.approx(1.9)
    assert gc['peak_memory_mb'] == 1000  # the largest run
    table = markdown_table(rows).splitlines()
    assert table[0].startswith('| variant | seeds | bbox AP | segm AP')
    assert 'peak RSS (MB)' in table[0]
    assert table[3].split(' | ')[2:6] == [
        '35.0 ± 1.4', '24.0 ± 1.4', '+0.001', '+0.250'
    ]
    # each run's AP in seed order, next to the mean
    assert gc['per_seed'] == dict(bbox=[0.34, 0.36], segm=[0.23, 0.25])
    per_seed = markdown_per_seed(rows).splitlines()
    assert per_seed[0] == ('| variant | bbox AP seed 0 / 1 | '
                           'segm AP seed 0 / 1 |')
    assert per_seed[2:] == [
        '| base | 30.0 / 32.0 | 20.0 / 22.0 |',
        '| gc | 34.0 / 36.0 | 23.0 / 25.0 |'
    ]


def test_aggregate_keeps_variants_without_runs():
    rows = aggregate([run('base', 0, 0.3, 0.2)],
                     {'base': dict(params=1, flops=2)}, ['base', 'nl'], 'base')
    assert rows[1]['seeds'] == [] and rows[1]['bbox']['mean'] is None
    assert rows[1]['delta_params'] is None
    assert '| nl | 0 | - | - | - | - |' in markdown_table(rows)
    assert rows[1]['per_seed'] == dict(bbox=[], segm=[])
    assert markdown_per_seed(rows).splitlines()[2:] == [
        '| base | 30.0 | 20.0 |', '| nl | - | - |'
    ]


def test_builtin_studies_cover_the_papers_tables():
    blocks = load_study('blocks')
    assert list(blocks['variants']) == [
        'baseline', 'se_r16', 'snl', 'nl', 'gc_r16', 'gc_r4', 'sasa'
    ]
    v = blocks['variants']
    assert v['baseline']['plugins'] is None
    assert v['snl']['plugins'][0]['cfg'] == dict(
        type='GCBlock', ratio=1 / 16, transform='conv1x1')
    assert v['gc_r4']['plugins'][0]['cfg']['ratio'] == 1 / 4
    nl = v['nl']['plugins'][0]
    assert (nl['stages'], nl['blocks'],
            nl['position']) == ((False, False, True, False),
                                (None, None, (-2, ), None), 'after_block')
    assert v['sasa']['stage_with_sasa'] == (False, False, True, True)
    design = load_study('gc-design')['variants']
    cfgs = {k: d['plugins'][0] for k, d in design.items() if d['plugins']}
    assert {(c['cfg'].get('pooling_type',
                          'att'), c['cfg'].get('fusion_types',
                                               ('channel_add', ))[0])
            for k, c in cfgs.items()
            if k.startswith(('att', 'avg'))} == {('att', 'channel_add'),
                                                 ('att', 'channel_mul'),
                                                 ('avg', 'channel_add'),
                                                 ('avg', 'channel_mul')}
    assert {c['position']
            for c in cfgs.values()
            } == {'after_conv1', 'after_conv2', 'after_conv3', 'after_block'}
    assert {c['stages']
            for c in cfgs.values()} == {(False, True, True, True),
                                        (True, True, True, True),
                                        (False, False, False, True)}
    assert sorted(BUILTIN_STUDIES) == ['blocks', 'gc-design']


@pytest.mark.parametrize('study', ['blocks', 'gc-design'])
def test_builtin_variants_build_on_the_demo_config(study):
    """Every variant is a valid backbone of the demo (study base) config."""
    from mmdet.registry import MODELS

    from mmgc.utils.complexity import load_config
    for name, overrides in load_study(study)['variants'].items():
        cfg = load_config(DEMO_CONFIG)
        cfg.merge_from_dict({'model.backbone': overrides})
        MODELS.build(cfg.model.backbone)


def test_bad_studies_are_named(tmp_path):
    with pytest.raises(ValueError, match="baseline='nope'.*\\['a'\\]"):
        check_study(dict(name='s', baseline='nope', variants=dict(a={})))
    with pytest.raises(ValueError, match="variant name 'a/b'"):
        check_study(dict(name='s', variants={'a/b': {}}))
    with pytest.raises(ValueError, match="variant 'a' must be a dict"):
        check_study(dict(name='s', variants=dict(a=[1])))
    with pytest.raises(ValueError, match="unknown study keys \\['seeds'\\]"):
        check_study(dict(name='s', variants=dict(a={}), seeds=3))
    with pytest.raises(ValueError, match="--study 'block'.*'blocks'"):
        load_study('block')
    with pytest.raises(ValueError, match="--variants \\['gc_r8'\\]"):
        load_study('blocks', ['gc_r8'])
    custom = tmp_path / 'mine.py'
    custom.write_text("study = dict(name='mine', variants=dict("
                      "base=dict(plugins=None), se=dict(plugins=[])))\n")
    study = load_study(str(custom), ['se'])
    assert study['baseline'] == 'base' and list(
        study['variants']) == ['base', 'se']


def test_eta_and_flops_shape():
    assert eta_seconds([], 3) is None
    assert eta_seconds([10.0, 20.0], 4) == 60.0
    from mmgc.utils.complexity import load_config
    assert image_shape_of(load_config(DEMO_CONFIG)) == (256, 256)


# -------------------------------------------------------- end to end -----
TWO_VARIANTS = """
study = dict(
    name='two',
    baseline='baseline',
    variants=dict(
        baseline=dict(plugins=None),
        gc_r16=dict(plugins=[dict(cfg=dict(type='GCBlock', ratio=1 / 16),
                                  stages=(False, True, True, True),
                                  position='after_conv3')])))
"""


def tiny_options(data_root):
    ann = data_root + 'annotations/instances_val.json'
    options = [
        f'{k}.dataset.data_root={data_root}'
        for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ]
    options += [
        f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}',
        'train_cfg.max_iters=2', 'train_cfg.val_begin=100',
        'default_hooks.logger.interval=1'
    ]
    for loader in ('train', 'val', 'test'):
        options += [
            f'{loader}_dataloader.num_workers=0',
            f'{loader}_dataloader.persistent_workers=False'
        ]
    return options


@pytest.mark.slow
def test_two_variant_study_table_and_reuse(tmp_path):
    from mmgc.datasets import generate_synthetic_coco
    from mmgc.utils.complexity import build_detector, count_params, load_config
    data = str(tmp_path / 'data') + '/'
    generate_synthetic_coco(
        data, num_train=8, num_val=4, image_size=64, seed=1)
    study_file = tmp_path / 'two.py'
    study_file.write_text(TWO_VARIANTS)
    work = tmp_path / 'study'
    command = [
        sys.executable,
        osp.join(ROOT, 'tools', 'analysis_tools', 'study.py'), DEMO_CONFIG,
        '--study',
        str(study_file), '--seeds', '1', '--launcher', 'none', '--work-dir',
        str(work), '--cfg-options'
    ] + tiny_options(data)
    first = subprocess.run(
        command,
        env=tool_env(),
        capture_output=True,
        text=True,
        cwd=str(tmp_path))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert 'run 1/2: baseline seed 0' in first.stdout + first.stderr
    table = json.loads((work / 'study.json').read_text())
    rows = {r['variant']: r for r in table['rows']}
    assert list(rows) == ['baseline', 'gc_r16']
    for variant in rows:
        metrics = json.loads(
            (work / 'runs' / variant / 'seed0' / 'metrics.json').read_text())
        assert rows[variant]['bbox']['mean'] == metrics['coco/bbox_mAP']
        assert rows[variant]['segm']['mean'] == metrics['coco/segm_mAP']
        assert rows[variant]['seeds'] == [0]
        assert rows[variant]['train_s_per_iter'] > 0
        # the run trained with the study's seed (cfg-options)
        log = (work / 'runs' / variant / 'seed0' /
               'study_launch.log').read_text()
        assert 'randomness.seed=0' in log
        # the record names its checkpoint relative to the study's work dir
        record = json.loads(
            (work / 'runs' / variant / 'seed0' / 'run.json').read_text())
        assert record['checkpoint'] == f'runs/{variant}/seed0/iter_2.pth'
        assert (work / record['checkpoint']).is_file()
    # params from the project's counter, on the same variant configs
    params = {
        v:
        count_params(
            build_detector(load_config(str(work / 'configs' / f'{v}.py'))))
        for v in rows
    }
    assert rows['gc_r16']['delta_params'] == (params['gc_r16'] -
                                              params['baseline']) > 0
    assert rows['baseline']['delta_params'] == 0
    md = (work / 'study.md').read_text()
    assert f"{100 * rows['gc_r16']['bbox']['mean']:.1f}" in md
    assert markdown_per_seed(table['rows']) in md
    assert (work / 'study.png').stat().st_size > 1000

    # a second sitting reuses the finished runs: no training, same table;
    # --analyse finds the GC model's checkpoint through its record
    stamps = {
        p: p.stat().st_mtime_ns
        for p in work.glob('runs/*/seed0/metrics.json')
    }
    ckpts = sorted(str(p) for p in work.glob('runs/*/seed0/*.pth'))
    options = command.index('--cfg-options')
    second = subprocess.run(
        command[:options] + ['--analyse'] + command[options:],
        env=tool_env(),
        capture_output=True,
        text=True,
        cwd=str(tmp_path))
    assert second.returncode == 0, second.stderr[-3000:]
    out = second.stdout + second.stderr
    assert '2 finished (reused), 0 to run' in out and 'run 1/2' not in out
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert sorted(str(p) for p in work.glob('runs/*/seed0/*.pth')) == ckpts
    assert json.loads((work / 'study.json').read_text())['rows'] == \
        table['rows']
    attention = json.loads((work / 'attention.json').read_text())
    assert list(attention) == ['gc_r16']  # the baseline has no attention
    assert attention['gc_r16']['checkpoint'] == 'runs/gc_r16/seed0/iter_2.pth'
    blocks = attention['gc_r16']['blocks']
    assert blocks and all(b['type'] == 'GCBlock' for b in blocks.values())
    # one map per image: the same for every query, by construction
    assert all(b['cos_dist']['attention'] < 1e-6 for b in blocks.values())
    assert '[attention.md](attention.md)' in (work / 'study.md').read_text()

    # an interrupted run (checkpoint, no metrics) resumes with --resume
    run_dir = work / 'runs' / 'gc_r16' / 'seed0'
    (run_dir / 'metrics.json').unlink()
    (run_dir / 'train_segments.json').unlink()
    resumed = subprocess.run(
        command,
        env=tool_env(),
        capture_output=True,
        text=True,
        cwd=str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'run 2/2: gc_r16 seed 0 (resuming)' in (resumed.stdout +
                                                   resumed.stderr)
    launches = (run_dir / 'study_launch.log').read_text()
    assert 'randomness.seed=0 --resume' in launches
    # the resumed run is at max_iters already: same checkpoint, same AP
    assert json.loads(
        (run_dir / 'metrics.json'
         ).read_text())['coco/bbox_mAP'] == rows['gc_r16']['bbox']['mean']
    stamps = {
        p: p.stat().st_mtime_ns
        for p in work.glob('runs/*/seed0/metrics.json')
    }

    # a changed base (other cfg-options) is refused, nothing overwritten
    third = subprocess.run(
        command + ['train_cfg.max_iters=3'],
        env=tool_env(),
        capture_output=True,
        text=True,
        cwd=str(tmp_path))
    assert third.returncode != 0
    assert "variant 'baseline' of this study was started with another " \
        'config' in third.stderr
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_study_configs_schedule_and_context_split():
    from mmgc.datasets.synthetic_coco import CONTEXT_CLASSES
    from mmgc.utils.complexity import load_config
    base = load_config(osp.join(ROOT, 'configs', 'demo', 'study_synthetic.py'))
    assert base.train_cfg.max_iters == 300
    assert base.train_cfg.val_begin > base.train_cfg.max_iters
    assert base.param_scheduler[-1].end == 300
    ctx = load_config(
        osp.join(ROOT, 'configs', 'demo', 'study_synthetic_context.py'))
    assert tuple(ctx.classes) == CONTEXT_CLASSES
    for head in ('bbox_head', 'mask_head'):
        assert ctx.model.roi_head[head].num_classes == len(CONTEXT_CLASSES)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = ctx[loader].dataset
        assert dataset.data_root == 'data/synthetic_context/'
        assert tuple(dataset.metainfo.classes) == CONTEXT_CLASSES
    assert ctx.test_evaluator.ann_file.startswith('data/synthetic_context/')
    assert ctx.train_cfg.max_iters == 300


def test_attention_analysis_picks_gc_and_nl_models():
    from mmgc.analysis.study_attention import analysed_types
    from mmgc.utils.complexity import load_config
    picked = {}
    for name, overrides in load_study('blocks')['variants'].items():
        cfg = load_config(DEMO_CONFIG)
        cfg.merge_from_dict({'model.backbone': overrides})
        picked[name] = analysed_types(cfg)
    assert picked == dict(
        baseline=[],
        se_r16=[],
        snl=['GCBlock'],
        nl=['NLBlock'],
        gc_r16=['GCBlock'],
        gc_r4=['GCBlock'],
        sasa=[])


def test_attention_markdown_rows_and_pictures(tmp_path):
    from mmgc.analysis.study_attention import attention_markdown
    entry = dict(
        type='NLBlock',
        map_size=[16, 16],
        cos_dist=dict(attention=1.234e-5, input=0.5, output=0.25, delta=None),
        files=[str(tmp_path / 'attention' / 'nl' / 'a.png')])
    text = attention_markdown(
        dict(nl=dict(blocks={'backbone.layer3.4.nonlocal_block': entry})),
        str(tmp_path))
    assert ('| nl | backbone.layer3.4.nonlocal_block | NLBlock | 16x16 | '
            '1.234e-05 | 0.5 | 0.25 | - |') in text
    assert '(attention/nl/a.png)' in text
