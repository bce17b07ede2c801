"""GC/SE fusion with a hand-written, memory-lean backward: the CPU fast path.

GC and SE pool the map into one context vector per image, transform it
into a per-channel ``scale`` and/or ``shift``, and apply ``out = x * scale
+ shift`` at every position. The blocks write that formula themselves (their
reference path); :func:`context_fusion` is the same computation as one
autograd function whose backward makes the minimum of passes over the map
and no full-size temporary beyond the input gradient -- the path the blocks
take on the CPU (``impl='auto'``), where it is measured to win
(``docs/performance.md`` counts the passes).

On the CPU the products and updates go by blocks of rows that stay in
cache; on any other device each is one batched kernel (``baddbmm``), with
no Python loop. Only the ``[B, C]`` vectors go through autograd (the tiny
transform is differentiated with :func:`torch.autograd.grad`); double
backward is not supported, nor ``torch.compile`` (the function takes Python
callables), so the blocks use their reference path when compiling.
"""
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .precision import float32_region

#: The block's pooling: ``x`` ``[B, C, H, W]`` -> context ``[B, C]`` (dtype
#: of ``x``) and the fp32 softmax weights ``[B, H*W]`` (None for the mean).
PoolFn = Callable[[Tensor], Tuple[Tensor, Optional[Tensor]]]
#: The block's transform: context ``[B, C]`` -> ``(scale, shift)``.
FusionFn = Callable[[Tensor], Tuple[Optional[Tensor], Optional[Tensor]]]

#: Bytes of one block of rows ``[rows, H*W]`` processed at once on the CPU:
#: products and rank-k updates by blocks that stay in cache avoid
#: full-size temporaries (sizes tuned on a 2-core CPU at detection sizes).
_DOT_BLOCK_BYTES = 4 << 20
_UPDATE_BLOCK_BYTES = 1 << 20


