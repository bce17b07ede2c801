"""Stop (or report skipped steps) when a loss term becomes NaN or inf."""
import math
from typing import Dict, List, Optional

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from .skip_nonfinite_optim_wrapper import SkipNonFiniteOptimWrapper

ACTIONS = ('raise', 'skip')


def nonfinite_terms(outputs: Optional[dict]) -> Dict[str, float]:
    """Entries of a train step's ``log_vars`` that are NaN or infinite.

    Args:
        outputs (dict, optional): ``{name: tensor or float}``.

    Returns:
        dict: ``{name: value}`` of the non-finite entries, in order.
    """
    bad = {}
    for name, value in (outputs or {}).items():
        if isinstance(value, torch.Tensor):
            if value.numel() == 0 or bool(torch.isfinite(value).all()):
                continue
            value = float(value.detach().float().mean())
        elif not isinstance(value, (int, float)) or math.isfinite(value):
            continue
        bad[name] = value
    return bad


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Check every iteration's loss terms for NaN and inf.

    ``action='raise'`` raises ``FloatingPointError`` naming the iteration and
    the non-finite terms. Its priority (``LOW``) puts it before the
    checkpoint hook (``VERY_LOW``), so the weights of that step are never
    saved. ``action='skip'`` needs :class:`SkipNonFiniteOptimWrapper`
    (which already skipped the step) and logs each skipped iteration.

    Args:
        action (str): ``'raise'`` or ``'skip'``. Defaults to ``'raise'``.
    """

    priority = 'LOW'

    def __init__(self, action: str = 'raise') -> None:
        if action not in ACTIONS:
            raise ValueError(f'NonFiniteLossHook: action must be one of '
                             f'{ACTIONS}, got {action!r}')
        self.action = action

    def before_train(self, runner) -> None:
        """Check that ``action='skip'`` has an optimizer wrapper that skips.

        Args:
            runner (Runner): The runner.
        """
        if self.action == 'skip' and not isinstance(runner.optim_wrapper,
                                                    SkipNonFiniteOptimWrapper):
            raise TypeError(
                "NonFiniteLossHook(action='skip') needs optim_wrapper.type="
                f"'SkipNonFiniteOptimWrapper', got "
                f'{type(runner.optim_wrapper).__name__}')

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        """Raise or log when this iteration's loss was not finite.

        Args:
            runner (Runner): The runner.
            batch_idx (int): Index of the batch.
            data_batch: The batch.
            outputs (dict, optional): The loss terms (``log_vars``).
        """
        bad = nonfinite_terms(outputs)
        skipped = getattr(runner.optim_wrapper, 'step_skipped', False)
        if not bad and not skipped:
            return
        where = f'iteration {runner.iter + 1}'
        if runner.train_loop.max_epochs > 1:
            where += f' (epoch {runner.epoch + 1}, batch {batch_idx + 1})'
        terms: List[str] = [f'{k}={v}' for k, v in bad.items() if k != 'loss']
        named = ', '.join(terms or [f'{k}={v}' for k, v in bad.items()])
        if not named:
            named = 'another rank had a non-finite loss'
        if self.action == 'raise':
            raise FloatingPointError(
                f'Non-finite loss at {where}: {named}. Training stopped '
                'before this step could be checkpointed; the last '
                'checkpoint on disk is unchanged. To skip such steps '
                "instead, set reliability.nonfinite_loss='skip' (mmgc "
                "tools) or NonFiniteLossHook(action='skip') with "
                "optim_wrapper.type='SkipNonFiniteOptimWrapper'.")
        count = runner.optim_wrapper.skipped_steps
        runner.message_hub.update_info('skipped_steps', count)
        runner.logger.warning(
            f'Skipped the optimizer step of {where}: non-finite loss '
            f'{named} ({count} step(s) skipped so far)')
