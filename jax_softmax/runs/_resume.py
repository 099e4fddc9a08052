"""Stopping a training run without losing it, and continuing it from its directory.

``train --out DIR`` keeps ``DIR`` at the last completed epoch: ``metrics.jsonl`` and
the checkpoint ``params.npz``, whose metadata holds the training flags and the epoch
and which, for an optax optimizer, also holds the optimizer's state after that
epoch. That is all a run needs to go on exactly where it stopped: the shuffling
keys of the later epochs are split from the seed, so ``fit(..., params=...,
opt_state=..., start_epoch=k)`` gives the same parameters, bit for bit, as a run
that was never stopped.

Parameters and optimizer state are one file, replaced in one rename after the
epoch's metrics line is appended, so a kill at any moment (SIGKILL included) leaves
one consistent epoch: :func:`load_run` trusts the checkpoint and cuts
``metrics.jsonl`` back to it. SIGINT and SIGTERM are held back while an epoch is
written (:func:`jax_softmax._process.interrupts_deferred`) and then raise
:class:`jax_softmax._process.Interrupted`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jax_softmax.data import Mnist
from jax_softmax.gradients import make_optimizer
from jax_softmax.model import Params
from jax_softmax.runs._directory import METRICS_FILE, PARAMS_FILE, cut_metrics, read_metrics
from jax_softmax.runs.checkpoint import CheckpointError, load_params, read_checkpoint, read_opt_state_leaves
from jax_softmax.train import EpochMetrics

if TYPE_CHECKING:
    import optax  # for annotations only: resuming a plain SGD run needs no optax


class ResumeError(ValueError):
    """A run directory cannot be continued as asked."""


def read_opt_state(path: str | os.PathLike, like: optax.OptState) -> optax.OptState:
    """Loads the optimizer state stored in a checkpoint into the structure of ``like``.

    Args:
      path: a checkpoint written by ``save_params(..., opt_state=...)``.
      like: a state of the same optimizer for the same parameters (from
        ``optimizer.init(params)``): its tree, shapes and dtypes must match.

    Returns:
      The state.

    Raises:
      ResumeError: (a ``ValueError``) naming the file, when the stored state does not
        fit ``like``.
      CheckpointError: for a missing or damaged checkpoint.
    """
    path = Path(path)
    template, treedef = jax.tree.flatten(like)
    leaves = read_opt_state_leaves(path)
    if len(leaves) != len(template):
        raise ResumeError(
            f"{path}: holds an optimizer state of {len(leaves)} arrays, this optimizer needs "
            f"{len(template)}; the run cannot be continued exactly"
        )
    for i, (leaf, expected) in enumerate(zip(leaves, template, strict=True)):
        if leaf.shape != np.shape(expected) or leaf.dtype != np.asarray(expected).dtype:
            raise ResumeError(
                f"{path}: array {i} is {leaf.dtype} {leaf.shape}, the optimizer needs "
                f"{np.asarray(expected).dtype} {np.shape(expected)}"
            )
    return jax.tree.unflatten(treedef, [jnp.asarray(leaf) for leaf in leaves])


class RunState(NamedTuple):
    """A run directory's last completed epoch, ready to train on from.

    Attributes:
      params: the parameters after ``epoch``.
      opt_state: the optimizer's state after ``epoch`` (``()`` for plain SGD).
      epoch: the number of completed epochs.
      metrics: the metrics of epochs ``1..epoch``.
      metadata: the checkpoint's metadata; ``metadata["training"]`` holds the flags.
      repairs: sentences saying what loading cut away to reach a consistent epoch.
    """

    params: Params
    opt_state: optax.OptState
    epoch: int
    metrics: list[EpochMetrics]
    metadata: dict[str, Any]
    repairs: tuple[str, ...] = ()


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
    training = metadata.get("training")
    if (
        not isinstance(training, dict)
        or not isinstance(metadata.get("epoch"), int)
        or not isinstance(training.get("optimizer"), str)
        or not isinstance(training.get("lr"), (int, float))
        or not isinstance(training.get("epochs"), int)
    ):
        raise ResumeError(f"{path}: not written by 'train --out' (no training flags or epoch in it)")
    stopped = metadata.get("stopped")
    if stopped is not None:
        stopped = stopped if isinstance(stopped, dict) else {}
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
    was = {"deskew": False, **recorded}  # a run recorded before deskewing existed did not deskew
    for name, value in given.items():
        if name == "epochs" or name not in was:
            continue
        if value != was[name]:
            flag = "--" + name.replace("_", "-")
            raise ResumeError(
                f"{flag} {value} conflicts with the run in {source} ({flag} {was[name]}); "
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


def load_run(run_dir: str | os.PathLike, metadata: Mapping[str, Any], *, repair: bool = True) -> RunState:
    """Loads what continuing a run needs: its parameters, optimizer state and metrics.

    The checkpoint ``params.npz`` is the run's last consistent epoch. ``metrics.jsonl``
    lines beyond it, or a last line cut off mid-write (what a run stopped between its
    two writes leaves), are cut away, atomically, and said so in ``repairs``.

    Args:
      run_dir: the run directory; hold its lock (:func:`jax_softmax.runs._directory.lock_run`).
      metadata: its checkpoint metadata, from :func:`read_run_metadata`.
      repair: cut ``metrics.jsonl`` back in place; ``False`` only reads it (the
        processes of a multi-process run other than the writer).

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
    try:
        optimizer = make_optimizer(flags["optimizer"], flags["lr"])
    except ValueError as e:
        raise CheckpointError(f"{run_dir / PARAMS_FILE}: {e}") from None
    opt_state: optax.OptState = ()
    if optimizer is not None:
        opt_state = read_opt_state(run_dir / PARAMS_FILE, optimizer.init(params))
    metrics_path = run_dir / METRICS_FILE
    if not metrics_path.is_file():
        raise ResumeError(f"{run_dir}: {METRICS_FILE} is missing")
    repaired = None
    if repair:
        try:
            repaired = cut_metrics(metrics_path, epoch)
        except ValueError as e:
            raise ResumeError(f"{e}; the run's metrics are lost") from None
    metrics = read_metrics(metrics_path)[:epoch]
    if [m.epoch for m in metrics] != list(range(1, epoch + 1)):
        raise ResumeError(
            f"{metrics_path}: holds epochs {[m.epoch for m in metrics]}, expected 1 to {epoch} "
            f"as in {PARAMS_FILE}"
        )
    return RunState(params, opt_state, epoch, metrics, dict(metadata), (repaired,) if repaired else ())
