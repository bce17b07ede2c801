"""Evaluation: ``CheckedCocoMetric`` (registered in mmdet's METRICS)."""
from .checked_coco_metric import CheckedCocoMetric

__all__ = ['CheckedCocoMetric']
