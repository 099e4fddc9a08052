"""Hyperparameter sweeps: a grid of models trained together in one compiled program.

A softmax-regression model is too small to keep a machine busy, so :func:`sweep`
trains every point of a grid of learning rates, L2 strengths and seeds at once.
``jax.vmap`` maps :func:`jax_softmax.train.train_epoch`, the same pure function that
:func:`jax_softmax.fit` compiles for one model, over the parameters and over the
hyperparameters that do not change any shape; each member therefore takes exactly
the steps ``fit`` takes with the same settings, and its result equals ``fit``'s to
float rounding.

How the mini-batches are shared. As in ``fit``, a seed seeds both the initial
weights and the order of the examples. The map is nested: the outer ``vmap`` runs
over the seeds, each with its own permutation of the training set, and the inner one
over the ``(learning rate, L2)`` pairs, which receive the key unmapped, so the
permutation and the gathering of each batch happen once per seed and the models of
a seed share every mini-batch. Their forward and backward products become single
matrix products over all of them: ``[batch, 784] x [784, models * 10]``, not a loop
of small ones. Batch size changes shapes, so each batch size is a separate program,
run one after the other.

Selection uses the validation set only, after the last epoch: the highest
validation accuracy (or, with ``select="loss"``, the lowest validation loss). Ties
go to the lower validation loss (the higher accuracy when selecting by loss), then to
the configuration that comes first in the grid (batch sizes, learning rates, L2
strengths, seeds, each in the order given). The test set, if given, is evaluated
once, for the chosen model only. A member whose parameters or validation loss are
not finite, or whose last epoch's training loss is not, is marked diverged, has no
validation figures and is never chosen; the
members are independent inside the compiled program, so it changes no other member.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from jax_softmax._sweep_results import SweepResult as SweepResult
from jax_softmax._sweep_results import SweepRun as SweepRun
from jax_softmax._sweep_results import format_sweep as format_sweep
from jax_softmax._sweep_results import rank_runs as rank_runs
from jax_softmax._validation import check_dtype_enabled, check_split
from jax_softmax.config import (
    DEFAULT_INIT_SCALE,
    DEFAULT_SWEEP_BATCH_SIZES,
    DEFAULT_SWEEP_EPOCHS,
    DEFAULT_SWEEP_L2S,
    DEFAULT_SWEEP_LRS,
    DEFAULT_SWEEP_OPTIMIZER,
    DEFAULT_SWEEP_SEEDS,
    SelectBy,
    check_grid,
    check_int_values,
    check_sweep_settings,
)
from jax_softmax.config import log_range as log_range
from jax_softmax.config import parse_grid as parse_grid
from jax_softmax.evaluation import evaluate
from jax_softmax.gradients import GradMode, make_optimizer
from jax_softmax.model import Params, init_params
from jax_softmax.train import train_epoch

if TYPE_CHECKING:
    import optax


def _member_epoch(
    params: Params,
    opt_state,
    key: jax.Array,
    lr: jax.Array,
    l2: jax.Array,
    x: jax.Array,
    y: jax.Array,
    *,
    batch_size: int,
    grad: GradMode,
    optimizer: str,
):
    """One epoch of one member: ``fit``'s epoch with the learning rate and L2 traced."""
    transform = make_optimizer(optimizer, lr)
    return train_epoch(
        params, opt_state, key, x, y, lr, batch_size=batch_size, grad=grad, optimizer=transform, l2=l2
    )


@partial(jax.jit, static_argnames=("optimizer",))
def _grid_opt_state(params: Params, lr: jax.Array, *, optimizer: str) -> optax.OptState:
    """The optimizer state of every member, ``[seeds, configs, ...]``, as ``fit`` starts it."""
    if optimizer == "sgd":
        return ()
    return jax.vmap(jax.vmap(lambda p, r: make_optimizer(optimizer, r).init(p)))(params, lr)


_split_keys = jax.jit(jax.vmap(jax.random.split))


@functools.lru_cache(maxsize=16)
def _grid_epoch(batch_size: int, grad: GradMode, optimizer: str) -> Callable:
    """The jitted epoch of a ``[seeds, configs]`` grid: seeds own their batches, configs share them."""
    member = partial(_member_epoch, batch_size=batch_size, grad=grad, optimizer=optimizer)
    # Inner map: the (lr, l2) pairs of one seed, with the key, hence the batches, shared.
    configs = jax.vmap(member, in_axes=(0, 0, None, 0, 0, None, None))
    seeds = jax.vmap(configs, in_axes=(0, 0, 0, 0, 0, None, None))
    return jax.jit(seeds, donate_argnums=(0, 1))


