"""Data sets: the embedded synthetic COCO-format set and
``CheckedCocoDataset`` (registered in mmdet's DATASETS)."""
from .checked_coco import CheckedCOCO, CheckedCocoDataset
from .synthetic_coco import SYNTHETIC_CLASSES, generate_synthetic_coco

__all__ = [
    'CheckedCOCO', 'CheckedCocoDataset', 'SYNTHETIC_CLASSES',
    'generate_synthetic_coco'
]
