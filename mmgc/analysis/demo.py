"""The main job: synthetic data, training, COCO evaluation and drawings of
the demo config, end to end on a CPU.

Used by ``tools/run_demo.py`` (whose docstring lists the phases). The
training and evaluation run as child processes of the repository's own
tools (``tools/train.py`` or ``tools/dist_train.sh``, ``tools/test.py``),
as a user would run them, so :class:`MainJob` needs the repository root.
"""
import contextlib
import glob
import json
import os
import os.path as osp
import pickle
import socket
import subprocess
import sys
from typing import List, Optional, Tuple

from mmengine.config import Config, DictAction

#: The demo config, relative to the repository root.
CONFIG = osp.join('configs', 'demo', 'gc_r50_mask_synthetic.py')
#: Columns of the printed AP table (suffixes of ``coco/<task>_``).
METRIC_ROWS = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')
#: Drawings on the contact sheet.
SHEET_IMAGES = 16


class StepFailed(RuntimeError):
    """A phase of the main job cannot go on (the message says why)."""


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def newest_log(work_dir: str) -> str:
    """The mmengine log file of the latest run in ``work_dir``."""
    logs = glob.glob(osp.join(work_dir, '*', '*.log'))
    return max(logs, key=osp.getmtime) if logs else '(none)'


def ap_table(metrics: dict) -> str:
    """bbox and segm rows of :data:`METRIC_ROWS`, ``nan`` where missing."""
    lines = [f'{"":8s}' + ''.join(f'{name:>9s}' for name in METRIC_ROWS)]
    for task in ('bbox', 'segm'):
        lines.append(f'{task:8s}' + ''.join(
            f'{metrics.get(f"coco/{task}_{name}", float("nan")):9.3f}'
            for name in METRIC_ROWS))
    return '\n'.join(lines)


