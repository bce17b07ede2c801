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

Implementation: blocked ("halo") attention, as in timm's ``halo_attn.py``.
The map is cut into blocks of ``bh x bw`` queries; each block attends to its
``(bh + k - 1) x (bw + k - 1)`` halo with one fused
``scaled_dot_product_attention`` call, so keys and values are copied about
``((b + k - 1) / b)^2`` times (3-4x) instead of ``k^2`` times (49x for an
unfold implementation). The exact-neighbourhood mask (a query sees only its
own ``k x k`` window), the out-of-image mask and the relative logits
``q . r`` are all folded into extra channels of the queries and keys:

* every key gets a one-hot code of its row modulo the halo height (rows of
  one halo are consecutive, so their codes differ) and of its column modulo
  the halo width; rows/columns outside the image get an extra "outside"
  slot. The code depends only on the key's own position, so it is attached
  once per pixel, and the halo copy then moves whole rows of
  ``[key | code]`` (values are zero-padded to the same width: the CPU flash
  kernel wants equal widths);
* every query gets, for each row slot, its relative logit ``q_h . r_h`` if
  the key row in that slot of its block's halo lies inside its window and
  ``-1e30`` otherwise (``-1e30`` always for the outside slot); likewise
  for columns.

``q_aug . k_aug = q . k + q_h . r_h(row offset) + q_w . r_w(col offset)``
inside the window and below ``-1e30`` outside, which the softmax turns into
an exact zero weight. The logits tensor never has to exist, so SDPA's flash
kernel runs with an additive bias that carries gradients (an explicit
``attn_mask`` with gradients would fall back to the quadratic kernel).
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmdet.registry import MODELS
from torch import Tensor, nn

from .utils import (OwnInitAfterParent, check_choice, check_odd,
                    check_positive_int, to_int_pair, zero_init_last_layer)
from .utils.precision import float32_region, softmax_attention, to_float32
from .utils.validation import ArgumentError

IntOrPair = Union[int, Tuple[int, int]]

#: Logit of a masked key: ``exp(MASK - max)`` is exactly 0 in fp32, and,
#: unlike ``-inf``, ``0 * MASK`` stays finite in the backward pass.
MASK = -1e30


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def choose_block(height: int, width: int, window: Tuple[int, int],
                 head_dim: int, max_block: int = 16) -> Tuple[int, int]:
    """Pick the query block ``(bh, bw)`` with the lowest modelled time.

    Per padded query and head, the fused attention works on ``S`` halo keys
    of ``E`` augmented channels (``S = (bh + kh - 1)(bw + kw - 1)``, ``E =
    d + S_h + S_w + 2``); copies and per-block overheads fall with the block
    area ``L = bh * bw``. The model ``S E (1 + 19 / L) + 5600 + 40000 / L``
    per padded query was fitted (within 5%) to timings on a 2-core CPU for
    k = 3 and 7 at 50x84 and 25x42; it favours 5x6-ish blocks that tile the
    map.

    Args:
        height (int): Map height ``H``.
        width (int): Map width ``W``.
        window (tuple[int, int]): Attention window ``(kh, kw)``.
        head_dim (int): Channels per head ``d``.
        max_block (int): Largest block side tried. Default: 16.

    Returns:
        tuple[int, int]: ``(bh, bw)``, each at most the map's side.
    """
    best = None
    for bh in range(1, min(height, max_block) + 1):
        for bw in range(1, min(width, max_block) + 1):
            halo_h, halo_w = bh + window[0] - 1, bw + window[1] - 1
            keys, area = halo_h * halo_w, bh * bw
            channels = head_dim + halo_h + halo_w + 2
            per_query = (keys * channels * (1 + 19 / area) + 5600 +
                         40000 / area)
            padded = _ceil_div(height, bh) * bh * _ceil_div(width, bw) * bw
            cost = padded * per_query
            if best is None or cost < best[0]:
                best = (cost, (bh, bw))
    return best[1]


def _key_codes(size: int, pad_before: int, total: int, period: int,
               dtype: torch.dtype, device: torch.device) -> Tensor:
    """One-hot code of every row (or column) of the padded key map: slot
    ``y mod period`` for image rows, the extra slot ``period`` for padding.

    ``period`` is the halo size, so the rows of any one halo (consecutive
    padded rows) get distinct slots. ``[total, period + 1]``.
    """
    coord = torch.arange(total, device=device)  # padded coordinate
    inside = (coord >= pad_before) & (coord < pad_before + size)
    slot = torch.where(inside, coord % period,
                       torch.full_like(coord, period))
    return F.one_hot(slot, period + 1).to(dtype)  # [total, period+1]


