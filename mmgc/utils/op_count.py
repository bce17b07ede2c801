"""Count the aten ops a module dispatches, forward and backward, on the
``meta`` device.

On a GPU every dispatched op is (at least) one kernel launch plus Python and
dispatcher time, so the op count of a block is a device-independent
stand-in for its launch cost. On the ``meta`` device tensors have shapes but
no data, so counting is instant and deterministic at any map size, and the
blocks take the path they would take on a GPU (``impl='auto'`` picks the
CPU-only fast paths only for CPU tensors).
"""
import copy
from collections import Counter
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode


class OpCounter(TorchDispatchMode):
    """A dispatch mode that counts every aten op it sees, by name
    (``aten.bmm.default`` and so on)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func)] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        """Number of ops counted."""
        return sum(self.counts.values())


def count_ops(
    module: nn.Module,
    shape: Sequence[int],
    backward: bool = True,
    device: str = 'meta',
    forward_fn: Optional[Callable[[nn.Module, Tensor],
                                  Tensor]] = None) -> Counter:
    """Ops dispatched by one forward (and backward) of ``module``.

    A copy of ``module`` is moved to ``device`` (the original is left
    alone). The input ``[*shape]`` requires grad, as inside a network; the
    upstream gradient is made outside the count, so that the count is the
    block's own forward plus backward (including the gradient accumulation
    into its parameters).

    Args:
        module (nn.Module): The block.
        shape (Sequence[int]): Input shape, e.g. ``(2, 512, 100, 168)``.
        backward (bool): Count the backward pass too. Default: True.
        device (str): Where to run. Default: ``'meta'``.
        forward_fn (callable, optional): ``forward_fn(module, x)`` instead
            of ``module(x)``.

    Returns:
        Counter: op name -> count (``sum(counter.values())`` is the total).
    """
    module = copy.deepcopy(module).to(device)
    x = torch.empty(*shape, device=device).requires_grad_(backward)
    counter = OpCounter()
    with counter:
        out = forward_fn(module, x) if forward_fn else module(x)
    if backward:
        grad = torch.ones_like(out)
        with counter:
            out.backward(grad)
    return counter.counts


#: The launch budget: ops of an mmgc block over its reference's.
OP_GOAL = 1.5


def block_op_counts() -> List[Dict[str, object]]:
    """Forward+backward op counts on ``meta`` of each mmgc block next to its
    reference, at the sizes of the speed goals: GC r16 vs mmcv
    ``ContextBlock`` and SE r16 vs mmdet ``SELayer`` at c3 (2x512x100x168),
    NL vs mmcv ``NonLocal2d`` at N = 16800 (1x512x100x168), SASA k7 (8
    heads) vs the plain unfold local attention (``SASAConv`` with
    ``impl='reference'``) at 2x256x50x84.

    Returns:
        list[dict]: per block ``name``, ``shape``, ``reference`` (its name),
        ``reference_ops`` and ``ops`` (``{'auto': n, 'fused': n}``: the path
        a GPU runs, and the CPU fast path).
    """
    from mmcv.cnn.bricks import ContextBlock, NonLocal2d
    from mmdet.models.layers import SELayer

    from mmgc.models import GCBlock, NLBlock, SASAConv, SEBlock
    from mmgc.models.utils import set_impl

    def with_impl(module: nn.Module, impl: str) -> nn.Module:
        set_impl(module, impl)
        return module

    cases = [
        ('GC r16', (2, 512, 100, 168), 'mmcv ContextBlock',
         lambda: ContextBlock(512, ratio=1 / 16),
         lambda: GCBlock(512, ratio=1 / 16)),
        ('SE r16', (2, 512, 100, 168), 'mmdet SELayer',
         lambda: SELayer(512, ratio=16), lambda: SEBlock(512, ratio=1 / 16)),
        ('NL', (1, 512, 100, 168), 'mmcv NonLocal2d', lambda: NonLocal2d(512),
         lambda: NLBlock(512)),
        ('SASA k7', (2, 256, 50, 84), 'unfold attention (SASA reference)',
         lambda: with_impl(SASAConv(256, 256, 7, num_heads=8), 'reference'),
         lambda: SASAConv(256, 256, 7, num_heads=8)),
    ]
    rows = []
    for name, shape, ref_name, make_ref, make_ours in cases:
        rows.append(
            dict(
                name=name,
                shape=shape,
                reference=ref_name,
                reference_ops=sum(count_ops(make_ref(), shape).values()),
                ops={
                    impl:
                    sum(
                        count_ops(with_impl(make_ours(), impl),
                                  shape).values())
                    for impl in ('auto', 'fused')
                }))
    return rows
