"""Checkpoints: parameters and their metadata in one ``.npz`` file, without pickling.

A checkpoint is an uncompressed NumPy ``.npz`` archive of three arrays: ``w``
``[num_features, num_classes]``, ``b`` ``[num_classes]`` and ``metadata``, a 0-d
unicode array holding a JSON object. Nothing in it is pickled, so loading one
runs no code, and :func:`load_params` reads it with ``allow_pickle=False``.

Saving writes a temporary file next to the target, flushes it to disk and renames
it over the target with ``os.replace``: a save that is interrupted at any point
leaves the previous checkpoint (or none) in place, never a half-written one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jax_softmax.model import Params

FORMAT = "jax-softmax-params/1"
ARRAY_KEYS = ("w", "b", "metadata")
# Metadata that save_params derives from the parameters themselves.
DERIVED_KEYS = ("format", "num_features", "num_classes", "dtype", "jax_softmax_version")


class CheckpointError(ValueError):
    """A checkpoint file is missing, malformed, or holds something it must not."""


class Checkpoint(NamedTuple):
    """What :func:`load_params` returns.

    Attributes:
      params: the parameters, ``w`` ``[num_features, num_classes]`` and ``b``
        ``[num_classes]``, as JAX arrays of the stored dtype.
      metadata: the JSON metadata, including the keys ``save_params`` derives:
        ``format``, ``num_features``, ``num_classes``, ``dtype`` and
        ``jax_softmax_version``.
    """

    params: Params
    metadata: dict[str, Any]


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


def _checked_arrays(w: np.ndarray, b: np.ndarray, source: str) -> None:
    if w.ndim != 2 or w.shape[0] < 1 or w.shape[1] < 1:
        raise CheckpointError(f"{source}: w must be [num_features, num_classes], got shape {w.shape}")
    if b.shape != (w.shape[1],):
        raise CheckpointError(f"{source}: b must have shape ({w.shape[1]},) to match w, got {b.shape}")
    for name, array in (("w", w), ("b", b)):
        if not np.issubdtype(array.dtype, np.floating):
            raise CheckpointError(f"{source}: {name} must be a floating array, got dtype {array.dtype}")
        if not np.all(np.isfinite(array)):
            bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
            raise CheckpointError(f"{source}: {name} holds {bad} non-finite values (NaN or infinity)")
    if w.dtype != b.dtype:
        raise CheckpointError(f"{source}: w is {w.dtype} but b is {b.dtype}")


def save_params(path: str | os.PathLike, params: Params, metadata: Mapping[str, Any] | None = None) -> Path:
    """Saves parameters and JSON metadata to an ``.npz`` checkpoint, atomically.

    Args:
      path: the file to write (conventionally ``params.npz``); its directory must exist.
      params: ``w`` ``[num_features, num_classes]`` and ``b`` ``[num_classes]``, floating
        and finite.
      metadata: a JSON-serialisable mapping with string keys (training flags, data set,
        pixel scaling, ...). ``format``, ``num_features``, ``num_classes``, ``dtype``
        and ``jax_softmax_version`` are added from the parameters; passing one of
        them with a different value is an error.

    Returns:
      ``path`` as a ``Path``.

    Raises:
      CheckpointError: (a ``ValueError``) for malformed or non-finite parameters.
      ValueError: for metadata that is not a JSON object or contradicts the parameters.
      TypeError: for ``params`` without ``w`` and ``b``.
    """
    import jax_softmax  # here, not at the top: the package imports this module

    if not (hasattr(params, "w") and hasattr(params, "b")):
        raise TypeError(f"params must be a Params(w, b), got {type(params).__name__}")
    w, b = np.array(params.w), np.array(params.b)  # copies: params may be donated later
    _checked_arrays(w, b, "params")
    derived = {
        "format": FORMAT,
        "num_features": int(w.shape[0]),
        "num_classes": int(w.shape[1]),
        "dtype": w.dtype.name,
        "jax_softmax_version": jax_softmax.__version__,
    }
    metadata = dict(metadata or {})
    for key, value in derived.items():
        if key in metadata and key != "jax_softmax_version" and metadata[key] != value:
            raise ValueError(f"metadata[{key!r}] is {metadata[key]!r} but the parameters give {value!r}")
    metadata.update(derived)
    try:
        text = json.dumps(metadata, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"metadata must be a JSON object of plain values: {e}") from None
    return write_atomically(path, lambda f: np.savez(f, w=w, b=b, metadata=np.array(text)))


def read_checkpoint(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Reads and checks a checkpoint's arrays and metadata as NumPy values.

    Args:
      path: the ``.npz`` file.

    Returns:
      ``(w, b, metadata)``: ``w`` ``[num_features, num_classes]`` and ``b``
      ``[num_classes]`` as NumPy arrays of the stored dtype, and the metadata dict.

    Raises:
      CheckpointError: (a ``ValueError``) naming the file, if it is missing, not an
        ``.npz`` archive, truncated, holds a pickled object, lacks or adds arrays, has
        wrong shapes or dtypes, holds a NaN or infinity, or its metadata contradicts
        the arrays.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, not a checkpoint") from None
    if magic != b"PK\x03\x04":
        raise CheckpointError(f"{path}: not an .npz checkpoint (it is not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = sorted(archive.files)
            if names != sorted(ARRAY_KEYS):
                raise CheckpointError(f"{path}: expected the arrays {sorted(ARRAY_KEYS)}, found {names}")
            w, b, text = archive["w"], archive["b"], archive["metadata"]
    except CheckpointError:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise CheckpointError(
                f"{path}: holds a pickled object array; refused (a checkpoint holds plain numeric arrays)"
            ) from None
        raise CheckpointError(f"{path}: corrupt checkpoint ({e})") from None
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({e})") from None
    _checked_arrays(w, b, str(path))
    if text.shape != () or text.dtype.kind != "U":
        raise CheckpointError(f"{path}: metadata must be a JSON string, got {text.dtype} {text.shape}")
    try:
        metadata = json.loads(str(text))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({e})") from None
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: metadata must be a JSON object, got {type(metadata).__name__}")
    for key, value in (("num_features", w.shape[0]), ("num_classes", w.shape[1]), ("dtype", w.dtype.name)):
        if key in metadata and metadata[key] != value:
            raise CheckpointError(
                f"{path}: metadata says {key} {metadata[key]!r} but the arrays give {value!r}"
            )
    return w, b, metadata


def load_params(path: str | os.PathLike) -> Checkpoint:
    """Loads a checkpoint written by :func:`save_params`, checking everything in it.

    A float64 checkpoint needs 64-bit JAX; ``read_checkpoint(path)[2]["dtype"]``
    tells which it holds before anything is converted.

    Args:
      path: the ``.npz`` file.

    Returns:
      ``Checkpoint(params, metadata)``; ``params`` are JAX arrays of the stored dtype.

    Raises:
      CheckpointError: (a ``ValueError``) as for :func:`read_checkpoint`, and for
        float64 parameters while 64-bit JAX is off.
    """
    w, b, metadata = read_checkpoint(path)
    if w.dtype == np.float64 and not jax.config.jax_enable_x64:
        raise CheckpointError(
            f"{path}: holds float64 parameters; enable 64-bit JAX first "
            "(jax.config.update('jax_enable_x64', True))"
        )
    return Checkpoint(Params(w=jnp.asarray(w), b=jnp.asarray(b)), metadata)
