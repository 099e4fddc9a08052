"""A training run's directory: per-epoch metrics, the checkpoint, and the pictures.

``train --out DIR`` fills it through these functions::

    DIR/metrics.jsonl   one JSON object per epoch, appended and synced as training goes
    DIR/params.npz      the parameters after the last completed epoch, with metadata and,
                        for an optax optimizer, its state after the same epoch
    DIR/curves.png      loss and accuracy against epoch
    DIR/weights.png     the ten weight templates
    DIR/confusion.png   the test-set confusion matrix
    DIR/.lock           held by the process writing the run (see :func:`lock_run`)

:func:`epoch_writer` returns the callback that :func:`fit` calls after each epoch:
it appends the metrics line, then replaces the checkpoint in one rename. The
checkpoint is the commit point: whatever stops the run, and whenever, ``params.npz``
holds one complete epoch (parameters and optimizer state together), and
``metrics.jsonl`` holds that epoch's lines, plus at most one more (whole or cut off)
that :func:`jax_softmax.runs._resume.load_run` cuts away.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jax_softmax import plots
from jax_softmax.data import Mnist, Split
from jax_softmax.evaluation import confusion_matrix
from jax_softmax.model import Params, predict
from jax_softmax.runs.checkpoint import PIXEL_DIVISOR, save_params
from jax_softmax.storage import remove_temporaries, write_atomically
from jax_softmax.train import EpochMetrics

METRICS_FILE = "metrics.jsonl"
PARAMS_FILE = "params.npz"
CURVES_FILE = "curves.png"
WEIGHTS_FILE = "weights.png"
CONFUSION_FILE = "confusion.png"
RUN_FILES = (METRICS_FILE, PARAMS_FILE, CURVES_FILE, WEIGHTS_FILE, CONFUSION_FILE)
# Where earlier versions kept the optimizer's state; removed with the run's files.
OPT_STATE_FILE = "opt_state.npz"
LOCK_FILE = ".lock"

IMAGE_SHAPE = (28, 28)


class RunExistsError(FileExistsError):
    """The output directory already holds a run."""


class RunInUseError(RuntimeError):
    """Another process is writing the run directory."""


class RunWriteError(OSError):
    """A file of the run directory could not be written (disk full, permissions, ...)."""


class RunLock:
    """An exclusive lock on a run directory, held until :meth:`release` (or the process ends).

    The lock is ``flock`` on ``DIR/.lock``, which the kernel releases when its holder
    exits, however it exits: a killed run leaves at most an unlocked file, which blocks
    nothing. The file holds the holder's process id, for messages; :meth:`release`
    removes it.
    """

    def __init__(self, fd: int | None, path: Path):
        self._fd = fd
        self.path = path

    def release(self) -> None:
        if self._fd is not None:
            # Removed while still locked: a process that opened the file just before takes
            # the lock of a file no longer there, sees that, and tries again.
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def lock_run(out_dir: str | os.PathLike) -> RunLock:
    """Takes the run directory's writer lock, or says which process holds it.

    Creating the lock file is also the first write to ``out_dir``, so an unwritable
    directory is found here, before any training.

    Args:
      out_dir: an existing directory.

    Returns:
      The held :class:`RunLock`. Where ``flock`` does not exist (Windows), a lock that
      holds nothing.

    Raises:
      RunInUseError: another live process holds the lock; the message names its
        process id and the directory.
      OSError: the lock file cannot be created or written.
    """
    out_dir = Path(out_dir)
    path = out_dir / LOCK_FILE
    try:
        import fcntl
    except ImportError:  # not POSIX
        return RunLock(None, path)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                break
            os.close(fd)  # the holder removed the file as we locked it: lock the new one
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunInUseError(
                f"{out_dir} is in use: process {holder} is writing a run there; wait for it to end "
                "(or stop it), or choose another directory"
            ) from None
        except BaseException:
            os.close(fd)
            raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    return RunLock(fd, path)


def remove_temp_files(out_dir: str | os.PathLike) -> list[Path]:
    """Removes the temporary files of the run's own files that saves killed midway left.

    Call while holding the directory's lock, so that no live save's file is taken.

    Returns:
      The paths removed.
    """
    return remove_temporaries(out_dir, (*RUN_FILES, OPT_STATE_FILE))


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
    out_dir = make_run_dir(out_dir)
    present = [name for name in (*RUN_FILES, OPT_STATE_FILE) if (out_dir / name).exists()]
    if present and not overwrite:
        raise RunExistsError(f"{out_dir} already holds a run ({', '.join(present)})")
    for name in present:
        (out_dir / name).unlink()
    return out_dir


def make_run_dir(out_dir: str | os.PathLike) -> Path:
    """Creates ``out_dir`` with its parents if missing; refuses a file.

    Raises:
      NotADirectoryError: ``out_dir`` is a file.
      OSError: it cannot be created.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir}: exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
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
        "preprocessing": ["deskew"] if flags.get("deskew") else [],
        "training": dict(flags),
    }


