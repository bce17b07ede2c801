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
outputs are the same. No mode builds the ``HW x HW`` pairwise matrix:

* softmax modes call fused scaled-dot-product attention (memory linear in
  ``HW``; the scale is passed explicitly);
* dot product uses associativity: ``theta^T (phi g^T) / N``, ``O(HW C^2)``;
* concatenation splits ``w . [theta_i, phi_j] = a_i + b_j`` and sorts the
  ``b_j``: the keys with ``a_i + b_j > 0`` form a suffix of the sorted order,
  so ``y_i = (a_i G_k + BG_k) / N`` with suffix sums ``G``, ``BG`` of ``g``
  and ``b g``, ``O(HW log HW + HW C)`` and exact (ReLU's kink has measure
  zero).
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model.weight_init import constant_init, normal_init
from mmengine.model import BaseModule
from mmdet.registry import MODELS
from torch import Tensor, nn

from .utils import (OwnInitAfterParent, check_choice, check_positive,
                    check_positive_int)
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
class NLBlock(OwnInitAfterParent, BaseModule):
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
                           ('sub_sample', sub_sample),
                           ('zeros_init', zeros_init)):
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
        self.conv_out = conv(inter_channels, in_channels, conv_cfg=conv_cfg,
                             norm_cfg=norm_cfg)
        if mode != 'gaussian':
            self.theta = conv(in_channels, inter_channels, conv_cfg=conv_cfg)
            self.phi = conv(in_channels, inter_channels, conv_cfg=conv_cfg)
        if mode == 'concatenation':
            self.concat_project = ConvModule(
                inter_channels * 2, 1, 1, bias=False,
                act_cfg=dict(type='ReLU'))
        if sub_sample:
            self.g = nn.Sequential(self.g, _SubSample())
            self.phi = (nn.Sequential(self.phi, _SubSample())
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
        last = (self.conv_out.norm
                if self.conv_out.with_norm else self.conv_out.conv)
        if self.zeros_init:
            constant_init(last, 0)
        else:
            normal_init(last, std=self.std)


    def pairwise_aggregate(self, x: Tensor) -> Tensor:
        """``y_i = sum_j f(x_i, x_j) g(x_j) / C(x)`` without ``[HW, HW]``.

        Args:
            x (Tensor): ``[B, C, H, W]``.

        Returns:
            Tensor: ``y`` positions-major, ``[B, H*W, C_inter]``.
        """
        query, key, value = self._project(x)  # [B, N|M, Ci or C]
        if self.mode in ('gaussian', 'embedded_gaussian'):
            return softmax_attention(
                query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1),
                scale=self._logit_scale(query.shape[-1])).squeeze(
                    1)  # [B, N, Ci]
        if self.mode == 'dot_product':
            return _dot_product_aggregate(query, key, value)  # [B, N, Ci]
        return _concat_relu_aggregate(query, key, value,
                                      *self._concat_weights())

    def attention_weights(self, x: Tensor, queries: Tensor) -> Tensor:
        """Rows ``f(x_i, x_j) / C(x)`` of the pairwise weights for the chosen
        queries ``i`` only (never the ``[HW, HW]`` matrix): ``y_i = sum_j
        w_ij g(x_j)`` as in :meth:`pairwise_aggregate`.

        Softmax modes give rows that sum to 1; ``'dot_product'`` and
        ``'concatenation'`` are divided by the number of keys ``M``.

        Args:
            x (Tensor): ``[B, C, H, W]``.
            queries (Tensor): Flat query positions ``y * W + x``, ``[Q]``
                (int64).

        Returns:
            Tensor: ``[B, Q, Hk, Wk]`` fp32 over the key grid (``H x W``, or
            the 2x2-pooled grid with ``sub_sample``).
        """
        height, width = x.shape[2:]
        if self.sub_sample:
            kernel = _SubSample.pool_kernel(height, width)
            height, width = height // kernel[0], width // kernel[1]
        query, key, _ = self._project(x)  # [B, N, Ci], [B, M, Ci]
        with float32_region(x.device.type):
            query = to_float32(query[:, queries])  # [B, Q, Ci or C]
            key = to_float32(key)  # [B, M, Ci or C]
            if self.mode == 'concatenation':
                w_query, w_key = (to_float32(w)
                                  for w in self._concat_weights())
                pairs = (torch.matmul(query, w_query).unsqueeze(2) +
                         torch.matmul(key, w_key).unsqueeze(1))  # [B, Q, M]
                weights = F.relu(pairs) / key.shape[1]
            else:
                logits = torch.bmm(query, key.transpose(1, 2))  # [B, Q, M]
                if self.mode == 'dot_product':
                    weights = logits / key.shape[1]
                else:
                    weights = torch.softmax(
                        logits * self._logit_scale(query.shape[-1]), dim=2)
        return weights.view(*weights.shape[:2], height, width)

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

    def _project(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """``theta(x)``, ``phi(x)``, ``g(x)`` positions-major: ``[B, N,
        Ci]``, ``[B, M, Ci]``, ``[B, M, Ci]`` (``x`` itself, ``C`` channels,
        for theta/phi in ``'gaussian'`` mode; ``M = N/4`` with
        ``sub_sample``)."""
        fused = self._fused_projections(x)
        if fused is not None:
            return fused
        value = _positions_major(self.g, x)  # [B, M, Ci]
        if self.mode == 'gaussian':
            query = x.flatten(2).transpose(1, 2)  # [B, N, C]
            key = (_positions_major(self.phi, x)
                   if self.sub_sample else query)  # [B, M, C]
        else:
            query = _positions_major(self.theta, x)  # [B, N, Ci]
            key = _positions_major(self.phi, x)  # [B, M, Ci]
        return query, key, value

    def _fused_projections(
            self, x: Tensor) -> Optional[Tuple[Tensor, Tensor, Tensor]]:
        """``theta``, ``phi`` and ``g`` positions-major from one matrix
        product, as slices of one ``[B, N, 3 Ci]`` tensor (one read of
        ``x``; one allocation, whose release leaves room for the output),
        when all three are plain 1x1 convs without sub-sampling; else None.
        """
        if self.mode == 'gaussian' or self.sub_sample:
            return None
        convs = (self.theta, self.phi, self.g)
        if not all(_plain_1x1(m) and not m.with_norm
                   and not m.with_activation for m in convs):
            return None
        weight = torch.cat([m.conv.weight.flatten(1)
                            for m in convs])  # [3 Ci, C]
        pixels = x.flatten(2).transpose(1, 2)  # [B, N, C], a view
        projected = torch.bmm(pixels, weight.t().expand(
            x.shape[0], -1, -1))  # [B, N, 3 Ci]
        if all(m.conv.bias is not None for m in convs):
            projected.add_(
                torch.cat([m.conv.bias for m in convs]).to(projected.dtype))
        elif any(m.conv.bias is not None for m in convs):
            return None
        return projected.split(self.inter_channels, dim=2)

    def forward(self, x: Tensor) -> Tensor:
        """Add the transformed non-local response to the input.

        Args:
            x (Tensor): ``[B, C, H, W]``.

        Returns:
            Tensor: ``[B, C, H, W]``.
        """
        y = self.pairwise_aggregate(x)  # [B, N, Ci]
        out = _from_positions_major(self.conv_out, y,
                                    x.shape[2:])  # [B, C, H, W]
        if out.dtype == x.dtype and out.shape == x.shape:
            return out.add_(x)  # out is ours; its producer keeps no copy
        return x + out


def _plain_1x1(module: nn.Module) -> bool:
    """Whether ``module`` is a ``ConvModule`` whose conv is a plain 1x1
    ``nn.Conv2d`` (so it can run as a matrix product in any layout)."""
    return (isinstance(module, ConvModule) and type(module.conv) is nn.Conv2d
            and module.conv.kernel_size == (1, 1)
            and module.conv.groups == 1 and module.conv.stride == (1, 1)
            and module.conv.padding == (0, 0))


def _positions_major(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` as ``[B, H*W, C_out]`` (channels contiguous, as the
    fused attention kernels want).

    A plain 1x1 conv (no norm, no activation) runs as one matrix product
    straight into that layout; anything else (custom convs, the
    sub-sampling ``nn.Sequential``) runs as built and is transposed.
    """
    if _plain_1x1(module) and not module.with_norm and \
            not module.with_activation:
        weight = module.conv.weight.flatten(1)  # [C_out, C_in]
        pixels = x.flatten(2).transpose(1, 2)  # [B, N, C_in], a view
        # bmm, not matmul: with a weight that requires grad, matmul's
        # broadcasting path copies the transposed input.
        out = torch.bmm(pixels, weight.t().expand(x.shape[0], -1,
                                                  -1))  # [B, N, C_out]
        if module.conv.bias is not None:  # in place: no second map
            out.add_(module.conv.bias.to(out.dtype))
        return out
    return module(x).flatten(2).transpose(1, 2)  # [B, M, C_out]


def _from_positions_major(module: ConvModule, y: Tensor,
                          size: Tuple[int, int]) -> Tensor:
    """``module`` (1x1 conv, then its norm) on positions-major ``y``
    ``[B, N, C_in]``, returned as ``[B, C_out, H, W]`` without transposing
    ``y`` in memory when the conv is a plain 1x1."""
    batch = y.shape[0]
    if not _plain_1x1(module) or module.with_activation:
        return module(y.transpose(1, 2).reshape(batch, -1, *size))
    weight = module.conv.weight.flatten(1)  # [C_out, C_in]
    out = torch.bmm(weight.expand(batch, -1, -1),
                    y.transpose(1, 2))  # [B, C_out, N], no copy of y
    if module.conv.bias is not None:  # in place: no second map
        out.add_(module.conv.bias.view(-1, 1).to(out.dtype))
    out = out.view(batch, -1, *size)  # [B, C_out, H, W]
    return module.norm(out) if module.with_norm else out


def _dot_product_aggregate(query: Tensor, key: Tensor,
                           value: Tensor) -> Tensor:
    """``y_i = sum_j (q_i . k_j) v_j / M = q_i (sum_j k_j^T v_j) / M``.

    Args:
        query (Tensor): ``[B, N, Ci]``.
        key (Tensor): ``[B, M, Ci]``.
        value (Tensor): ``[B, M, Cv]``.

    Returns:
        Tensor: ``[B, N, Cv]`` (fp32 sums under autocast).
    """
    out_dtype = value.dtype
    with float32_region(query.device.type):
        query, key, value = (to_float32(t) for t in (query, key, value))
        summary = torch.bmm(key.transpose(1, 2), value)  # [B, Ci, Cv]
        y = torch.bmm(query, summary) / key.shape[1]  # [B, N, Cv]
    return y.to(out_dtype)


def _concat_relu_aggregate(query: Tensor, key: Tensor, value: Tensor,
                           w_query: Tensor, w_key: Tensor) -> Tensor:
    """``y_i = sum_j ReLU(a_i + b_j) v_j / M``, ``a = w_q . q``,
    ``b = w_k . k``, in ``O(M log M + (N + M) C)``.

    With the ``b_j`` sorted ascending, the keys that pass the ReLU for query
    ``i`` are the suffix from ``k_i = #{j : b_j <= -a_i}``; so ``y_i =
    (a_i G[k_i] + BG[k_i]) / M`` with suffix sums ``G[k] = sum_{j>=k} v_j``
    and ``BG[k] = sum_{j>=k} b_j v_j`` (accumulated in fp64).

    Args:
        query (Tensor): ``[B, N, Ci]``.
        key (Tensor): ``[B, M, Ci]``.
        value (Tensor): ``[B, M, Cv]``.
        w_query (Tensor): ``[Ci]`` projection weights of the query half.
        w_key (Tensor): ``[Ci]`` projection weights of the key half.

    Returns:
        Tensor: ``[B, N, Cv]``.
    """
    out_dtype = value.dtype
    num_keys, channels = key.shape[1], value.shape[2]
    with float32_region(query.device.type):
        a = _matvec(to_float32(query), to_float32(w_query))  # [B, N]
        b = _matvec(to_float32(key), to_float32(w_key))  # [B, M]
        b_sorted, order = torch.sort(b, dim=1)  # [B, M]
        value = torch.gather(
            to_float32(value), 1,
            order.unsqueeze(2).expand(-1, -1, channels)).double()
        weighted = value * b_sorted.double().unsqueeze(2)  # [B, M, Cv]
        # Suffix sums with a trailing 0: [B, M + 1, 2 Cv].
        suffix = torch.cat([value, weighted], dim=2).flip(1).cumsum(1).flip(1)
        suffix = F.pad(suffix, (0, 0, 0, 1))  # [B, M + 1, 2 Cv]
        first = _count_not_greater(b_sorted.detach(), -a.detach())  # [B, N]
        picked = torch.gather(
            suffix, 1,
            first.unsqueeze(2).expand(-1, -1, 2 * channels))  # [B, N, 2 Cv]
        sum_v, sum_bv = picked.chunk(2, dim=2)  # [B, N, Cv] each
        y = (a.double().unsqueeze(2) * sum_v + sum_bv) / num_keys
    return y.to(out_dtype)


def _matvec(features: Tensor, weight: Tensor) -> Tensor:
    """``features @ weight``: ``[B, L, C] x [C] -> [B, L]``.

    Exported with a ``[C, 1]`` matrix instead of the vector: onnxruntime
    (1.31 at least) fuses a ``Transpose`` followed by a ``MatMul`` whose
    second operand is 1-D into a ``FusedMatMul`` that computes wrong values
    (the keys of ``sub_sample`` come out of such a transpose).

    Args:
        features (Tensor): ``[B, L, C]``.
        weight (Tensor): ``[C]``.

    Returns:
        Tensor: ``[B, L]``.
    """
    if torch.onnx.is_in_onnx_export():
        return torch.matmul(features, weight.unsqueeze(1)).squeeze(2)
    return torch.matmul(features, weight)


def _count_not_greater(sorted_rows: Tensor, values: Tensor) -> Tensor:
    """``torch.searchsorted(sorted_rows, values, right=True)``: per value,
    how many elements of its row are ``<=`` it.

    ONNX has no searchsorted, so under ``torch.onnx.export`` the same
    integers come from :func:`_bisect_right` (exact, ``O(N log M)``).

    Args:
        sorted_rows (Tensor): ``[B, M]``, each row ascending.
        values (Tensor): ``[B, N]``.

    Returns:
        Tensor: ``[B, N]`` int64 in ``0 .. M``.
    """
    if torch.onnx.is_in_onnx_export():
        return _bisect_right(sorted_rows, values)
    return torch.searchsorted(sorted_rows, values, right=True)


def _bisect_right(sorted_rows: Tensor, values: Tensor) -> Tensor:
    """Branch-free binary search giving ``torch.searchsorted(...,
    right=True)`` from ``gather``, compare and ``where`` alone (ops every
    ONNX runtime has): the count ``k`` of elements ``<= value`` is built
    bit by bit, highest first, keeping a bit when the element at ``k + bit
    - 1`` is still ``<= value``; ``floor(log2 M) + 1`` steps.

    Args:
        sorted_rows (Tensor): ``[B, M]``, each row ascending, ``M >= 1``.
        values (Tensor): ``[B, N]``.

    Returns:
        Tensor: ``[B, N]`` int64 in ``0 .. M``.
    """
    length = sorted_rows.shape[1]
    count = torch.zeros(values.shape, dtype=torch.long,
                        device=values.device)  # [B, N]
    step = 1 << (length.bit_length() - 1)  # highest power of 2 <= M
    while step:
        candidate = count + step  # [B, N]
        probe = torch.gather(sorted_rows, 1, torch.clamp(
            candidate - 1, max=length - 1))  # [B, N]
        count = torch.where((candidate <= length) & (probe <= values),
                            candidate, count)
        step //= 2
    return count
