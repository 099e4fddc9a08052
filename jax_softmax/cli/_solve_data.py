"""The data of ``jax-softmax solve``: MNIST's splits, or the arrays of an ``.npz`` of features.

Everything a file can get wrong (missing, not an archive, missing or misshapen arrays,
non-finite features, labels out of range, a class without training rows) becomes a
:class:`~jax_softmax.cli._common.CommandError` naming the file and the array.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, NamedTuple

from jax_softmax.cli._common import PROG, CommandError

HOLD_OUT_FRACTION = 0.1  # of the training rows, for validation when a file has no x_val
FEATURE_SPLITS = {
    "train": ("x_train", "y_train"),
    "validation": ("x_val", "y_val"),
    "test": ("x_test", "y_test"),
}


class SolveData(NamedTuple):
    """The splits to solve on, and what to say about them."""

    train: tuple  # (x, y)
    validation: tuple | None
    test: tuple | None
    num_classes: int
    source: str  # "MNIST" or the file's path
    validation_from: str | None  # how the validation split was made; None without one


def read_mnist(args: argparse.Namespace) -> SolveData:
    from jax_softmax.data import load_mnist

    data = load_mnist(args.data_dir, deskew=args.deskew)
    return SolveData(
        tuple(data.train),
        tuple(data.validation),
        tuple(data.test),
        10,
        "MNIST",
        f"the last {len(data.validation.y)} of MNIST's {len(data.train.y) + len(data.validation.y)} "
        "training images",
    )


def read_features(path: str, path_given: bool) -> SolveData:
    """The splits in ``--features FILE.npz``, checked; the last 10% of the training rows
    held out for validation when a path needs choosing and the file has none."""
    arrays = _read_npz(path)
    splits = {name: _feature_split(arrays, path, name) for name in FEATURE_SPLITS}
    num_features = splits["train"][0].shape[1]
    for name, (x_key, _) in FEATURE_SPLITS.items():
        if splits[name] is not None and splits[name][0].shape[1] != num_features:
            raise CommandError(
                f"--features {path}: {x_key} has {splits[name][0].shape[1]} features per row, "
                f"x_train has {num_features}"
            )
    num_classes = _check_labels(path, splits)
    validation_from = None if splits["validation"] is None else "x_val, y_val in the file"
    if splits["validation"] is None and path_given:
        splits["train"], splits["validation"], validation_from = _hold_out(splits["train"], path, num_classes)
    return SolveData(
        splits["train"], splits["validation"], splits["test"], num_classes, path, validation_from
    )


def _read_npz(path: str) -> dict[str, Any]:
    """The arrays of an ``.npz`` file, read without pickling; a CommandError naming what is wrong."""
    import zipfile

    import numpy as np

    where = f"--features {path}"
    if not os.path.exists(path):
        raise CommandError(f"{where}: no such file")
    if os.path.isdir(path):
        raise CommandError(f"{where}: is a directory, not an .npz file")
    unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile)
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
        if magic == b"\x93NUMPY":
            raise CommandError(
                f"{where}: holds one array (.npy), not an .npz archive of x_train, y_train, ..."
            )
        if magic[:4] != b"PK\x03\x04":
            raise CommandError(f"{where}: not an .npz file (not a zip archive; write it with numpy.savez)")
        archive = np.load(path, allow_pickle=False)
    except unreadable as e:
        raise CommandError(f"{where}: not a readable .npz file ({e})") from None
    with archive:
        missing = [key for key in FEATURE_SPLITS["train"] if key not in archive.files]
        if missing:
            raise CommandError(
                f"{where}: has no {' and no '.join(missing)} (it holds: "
                f"{', '.join(archive.files) or 'nothing'}); expected x_train, y_train and optionally "
                "x_val, y_val, x_test, y_test"
            )
        arrays = {}
        for key in (key for pair in FEATURE_SPLITS.values() for key in pair):
            if key in archive.files:
                try:
                    arrays[key] = archive[key]
                except unreadable as e:
                    raise CommandError(f"{where}: {key} cannot be read ({e})") from None
    return arrays


def _feature_split(arrays: dict, path: str, name: str) -> tuple | None:
    """``(x, y)`` of one split, shapes and values checked, or ``None`` when the file has neither."""
    from jax_softmax._validation import check_finite

    x_key, y_key = FEATURE_SPLITS[name]
    if x_key not in arrays and y_key not in arrays:
        return None
    where = f"--features {path}"
    if x_key not in arrays or y_key not in arrays:
        given, lacking = (x_key, y_key) if x_key in arrays else (y_key, x_key)
        raise CommandError(f"{where}: has {given} but no {lacking}; give both or neither")
    x, y = arrays[x_key], arrays[y_key]
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise CommandError(
            f"{where}: {x_key} must be [n, num_features] with n, num_features >= 1, got {x.shape}"
        )
    if x.dtype.kind not in "fiu":
        raise CommandError(f"{where}: {x_key} must hold real numbers, got dtype {x.dtype}")
    if y.shape != (len(x),):
        raise CommandError(
            f"{where}: {y_key} must have shape ({len(x)},), one label per row of {x_key}, got {y.shape}"
        )
    if y.dtype.kind not in "iu":
        raise CommandError(f"{where}: {y_key} must hold integer class labels 0, 1, ..., got dtype {y.dtype}")
    try:
        check_finite(x, x_key)
    except ValueError as e:
        raise CommandError(f"{where}: {e}") from None
    return x, y


def _hold_out(train: tuple, path: str, num_classes: int) -> tuple[tuple, tuple, str]:
    """The training rows split into training and validation: the last 10% validate."""
    import numpy as np

    x, y = train
    held = int(len(y) * HOLD_OUT_FRACTION)
    if held < 1:
        raise CommandError(
            f"--features {path}: x_train has {len(y)} rows, too few to hold out 10% for choosing among "
            "strengths; add x_val and y_val to the file, or give one --C"
        )
    cut = len(y) - held
    sorted_hint = "are the rows sorted by label? shuffle them, or add x_val and y_val to the file"
    kept = len(np.unique(y[:cut]))
    if kept < num_classes:
        raise CommandError(
            f"--features {path}: holding out the last {held} training rows for validation leaves "
            f"{num_classes - kept} of the {num_classes} classes without training rows; {sorted_hint}"
        )
    held_classes = len(np.unique(y[cut:]))
    if held_classes < num_classes:
        print(
            f"{PROG} solve: warning: the last {held} training rows, held out for validation, hold "
            f"{held_classes} of the {num_classes} classes; {sorted_hint}",
            file=sys.stderr,
        )
    note = f"the last {held} of the {len(y)} training rows (the file has no x_val, y_val)"
    return (x[:cut], y[:cut]), (x[cut:], y[cut:]), note


def _check_labels(path: str, splits: dict) -> int:
    """The number of classes, ``K``: labels must be 0 to K-1, each class among the training rows."""
    import numpy as np

    where = f"--features {path}"
    for name, split in splits.items():
        if split is not None and int(split[1].min()) < 0:
            key = FEATURE_SPLITS[name][1]
            raise CommandError(f"{where}: {key} holds the label {int(split[1].min())}; labels are 0, 1, ...")
    num_classes = 1 + max(int(split[1].max()) for split in splits.values() if split is not None)
    trained = np.unique(splits["train"][1])
    if len(trained) < 2:
        raise CommandError(
            f"{where}: y_train holds only class {int(trained[0])}; at least two classes are needed"
        )
    if len(trained) < num_classes:
        gaps = np.flatnonzero(trained != np.arange(len(trained)))
        first = int(gaps[0]) if len(gaps) else len(trained)
        raise CommandError(
            f"{where}: labels must be 0 to K-1 with every class in y_train; {num_classes - len(trained)} "
            f"of the {num_classes} classes are not (the first: class {first})"
        )
    return num_classes
