"""Stopping a training run without losing it, and continuing it from its directory.

``train --out DIR`` keeps ``DIR`` at the last completed epoch: ``metrics.jsonl``, the
checkpoint ``params.npz`` (whose metadata holds the training flags and the epoch) and,
for an optax optimizer, ``opt_state.npz``, the optimizer's state. That is all a run
needs to go on exactly where it stopped: the shuffling keys of the later epochs are
split from the seed, so ``fit(..., params=..., opt_state=..., start_epoch=k)`` gives
the same parameters, bit for bit, as a run that was never stopped.

``opt_state.npz`` is an uncompressed ``.npz`` of the state's leaves, in
``jax.tree.leaves`` order (``leaf_0``, ``leaf_1``, ...), and a JSON string with the
epoch; nothing is pickled, and the tree's structure comes from the optimizer itself
on loading. It is written atomically, before the checkpoint, and both record their
epoch, so a mismatch between them is detected rather than trained on.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_softmax.checkpoint import load_params, read_checkpoint, write_atomically
from jax_softmax.data import Mnist
from jax_softmax.gradients import make_optimizer
from jax_softmax.model import Params
from jax_softmax.run_dir import METRICS_FILE, OPT_STATE_FILE, PARAMS_FILE, read_metrics
from jax_softmax.train import EpochMetrics

OPT_STATE_FORMAT = "jax-softmax-opt-state/1"


class ResumeError(ValueError):
    """A run directory cannot be continued as asked."""


def save_opt_state(path: str | os.PathLike, opt_state: optax.OptState, epoch: int) -> Path:
    """Saves an optimizer's state after ``epoch`` to an ``.npz`` file, atomically.

    Args:
      path: the file to write (conventionally ``DIR/opt_state.npz``).
      opt_state: the optax state, a pytree of arrays.
      epoch: the number of completed epochs it belongs to.

    Returns:
      ``path`` as a ``Path``.
    """
    leaves = [np.array(leaf) for leaf in jax.tree.leaves(opt_state)]  # copies: the state is donated next
    metadata = json.dumps({"format": OPT_STATE_FORMAT, "epoch": int(epoch), "num_leaves": len(leaves)})
    arrays = {f"leaf_{i}": leaf for i, leaf in enumerate(leaves)}
    return write_atomically(path, lambda f: np.savez(f, metadata=np.array(metadata), **arrays))


def load_opt_state(path: str | os.PathLike, like: optax.OptState) -> tuple[optax.OptState, int]:
    """Loads a state written by :func:`save_opt_state` into the structure of ``like``.

    Args:
      path: the ``.npz`` file.
      like: a state of the same optimizer for the same parameters (from
        ``optimizer.init(params)``): its tree, shapes and dtypes must match.

    Returns:
      ``(opt_state, epoch)``.

    Raises:
      ResumeError: (a ``ValueError``) naming the file, when it is missing, corrupt,
        pickled, or does not fit ``like``.
    """
    path = Path(path)
    template, treedef = jax.tree.flatten(like)
    try:
        with np.load(path, allow_pickle=False) as archive:
            text = str(archive["metadata"])
            leaves = [archive[f"leaf_{i}"] for i in range(len(template))]
            names = set(archive.files)
    except FileNotFoundError:
        raise ResumeError(f"{path}: no such file; the run's optimizer state is missing") from None
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ResumeError(f"{path}: not an optimizer state this optimizer can use ({e})") from None
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as e:
        raise ResumeError(f"{path}: metadata is not valid JSON ({e})") from None
    if metadata.get("format") != OPT_STATE_FORMAT or names != {
        "metadata",
        *(f"leaf_{i}" for i in range(len(template))),
    }:
        raise ResumeError(f"{path}: not an optimizer state of {len(template)} arrays for this optimizer")
    for i, (leaf, expected) in enumerate(zip(leaves, template, strict=True)):
        if leaf.shape != np.shape(expected) or leaf.dtype != np.asarray(expected).dtype:
            raise ResumeError(
                f"{path}: array {i} is {leaf.dtype} {leaf.shape}, the optimizer needs "
                f"{np.asarray(expected).dtype} {np.shape(expected)}"
            )
    return jax.tree.unflatten(treedef, [jnp.asarray(leaf) for leaf in leaves]), int(metadata["epoch"])


class RunState(NamedTuple):
    """A run directory's last completed epoch, ready to train on from.

    Attributes:
      params: the parameters after ``epoch``.
      opt_state: the optimizer's state after ``epoch`` (``()`` for plain SGD).
      epoch: the number of completed epochs.
      metrics: the metrics of epochs ``1..epoch``.
      metadata: the checkpoint's metadata; ``metadata["training"]`` holds the flags.
    """

    params: Params
    opt_state: optax.OptState
    epoch: int
    metrics: list[EpochMetrics]
    metadata: dict[str, Any]


def read_run_metadata(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint metadata of a run directory that can be resumed.

    Reads only NumPy values, so it can run before 64-bit JAX is switched on for a
    float64 run.

    Raises:
      ResumeError: (a ``ValueError``) when ``run_dir`` holds no run, a run without its
        training flags, or a run that stopped on a non-finite value.
      CheckpointError: for a malformed checkpoint.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ResumeError(f"{run_dir}: no such directory")
    path = run_dir / PARAMS_FILE
    if not path.is_file():
        raise ResumeError(f"{run_dir} holds no {PARAMS_FILE}: no epoch of a run was completed there")
    metadata = read_checkpoint(path)[2]
    if not isinstance(metadata.get("training"), dict) or not isinstance(metadata.get("epoch"), int):
        raise ResumeError(f"{path}: not written by 'train --out' (no training flags or epoch in it)")
    stopped = metadata.get("stopped")
    if stopped is not None:
        raise ResumeError(
            f"{run_dir}: the run stopped on a non-finite value at epoch {stopped.get('epoch')}, "
            f"step {stopped.get('step')}; with the same flags it would do so again, so start a new run "
            "with a lower learning rate"
        )
    return metadata


def merge_flags(recorded: Mapping[str, Any], given: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The flags of a resumed run: the recorded ones, with ``epochs`` from ``given`` if there.

    Args:
      recorded: the flags the run was started with (``metadata["training"]``).
      given: the flags passed on resuming, by name (``batch_size``, ``lr``, ...).
      source: the run directory, for messages.

    Returns:
      The flags to train with.

    Raises:
      ResumeError: when a given flag other than ``epochs`` differs from the recorded one.
    """
    for name, value in given.items():
        if name == "epochs" or name not in recorded:
            continue
        if value != recorded[name]:
            flag = "--" + name.replace("_", "-")
            raise ResumeError(
                f"{flag} {value} conflicts with the run in {source} ({flag} {recorded[name]}); "
                f"leave {flag} out to continue that run, or train a new one with --out"
            )
    return {**recorded, **({"epochs": given["epochs"]} if "epochs" in given else {})}


