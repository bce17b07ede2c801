"""The main job on the embedded default, end to end on a CPU.

1. generate the synthetic COCO-format data set (``data/synthetic``, once);
2. train the width-reduced GC Mask R-CNN of
   ``configs/demo/gc_r50_mask_synthetic.py`` with ``tools/dist_train.sh``
   on 2 CPU processes (``tools/train.py`` with ``--procs 1``; an
   interrupted run resumes; a finished one is reused unless ``--retrain``);
3. evaluate it with ``tools/test.py`` (COCO bbox and segm mAP through
   pycocotools), saving the predictions;
4. draw ground truth beside the predictions above ``--score-thr`` (one PNG
   per val image) and a contact sheet of the first 16;
5. print the AP table and where the metrics, logs and drawings are.

The console shows one progress bar per phase; the tools' full mmengine
logs go to the work dir (``--verbose``: everything on the console).

Usage:
    python tools/run_demo.py [--work-dir work_dirs/demo] [--retrain]
        [--procs N] [--score-thr 0.5] [--num-drawings N] [--verbose]
        [--cfg-options k=v ...]
"""
import argparse
import contextlib
import glob
import json
import os
import os.path as osp
import pickle
import socket
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
CONFIG = osp.join('configs', 'demo', 'gc_r50_mask_synthetic.py')
METRIC_ROWS = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')
SHEET_IMAGES = 16  # drawings on the contact sheet


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=CONFIG, help='demo config')
    parser.add_argument('--work-dir', default=osp.join('work_dirs', 'demo'))
    parser.add_argument('--data-root', default=osp.join('data', 'synthetic'))
    parser.add_argument('--num-train', type=int, default=600,
                        help='synthetic training images')
    parser.add_argument('--num-val', type=int, default=100,
                        help='synthetic validation images')
    parser.add_argument('--retrain', action='store_true',
                        help='train again even if a finished run exists')
    parser.add_argument(
        '--procs', type=int, default=min(2, os.cpu_count() or 1),
        help='training processes (tools/dist_train.sh with gloo when > 1), '
        'each with cpu_count/procs threads and batch/procs images; on a '
        '2-core CPU two 1-thread processes train about 1.5x faster than '
        'one 2-thread process (mmcv\'s CPU RoIAlign and NMS are serial)')
    parser.add_argument(
        '--score-thr', type=float, default=0.5,
        help='lowest prediction score drawn (default 0.5; COCO mAP uses '
        'every prediction regardless)')
    parser.add_argument(
        '--num-drawings', type=int, default=None,
        help='draw only the first N val images (default: all)')
    parser.add_argument(
        '--verbose', action='store_true',
        help='show the tools\' full mmengine logs and commands on the '
        'console instead of progress bars')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='passed on to tools/train.py and tools/test.py')
    args = parser.parse_args()
    if args.procs < 1:
        parser.error(f'--procs={args.procs} must be >= 1')
    if not 0 <= args.score_thr <= 1:
        parser.error(f'--score-thr={args.score_thr} must be in [0, 1]')
    if args.num_drawings is not None and args.num_drawings < 0:
        parser.error(f'--num-drawings={args.num_drawings} must be >= 0')
    return args


def run(cmd: list, verbose: bool, **env_vars: str) -> None:
    """Run a tool in a child process, stopping the demo if it fails."""
    if verbose:
        print('$ ' + ' '.join(cmd), flush=True)
    env = dict(os.environ)
    env.setdefault('MALLOC_MMAP_THRESHOLD_', str(1 << 20))  # faster malloc
    env.update(env_vars)
    result = subprocess.run(cmd, cwd=ROOT, env=env)
    if result.returncode != 0:
        sys.exit(f'run_demo: step failed with exit code {result.returncode}:'
                 f' {" ".join(cmd)}')


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def final_checkpoint(work_dir: str, max_iters: int) -> str:
    return osp.join(work_dir, f'iter_{max_iters}.pth')


def newest_log(work_dir: str) -> str:
    """The mmengine log file of the latest run in ``work_dir``."""
    logs = glob.glob(osp.join(work_dir, '*', '*.log'))
    return max(logs, key=osp.getmtime) if logs else '(none)'


def generate_data(args: argparse.Namespace) -> None:
    """Phase 1: the synthetic data set, with a progress bar when made."""
    from mmgc.datasets import generate_synthetic_coco
    from mmgc.utils import ProgressBar
    bar = None

    def progress() -> None:
        nonlocal bar
        if bar is None:
            bar = ProgressBar(args.num_train + args.num_val, 'generate',
                              'img')
        bar.update()

    info = generate_synthetic_coco(args.data_root, num_train=args.num_train,
                                   num_val=args.num_val, progress=progress)
    counts = (f'{info["num_train_images"]} train / {info["num_val_images"]} '
              f'val images, {info["num_train_annotations"]} / '
              f'{info["num_val_annotations"]} objects')
    if bar is not None:
        bar.finish(counts)
    else:
        print(f'generate  reusing {args.data_root}: {counts}', flush=True)


def build_test_set(cfg):
    """The config's test data set (for drawing the ground truth)."""
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    with open(os.devnull, 'w') as devnull, \
            contextlib.redirect_stdout(devnull):  # pycocotools' prints
        return DATASETS.build(cfg.test_dataloader.dataset)


