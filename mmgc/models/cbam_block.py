"""Convolutional block attention module (CBAM, Woo et al. 2018) as an
MMDetection plugin.

Two gates applied one after the other, each multiplicatively:

* channel attention: ``M_c(x) = sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))``
  with one MLP ``C -> C*ratio -> C`` (ReLU in between) shared by both
  pooled vectors; ``x' = M_c(x) * x`` per channel;
* spatial attention: ``M_s(x') = sigmoid(conv_kxk([mean_c(x'); max_c(x')]))``
  over the two channel-pooled maps; ``y = M_s(x') * x'`` per position.

``channel_attention``, ``spatial_attention`` and ``forward`` below are these
steps in plain torch. Both gates are computed in fp32 even under autocast,
as SE's and GC's.

Initialisation is PyTorch's default, as in the paper (and as
:class:`~mmgc.models.se_block.SEBlock`): there is no zero-init option,
because a multiplicative block cannot start as the identity -- with zero
last layers both gates would be ``sigmoid(0) = 0.5``, which scales the
features by a quarter just as a random start does.

The spatial map ``M_s`` is a gate, one weight per position for that
position's own features, not attention of a query over key positions, so
the block has no ``attention_maps``.
"""
from typing import Optional, Union

import torch
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor, nn

from .utils import (check_odd, check_positive, check_positive_int,
                    check_reduced_channels)
from .utils.precision import float32_region, to_float32


@MODELS.register_module()
class CBAMBlock(BaseModule):
    """CBAM: a channel gate from avg- and max-pooled vectors, then a spatial
    gate from channel-wise avg and max maps.

    Args:
        in_channels (int): Channels of the input feature map.
        ratio (float): Hidden width of the channel MLP as a fraction of
            ``in_channels`` (the paper's reduction ``r = 16`` is
            ``ratio=1/16``); ``int(in_channels * ratio)`` must be at least
            1. Default: 1/16.
        kernel_size (int): Odd size of the spatial attention's conv (the
            paper's 7). Default: 7.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    _abbr_ = 'cbam_block'

    def __init__(self,
                 in_channels: int,
                 ratio: float = 1 / 16,
                 kernel_size: int = 7,
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        owner = type(self).__name__
        check_positive_int('in_channels', in_channels, owner)
        check_positive('ratio', ratio, owner)
        hidden = check_reduced_channels(in_channels, ratio, owner)
        check_positive_int('kernel_size', kernel_size, owner)
        check_odd('kernel_size', kernel_size, owner)
        self.in_channels = in_channels
        self.ratio = ratio
        self.hidden_channels = hidden
        self.kernel_size = kernel_size
        # the shared MLP as 1x1 convs on [B, C, 1, 1] vectors
        self.channel_mlp = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, in_channels, 1))
        self.spatial_conv = nn.Conv2d(
            2, 1, kernel_size, padding=kernel_size // 2)

    def channel_attention(self, x: Tensor) -> Tensor:
        """``M_c = sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))``, in the
        parameters' precision (fp32 even under autocast).

        Args:
            x (Tensor): ``[B, C, H, W]``.

        Returns:
            Tensor: ``[B, C, 1, 1]`` fp32 gate in (0, 1).
        """
        with float32_region(x.device.type):
            x = x.to(self.channel_mlp[0].weight.dtype)
            avg = x.mean(dim=(2, 3), keepdim=True)  # [B, C, 1, 1]
            # max with indices: its backward is a scatter to the argmax,
            # where amax's divides among ties over a full-size mask
            peak = x.flatten(2).max(dim=2).values[..., None,
                                                  None]  # [B, C, 1, 1]
            logits = self.channel_mlp(avg) + self.channel_mlp(peak)
            return torch.sigmoid(to_float32(logits))  # [B, C, 1, 1]

    def spatial_attention(self, x: Tensor) -> Tensor:
        """``M_s = sigmoid(conv([mean_c(x); max_c(x)]))``, in the
        parameters' precision (fp32 even under autocast).

        Args:
            x (Tensor): ``[B, C, H, W]`` (the channel-gated features).

        Returns:
            Tensor: ``[B, 1, H, W]`` fp32 gate in (0, 1).
        """
        with float32_region(x.device.type):
            x = x.to(self.spatial_conv.weight.dtype)
            pooled = torch.cat([
                x.mean(dim=1, keepdim=True),
                x.max(dim=1, keepdim=True).values
            ],
                               dim=1)  # [B, 2, H, W]
            return torch.sigmoid(to_float32(
                self.spatial_conv(pooled)))  # [B, 1, H, W]

    def forward(self, x: Tensor) -> Tensor:
        """``x' = M_c(x) * x``, then ``y = M_s(x') * x'``.

        Args:
            x (Tensor): ``[B, C, H, W]``.

        Returns:
            Tensor: ``[B, C, H, W]``, dtype and memory format of ``x``.
        """
        x = x * self.channel_attention(x).to(x.dtype)  # [B, C, H, W]
        return x * self.spatial_attention(x).to(x.dtype)  # [B, C, H, W]
