"""Global context block (GCNet, Cao et al. 2019) as an MMDetection plugin.

The block follows the paper's three steps:

* context modelling: attention pooling (``'att'``: one 1x1 conv gives a
  logit per position, softmax over positions, weighted sum) or global
  average pooling (``'avg'``);
* transform: a bottleneck ``C -> C*ratio -> C`` with LayerNorm and ReLU in
  between (GC), without LayerNorm (SE's excitation), or one ``C -> C`` 1x1
  conv (the paper's simplified non-local block, SNL);
* fusion: broadcast addition (``'channel_add'``) and/or sigmoid-gated
  multiplication (``'channel_mul'``) at every position.

With the default ``transform='bottleneck_ln'`` the constructor arguments,
submodule names and therefore state-dict keys are those of mmcv's
``ContextBlock`` (``conv_mask``, ``channel_add_conv.{0,1,3}``,
``channel_mul_conv.{0,1,3}``), so MMDetection's published GCNet checkpoints
load unchanged and give the same outputs.
"""
from typing import Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModule
from mmengine.model.weight_init import kaiming_init
from mmdet.registry import MODELS
from torch import Tensor, nn

from .utils import (OwnInitAfterParent, attention_pool, check_choice,
                    check_positive, check_reduced_channels,
                    zero_init_last_layer)
from .utils.context_fusion import context_fusion
from .utils.precision import float32_region
from .utils.validation import ArgumentError

POOLING_TYPES = ('att', 'avg')
FUSION_TYPES = ('channel_add', 'channel_mul')
TRANSFORM_TYPES = ('bottleneck_ln', 'bottleneck', 'conv1x1')


