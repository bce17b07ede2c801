"""PR-curve pictures per class and object size: where the AP goes.

MMDetection's ``tools/analysis_tools/coco_error_analysis.py``: for each
result type, class and area (``allarea``, ``small``, ``medium``,
``large``) a picture of the stacked PR curves C75, C50, Loc, Sim, Oth, BG,
FN (``mmgc/evaluation/error_analysis.py`` says what each one forgives),
``allclass`` for the mean over classes, and ``error_analysis.json`` with
the area under every curve.

The results file is a COCO results JSON, e.g. what ``tools/test.py ...
--cfg-options test_evaluator.outfile_prefix=work_dirs/results`` writes
(``results.bbox.json``, ``results.segm.json``).

Usage:
    python tools/analysis_tools/coco_error_analysis.py RESULTS.json OUT_DIR
        --ann ANN.json [--types bbox segm] [--areas 1024 9216 10000000000]
        [--classes NAME ...]
"""
import argparse
import json
import os
import os.path as osp
import sys

from mmgc.evaluation.error_analysis import analyze_results
from mmgc.evaluation.offline import check_results, load_results_json


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='COCO error analysis: stacked PR curves per class and '
        'object size')
    parser.add_argument('result', help='COCO results file (.json)')
    parser.add_argument('out_dir', help='folder for the pictures')
    parser.add_argument(
        '--ann',
        default='data/coco/annotations/instances_val2017.json',
        help='COCO annotation file (default: %(default)s)')
    parser.add_argument(
        '--types',
        nargs='+',
        choices=['bbox', 'segm'],
        default=['bbox'],
        help='result types to analyse (segm needs masks in the results)')
    parser.add_argument(
        '--areas',
        type=int,
        nargs=3,
        metavar=('SMALL', 'MEDIUM', 'LARGE'),
        default=[1024, 9216, 10000000000],
        help='upper area bounds of small, medium and large objects')
    parser.add_argument(
        '--classes',
        nargs='+',
        metavar='NAME',
        help='draw only these classes (allclass always); default: all')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from mmgc.datasets import CheckedCOCO
    if not osp.isfile(args.ann):
        sys.exit(f'coco_error_analysis.py: --ann {args.ann!r}: no such file')
    coco_gt = CheckedCOCO(args.ann)
    results = load_results_json(args.result)
    if not results:
        sys.exit(f'coco_error_analysis.py: {args.result}: no detection to '
                 f'analyse')
    if 'segm' in args.types and not all('segmentation' in r for r in results):
        sys.exit(f'coco_error_analysis.py: --types segm: {args.result} has '
                 f'results without "segmentation" (a box results file?)')
    try:
        check_results(results, coco_gt.dataset, args.result, args.ann)
    except ValueError as e:
        sys.exit(f'coco_error_analysis.py: {e}')
    coco_dt = coco_gt.loadRes(results)
    summary = {}
    for iou_type in args.types:
        summary[iou_type] = analyze_results(coco_gt, coco_dt, args.out_dir,
                                            iou_type, args.areas, args.classes)
        print(f'{iou_type}: pictures in {osp.join(args.out_dir, iou_type)}')
    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, 'error_analysis.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    print(f'areas under the curves: '
          f'{osp.join(args.out_dir, "error_analysis.json")}')


if __name__ == '__main__':
    main()