def _query_slot_index(n_blocks: int, block: int, window: int,
                      device: torch.device) -> Tensor:
    """For each block, query row ``i`` in it and key slot ``m`` (see
    :func:`_key_codes`): the index of the relative logit of the key row in
    that slot, ``0 .. window-1``, or ``window`` (the masked logit) if the
    row is outside the query's window or the slot is the padding slot.

    The halo of block ``n`` starts at padded row ``n * block``; slot ``m``
    holds its row ``(m - n * block) mod period``, whose offset from query
    row ``i`` is that minus ``i``. ``[n_blocks, block, period + 1]``.
    """
    period = block + window - 1
    slot = torch.arange(period + 1, device=device)
    halo_row = (slot[None, None, :] -
                torch.arange(n_blocks, device=device)[:, None, None] *
                block) % period  # [n_blocks, 1, period+1]
    offset = halo_row - torch.arange(block, device=device)[None, :, None]
    valid = (offset >= 0) & (offset < window) & (slot < period)
    return torch.where(valid, offset, torch.full_like(offset, window))


def local_attention(qkv: Tensor, rel_h: Tensor, rel_w: Tensor,
                    num_heads: int,
                    block: Optional[Tuple[int, int]] = None) -> Tensor:
    """Masked local self-attention by blocked (halo) fused attention.

    Args:
        qkv (Tensor): Queries, keys and values concatenated on the channel
            dim, channels last: ``[B, H, W, 3C]``.
        rel_h (Tensor): Row-offset embeddings ``[kh, d/2]`` (``d = C /
            num_heads``; offsets ``-kh//2 .. kh//2``).
        rel_w (Tensor): Column-offset embeddings ``[kw, d/2]``.
        num_heads (int): Number of heads.
        block (tuple[int, int], optional): Query block ``(bh, bw)``;
            default: :func:`choose_block`.

    Returns:
        Tensor: ``[B, H, W, C]`` (channels last), dtype of ``qkv``;
        computed in fp32.
    """
    batch, height, width, channels3 = qkv.shape
    channels = channels3 // 3
    head_dim, half = channels // num_heads, channels // num_heads // 2
    win_h, win_w = rel_h.shape[0], rel_w.shape[0]
    if block is None:
        block = choose_block(height, width, (win_h, win_w), head_dim)
    bh, bw = min(block[0], height), min(block[1], width)
    nbh, nbw = _ceil_div(height, bh), _ceil_div(width, bw)
    pad_h, pad_w = nbh * bh - height, nbw * bw - width
    halo_h, halo_w = bh + win_h - 1, bw + win_w - 1
    slots_h, slots_w = halo_h + 1, halo_w + 1
    dim = head_dim + slots_h + slots_w  # augmented query/key width E
    rad_h, rad_w = win_h // 2, win_w // 2
    out_dtype, device = qkv.dtype, qkv.device

    with float32_region(device.type):
        qkv = to_float32(qkv)
        rel_h, rel_w = to_float32(rel_h), to_float32(rel_w)
        dtype = qkv.dtype

        # Keys and values, per pixel of the padded map, with the key codes
        # appended (values: zeros), [B, Hp+kh-1, Wp+kw-1, 2, heads, E]. The
        # halo copy below then moves whole rows of this layout.
        kv = qkv.new_empty(batch, nbh * bh + win_h - 1, nbw * bw + win_w - 1,
                           2, num_heads, dim)
        content = kv[..., :head_dim]
        content[:, rad_h:rad_h + height, rad_w:rad_w + width] = qkv[
            ..., channels:].view(batch, height, width, 2, num_heads,
                                 head_dim)
        content[:, :rad_h] = 0  # padding: finite, masked by its code
        content[:, rad_h + height:] = 0
        content[:, rad_h:rad_h + height, :rad_w] = 0
        content[:, rad_h:rad_h + height, rad_w + width:] = 0
        kv[..., 0, :, head_dim:head_dim + slots_h] = _key_codes(
            height, rad_h, kv.shape[1], halo_h, dtype,
            device)[:, None, None, :]  # [Ht, 1, 1, Mh]
        kv[..., 0, :, head_dim + slots_h:] = _key_codes(
            width, rad_w, kv.shape[2], halo_w, dtype,
            device)[None, :, None, :]  # [1, Wt, 1, Mw]
        kv[..., 1, :, head_dim:] = 0
        del content
        kv = kv.unfold(1, halo_h, bh).unfold(
            2, halo_w, bw)  # [B, nbh, nbw, 2, heads, E, halo_h, halo_w]
        kv = kv.permute(0, 1, 2, 6, 7, 3, 4, 5).reshape(
            batch * nbh * nbw, halo_h * halo_w, 2, num_heads,
            dim)  # [B*nb, S, 2, heads, E]

        # Queries in blocks, [B, nbh, nbw, bh, bw, heads, E]: content, then
        # for every key slot its relative logit or MASK.
        query = qkv[..., :channels]  # [B, H, W, C]
        if pad_h or pad_w:
            query = F.pad(query, (0, 0, 0, pad_w, 0, pad_h))  # [B, Hp, Wp, C]
        query = query.reshape(batch, nbh, bh, nbw, bw, num_heads, head_dim)
        query_aug = qkv.new_empty(batch, nbh, nbw, bh, bw, num_heads, dim)
        query_aug[..., :head_dim] = query.permute(0, 1, 3, 2, 4, 5, 6)
        # Relative logits for every window offset, plus one masked column
        # for rows and one for columns: [..., kh + 1 + kw + 1].
        table = qkv.new_zeros(head_dim, win_h + win_w + 2)
        table[:half, :win_h] = rel_h.t()
        table[half:, win_h + 1:win_h + 1 + win_w] = rel_w.t()
        bias = qkv.new_zeros(win_h + win_w + 2)
        bias[win_h] = bias[-1] = MASK
        rel_logits = torch.addmm(bias, query.reshape(-1, head_dim), table)
        rel_logits = rel_logits.view(
            batch, nbh, bh, nbw, bw, num_heads,
            -1).permute(0, 1, 3, 2, 4, 5, 6)  # [B, nbh, nbw, bh, bw, h, R]
        index_h = _query_slot_index(nbh, bh, win_h, device)
        index_w = _query_slot_index(nbw, bw, win_w, device) + win_h + 1
        index = torch.cat([
            index_h[:, None, :, None, None, :].expand(
                nbh, nbw, bh, bw, 1, slots_h),
            index_w[None, :, None, :, None, :].expand(
                nbh, nbw, bh, bw, 1, slots_w)
        ], dim=-1)  # [nbh, nbw, bh, bw, 1, Mh + Mw]
        query_aug[..., head_dim:] = torch.gather(
            rel_logits, -1, index.expand(*query_aug.shape[:-1], -1))

        n_blk = batch * nbh * nbw
        out = softmax_attention(
            query_aug.view(n_blk, bh * bw, num_heads, dim).transpose(1, 2),
            kv[:, :, 0].transpose(1, 2),  # [B*nb, heads, S, E]
            kv[:, :, 1].transpose(1, 2),
            scale=head_dim**-0.5)  # [B*nb, heads, bh*bw, E]
        out = out.transpose(1, 2).reshape(
            batch, nbh, nbw, bh, bw, num_heads,
            dim)[..., :head_dim]  # [B, nbh, nbw, bh, bw, heads, d]
        out = out.permute(0, 1, 3, 2, 4, 5, 6).reshape(
            batch, nbh * bh, nbw * bw, channels)  # [B, Hp, Wp, C]
        if pad_h or pad_w:
            out = out[:, :height, :width]  # [B, H, W, C]
    return out.to(out_dtype)


