"""Softmax attention pooling: one weighted average of all positions."""
from typing import Optional, Tuple, Union

import torch
from torch import Tensor


def channel_major(x: Tensor) -> Optional[Tensor]:
    """``x`` ``[B, C, H, W]`` as ``[B, C, H*W]`` without copying, or None.

    NCHW-contiguous maps give a plain view; channels_last maps a transposed
    view (strides ``(HWC, 1, C)``) that BLAS reads as a transposed matrix.
    """
    batch, channels, height, width = x.shape
    if x.is_contiguous():
        return x.view(batch, channels, height * width)
    if x.is_contiguous(memory_format=torch.channels_last):
        return x.permute(0, 2, 3, 1).reshape(batch, height * width,
                                             channels).transpose(1, 2)
    return None


def attention_pool(
        x: Tensor,
        logits: Tensor,
        return_weights: bool = False) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Pool a feature map with softmax weights over its positions.

    ``context[b, c] = sum_j softmax_j(logits[b, j]) * x[b, c, j]`` — the
    query-independent global context of GCNet (and of the simplified
    non-local block). The softmax runs in fp32 even under autocast, and the
    weighted sum is one batched row-vector product ``w^T X^T`` (on CPU a
    ``bmm`` with one output *row* is multi-threaded and reads ``x`` at
    memory speed, where one with one output *column* is several times
    slower and ``mv`` is single-threaded), so ``x`` is read once and no
    ``[B, C, H*W]`` temporary is made.

    Args:
        x (Tensor): Features of shape ``[B, C, H, W]``.
        logits (Tensor): Attention logits of shape ``[B, 1, H, W]``.
        return_weights (bool): Also return the softmax weights.

    Returns:
        Tensor: Context of shape ``[B, C, 1, 1]``, dtype of ``x``; with
        ``return_weights``, also the fp32 weights ``[B, H*W]``.
    """
    batch, channels, height, width = x.shape
    weights = torch.softmax(logits.reshape(batch, height * width).float(),
                            dim=1)  # [B, H*W], fp32
    values = channel_major(x)  # [B, C, H*W]
    if values is None:
        values = x.reshape(batch, channels, height * width)
    context = torch.bmm(weights.to(x.dtype).unsqueeze(1),
                        values.transpose(1, 2))  # [B, 1, C]
    context = context.view(batch, channels, 1, 1)  # [B, C, 1, 1]
    return (context, weights) if return_weights else context
