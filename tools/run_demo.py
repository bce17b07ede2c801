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
logs go to the work dir (``--verbose``: everything on the console). The
phases are :class:`mmgc.analysis.demo.MainJob`.

Usage:
    python tools/run_demo.py [--work-dir work_dirs/demo] [--retrain]
        [--procs N] [--score-thr 0.5] [--num-drawings N] [--verbose]
        [--cfg-options k=v ...]
"""
import argparse
import os
import os.path as osp
import sys
import time

from mmgc.analysis.demo import (CONFIG, SHEET_IMAGES, MainJob, StepFailed,
                                ap_table)

#: The repository root: the demo runs the tools from there.
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=CONFIG, help='demo config')
    parser.add_argument('--work-dir', default=osp.join('work_dirs', 'demo'))
    parser.add_argument('--data-root', default=osp.join('data', 'synthetic'))
    parser.add_argument(
        '--num-train', type=int, default=600, help='synthetic training images')
    parser.add_argument(
        '--num-val', type=int, default=100, help='synthetic validation images')
    parser.add_argument(
        '--retrain',
        action='store_true',
        help='train again even if a finished run exists')
    parser.add_argument(
        '--procs',
        type=int,
        default=min(2,
                    os.cpu_count() or 1),
        help='training processes (tools/dist_train.sh with gloo when > 1), '
        'each with cpu_count/procs threads and batch/procs images; on a '
        '2-core CPU two 1-thread processes train about 1.5x faster than '
        'one 2-thread process (mmcv\'s CPU RoIAlign and NMS are serial)')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.5,
        help='lowest prediction score drawn (default 0.5; COCO mAP uses '
        'every prediction regardless)')
    parser.add_argument(
        '--num-drawings',
        type=int,
        default=None,
        help='draw only the first N val images (default: all)')
    parser.add_argument(
        '--verbose',
        action='store_true',
        help='show the tools\' full mmengine logs and commands on the '
        'console instead of progress bars')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        help='passed on to tools/train.py and tools/test.py')
    args = parser.parse_args()
    if args.procs < 1:
        parser.error(f'--procs={args.procs} must be >= 1')
    if not 0 <= args.score_thr <= 1:
        parser.error(f'--score-thr={args.score_thr} must be in [0, 1]')
    if args.num_drawings is not None and args.num_drawings < 0:
        parser.error(f'--num-drawings={args.num_drawings} must be >= 0')
    return args


def main() -> None:
    args = parse_args()
    os.chdir(ROOT)
    if not args.verbose:
        from mmgc.utils import filter_third_party_warnings
        filter_third_party_warnings()
    start = time.time()
    job = MainJob(ROOT, args.config, args.work_dir, args.data_root,
                  args.num_train, args.num_val, args.procs, args.cfg_options,
                  args.verbose)
    try:
        job.generate_data()
        train_log = job.train(args.retrain)
        train_done = time.time()
        metrics, test_log = job.evaluate()
    except StepFailed as err:
        sys.exit(f'run_demo: {err}')
    drawings, sheet = job.draw(args.score_thr, args.num_drawings)

    print('\nCOCO AP on the synthetic val split '
          f'({args.config}, {job.max_iters} iterations)')
    print(ap_table(metrics))
    print(f'\ntrain {train_done - start:.0f} s, total '
          f'{time.time() - start:.0f} s')
    print(f'work dir:    {osp.abspath(args.work_dir)}')
    print(f'checkpoint:  {osp.abspath(job.checkpoint)}')
    print(f'metrics:     {osp.abspath(job.metrics_file)}')
    if train_log is not None:
        print(f'train log:   {osp.abspath(train_log)}')
    print(f'test log:    {osp.abspath(test_log)}')
    print(f'drawings:    {osp.abspath(job.draw_dir)} ({len(drawings)} PNG, '
          f'score >= {args.score_thr:g})')
    if sheet is not None:
        print(f'sheet:       {osp.abspath(sheet)} (first '
              f'{min(len(drawings), SHEET_IMAGES)} val images)')


if __name__ == '__main__':
    main()
