"""Masked local self-attention by blocked ("halo") fused attention: the
fast path of :class:`~mmgc.models.sasa.SASAConv` on the CPU.

Blocked ("halo") attention, as in timm's ``halo_attn.py``. The map is cut
into blocks of ``bh x bw`` queries; each block attends to its ``(bh + k -
1) x (bw + k - 1)`` halo, all blocks in one batched fused
``scaled_dot_product_attention`` call (no Python loop), so keys and values
are copied about ``((b + k - 1) / b)^2`` times (3-4x) instead of ``k^2``
times (49x for an unfold implementation). The exact-neighbourhood mask (a
query sees only its own ``k x k`` window), the out-of-image mask and the
relative logits ``q . r`` are all folded into extra channels of the queries
and keys:

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
import functools
import os
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .precision import float32_region, softmax_attention, to_float32

#: Logit of a masked key: ``exp(MASK - max)`` is exactly 0 in fp32, and,
#: unlike ``-inf``, ``0 * MASK`` stays finite in the backward pass.
MASK = -1e30


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


#: L2 size assumed where the OS does not report one (``/sys`` absent).
DEFAULT_L2_BYTES = 1 << 20


def read_l2_cache_bytes(
        root: str = '/sys/devices/system/cpu/cpu0/cache') -> int:
    """Size of the CPU's level-2 (data or unified) cache, from the OS's
    cache description (Linux sysfs ``index*/{level,type,size}``);
    :data:`DEFAULT_L2_BYTES` where the OS does not say."""
    try:
        for index in sorted(os.listdir(root)):
            path = os.path.join(root, index)
            with open(os.path.join(path, 'level')) as f:
                level = f.read().strip()
            with open(os.path.join(path, 'type')) as f:
                kind = f.read().strip()
            if level != '2' or kind not in ('Data', 'Unified'):
                continue
            with open(os.path.join(path, 'size')) as f:
                size = f.read().strip().upper()
            scale = {'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}.get(size[-1:])
            return int(size[:-1]) * scale if scale else int(size)
    except (OSError, ValueError):
        pass
    return DEFAULT_L2_BYTES


#: This machine's L2 size, read once at import (``torch.compile`` traces
#: :func:`choose_block`, and cannot trace file reads).
L2_CACHE_BYTES = read_l2_cache_bytes()


def block_working_set(block: Tuple[int, int],
                      window: Tuple[int, int],
                      head_dim: int,
                      itemsize: int = 4) -> int:
    """Bytes one fused attention call touches per head and query block:
    the halo's keys and values ``2 S E``, the queries and outputs ``2 L E``
    and the logits ``L S`` (``S`` halo keys, ``L`` queries, ``E`` augmented
    channels; see :func:`local_attention`)."""
    (bh, bw), (kh, kw) = block, window
    keys, queries = (bh + kh - 1) * (bw + kw - 1), bh * bw
    channels = head_dim + bh + kh + bw + kw
    return itemsize * (2 * keys * channels + 2 * queries * channels +
                       queries * keys)


@functools.lru_cache(maxsize=1024)
def choose_block(height: int,
                 width: int,
                 window: Tuple[int, int],
                 head_dim: int,
                 max_block: int = 16,
                 cache_bytes: Optional[int] = None) -> Tuple[int, int]:
    """Pick the query block ``(bh, bw)``: no fitted constants, only the
    geometry and the L2 cache size the OS reports.

    A block of ``L = bh * bw`` queries attends to ``S = (bh + kh - 1)(bw +
    kw - 1)`` halo keys of ``E`` augmented channels, where a query needs
    ``kh * kw`` keys of ``d`` channels. Against that ideal the halo scheme
    pays three factors, each a pure ratio:

    * padding: ``P / HW`` (padded queries over real ones);
    * copies: ``S E / (L d)`` (halo keys copied per query: small blocks copy
      as much as an unfold);
    * compute: ``S E / (kh kw d)`` (logits computed per logit needed: large
      blocks compute many masked ones).

    A copied element is written and read back (two passes), a computed logit
    term reads its operands once, so the block minimising ``padding x
    (2 copies + compute)`` is chosen among those whose
    per-head working set (:func:`block_working_set`) fits the L2 cache
    (so the fused kernel reads its keys from cache); if none fits, the
    smallest working set. Without padding and channel codes the optimum is
    ``L = sqrt(2) kh kw`` queries (about 8x8 for k = 7).

    Args:
        height (int): Map height ``H``.
        width (int): Map width ``W``.
        window (tuple[int, int]): Attention window ``(kh, kw)``.
        head_dim (int): Channels per head ``d``.
        max_block (int): Largest block side tried. Default: 16.
        cache_bytes (int, optional): L2 size; default
            :data:`L2_CACHE_BYTES`.

    Returns:
        tuple[int, int]: ``(bh, bw)``, each at most the map's side.

    The answer depends only on the arguments, so it is computed once per
    map size and remembered (``forward`` asks on every call).
    """
    cache = L2_CACHE_BYTES if cache_bytes is None else cache_bytes
    kh, kw = window
    best = fallback = None
    for bh in range(1, min(height, max_block) + 1):
        for bw in range(1, min(width, max_block) + 1):
            keys, area = (bh + kh - 1) * (bw + kw - 1), bh * bw
            channels = head_dim + bh + kh + bw + kw
            padded = _ceil_div(height, bh) * bh * _ceil_div(width, bw) * bw
            copies = keys * channels / (area * head_dim)
            compute = keys * channels / (kh * kw * head_dim)
            cost = (padded / (height * width)) * (2 * copies + compute)
            working = block_working_set((bh, bw), window, head_dim)
            if working <= cache and (best is None or cost < best[0]):
                best = (cost, (bh, bw))
            if fallback is None or working < fallback[0]:
                fallback = (working, (bh, bw))
    return (best or fallback)[1]


def _key_codes(size: int, pad_before: int, total: int, period: int,
               dtype: torch.dtype, device: torch.device) -> Tensor:
    """One-hot code of every row (or column) of the padded key map: slot
    ``y mod period`` for image rows, the extra slot ``period`` for padding.

    ``period`` is the halo size, so the rows of any one halo (consecutive
    padded rows) get distinct slots. ``[total, period + 1]``.
    """
    coord = torch.arange(total, device=device)  # padded coordinate
    inside = (coord >= pad_before) & (coord < pad_before + size)
    slot = torch.where(inside, coord % period, torch.full_like(coord, period))
    codes = torch.arange(period + 1, device=device)  # [period+1]
    return (slot[:, None] == codes).to(dtype)  # [total, period+1], one-hot


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


def local_attention(qkv: Tensor,
                    rel_h: Tensor,
                    rel_w: Tensor,
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
        content[:, rad_h:rad_h + height,
                rad_w:rad_w + width] = qkv[..., channels:].view(
                    batch, height, width, 2, num_heads, head_dim)
        content[:, :rad_h] = 0  # padding: finite, masked by its code
        content[:, rad_h + height:] = 0
        content[:, rad_h:rad_h + height, :rad_w] = 0
        content[:, rad_h:rad_h + height, rad_w + width:] = 0
        kv[..., 0, :, head_dim:head_dim + slots_h] = _key_codes(
            height, rad_h, kv.shape[1], halo_h, dtype,
            device)[:, None, None, :]  # [Ht, 1, 1, Mh]
        kv[..., 0, :,
           head_dim + slots_h:] = _key_codes(width, rad_w, kv.shape[2], halo_w,
                                             dtype,
                                             device)[None, :,
                                                     None, :]  # [1, Wt, 1, Mw]
        kv[..., 1, :, head_dim:] = 0
        del content
        kv = kv.unfold(1, halo_h, bh).unfold(
            2, halo_w, bw)  # [B, nbh, nbw, 2, heads, E, halo_h, halo_w]
        kv = kv.permute(0, 1, 2, 6, 7, 3, 4,
                        5).reshape(batch * nbh * nbw, halo_h * halo_w, 2,
                                   num_heads, dim)  # [B*nb, S, 2, heads, E]

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
        rel_logits = rel_logits.view(batch, nbh, bh, nbw, bw,
                                     num_heads, -1).permute(
                                         0, 1, 3, 2, 4, 5,
                                         6)  # [B, nbh, nbw, bh, bw, h, R]
        index_h = _query_slot_index(nbh, bh, win_h, device)
        index_w = _query_slot_index(nbw, bw, win_w, device) + win_h + 1
        index = torch.cat([
            index_h[:, None, :, None, None, :].expand(
                nbh, nbw, bh, bw, 1,
                slots_h), index_w[None, :, None, :, None, :].expand(
                    nbh, nbw, bh, bw, 1, slots_w)
        ],
                          dim=-1)  # [nbh, nbw, bh, bw, 1, Mh + Mw]
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
        out = out.permute(0, 1, 3, 2, 4, 5,
                          6).reshape(batch, nbh * bh, nbw * bw,
                                     channels)  # [B, Hp, Wp, C]
        if pad_h or pad_w:
            out = out[:, :height, :width]  # [B, H, W, C]
    return out.to(out_dtype)
