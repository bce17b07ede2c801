"""Squeeze-and-excitation block (Hu et al. 2018) as an MMDetection plugin.

squeeze: global average pool -> excite: ``FC(C -> C*ratio)``, ReLU,
``FC(C*ratio -> C)``, sigmoid -> fuse: channel-wise multiply.

Submodule names (``conv1.conv``, ``conv2.conv``) follow mmdet's ``SELayer``,
so its state dicts load unchanged. ``squeeze``, ``excite`` and ``forward``
below are the three steps; the CPU fast path (shared with GC) is
:mod:`mmgc.models.utils.context_fusion`.
"""
from typing import Optional, Sequence, Tuple, Union

from mmcv.cnn import ConvModule
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor

from .utils import (SelectableImpl, check_positive, check_positive_int,
                    check_reduced_channels)
from .utils.context_fusion import context_fusion
from .utils.implementation import is_tracing
from .utils.precision import float32_region
from .utils.validation import ArgumentError

ActCfg = Union[dict, Sequence[dict]]


@MODELS.register_module()
class SEBlock(SelectableImpl, BaseModule):
    """Squeeze-and-excitation: rescale channels by a gate computed from the
    global average of the map.

    ``ratio`` is a *fraction*, as for :class:`GCBlock` (``ratio=1/16`` gives
    ``int(in_channels / 16)`` hidden channels), whereas mmdet's ``SELayer``
    takes the *divisor* (``ratio=16``, hidden ``int(channels / 16)``): the
    same network is ``SEBlock(c, ratio=1/16)`` == ``SELayer(c, ratio=16)``
    (identical for power-of-two widths; ``int(c * r)`` vs ``int(c / d)`` can
    differ by one for other values through float rounding).

    Args:
        in_channels (int): Channels of the input feature map.
        ratio (float): Hidden width as a fraction of ``in_channels``;
            ``int(in_channels * ratio)`` must be at least 1. Default: 1/16.
        conv_cfg (dict, optional): Config of the two 1x1 convs (the FCs).
        act_cfg (dict | Sequence[dict]): Activations after the first and
            second FC; one dict is used for both. Default:
            ``(dict(type='ReLU'), dict(type='Sigmoid'))``.
        init_cfg (dict, optional): mmengine initialisation config.

    Attributes:
        impl (str): ``'auto'`` (default), ``'reference'`` or ``'fused'``:
            the path ``forward`` runs; see
            :mod:`mmgc.models.utils.implementation`.
    """

    _abbr_ = 'se_block'

    def __init__(self,
                 in_channels: int,
                 ratio: float = 1 / 16,
                 conv_cfg: Optional[dict] = None,
                 act_cfg: ActCfg = (dict(type='ReLU'), dict(type='Sigmoid')),
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        owner = type(self).__name__
        check_positive_int('in_channels', in_channels, owner)
        check_positive('ratio', ratio, owner)
        hidden = check_reduced_channels(in_channels, ratio, owner)
        if isinstance(act_cfg, dict):
            act_cfg = (act_cfg, act_cfg)
        if not isinstance(act_cfg, (list, tuple)) or len(act_cfg) != 2 or \
                not all(isinstance(cfg, dict) for cfg in act_cfg):
            raise ArgumentError(f'{owner}: act_cfg={act_cfg!r} must be a '
                                f'dict or a pair of dicts')
        self.in_channels = in_channels
        self.ratio = ratio
        self.hidden_channels = hidden
        self.conv1 = ConvModule(
            in_channels, hidden, 1, conv_cfg=conv_cfg, act_cfg=act_cfg[0])
        self.conv2 = ConvModule(
            hidden, in_channels, 1, conv_cfg=conv_cfg, act_cfg=act_cfg[1])

    def squeeze(self, x: Tensor) -> Tuple[Tensor, None]:
        """Squeeze: ``s = mean_hw x``, the channel means.

        Args:
            x (Tensor): ``[B, C, H, W]``.

        Returns:
            tuple: ``s`` ``[B, C]`` (dtype of ``x``) and no attention
            weights (the pooling signature shared with GC).
        """
        return x.mean(dim=(2, 3)), None  # [B, C]

    def excite(self, squeeze: Tensor) -> Tuple[Tensor, None]:
        """Excitation: ``g = sigmoid(W_2 ReLU(W_1 s))`` (the configured
        activations), in fp32 even under autocast.

        Args:
            squeeze (Tensor): ``[B, C]`` channel means.

        Returns:
            tuple: the ``[B, C]`` gate as the fusion's scale, and no shift.
        """
        batch, channels = squeeze.shape
        with float32_region(squeeze.device.type):
            squeeze = squeeze.to(self.conv1.conv.weight.dtype).view(
                batch, channels, 1, 1)  # [B, C, 1, 1]
            gate = self.conv2(self.conv1(squeeze))  # [B, C, 1, 1]
        return gate.view(batch, channels), None  # [B, C]

    def forward(self, x: Tensor) -> Tensor:
        """Scale: ``y = x * g`` per channel.

        On the CPU (``impl='auto'``) the same formula runs as
        :func:`~mmgc.models.utils.context_fusion.context_fusion` (one
        per-channel dot product and one fused affine pass in the backward);
        ``impl='reference'`` always runs the code below.

        Args:
            x (Tensor): ``[B, C, H, W]``.

        Returns:
            Tensor: ``[B, C, H, W]``, dtype and memory format of ``x``.
        """
        if self.use_fast_path(x):
            return context_fusion(x, self.squeeze, self.excite,
                                  list(self.parameters()))
        batch, channels = x.shape[:2]
        squeeze, _ = self.squeeze(x)  # [B, C]
        gate, _ = self.excite(squeeze)  # [B, C]
        return x * gate.to(x.dtype).view(batch, channels, 1, 1)  # [B, C, H, W]

    def _fast_path_wins(self, x: Tensor) -> bool:
        """The memory-lean backward wins on the CPU (measured,
        ``docs/performance.md``); it is eager-only, so not when tracing."""
        return x.device.type == 'cpu' and not is_tracing()