@MODELS.register_module()
class GCBlock(OwnInitAfterParent, BaseModule):
    """Global context block: pool one context vector, transform, fuse.

    Args:
        in_channels (int): Channels of the input feature map.
        ratio (float): Bottleneck ratio of the transform, e.g. 1/16 or 1/4
            (ignored by ``transform='conv1x1'``).
        pooling_type (str): ``'att'`` (softmax attention pooling) or
            ``'avg'`` (global average pooling). Default: ``'att'``.
        fusion_types (Sequence[str]): Non-empty subset of
            ``('channel_add', 'channel_mul')``. Default: ``('channel_add',)``.
        transform (str): ``'bottleneck_ln'`` (GC, mmcv-compatible),
            ``'bottleneck'`` (SE-style, no LayerNorm) or ``'conv1x1'``
            (simplified non-local). Default: ``'bottleneck_ln'``.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    #: mmcv ``ContextBlock``'s: a ResNet names the plugin
    #: ``layer2.0.context_block``, as in MMDetection's GCNet checkpoints.
    _abbr_ = 'context_block'

    def __init__(self,
                 in_channels: int,
                 ratio: float,
                 pooling_type: str = 'att',
                 fusion_types: Sequence[str] = ('channel_add', ),
                 transform: str = 'bottleneck_ln',
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        owner = type(self).__name__
        check_positive('in_channels', in_channels, owner)
        check_positive('ratio', ratio, owner)
        check_choice('pooling_type', pooling_type, POOLING_TYPES, owner)
        check_choice('transform', transform, TRANSFORM_TYPES, owner)
        if isinstance(fusion_types, str) or not isinstance(
                fusion_types, (list, tuple)) or len(fusion_types) == 0:
            raise ArgumentError(
                f'{owner}: fusion_types={fusion_types!r} must be a non-empty '
                f'list or tuple drawn from {FUSION_TYPES}')
        for fusion in fusion_types:
            check_choice('fusion_types item', fusion, FUSION_TYPES, owner)
        self.in_channels = in_channels
        self.ratio = ratio
        # the simplified non-local transform has no bottleneck to check
        self.planes = (int(in_channels * ratio) if transform == 'conv1x1'
                       else check_reduced_channels(in_channels, ratio, owner))
        self.pooling_type = pooling_type
        self.fusion_types = tuple(fusion_types)
        self.transform = transform

        # Parameter-free submodules as in mmcv's ContextBlock (no state-dict
        # keys); the pooling itself is attention_pool / mean below.
        if pooling_type == 'att':
            self.conv_mask = nn.Conv2d(in_channels, 1, kernel_size=1)
            self.softmax = nn.Softmax(dim=2)
        else:
            self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.channel_add_conv = (self._make_transform()
                                 if 'channel_add' in fusion_types else None)
        self.channel_mul_conv = (self._make_transform()
                                 if 'channel_mul' in fusion_types else None)
        self.reset_parameters()

    def _make_transform(self) -> nn.Sequential:
        """Build one transform branch (``C -> C``) on a ``[B, C, 1, 1]`` map."""
        channels, planes = self.in_channels, self.planes
        if self.transform == 'conv1x1':
            return nn.Sequential(nn.Conv2d(channels, channels, kernel_size=1))
        layers = [nn.Conv2d(channels, planes, kernel_size=1)]
        if self.transform == 'bottleneck_ln':
            layers.append(nn.LayerNorm([planes, 1, 1]))
        layers += [nn.ReLU(inplace=True),
                   nn.Conv2d(planes, channels, kernel_size=1)]
        return nn.Sequential(*layers)

    def reset_parameters(self) -> None:
        """mmcv ``ContextBlock``'s init: Kaiming (fan-in) attention conv,
        zero last conv of each transform (the block starts as identity when
        fusion is additive)."""
        if self.pooling_type == 'att':
            kaiming_init(self.conv_mask, mode='fan_in')
        for branch in (self.channel_add_conv, self.channel_mul_conv):
            if branch is not None:
                zero_init_last_layer(branch)

    def attention_weights(self, x: Tensor) -> Tensor:
        """Weights of the context pooling over positions: the softmax of
        ``conv_mask(x)`` (``'att'``) or uniform ``1 / HW`` (``'avg'``).

        The same for every query position (GCNet's query-independent
        attention); ``forward`` pools ``x`` with them.

        Args:
            x (Tensor): ``[B, C, H, W]``.

        Returns:
            Tensor: ``[B, H*W]``, fp32, each row summing to 1.
        """
        batch, _, height, width = x.shape
        if self.pooling_type == 'att':
            _, weights = attention_pool(x, self.conv_mask(x),
                                        return_weights=True)  # [B, H*W]
            return weights
        return x.new_full((batch, height * width), 1.0 / (height * width),
                          dtype=torch.float32)  # [B, H*W]

    def spatial_pool(self, x: Tensor) -> Tensor:
        """Global context of ``x`` ``[B, C, H, W]`` as ``[B, C, 1, 1]``."""
        if self.pooling_type == 'att':
            return attention_pool(x, self.conv_mask(x))  # [B, C, 1, 1]
        return x.mean(dim=(2, 3), keepdim=True)  # [B, C, 1, 1]

    def fusion_terms(
            self,
            context: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """Per-channel scale (``sigmoid`` of the mul transform) and shift
        (the add transform) of the context, in fp32 even under autocast.

        Args:
            context (Tensor): ``[B, C]``.

        Returns:
            tuple: ``(scale, shift)``, each ``[B, C]`` or None.
        """
        batch, channels = context.shape
        scale = shift = None
        with float32_region(context.device.type):
            for branch in (self.channel_mul_conv, self.channel_add_conv):
                if branch is None:
                    continue
                term = branch(context.to(branch[0].weight.dtype).view(
                    batch, channels, 1, 1)).view(batch, channels)
                if branch is self.channel_mul_conv:
                    scale = torch.sigmoid(term.float())
                else:
                    shift = term
        return scale, shift

    def forward(self, x: Tensor) -> Tensor:
        """Fuse the transformed global context into every position.

        ``x * sigmoid(T_mul(c)) + T_add(c)`` (the terms present) with the
        pooled context ``c``; computed by
        :func:`~mmgc.models.utils.context_fusion.context_fusion`, whose
        backward makes no full-size temporaries beyond the input gradient.

        Args:
            x (Tensor): ``[B, C, H, W]``.

        Returns:
            Tensor: ``[B, C, H, W]``.
        """
        transform_params = [
            p for branch in (self.channel_add_conv, self.channel_mul_conv)
            if branch is not None for p in branch.parameters()
        ]
        if self.pooling_type == 'att':
            return context_fusion(x, self.fusion_terms, transform_params,
                                  self.conv_mask.weight, self.conv_mask.bias)
        return context_fusion(x, self.fusion_terms, transform_params)
