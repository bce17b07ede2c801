"""The launch scripts run the tools with the project's Python.

``tools/dist_train.sh``, ``dist_test.sh``, ``slurm_train.sh`` and
``slurm_test.sh`` source ``tools/find_python.sh``: ``$PYTHON`` if set, else
the active virtualenv's ``python``, else the repository's ``.venv``, else
``python`` on PATH. Checked on a copy of the scripts with stand-in
interpreters (fast), and once for real from a fresh shell.
"""
import os
import os.path as osp
import shutil
import stat
import subprocess

import pytest
from conftest import DEMO_CONFIG, ROOT

SCRIPTS = {  # script: arguments
    'dist_train.sh': ['cfg.py', '2', '--work-dir', 'w'],
    'dist_test.sh': ['cfg.py', 'ckpt.pth', '2'],
    'slurm_train.sh': ['part', 'job', 'cfg.py', 'w'],
    'slurm_test.sh': ['part', 'job', 'cfg.py', 'ckpt.pth'],
}


def write_exe(path, name: str) -> None:
    """A stand-in program that appends ``name`` and its arguments to
    ``$CALLS``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('#!/bin/sh\necho "%s $*" >> "$CALLS"\n' % name)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def fake_repo(tmp_path):
    """The scripts in a copy of ``tools/`` next to a stand-in ``.venv``,
    a stand-in ``python`` and ``srun`` on a PATH of their own."""
    repo = tmp_path / 'repo'
    (repo / 'tools').mkdir(parents=True)
    for name in [*SCRIPTS, 'find_python.sh']:
        shutil.copy(osp.join(ROOT, 'tools', name), repo / 'tools' / name)
    write_exe(repo / '.venv' / 'bin' / 'python', 'venv-python')
    write_exe(tmp_path / 'bin' / 'python', 'path-python')
    write_exe(tmp_path / 'bin' / 'srun', 'srun')
    return repo


def run_script(repo, name: str, **env_vars: str) -> list:
    """Run a copied script in a fresh environment; the calls it made."""
    calls = repo.parent / 'calls.txt'
    calls.unlink(missing_ok=True)
    env = {
        'PATH': f'{repo.parent / "bin"}:/usr/bin:/bin',
        'CALLS': str(calls),
        **env_vars
    }
    result = subprocess.run(
        ['bash', str(repo / 'tools' / name), *SCRIPTS[name]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60)
    assert result.returncode == 0, result.stderr
    return calls.read_text().splitlines()


@pytest.mark.parametrize('name', ['dist_train.sh', 'dist_test.sh'])
def test_dist_scripts_use_the_project_venv_from_a_fresh_shell(fake_repo, name):
    calls = run_script(fake_repo, name)
    assert len(calls) == 1
    assert calls[0].startswith('venv-python -m torch.distributed.run ')
    assert '--nproc_per_node=2' in calls[0].split()


@pytest.mark.parametrize('name', ['slurm_train.sh', 'slurm_test.sh'])
def test_slurm_scripts_run_the_project_venv_on_the_nodes(fake_repo, name):
    calls = run_script(fake_repo, name)
    assert len(calls) == 1 and calls[0].startswith('srun ')
    venv_python = str(fake_repo / '.venv' / 'bin' / 'python')
    assert f' {venv_python} -u {fake_repo}/tools/' in calls[0]


def interpreter(calls: list, repo) -> str:
    """Which Python a script ran: ``'venv'``, ``'path'`` or the path of
    another. dist_*.sh run it (the stand-ins say their name); slurm_*.sh
    hand it to srun (the word before ``-u``)."""
    words = calls[0].split()
    if words[0] != 'srun':
        return {
            'venv-python': 'venv',
            'path-python': 'path'
        }.get(words[0], words[0])
    program = words[words.index('-u') - 1]
    return {
        str(repo / '.venv' / 'bin' / 'python'): 'venv',
        'python': 'path'
    }.get(program, program)


@pytest.mark.parametrize('name', list(SCRIPTS))
def test_an_active_virtualenv_or_PYTHON_wins_over_the_project_venv(
        fake_repo, name):
    assert interpreter(run_script(fake_repo, name), fake_repo) == 'venv'
    calls = run_script(fake_repo, name, VIRTUAL_ENV='/some/env')
    assert interpreter(calls, fake_repo) == 'path'
    calls = run_script(
        fake_repo, name, CONDA_PREFIX='/conda/envs/x', CONDA_DEFAULT_ENV='x')
    assert interpreter(calls, fake_repo) == 'path'
    # conda's auto-activated base is not a choice: the project's venv
    calls = run_script(
        fake_repo, name, CONDA_PREFIX='/conda', CONDA_DEFAULT_ENV='base')
    assert interpreter(calls, fake_repo) == 'venv'
    own = fake_repo.parent / 'own' / 'python3'
    write_exe(own, 'own-python')
    calls = run_script(
        fake_repo, name, PYTHON=str(own), VIRTUAL_ENV='/some/env')
    assert interpreter(calls, fake_repo) in ('own-python', str(own))


def test_without_a_venv_the_scripts_use_python_on_path(fake_repo):
    shutil.rmtree(fake_repo / '.venv')
    calls = run_script(fake_repo, 'dist_train.sh')
    assert calls[0].startswith('path-python -m torch.distributed.run ')


@pytest.mark.skipif(
    not osp.isfile(osp.join(ROOT, '.venv', 'bin', 'python')),
    reason='the repository has no .venv (make setup)')
def test_dist_train_runs_from_a_fresh_shell_without_the_venv_on_path():
    """As the README prints it, from a shell where ``python`` is not the
    venv's (or does not exist): torchrun starts and train.py imports."""
    env = {
        'PATH': '/usr/bin:/bin',
        'HOME': os.environ.get('HOME', '/tmp'),
        'OMP_NUM_THREADS': '1'
    }
    result = subprocess.run(
        ['tools/dist_train.sh', DEMO_CONFIG, '1', '--help'],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert 'usage: train.py' in result.stdout
    assert '--resume' in result.stdout


def test_slurm_train_signals_resumes_and_requeues_a_preempted_job(
        fake_repo, tmp_path):
    """srun gets --signal=USR1@90 and train.py --resume auto; a run that
    exits 75 (preempted) inside a job is requeued, and the status kept."""
    calls = run_script(fake_repo, 'slurm_train.sh')
    assert ' --signal=USR1@90 ' in calls[0]
    assert calls[0].endswith('--launcher=slurm --resume auto')
    calls = run_script(fake_repo, 'slurm_train.sh', SIGNAL_MARGIN='0')
    assert '--signal' not in calls[0]

    srun = tmp_path / 'bin' / 'srun'  # the job step ends preempted
    srun.write_text('#!/bin/sh\necho "srun $*" >> "$CALLS"\nexit 75\n')
    write_exe(tmp_path / 'bin' / 'scontrol', 'scontrol')
    calls_file = tmp_path / 'calls.txt'
    for job_id, requeue, expected in [('123', '1', ['scontrol requeue 123']),
                                      ('123', '0', []), ('', '1', [])]:
        calls_file.unlink(missing_ok=True)
        result = subprocess.run(
            [
                'bash',
                str(fake_repo / 'tools' / 'slurm_train.sh'),
                *SCRIPTS['slurm_train.sh'], '--resume', 'w/iter_4.pth'
            ],
            env={
                'PATH': f'{tmp_path / "bin"}:/usr/bin:/bin',
                'CALLS': str(calls_file),
                'SLURM_JOB_ID': job_id,
                'REQUEUE': requeue
            },
            capture_output=True,
            text=True,
            timeout=60)
        assert result.returncode == 75
        lines = calls_file.read_text().splitlines()
        assert lines[0].endswith('--resume w/iter_4.pth')  # the user's
        assert '--resume auto' not in lines[0]
        assert lines[1:] == expected


def test_dist_train_passes_the_restart_count_to_torchrun(fake_repo):
    assert '--max-restarts=0' in run_script(fake_repo,
                                            'dist_train.sh')[0].split()
    calls = run_script(fake_repo, 'dist_train.sh', MAX_RESTARTS='2')
    assert '--max-restarts=2' in calls[0].split()
