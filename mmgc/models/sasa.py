"""Stand-alone self-attention (SASA, Ramachandran et al. 2019).

Local multi-head self-attention over a ``k x k`` window around every query:

``y_ij = sum_ab softmax_ab(q_ij . k_ab + q_ij . r_(a-i, b-j)) v_ab``

where ``r`` concatenates a row-offset embedding (first half of each head's
channels) and a column-offset embedding (second half). Keys that fall
outside the image are masked out of the softmax (they are not zero keys).

Two registered modules:

* ``SASAConv`` -- a conv-layer type, a drop-in replacement of a spatial
  convolution (``build_conv_layer(dict(type='SASAConv'), ...)``); stride
  ``s`` is attention followed by ``s x s`` average pooling;
* ``SASABlock`` -- a residual ResNet plugin ``x + W_o(SASA(x))`` with zero
  ``W_o``, identity at initialisation.

``SASAConv.local_attention_reference`` is the formula above in plain torch
(every query's window unfolded: ``k^2`` copies of the keys and values) --
the path on every device but the CPU. On the CPU (``impl='auto'``) the same
output comes from blocked ("halo") attention,
:mod:`mmgc.models.utils.halo_attention`, which copies keys and values 3-4
times instead of ``k^2`` times.
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor, nn

from .utils import (OwnInitAfterParent, check_choice, check_odd,
                    check_positive_int, to_int_pair, zero_init_last_layer)
from .utils.halo_attention import MASK, choose_block, local_attention
from .utils.implementation import SelectableImpl
from .utils.precision import float32_region, to_float32
from .utils.validation import ArgumentError

__all__ = ['SASAConv', 'SASABlock', 'choose_block', 'local_attention']

IntOrPair = Union[int, Tuple[int, int]]


def stride_pool(x: Tensor, stride: Tuple[int, int]) -> Tensor:
    """``F.avg_pool2d(x, stride, stride, ceil_mode=True)``: the mean of each
    ``stride`` window, partial windows at the border averaging what they
    hold.

    Under ``torch.compile`` the same values come from sums over the
    zero-padded map divided by the count of real elements: inductor (torch
    2.13, CPU) returns a wrong gradient for ``ceil_mode`` pooling with
    partial windows.

    Args:
        x (Tensor): ``[B, C, H, W]``.
        stride (tuple[int, int]): ``(sh, sw)``.

    Returns:
        Tensor: ``[B, C, ceil(H / sh), ceil(W / sw)]``.
    """
    if not torch.compiler.is_compiling():
        return F.avg_pool2d(x, stride, stride, ceil_mode=True)
    height, width = x.shape[-2:]
    pad = (0, -width % stride[1], 0, -height % stride[0])
    sums = F.avg_pool2d(
        F.pad(x, pad), stride, stride, divisor_override=1)  # [B, C, H/s, W/s]
    counts = F.avg_pool2d(
        F.pad(x.new_ones(1, 1, height, width), pad),
        stride,
        stride,
        divisor_override=1)  # [1, 1, H/s, W/s]
    return sums / counts


def _check_heads(name: str, channels: int, num_heads: int, owner: str) -> int:
    """Validate ``num_heads`` against ``channels``; return the (even) number
    of channels per head."""
    check_positive_int('num_heads', num_heads, owner)
    head_dim = channels // num_heads
    if channels % num_heads or head_dim % 2:
        allowed = [
            h for h in range(1, channels // 2 + 1) if channels % (2 * h) == 0
        ]
        raise ArgumentError(
            f'{owner}: num_heads={num_heads!r} does not split '
            f'{name}={channels!r} into an even number of channels per head '
            f'(halves for the row and column embeddings); allowed: ' +
            (f'num_heads in {allowed}'
             if allowed else f'none, {name} must be even'))
    return head_dim


@MODELS.register_module('SASAConv')
class SASAConv(SelectableImpl, BaseModule):
    """Local self-attention layer usable wherever a spatial conv is built.

    ``build_conv_layer(dict(type='SASAConv', num_heads=8), in_ch, out_ch,
    kernel_size=7, stride=s, padding=3)`` gives a layer whose output has
    the shape of the equivalent ``nn.Conv2d`` (``ceil(H / s)`` for an odd
    kernel with ``padding=kernel_size // 2``). Queries, keys and values are
    1x1 projections ``in_channels -> out_channels``; logits are scaled by
    ``1/sqrt(d)`` (content and relative terms alike).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels; divisible by ``num_heads``,
            with an even number of channels per head (halves for the row and
            column embeddings).
        kernel_size (int | tuple[int, int]): Odd window size (the conv's
            kernel size). Default: 7.
        stride (int | tuple[int, int]): Attention at full resolution, then
            ``stride x stride`` average pooling (``ceil_mode``). Default: 1.
        padding (int | tuple[int, int] | str, optional): Only for signature
            compatibility: ``None``, ``'same'`` or ``kernel_size // 2`` (the
            conv padding that gives this layer's output size); keys beyond
            the border are masked, never padded. Default: ``None``.
        dilation (int | tuple[int, int]): Must be 1.
        groups (int): Must be 1.
        bias (bool): Add a learnable per-channel output bias. Default: False.
        num_heads (int): Attention heads. Default: 8.
        window_size (int | tuple[int, int], optional): Attention window
            overriding ``kernel_size`` (whose padding checks then still
            apply), so that a builder that fixes ``kernel_size=3`` -- e.g.
            mmdet's ``Bottleneck`` with ``dcn=dict(type='SASAConv',
            window_size=7)`` -- can get a 7x7 window. Default: ``None``.
        block_size (int | tuple[int, int], optional): Query block of the
            halo implementation (the CPU path); default: chosen per input
            size by :func:`choose_block`. Affects speed and memory only.
        init_cfg (dict, optional): mmengine initialisation config.

    Attributes:
        impl (str): ``'auto'`` (default), ``'reference'`` or ``'fused'``:
            the path ``forward`` runs; see
            :mod:`mmgc.models.utils.implementation`.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: IntOrPair = 7,
                 stride: IntOrPair = 1,
                 padding: Optional[Union[IntOrPair, str]] = None,
                 dilation: IntOrPair = 1,
                 groups: int = 1,
                 bias: bool = False,
                 num_heads: int = 8,
                 window_size: Optional[IntOrPair] = None,
                 block_size: Optional[IntOrPair] = None,
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        owner = type(self).__name__
        check_positive_int('in_channels', in_channels, owner)
        check_positive_int('out_channels', out_channels, owner)
        kernel = to_int_pair('kernel_size', kernel_size, owner)
        check_odd('kernel_size', kernel_size, owner)
        self.stride = to_int_pair('stride', stride, owner)
        if padding is not None and padding != 'same' and to_int_pair(
                'padding', padding, owner) != (kernel[0] // 2, kernel[1] // 2):
            raise ArgumentError(
                f'{owner}: padding={padding!r} is not supported; use None, '
                f"'same' or kernel_size // 2 = {kernel[0] // 2} (the output "
                f'size is always ceil(input / stride))')
        if to_int_pair('dilation', dilation, owner) != (1, 1):
            raise ArgumentError(f'{owner}: dilation={dilation!r} is not '
                                f'supported; only dilation=1')
        check_choice('groups', groups, (1, ), owner)
        head_dim = _check_heads('out_channels', out_channels, num_heads, owner)
        if window_size is not None:
            window = to_int_pair('window_size', window_size, owner)
            check_odd('window_size', window_size, owner)
        else:
            window = kernel
        self.block_size = (None if block_size is None else to_int_pair(
            'block_size', block_size, owner))

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel
        self.window_size = window
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.qkv = nn.Conv2d(in_channels, 3 * out_channels, 1, bias=False)
        self.rel_h = nn.Parameter(torch.empty(window[0], head_dim // 2))
        self.rel_w = nn.Parameter(torch.empty(window[1], head_dim // 2))
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_channels))
        else:
            self.register_parameter('bias', None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Relative embeddings ~ N(0, 1/d) (timm's halo attention); the
        ``qkv`` conv keeps PyTorch's default (a parent's conv init may
        replace it); bias 0."""
        std = self.head_dim**-0.5
        nn.init.trunc_normal_(self.rel_h, std=std, a=-2 * std, b=2 * std)
        nn.init.trunc_normal_(self.rel_w, std=std, a=-2 * std, b=2 * std)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Attend within each query's window, then pool by the stride.

        Args:
            x (Tensor): ``[B, C_in, H, W]``.

        Returns:
            Tensor: ``[B, C_out, ceil(H / sh), ceil(W / sw)]``, in the
            memory format (contiguous or channels_last) of ``x``.
        """
        channels_last = (
            x.dim() == 4 and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last))
        if self.use_fast_path(x):
            qkv = self._project_qkv(x)  # [B, H, W, 3*C_out]
            out = local_attention(qkv, self.rel_h, self.rel_w, self.num_heads,
                                  self.block_size)  # [B, H, W, C_out]
            out = out.permute(0, 3, 1, 2)  # [B, C_out, H, W], NHWC strides
        else:
            out = self.local_attention_reference(x)  # [B, C_out, H, W]
        if self.stride != (1, 1):
            out = stride_pool(out, self.stride)  # [B, C_out, H/s, W/s]
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1).to(out.dtype)
        return out.contiguous(memory_format=torch.channels_last
                              if channels_last else torch.contiguous_format)

    def local_attention_reference(self, x: Tensor) -> Tensor:
        """``y_ij = sum_ab softmax_ab(q_ij . (k_ab + r_(a-i, b-j)) / sqrt(d))
        v_ab`` over each query's ``kh x kw`` window, written out: every
        window unfolded (``k^2`` copies of keys and values), keys outside
        the image masked. Softmax in fp32 even under autocast.

        Args:
            x (Tensor): ``[B, C_in, H, W]``.

        Returns:
            Tensor: ``[B, C_out, H, W]``, dtype of the projection.
        """
        batch, _, height, width = x.shape
        heads, dim, half = self.num_heads, self.head_dim, self.head_dim // 2
        (win_h, win_w), positions = self.window_size, height * width
        padding = (win_h // 2, win_w // 2)
        qkv = self.qkv(x)  # [B, 3*C_out, H, W]
        out_dtype = qkv.dtype
        with float32_region(x.device.type):
            query, key, value = to_float32(qkv).chunk(
                3, dim=1)  # [B, C_out, H, W] each

            def windows(t: Tensor) -> Tensor:
                return F.unfold(
                    t, (win_h, win_w), padding=padding).view(
                        batch, heads, dim, win_h * win_w,
                        positions)  # [B, heads, d, kh*kw, H*W]

            rel = torch.cat([
                to_float32(self.rel_h)[:, None].expand(win_h, win_w, half),
                to_float32(self.rel_w)[None].expand(win_h, win_w, half)
            ],
                            dim=2).view(win_h * win_w,
                                        dim).t()  # [d, kh*kw], r_(a, b)
            query = query.reshape(batch, heads, dim, 1,
                                  positions)  # [B, heads, d, 1, H*W]
            logits = (query * (windows(key) + rel[..., None])
                      ).sum(2) * dim**-0.5  # [B, heads, kh*kw, H*W]
            outside = F.unfold(
                x.new_ones(1, 1, height, width), (win_h, win_w),
                padding=padding).view(win_h * win_w,
                                      positions) == 0  # [kh*kw, H*W]
            weights = torch.softmax(
                logits.masked_fill(outside, MASK),
                dim=2)  # [B, heads, kh*kw, H*W]
            out = (weights.unsqueeze(2) * windows(value)).sum(
                3)  # [B, heads, d, H*W]
        return out.view(batch, heads * dim, height,
                        width).to(out_dtype)  # [B, C_out, H, W]

    def _fast_path_wins(self, x: Tensor) -> bool:
        """Halo attention wins on the CPU (measured,
        ``docs/performance.md``); elsewhere not measured yet. Not under
        ``torch.compile``: compiled by inductor (torch 2.13, CPU) its
        forward is right but its gradients are not."""
        return (x.device.type == 'cpu' and not torch.compiler.is_compiling())

    def _project_qkv(self, x: Tensor) -> Tensor:
        """Queries, keys and values of ``x`` ``[B, C_in, H, W]``, channels
        last: ``[B, H, W, 3*C_out]``."""
        batch, _, height, width = x.shape
        # 1x1 projection straight into channels-last layout: one matmul.
        pixels = x.permute(0, 2, 3,
                           1).reshape(batch, height * width,
                                      -1)  # [B, H*W, C_in] (view if NHWC)
        weight = self.qkv.weight.flatten(1).t()  # [C_in, 3*C_out]
        return torch.bmm(pixels,
                         weight.expand(batch, -1,
                                       -1)).view(batch, height, width,
                                                 -1)  # [B, H, W, 3*C_out]

    def attention_maps(self, x: Tensor, queries: Tensor) -> Tensor:
        """The weights query ``i`` puts on every position of ``x`` (before
        the stride's pooling): its :meth:`window_weights` averaged over the
        heads and placed at their image positions, 0 outside the window.

        Args:
            x (Tensor): ``[B, C_in, H, W]``.
            queries (Tensor): Flat query positions ``y * W + x``, ``[Q]``
                (int64).

        Returns:
            Tensor: ``[B, Q, H, W]`` fp32, each map summing to 1.
        """
        batch, _, height, width = x.shape
        win_h, win_w = self.window_size
        rad_h, rad_w = win_h // 2, win_w // 2
        weights = self.window_weights(x, queries).mean(2)  # [B, Q, kh, kw]
        # the window of query (y, x) covers rows y .. y + kh - 1 and columns
        # x .. x + kw - 1 of the map padded by the radius
        rows = (queries // width)[:, None] + torch.arange(
            win_h, device=x.device)  # [Q, kh]
        cols = (queries % width)[:, None] + torch.arange(
            win_w, device=x.device)  # [Q, kw]
        index = torch.arange(len(queries), device=x.device)  # [Q]
        padded = weights.new_zeros(batch, len(queries), height + 2 * rad_h,
                                   width + 2 * rad_w)  # [B, Q, Hp, Wp]
        padded[:, index[:, None, None], rows[:, :, None],
               cols[:, None, :]] = weights
        return padded[:, :, rad_h:rad_h + height,
                      rad_w:rad_w + width]  # [B, Q, H, W]

    def window_weights(self, x: Tensor, queries: Tensor) -> Tensor:
        """Softmax weights of the chosen queries over their ``kh x kw``
        windows, per head (before the stride's pooling): ``out_i = sum_ab
        w_iab v_ab`` per head as in :func:`local_attention`; keys outside
        the image get weight 0.

        Args:
            x (Tensor): ``[B, C_in, H, W]``.
            queries (Tensor): Flat query positions ``y * W + x``, ``[Q]``
                (int64).

        Returns:
            Tensor: ``[B, Q, heads, kh, kw]`` fp32; window offset ``(a,
            b)`` is the key at ``(y + a - kh//2, x + b - kw//2)``.
        """
        batch, _, height, width = x.shape
        win_h, win_w = self.window_size
        heads, dim, half = self.num_heads, self.head_dim, self.head_dim // 2
        qkv = to_float32(self._project_qkv(x))  # [B, H, W, 3*C_out]
        channels = self.out_channels
        with float32_region(x.device.type):
            query = qkv.view(batch, height * width,
                             3 * channels)[:, queries, :channels].reshape(
                                 batch, -1, heads, dim)  # [B, Q, heads, d]
            # Window of every query in the key map padded by the radius.
            rad_h, rad_w = win_h // 2, win_w // 2
            keys = F.pad(qkv[..., channels:2 * channels],
                         (0, 0, rad_w, rad_w, rad_h, rad_h))  # [B, Hp, Wp, C]
            rows = (queries // width)[:, None] + torch.arange(
                win_h, device=x.device)  # [Q, kh], padded coords
            cols = (queries % width)[:, None] + torch.arange(
                win_w, device=x.device)  # [Q, kw]
            window = keys[:, rows[:, :, None],
                          cols[:,
                               None, :]].view(batch, -1, win_h, win_w, heads,
                                              dim)  # [B, Q, kh, kw, h, d]
            logits = torch.einsum('bqhd,bqyxhd->bqhyx', query, window)
            logits = (logits +
                      torch.matmul(query[..., :half],
                                   to_float32(self.rel_h).t())[..., :, None] +
                      torch.matmul(query[..., half:],
                                   to_float32(self.rel_w).t())[..., None, :]
                      ) * dim**-0.5  # [B, Q, heads, kh, kw]
            inside = ((rows >= rad_h) &
                      (rows < height + rad_h))[:, :, None] & (
                          (cols >= rad_w) &
                          (cols < width + rad_w))[:, None, :]  # [Q, kh, kw]
            logits = logits.masked_fill(~inside[None, :, None], MASK)
            weights = torch.softmax(logits.flatten(3), dim=3)
        return weights.view_as(logits)

    def extra_repr(self) -> str:
        return (f'{self.in_channels}, {self.out_channels}, window='
                f'{self.window_size}, stride={self.stride}, '
                f'num_heads={self.num_heads}')


@MODELS.register_module()
class SASABlock(OwnInitAfterParent, BaseModule):
    """Residual local self-attention plugin: ``x + W_o(SASA(x))``.

    ``W_o`` (a 1x1 conv) is zero-initialised, also after a parent's
    ``init_weights``, so a freshly built block is the identity -- the
    block can be added to a pretrained backbone like a GC block, e.g. after
    a ResNet bottleneck's ``conv2``.

    Args:
        in_channels (int): Channels in and out; divisible by ``num_heads``
            with an even quotient.
        kernel_size (int | tuple[int, int]): Odd attention window.
            Default: 7.
        num_heads (int): Attention heads. Default: 8.
        block_size (int | tuple[int, int], optional): See
            :class:`SASAConv`.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    _abbr_ = 'sasa_block'

    def __init__(self,
                 in_channels: int,
                 kernel_size: IntOrPair = 7,
                 num_heads: int = 8,
                 block_size: Optional[IntOrPair] = None,
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        owner = type(self).__name__
        check_positive_int('in_channels', in_channels, owner)
        _check_heads('in_channels', in_channels, num_heads, owner)
        self.in_channels = in_channels
        self.attention = SASAConv(
            in_channels,
            in_channels,
            kernel_size,
            num_heads=num_heads,
            block_size=block_size)
        self.out_proj = nn.Conv2d(in_channels, in_channels, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Zero output projection: the block starts as the identity."""
        zero_init_last_layer(self.out_proj)

    def forward(self, x: Tensor) -> Tensor:
        """Add attended features to the input.

        Args:
            x (Tensor): ``[B, C, H, W]``.

        Returns:
            Tensor: ``[B, C, H, W]``.
        """
        return x + self.out_proj(self.attention(x))  # [B, C, H, W]

    def attention_maps(self, x: Tensor, queries: Tensor) -> Tensor:
        """The maps of :meth:`SASAConv.attention_maps`, ``[B, Q, H, W]``,
        for flat query positions ``[Q]`` of ``x`` ``[B, C, H, W]``."""
        return self.attention.attention_maps(x, queries)
