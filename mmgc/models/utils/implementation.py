"""Which implementation of a block runs: the paper's reference path or a
named fast path, chosen by the tensor's device.

Every mmgc block computes its paper's formula in plain torch in its own
file (the *reference* path). Where a faster path exists (a module named for
what it does), the block's ``impl`` attribute selects it:

* ``'auto'`` (default): the fast path only where it has been measured to
  win, the CPU; the reference path elsewhere (CUDA, ``meta``), and for GC,
  SE and SASA also under ``torch.compile`` (``docs/performance.md`` has
  the table and the reasons);
* ``'reference'``: always the reference path;
* ``'fused'``: always the fast path (tests and benchmarks).

``impl`` is a plain attribute, not a constructor argument, so configs,
state dicts and checkpoints are unchanged: ``block.impl = 'reference'``,
or :func:`set_impl` for a whole model.
"""
from typing import Tuple

import torch
from torch import Tensor, nn

from .validation import check_choice

IMPLS: Tuple[str, ...] = ('auto', 'reference', 'fused')


def is_tracing() -> bool:
    """Whether the forward is being compiled or exported (``torch.compile``,
    ``torch.export``, TorchScript tracing), where a graph of plain ops is
    wanted rather than eager-mode tricks."""
    return bool(torch.compiler.is_compiling() or torch.jit.is_tracing())


class SelectableImpl:
    """Mixin giving a block an ``impl`` attribute (see the module
    docstring); the block decides what ``'auto'`` means for a tensor with
    :meth:`_fast_path_wins`."""

    _impl = 'auto'

    @property
    def impl(self) -> str:
        """``'auto'``, ``'reference'`` or ``'fused'``."""
        return self._impl

    @impl.setter
    def impl(self, value: str) -> None:
        check_choice('impl', value, IMPLS, type(self).__name__)
        self._impl = value

    def _fast_path_wins(self, x: Tensor) -> bool:
        """Where ``'auto'`` picks the fast path; overridden per block."""
        return False

    def use_fast_path(self, x: Tensor) -> bool:
        """Whether this forward of ``x`` runs the fast path."""
        if self._impl == 'auto':
            return self._fast_path_wins(x)
        return self._impl == 'fused'


def set_impl(model: nn.Module, impl: str) -> int:
    """Set ``impl`` on every mmgc block inside ``model``.

    Args:
        model (nn.Module): Any model (a block, a backbone, a detector).
        impl (str): One of :data:`IMPLS`.

    Returns:
        int: How many blocks were set.
    """
    check_choice('impl', impl, IMPLS, 'set_impl')
    count = 0
    for module in model.modules():
        if isinstance(module, SelectableImpl):
            module.impl = impl
            count += 1
    return count
