"""What clusters do to training runs, and what mmgc does about it:
preemption signals, a rank that dies, a full disk, a truncated checkpoint.

Units first, then real ``tools/train.py`` and ``tools/dist_train.sh``
processes training the tiny ``ToyDetector`` (tests/toy_detector.py) on the
12-image ``tiny_coco`` set for 12 iterations (batch 2), compared with an
uninterrupted run of the same config: files on disk, exit statuses, log
messages and final weights.
"""
import errno
import json
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, fault_tool_env, toy_train_config

from mmgc.engine import (PREEMPTED_EXIT_CODE, BadCheckpointError,
                         PreemptionHook, atomic_write, check_checkpoint,
                         find_resume_checkpoint)

ITERS = 12
LOOP = dict(type='IterBasedTrainLoop', max_iters=ITERS, val_interval=100)

# ---------------------------------------------------------------- units


def _save(path, value: float) -> str:
    torch.save(dict(state_dict=dict(w=torch.full((64, ), value))), path)
    return str(path)


def _truncate(path, keep: float = 0.5) -> None:
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * keep)])


def test_check_checkpoint_names_what_is_wrong(tmp_path):
    good = _save(tmp_path / 'iter_1.pth', 1.)
    check_checkpoint(good)
    cut = _save(tmp_path / 'iter_2.pth', 2.)
    _truncate(cut)
    with pytest.raises(
            BadCheckpointError,
            match='is not a complete '
            r'torch.save file \(no zip directory'):
        check_checkpoint(cut)
    flipped = _save(tmp_path / 'iter_3.pth', 3.)
    data = bytearray(open(flipped, 'rb').read())
    at = data.index(torch.full((64, ), 3.).numpy().tobytes())
    data[at + 10] ^= 0xFF  # one weight byte: the entry's CRC no longer fits
    open(flipped, 'wb').write(bytes(data))
    with pytest.raises(BadCheckpointError, match='fails its CRC check'):
        check_checkpoint(flipped)
    with pytest.raises(BadCheckpointError, match='does not exist'):
        check_checkpoint(str(tmp_path / 'iter_9.pth'))
    (tmp_path / 'notes.pth').write_text('not a checkpoint')
    with pytest.raises(BadCheckpointError, match='not a complete'):
        check_checkpoint(str(tmp_path / 'notes.pth'))


def test_resume_auto_takes_the_newest_valid_checkpoint(tmp_path, monkeypatch):
    from mmgc.engine import resume_checkpoint
    logged = []
    monkeypatch.setattr(resume_checkpoint, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    assert find_resume_checkpoint(str(tmp_path / 'missing')) is None
    assert find_resume_checkpoint(str(tmp_path)) is None  # a fresh start
    old = _save(tmp_path / 'iter_2.pth', 2.)
    time.sleep(0.01)
    new = _save(tmp_path / 'iter_4.pth', 4.)
    _save(tmp_path / 'best_coco_bbox_mAP_iter_1.pth', 1.)  # never resumed
    assert find_resume_checkpoint(str(tmp_path)) == new  # newest, no pointer
    atomic_write(tmp_path / 'last_checkpoint', old)
    assert find_resume_checkpoint(str(tmp_path)) == old  # the pointer wins
    atomic_write(tmp_path / 'last_checkpoint', new)
    _truncate(new)
    assert find_resume_checkpoint(str(tmp_path)) == old
    assert len(logged) == 1
    assert f"passed over 1 bad checkpoint(s) ('{new}' (" in logged[0]
    assert f'resuming from {old}, the newest valid one' in logged[0]
    _truncate(old, keep=0.9)
    assert find_resume_checkpoint(str(tmp_path)) is None
    assert logged[1].startswith(f'--resume auto: no valid checkpoint in '
                                f'{tmp_path} (')
    assert logged[1].endswith('training starts from the beginning')


def test_a_full_disk_leaves_the_old_file_and_names_path_and_space(
        tmp_path, monkeypatch):
    target = tmp_path / 'iter_4.pth'
    atomic_write(target, b'old')

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, 'fsync', full)
    with pytest.raises(OSError) as info:
        atomic_write(target, b'new' * 100)
    assert info.value.errno == errno.ENOSPC
    message = str(info.value)
    assert f'No space left on device while writing {target} (300 bytes; ' \
        in message
    assert f' MB free on {tmp_path}); iter_4.pth was not changed' in message
    assert target.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['iter_4.pth']  # no temporary left


