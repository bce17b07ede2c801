"""An optimizer wrapper that never applies a step computed from a NaN or
infinite loss."""
import logging
from typing import Dict, Optional

import torch
from mmengine.dist import all_reduce
from mmengine.logging import MessageHub, print_log
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class SkipNonFiniteOptimWrapper(OptimWrapper):
    """``OptimWrapper`` that skips the update when the loss is not finite.

    The loss check is collective: when any rank's loss is NaN or inf, every
    rank skips, so the replicas stay identical. ``backward`` still runs (DDP
    expects it after each forward); the gradients are then discarded, and
    with gradient accumulation so are the window's earlier micro-batches.
    Whether the training then stops or goes on is decided by
    ``NonFiniteLossHook``, which names the loss terms.

    Args:
        **kwargs: ``OptimWrapper`` arguments.

    Attributes:
        step_skipped (bool): Whether the last ``update_params`` skipped.
        skipped_steps (int): Steps skipped by this process so far.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.step_skipped = False
        self.skipped_steps = 0

    @staticmethod
    def _finite_on_all_ranks(loss: torch.Tensor) -> bool:
        flag = torch.isfinite(loss.detach()).all().to(torch.float32)  # [1]
        all_reduce(flag, op='min')  # no-op without a process group
        return bool(flag.item())

    def update_params(self,
                      loss: torch.Tensor,
                      step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        """Back-propagate and step, unless a rank's loss is not finite.

        Args:
            loss (torch.Tensor): The total loss.
            step_kwargs (dict, optional): Arguments for ``step``.
            zero_kwargs (dict, optional): Arguments for ``zero_grad``.
        """
        self.step_skipped = not self._finite_on_all_ranks(loss)
        if not self.step_skipped:
            super().update_params(loss, step_kwargs, zero_kwargs)
            return
        self.skipped_steps += 1
        self.backward(self.scale_loss(loss))
        self.zero_grad(**(zero_kwargs or {}))
        iteration = MessageHub.get_current_instance().get_info('iter')
        where = '' if iteration is None else f' at iteration {iteration + 1}'
        total = float(loss.detach())
        print_log(
            f'Non-finite loss{where} (total {total:.4g}): '
            'optimizer step skipped',
            logger='current',
            level=logging.WARNING)
