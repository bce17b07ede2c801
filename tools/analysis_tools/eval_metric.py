"""Evaluate saved predictions without running the model again.

MMDetection's ``tools/analysis_tools/eval_metric.py``: the predictions
``tools/test.py --out`` wrote are evaluated with the config's test data set
and evaluator (the same numbers ``tools/test.py`` printed). With
``--ann-file``, COCO results files (``[{"image_id", "category_id", "score",
"bbox" | "segmentation"}, ...]``, one box and/or one mask file) are
evaluated against any COCO annotation file.

Usage:
    python tools/analysis_tools/eval_metric.py CONFIG PREDICTIONS.pkl
        [--metrics-out metrics.json] [--no-classwise] [--data-root DIR]
        [--test-ann FILE] [--test-img PREFIX] [--classes ...]
        [--cfg-options k=v ...]
    python tools/analysis_tools/eval_metric.py --ann-file ANN.json
        RESULTS.bbox.json [RESULTS.segm.json] [--metrics-out metrics.json]
        [--no-classwise]

Exits with status 1 and a message when there is no detection to evaluate.
"""
import argparse
import sys

import mmgc  # noqa: F401  (registers mmgc's modules)
from mmgc.evaluation import (NothingEvaluatedError, evaluate_predictions,
                             evaluate_results_json, load_predictions,
                             write_metrics)
from mmgc.utils import (add_cfg_options_arg, add_data_args, apply_data_args,
                        load_tool_config)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Evaluate saved predictions (tools/test.py --out) or '
        'COCO results JSON files, without the model',
        usage='%(prog)s CONFIG PREDICTIONS.pkl [options]\n'
        '       %(prog)s --ann-file ANN.json RESULTS.json [RESULTS.json] '
        '[options]')
    parser.add_argument(
        'inputs',
        nargs='+',
        help='CONFIG PREDICTIONS.pkl, or with --ann-file the COCO results '
        'JSON file(s)')
    parser.add_argument(
        '--ann-file',
        help='COCO annotation file to evaluate results JSON '
        'files against (no config needed)')
    parser.add_argument(
        '--metrics-out', help='write the metrics to this JSON file')
    parser.add_argument(
        '--no-classwise',
        dest='classwise',
        action='store_false',
        help='leave out the per-class AP table')
    add_data_args(parser)
    add_cfg_options_arg(parser, 'the config',
                        'test_evaluator.proposal_nums="(100,300,1000)"')
    args = parser.parse_args()
    if args.ann_file is None:
        pickles = ('.pkl', '.pickle')
        if len(args.inputs) != 2 or not args.inputs[1].endswith(pickles):
            parser.error(f'expected CONFIG PREDICTIONS.pkl (the file of '
                         f'tools/test.py --out), got {args.inputs}; for COCO '
                         f'results JSON files give --ann-file')
    elif len(args.inputs) > 2 or not all(
            p.endswith('.json') for p in args.inputs):
        parser.error(f'with --ann-file: one or two COCO results .json files '
                     f'(boxes, masks), got {args.inputs}')
    return args


def main() -> None:
    args = parse_args()
    try:
        if args.ann_file is None:
            config, pkl = args.inputs
            cfg = load_tool_config(config, cfg_options=args.cfg_options)
            apply_data_args(cfg, args)
            metrics = evaluate_predictions(
                cfg, load_predictions(pkl), pkl, classwise=args.classwise)
        else:
            metrics = evaluate_results_json(
                args.ann_file, args.inputs, classwise=args.classwise)
    except NothingEvaluatedError as e:
        sys.exit(f'eval_metric.py: {e}')
    for key, value in metrics.items():
        print(f'{key}: {value}')
    if args.metrics_out:
        write_metrics(metrics, args.metrics_out)
        print(f'metrics written to {args.metrics_out}')


if __name__ == '__main__':
    main()