def test_preemption_hook_takes_signal_names_and_restores_handlers():
    with pytest.raises(
            ValueError, match=r"unknown signal name\(s\) "
            r"\['SIGNOPE'\]"):
        PreemptionHook(signals=['SIGNOPE'])
    before = signal.getsignal(signal.SIGUSR1)
    hook = PreemptionHook()
    assert signal.getsignal(signal.SIGUSR1) == hook._handle
    os.kill(os.getpid(), signal.SIGUSR1)
    time.sleep(0.05)
    assert hook.received == signal.SIGUSR1
    hook.after_run(runner=None)
    assert signal.getsignal(signal.SIGUSR1) == before


def test_a_restarted_group_gets_store_keys_of_its_own(monkeypatch):
    """torchrun's static rendezvous serves every restart from one store:
    the keys of the dead attempt must not reach the new one."""
    from datetime import timedelta

    from torch.distributed import TCPStore

    from mmgc.utils.cpu_dist import _restarted_group_store
    server = TCPStore('127.0.0.1', 0, 1, is_master=True)
    server.set('rank_0', 'address of attempt 0')
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', str(server.port))
    monkeypatch.setenv('WORLD_SIZE', '1')
    monkeypatch.setenv('TORCHELASTIC_USE_AGENT_STORE', 'True')
    timeout = timedelta(seconds=10)
    monkeypatch.setenv('TORCHELASTIC_RESTART_COUNT', '0')
    assert _restarted_group_store(timeout) is None  # torch's own keys
    monkeypatch.setenv('TORCHELASTIC_RESTART_COUNT', '1')
    store = _restarted_group_store(timeout)
    assert not store.check(['rank_0'])
    store.set('rank_0', 'address of attempt 1')
    assert server.get('mmgc/attempt_1/rank_0') == b'address of attempt 1'
    assert server.get('rank_0') == b'address of attempt 0'


# ------------------------------------------------------ real processes


def _config(tmp_path, data_root, name='toy', hooks=()) -> str:
    return toy_train_config(
        tmp_path,
        data_root,
        LOOP,
        hooks=hooks,
        name=name,
        sampler=dict(type='InfiniteSampler', shuffle=True),
        batch_sampler=dict(type='AspectRatioBatchSampler'))


def _slow(tmp_path):
    return [dict(type='SlowIterationHook', pid_dir=str(tmp_path))]


def _train_cmd(config, work_dir, *args, processes=1):
    common = [config, '--work-dir', str(work_dir), *args]
    if processes == 1:
        return [sys.executable, 'tools/train.py', *common]
    return ['bash', 'tools/dist_train.sh', common[0],
            str(processes)] + common[1:]


def _run(cmd, env=None, expect=0, timeout=300):
    result = subprocess.run(
        cmd,
        cwd=ROOT,
        env=env or fault_tool_env(),
        capture_output=True,
        text=True,
        timeout=timeout)
    out = result.stdout + result.stderr
    if expect is not None:
        assert result.returncode == expect, out[-4000:]
    return out


def _weights(path) -> dict:
    return torch.load(path, map_location='cpu')['state_dict']


def _assert_same_weights(a, b) -> None:
    a, b = _weights(a), _weights(b)
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert list(a) == list(b) and not differing, differing[:5]


def _start(cmd, env) -> subprocess.Popen:
    """Start a training in the background, its output in one pipe."""
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True)


def _wait_for_iteration(ids_file, iteration, proc, deadline=240):
    """Poll the recorder's file until ``iteration`` has started."""
    end = time.time() + deadline
    while True:
        assert proc.poll() is None, 'training ended too early'
        assert time.time() < end, f'iteration {iteration} not reached'
        if osp.isfile(ids_file):
            with open(ids_file) as f:
                seen = [json.loads(line)['iter'] for line in f]
            if seen and max(seen) >= iteration:
                return
        time.sleep(0.05)


def _dist_env(**extra):
    return fault_tool_env(
        PYTHON=sys.executable, PORT=str(29800 + os.getpid() % 150), **extra)


