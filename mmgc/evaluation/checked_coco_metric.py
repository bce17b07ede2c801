"""``CheckedCocoMetric``: mmdet's ``CocoMetric`` that checks its annotation
file and the data set's classes before it evaluates against them.

pycocotools, under ``CocoMetric``, silently merges duplicate image ids and
drops annotations of undefined images or categories, so a broken ground
truth file gives a wrong mAP without a word. This metric runs the checks of
:func:`~mmgc.datasets.coco_checks.check_coco_dict` on the file it loaded
(parsed once) and raises ``ValueError`` naming the file and the ids. When
the runner hands it the data set's classes (``dataset_meta``), they are
checked against the file's categories as the data set does
(:func:`~mmgc.datasets.class_checks.resolve_classes`): a name the file does
not have is an error, categories left out are a warning with the number of
objects not evaluated. It also counts the detections it evaluated
(``num_detections``), so a test that found nothing can say so.

``classwise=True`` prints mmdet's per-class table (AP, AP50, AP75, APs, APm,
APl of every class) and returns each class's AP as
``coco/<bbox|segm>_<class name>_precision``; mmdet's ``CocoMetric`` names
it ``coco/<class name>_precision`` for both, so segm's overwrite bbox's.
"""
import logging
from collections import OrderedDict
from typing import Any, Optional, Sequence, Union

from mmdet.evaluation import CocoMetric
from mmdet.registry import METRICS
from mmengine.logging import print_log

from ..datasets.class_checks import describe_left_out, resolve_classes
from ..datasets.coco_checks import check_coco_dict


@METRICS.register_module()
class CheckedCocoMetric(CocoMetric):
    """``CocoMetric`` whose ``ann_file`` must pass the COCO checks and whose
    classes must be the file's category names.

    Args:
        ann_file (str, optional): COCO-format ground truth; without it the
            metric converts the data set's annotations, as ``CocoMetric``
            does, and there is no file to check.
        **kwargs: ``CocoMetric``'s other arguments.
    """

    def __init__(self, ann_file: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(ann_file=ann_file, **kwargs)
        self.ann_file = ann_file
        #: detections given to the last ``compute_metrics``
        self.num_detections: Optional[int] = None
        #: images evaluated by the last ``compute_metrics``
        self.num_images: Optional[int] = None
        if self._coco_api is not None:
            check_coco_dict(self._coco_api.dataset, ann_file)

    @property
    def dataset_meta(self) -> Optional[dict]:
        """The data set's meta information (``classes``, ``palette``)."""
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: Optional[dict]) -> None:
        """Set the meta information, checking ``classes`` against the
        ground truth file (``'from_file'`` takes the file's names)."""
        CocoMetric.dataset_meta.fset(
            self, None if dataset_meta is None else dict(dataset_meta))
        if dataset_meta is None or self._coco_api is None:
            return
        categories = self._coco_api.dataset['categories']
        classes, left_out = resolve_classes(
            dataset_meta.get('classes'), categories, self.ann_file)
        self._dataset_meta['classes'] = classes
        if left_out:
            what = describe_left_out(
                left_out, self._coco_api.dataset.get('annotations', []),
                len(categories))
            print_log(
                f'{type(self).__name__}: {self.ann_file}: {what} -- not '
                f'evaluated',
                logger='current',
                level=logging.WARNING)

    def compute_metrics(self, results: Sequence) -> dict:
        """``CocoMetric.compute_metrics``, counting the detections; with
        ``classwise`` one metric at a time, so that the per-class keys can
        say which metric they belong to."""
        self.num_images = len(results)
        self.num_detections = sum(
            len(pred.get('labels', ())) for _, pred in results)
        if not self.classwise:
            return super().compute_metrics(results)
        all_metrics, eval_results = self.metrics, OrderedDict()
        try:
            for metric in all_metrics:
                self.metrics = [metric]
                for key, value in super().compute_metrics(results).items():
                    if key.endswith('_precision'):  # mmdet: <class>_precision
                        key = f'{metric}_{key}'
                    eval_results[key] = value
        finally:
            self.metrics = all_metrics
        return eval_results


#: Metric types whose ``classwise`` option :func:`enable_classwise` sets.
CLASSWISE_METRICS = ('CocoMetric', 'CheckedCocoMetric', 'mmdet.CocoMetric',
                     'mmgc.CheckedCocoMetric')


def enable_classwise(evaluator_cfg: Union[dict, list]) -> None:
    """Turn on ``classwise`` in every COCO metric of an evaluator config.

    Args:
        evaluator_cfg (dict | list[dict]): e.g. ``cfg.test_evaluator``;
            modified in place.
    """
    if isinstance(evaluator_cfg, dict) and 'metrics' in evaluator_cfg:
        evaluator_cfg = evaluator_cfg['metrics']
    metrics = evaluator_cfg if isinstance(evaluator_cfg, (list, tuple)) \
        else [evaluator_cfg]
    for metric in metrics:
        if isinstance(metric, dict) and \
                metric.get('type') in CLASSWISE_METRICS:
            metric['classwise'] = True
