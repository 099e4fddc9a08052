"""Checkpoints: parameters and their metadata in one ``.npz`` file, without pickling.

A checkpoint is an uncompressed NumPy ``.npz`` archive of three arrays: ``w``
``[num_features, num_classes]``, ``b`` ``[num_classes]`` and ``metadata``, a 0-d
unicode array holding a JSON object. Nothing in it is pickled, so loading one
runs no code, and :func:`load_params` reads it with ``allow_pickle=False``.

A checkpoint of a run trained with an optax optimizer also holds the optimizer's
state after the same epoch: its leaves, in ``jax.tree.leaves`` order, as the arrays
``opt_state_0``, ``opt_state_1``, ..., their number in ``metadata["opt_state_leaves"]``.
Parameters and state are then one file, replaced in one rename, so they can never
describe different epochs (see :mod:`jax_softmax.runs._resume`).

Saving writes a temporary file next to the target, flushes it to disk and renames
it over the target with ``os.replace``: a save that is interrupted at any point
leaves the previous checkpoint (or none) in place, never a half-written one.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jax_softmax import __version__
from jax_softmax.model import Params
from jax_softmax.storage import write_atomically

FORMAT = "jax-softmax-params/1"
ARRAY_KEYS = ("w", "b", "metadata")
OPT_STATE_PREFIX = "opt_state_"
# Metadata that save_params derives from the parameters themselves.
DERIVED_KEYS = ("format", "num_features", "num_classes", "dtype", "jax_softmax_version", "opt_state_leaves")


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


def save_params(
    path: str | os.PathLike,
    params: Params,
    metadata: Mapping[str, Any] | None = None,
    *,
    opt_state: Any = (),
) -> Path:
    """Saves parameters and JSON metadata to an ``.npz`` checkpoint, atomically.

    Args:
      path: the file to write (conventionally ``params.npz``); its directory must exist.
      params: ``w`` ``[num_features, num_classes]`` and ``b`` ``[num_classes]``, floating
        and finite.
      metadata: a JSON-serialisable mapping with string keys (training flags, data set,
        pixel scaling, ...). ``format``, ``num_features``, ``num_classes``, ``dtype``,
        ``jax_softmax_version`` and ``opt_state_leaves`` are added from the parameters;
        passing one of them with a different value is an error.
      opt_state: an optimizer state (a pytree of arrays) stored with the parameters,
        in the same file; ``()`` for none. Read it back with :func:`read_opt_state_leaves`.

    Returns:
      ``path`` as a ``Path``.

    Raises:
      CheckpointError: (a ``ValueError``) for malformed or non-finite parameters.
      ValueError: for metadata that is not a JSON object or contradicts the parameters.
      TypeError: for ``params`` without ``w`` and ``b``.
    """
    if not (hasattr(params, "w") and hasattr(params, "b")):
        raise TypeError(f"params must be a Params(w, b), got {type(params).__name__}")
    w, b = np.array(params.w), np.array(params.b)  # copies: params may be donated later
    _checked_arrays(w, b, "params")
    leaves = [np.array(leaf) for leaf in jax.tree.leaves(opt_state)]  # copies: the state is donated next
    derived = {
        "format": FORMAT,
        "num_features": int(w.shape[0]),
        "num_classes": int(w.shape[1]),
        "dtype": w.dtype.name,
        "jax_softmax_version": __version__,
        "opt_state_leaves": len(leaves),
    }
    metadata = dict(metadata or {})
    for key, value in derived.items():
        # The version and the state's size describe this save, whatever an earlier one said.
        if key in ("jax_softmax_version", "opt_state_leaves"):
            continue
        if key in metadata and metadata[key] != value:
            raise ValueError(f"metadata[{key!r}] is {metadata[key]!r} but the parameters give {value!r}")
    metadata.update(derived)
    try:
        text = json.dumps(metadata, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"metadata must be a JSON object of plain values: {e}") from None
    arrays = {f"{OPT_STATE_PREFIX}{i}": leaf for i, leaf in enumerate(leaves)}
    return write_atomically(path, lambda f: np.savez(f, w=w, b=b, metadata=np.array(text), **arrays))


def _read_archive(path: Path, with_opt_state: bool) -> tuple[np.ndarray, np.ndarray, dict, list]:
    """Reads a checkpoint's arrays, turning every way a damaged file fails into a CheckpointError."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, not a checkpoint") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    if magic != b"PK\x03\x04":
        raise CheckpointError(f"{path}: not an .npz checkpoint (it is not a zip archive)")
    try:
        # NumPy reads an array's header and then only the bytes that header asks for,
        # so a damaged shape could pass unseen: check every member's CRC first.
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            raise CheckpointError(f"{path}: corrupt checkpoint (the CRC of {bad} does not match)")
        with np.load(path, allow_pickle=False) as archive:
            names = set(archive.files)
            if not set(ARRAY_KEYS) <= names:
                raise CheckpointError(
                    f"{path}: expected the arrays {sorted(ARRAY_KEYS)}, found {sorted(names)}"
                )
            text = archive["metadata"]
            metadata = _parse_metadata(text, path)
            count = metadata.get("opt_state_leaves", 0)
            if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= len(names):
                raise CheckpointError(f"{path}: metadata opt_state_leaves must be a count, got {count!r}")
            expected = {*ARRAY_KEYS, *(f"{OPT_STATE_PREFIX}{i}" for i in range(count))}
            if names != expected:
                found = sorted(names)
                raise CheckpointError(f"{path}: expected the arrays {sorted(expected)}, found {found}")
            w, b = archive["w"], archive["b"]
            leaves = [archive[f"{OPT_STATE_PREFIX}{i}"] for i in range(count)] if with_opt_state else []
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
    except Exception as e:  # noqa: BLE001
        # A damaged archive can fail inside zipfile or NumPy's header parser in many
        # ways (a mangled header makes it raise SyntaxError, NotImplementedError,
        # MemoryError, ...): every one of them means the same thing to the caller.
        raise CheckpointError(f"{path}: corrupt checkpoint ({type(e).__name__}: {e})") from None
    return w, b, metadata, leaves


