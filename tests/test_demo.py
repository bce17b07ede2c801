"""The main job (tools/run_demo.py) end to end, on a tiny schedule."""
import glob
import json
import os.path as osp
import subprocess
import sys

import pytest

from conftest import tool_env

pytestmark = pytest.mark.slow


def test_run_demo_writes_metrics_and_drawings(repo_root, tmp_path):
    data_root = str(tmp_path / 'data')
    work_dir = str(tmp_path / 'work')
    cmd = [sys.executable, 'tools/run_demo.py', '--data-root', data_root,
           '--num-train', '8', '--num-val', '4', '--work-dir', work_dir,
           '--cfg-options', 'train_cfg.max_iters=2',
           'train_dataloader.num_workers=0',
           'train_dataloader.persistent_workers=False',
           'val_dataloader.num_workers=0',
           'val_dataloader.persistent_workers=False',
           'test_dataloader.num_workers=0',
           'test_dataloader.persistent_workers=False']
    result = subprocess.run(cmd, cwd=repo_root, env=tool_env(),
                            capture_output=True, text=True, timeout=900)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]

    with open(osp.join(work_dir, 'metrics.json')) as f:
        metrics = json.load(f)
    assert {f'coco/{t}_mAP' for t in ('bbox', 'segm')} <= set(metrics)
    drawings = glob.glob(osp.join(work_dir, '*', 'predictions', '*.png'))
    assert sorted(osp.basename(p) for p in drawings) == [
        '000000.png', '000001.png', '000002.png', '000003.png'
    ]
    # the printed table shows the numbers of the JSON file
    bbox_row = next(line for line in result.stdout.splitlines()
                    if line.startswith('bbox '))
    assert float(bbox_row.split()[1]) == pytest.approx(
        metrics['coco/bbox_mAP'], abs=5e-4)
    assert 'work dir:' in result.stdout and osp.isfile(
        osp.join(work_dir, 'iter_2.pth'))

    # a second run reuses the finished training instead of retraining
    again = subprocess.run(cmd, cwd=repo_root, env=tool_env(),
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert 'reusing it' in again.stdout
    assert 'Iter(train)' not in again.stdout + again.stderr
