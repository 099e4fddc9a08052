"""Files written whole or not at all, the temporary files a killed writer leaves, and checksums.

Every file the package writes goes through :func:`write_atomically`: the bytes go to a
temporary file ``.NAME.XXXX.tmp`` beside the target, are synced to disk, and the
temporary file is renamed over the target, so a reader (or a run continued after a
kill) sees the old file or the new one, never a part. What a killed writer left is
removed by :func:`remove_temporaries`. Entries of the caches carry a
:func:`checksum` of their bytes, checked on every read.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

STALE_TEMPORARY_SECONDS = 3600
"""A temporary file older than this was left by a process that was killed."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Writes a file through ``write(f)`` so that readers see the old file or the new one.

    The bytes go to a temporary file in the target's directory, are flushed and
    synced to disk, and the temporary file is then renamed over ``path``. On any
    exception the temporary file is removed and ``path`` is left untouched.

    Args:
      path: the file to create or replace.
      write: called once with a binary file object open for writing.

    Returns:
      ``path`` as a ``Path``.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def remove_temporaries(
    directory: str | os.PathLike, names: Iterable[str] | None = None, *, older_than: float | None = None
) -> list[Path]:
    """Removes the temporary files that :func:`write_atomically` calls killed midway left.

    Args:
      directory: where to look.
      names: only the temporary files of these target names; ``None``: of any file.
      older_than: only those last modified more than this many seconds ago (a live
        writer's file is younger); ``None``: all, for a caller that holds the
        directory's lock.

    Returns:
      The paths removed.
    """
    directory = Path(directory)
    patterns = [".*.tmp"] if names is None else [f".{name}.*.tmp" for name in names]
    now = time.time()
    removed = []
    for pattern in patterns:
        for path in directory.glob(pattern):
            with contextlib.suppress(OSError):
                if older_than is None or now - path.stat().st_mtime > older_than:
                    path.unlink()
                    removed.append(path)
    return removed


def checksum(data) -> int:
    """The CRC-32 of a bytes-like object (an array's buffer included): what cache entries record."""
    return zlib.crc32(data)