def _parse_metadata(text: np.ndarray, path: Path) -> dict[str, Any]:
    if text.shape != () or text.dtype.kind != "U":
        raise CheckpointError(f"{path}: metadata must be a JSON string, got {text.dtype} {text.shape}")
    try:
        metadata = json.loads(str(text))
    except (json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({e})") from None
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: metadata must be a JSON object, got {type(metadata).__name__}")
    return metadata


def read_checkpoint(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Reads and checks a checkpoint's arrays and metadata as NumPy values.

    Args:
      path: the ``.npz`` file.

    Returns:
      ``(w, b, metadata)``: ``w`` ``[num_features, num_classes]`` and ``b``
      ``[num_classes]`` as NumPy arrays of the stored dtype, and the metadata dict.

    Raises:
      CheckpointError: (a ``ValueError``) naming the file, if it is missing, not an
        ``.npz`` archive, truncated or damaged in any byte, holds a pickled object,
        lacks or adds arrays, has wrong shapes or dtypes, holds a NaN or infinity,
        or its metadata contradicts the arrays. No other exception escapes.
    """
    path = Path(path)
    w, b, metadata, _ = _read_archive(path, with_opt_state=False)
    _check_read(w, b, metadata, path)
    return w, b, metadata


def _check_read(w: np.ndarray, b: np.ndarray, metadata: dict[str, Any], path: Path) -> None:
    _checked_arrays(w, b, str(path))
    for key, value in (("num_features", w.shape[0]), ("num_classes", w.shape[1]), ("dtype", w.dtype.name)):
        if key in metadata and metadata[key] != value:
            raise CheckpointError(
                f"{path}: metadata says {key} {metadata[key]!r} but the arrays give {value!r}"
            )


def read_opt_state_leaves(path: str | os.PathLike) -> list[np.ndarray]:
    """The optimizer-state leaves stored in a checkpoint by ``save_params(..., opt_state=...)``.

    Args:
      path: the ``.npz`` file.

    Returns:
      The leaves in ``jax.tree.leaves`` order, as NumPy arrays (empty when none were stored).

    Raises:
      CheckpointError: as for :func:`read_checkpoint`, and for a non-numeric leaf.
    """
    path = Path(path)
    w, b, metadata, leaves = _read_archive(path, with_opt_state=True)
    _check_read(w, b, metadata, path)
    for i, leaf in enumerate(leaves):
        if leaf.dtype.kind not in "biuf":
            raise CheckpointError(f"{path}: optimizer state array {i} has dtype {leaf.dtype}, not numeric")
        if leaf.dtype.kind == "f" and not np.all(np.isfinite(leaf)):
            raise CheckpointError(f"{path}: optimizer state array {i} holds non-finite values")
    return leaves


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
    return to_checkpoint(*read_checkpoint(path), path)


def to_checkpoint(
    w: np.ndarray, b: np.ndarray, metadata: dict[str, Any], path: str | os.PathLike
) -> Checkpoint:
    """The :class:`Checkpoint` of arrays that :func:`read_checkpoint` read from ``path``.

    Raises:
      CheckpointError: for float64 parameters while 64-bit JAX is off.
    """
    if w.dtype == np.float64 and not jax.config.jax_enable_x64:
        raise CheckpointError(
            f"{path}: holds float64 parameters; enable 64-bit JAX first "
            "(jax.config.update('jax_enable_x64', True))"
        )
    return Checkpoint(Params(w=jnp.asarray(w), b=jnp.asarray(b)), metadata)


PIXEL_DIVISOR = 255.0  # inputs are uint8 pixels divided by this, in [0, 1]


def check_pixel_scaling(metadata: Mapping[str, Any], source: str) -> None:
    """Refuses a checkpoint trained on pixels scaled other than ``uint8 / 255``.

    Raises:
      ValueError: naming ``source`` and the scaling it records.
    """
    divisor = metadata.get("pixel_divisor", PIXEL_DIVISOR)
    if divisor != PIXEL_DIVISOR:
        raise ValueError(
            f"{source}: trained on pixels / {divisor}, "
            f"but images and MNIST are fed as pixels / {PIXEL_DIVISOR:g}"
        )


PREPROCESSING = ("deskew",)
"""What a checkpoint's ``preprocessing`` may list: done to each image before the model sees it."""


def check_preprocessing(metadata: Mapping[str, Any], source: str) -> tuple[str, ...]:
    """The preprocessing a checkpoint records (``()`` for none, or a checkpoint from before it).

    Raises:
      ValueError: naming ``source`` and a preprocessing this version does not know, so
        that a model is never fed images prepared another way than it was trained on.
    """
    steps = metadata.get("preprocessing", [])
    if not isinstance(steps, list) or not all(isinstance(step, str) for step in steps):
        raise ValueError(f"{source}: its preprocessing must be a list of names, got {steps!r}")
    unknown = [step for step in steps if step not in PREPROCESSING]
    if unknown:
        raise ValueError(
            f"{source}: records the preprocessing {unknown[0]!r}, which this version of jax-softmax "
            f"does not know (it knows {', '.join(PREPROCESSING)}); use the version that wrote it"
        )
    return tuple(steps)
