"""Train and compare attention-block variants: one command for an ablation
study (every variant x seed trained through the project's launchers,
evaluated with tools/test.py, one table as Markdown, JSON and PNG).

Usage:
    python tools/analysis_tools/study.py CONFIG \
        --study blocks|gc-design|MY_STUDY.py [--seeds 2] \
        [--launcher none|pytorch|slurm] [--gpus N] [--partition P] \
        [--work-dir DIR] [--variants NAME ...] [--analyse] \
        [--cfg-options k=v ...]

Finished runs (their metrics.json exists) are reused and interrupted ones
resumed, so the same command continues a study in a later sitting. See
docs/study.md.
"""
import argparse
import os.path as osp

from mmgc.analysis.studies import BUILTIN_STUDIES, load_study
from mmgc.analysis.study import LAUNCHERS, StudyRunner
from mmgc.utils.tool_config import add_cfg_options_arg, image_shape


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train every variant of a study for N seeds and '
        'tabulate AP, cost and speed')
    parser.add_argument('config', help='base config file')
    parser.add_argument(
        '--study',
        required=True,
        help=f'built-in study {sorted(BUILTIN_STUDIES)} or a .py file with '
        '`study = dict(name=..., baseline=..., variants=...)`')
    parser.add_argument(
        '--seeds',
        type=int,
        default=2,
        help='seeds per variant (0..N-1; default 2)')
    parser.add_argument(
        '--variants',
        nargs='+',
        metavar='NAME',
        help='run only these variants (and the baseline)')
    parser.add_argument(
        '--launcher',
        choices=LAUNCHERS,
        default='none',
        help='none: tools/train.py; pytorch: '
        'tools/dist_train.sh; slurm: tools/slurm_train.sh')
    parser.add_argument(
        '--gpus',
        type=int,
        default=1,
        help='processes (GPUs) per run for pytorch/slurm')
    parser.add_argument('--partition', help='Slurm partition')
    parser.add_argument(
        '--work-dir',
        help='study directory (default '
        'work_dirs/study_<study>_<config name>)')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        help='H [W] of the FLOPs count (default: the test '
        'Resize scale)')
    parser.add_argument(
        '--analyse',
        action='store_true',
        help='afterwards, run attention_maps.py statistics on the trained '
        'GC/NL models (first seed)')
    parser.add_argument(
        '--report-only',
        action='store_true',
        help='train nothing: tabulate the runs finished so far (and with '
        '--analyse, analyse them)')
    parser.add_argument(
        '--analyse-images',
        type=int,
        default=4,
        help='validation images for --analyse (default 4)')
    add_cfg_options_arg(
        parser,
        applies_to='the base config',
        example='train_cfg.max_iters=300')
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f'--seeds {args.seeds}: must be at least 1')
    if args.gpus < 1:
        parser.error(f'--gpus {args.gpus}: must be at least 1')
    if args.launcher == 'slurm' and not args.partition:
        parser.error('--launcher slurm needs --partition')
    if args.analyse_images < 1:
        parser.error(f'--analyse-images {args.analyse_images}: must be at '
                     'least 1')
    if args.shape is not None:
        args.shape = image_shape(parser, args.shape)
    return args


def main() -> None:
    args = parse_args()
    study = load_study(args.study, args.variants)
    runner = StudyRunner(
        args.config,
        study,
        seeds=args.seeds,
        launcher=args.launcher,
        gpus=args.gpus,
        work_dir=args.work_dir,
        cfg_options=args.cfg_options,
        partition=args.partition,
        shape=args.shape)
    if args.report_only:
        runner.write_configs()
        runner.write_report()
    else:
        runner.run()
    if args.analyse:
        from mmgc.analysis.study_attention import analyse_study
        analyse_study(runner, num_images=args.analyse_images)
    print(f'table: {osp.join(runner.work_dir, "study.md")} (.json, .png)')


if __name__ == '__main__':
    main()