def _check_heads(name: str, channels: int, num_heads: int,
                 owner: str) -> int:
    """Validate ``num_heads`` against ``channels``; return the (even) number
    of channels per head."""
    check_positive_int('num_heads', num_heads, owner)
    head_dim = channels // num_heads
    if channels % num_heads or head_dim % 2:
        allowed = [h for h in range(1, channels // 2 + 1)
                   if channels % (2 * h) == 0]
        raise ArgumentError(
            f'{owner}: num_heads={num_heads!r} does not split '
            f'{name}={channels!r} into an even number of channels per head '
            f'(halves for the row and column embeddings); allowed: '
            + (f'num_heads in {allowed}' if allowed else
               f'none, {name} must be even'))
    return head_dim


@MODELS.register_module('SASAConv')
class SASAConv(BaseModule):
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
            halo implementation; default: chosen per input size by
            :func:`choose_block`. Affects speed and memory only.
        init_cfg (dict, optional): mmengine initialisation config.
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
                'padding', padding,
                owner) != (kernel[0] // 2, kernel[1] // 2):
            raise ArgumentError(
                f'{owner}: padding={padding!r} is not supported; use None, '
                f"'same' or kernel_size // 2 = {kernel[0] // 2} (the output "
                f'size is always ceil(input / stride))')
        if to_int_pair('dilation', dilation, owner) != (1, 1):
            raise ArgumentError(f'{owner}: dilation={dilation!r} is not '
                                f'supported; only dilation=1')
        check_choice('groups', groups, (1, ), owner)
        head_dim = _check_heads('out_channels', out_channels, num_heads,
                                owner)
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
        channels_last = (x.dim() == 4 and not x.is_contiguous()
                         and x.is_contiguous(
                             memory_format=torch.channels_last))
        qkv = self._project_qkv(x)  # [B, H, W, 3*C_out]
        out = local_attention(qkv, self.rel_h, self.rel_w, self.num_heads,
                              self.block_size)  # [B, H, W, C_out]
        out = out.permute(0, 3, 1, 2)  # [B, C_out, H, W], NHWC strides
        if self.stride != (1, 1):
            out = F.avg_pool2d(out, self.stride, self.stride,
                               ceil_mode=True)  # [B, C_out, H/s, W/s]
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1).to(out.dtype)
        return out.contiguous(memory_format=torch.channels_last
                              if channels_last else torch.contiguous_format)

    def _project_qkv(self, x: Tensor) -> Tensor:
        """Queries, keys and values of ``x`` ``[B, C_in, H, W]``, channels
        last: ``[B, H, W, 3*C_out]``."""
        batch, _, height, width = x.shape
        # 1x1 projection straight into channels-last layout: one matmul.
        pixels = x.permute(0, 2, 3, 1).reshape(
            batch, height * width, -1)  # [B, H*W, C_in] (view if NHWC)
        weight = self.qkv.weight.flatten(1).t()  # [C_in, 3*C_out]
        return torch.bmm(pixels, weight.expand(batch, -1, -1)).view(
            batch, height, width, -1)  # [B, H, W, 3*C_out]

    def attention_weights(self, x: Tensor, queries: Tensor) -> Tensor:
        """Softmax weights of the chosen queries over their ``kh x kw``
        windows (before the stride's pooling): ``out_i = sum_ab w_iab
        v_ab`` per head as in :func:`local_attention`; keys outside the image
        get weight 0.

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
            query = qkv.view(batch, height * width, 3 * channels)[
                :, queries, :channels].reshape(
                    batch, -1, heads, dim)  # [B, Q, heads, d]
            # Window of every query in the key map padded by the radius.
            rad_h, rad_w = win_h // 2, win_w // 2
            keys = F.pad(qkv[..., channels:2 * channels],
                         (0, 0, rad_w, rad_w, rad_h, rad_h))  # [B, Hp, Wp, C]
            rows = (queries // width)[:, None] + torch.arange(
                win_h, device=x.device)  # [Q, kh], padded coords
            cols = (queries % width)[:, None] + torch.arange(
                win_w, device=x.device)  # [Q, kw]
            window = keys[:, rows[:, :, None], cols[:, None, :]].view(
                batch, -1, win_h, win_w, heads, dim)  # [B, Q, kh, kw, h, d]
            logits = torch.einsum('bqhd,bqyxhd->bqhyx', query, window)
            logits = (logits +
                      torch.matmul(query[..., :half], to_float32(
                          self.rel_h).t())[..., :, None] +
                      torch.matmul(query[..., half:], to_float32(
                          self.rel_w).t())[..., None, :]
                      ) * dim**-0.5  # [B, Q, heads, kh, kw]
            inside = ((rows >= rad_h) & (rows < height + rad_h))[
                :, :, None] & ((cols >= rad_w) & (cols < width + rad_w))[
                    :, None, :]  # [Q, kh, kw]
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

    def attention_weights(self, x: Tensor, queries: Tensor) -> Tensor:
        """The window weights of :meth:`SASAConv.attention_weights`,
        ``[B, Q, heads, kh, kw]``, for flat query positions ``[Q]`` of
        ``x`` ``[B, C, H, W]``."""
        return self.attention.attention_weights(x, queries)
