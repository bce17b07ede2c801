"""Run the main job's 2-process gloo training many times and count how each
run ended: a run that succeeded must never be reported as failed.

    python tests/stress_dist_train.py [--runs 50] [--iters 2]

Each run is ``tools/dist_train.sh configs/demo/gc_r50_mask_synthetic.py 2``
for ``--iters`` iterations on a small generated data set, in a work dir of
its own. Prints one line per run that did not exit 0 (with the end of its
output) and a tally; exits 1 if any run failed. Takes about 25 s a run on
a 2-core CPU.
"""
import argparse
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time
from collections import Counter

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'demo', 'gc_r50_mask_synthetic.py')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=50)
    parser.add_argument('--iters', type=int, default=2)
    args = parser.parse_args()
    from mmgc.datasets import generate_synthetic_coco
    tmp = tempfile.mkdtemp(prefix='mmgc-stress-')
    data = osp.join(tmp, 'data') + '/'
    generate_synthetic_coco(data, num_train=8, num_val=4, seed=1)
    ann_val = data + 'annotations/instances_val.json'
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHON=sys.executable)
    statuses = Counter()
    start = time.time()
    for run in range(1, args.runs + 1):
        env['PORT'] = str(29500 + (os.getpid() + run) % 2000)
        cmd = [
            'bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir',
            osp.join(tmp, f'run{run}'), '--cfg-options',
            f'train_dataloader.dataset.data_root={data}',
            f'val_dataloader.dataset.data_root={data}',
            f'test_dataloader.dataset.data_root={data}',
            f'val_evaluator.ann_file={ann_val}',
            f'test_evaluator.ann_file={ann_val}',
            f'train_cfg.max_iters={args.iters}', 'val_cfg=None',
            'val_dataloader=None', 'val_evaluator=None',
            'train_dataloader.batch_size=2'
        ]
        result = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        statuses[result.returncode] += 1
        if result.returncode != 0:
            tail = (result.stdout + result.stderr)[-1500:]
            print(f'run {run}: exit status {result.returncode}\n{tail}')
    failed = args.runs - statuses[0]
    print(f'{args.runs} runs in {time.time() - start:.0f} s: '
          f'{statuses[0]} exited 0, {failed} failed '
          f'(statuses {dict(statuses)})')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
