"""``pip install .`` gives a working package that does not need the
checkout: its configs, tools and model-index.yml are in ``mmgc/.mim``.

The slow test builds the wheel from a copy of the checkout, installs it
(``--no-deps``) into a throwaway virtual environment that reuses this
environment's packages (torch, mmcv, mmdet) through a ``.pth`` line, and
uses it from a directory outside the checkout, without the checkout on
``PYTHONPATH``.
"""
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest
from conftest import ROOT

from mmgc.utils import get_config_path, package_root, shipped_path

#: What a wheel is built from (setup.py's inputs).
SOURCES = ('setup.py', 'MANIFEST.in', 'README.md', 'requirements.txt',
           'model-index.yml', 'mmgc', 'configs', 'tools')

INSTALLED_CHECK = r'''
import json, os.path as osp, sys
import mmgc
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmgc.utils import get_config_path, package_root
from mmgc.utils.complexity import (build_detector, count_params,
                                   default_baseline, load_config)

init_default_scope('mmdet')
config = get_config_path('gc_r50_mask')
baseline = default_baseline('MaskRCNN', config)
backbone = MODELS.build(Config.fromfile(config).model.backbone)
demo = Config.fromfile(get_config_path('demo/gc_r50_mask_synthetic'))
params = {name: count_params(build_detector(load_config(path)))
          for name, path in (('gc', config), ('baseline', baseline))}
print(json.dumps(dict(
    mmgc=mmgc.__file__, sys_path=sys.path, root=package_root(),
    config=config, baseline=baseline, backbone=type(backbone).__name__,
    gc_blocks=sum(type(m).__name__ == 'GCBlock' for m in backbone.modules()),
    demo_neck_channels=demo.model.neck.out_channels, params=params)))
'''


def test_package_root_in_a_checkout():
    """Run from the checkout: mmgc/.mim when an editable install linked it,
    else the checkout itself; either way the same files."""
    root = package_root()
    assert root in (ROOT, osp.join(ROOT, 'mmgc', '.mim'))
    assert osp.samefile(
        shipped_path('tools', 'train.py'), osp.join(ROOT, 'tools', 'train.py'))
    assert osp.samefile(
        get_config_path('gc_r50_mask'),
        osp.join(ROOT, 'configs', 'gc_r50_mask.py'))
    with pytest.raises(FileNotFoundError, match="ships no config 'nope.py'"):
        get_config_path('nope')


def _inside(path: str, folder: str) -> bool:
    path, folder = osp.realpath(path), osp.realpath(folder)
    return path == folder or path.startswith(folder + os.sep)


def _run(cmd, **kwargs):
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, (cmd, result.stdout[-3000:],
                                    result.stderr[-3000:])
    return result


def _throwaway_venv(path: str) -> str:
    """A venv seeing this environment's packages; its python."""
    try:
        subprocess.run([sys.executable, '-m', 'venv', '--without-pip', path],
                       check=True,
                       capture_output=True,
                       timeout=300)
    except (subprocess.CalledProcessError, OSError) as e:
        pytest.skip(f'cannot create a virtual environment here: {e}')
    python = osp.join(path, 'bin', 'python')
    site = _run([
        python, '-c', 'import sysconfig; '
        "print(sysconfig.get_paths()['purelib'])"
    ]).stdout.strip()
    # a plain path line: the stack's own .pth files (among them an editable
    # mmgc's) are not processed, so the only mmgc is the installed one
    with open(osp.join(site, 'mmgc_test_stack.pth'), 'w') as f:
        f.write(sysconfig.get_paths()['purelib'] + '\n')
    return python


@pytest.mark.slow
def test_wheel_installs_a_package_that_works_without_the_checkout(tmp_path):
    source = tmp_path / 'source'
    for name in SOURCES:
        src = osp.join(ROOT, name)
        if osp.isdir(src):
            shutil.copytree(
                src,
                source / name,
                ignore=shutil.ignore_patterns('__pycache__', '.mim',
                                              '*.egg-info'))
        else:
            os.makedirs(source, exist_ok=True)
            shutil.copyfile(src, source / name)
    _run([
        sys.executable, '-m', 'pip', 'wheel', '--no-deps',
        '--no-build-isolation', '--disable-pip-version-check', '-q', '-w',
        str(tmp_path / 'dist'),
        str(source)
    ])
    wheel, = os.listdir(tmp_path / 'dist')

    python = _throwaway_venv(str(tmp_path / 'venv'))
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.setdefault('OMP_NUM_THREADS', '1')
    _run([
        python, '-m', 'pip', 'install', '--no-deps', '--no-index',
        '--disable-pip-version-check', '-q',
        str(tmp_path / 'dist' / wheel)
    ],
         env=env)
    outside = tmp_path / 'elsewhere'
    outside.mkdir()

    check = _run([python, '-c', INSTALLED_CHECK], cwd=outside, env=env)
    info = json.loads(check.stdout.strip().splitlines()[-1])
    venv = str(tmp_path / 'venv')
    assert info['mmgc'].startswith(venv + os.sep), info['mmgc']
    # the reused stack may itself live in the checkout (.venv); nothing else
    # from the checkout may be importable
    stack = osp.realpath(sysconfig.get_paths()['purelib'])
    from_checkout = [
        p for p in info['sys_path']
        if p and _inside(p, ROOT) and not _inside(p, stack)
    ]
    assert not from_checkout, info['sys_path']
    mim = osp.join(osp.dirname(info['mmgc']), '.mim')
    assert info['root'] == mim
    assert info['config'] == osp.join(mim, 'configs', 'gc_r50_mask.py')
    assert info['baseline'] == osp.join(mim, 'configs', 'baseline_r50_mask.py')
    assert info['backbone'] == 'PluginResNet'
    assert info['gc_blocks'] == 4 + 6 + 3  # after conv3 of c3-c5
    assert info['demo_neck_channels'] == 64  # relative _base_ chain
    params = info['params']
    assert 0 < params['gc'] - params['baseline'] < 0.1 * params['baseline']

    tool = _run([
        python,
        osp.join(mim, 'tools', 'analysis_tools', 'config_table.py'),
        info['config'], info['baseline'], '--height', '64', '--width', '64'
    ],
                cwd=outside,
                env=env)
    row = next(line for line in tool.stdout.splitlines()
               if line.startswith('| `gc_r50_mask.py`'))
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert int(cells[1].replace(',', '')) == params['gc']
    delta = params['gc'] - params['baseline']
    assert int(re.sub('[+,]', '', cells[2])) == delta
    # paths it prints (warnings from the stack aside) are the installed ones
    printed = (tool.stdout + tool.stderr).replace(stack, '<stack>')
    assert ROOT + os.sep not in printed, printed
