"""End a tool's distributed process group before the interpreter exits.

mmengine starts the default process group for ``--launcher pytorch`` or
``slurm`` and never destroys it. A process that exits with a live gloo
group can abort during interpreter shutdown: gloo's worker threads still
hold work objects when the C++ runtime tears them down (``terminate called
without an active exception``, SIGABRT), so torchrun reports a failed run
after training and checkpointing succeeded. NCCL warns about the same
missing call. Destroying the group once the work is done is torch's
documented shutdown.
"""
from contextlib import contextmanager
from typing import Iterator

import torch.distributed as torch_dist


def destroy_default_group() -> bool:
    """Destroy the default process group if one is running.

    Returns:
        bool: Whether a group was destroyed.
    """
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return False
    torch_dist.destroy_process_group()
    return True


@contextmanager
def released_process_group() -> Iterator[None]:
    """Destroy the default process group when the block finishes normally
    or exits through ``sys.exit``.

    On any other exception the group is left alone: another rank may still
    be inside a collective, and the launcher tears the failed job down.
    """
    try:
        yield
    except SystemExit:
        destroy_default_group()
        raise
    destroy_default_group()