def _rows_per_block(row_len: int, itemsize: int, block_bytes: int) -> int:
    return max(1, block_bytes // max(1, row_len * itemsize))


def flat_map(x: Tensor) -> Tensor:
    """``x`` ``[B, C, H, W]`` as ``[B, C, H*W]``: a view for NCHW and
    channels_last maps (the latter transposed, which BLAS reads as is)."""
    return x.flatten(2)


def channel_dot(a: Tensor, b: Tensor) -> Tensor:
    """``sum_hw a * b`` for every image and channel: ``[B, C]``.

    On the CPU, for NCHW-contiguous inputs, the product is formed by blocks
    of rows that stay in cache (no full-size temporary); otherwise by one
    broadcast product.

    Args:
        a (Tensor): ``[B, C, H, W]``.
        b (Tensor): ``[B, C, H, W]``.

    Returns:
        Tensor: ``[B, C]``.
    """
    batch, channels, height, width = a.shape
    if a.device.type != 'cpu' or not (a.is_contiguous() and b.is_contiguous()):
        return (a * b).sum(dim=(2, 3))  # [B, C]
    a_rows = a.view(batch * channels, height * width)  # [B*C, HW]
    b_rows = b.view(batch * channels, height * width)
    out = a.new_empty(batch * channels)
    step = _rows_per_block(height * width, a.element_size(), _DOT_BLOCK_BYTES)
    for start in range(0, batch * channels, step):
        stop = start + step
        torch.sum(
            a_rows[start:stop] * b_rows[start:stop],
            dim=1,
            out=out[start:stop])
    return out.view(batch, channels)


def channel_affine(x: Tensor, scale: Optional[Tensor],
                   shift: Optional[Tensor]) -> Tensor:
    """``x * scale + shift`` with per-image, per-channel ``[B, C]`` factors
    (either may be None), in one pass over ``x``.

    The two-factor case uses the inference batch-norm kernel on the map
    viewed as ``[1, B*C, H, W]`` (``(x - 0) / sqrt(1 + 0) * scale + shift``),
    one fused pass, where ``addcmul`` with broadcast operands takes two.

    Args:
        x (Tensor): ``[B, C, H, W]``.
        scale (Tensor, optional): ``[B, C]``, dtype of ``x``.
        shift (Tensor, optional): ``[B, C]``, dtype of ``x``.

    Returns:
        Tensor: ``[B, C, H, W]``, memory format of ``x``.
    """
    batch, channels, height, width = x.shape
    if scale is None:
        return x + shift.view(batch, channels, 1, 1)
    if shift is None:
        return x * scale.view(batch, channels, 1, 1)
    if x.is_contiguous() and x.dtype == torch.float32:
        rows = batch * channels
        zeros = x.new_zeros(rows)
        return F.batch_norm(
            x.view(1, rows, height, width), zeros, zeros + 1,
            scale.reshape(rows), shift.reshape(rows), False, 0.0,
            0.0).view(batch, channels, height, width)
    return torch.addcmul(
        shift.view(batch, channels, 1, 1), x,
        scale.view(batch, channels, 1, 1))


def _add_low_rank(base: Tensor, left: Tensor, right: Tensor,
                  out: Tensor) -> Tensor:
    """``out = base + left @ right`` per image (``out`` may be ``base``):
    on the CPU by blocks of rows, elsewhere one ``baddbmm``.

    Args:
        base (Tensor): ``[B, C, HW]``.
        left (Tensor): ``[B, C, k]``.
        right (Tensor): ``[B, k, HW]``.
        out (Tensor): ``[B, C, HW]``.
    """
    if base.device.type != 'cpu':
        return torch.baddbmm(base, left, right, out=out)  # [B, C, HW]
    step = _rows_per_block(base.shape[2], base.element_size(),
                           _UPDATE_BLOCK_BYTES)
    for image in range(base.shape[0]):
        for start in range(0, base.shape[1], step):
            rows = slice(start, start + step)
            torch.addmm(
                base[image, rows],
                left[image, rows],
                right[image],
                out=out[image, rows])  # [rows, HW]
    return out


class _ContextFusion(torch.autograd.Function):
    """``x * scale(c) + shift(c)``, ``c`` = pooled ``x``; see the module
    docstring for the passes of the backward."""

    @staticmethod
    def forward(ctx, x: Tensor, mask_weight: Optional[Tensor],
                mask_bias: Optional[Tensor], pool: PoolFn, fuse: FusionFn,
                *params: Tensor) -> Tensor:
        with float32_region(x.device.type):
            context, probs = pool(x)  # [B, C], [B, HW] or None
        with torch.enable_grad():
            context = context.detach().float().requires_grad_()
            scale, shift = fuse(context)  # [B, C] each, or None
        out = channel_affine(
            x, None if scale is None else scale.detach().to(x.dtype),
            None if shift is None else shift.detach().to(x.dtype))
        ctx.save_for_backward(x, probs, mask_weight)
        ctx.graph = (context, scale, shift, params)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> Tuple[Optional[Tensor], ...]:
        x, probs, mask_weight = ctx.saved_tensors
        context, scale, shift, params = ctx.graph
        del ctx.graph
        batch, channels, height, width = x.shape
        grad_out = grad_out.contiguous(
            memory_format=(torch.channels_last if not x.is_contiguous() and x.
                           is_contiguous(memory_format=torch.channels_last)
                           else torch.contiguous_format))

        # Gradients of the per-channel fusion terms, then of the context
        # and the transform's parameters through the small graph.
        outputs: List[Tensor] = []
        grads: List[Tensor] = []
        if scale is not None:
            outputs.append(scale)
            grads.append(channel_dot(grad_out, x).to(scale.dtype))
        if shift is not None:
            outputs.append(shift)
            grads.append(grad_out.sum(dim=(2, 3)).to(shift.dtype))
        trainable = [p for p in params if p.requires_grad]
        with torch.enable_grad():
            got = torch.autograd.grad(
                outputs, [context] + trainable, grads, allow_unused=True)
        grad_context = got[0]  # [B, C]
        if grad_context is None:
            grad_context = torch.zeros_like(context)
        trainable_grads = iter(got[1:])
        param_grads = tuple(
            next(trainable_grads) if p.requires_grad else None for p in params)

        # Pooling backward: c = sum_j p_j x_j, p = softmax(w . x_j + b).
        grad_context = grad_context.to(x.dtype)
        grad_weight = grad_bias = None
        left: List[Tensor] = [grad_context]  # [B, C] each
        right: List[Tensor] = []  # [B, HW] each
        if probs is None:
            right.append(
                x.new_full((batch, height * width), 1.0 / (height * width)))
        else:
            mats = flat_map(x)  # [B, C, HW]
            grad_probs = torch.bmm(grad_context.unsqueeze(1),
                                   mats).squeeze(1).float()  # [B, HW]
            grad_logits = probs * (
                grad_probs -
                (probs * grad_probs).sum(dim=1, keepdim=True))  # [B, HW], fp32
            grad_logits_x = grad_logits.to(x.dtype)
            if ctx.needs_input_grad[1]:
                grad_weight = torch.bmm(
                    grad_logits_x.unsqueeze(1), mats.transpose(1, 2)).sum(0)
                grad_weight = grad_weight.view_as(mask_weight).to(
                    mask_weight.dtype)  # sum_b sum_j gl_bj x_bj
            if ctx.needs_input_grad[2]:
                grad_bias = grad_logits.sum().reshape(1).to(mask_weight.dtype)
            right.append(probs.to(x.dtype))
            left.append(
                mask_weight.reshape(1, channels).to(x.dtype).expand(
                    batch, channels))
            right.append(grad_logits_x)

        grad_x = None
        if ctx.needs_input_grad[0]:
            scale_x = None if scale is None else scale.detach().to(x.dtype)
            if probs is None and x.is_contiguous():
                # Average pooling: the pooling gradient is a per-channel
                # constant, so the whole gradient is one affine pass.
                grad_x = channel_affine(grad_out, scale_x,
                                        grad_context / (height * width))
            elif x.is_contiguous():
                grad_x = (
                    grad_out * scale_x.view(batch, channels, 1, 1)
                    if scale_x is not None else torch.empty_like(x))
                base = grad_x if scale_x is not None else grad_out
                _add_low_rank(
                    base.view(batch, channels, height * width),
                    torch.stack(left, dim=2),  # [B, C, k]
                    torch.stack(right, dim=1),  # [B, k, HW]
                    out=grad_x.view(batch, channels, height * width))
            else:
                grad_x = (
                    grad_out * scale_x.view(batch, channels, 1, 1)
                    if scale_x is not None else grad_out)
                for vec, pos in zip(left, right):
                    grad_x = grad_x + vec.view(batch, channels, 1, 1) * \
                        pos.view(batch, 1, height, width)
        return (grad_x, grad_weight, grad_bias, None, None) + param_grads


def context_fusion(x: Tensor,
                   pool: PoolFn,
                   fuse: FusionFn,
                   params: Sequence[Tensor],
                   mask_weight: Optional[Tensor] = None,
                   mask_bias: Optional[Tensor] = None) -> Tensor:
    """``x * scale + shift`` where ``(scale, shift) = fuse(pool(x))``.

    ``pool`` is the block's own pooling: the softmax attention pooling of
    ``x`` with logits ``mask_weight . x_j + mask_bias`` (a 1x1 conv
    ``C -> 1``), or the mean of ``x`` (``mask_weight`` None). The softmax
    and the transform run in fp32 (autocast off).

    Args:
        x (Tensor): ``[B, C, H, W]``.
        pool (callable): ``x`` -> ``(context [B, C], probs [B, HW] fp32 or
            None)``; run without gradients (the backward is written here).
        fuse (callable): Maps the context ``[B, C]`` (fp32, requires grad)
            to ``(scale, shift)``, each ``[B, C]`` or None (not both).
        params (Sequence[Tensor]): Parameters used by ``fuse`` (their
            gradients are returned through autograd).
        mask_weight (Tensor, optional): Attention-pooling weights, ``C``
            elements (e.g. a ``[1, C, 1, 1]`` conv weight).
        mask_bias (Tensor, optional): Its bias, ``[1]``.

    Returns:
        Tensor: ``[B, C, H, W]``, dtype and memory format of ``x``.
    """
    tensors = [x, mask_weight, mask_bias, *params]
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                       for t in tensors):
        return _ContextFusion.apply(x, mask_weight, mask_bias, pool, fuse,
                                    *params)
    with float32_region(x.device.type):
        context, _ = pool(x)  # [B, C]
        scale, shift = fuse(context.float())
    return channel_affine(x, None if scale is None else scale.to(x.dtype),
                          None if shift is None else shift.to(x.dtype))