def epoch_writer(out_dir: str | os.PathLike, metadata: Mapping[str, Any]) -> Callable[..., None]:
    """The per-epoch callback for :func:`fit` that keeps ``out_dir`` up to date.

    Args:
      out_dir: a directory made by :func:`start_run`.
      metadata: checkpoint metadata (see :func:`run_metadata`); each save adds
        ``epoch``, the number of the epoch just completed.

    Returns:
      ``callback(metrics, params, opt_state=())``: appends ``metrics`` to
      ``metrics.jsonl``, then saves ``params`` and ``opt_state`` together to
      ``params.npz`` (atomically). It serves as ``fit``'s ``callback`` and as its
      ``checkpoint_callback``. It raises :class:`RunWriteError` (an ``OSError``)
      naming the file it could not write and the epoch the directory still holds.
    """
    out_dir = Path(out_dir)
    metadata = dict(metadata)

    def write_epoch(metrics: EpochMetrics, params: Params, opt_state: Any = ()) -> None:
        for path, write in (
            (out_dir / METRICS_FILE, lambda: append_metrics(out_dir / METRICS_FILE, metrics)),
            (
                out_dir / PARAMS_FILE,
                lambda: save_params(
                    out_dir / PARAMS_FILE, params, {**metadata, "epoch": metrics.epoch}, opt_state=opt_state
                ),
            ),
        ):
            try:
                write()
            except OSError as e:
                kept = metrics.epoch - 1
                holds = f"epoch {kept}, the last saved" if kept else "no completed epoch"
                raise RunWriteError(
                    f"could not write {path} ({e.strerror or e}); {out_dir} holds {holds}"
                ) from None

    return write_epoch


def cut_metrics(path: str | os.PathLike, epoch: int) -> str | None:
    """Cuts ``metrics.jsonl`` back to its first ``epoch`` lines, atomically, if it holds more.

    Lines beyond the checkpoint's epoch, or a last line cut off mid-write, are what a
    run stopped between its two writes leaves; training on from the checkpoint would
    append to them.

    Returns:
      A sentence saying what was cut, or ``None`` when nothing was.

    Raises:
      ValueError: the file holds fewer than ``epoch`` whole lines.
    """
    path = Path(path)
    data = path.read_bytes()
    lines = data.split(b"\n")
    whole, tail = lines[:-1], lines[-1]
    if len(whole) < epoch:
        raise ValueError(f"{path}: holds {len(whole)} complete epochs, the checkpoint {epoch}")
    if len(whole) == epoch and not tail:
        return None
    kept = b"".join(line + b"\n" for line in whole[:epoch])
    write_atomically(path, lambda f: f.write(kept))
    parts = []
    if len(whole) > epoch:
        parts.append(f"{len(whole) - epoch} epoch line{'s' * (len(whole) - epoch != 1)} beyond it")
    if tail:
        parts.append(f"a last line cut off mid-write ({len(tail)} bytes)")
    removed = " and ".join(parts)
    return f"{path}: cut back to epoch {epoch}, the last saved in {PARAMS_FILE} (removed {removed})"


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
