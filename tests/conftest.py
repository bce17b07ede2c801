"""Shared fixtures: mmdet's default scope, configs and tiny data sets."""
import os
import os.path as osp

import pytest
from mmengine.registry import init_default_scope

import mmgc  # noqa: F401  (registers the blocks)

#: The repository root: configs, tools and the checkout's mmgc.
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

init_default_scope('mmdet')

DEMO_CONFIG = osp.join(ROOT, 'configs', 'demo', 'gc_r50_mask_synthetic.py')


@pytest.fixture(scope='session')
def repo_root() -> str:
    return ROOT


@pytest.fixture(scope='session')
def tiny_coco(tmp_path_factory) -> str:
    """A small synthetic COCO set (12 train / 6 val images), made once."""
    from mmgc.datasets import generate_synthetic_coco
    root = str(tmp_path_factory.mktemp('tiny_coco'))
    generate_synthetic_coco(root, num_train=12, num_val=6, seed=1)
    return root


def data_cfg_options(data_root: str) -> list:
    """``--cfg-options`` pointing the demo config at another data root."""
    data_root = data_root.rstrip('/') + '/'
    ann_val = data_root + 'annotations/instances_val.json'
    return [
        f'train_dataloader.dataset.data_root={data_root}',
        f'val_dataloader.dataset.data_root={data_root}',
        f'test_dataloader.dataset.data_root={data_root}',
        f'val_evaluator.ann_file={ann_val}',
        f'test_evaluator.ann_file={ann_val}',
    ]


def tool_env() -> dict:
    """Environment for running the tools in child processes."""
    env = dict(os.environ)
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    env.setdefault('OMP_NUM_THREADS', '1')
    return env
