"""The main job (tools/run_demo.py) end to end, on a tiny schedule; and, on
request, on its full schedule against the mAP it reaches."""
import json
import os
import os.path as osp
import subprocess
import sys

import mmcv
import pytest
from conftest import tool_env

pytestmark = pytest.mark.slow

LOADER_OPTIONS = [
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
    'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False'
]
# The lowest figures the full main job reached on the machines in the
# README (bbox / segm mAP 0.534 / 0.598 on a 2-core Xeon), less a margin
# for other CPUs and thread layouts: the number depends on the reduction
# order, so the test asks for a level, not a value.
FULL_DEMO_MIN_MAP = {'coco/bbox_mAP': 0.50, 'coco/segm_mAP': 0.55}
MAX_CONSOLE_LINES = 60


def console_lines(text: str) -> list:
    """Lines as a terminal shows them (a progress bar redraws its line with
    ``\\r``, so it is one line)."""
    return [line for line in text.split('\n') if line.strip()]


def test_run_demo_writes_metrics_drawings_and_a_short_console(
        repo_root, tmp_path):
    data_root = str(tmp_path / 'data')
    work_dir = str(tmp_path / 'work')
    cmd = [
        sys.executable, 'tools/run_demo.py', '--data-root', data_root,
        '--num-train', '8', '--num-val', '4', '--work-dir', work_dir,
        '--cfg-options', 'train_cfg.max_iters=2', *LOADER_OPTIONS
    ]
    result = subprocess.run(
        cmd,
        cwd=repo_root,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=900)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]

    with open(osp.join(work_dir, 'metrics.json')) as f:
        metrics = json.load(f)
    assert {f'coco/{t}_mAP' for t in ('bbox', 'segm')} <= set(metrics)
    drawings = sorted(os.listdir(osp.join(work_dir, 'predictions')))
    assert drawings == ['000000.png', '000001.png', '000002.png', '000003.png']
    # ground truth beside prediction: two 256 px panels and a 4 px gap
    drawing = mmcv.imread(osp.join(work_dir, 'predictions', drawings[0]))
    assert drawing.shape[1] == 2 * 256 + 4
    sheet = osp.join(work_dir, 'predictions_sheet.png')
    assert f'sheet:       {sheet} (first 4 val images)' in result.stdout
    assert mmcv.imread(sheet).shape[1] > drawing.shape[1]

    # the printed table shows the numbers of the JSON file
    bbox_row = next(line for line in result.stdout.splitlines()
                    if line.startswith('bbox '))
    assert float(bbox_row.split()[1]) == pytest.approx(
        metrics['coco/bbox_mAP'], abs=5e-4)
    assert 'work dir:' in result.stdout and osp.isfile(
        osp.join(work_dir, 'iter_2.pth'))

    # a console a person reads: one bar per phase, no log lines, no
    # third-party warnings; the logs are in the work dir and named
    lines = console_lines(out)
    assert len(lines) <= MAX_CONSOLE_LINES, out
    for phase in ('generate', 'train', 'evaluate', 'draw'):
        assert sum(
            line.lstrip('\r').startswith(phase) or f'\r{phase} ' in line
            for line in lines) >= 1, (phase, out)
    assert 'Iter(train)' not in out, out
    for warning in ('UserWarning', 'DeprecationWarning', 'FutureWarning'):
        assert warning not in out, out
    train_log = next(line.split()[-1] for line in result.stdout.splitlines()
                     if line.startswith('train log:'))
    with open(train_log) as f:
        assert 'Iter(train) [2/2]' in f.read()
    test_log = next(line.split()[-1] for line in result.stdout.splitlines()
                    if line.startswith('test log:'))
    with open(test_log) as f:
        assert 'Average Precision' in f.read()  # pycocotools' summary

    # a second run reuses the finished training instead of retraining
    again = subprocess.run(
        cmd,
        cwd=repo_root,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=900)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert 'reusing it' in again.stdout
    assert 'Iter(train)' not in again.stdout + again.stderr

    # --verbose restores mmengine's log on the console
    verbose = subprocess.run(
        cmd + ['--verbose'],
        cwd=repo_root,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=900)
    assert verbose.returncode == 0, verbose.stderr[-4000:]
    assert 'Average Precision' in verbose.stdout
    assert len(console_lines(verbose.stdout)) > 2 * MAX_CONSOLE_LINES


@pytest.mark.skipif(
    os.environ.get('MMGC_FULL_DEMO') != '1',
    reason='the full main job trains for about 13 minutes '
    'on 2 cores; set MMGC_FULL_DEMO=1 to run it')
def test_full_demo_reaches_the_documented_map(repo_root, tmp_path):
    work_dir = str(tmp_path / 'work')
    result = subprocess.run([
        sys.executable, 'tools/run_demo.py', '--work-dir', work_dir,
        '--num-drawings', '16'
    ],
                            cwd=repo_root,
                            env=tool_env(),
                            capture_output=True,
                            text=True,
                            timeout=3600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    with open(osp.join(work_dir, 'metrics.json')) as f:
        metrics = json.load(f)
    for key, level in FULL_DEMO_MIN_MAP.items():
        assert metrics[key] >= level, (key, metrics[key], result.stdout)
