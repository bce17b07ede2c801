"""Carry the random generators and the data position in checkpoints."""
from typing import Optional

from mmengine.hooks import Hook

from .rng_state import capture_rng_state, restore_rng_state

#: Checkpoint key of the state written by :class:`TrainStateHook`.
TRAIN_STATE_KEY = 'train_state'


class TrainStateHook(Hook):
    """Adds the global RNG states and the loop's data position to every
    checkpoint, and hands them back to the loop after a checkpoint loads.
    Validation leaves the global RNG states as it found them: a resumed run
    does not repeat the validation that followed its checkpoint, so
    validation must not draw from the training streams.

    Installed by the resumable train loops themselves; not meant for
    ``custom_hooks``.

    Args:
        loop: The loop, with ``data_position() -> dict`` and
            ``resume_state`` (set here, consumed by the loop's ``run``).
    """

    priority = 'VERY_LOW'

    def __init__(self, loop) -> None:
        self.loop = loop
        self._rng_before_val: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store ``rng`` and ``data`` under ``checkpoint['train_state']``.

        Args:
            runner (Runner): The runner.
            checkpoint (dict): The checkpoint being saved.
        """
        checkpoint[TRAIN_STATE_KEY] = dict(
            version=1, rng=capture_rng_state(), data=self.loop.data_position())

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Stash the loaded state for the loop (used only when resuming).

        Args:
            runner (Runner): The runner.
            checkpoint (dict): The loaded checkpoint.
        """
        state: Optional[dict] = checkpoint.get(TRAIN_STATE_KEY)
        self.loop.resume_state = state

    def before_val(self, runner) -> None:
        """Remember the RNG states validation starts from.

        Args:
            runner (Runner): The runner.
        """
        self._rng_before_val = capture_rng_state()

    def after_val(self, runner) -> None:
        """Put the RNG states back to where validation found them.

        Args:
            runner (Runner): The runner.
        """
        if self._rng_before_val is not None:
            restore_rng_state(self._rng_before_val)
            self._rng_before_val = None
