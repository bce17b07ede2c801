"""Non-local aggregation without the ``HW x HW`` pairwise matrix: the fast
path of :class:`~mmgc.models.nl_block.NLBlock`.

``y_i = sum_j f(x_i, x_j) g(x_j) / C(x)`` computed with memory linear in
the number of positions, for each pairwise function of the paper:

* softmax modes (``'embedded_gaussian'``, ``'gaussian'``) call fused
  scaled-dot-product attention
  (:func:`~mmgc.models.utils.precision.softmax_attention`; the scale is
  passed explicitly);
* ``'dot_product'`` uses associativity: ``theta^T (phi g^T) / N``,
  ``O(HW C^2)``;
* ``'concatenation'`` splits ``w . [theta_i, phi_j] = a_i + b_j`` and sorts
  the ``b_j``: the keys with ``a_i + b_j > 0`` form a suffix of the sorted
  order, so ``y_i = (a_i G_k + BG_k) / N`` with suffix sums ``G``, ``BG`` of
  ``g`` and ``b g``, ``O(HW log HW + HW C)`` and exact (ReLU's kink has
  measure zero).

The 1x1 projections run as matrix products straight into the
positions-major layout the attention kernels want (:func:`positions_major`,
:func:`fused_projections`), and the output projection reads that layout
without a transposed copy (:func:`from_positions_major`). Every function
here is one batched kernel per step, with no Python loop over images or
positions, on any device.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from torch import Tensor, nn

from .precision import float32_region, to_float32


def fused_projections(convs: Sequence[nn.Module], x: Tensor,
                      split: int) -> Optional[Tuple[Tensor, ...]]:
    """Several plain 1x1 convs of ``x`` positions-major from one matrix
    product, as slices of one ``[B, N, k * split]`` tensor (one read of
    ``x``; one allocation, whose release leaves room for the output), or
    None when the convs are not all plain (norm, activation, custom conv)
    or only some have a bias.

    Args:
        convs (Sequence[nn.Module]): ``ConvModule`` s, ``split`` outputs
            each.
        x (Tensor): ``[B, C, H, W]``.
        split (int): Output channels of each conv.

    Returns:
        tuple[Tensor] | None: ``[B, H*W, split]`` per conv.
    """
    if not all(
            plain_1x1(m) and not m.with_norm and not m.with_activation
            for m in convs):
        return None
    weight = torch.cat([m.conv.weight.flatten(1)
                        for m in convs])  # [k split, C]
    pixels = x.flatten(2).transpose(1, 2)  # [B, N, C], a view
    projected = torch.bmm(pixels,
                          weight.t().expand(x.shape[0], -1,
                                            -1))  # [B, N, k split]
    if all(m.conv.bias is not None for m in convs):
        projected.add_(
            torch.cat([m.conv.bias for m in convs]).to(projected.dtype))
    elif any(m.conv.bias is not None for m in convs):
        return None
    return projected.split(split, dim=2)


def plain_1x1(module: nn.Module) -> bool:
    """Whether ``module`` is a ``ConvModule`` whose conv is a plain 1x1
    ``nn.Conv2d`` (so it can run as a matrix product in any layout)."""
    return (isinstance(module, ConvModule) and type(module.conv) is nn.Conv2d
            and module.conv.kernel_size == (1, 1) and module.conv.groups == 1
            and module.conv.stride == (1, 1) and module.conv.padding == (0, 0))


def positions_major(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` as ``[B, H*W, C_out]`` (channels contiguous, as the
    fused attention kernels want).

    A plain 1x1 conv (no norm, no activation) runs as one matrix product
    straight into that layout; anything else (custom convs, the
    sub-sampling ``nn.Sequential``) runs as built and is transposed.
    """
    if plain_1x1(module) and not module.with_norm and \
            not module.with_activation:
        weight = module.conv.weight.flatten(1)  # [C_out, C_in]
        pixels = x.flatten(2).transpose(1, 2)  # [B, N, C_in], a view
        # bmm, not matmul: with a weight that requires grad, matmul's
        # broadcasting path copies the transposed input.
        out = torch.bmm(pixels,
                        weight.t().expand(x.shape[0], -1, -1))  # [B, N, C_out]
        if module.conv.bias is not None:  # in place: no second map
            out.add_(module.conv.bias.to(out.dtype))
        return out
    return module(x).flatten(2).transpose(1, 2)  # [B, M, C_out]


def from_positions_major(module: ConvModule, y: Tensor,
                         size: Tuple[int, int]) -> Tensor:
    """``module`` (1x1 conv, then its norm) on positions-major ``y``
    ``[B, N, C_in]``, returned as ``[B, C_out, H, W]`` without transposing
    ``y`` in memory when the conv is a plain 1x1."""
    batch = y.shape[0]
    if not plain_1x1(module) or module.with_activation:
        return module(y.transpose(1, 2).reshape(batch, -1, *size))
    weight = module.conv.weight.flatten(1)  # [C_out, C_in]
    out = torch.bmm(weight.expand(batch, -1, -1),
                    y.transpose(1, 2))  # [B, C_out, N], no copy of y
    if module.conv.bias is not None:  # in place: no second map
        out.add_(module.conv.bias.view(-1, 1).to(out.dtype))
    out = out.view(batch, -1, *size)  # [B, C_out, H, W]
    return module.norm(out) if module.with_norm else out


def dot_product_aggregate(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
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


def concat_relu_aggregate(query: Tensor, key: Tensor, value: Tensor,
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
        first = count_not_greater(b_sorted.detach(), -a.detach())  # [B, N]
        picked = torch.gather(suffix, 1,
                              first.unsqueeze(2).expand(
                                  -1, -1, 2 * channels))  # [B, N, 2 Cv]
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


def count_not_greater(sorted_rows: Tensor, values: Tensor) -> Tensor:
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
    count = torch.zeros(
        values.shape, dtype=torch.long, device=values.device)  # [B, N]
    step = 1 << (length.bit_length() - 1)  # highest power of 2 <= M
    while step:
        candidate = count + step  # [B, N]
        probe = torch.gather(sorted_rows, 1,
                             torch.clamp(candidate - 1,
                                         max=length - 1))  # [B, N]
        count = torch.where((candidate <= length) & (probe <= values),
                            candidate, count)
        step //= 2
    return count
