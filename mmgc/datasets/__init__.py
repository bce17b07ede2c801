"""Data set utilities (no torch/mmdet imports: cheap to import)."""
from .synthetic_coco import SYNTHETIC_CLASSES, generate_synthetic_coco

__all__ = ['SYNTHETIC_CLASSES', 'generate_synthetic_coco']
