"""``CheckedCocoMetric``: mmdet's ``CocoMetric`` that checks its annotation
file before it evaluates against it.

pycocotools, under ``CocoMetric``, silently merges duplicate image ids and
drops annotations of undefined images or categories, so a broken ground
truth file gives a wrong mAP without a word. This metric runs the checks of
:func:`~mmgc.datasets.coco_checks.check_coco_dict` on the file it loaded
(parsed once) and raises ``ValueError`` naming the file and the ids.
"""
from typing import Any, Optional

from mmdet.evaluation import CocoMetric
from mmdet.registry import METRICS

from ..datasets.coco_checks import check_coco_dict


@METRICS.register_module()
class CheckedCocoMetric(CocoMetric):
    """``CocoMetric`` whose ``ann_file`` must pass the COCO checks.

    Args:
        ann_file (str, optional): COCO-format ground truth; without it the
            metric converts the data set's annotations, as ``CocoMetric``
            does, and there is no file to check.
        **kwargs: ``CocoMetric``'s other arguments.
    """

    def __init__(self, ann_file: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(ann_file=ann_file, **kwargs)
        if self._coco_api is not None:
            check_coco_dict(self._coco_api.dataset, ann_file)