@pytest.fixture(scope='module')
def references(tiny_coco, tmp_path_factory):
    """Uninterrupted runs on 1 and on 2 processes: their work dirs."""
    found = {}
    for processes in (1, 2):
        tmp = tmp_path_factory.mktemp(f'reference{processes}')
        cmd = _train_cmd(
            _config(tmp, tiny_coco), tmp / 'work', processes=processes)
        _run(cmd, env=_dist_env() if processes > 1 else None)
        found[processes] = tmp / 'work'
    return found


@pytest.mark.slow
@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGUSR1])
def test_a_signalled_run_checkpoints_exits_75_and_resumes_exactly(
        references, tiny_coco, tmp_path, signum):
    """SIGTERM (preemption) or SIGUSR1 (Slurm's --signal) mid-run: the
    iteration finishes, a checkpoint of it is written (the checkpoint hook
    saves every 4 iterations here, so this one is the preemption hook's),
    exit status 75; --resume auto ends with the uninterrupted weights."""
    config = _config(tmp_path, tiny_coco, hooks=_slow(tmp_path))
    work = tmp_path / 'work'
    cmd = _train_cmd(config, work, '--cfg-options',
                     'default_hooks.checkpoint.interval=4')
    proc = _start(cmd, fault_tool_env())
    _wait_for_iteration(str(tmp_path / 'ids_0.jsonl'), 2, proc)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT_CODE, out[-3000:]
    ckpt = find_resume_checkpoint(str(work))
    stopped = torch.load(ckpt, map_location='cpu')['meta']['iter']
    assert 2 <= stopped < ITERS and stopped != 4
    assert ckpt == str(work / f'iter_{stopped}.pth')
    assert (f'{signal.Signals(signum).name} received: stopped after '
            f'iteration {stopped}, checkpoint {ckpt}; exiting with status '
            '75') in out
    out = _run(cmd + ['--resume', 'auto'])
    assert f'resumed epoch: 0, iter: {stopped}' in out
    _assert_same_weights(work / f'iter_{ITERS}.pth',
                         references[1] / f'iter_{ITERS}.pth')


@pytest.mark.slow
def test_a_signal_to_one_rank_stops_both_at_the_same_iteration(
        references, tiny_coco, tmp_path):
    """SIGUSR1 to rank 1 only: the ranks agree, both stop after the same
    iteration with one checkpoint; relaunched with --resume auto, the
    2-process job ends with the uninterrupted job's weights."""
    config = _config(tmp_path, tiny_coco, hooks=_slow(tmp_path))
    work = tmp_path / 'work'
    cmd = _train_cmd(config, work, processes=2)
    proc = _start(cmd, _dist_env())
    _wait_for_iteration(str(tmp_path / 'ids_1.jsonl'), 3, proc)
    os.kill(int((tmp_path / 'pid_1').read_text()), signal.SIGUSR1)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode != 0  # torchrun: the ranks exited with 75
    assert out.count('exitcode  : 75') == 2, out[-3000:]  # both, agreed
    stopped = [  # logged by rank 0 (other ranks log errors only)
        int(line.split('stopped after iteration ')[1].split(',')[0])
        for line in out.splitlines() if 'SIGUSR1 received' in line
    ]
    assert len(stopped) == 1, out[-3000:]
    stopped = stopped[0]
    assert 3 <= stopped < ITERS
    assert find_resume_checkpoint(str(work)) == str(work /
                                                    f'iter_{stopped}.pth')
    out = _run(cmd + ['--resume', 'auto'], env=_dist_env())
    assert f'resumed epoch: 0, iter: {stopped}' in out
    _assert_same_weights(work / f'iter_{ITERS}.pth',
                         references[2] / f'iter_{ITERS}.pth')


@pytest.mark.slow
def test_a_killed_rank_is_restarted_and_the_group_resumes(
        references, tiny_coco, tmp_path):
    """SIGKILL to rank 1 with MAX_RESTARTS=1: torchrun restarts the group,
    which resumes from the newest checkpoint by itself and finishes with
    the uninterrupted job's weights, exit status 0."""
    config = _config(tmp_path, tiny_coco, hooks=_slow(tmp_path))
    work = tmp_path / 'work'
    proc = _start(
        _train_cmd(config, work, processes=2), _dist_env(MAX_RESTARTS='1'))
    _wait_for_iteration(str(tmp_path / 'ids_1.jsonl'), 4, proc)
    os.kill(int((tmp_path / 'pid_1').read_text()), signal.SIGKILL)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-3000:]
    assert 'resumed epoch: 0, iter: ' in out
    _assert_same_weights(work / f'iter_{ITERS}.pth',
                         references[2] / f'iter_{ITERS}.pth')


