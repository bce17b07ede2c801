"""Crash-safe file writes and an mmengine storage backend that uses them.

A file written in place is truncated first: a process killed during the
write leaves a partial file under the final name. :func:`atomic_write`
writes a temporary file in the same directory, flushes and ``fsync``\\ s it,
then ``os.replace``\\ s it over the target, which POSIX makes atomic: a
reader sees the old file or the new one, never a mix. The directory is
synced too, so the rename survives a power cut. A full disk (``ENOSPC``,
``EDQUOT``) raises an ``OSError`` naming the file and the free space, and
leaves the old file as it was.
"""
import errno
import os
import os.path as osp
import shutil
import uuid
from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend, register_backend

#: errnos of a full disk or an exceeded quota
_FULL = (errno.ENOSPC, errno.EDQUOT)


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(filepath: Union[str, Path],
                 data: Union[bytes, str],
                 encoding: str = 'utf-8') -> None:
    """Replace ``filepath`` with ``data`` atomically.

    Args:
        filepath (str or Path): Target file; its directory is created.
        data (bytes or str): Content; ``str`` is encoded with ``encoding``.
        encoding (str): Text encoding. Defaults to ``'utf-8'``.
    """
    filepath = osp.abspath(str(filepath))
    directory = osp.dirname(filepath)
    os.makedirs(directory, exist_ok=True)
    if isinstance(data, str):
        data = data.encode(encoding)
    # Hidden name in the same directory (same file system: rename is
    # atomic); O_EXCL with a unique suffix; mode 0o666 honours the umask.
    tmp_path = osp.join(
        directory, f'.{osp.basename(filepath)}.{uuid.uuid4().hex[:8]}.tmp')
    try:
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, 'wb') as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp_path, filepath)
        except BaseException:
            if osp.exists(tmp_path):
                os.remove(tmp_path)
            raise
    except OSError as e:
        if e.errno not in _FULL:
            raise
        raise OSError(
            e.errno, f'{os.strerror(e.errno)} while writing {filepath} '
            f'({len(data)} bytes; {_free_space(directory)}); '
            f'{osp.basename(filepath)} was not changed') from e
    _fsync_directory(directory)


def _free_space(directory: str) -> str:
    """``'N MB free on DIR'`` for messages."""
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return 'free space unknown'
    return f'{free / 2**20:.1f} MB free on {directory}'


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic :meth:`put` and
    :meth:`put_text`.

    Select it with ``backend_args=dict(backend='atomic_local')``, e.g. in
    ``default_hooks.checkpoint`` (``AtomicCheckpointHook`` does so by
    default for local directories).
    """

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        """Write bytes atomically (see :func:`atomic_write`).

        Args:
            obj (bytes): Data to be written.
            filepath (str or Path): Path to write data.
        """
        atomic_write(filepath, obj)

    def put_text(self,
                 obj: str,
                 filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        """Write text atomically (see :func:`atomic_write`).

        Args:
            obj (str): Text to be written.
            filepath (str or Path): Path to write data.
            encoding (str): Text encoding. Defaults to ``'utf-8'``.
        """
        atomic_write(filepath, obj, encoding=encoding)