def check_same_data(metadata: Mapping[str, Any], data: Mnist, source: str) -> None:
    """Refuses to resume a run on a data set other than the one it trained on.

    Raises:
      ResumeError: naming the recorded and the present data set or split sizes.
    """
    sizes = {name: len(split.y) for name, split in zip(data._fields, data, strict=True)}
    if metadata.get("data_set") != "MNIST" or metadata.get("split") != sizes:
        raise ResumeError(
            f"{source} was trained on {metadata.get('data_set')} with splits {metadata.get('split')}, "
            f"not on MNIST with splits {sizes}"
        )


def load_run(run_dir: str | os.PathLike, metadata: Mapping[str, Any]) -> RunState:
    """Loads what continuing a run needs: its parameters, optimizer state and metrics.

    A ``metrics.jsonl`` with lines beyond the checkpoint's epoch (the run was killed
    between the two writes) is cut back to the checkpoint's epoch, atomically.

    Args:
      run_dir: the run directory.
      metadata: its checkpoint metadata, from :func:`read_run_metadata`.

    Returns:
      The :class:`RunState`.

    Raises:
      ResumeError: (a ``ValueError``) when a file is missing or disagrees with the
        checkpoint's epoch.
      CheckpointError: for a malformed checkpoint.
    """
    run_dir = Path(run_dir)
    epoch = int(metadata["epoch"])
    params = load_params(run_dir / PARAMS_FILE).params
    flags = metadata["training"]
    optimizer = make_optimizer(flags["optimizer"], flags["lr"])
    opt_state: optax.OptState = ()
    if optimizer is not None:
        opt_state, state_epoch = load_opt_state(run_dir / OPT_STATE_FILE, optimizer.init(params))
        if state_epoch != epoch:
            raise ResumeError(
                f"{run_dir}: {OPT_STATE_FILE} is from epoch {state_epoch} but {PARAMS_FILE} from epoch "
                f"{epoch}; the run cannot be continued exactly"
            )
    metrics_path = run_dir / METRICS_FILE
    if not metrics_path.is_file():
        raise ResumeError(f"{run_dir}: {METRICS_FILE} is missing")
    metrics = read_metrics(metrics_path)
    if [m.epoch for m in metrics[:epoch]] != list(range(1, epoch + 1)):
        raise ResumeError(
            f"{metrics_path}: holds epochs {[m.epoch for m in metrics]}, expected 1 to {epoch} "
            f"as in {PARAMS_FILE}"
        )
    if len(metrics) > epoch:
        kept = metrics_path.read_text(encoding="utf-8").split("\n")[:epoch]
        write_atomically(metrics_path, lambda f: f.write("".join(line + "\n" for line in kept).encode()))
    return RunState(params, opt_state, epoch, metrics[:epoch], dict(metadata))


def describe_flags(flags: Mapping[str, Any], names: Sequence[str]) -> str:
    """``--batch-size 200 --lr 0.5 ...``: the flags ``names`` as a command line would give them."""

    def show(value: Any) -> str:
        return f"{value:g}" if isinstance(value, float) and math.isfinite(value) else str(value)

    return " ".join(f"--{name.replace('_', '-')} {show(flags[name])}" for name in names if name in flags)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Holds Ctrl-C (SIGINT) back while the block runs, then delivers it.

    Writing one epoch to a run directory takes several files; an interrupt between
    them would leave the directory describing two different epochs. Inside the block
    a SIGINT is only recorded; when the block ends, the previous handler gets it (by
    default, ``KeyboardInterrupt`` is raised there). Outside the main thread, where
    signal handlers cannot be set, the block runs unprotected.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received and callable(previous):
        previous(signal.SIGINT, None)
