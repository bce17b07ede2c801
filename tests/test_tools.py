"""tools/train.py, test.py, dist_train.sh and dist_test.sh end to end.

Tiny runs of the demo config on a 12-image synthetic set, in child
processes, as a user runs them.
"""
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import DEMO_CONFIG, data_cfg_options, tool_env

pytestmark = pytest.mark.slow

LOADER_OPTIONS = [
    'train_dataloader.batch_size=2',
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'test_dataloader.num_workers=0',
    'test_dataloader.persistent_workers=False',
    'default_hooks.logger.interval=1',
]
NO_VAL = ['val_cfg=None', 'val_dataloader=None', 'val_evaluator=None']


def train_options(data_root: str, max_iters: int, ckpt_interval: int):
    return [
        '--cfg-options', *data_cfg_options(data_root), *LOADER_OPTIONS,
        *NO_VAL, f'train_cfg.max_iters={max_iters}',
        f'default_hooks.checkpoint.interval={ckpt_interval}',
        'param_scheduler.0.end=2'
    ]


def run_tool(args, repo_root, timeout=600):
    result = subprocess.run(
        args,
        cwd=repo_root,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return result.stdout + result.stderr


def load_checkpoint(path):
    """Load as mmengine does (torch.load without weights_only)."""
    import mmgc  # noqa: F401  (allow-lists mmengine's globals)
    return torch.load(path, map_location='cpu')


def test_resume_after_kill(tiny_coco, repo_root, tmp_path):
    """A run killed after its first checkpoint continues with --resume."""
    work_dir = str(tmp_path / 'work')
    cmd = [
        sys.executable, 'tools/train.py', DEMO_CONFIG, '--work-dir', work_dir,
        *train_options(tiny_coco, 6, 2)
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=repo_root,
        env=tool_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not osp.isfile(osp.join(work_dir, 'iter_2.pth')):
        assert proc.poll() is None, 'training ended before its checkpoint'
        assert time.time() < deadline, 'no checkpoint after 300 s'
        time.sleep(0.5)
    time.sleep(1.0)  # let the save finish; the kill lands mid-training
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not osp.isfile(osp.join(work_dir, 'iter_6.pth'))

    killed_at = load_checkpoint(osp.join(work_dir, 'iter_2.pth'))
    assert killed_at['meta']['iter'] == 2  # weights_only default on torch>=2.6

    log = run_tool(cmd + ['--resume'], repo_root)
    assert 'resumed' in log.lower() or 'Load checkpoint' in log
    final = load_checkpoint(osp.join(work_dir, 'iter_6.pth'))
    assert final['meta']['iter'] == 6
    # the resumed run trained iterations 3..6 only: no restart from 0
    assert 'Iter(train) [1/6]' not in log
    assert 'Iter(train) [6/6]' in log
    # weights moved on after the resume
    moved = [
        k for k, v in final['state_dict'].items() if v.is_floating_point()
        and not torch.equal(v, killed_at['state_dict'][k])
    ]
    assert moved


def test_resume_with_explicit_checkpoint_and_load_from(tiny_coco, repo_root,
                                                       tmp_path):
    first = str(tmp_path / 'first')
    run_tool([
        sys.executable, 'tools/train.py', DEMO_CONFIG, '--work-dir', first,
        *train_options(tiny_coco, 2, 2)
    ], repo_root)
    ckpt = osp.join(first, 'iter_2.pth')
    second = str(tmp_path / 'second')
    log = run_tool([
        sys.executable, 'tools/train.py', DEMO_CONFIG, '--work-dir', second,
        '--resume', ckpt, *train_options(tiny_coco, 3, 1)
    ], repo_root)
    assert 'Iter(train) [3/3]' in log and 'Iter(train) [1/3]' not in log
    assert load_checkpoint(osp.join(second, 'iter_3.pth'))['meta']['iter'] \
        == 3
    # load_from (weights only, iteration restarts at 0)
    third = str(tmp_path / 'third')
    log = run_tool([
        sys.executable, 'tools/train.py', DEMO_CONFIG, '--work-dir', third,
        *train_options(tiny_coco, 1, 1), f'load_from={ckpt}'
    ], repo_root)
    assert 'Load checkpoint from' in log
    assert 'Iter(train) [1/1]' in log


def test_bad_resume_path_is_named(repo_root, tmp_path):
    missing = str(tmp_path / 'nope.pth')
    result = subprocess.run(
        [sys.executable, 'tools/train.py', DEMO_CONFIG, '--resume', missing],
        cwd=repo_root,
        env=tool_env(),
        capture_output=True,
        text=True)
    assert result.returncode != 0
    assert missing in result.stderr


def test_dist_train_and_dist_test_on_two_cpu_processes(tiny_coco, repo_root,
                                                       tmp_path):
    """2 gloo processes train; 2 processes evaluate with COCO metrics."""
    env = tool_env()
    env['PYTHON'] = sys.executable
    env['PORT'] = str(29500 + os.getpid() % 1000)
    work_dir = str(tmp_path / 'dist')
    result = subprocess.run([
        'bash', 'tools/dist_train.sh', DEMO_CONFIG, '2', '--work-dir',
        work_dir, *train_options(tiny_coco, 2, 2)
    ],
                            cwd=repo_root,
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "using the 'gloo' backend" in out or not torch.cuda.is_available()
    ckpt = osp.join(work_dir, 'iter_2.pth')
    state = load_checkpoint(ckpt)
    assert state['meta']['iter'] == 2
    assert not any(k.startswith('module.') for k in state['state_dict'])

    metrics_file = str(tmp_path / 'metrics.json')
    result = subprocess.run([
        'bash', 'tools/dist_test.sh', DEMO_CONFIG, ckpt, '2', '--work-dir',
        work_dir, '--metrics-out', metrics_file, '--out',
        str(tmp_path / 'preds.pkl'), '--cfg-options',
        *data_cfg_options(tiny_coco), *LOADER_OPTIONS
    ],
                            cwd=repo_root,
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    with open(metrics_file) as f:
        metrics = json.load(f)
    for task in ('bbox', 'segm'):
        for name in ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l'):
            value = metrics[f'coco/{task}_{name}']
            assert value == -1 or 0.0 <= value <= 1.0
    import pickle
    with open(tmp_path / 'preds.pkl', 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 6  # every val image once, across both ranks
    assert sorted(p['img_id'] for p in preds) == [1, 2, 3, 4, 5, 6]

    # one process on the same checkpoint reports exactly the same metrics
    # (and the same predictions, so equal metrics are not a coincidence)
    single_file = str(tmp_path / 'metrics_single.json')
    run_tool([
        sys.executable, 'tools/test.py', DEMO_CONFIG, ckpt, '--work-dir',
        work_dir, '--metrics-out', single_file, '--out',
        str(tmp_path / 'preds_single.pkl'), '--cfg-options',
        *data_cfg_options(tiny_coco), *LOADER_OPTIONS
    ], repo_root)
    with open(single_file) as f:
        assert json.load(f) == metrics
    with open(tmp_path / 'preds_single.pkl', 'rb') as f:
        single = {p['img_id']: p['pred_instances'] for p in pickle.load(f)}
    assert sum(len(p['pred_instances']['scores']) for p in preds) > 0
    for pred in preds:
        ref = single[pred['img_id']]
        for key in ('bboxes', 'scores', 'labels'):
            torch.testing.assert_close(pred['pred_instances'][key], ref[key])
