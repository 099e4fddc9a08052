"""Decoded MNIST kept between runs: the IDX files' arrays as ``.npy`` files, memory-mapped.

Inflating and hashing the gzip files takes most of a second, so the decoded arrays
are kept in a cache directory as ``.npy`` files, named by the SHA-256 of the IDX
content they came from, and memory-mapped on later reads. A record per IDX file
holds its size, modification and change times and the entry's checksum
(:func:`jax_softmax.storage.checksum`): a file whose times or size changed is read
again, and an entry that is missing, cut short or whose checksum differs is ignored,
so the cache can make a read faster but never different.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from jax_softmax.data._idx import IdxError, read_idx, read_idx_and_bytes
from jax_softmax.storage import STALE_TEMPORARY_SECONDS, checksum, remove_temporaries, write_atomically


def _source_stamp(st: os.stat_result) -> list[int]:
    # The change time moves on every write, even one that puts the old mtime back.
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _record_path(cache_dir: Path, source: Path) -> Path:
    return cache_dir / "sources" / (hashlib.sha256(str(source).encode()).hexdigest() + ".json")


def _read_cached(cache_dir: Path, source: Path, sha256: str | None) -> np.ndarray | None:
    """The cached uint8 array of the IDX file ``source``, memory-mapped, or ``None``.

    ``None`` unless the record of ``source`` matches its size and times (and, with
    ``sha256``, names that content) and the entry is whole and has the recorded CRC-32.
    """
    try:
        stamp = _source_stamp(source.stat())
        record = json.loads(_record_path(cache_dir, source).read_text())
        if record["source"] != str(source) or record["stamp"] != stamp:
            return None
        if sha256 is not None and record["sha256"] != sha256:
            return None
        array = np.load(cache_dir / f"{record['sha256']}.npy", mmap_mode="r", allow_pickle=False)
        if array.dtype != np.uint8 or list(array.shape) != record["shape"] or not array.flags.c_contiguous:
            return None
        if checksum(array) != record["crc32"]:
            return None
    except (OSError, EOFError, ValueError, KeyError, TypeError):  # missing, unreadable, cut short, malformed
        return None
    return array


def _write_cached(cache_dir: Path, source: Path, stamp: list[int], array: np.ndarray, sha256: str) -> None:
    """Keeps ``array``, decoded from ``source`` whose content has SHA-256 ``sha256``, if it can.

    Each file is written under a temporary name and renamed into place, so a reader
    sees a whole file or none; a directory that cannot be written is left alone.
    """
    if array.dtype != np.uint8:
        return
    record = {
        "source": str(source),
        "stamp": stamp,
        "sha256": sha256,
        "shape": list(array.shape),
        "crc32": checksum(np.ascontiguousarray(array)),
    }
    entry = cache_dir / f"{sha256}.npy"
    try:
        (cache_dir / "sources").mkdir(parents=True, exist_ok=True)
        for directory in (cache_dir, cache_dir / "sources"):
            remove_temporaries(directory, older_than=STALE_TEMPORARY_SECONDS)
        if not _entry_matches(entry, record):  # another directory's copy may have written it
            write_atomically(entry, lambda f: np.save(f, array, allow_pickle=False))
        write_atomically(_record_path(cache_dir, source), lambda f: f.write(json.dumps(record).encode()))
    except OSError:
        return


def _entry_matches(entry: Path, record: dict) -> bool:
    try:
        array = np.load(entry, mmap_mode="r", allow_pickle=False)
        return list(array.shape) == record["shape"] and checksum(array) == record["crc32"]
    except (OSError, EOFError, ValueError):
        return False


def read_cached_source(path: Path, shape, sha256: str | None, cache_dir: Path | None) -> np.ndarray:
    """One IDX file of a directory, through the cache when there is one."""
    if cache_dir is None:
        return read_idx(path, shape, sha256)
    path = path.resolve()
    cached = _read_cached(cache_dir, path, sha256)
    if cached is not None:
        return cached
    try:
        before = _source_stamp(path.stat())
    except OSError:
        before = None
    array, data = read_idx_and_bytes(path, shape)
    digest = hashlib.sha256(data).hexdigest()
    del data
    if sha256 is not None and digest != sha256:
        raise IdxError(f"{path}: content differs from the canonical MNIST file (SHA-256 mismatch)")
    # A file that changed while it was read is not recorded: its stamp and content may disagree.
    if before is not None and before == _source_stamp(path.stat()):
        _write_cached(cache_dir, path, before, array, digest)
    return array


DERIVED_VERSION = 1
"""Part of a derived entry's name: a change to how it is computed names new entries."""


def derived(cache_dir: Path | None, name: str, source: np.ndarray, compute) -> np.ndarray:
    """``compute(source)`` (a uint8 array), kept in ``cache_dir`` beside the decoded arrays.

    The entry is named by ``name``, :data:`DERIVED_VERSION` and the checksum and shape
    of ``source``; a record beside it holds the entry's own checksum, checked on every
    read (the policy of :mod:`jax_softmax.storage`): an entry missing, cut short or
    damaged is computed and written again. ``cache_dir=None`` computes it every time.
    """
    if cache_dir is None:
        return compute(source)
    shape = "x".join(map(str, source.shape))
    stem = f"{name}-v{DERIVED_VERSION}-{checksum(np.ascontiguousarray(source)):08x}-{shape}"
    entry, record_path = cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"
    try:
        record = json.loads(record_path.read_text())
        array = np.load(entry, mmap_mode="r", allow_pickle=False)
        if list(array.shape) == record["shape"] and checksum(array) == record["crc32"]:
            return array
    except (OSError, EOFError, ValueError, KeyError, TypeError):
        pass
    array = compute(source)
    record = {"shape": list(array.shape), "crc32": checksum(np.ascontiguousarray(array))}
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(entry, lambda f: np.save(f, array, allow_pickle=False))
        write_atomically(record_path, lambda f: f.write(json.dumps(record).encode()))
    except OSError:
        pass
    return array