@jax.jit
def _grid_evaluate(params: Params, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Validation loss, accuracy and whether the parameters are finite, each ``[seeds, configs]``."""
    loss, acc = jax.vmap(jax.vmap(evaluate, in_axes=(0, None, None)), in_axes=(0, None, None))(params, x, y)
    finite = jnp.all(jnp.isfinite(params.w), axis=(-2, -1)) & jnp.all(jnp.isfinite(params.b), axis=-1)
    return loss, acc, finite


def sweep(
    train: Sequence[ArrayLike],
    validation: Sequence[ArrayLike],
    test: Sequence[ArrayLike] | None = None,
    *,
    lrs: Sequence[float] = DEFAULT_SWEEP_LRS,
    l2s: Sequence[float] = DEFAULT_SWEEP_L2S,
    seeds: Sequence[int] = DEFAULT_SWEEP_SEEDS,
    batch_sizes: Sequence[int] = DEFAULT_SWEEP_BATCH_SIZES,
    epochs: int = DEFAULT_SWEEP_EPOCHS,
    grad: GradMode = "autodiff",
    optimizer: str = DEFAULT_SWEEP_OPTIMIZER,
    init_scale: float = DEFAULT_INIT_SCALE,
    dtype: DTypeLike = jnp.float32,
    num_classes: int = 10,
    select: SelectBy = "accuracy",
    callback: Callable[[int, int, float], None] | None = None,
) -> SweepResult:
    """Trains the grid ``batch_sizes x lrs x l2s x seeds`` and picks the best member.

    Every member is the model ``fit(train, validation, epochs=epochs, batch_size=...,
    lr=..., l2=..., seed=..., grad=grad, optimizer=optimizer, init_scale=init_scale,
    dtype=dtype)`` would train, to float rounding. For each batch size the
    ``len(seeds) * len(lrs) * len(l2s)`` members train in one compiled program per
    epoch (see the module docstring for how they share batches).

    Args:
      train: ``(x, y)``: inputs ``[n, num_features]`` float, labels ``[n]`` int.
      validation: ``(x, y)`` that chooses the best member.
      test: an optional ``(x, y)``, evaluated once, on the chosen member only.
      lrs: learning rates, finite and > 0.
      l2: strengths of the L2 penalty on the weights, finite and >= 0.
      seeds: seeds of the initial weights and of the order of the examples.
      batch_sizes: examples per step, each in ``[1, n]``.
      epochs: passes over the training set, the same for every member.
      grad: ``"autodiff"`` or ``"manual"``.
      optimizer: ``"sgd"`` or a name from :data:`jax_softmax.gradients.OPTIMIZERS`,
        built from each member's learning rate.
      init_scale: standard deviation of the initial weights (0 for zeros).
      dtype: floating dtype of the parameters and computation.
      num_classes: number of classes.
      select: ``"accuracy"`` (highest validation accuracy) or ``"loss"`` (lowest
        validation loss).
      callback: called as ``callback(batch_size, epoch, seconds)`` after each epoch
        of each batch size.

    Returns:
      A :class:`SweepResult`.

    Raises:
      ValueError, TypeError: for malformed data or grids, naming them.
    """
    check_sweep_settings(epochs=epochs, grad=grad, optimizer=optimizer, select=select, init_scale=init_scale)
    dtype = jnp.dtype(dtype)
    check_dtype_enabled(dtype)
    lrs = check_grid("lrs", lrs, positive=True)
    l2s = check_grid("l2s", l2s, positive=False)
    x_train, y_train = check_split("train", train, None)
    x_val, y_val = check_split("validation", validation, x_train.shape[1])
    if test is not None:
        x_test, y_test = check_split("test", test, x_train.shape[1])
    seeds = check_int_values("seeds", seeds, 0)
    batch_sizes = check_int_values("batch_sizes", batch_sizes, 1, len(x_train))

    start = time.perf_counter()
    x_train = jax.device_put(jnp.asarray(x_train, dtype))
    y_train = jax.device_put(jnp.asarray(y_train, jnp.int32))
    x_val = jax.device_put(jnp.asarray(x_val, dtype))
    y_val = jax.device_put(jnp.asarray(y_val, jnp.int32))
    configs = list(itertools.product(lrs, l2s))
    runs: list[SweepRun] = []
    compile_seconds = 0.0
    for batch_size in batch_sizes:
        batch_runs, seconds = _train_grid(
            x_train,
            y_train,
            x_val,
            y_val,
            configs,
            seeds,
            batch_size=batch_size,
            epochs=epochs,
            grad=grad,
            optimizer=optimizer,
            init_scale=init_scale,
            dtype=dtype,
            num_classes=num_classes,
            callback=callback,
        )
        runs.extend(batch_runs)
        compile_seconds += seconds

    ranked = _ranked_with_test_accuracy(runs, select, None if test is None else (x_test, y_test), dtype)
    best = ranked[0] if not ranked[0].diverged else None
    return SweepResult(
        runs=tuple(ranked),
        best=best,
        select=select,
        epochs=epochs,
        seconds=time.perf_counter() - start,
        compile_seconds=compile_seconds,
    )


def _ranked_with_test_accuracy(runs: list[SweepRun], select: SelectBy, test, dtype) -> list[SweepRun]:
    """The runs best first; the chosen one (if any did not diverge) with its test accuracy."""
    ranked = rank_runs(runs, select)
    if not ranked[0].diverged and test is not None:
        x_test, y_test = test
        _, test_acc = evaluate(ranked[0].params, jnp.asarray(x_test, dtype), jnp.asarray(y_test, jnp.int32))
        ranked[0] = dataclasses.replace(ranked[0], test_accuracy=float(test_acc))
    return ranked


def _train_grid(
    x_train: jax.Array,
    y_train: jax.Array,
    x_val: jax.Array,
    y_val: jax.Array,
    configs: list[tuple[float, float]],
    seeds: tuple[int, ...],
    *,
    batch_size: int,
    epochs: int,
    grad: GradMode,
    optimizer: str,
    init_scale: float,
    dtype: np.dtype,
    num_classes: int,
    callback: Callable[[int, int, float], None] | None,
) -> tuple[list[SweepRun], float]:
    """Trains one batch size's ``[seeds, configs]`` grid; returns its runs in grid order
    (learning rate, L2, seed) and the seconds spent compiling."""
    num_seeds = len(seeds)
    # fit's keys: seed -> (initialisation, shuffling), and one split of the shuffling key per epoch.
    init_keys, shuffle_keys = (
        jnp.stack(keys) for keys in zip(*(jax.random.split(jax.random.key(s)) for s in seeds), strict=True)
    )
    lr = jnp.asarray([[c[0] for c in configs]] * num_seeds, dtype)
    l2 = jnp.asarray([[c[1] for c in configs]] * num_seeds, dtype)
    by_seed = [
        init_params(k, x_train.shape[1], num_classes, scale=init_scale, dtype=dtype) for k in init_keys
    ]
    params = jax.tree.map(
        lambda *p: jnp.broadcast_to(jnp.stack(p)[:, None], (*lr.shape, *p[0].shape)), *by_seed
    )
    opt_state = _grid_opt_state(params, lr, optimizer=optimizer)

    start = time.perf_counter()
    epoch_fn = _grid_epoch(batch_size, grad, optimizer)
    compiled = epoch_fn.lower(params, opt_state, shuffle_keys, lr, l2, x_train, y_train).compile()
    _grid_evaluate.lower(params, x_val, y_val).compile()
    compile_seconds = time.perf_counter() - start

    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        keys = _split_keys(shuffle_keys)
        shuffle_keys, epoch_keys = keys[:, 0], keys[:, 1]
        params, opt_state, train_loss = compiled(params, opt_state, epoch_keys, lr, l2, x_train, y_train)
        if callback is not None:
            jax.block_until_ready(params)
            callback(batch_size, epoch, time.perf_counter() - start)
    val_loss, val_acc, finite = (np.asarray(a) for a in _grid_evaluate(params, x_val, y_val))
    train_loss = np.asarray(train_loss)

    runs = []
    for c, (lr_value, l2_value) in enumerate(configs):
        for s, seed in enumerate(seeds):
            diverged = not (finite[s, c] and np.isfinite(val_loss[s, c]) and np.isfinite(train_loss[s, c]))
            runs.append(
                SweepRun(
                    lr=lr_value,
                    l2=l2_value,
                    seed=seed,
                    batch_size=batch_size,
                    val_accuracy=math.nan if diverged else float(val_acc[s, c]),
                    val_loss=math.nan if diverged else float(val_loss[s, c]) + 0.0,  # no -0.0
                    train_loss=float(train_loss[s, c]),
                    diverged=diverged,
                    params=jax.tree.map(lambda p, s=s, c=c: p[s, c], params),
                )
            )
    return runs, compile_seconds
