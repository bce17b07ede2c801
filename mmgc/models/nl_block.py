"""Non-local block (Wang et al. 2018) as an MMDetection plugin.

``z = x + W_z y`` with ``y_i = sum_j f(x_i, x_j) g(x_j) / C(x)`` and the
four pairwise functions of the paper:

* ``'embedded_gaussian'``: ``softmax_j(theta_i . phi_j * s)``, ``s =
  1/sqrt(C_inter)`` if ``use_scale`` else 1;
* ``'gaussian'``: ``softmax_j(x_i . x_j)`` (``theta`` and ``phi`` are the
  input itself, max-pooled for ``phi`` with ``sub_sample``);
* ``'dot_product'``: ``theta_i . phi_j / N``;
* ``'concatenation'``: ``ReLU(w . [theta_i, phi_j]) / N``.

Arguments, submodules and state-dict keys are those of mmcv's
``NonLocal2d`` (``g.conv``, ``theta.conv``, ``phi.conv``, ``conv_out.conv``
and its norm, ``concat_project.conv``; with ``sub_sample`` the ``g``/``phi``
projections become ``nn.Sequential`` and their keys gain ``.0``), and the
outputs are the same.

``_project``, ``pairwise_weights`` and ``forward`` below are the paper's
steps (the reference path, ``impl='reference'``, which builds the ``HW x
HW`` pairwise matrix as mmcv does). On the CPU the same ``y`` comes without
that matrix, in memory linear in ``HW``
(:mod:`mmgc.models.utils.nonlocal_aggregate`).
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from mmengine.model.weight_init import constant_init, normal_init
from torch import Tensor, nn

from .utils import (OwnInitAfterParent, SelectableImpl, check_choice,
                    check_positive, check_positive_int)
from .utils.nonlocal_aggregate import _bisect_right  # noqa: F401 (API)
from .utils.nonlocal_aggregate import (concat_relu_aggregate,
                                       dot_product_aggregate,
                                       from_positions_major, fused_projections,
                                       positions_major)
from .utils.precision import float32_region, softmax_attention, to_float32

MODES = ('embedded_gaussian', 'gaussian', 'dot_product', 'concatenation')


class _SubSample(nn.MaxPool2d):
    """mmcv's ``MaxPool2d(kernel_size=(2, 2))`` for ``sub_sample``, except
    that a side shorter than 2 is left unpooled (mmcv's block fails on maps
    of height or width 1). No parameters: state-dict keys are unchanged."""

    def __init__(self) -> None:
        super().__init__(kernel_size=(2, 2))

    @staticmethod
    def pool_kernel(height: int, width: int) -> Tuple[int, int]:
        """Pooling window (= stride) for a ``height x width`` map."""
        return min(2, height), min(2, width)

    def forward(self, x: Tensor) -> Tensor:
        kernel = self.pool_kernel(x.shape[-2], x.shape[-1])
        return F.max_pool2d(x, kernel, kernel)  # [B, C, H//2, W//2]


@MODELS.register_module()
class NLBlock(OwnInitAfterParent, SelectableImpl, BaseModule):
    """Non-local block: every position aggregates features of all positions.

    Args:
        in_channels (int): Channels of the input feature map.
        reduction (int): ``C_inter = max(in_channels // reduction, 1)``
            channels for ``g``/``theta``/``phi`` (mmcv's rule). Default: 2.
        use_scale (bool): Scale ``embedded_gaussian`` logits by
            ``1/sqrt(C_inter)``. Default: True.
        conv_cfg (dict, optional): Config of the 1x1 convs.
        norm_cfg (dict, optional): Norm after the output conv (zero-initialised
            instead of the conv when given).
        mode (str): One of ``'embedded_gaussian'``, ``'gaussian'``,
            ``'dot_product'``, ``'concatenation'``.
            Default: ``'embedded_gaussian'``.
        sub_sample (bool): 2x2 max-pool the keys (``phi``) and values
            (``g``). Default: False.
        zeros_init (bool): Zero the output conv (or its norm), so the block
            starts as the identity; otherwise ``N(0, std)``. Default: True.
        std (float): Std of the normal init of the projections. Default: 0.01.
        init_cfg (dict, optional): mmengine initialisation config; the
            block's own init is re-applied after it (as mmcv's).

    Attributes:
        impl (str): ``'auto'`` (default), ``'reference'`` or ``'fused'``:
            the path ``forward`` runs; see
            :mod:`mmgc.models.utils.implementation`.
    """

    #: mmcv ``NonLocal2d``'s: a ResNet names the plugin
    #: ``layer3.4.nonlocal_block``, as in MMDetection's checkpoints.
    _abbr_ = 'nonlocal_block'

    def __init__(self,
                 in_channels: int,
                 reduction: int = 2,
                 use_scale: bool = True,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None,
                 mode: str = 'embedded_gaussian',
                 sub_sample: bool = False,
                 zeros_init: bool = True,
                 std: float = 0.01,
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        owner = type(self).__name__
        check_positive_int('in_channels', in_channels, owner)
        check_positive_int('reduction', reduction, owner)
        check_choice('mode', mode, MODES, owner)
        check_positive('std', std, owner)
        for name, flag in (('use_scale', use_scale),
                           ('sub_sample', sub_sample), ('zeros_init',
                                                        zeros_init)):
            check_choice(name, flag, (True, False), owner)
        # as mmcv's NonLocal2d: at least one inner channel
        inter_channels = max(in_channels // reduction, 1)
        self.in_channels = in_channels
        self.reduction = reduction
        self.inter_channels = inter_channels
        self.use_scale = use_scale
        self.mode = mode
        self.sub_sample = sub_sample
        self.zeros_init = zeros_init
        self.std = std

        def conv(in_ch: int, out_ch: int, **kwargs) -> ConvModule:
            return ConvModule(in_ch, out_ch, 1, act_cfg=None, **kwargs)

        self.g = conv(in_channels, inter_channels, conv_cfg=conv_cfg)
        self.conv_out = conv(
            inter_channels, in_channels, conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        if mode != 'gaussian':
            self.theta = conv(in_channels, inter_channels, conv_cfg=conv_cfg)
            self.phi = conv(in_channels, inter_channels, conv_cfg=conv_cfg)
        if mode == 'concatenation':
            self.concat_project = ConvModule(
                inter_channels * 2,
                1,
                1,
                bias=False,
                act_cfg=dict(type='ReLU'))
        if sub_sample:
            self.g = nn.Sequential(self.g, _SubSample())
            self.phi = (
                nn.Sequential(self.phi, _SubSample())
                if mode != 'gaussian' else _SubSample())
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """mmcv's init: ``N(0, std)`` projections, zero (or ``N(0, std)``)
        output conv -- or its norm when there is one."""
        for name in ('g', 'theta', 'phi'):
            module = getattr(self, name, None)
            if isinstance(module, nn.Sequential):
                module = module[0]
            if isinstance(module, ConvModule):
                normal_init(module.conv, std=self.std)
        last = (
            self.conv_out.norm
            if self.conv_out.with_norm else self.conv_out.conv)
        if self.zeros_init:
            constant_init(last, 0)
        else:
            normal_init(last, std=self.std)

    # ------------------------------------------------ the paper, step by step
    def _project(self,
                 x: Tensor,
                 fast: bool = True) -> Tuple[Tensor, Tensor, Tensor]:
        """Embeddings ``theta(x)``, ``phi(x)``, ``g(x)`` positions-major:
        ``[B, N, Ci]``, ``[B, M, Ci]``, ``[B, M, Ci]`` (``x`` itself, ``C``
        channels, for theta/phi in ``'gaussian'`` mode; ``M = N/4`` with
        ``sub_sample``).

        ``fast=False`` applies the 1x1 conv modules as built (the reference
        path); ``fast=True`` runs plain 1x1 convs as matrix products straight
        into this layout, all three from one product when possible.
        """
        if fast and self.mode != 'gaussian' and not self.sub_sample:
            fused = fused_projections((self.theta, self.phi, self.g), x,
                                      self.inter_channels)
            if fused is not None:
                return fused

        def embed(module: nn.Module) -> Tensor:
            if fast:
                return positions_major(module, x)  # [B, N|M, C_out]
            return module(x).flatten(2).transpose(1, 2)  # [B, N|M, C_out]

        value = embed(self.g)  # [B, M, Ci]
        if self.mode == 'gaussian':
            query = x.flatten(2).transpose(1, 2)  # [B, N, C]
            key = embed(self.phi) if self.sub_sample else query  # [B, M, C]
        else:
            query = embed(self.theta)  # [B, N, Ci]
            key = embed(self.phi)  # [B, M, Ci]
        return query, key, value

    def pairwise_weights(self, query: Tensor, key: Tensor) -> Tensor:
        """``f(x_i, x_j) / C(x)`` for every query ``i`` and key ``j``, fp32
        even under autocast: ``softmax_j(theta_i . phi_j * s)`` (Gaussian
        modes), ``theta_i . phi_j / M`` (dot product), ``ReLU(w . [theta_i,
        phi_j]) / M`` (concatenation).

        Args:
            query (Tensor): ``[B, Q, Ci]`` (``C`` for ``'gaussian'``).
            key (Tensor): ``[B, M, Ci]``.

        Returns:
            Tensor: ``[B, Q, M]`` fp32.
        """
        num_keys = key.shape[1]
        with float32_region(query.device.type):
            query, key = to_float32(query), to_float32(key)
            if self.mode == 'concatenation':
                w_query, w_key = (to_float32(w)
                                  for w in self._concat_weights())  # [Ci]
                pairs = (torch.matmul(query, w_query).unsqueeze(2) +
                         torch.matmul(key, w_key).unsqueeze(1))  # [B, Q, M]
                return F.relu(pairs) / num_keys  # [B, Q, M]
            logits = torch.bmm(query, key.transpose(1, 2))  # [B, Q, M]
            if self.mode == 'dot_product':
                return logits / num_keys  # [B, Q, M]
            return torch.softmax(
                logits * self._logit_scale(query.shape[-1]),
                dim=2)  # [B, Q, M]

    def forward(self, x: Tensor) -> Tensor:
        """``z = x + W_z y`` with ``y_i = sum_j f(x_i, x_j) g(x_j) / C(x)``.

        ``impl='reference'`` runs the code below, which builds the
        ``[B, N, N]`` pairwise matrix as mmcv's ``NonLocal2d`` does, and is
        the default off the CPU; on the CPU (``impl='auto'``) the same ``y``
        comes from :meth:`pairwise_aggregate`, with memory linear in ``N``
        (1.1 GB per image less at N = 16800).

        Args:
            x (Tensor): ``[B, C, H, W]``.

        Returns:
            Tensor: ``[B, C, H, W]``.
        """
        if self.use_fast_path(x):
            return self._fused_forward(x)
        batch, _, height, width = x.shape
        query, key, value = self._project(x, fast=False)  # [B, N|M, Ci]
        weights = self.pairwise_weights(query, key)  # [B, N, M], fp32
        y = torch.bmm(weights.to(value.dtype), value)  # [B, N, Ci]
        y = y.transpose(1, 2).reshape(batch, -1, height,
                                      width)  # [B, Ci, H, W]
        return x + self.conv_out(y)  # [B, C, H, W]

    # ------------------------------------------------------- views and paths
    def _fast_path_wins(self, x: Tensor) -> bool:
        """Linear memory wins on the CPU (measured, ``docs/performance.md``:
        the reference's pairwise matrix alone is ``4 N^2`` bytes per image);
        elsewhere not measured yet."""
        return x.device.type == 'cpu'

    def pairwise_aggregate(self, x: Tensor) -> Tensor:
        """``y_i = sum_j f(x_i, x_j) g(x_j) / C(x)`` without ``[HW, HW]``
        (:mod:`mmgc.models.utils.nonlocal_aggregate`).

        Args:
            x (Tensor): ``[B, C, H, W]``.

        Returns:
            Tensor: ``y`` positions-major, ``[B, H*W, C_inter]``.
        """
        query, key, value = self._project(x)  # [B, N|M, Ci or C]
        if self.mode in ('gaussian', 'embedded_gaussian'):
            return softmax_attention(
                query.unsqueeze(1),
                key.unsqueeze(1),
                value.unsqueeze(1),
                scale=self._logit_scale(query.shape[-1])).squeeze(
                    1)  # [B, N, Ci]
        if self.mode == 'dot_product':
            return dot_product_aggregate(query, key, value)  # [B, N, Ci]
        return concat_relu_aggregate(query, key, value,
                                     *self._concat_weights())  # [B, N, Ci]

    def _fused_forward(self, x: Tensor) -> Tensor:
        """The forward above with :meth:`pairwise_aggregate`."""
        y = self.pairwise_aggregate(x)  # [B, N, Ci]
        out = from_positions_major(self.conv_out, y,
                                   x.shape[2:])  # [B, C, H, W]
        if out.dtype == x.dtype and out.shape == x.shape:
            return out.add_(x)  # out is ours; its producer keeps no copy
        return x + out

    def attention_maps(self, x: Tensor, queries: Tensor) -> Tensor:
        """The weights query ``i`` puts on every position: rows ``w_ij =
        f(x_i, x_j) / C(x)`` of the pairwise weights for the chosen queries
        only (never the ``[HW, HW]`` matrix), ``y_i = sum_j w_ij g(x_j)`` as
        in :meth:`pairwise_aggregate`.

        Softmax modes give maps that sum to 1; ``'dot_product'`` and
        ``'concatenation'`` are divided by the number of keys ``M``. With
        ``sub_sample`` each key is a 2x2 max-pooled cell of the input: its
        weight is spread evenly over the input positions it pools (a
        trailing odd row or column, which the pooling drops, gets 0), so the
        map is on the input grid and keeps its sum.

        Args:
            x (Tensor): ``[B, C, H, W]``.
            queries (Tensor): Flat query positions ``y * W + x``, ``[Q]``
                (int64).

        Returns:
            Tensor: ``[B, Q, H, W]`` fp32.
        """
        height, width = x.shape[2:]
        query, key, _ = self._project(x)  # [B, N, Ci], [B, M, Ci]
        weights = self.pairwise_weights(query[:, queries], key)  # [B, Q, M]
        if not self.sub_sample:
            return weights.view(*weights.shape[:2], height, width)
        pool_h, pool_w = _SubSample.pool_kernel(height, width)
        keys_h, keys_w = height // pool_h, width // pool_w
        maps = weights.view(*weights.shape[:2], keys_h,
                            keys_w)  # [B, Q, Hk, Wk]
        maps = maps.repeat_interleave(
            pool_h, dim=2).repeat_interleave(
                pool_w, dim=3) / (pool_h * pool_w)  # [B, Q, Hk*ph, Wk*pw]
        return F.pad(maps, (0, width - keys_w * pool_w, 0,
                            height - keys_h * pool_h))  # [B, Q, H, W]

    def _logit_scale(self, query_channels: int) -> float:
        """Factor of the softmax logits: ``1/sqrt(C_inter)`` for a scaled
        embedded Gaussian, else 1."""
        return (query_channels**-0.5 if self.mode == 'embedded_gaussian'
                and self.use_scale else 1.0)

    def _concat_weights(self) -> Tuple[Tensor, Tensor]:
        """``concat_project``'s weights of the query and the key half,
        ``[Ci]`` each."""
        weight = self.concat_project.conv.weight.flatten()  # [2 Ci]
        return weight[:self.inter_channels], weight[self.inter_channels:]
