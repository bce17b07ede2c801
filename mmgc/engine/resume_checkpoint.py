"""Which checkpoint a run resumes from: ``--resume auto`` and
``--resume PATH``.

mmengine's ``resume=True`` follows ``last_checkpoint`` blindly: a truncated
or unreadable newest checkpoint (a disk that filled up under a non-atomic
writer, a copy cut short) stops the run with an unpickling error, although
an older valid checkpoint lies beside it. :func:`find_resume_checkpoint`
takes the newest checkpoint that passes :func:`check_checkpoint` and warns,
naming both, when it had to pass over a bad one.

A checkpoint written by ``torch.save`` is a zip archive whose entries carry
CRC-32 checksums; :func:`check_checkpoint` reads it through once and
verifies them, without unpickling anything.
"""
import glob
import logging
import os
import os.path as osp
import re
import zipfile
from typing import List, Optional

from mmengine.logging import print_log

from .atomic_checkpoint_hook import committed_checkpoint

#: File names of training checkpoints (mmengine's ``filename_tmpl``).
_CHECKPOINT_NAME = re.compile(r'^(iter|epoch)_\d+\.pth$')


class BadCheckpointError(ValueError):
    """A checkpoint file that cannot be loaded."""


def check_checkpoint(path: str) -> None:
    """Raise unless ``path`` is a complete, readable ``torch.save`` file.

    Args:
        path (str): The checkpoint file.

    Raises:
        BadCheckpointError: Missing, unreadable, truncated or corrupt, with
            the reason.
    """
    if not osp.isfile(path):
        raise BadCheckpointError(f'{path!r} does not exist')
    try:
        size = osp.getsize(path)
        if not zipfile.is_zipfile(path):
            raise BadCheckpointError(
                f'{path!r} ({size} bytes) is not a complete torch.save file '
                '(no zip directory at its end: truncated, or not a '
                'checkpoint)')
        with zipfile.ZipFile(path) as archive:
            if not any(n.endswith('/data.pkl') for n in archive.namelist()):
                raise BadCheckpointError(
                    f'{path!r} is a zip file without data.pkl: not a '
                    'torch.save checkpoint')
            broken = archive.testzip()
    except BadCheckpointError:
        raise
    except (OSError, zipfile.BadZipFile, EOFError, RuntimeError) as e:
        raise BadCheckpointError(f'{path!r} cannot be read: {e}') from e
    if broken is not None:
        raise BadCheckpointError(
            f'{path!r} is corrupt: entry {broken!r} fails its CRC check')


def _candidates(work_dir: str) -> List[str]:
    """The pointer's checkpoint first, then the others, newest first."""
    found = [
        p for p in glob.glob(osp.join(work_dir, '*.pth'))
        if _CHECKPOINT_NAME.match(osp.basename(p))
    ]
    found.sort(key=lambda p: (os.stat(p).st_mtime_ns, p), reverse=True)
    pointed = committed_checkpoint(work_dir)
    if pointed is not None:
        found = [pointed] + [
            p for p in found if osp.abspath(p) != osp.abspath(pointed)
        ]
    return found


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume auto`` continues from.

    The one ``last_checkpoint`` names if it is valid, else the newest valid
    ``iter_*.pth`` / ``epoch_*.pth`` in ``work_dir`` (a warning names the
    bad file and the chosen one); None when there is none (a fresh start).

    Args:
        work_dir (str): The run's work dir.

    Returns:
        str or None: Path of the checkpoint.
    """
    if not osp.isdir(work_dir):
        return None
    rejected = []
    for path in _candidates(work_dir):
        try:
            check_checkpoint(path)
        except BadCheckpointError as e:
            rejected.append(str(e))
            continue
        if rejected:
            print_log(
                f'--resume auto: passed over {len(rejected)} bad '
                f"checkpoint(s) ({'; '.join(rejected)}); resuming from "
                f'{path}, the newest valid one',
                logger='current',
                level=logging.WARNING)
        return path
    if rejected:
        print_log(
            f'--resume auto: no valid checkpoint in {work_dir} '
            f"({'; '.join(rejected)}); training starts from the beginning",
            logger='current',
            level=logging.WARNING)
    return None