@pytest.mark.slow
def test_a_full_disk_stops_the_run_and_keeps_the_last_checkpoint(
        references, tiny_coco, tmp_path):
    """The write of iter_5.pth fails with ENOSPC: the run stops naming the
    file, the free space and the intact iter_4.pth; nothing was deleted
    (max_keep_ckpts=2); --resume auto then finishes exactly."""
    config = _config(tmp_path, tiny_coco)
    work = tmp_path / 'work'
    cmd = _train_cmd(config, work, '--cfg-options',
                     'default_hooks.checkpoint.max_keep_ckpts=2')
    out = _run(
        cmd, env=fault_tool_env(MMGC_TEST_DISK_FULL_ON='iter_5.pth'), expect=1)
    assert (f'checkpoint not saved at iteration 5: No space left on device '
            f'while writing {work}/iter_5.pth (') in out
    assert (f'MB free on {work}); iter_5.pth was not changed; training '
            f'stops. The last checkpoint ({work}/iter_4.pth) is intact and '
            'nothing was deleted') in out
    assert sorted(p for p in os.listdir(work)
                  if p.endswith('.pth')) == ['iter_3.pth', 'iter_4.pth']
    out = _run(cmd + ['--resume', 'auto'])
    assert 'resumed epoch: 0, iter: 4' in out
    _assert_same_weights(work / f'iter_{ITERS}.pth',
                         references[1] / f'iter_{ITERS}.pth')


@pytest.mark.slow
def test_resume_auto_passes_over_a_truncated_checkpoint(
        references, tiny_coco, tmp_path):
    """The newest checkpoint (iter_6, named by last_checkpoint) is cut in
    half: --resume auto warns naming both files and resumes from iter_5;
    --resume naming the bad file fails before training, naming it."""
    work = tmp_path / 'work'
    work.mkdir()
    for i in (4, 5, 6):
        shutil.copy(references[1] / f'iter_{i}.pth', work)
        time.sleep(0.01)  # distinct modification times
    atomic_write(work / 'last_checkpoint', str(work / 'iter_6.pth'))
    _truncate(work / 'iter_6.pth')
    cmd = _train_cmd(_config(tmp_path, tiny_coco), work)
    out = _run(cmd + ['--resume', str(work / 'iter_6.pth')], expect=1)
    assert (f"BadCheckpointError: --resume: '{work}/iter_6.pth' (") in out
    assert 'is not a complete torch.save file' in out
    assert 'pass another checkpoint, or --resume auto' in out
    assert not (work / f'iter_{ITERS}.pth').exists()
    out = _run(cmd + ['--resume'])  # no value: auto
    assert (f"--resume auto: passed over 1 bad checkpoint(s) ('{work}/"
            'iter_6.pth') in out
    assert f'resuming from {work}/iter_5.pth, the newest valid one' in out
    assert 'resumed epoch: 0, iter: 5' in out
    _assert_same_weights(work / f'iter_{ITERS}.pth',
                         references[1] / f'iter_{ITERS}.pth')


@pytest.mark.slow
def test_a_stalled_rank_fails_the_job_naming_it(tiny_coco, tmp_path):
    """Rank 1 sleeps 300 s after iteration 3; with dist_cfg.timeout=10 the
    job fails within a minute and a half, and rank 1 names itself, its
    phase and its stack (the sleeping hook)."""
    config = _config(
        tmp_path,
        tiny_coco,
        hooks=[dict(type='StallHook', rank=1, iteration=3, seconds=300)])
    start = time.time()
    out = _run(
        _train_cmd(
            config,
            tmp_path / 'work',
            '--cfg-options',
            'env_cfg.dist_cfg.timeout=10',
            processes=2),
        env=_dist_env(),
        expect=None,
        timeout=240)
    assert time.time() - start < 90, out[-3000:]
    assert re.search(
        r'rank 1 made no progress for \d+ s \(timeout 9 s, from '
        r'env_cfg.dist_cfg.timeout\): it has been in after_train_iter of '
        r'iteration 3 since; ending it with status 70', out), out[-3000:]
    assert 'reliability_faults.py' in out and 'in after_train_iter' in out
    assert 'exitcode  : 70' in out
