"""Seeded random weights for comparing two implementations of a block.

A freshly built block starts with zero-initialised output layers (GC's last
conv, NL's ``conv_out``), so its output equals its input whatever the
attention computes; comparing a fast path with the reference on such a
block compares nothing. Tests and the block benchmark fill the weights
with seeded random values first.
"""
import itertools

import torch


def randomize_(module: torch.nn.Module,
               seed: int = 0,
               std: float = 0.5,
               norm_stats: bool = False) -> None:
    """Give every parameter seeded ``N(0, std^2)`` values in place, so that
    zero-initialised output layers do not hide numerical differences.

    Args:
        module (nn.Module): The block (or any module).
        seed (int): Seed of the values.
        std (float): Their standard deviation.
        norm_stats (bool): Also the float buffers (norm running
            statistics); then every 1-d tensor, parameter or buffer, is
            drawn from ``U(0.1, 0.6)`` instead, so that variances and norm
            scales stay positive.
    """
    gen = torch.Generator().manual_seed(seed)
    tensors = (
        itertools.chain(module.parameters(), module.buffers())
        if norm_stats else module.parameters())
    with torch.no_grad():
        for t in tensors:
            if not t.is_floating_point():
                continue
            if norm_stats and t.dim() == 1:
                t.copy_(torch.rand(t.shape, generator=gen) * 0.5 + 0.1)
            else:
                t.copy_(torch.randn(t.shape, generator=gen) * std)
