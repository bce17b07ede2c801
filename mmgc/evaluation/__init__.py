"""Evaluation: ``CheckedCocoMetric`` (registered in mmdet's METRICS), what
a test run measured (:mod:`~mmgc.evaluation.test_outcome`), evaluation of
saved predictions (:mod:`~mmgc.evaluation.offline`) and COCO error
analysis (:mod:`~mmgc.evaluation.error_analysis`)."""
from .checked_coco_metric import CheckedCocoMetric, enable_classwise
from .offline import (NothingEvaluatedError, check_coverage,
                      evaluate_predictions, evaluate_results_json,
                      load_predictions)
from .test_outcome import (empty_test_reason, score_thr_keys, to_json_value,
                           write_metrics)

__all__ = [
    'CheckedCocoMetric', 'enable_classwise', 'NothingEvaluatedError',
    'check_coverage', 'evaluate_predictions', 'evaluate_results_json',
    'load_predictions', 'empty_test_reason', 'score_thr_keys', 'to_json_value',
    'write_metrics'
]
