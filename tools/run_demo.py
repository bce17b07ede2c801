"""The main job on the embedded default, end to end on a CPU.

1. generate the synthetic COCO-format data set (``data/synthetic``, once);
2. train the width-reduced GC Mask R-CNN of
   ``configs/demo/gc_r50_mask_synthetic.py`` with ``tools/dist_train.sh``
   on 2 CPU processes (``tools/train.py`` with ``--procs 1``; an
   interrupted run resumes; a finished one is reused unless ``--retrain``);
3. evaluate it with ``tools/test.py`` (COCO bbox and segm mAP through
   pycocotools), drawing predictions as PNG;
4. print the AP table and where the metrics JSON and drawings are.

Usage:
    python tools/run_demo.py [--work-dir work_dirs/demo] [--retrain]
        [--procs N] [--cfg-options k=v ...]
"""
import argparse
import glob
import json
import os
import os.path as osp
import socket
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
CONFIG = osp.join('configs', 'demo', 'gc_r50_mask_synthetic.py')
METRIC_ROWS = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')


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
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='passed on to tools/train.py and tools/test.py')
    return parser.parse_args()


def run(cmd: list, **env_vars: str) -> None:
    """Run a tool in a child process, stopping the demo if it fails."""
    print('$ ' + ' '.join(cmd), flush=True)
    env = dict(os.environ)
    env.setdefault('MALLOC_MMAP_THRESHOLD_', str(1 << 20))  # FIELD_NOTES §5
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


def main() -> None:
    args = parse_args()
    if args.procs < 1:
        sys.exit(f'run_demo: --procs={args.procs} must be >= 1')
    os.chdir(ROOT)
    from mmengine.config import Config, DictAction

    from mmgc.datasets import generate_synthetic_coco

    start = time.time()
    info = generate_synthetic_coco(args.data_root, num_train=args.num_train,
                                   num_val=args.num_val)
    print(f'data set: {info}', flush=True)

    data_root = args.data_root.rstrip('/') + '/'
    ann_val = data_root + 'annotations/instances_val.json'
    options = [f'{loader}.dataset.data_root={data_root}' for loader in (
        'train_dataloader', 'val_dataloader', 'test_dataloader')]
    options += [f'{evaluator}.ann_file={ann_val}'
                for evaluator in ('val_evaluator', 'test_evaluator')]
    options += args.cfg_options
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict({
        key: DictAction._parse_iterable(value)
        for key, value in (option.split('=', 1) for option in options)
    })
    max_iters = cfg.train_cfg.max_iters
    extra = ['--cfg-options', *options]
    ckpt = final_checkpoint(args.work_dir, max_iters)
    if osp.isfile(ckpt) and not args.retrain:
        print(f'found a finished training run ({ckpt}); reusing it '
              '(pass --retrain to train again)', flush=True)
    else:
        # no validation inside training: step 3 evaluates the final model
        train_args = [args.config, '--work-dir', args.work_dir, *extra,
                      'val_cfg=None', 'val_dataloader=None',
                      'val_evaluator=None']
        batch = cfg.train_dataloader.batch_size
        if batch % args.procs:
            sys.exit(f'run_demo: --procs={args.procs} must divide the '
                     f'batch size {batch}')
        threads = max(1, (os.cpu_count() or 1) // args.procs)
        if args.procs == 1:
            train_cmd = [sys.executable, 'tools/train.py', *train_args]
        else:  # same total batch (and schedule), split over the processes
            train_cmd = ['bash', 'tools/dist_train.sh', args.config,
                         str(args.procs), *train_args[1:],
                         f'train_dataloader.batch_size={batch // args.procs}']
        if (not args.retrain
                and osp.isfile(osp.join(args.work_dir, 'last_checkpoint'))):
            train_cmd.append('--resume')  # continue an interrupted run
        run(train_cmd, OMP_NUM_THREADS=str(threads), PYTHON=sys.executable,
            PORT=str(free_port()))
    train_done = time.time()

    metrics_file = osp.join(args.work_dir, 'metrics.json')
    run([sys.executable, 'tools/test.py', args.config, ckpt,
         '--work-dir', args.work_dir, '--show-dir', 'predictions',
         '--metrics-out', metrics_file, *extra])
    with open(metrics_file) as f:
        metrics = json.load(f)
    drawings = sorted(glob.glob(
        osp.join(args.work_dir, '*', 'predictions', '*.png')),
        key=osp.getmtime)
    draw_dir = osp.dirname(drawings[-1]) if drawings else '(none written)'

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
    print(f'drawings:    {osp.abspath(draw_dir)} '
          f'({len(glob.glob(osp.join(draw_dir, "*.png")))} PNG)')


if __name__ == '__main__':
    main()
