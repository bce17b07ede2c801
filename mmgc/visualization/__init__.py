"""Drawings worth opening: ground truth beside prediction in class colours
with a legend (``DetComparisonVisualizer``), saved predictions drawn
without the model, and contact sheets of many drawings."""
from .comparison_visualizer import (DetComparisonVisualizer, class_colours,
                                    legend)
from .contact_sheet import contact_sheet, save_contact_sheet
from .prediction_drawing import (decode_mask, draw_predictions, gt_instances,
                                 pred_instances)

__all__ = [
    'DetComparisonVisualizer', 'class_colours', 'legend', 'contact_sheet',
    'save_contact_sheet', 'decode_mask', 'draw_predictions', 'gt_instances',
    'pred_instances'
]
