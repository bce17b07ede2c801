"""Shared fixtures: mmdet's default scope, configs and tiny data sets."""
import itertools
import os
import os.path as osp

import pytest
import torch
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


def randomize_(module: torch.nn.Module,
               seed: int = 0,
               std: float = 0.5,
               norm_stats: bool = False) -> None:
    """Give every parameter seeded ``N(0, std^2)`` values in place, so that
    zero-initialised output layers do not hide numerical differences.

    Args:
        module (nn.Module): The block (or any module).
        seed (int): Seed of the values.
        std (float): Their standard deviation.
        norm_stats (bool): Also the float buffers (norm running
            statistics); then every 1-d tensor, parameter or buffer, is
            drawn from ``U(0.1, 0.6)`` instead, so that variances and norm
            scales stay positive.
    """
    gen = torch.Generator().manual_seed(seed)
    tensors = (
        itertools.chain(module.parameters(), module.buffers())
        if norm_stats else module.parameters())
    with torch.no_grad():
        for t in tensors:
            if not t.is_floating_point():
                continue
            if norm_stats and t.dim() == 1:
                t.copy_(torch.rand(t.shape, generator=gen) * 0.5 + 0.1)
            else:
                t.copy_(torch.randn(t.shape, generator=gen) * std)


def tool_env() -> dict:
    """Environment for running the tools in child processes."""
    env = dict(os.environ)
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    env.setdefault('OMP_NUM_THREADS', '1')
    return env