class MainJob:
    """The phases of the main job, in the order they run.

    Args:
        root (str): Repository root (the tools are run from there).
        config (str): Demo config, relative to ``root`` or absolute.
        work_dir (str): Checkpoints, logs, metrics and drawings.
        data_root (str): The synthetic data set (made if missing).
        num_train (int): Synthetic training images.
        num_val (int): Synthetic validation images.
        procs (int): Training processes (``tools/dist_train.sh`` with gloo
            when > 1), each with ``cpu_count / procs`` threads and
            ``batch / procs`` images.
        cfg_options (list[str]): ``key=value`` overrides, passed on to the
            tools.
        verbose (bool): The tools' full logs on the console instead of
            progress bars.
    """

    def __init__(self,
                 root: str,
                 config: str,
                 work_dir: str,
                 data_root: str,
                 num_train: int,
                 num_val: int,
                 procs: int,
                 cfg_options: List[str],
                 verbose: bool = False) -> None:
        self.root, self.config, self.work_dir = root, config, work_dir
        self.data_dir = data_root  # as given, for generating and printing
        self.data_root = data_root.rstrip('/') + '/'  # for the configs
        self.num_train, self.num_val = num_train, num_val
        self.procs, self.verbose = procs, verbose
        self.options = self._data_options() + list(cfg_options)
        self.cfg = Config.fromfile(config)
        self.cfg.merge_from_dict({
            key: DictAction._parse_iterable(value)
            for key, value in (option.split('=', 1) for option in self.options)
        })
        self.max_iters = self.cfg.train_cfg.max_iters
        self.checkpoint = osp.join(work_dir, f'iter_{self.max_iters}.pth')
        self.metrics_file = osp.join(work_dir, 'metrics.json')
        self.preds_file = osp.join(work_dir, 'predictions.pkl')
        self.draw_dir = osp.join(work_dir, 'predictions')
        self.sheet_file = osp.join(work_dir, 'predictions_sheet.png')

    def _data_options(self) -> List[str]:
        """``--cfg-options`` pointing every loader and evaluator at
        ``data_root`` (and gloo for CPU processes)."""
        import torch
        ann_val = self.data_root + 'annotations/instances_val.json'
        options = [
            f'{loader}.dataset.data_root={self.data_root}'
            for loader in ('train_dataloader', 'val_dataloader',
                           'test_dataloader')
        ]
        options += [
            f'{evaluator}.ann_file={ann_val}'
            for evaluator in ('val_evaluator', 'test_evaluator')
        ]
        if not torch.cuda.is_available():  # CPU processes talk over gloo
            options.append('env_cfg.dist_cfg.backend=gloo')
        return options

    def _run(self, cmd: List[str], **env_vars: str) -> None:
        """Run a tool in a child process from the repository root.

        Raises:
            StepFailed: If it exits with an error.
        """
        if self.verbose:
            print('$ ' + ' '.join(cmd), flush=True)
        env = dict(os.environ)
        env.setdefault('MALLOC_MMAP_THRESHOLD_', str(1 << 20))  # fast malloc
        env.update(env_vars)
        result = subprocess.run(cmd, cwd=self.root, env=env)
        if result.returncode != 0:
            raise StepFailed(f'step failed with exit code '
                             f'{result.returncode}: {" ".join(cmd)}')

    def _tool_args(self) -> List[str]:
        """Console and ``--cfg-options`` arguments of both tools."""
        console = [] if self.verbose else ['--progress']
        return console + ['--cfg-options', *self.options]

    def generate_data(self) -> None:
        """Phase 1: the synthetic data set, with a progress bar when made."""
        from mmgc.datasets import generate_synthetic_coco
        from mmgc.utils import ProgressBar
        bar = None

        def progress() -> None:
            nonlocal bar
            if bar is None:
                bar = ProgressBar(self.num_train + self.num_val, 'generate',
                                  'img')
            bar.update()

        info = generate_synthetic_coco(
            self.data_dir,
            num_train=self.num_train,
            num_val=self.num_val,
            progress=progress)
        counts = (f'{info["num_train_images"]} train / '
                  f'{info["num_val_images"]} val images, '
                  f'{info["num_train_annotations"]} / '
                  f'{info["num_val_annotations"]} objects')
        if bar is not None:
            bar.finish(counts)
        else:
            print(f'generate  reusing {self.data_dir}: {counts}', flush=True)

    def train(self, retrain: bool = False) -> Optional[str]:
        """Phase 2: train, or reuse a finished run unless ``retrain``; an
        interrupted run resumes.

        Returns:
            str, optional: The training log, None when a run was reused.

        Raises:
            StepFailed: If ``procs`` does not divide the batch size, or
                training fails.
        """
        threads = max(1, (os.cpu_count() or 1) // self.procs)
        if osp.isfile(self.checkpoint) and not retrain:
            print(
                f'train     found a finished training run '
                f'({self.checkpoint}); reusing it (pass --retrain to '
                'train again)',
                flush=True)
            return None
        # no validation inside training: evaluate() tests the final model
        train_args = [
            self.config, '--work-dir', self.work_dir, *self._tool_args(),
            'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None'
        ]
        batch = self.cfg.train_dataloader.batch_size
        if batch % self.procs:
            raise StepFailed(f'--procs={self.procs} must divide the batch '
                             f'size {batch}')
        if self.procs == 1:
            cmd = [sys.executable, 'tools/train.py', *train_args]
        else:  # same total batch (and schedule), split over the processes
            cmd = [
                'bash', 'tools/dist_train.sh', self.config,
                str(self.procs), *train_args[1:],
                f'train_dataloader.batch_size={batch // self.procs}'
            ]
        if (not retrain
                and osp.isfile(osp.join(self.work_dir, 'last_checkpoint'))):
            cmd.append('--resume')  # continue an interrupted run
        print(
            f'train     {self.max_iters} iterations of {batch} images on '
            f'{self.procs} process(es) x {threads} thread(s)',
            flush=True)
        # MKL_NUM_THREADS is set because mmengine warns when it sets it
        self._run(
            cmd,
            OMP_NUM_THREADS=str(threads),
            MKL_NUM_THREADS=str(threads),
            PYTHON=sys.executable,
            PORT=str(free_port()))
        return newest_log(self.work_dir)

    def evaluate(self) -> Tuple[dict, str]:
        """Phase 3: COCO bbox and segm mAP of the final checkpoint through
        ``tools/test.py``, saving the predictions.

        Returns:
            tuple: The metrics and the test log.
        """
        self._run([
            sys.executable, 'tools/test.py', self.config, self.checkpoint,
            '--work-dir', self.work_dir, '--out', self.preds_file,
            '--metrics-out', self.metrics_file, *self._tool_args()
        ],
                  OMP_NUM_THREADS=str(os.cpu_count() or 1))
        with open(self.metrics_file) as f:
            return json.load(f), newest_log(self.work_dir)

    def draw(
            self,
            score_thr: float,
            num_drawings: Optional[int] = None
    ) -> Tuple[List[str], Optional[str]]:
        """Phase 4: ground truth beside the predictions above ``score_thr``
        (one PNG per val image, the first ``num_drawings`` if given) and a
        contact sheet of the first :data:`SHEET_IMAGES`.

        Returns:
            tuple: The drawings and the sheet (None without drawings).
        """
        from mmgc.visualization import draw_predictions, save_contact_sheet
        with open(self.preds_file, 'rb') as f:
            predictions = pickle.load(f)
        drawings = draw_predictions(self._test_set(), predictions,
                                    self.draw_dir, score_thr, num_drawings)
        sheet = (
            save_contact_sheet(drawings[:SHEET_IMAGES], self.sheet_file)
            if drawings else None)
        return drawings, sheet

    def _test_set(self):
        """The config's test data set (for drawing the ground truth)."""
        from mmdet.registry import DATASETS
        from mmengine.registry import init_default_scope
        init_default_scope('mmdet')
        with open(os.devnull, 'w') as devnull, \
                contextlib.redirect_stdout(devnull):  # pycocotools' prints
            return DATASETS.build(self.cfg.test_dataloader.dataset)


__all__ = [
    'CONFIG', 'METRIC_ROWS', 'SHEET_IMAGES', 'StepFailed', 'free_port',
    'newest_log', 'ap_table', 'MainJob'
]
