"""Full-precision islands inside mixed-precision models, and memory-lean
softmax attention built on them.

Under ``torch.autocast`` matrix products run in bf16/fp16. The few places
where that loses too much (softmax over thousands of logits, sums over all
positions, sigmoid gates) go through :func:`float32_region` and
:func:`to_float32`, so every mmgc block keeps its normalisations in fp32 the
same way.
"""
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

LOW_PRECISION = (torch.float16, torch.bfloat16)

#: Device types that have an autocast mode (``torch.autocast`` raises for
#: the others, e.g. ``'meta'``), filled on first use of each type.
_HAS_AUTOCAST = {'cpu': True, 'cuda': True, 'meta': False}


def has_autocast(device_type: str) -> bool:
    """Whether ``torch.autocast(device_type=...)`` exists for this device
    type (``'meta'`` has none: entering it raises ``unsupported
    scalarType``)."""
    known = _HAS_AUTOCAST.get(device_type)
    if known is None:
        known = _HAS_AUTOCAST[device_type] = bool(
            torch.amp.is_autocast_available(device_type))
    return known


@contextmanager
def float32_region(device_type: str) -> Iterator[None]:
    """Disable autocast for ``device_type`` inside the ``with`` block (a
    no-op for device types without autocast, such as ``'meta'``).

    Args:
        device_type (str): ``'cpu'``, ``'cuda'``, ... (``tensor.device.type``).
    """
    if not has_autocast(device_type):
        yield
        return
    with torch.autocast(device_type=device_type, enabled=False):
        yield


def to_float32(tensor: Tensor) -> Tensor:
    """``tensor`` in fp32 if it is fp16/bf16, unchanged otherwise (fp64
    stays fp64)."""
    return tensor.float() if tensor.dtype in LOW_PRECISION else tensor


def softmax_attention(query: Tensor,
                      key: Tensor,
                      value: Tensor,
                      scale: float,
                      out_dtype: Optional[torch.dtype] = None) -> Tensor:
    """``softmax(query @ key^T * scale) @ value`` without the ``[L, S]``
    matrix.

    Calls :func:`torch.nn.functional.scaled_dot_product_attention` in fp32
    with autocast off, so the softmax is fp32 whatever the caller's
    precision. Its fused kernels (flash attention on CPU, flash or
    memory-efficient on CUDA) keep memory linear in ``L + S``; the CPU flash
    kernel needs equal query and value widths and otherwise silently falls
    back to the quadratic "math" kernel, so the narrower side is zero-padded
    (zero channels change neither ``query @ key^T`` nor the kept output
    channels); inputs whose last dim is strided are made contiguous for
    the same reason.

    Args:
        query (Tensor): ``[B, heads, L, E]``.
        key (Tensor): ``[B, heads, S, E]``.
        value (Tensor): ``[B, heads, S, Ev]``.
        scale (float): Factor applied to the logits (passed explicitly; SDPA
            would otherwise use ``1/sqrt(E)``).
        out_dtype (torch.dtype, optional): dtype of the result. Default: the
            dtype of ``value``.

    Returns:
        Tensor: ``[B, heads, L, Ev]``.
    """
    out_dtype = value.dtype if out_dtype is None else out_dtype
    with float32_region(query.device.type):
        # The fused kernels need the channel dim contiguous; otherwise
        # SDPA silently uses the quadratic kernel.
        query, key, value = (
            to_float32(t) if t.stride(-1) == 1 else to_float32(t).contiguous()
            for t in (query, key, value))
        dim_qk, dim_v = query.shape[-1], value.shape[-1]
        if dim_v < dim_qk:
            value = F.pad(value, (0, dim_qk - dim_v))  # [B, h, S, E]
        elif dim_qk < dim_v:
            query = F.pad(query, (0, dim_v - dim_qk))  # [B, h, L, Ev]
            key = F.pad(key, (0, dim_v - dim_qk))  # [B, h, S, Ev]
        out = F.scaled_dot_product_attention(
            query, key, value, scale=scale)  # [B, h, L, max(E, Ev)]
        out = out[..., :dim_v]  # [B, h, L, Ev]
    return out.to(out_dtype)
