"""Shared fixtures: mmdet's default scope, configs and tiny data sets."""
import copy
import os
import os.path as osp
from typing import Optional, Sequence

import pytest
from mmengine.config import Config
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


def fault_tool_env(**extra: str) -> dict:
    """:func:`tool_env` with tests/ importable (``reliability_faults``,
    ``toy_detector`` through ``custom_imports``) and ``extra`` variables."""
    env = tool_env()
    env['PYTHONPATH'] = osp.join(ROOT,
                                 'tests') + os.pathsep + env['PYTHONPATH']
    env.update(extra)
    return env


def toy_train_config(tmp_path,
                     data_root: str,
                     train_cfg: dict,
                     dataset: Optional[dict] = None,
                     hooks: Sequence[dict] = (),
                     name: str = 'toy',
                     **dataloader) -> str:
    """The demo config with ``ToyDetector`` (tests/toy_detector.py) on
    ``data_root``, written to ``tmp_path/<name>.py`` (tools take a path).

    No validation; a checkpoint every iteration; each rank records its
    image ids in ``tmp_path/ids_<rank>.jsonl`` (``SampleRecorderHook``).

    Args:
        tmp_path (Path): Where the config and the id records go.
        data_root (str): A synthetic COCO set (``tiny_coco``).
        train_cfg (dict): The train loop.
        dataset (dict, optional): A dataset wrapper whose ``'train'``
            entries stand for the demo's training set, e.g.
            ``dict(type='ConcatDataset', datasets=['train', 'train'])``.
        hooks (Sequence[dict]): More custom hooks.
        name (str): Config file name.
        **dataloader: ``train_dataloader`` settings (``batch_size`` 2 and
            ``num_workers`` 0 unless given).

    Returns:
        str: Path of the config file.
    """
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.merge_from_dict(
        dict(o.split('=', 1) for o in data_cfg_options(data_root)))
    train_set = cfg.train_dataloader.dataset
    if dataset is not None:
        dataset = copy.deepcopy(dataset)
        dataset['datasets'] = [
            train_set if d == 'train' else d for d in dataset['datasets']
        ]
    cfg.custom_imports = dict(
        imports=['mmgc', 'toy_detector', 'reliability_faults'],
        allow_failed_imports=False)
    cfg.model = dict(
        type='ToyDetector', data_preprocessor=cfg.model.data_preprocessor)
    cfg.train_dataloader = dict(
        dict(batch_size=2, num_workers=0, persistent_workers=False),
        dataset=dataset or train_set,
        **dataloader)
    cfg.train_cfg = train_cfg
    for key in ('val', 'test'):
        cfg[f'{key}_dataloader'] = cfg[f'{key}_cfg'] = None
        cfg[f'{key}_evaluator'] = None
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', by_epoch=False, interval=1, max_keep_ckpts=-1)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.visualization = dict(type='DetVisualizationHook')
    cfg.custom_hooks = [
        dict(
            type='SampleRecorderHook',
            path=str(tmp_path / 'ids_{rank}.jsonl')), *hooks
    ]
    path = tmp_path / f'{name}.py'
    cfg.dump(str(path))
    return str(path)
