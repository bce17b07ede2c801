"""A checkpoint hook whose saves survive a kill at any moment.

mmengine 0.10.7's ``CheckpointHook`` (1) deletes the oldest kept checkpoint
*before* writing the new one, (2) writes the checkpoint in place and (3)
writes ``last_checkpoint`` in place. A process killed during a save can
therefore leave a truncated ``iter_N.pth``, an empty ``last_checkpoint``,
or (with ``max_keep_ckpts=1``) no loadable checkpoint at all.
:class:`AtomicCheckpointHook` writes the checkpoint atomically (the
``atomic_local`` backend), then the pointer atomically, and only then
deletes the checkpoint that fell out of ``max_keep_ckpts``. It also refuses
to write weights that are NaN or infinite.
"""
import os.path as osp
from typing import Optional

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from .atomic_io import atomic_write


def first_nonfinite_key(module: torch.nn.Module) -> Optional[str]:
    """Name of the first floating-point state entry holding NaN or inf.

    Args:
        module (nn.Module): The model (unwrapped).

    Returns:
        str or None: The state-dict key, or None when all are finite.
    """
    for key, value in module.state_dict().items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return key
    return None


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with atomic checkpoint and ``last_checkpoint``
    writes, deletion of old checkpoints after the new one is in place, and
    a finiteness check of the weights.

    Takes every argument of mmengine's ``CheckpointHook``. With a local
    ``out_dir`` and no ``backend_args``, checkpoints are written through the
    ``atomic_local`` backend; other storage backends are used as given.

    Args:
        check_finite (bool): Raise ``FloatingPointError`` instead of saving
            weights or buffers that contain NaN or inf. Defaults to True.
        **kwargs: ``CheckpointHook`` arguments.
    """

    def __init__(self, *args, check_finite: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.check_finite = check_finite

    def before_train(self, runner) -> None:
        """Resolve ``out_dir`` and pick the atomic backend for local paths.

        Args:
            runner (Runner): The runner of the training process.
        """
        if (self.backend_args is None and self.file_client_args is None
                and '://' not in str(self.out_dir or runner.work_dir)):
            self.backend_args = dict(backend='atomic_local')
        super().before_train(runner)

    def _save_checkpoint_with_step(self, runner, step: int,
                                   meta: dict) -> None:
        ckpt_filename = self.filename_tmpl.format(step)
        if self.check_finite:
            model = runner.model.module if is_model_wrapper(
                runner.model) else runner.model
            bad_key = first_nonfinite_key(model)
            if bad_key is not None:
                raise FloatingPointError(
                    f'refusing to save {ckpt_filename}: {bad_key!r} holds '
                    f'NaN or inf values at iteration {runner.iter + 1}; the '
                    f'last checkpoint ({self.last_ckpt}) is left as it is')

        evicted = None  # deleted only once the new checkpoint is in place
        if self.max_keep_ckpts > 0 and not (
                self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                evicted = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))

        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        atomic_write(osp.join(runner.work_dir, 'last_checkpoint'),
                     self.last_ckpt)
        if evicted is not None:
            path = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(evicted))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # deepspeed: directories
                self.file_backend.rmtree(path)
