"""A training run's directory: per-epoch metrics, the checkpoint, and the pictures.

``train --out DIR`` fills it through these functions::

    DIR/metrics.jsonl   one JSON object per epoch, appended and synced as training goes
    DIR/params.npz      the parameters after the last completed epoch, with metadata
    DIR/opt_state.npz   an optax optimizer's state after that epoch, for --resume
    DIR/curves.png      loss and accuracy against epoch
    DIR/weights.png     the ten weight templates
    DIR/confusion.png   the test-set confusion matrix

:func:`epoch_writer` returns the ``callback(metrics, params)`` that :func:`fit`
calls after each epoch: it appends the metrics line and saves the checkpoint, so
the directory always describes the last completed epoch, whatever stops the run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jax_softmax import plots
from jax_softmax.checkpoint import save_params
from jax_softmax.data import Mnist, Split
from jax_softmax.evaluation import confusion_matrix
from jax_softmax.model import Params, predict
from jax_softmax.train import EpochMetrics

METRICS_FILE = "metrics.jsonl"
PARAMS_FILE = "params.npz"
CURVES_FILE = "curves.png"
WEIGHTS_FILE = "weights.png"
CONFUSION_FILE = "confusion.png"
RUN_FILES = (METRICS_FILE, PARAMS_FILE, CURVES_FILE, WEIGHTS_FILE, CONFUSION_FILE)
# The optimizer's state, for --resume (jax_softmax.resume); only optax optimizers have one.
OPT_STATE_FILE = "opt_state.npz"

IMAGE_SHAPE = (28, 28)
PIXEL_DIVISOR = 255.0  # inputs are uint8 pixels divided by this, in [0, 1]


class RunExistsError(FileExistsError):
    """The output directory already holds a run."""


def start_run(out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Creates the run directory, refusing to mix a new run into an old one.

    Args:
      out_dir: the directory; created with its parents if missing.
      overwrite: remove the files of a run already there instead of refusing.

    Returns:
      ``out_dir`` as a ``Path``.

    Raises:
      RunExistsError: (a ``FileExistsError``) ``out_dir`` holds run files and
        ``overwrite`` is false.
      NotADirectoryError: ``out_dir`` is a file.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir}: exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    present = [name for name in (*RUN_FILES, OPT_STATE_FILE) if (out_dir / name).exists()]
    if present and not overwrite:
        raise RunExistsError(f"{out_dir} already holds a run ({', '.join(present)})")
    for name in present:
        (out_dir / name).unlink()
    return out_dir


def append_metrics(path: str | os.PathLike, metrics: EpochMetrics) -> None:
    """Appends one epoch as a JSON line and syncs it to disk.

    NaN (no validation set) is written as ``null``, so every line is strict JSON.
    """
    record = {
        k: (None if isinstance(v, float) and math.isnan(v) else v)
        for k, v in dataclasses.asdict(metrics).items()
    }
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, allow_nan=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics(path: str | os.PathLike) -> list[EpochMetrics]:
    """Reads a ``metrics.jsonl`` back.

    A last line without its newline is the trace of a write that was cut off, and is
    skipped; any other malformed line is an error.

    Returns:
      The epochs' metrics, in file order (``null`` read back as NaN).

    Raises:
      ValueError: naming the file and line, for a malformed line.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines[-1]:  # cut off mid-write
        lines = lines[:-1]
    fields = [f.name for f in dataclasses.fields(EpochMetrics)]
    epochs = []
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        try:
            record = json.loads(line)
            epochs.append(
                EpochMetrics(
                    epoch=int(record["epoch"]),
                    **{
                        k: math.nan if record[k] is None else float(record[k]) for k in fields if k != "epoch"
                    },
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}, line {number}: not an epoch record ({e})") from None
    return epochs


def run_metadata(flags: Mapping[str, Any], data: Mnist) -> dict[str, Any]:
    """The checkpoint metadata of a run on MNIST.

    Args:
      flags: the training settings (epochs, batch size, learning rate, ...), JSON values.
      data: the data set the run trains on (only the split sizes are recorded).

    Returns:
      A JSON-serialisable dict: data set and split sizes, image shape, pixel
      scaling, and ``training`` holding ``flags``.
    """
    return {
        "data_set": "MNIST",
        "split": {name: len(split.y) for name, split in zip(data._fields, data, strict=True)},
        "image_shape": list(IMAGE_SHAPE),
        "pixel_divisor": PIXEL_DIVISOR,
        "training": dict(flags),
    }


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


def epoch_writer(
    out_dir: str | os.PathLike, metadata: Mapping[str, Any]
) -> Callable[[EpochMetrics, Params], None]:
    """The per-epoch callback for :func:`fit` that keeps ``out_dir`` up to date.

    Args:
      out_dir: a directory made by :func:`start_run`.
      metadata: checkpoint metadata (see :func:`run_metadata`); each save adds
        ``epoch``, the number of the epoch just completed.

    Returns:
      ``callback(metrics, params)``: appends ``metrics`` to ``metrics.jsonl`` and
      saves ``params`` to ``params.npz`` (atomically).
    """
    out_dir = Path(out_dir)
    metadata = dict(metadata)

    def write_epoch(metrics: EpochMetrics, params: Params) -> None:
        append_metrics(out_dir / METRICS_FILE, metrics)
        save_params(out_dir / PARAMS_FILE, params, {**metadata, "epoch": metrics.epoch})

    return write_epoch


def write_plots(
    out_dir: str | os.PathLike, epochs: Sequence[EpochMetrics], params: Params, test: Split
) -> list[Path]:
    """Writes ``curves.png``, ``weights.png`` and ``confusion.png`` into ``out_dir``.

    Args:
      out_dir: the run directory.
      epochs: the run's per-epoch metrics.
      params: the final parameters, ``w`` ``[784, num_classes]``.
      test: the test split, ``x`` ``[n, 784]`` and ``y`` ``[n]``, for the confusion
        matrix and the test accuracy drawn on the curves.

    Returns:
      The paths written.

    Raises:
      ImportError: when matplotlib is not installed (nothing is written).
    """
    plots.require_matplotlib()
    out_dir = Path(out_dir)
    confusion = confusion_matrix(test.y, np.asarray(predict(params, test.x)), params.w.shape[1])
    test_accuracy = float(np.trace(confusion) / confusion.sum())
    figures = {
        CURVES_FILE: plots.plot_curves(epochs, test_accuracy),
        WEIGHTS_FILE: plots.plot_weights(params, IMAGE_SHAPE),
        CONFUSION_FILE: plots.plot_confusion(confusion, "test set"),
    }
    return [plots.save_figure(fig, out_dir / name) for name, fig in figures.items()]
