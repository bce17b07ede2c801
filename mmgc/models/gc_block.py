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

``global_context``, ``fusion_terms`` and ``forward`` below are these three
steps in plain torch (the reference path). On the CPU the same formula runs
through a memory-lean fused backward
(:mod:`mmgc.models.utils.context_fusion`); ``block.impl`` chooses
(``'auto'``, ``'reference'``, ``'fused'``; ``docs/performance.md``).

With the default ``transform='bottleneck_ln'`` the constructor arguments,
submodule names and therefore state-dict keys are those of mmcv's
``ContextBlock`` (``conv_mask``, ``channel_add_conv.{0,1,3}``,
``channel_mul_conv.{0,1,3}``), so MMDetection's published GCNet checkpoints
load unchanged and give the same outputs.
"""
from typing import Optional, Sequence, Tuple, Union

import torch
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from mmengine.model.weight_init import kaiming_init
from torch import Tensor, nn

from .utils import (OwnInitAfterParent, SelectableImpl, check_choice,
                    check_positive, check_reduced_channels,
                    zero_init_last_layer)
from .utils.context_fusion import context_fusion
from .utils.implementation import is_tracing
from .utils.precision import float32_region
from .utils.validation import ArgumentError

POOLING_TYPES = ('att', 'avg')
FUSION_TYPES = ('channel_add', 'channel_mul')
TRANSFORM_TYPES = ('bottleneck_ln', 'bottleneck', 'conv1x1')


@MODELS.register_module()
class GCBlock(OwnInitAfterParent, SelectableImpl, BaseModule):
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

    Attributes:
        impl (str): ``'auto'`` (default), ``'reference'`` or ``'fused'``:
            the path ``forward`` runs; see
            :mod:`mmgc.models.utils.implementation`.
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
        self.planes = (
            int(in_channels * ratio) if transform == 'conv1x1' else
            check_reduced_channels(in_channels, ratio, owner))
        self.pooling_type = pooling_type
        self.fusion_types = tuple(fusion_types)
        self.transform = transform

        # Parameter-free submodules as in mmcv's ContextBlock (no state-dict
        # keys); the pooling itself is global_context() below.
        if pooling_type == 'att':
            self.conv_mask = nn.Conv2d(in_channels, 1, kernel_size=1)
            self.softmax = nn.Softmax(dim=2)
        else:
            self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.channel_add_conv = (
            self._make_transform() if 'channel_add' in fusion_types else None)
        self.channel_mul_conv = (
            self._make_transform() if 'channel_mul' in fusion_types else None)
        self.reset_parameters()

    def _make_transform(self) -> nn.Sequential:
        """One transform branch (``C -> C``) on a ``[B, C, 1, 1]`` map."""
        channels, planes = self.in_channels, self.planes
        if self.transform == 'conv1x1':
            return nn.Sequential(nn.Conv2d(channels, channels, kernel_size=1))
        layers = [nn.Conv2d(channels, planes, kernel_size=1)]
        if self.transform == 'bottleneck_ln':
            layers.append(nn.LayerNorm([planes, 1, 1]))
        layers += [
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, channels, kernel_size=1)
        ]
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

    # ------------------------------------------------ the paper, step by step
    def global_context(self, x: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """Context modelling: ``c = sum_j softmax_j(W_k x_j) x_j`` (``'att'``)
        or ``c = mean_j x_j`` (``'avg'``). GC's only pooling code.

        The softmax runs in fp32 even under autocast; both products are one
        batched row-vector product over the map (a view, also for
        channels_last input), so ``x`` is read once per product and no
        ``[B, C, H*W]`` temporary is made.

        Args:
            x (Tensor): ``[B, C, H, W]``.

        Returns:
            tuple: the context ``[B, C]`` (dtype of ``x``) and the fp32
            attention weights ``[B, H*W]`` (None for ``'avg'``).
        """
        batch, channels, height, width = x.shape
        values = x.flatten(2)  # [B, C, H*W], a view
        if self.pooling_type == 'avg':
            return values.mean(dim=2), None  # [B, C]
        with float32_region(x.device.type):
            w_k = self.conv_mask.weight.view(1, 1, channels).to(x.dtype)
            logits = torch.bmm(w_k.expand(batch, -1, -1),
                               values)  # [B, 1, H*W], W_k x_j
            logits = logits + self.conv_mask.bias.to(x.dtype)  # [B, 1, H*W]
            weights = torch.softmax(
                logits.view(batch, height * width).float(),
                dim=1)  # [B, H*W], fp32
            context = torch.bmm(
                weights.to(x.dtype).unsqueeze(1),
                values.transpose(1, 2))  # [B, 1, C]
        return context.view(batch, channels), weights  # [B, C], [B, H*W]

    def fusion_terms(
            self,
            context: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """Transform: ``T(c) = W_v2 ReLU(LN(W_v1 c))`` per fusion branch,
        giving the per-channel scale ``sigmoid(T_mul(c))`` and shift
        ``T_add(c)``, in fp32 even under autocast.

        Args:
            context (Tensor): ``[B, C]``.

        Returns:
            tuple: ``(scale, shift)``, each ``[B, C]`` or None.
        """
        batch, channels = context.shape
        scale = shift = None
        with float32_region(context.device.type):
            if self.channel_mul_conv is not None:
                c = context.to(self.channel_mul_conv[0].weight.dtype).view(
                    batch, channels, 1, 1)  # [B, C, 1, 1]
                scale = torch.sigmoid(
                    self.channel_mul_conv(c).view(batch,
                                                  channels).float())  # [B, C]
            if self.channel_add_conv is not None:
                c = context.to(self.channel_add_conv[0].weight.dtype).view(
                    batch, channels, 1, 1)  # [B, C, 1, 1]
                shift = self.channel_add_conv(c).view(batch,
                                                      channels)  # [B, C]
        return scale, shift

    def forward(self, x: Tensor) -> Tensor:
        """Fusion: ``z_i = x_i * sigmoid(T_mul(c)) + T_add(c)`` (the terms
        present) at every position ``i``.

        On the CPU (``impl='auto'``) the same formula runs as
        :func:`~mmgc.models.utils.context_fusion.context_fusion`, whose
        hand-written backward makes no full-size temporaries beyond the
        input gradient; ``impl='reference'`` always runs the code below.

        Args:
            x (Tensor): ``[B, C, H, W]``.

        Returns:
            Tensor: ``[B, C, H, W]``.
        """
        if self.use_fast_path(x):
            return self._fused_forward(x)
        batch, channels = x.shape[:2]
        context, _ = self.global_context(x)  # [B, C]
        scale, shift = self.fusion_terms(context)  # [B, C] each, or None
        out = x
        if scale is not None:
            out = out * scale.to(x.dtype).view(batch, channels, 1,
                                               1)  # [B, C, H, W]
        if shift is not None:
            out = out + shift.to(x.dtype).view(batch, channels, 1,
                                               1)  # [B, C, H, W]
        return out

    # ------------------------------------------------------- views and paths
    def attention_maps(self, x: Tensor, queries: Tensor) -> Tensor:
        """The weights query ``i`` puts on every position ``j``: the context
        pooling's ``softmax_j(W_k x_j)`` (``'att'``) or uniform ``1 / HW``
        (``'avg'``), the same map for every query (GCNet's
        query-independent attention); ``forward`` pools ``x`` with it.

        Args:
            x (Tensor): ``[B, C, H, W]``.
            queries (Tensor): Flat query positions ``y * W + x``, ``[Q]``
                (int64).

        Returns:
            Tensor: ``[B, Q, H, W]`` fp32, each map summing to 1.
        """
        batch, _, height, width = x.shape
        if self.pooling_type == 'att':
            weights = self.global_context(x)[1]  # [B, H*W]
        else:
            weights = x.new_full((batch, height * width),
                                 1.0 / (height * width),
                                 dtype=torch.float32)  # [B, H*W]
        return weights.view(batch, 1, height,
                            width).expand(-1, len(queries), -1,
                                          -1)  # [B, Q, H, W]

    def spatial_pool(self, x: Tensor) -> Tensor:
        """Global context of ``x`` ``[B, C, H, W]`` as ``[B, C, 1, 1]``
        (mmcv ``ContextBlock``'s name for it)."""
        return self.global_context(x)[0][..., None, None]  # [B, C, 1, 1]

    def _fast_path_wins(self, x: Tensor) -> bool:
        """The memory-lean backward wins on the CPU (measured,
        ``docs/performance.md``); it is eager-only, so not when tracing."""
        return x.device.type == 'cpu' and not is_tracing()

    def _fused_forward(self, x: Tensor) -> Tensor:
        """The forward above as one memory-lean autograd function."""
        transform_params = [
            p for branch in (self.channel_add_conv, self.channel_mul_conv)
            if branch is not None for p in branch.parameters()
        ]
        if self.pooling_type == 'att':
            return context_fusion(x, self.global_context, self.fusion_terms,
                                  transform_params, self.conv_mask.weight,
                                  self.conv_mask.bias)
        return context_fusion(x, self.global_context, self.fusion_terms,
                              transform_params)
