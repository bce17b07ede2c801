"""What a test run measured: refuse to report an evaluation of nothing, and
write the metrics file.

mmdet's ``CocoMetric`` answers a test without a single detection (an early
checkpoint, every score under ``score_thr``) with a logged error and an
empty result, and MMDetection's ``test.py`` then exits 0 and writes ``{}``.
:func:`empty_test_reason` says what went wrong (for ``tools/test.py`` to
exit non-zero with it); :func:`write_metrics` writes a metrics JSON file
(NaN, e.g. the AP of a class without ground truth, as ``null``).
"""
import json
import math
from typing import Any, Dict, List, Optional

from ..engine.atomic_io import atomic_write
from .checked_coco_metric import CheckedCocoMetric


def score_thr_keys(model_cfg: Any, prefix: str = 'model') -> List[str]:
    """Dotted config keys of every ``score_thr`` under ``model.test_cfg``.

    Args:
        model_cfg (dict): The ``model`` config.
        prefix (str): Key of ``model_cfg`` in the full config.

    Returns:
        list[str]: e.g. ``['model.test_cfg.rcnn.score_thr=0.05']``.
    """
    found = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == 'score_thr':
                    found.append(f'{path}.{key}={value}')
                else:
                    walk(value, f'{path}.{key}')

    walk((model_cfg or {}).get('test_cfg'), f'{prefix}.test_cfg')
    return found


def empty_test_reason(metrics: Dict[str, Any],
                      evaluator: Any,
                      model_cfg: Any = None) -> Optional[str]:
    """Why a test's ``metrics`` measure nothing, or None when they do.

    Args:
        metrics (dict): What ``runner.test()`` returned.
        evaluator: The runner's test evaluator (or ``dict(metrics=[...])``).
        model_cfg (dict, optional): The model config, to name its score
            thresholds.

    Returns:
        str | None: e.g. ``'the model made no detection on the 6 test
        images (model.test_cfg.rcnn.score_thr=0.05)...'``.
    """
    coco_metrics = list(evaluator['metrics'] if isinstance(evaluator, dict)
                        else getattr(evaluator, 'metrics', []))
    if any(getattr(m, 'format_only', False) for m in coco_metrics):
        return None  # results files only (e.g. test-dev), no metrics wanted
    thresholds = ', '.join(score_thr_keys(model_cfg))
    hint = (f' ({thresholds}): an early checkpoint often scores every box '
            f'below it; lower it with --cfg-options, or check the '
            f'checkpoint' if thresholds else '')
    for metric in coco_metrics:
        if isinstance(metric, CheckedCocoMetric) and \
                metric.num_detections == 0:
            return (f'no detection on the {metric.num_images} test images'
                    f'{hint}; there is nothing to evaluate')
    if not metrics:
        return (f'the evaluator returned no metric (mmdet\'s CocoMetric '
                f'does so when there is no detection){hint}')
    return None


def to_json_value(value: Any) -> Any:
    """A metric value as JSON: numbers as float, NaN and inf as None."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return value
    return value if math.isfinite(value) else None


def write_metrics(metrics: Dict[str, Any], path: str) -> None:
    """Write ``metrics`` to a JSON file (atomically, directories made).

    Args:
        metrics (dict): Metric name -> value.
        path (str): Output file.
    """
    content = {k: to_json_value(v) for k, v in metrics.items()}
    atomic_write(path, json.dumps(content, indent=2, allow_nan=False))