def main() -> None:
    args = parse_args()
    os.chdir(ROOT)
    if not args.verbose:
        from mmgc.utils import filter_third_party_warnings
        filter_third_party_warnings()
    import torch
    from mmengine.config import Config, DictAction

    from mmgc.visualization import draw_predictions, save_contact_sheet

    start = time.time()
    generate_data(args)

    data_root = args.data_root.rstrip('/') + '/'
    ann_val = data_root + 'annotations/instances_val.json'
    options = [f'{loader}.dataset.data_root={data_root}' for loader in (
        'train_dataloader', 'val_dataloader', 'test_dataloader')]
    options += [f'{evaluator}.ann_file={ann_val}'
                for evaluator in ('val_evaluator', 'test_evaluator')]
    if not torch.cuda.is_available():  # CPU processes talk over gloo
        options.append('env_cfg.dist_cfg.backend=gloo')
    options += args.cfg_options
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict({
        key: DictAction._parse_iterable(value)
        for key, value in (option.split('=', 1) for option in options)
    })
    max_iters = cfg.train_cfg.max_iters
    extra = ['--cfg-options', *options]
    console = [] if args.verbose else ['--progress']
    ckpt = final_checkpoint(args.work_dir, max_iters)
    threads = max(1, (os.cpu_count() or 1) // args.procs)
    train_log = None
    if osp.isfile(ckpt) and not args.retrain:
        print(f'train     found a finished training run ({ckpt}); reusing '
              'it (pass --retrain to train again)', flush=True)
    else:
        # no validation inside training: step 3 evaluates the final model
        train_args = [args.config, '--work-dir', args.work_dir, *console,
                      *extra, 'val_cfg=None', 'val_dataloader=None',
                      'val_evaluator=None']
        batch = cfg.train_dataloader.batch_size
        if batch % args.procs:
            sys.exit(f'run_demo: --procs={args.procs} must divide the '
                     f'batch size {batch}')
        if args.procs == 1:
            train_cmd = [sys.executable, 'tools/train.py', *train_args]
        else:  # same total batch (and schedule), split over the processes
            train_cmd = ['bash', 'tools/dist_train.sh', args.config,
                         str(args.procs), *train_args[1:],
                         f'train_dataloader.batch_size={batch // args.procs}']
        if (not args.retrain
                and osp.isfile(osp.join(args.work_dir, 'last_checkpoint'))):
            train_cmd.append('--resume')  # continue an interrupted run
        print(f'train     {max_iters} iterations of {batch} images on '
              f'{args.procs} process(es) x {threads} thread(s)', flush=True)
        # (MKL_NUM_THREADS set: mmengine warns when it sets it itself)
        run(train_cmd, args.verbose, OMP_NUM_THREADS=str(threads),
            MKL_NUM_THREADS=str(threads), PYTHON=sys.executable,
            PORT=str(free_port()))
        train_log = newest_log(args.work_dir)
    train_done = time.time()

    metrics_file = osp.join(args.work_dir, 'metrics.json')
    preds_file = osp.join(args.work_dir, 'predictions.pkl')
    run([sys.executable, 'tools/test.py', args.config, ckpt,
         '--work-dir', args.work_dir, '--out', preds_file,
         '--metrics-out', metrics_file, *console, *extra], args.verbose,
        OMP_NUM_THREADS=str(os.cpu_count() or 1))
    test_log = newest_log(args.work_dir)
    with open(metrics_file) as f:
        metrics = json.load(f)

    with open(preds_file, 'rb') as f:
        predictions = pickle.load(f)
    draw_dir = osp.join(args.work_dir, 'predictions')
    drawings = draw_predictions(build_test_set(cfg), predictions, draw_dir,
                                args.score_thr, args.num_drawings)
    sheet = (save_contact_sheet(
        drawings[:SHEET_IMAGES], osp.join(args.work_dir,
                                          'predictions_sheet.png'))
             if drawings else None)

    print('\nCOCO AP on the synthetic val split '
          f'({args.config}, {max_iters} iterations)')
    print(f'{"":8s}' + ''.join(f'{name:>9s}' for name in METRIC_ROWS))
    for task in ('bbox', 'segm'):
        print(f'{task:8s}' + ''.join(
            f'{metrics.get(f"coco/{task}_{name}", float("nan")):9.3f}'
            for name in METRIC_ROWS))
    print(f'\ntrain {train_done - start:.0f} s, total '
          f'{time.time() - start:.0f} s')
    print(f'work dir:    {osp.abspath(args.work_dir)}')
    print(f'checkpoint:  {osp.abspath(ckpt)}')
    print(f'metrics:     {osp.abspath(metrics_file)}')
    if train_log is not None:
        print(f'train log:   {osp.abspath(train_log)}')
    print(f'test log:    {osp.abspath(test_log)}')
    print(f'drawings:    {osp.abspath(draw_dir)} ({len(drawings)} PNG, '
          f'score >= {args.score_thr:g})')
    if sheet is not None:
        print(f'sheet:       {osp.abspath(sheet)} (first '
              f'{min(len(drawings), SHEET_IMAGES)} val images)')


if __name__ == '__main__':
    main()
