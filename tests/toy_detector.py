"""A detector-shaped model small enough to train in milliseconds, for tests
of the data and training machinery (samplers, loops, resume, launchers)
rather than of a detector. Imported by training child processes through
``custom_imports`` (tests/ on PYTHONPATH).

``ToyDetector`` takes MMDetection's batches (``DetDataPreprocessor``
inputs, ``DetDataSample`` with ``gt_instances``): its loss depends on the
pixels, the flips and the boxes of every image, and it has a BatchNorm
buffer, so the final weights change if any sample, augmentation or random
draw of a run changes.
"""
import torch
from mmengine.model import BaseModel
from mmengine.registry import MODELS


@MODELS.register_module()
class ToyDetector(BaseModel):
    """A strided conv, BatchNorm and a linear box regressor.

    Args:
        data_preprocessor (dict, optional): MMDetection's
            ``DetDataPreprocessor`` config.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self, data_preprocessor=None, init_cfg=None) -> None:
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.conv = torch.nn.Conv2d(3, 8, 5, stride=8)
        self.bn = torch.nn.BatchNorm2d(8)
        self.box = torch.nn.Linear(8, 4)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feats = self.bn(self.conv(inputs)).relu().mean((2, 3))  # [B, 8]
        if mode == 'tensor':
            return feats
        if mode == 'loss':
            targets = torch.stack([
                _boxes(s.gt_instances.bboxes).mean(0) / 256
                for s in data_samples
            ])  # [B, 4]
            return dict(loss_box=(self.box(feats) - targets).pow(2).mean())
        raise ValueError(f'ToyDetector trains only (mode={mode!r})')


def _boxes(bboxes) -> torch.Tensor:
    """``[N, 4]`` tensor of mmdet's boxes (a tensor or ``HorizontalBoxes``)."""
    return getattr(bboxes, 'tensor', bboxes).float()
