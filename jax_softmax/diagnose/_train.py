"""The reproduction of the question's arithmetic: its softmax forms, and training in compiled chunks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jax_softmax._validation import check_dtype_enabled
from jax_softmax.diagnose._runs import DEFAULT_CONFIG, SOFTMAXES, DiagnoseConfig, TrainingLog, Variant
from jax_softmax.diagnose._verdict import classify_collapse
from jax_softmax.gradients import manual_grad
from jax_softmax.model import PRECISION, Params, logits, predict


def _check_pixels(name: str, split: Sequence[ArrayLike], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if len(split) != 2:
        raise ValueError(f"{name} must be an (x, y) pair, got {len(split)} items")
    x, y = np.asarray(split[0]), np.asarray(split[1])
    if x.dtype != np.uint8:
        raise TypeError(f"{name} x must hold raw uint8 pixels (0-255), got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} x must be [n, num_features] with n >= 1, got shape {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"{name} y must have shape ({x.shape[0]},) to match x, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name} y must hold integer labels, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"{name} y must be in [0, {num_classes}), got labels from {y.min()} to {y.max()}")
    return x, y.astype(np.int32)


@partial(jax.jit, static_argnames=("num_features", "num_examples", "config", "dtype"))
def initial_params_and_orders(
    seed: jax.Array, *, num_features: int, num_examples: int, config: DiagnoseConfig, dtype: str
):
    """The initial parameters, and the examples of every step ``[epochs * num_batches, batch_size]``.

    One compiled program, so that a run compiles little besides its training scan.
    The examples are in a fresh random order each epoch; the remainder batch of an
    epoch is dropped.
    """
    init_key, order_key = jax.random.split(jax.random.key(seed))
    shape = (num_features, config.num_classes)
    if config.init_scale > 0:  # the draw of init_params, whose argument checks cannot run under jit
        w = (config.init_scale * jax.random.normal(init_key, shape, dtype)).astype(dtype)
    else:
        w = jnp.zeros(shape, dtype)
    params = Params(w=w, b=jnp.zeros((config.num_classes,), dtype))
    # Each epoch's order sorts the examples by random 32-bit keys: the shuffle of
    # jax.random.permutation in a single round, which compiles several times faster.
    keys = jax.random.bits(order_key, (config.epochs, num_examples), jnp.uint32)
    num_batches = num_examples // config.batch_size
    orders = jnp.argsort(keys, axis=1)[:, : num_batches * config.batch_size]
    return params, orders.reshape(-1, config.batch_size).astype(jnp.int32)


@jax.jit
def _val_correct(params: Params, x: jax.Array, y: jax.Array, divisor: jax.Array) -> jax.Array:
    """How many validation examples ``params`` classifies correctly (int32)."""
    return jnp.sum(predict(params, x.astype(params.w.dtype) / divisor) == y, dtype=jnp.int32)


def _naive_softmax(z: jax.Array, y: jax.Array):
    """What a hand-written program does: ``exp(z) / sum(exp(z))`` with no shift, then the log of it."""
    e = jnp.exp(z)
    probs = e / jnp.sum(e, axis=1, keepdims=True)
    true_prob = jnp.take_along_axis(probs, y[:, None], axis=1)[:, 0]
    flags = (
        jnp.any(jnp.isinf(e)),
        jnp.sum(true_prob == 0, dtype=jnp.int32),
        jnp.any(jnp.all(e == 0, axis=1)),
    )
    return probs, jnp.mean(jnp.log(true_prob)), flags


def _shifted_softmax(z: jax.Array, y: jax.Array):
    """What a careful hand-written program does: ``exp(z - max z) / sum(exp(z - max z))``, then its log.

    No ``exp`` can overflow and the sum is at least 1, but a logit more than about 708
    (float64) or 87 (float32) below the largest still gives a probability of exactly 0.
    """
    e = jnp.exp(z - jnp.max(z, axis=1, keepdims=True))
    probs = e / jnp.sum(e, axis=1, keepdims=True)
    true_prob = jnp.take_along_axis(probs, y[:, None], axis=1)[:, 0]
    flags = (
        jnp.any(~jnp.isfinite(z)),
        jnp.sum(true_prob == 0, dtype=jnp.int32),
        jnp.any(jnp.all(e == 0, axis=1)),
    )
    return probs, jnp.mean(jnp.log(true_prob)), flags


def _stable_softmax(z: jax.Array, y: jax.Array):
    """``log_softmax``: the largest logit is subtracted before ``exp``, and no probability is logged."""
    log_probs = jax.nn.log_softmax(z, axis=1)
    log_likelihood = jnp.mean(jnp.take_along_axis(log_probs, y[:, None], axis=1))
    flags = (jnp.any(~jnp.isfinite(z)), jnp.array(0, jnp.int32), jnp.array(False))
    return jnp.exp(log_probs), log_likelihood, flags


SOFTMAX_FORMS = (_naive_softmax, _shifted_softmax, _stable_softmax)  # in the order of SOFTMAXES


@jax.jit
def _train_chunk(
    params: Params,
    x_train: jax.Array,
    y_train: jax.Array,
    orders: jax.Array,
    active: jax.Array,
    evaluate: jax.Array,
    x_val: jax.Array,
    y_val: jax.Array,
    divisor: jax.Array,
    lr: jax.Array,
    as_written: jax.Array,
    softmax: jax.Array,
) -> tuple[Params, dict[str, jax.Array]]:
    """A run of consecutive steps in one scan: the parameters after them, and each step's records.

    ``orders`` ``[num_steps, batch]`` holds the examples of each step; a step whose
    ``active`` is false leaves the parameters alone (it pads the last chunk). The
    switches are traced (``softmax`` is the index of the form in :data:`SOFTMAXES`), so
    every variant of one dtype shares one compiled program.
    """
    dtype = params.w.dtype
    num_classes = params.w.shape[1]

    def step(params: Params, inputs):
        idx, active_now, evaluate_now = inputs
        x = x_train[idx].astype(dtype) / divisor
        y = y_train[idx]
        onehot = jax.nn.one_hot(y, num_classes, dtype=dtype)
        z = logits(params, x)
        probs, log_likelihood, flags = jax.lax.switch(softmax, SOFTMAX_FORMS, z, y)
        new = _question_update(params, x, onehot, probs, as_written, lr)
        nll, slope = _instruments(params, new, x, y, z)
        val_correct = jax.lax.cond(
            evaluate_now,
            lambda p: _val_correct(p, x_val, y_val, divisor),
            lambda p: jnp.array(-1, jnp.int32),  # not measured
            new,
        )
        record = _record(new, z, log_likelihood, flags, nll, slope, val_correct)
        return jax.tree.map(lambda n, p: jnp.where(active_now, n, p), new, params), record

    return jax.lax.scan(step, params, (orders, active, evaluate))


def _question_update(
    params: Params, x: jax.Array, onehot: jax.Array, probs: jax.Array, as_written: jax.Array, lr: jax.Array
) -> Params:
    """One SGD step on the batch ``x`` ``[batch, num_features]``, its sign as written or corrected.

    The question's rule, ``w <- w - lr/|B| * sum_l x_l (onehot - P)``, subtracts the
    derivative of ``+log P``; the correct one subtracts that of ``-log P``, ``x_l (P - onehot)``.
    """
    batch = x.shape[0]
    delta = jnp.where(as_written, onehot - probs, probs - onehot)
    return Params(
        w=params.w - lr / batch * jnp.matmul(x.T, delta, precision=PRECISION),
        b=params.b - lr / batch * jnp.sum(delta, axis=0),
    )


def _instruments(
    params: Params, new: Params, x: jax.Array, y: jax.Array, z: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Computed stably whatever the variant does: each example's ``-log P(true class)`` ``[batch]``,
    and the slope of the loss along the step from ``params`` to ``new``, ``<grad, new - old>``."""
    nll = -jnp.take_along_axis(jax.nn.log_softmax(z, axis=1), y[:, None], axis=1)[:, 0]
    grad = manual_grad(params, x, y)
    slope = jnp.vdot(grad.w, new.w - params.w) + jnp.vdot(grad.b, new.b - params.b)
    return nll, slope


def _record(
    new: Params,
    z: jax.Array,
    log_likelihood: jax.Array,
    flags: tuple[jax.Array, jax.Array, jax.Array],
    nll: jax.Array,
    slope: jax.Array,
    val_correct: jax.Array,
) -> dict[str, jax.Array]:
    """One step's entries of the :class:`TrainingLog` fields, and ``val_correct`` (-1: not measured)."""
    exp_overflow, zero_true_probs, all_probs_zero = flags
    return {
        "log_likelihood": log_likelihood,
        "max_abs_logit": jnp.max(jnp.abs(z)),
        "worst_nll": jnp.max(nll),
        "loss": jnp.mean(nll),
        "slope": slope,
        "exp_overflow": exp_overflow,
        "true_prob_zero": zero_true_probs > 0,
        "zero_true_probs": zero_true_probs,
        "all_probs_zero": all_probs_zero,
        "params_finite": jnp.all(jnp.isfinite(new.w)) & jnp.all(jnp.isfinite(new.b)),
        "val_correct": val_correct,
    }


def train_variant(
    variant: Variant,
    train: Sequence[ArrayLike],
    validation: Sequence[ArrayLike],
    config: DiagnoseConfig = DEFAULT_CONFIG,
) -> TrainingLog:
    """Trains one variant and records every step.

    The steps run in compiled scans of ``config.log_every`` steps, each ending with a
    measurement of the validation accuracy (the first measures it at every step).
    When the run collapses, the chunks within ``config.log_every`` steps of the
    collapse are replayed from their saved starting parameters (the arithmetic is
    deterministic, so identically), measuring the validation accuracy at every step.
    The run stops early once every weight is NaN (see :class:`TrainingLog`).

    Args:
      variant: the switches.
      train: ``(x, y)``: raw pixels uint8 ``[n, num_features]``, integer labels ``[n]``.
      validation: ``(x, y)`` of the same form.
      config: the training setup.

    Returns:
      The :class:`TrainingLog`.

    Raises:
      ValueError, TypeError: for malformed data, naming it, or float64 without 64-bit JAX.
    """
    x_train, y_train, x_val, y_val = _check_inputs(variant, train, validation, config)
    dtype = jnp.dtype(variant.dtype)
    params, orders = initial_params_and_orders(
        config.seed,
        num_features=x_train.shape[1],
        num_examples=len(x_train),
        config=config,
        dtype=variant.dtype,
    )
    chunks = _Chunks.cut(np.asarray(orders), config.log_every)
    divisor = jnp.asarray(255.0 if variant.pixels == "scaled" else 1.0, dtype)
    data = (jnp.asarray(x_train), jnp.asarray(y_train))
    val = (jnp.asarray(x_val), jnp.asarray(y_val), divisor, jnp.asarray(config.lr, dtype))
    switches = (jnp.asarray(variant.sign == "as_written"), jnp.asarray(SOFTMAXES.index(variant.softmax)))

    def run(params: Params, c: int, evaluate: np.ndarray) -> tuple[Params, dict[str, jax.Array]]:
        return _train_chunk(params, *data, chunks.orders[c], chunks.active[c], evaluate, *val, *switches)

    initial_correct = int(_val_correct(params, val[0], val[1], divisor))
    starts, records = _run_until_all_nan(run, params, chunks)
    active = chunks.active[: len(records)]
    log = _log(records, active, initial_correct, len(y_val), chunks.num_steps)
    collapse = classify_collapse(log).collapse_step
    if collapse is not None:
        _replay_near(collapse, run, starts, records, active, log.num_steps)
        log = _log(records, active, initial_correct, len(y_val), chunks.num_steps)
    return log


def _check_inputs(
    variant: Variant, train: Sequence[ArrayLike], validation: Sequence[ArrayLike], config: DiagnoseConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The checks of :func:`train_variant`: ``(x_train, y_train, x_val, y_val)``, labels int32."""
    x_train, y_train = _check_pixels("train", train, config.num_classes)
    x_val, y_val = _check_pixels("validation", validation, config.num_classes)
    if x_val.shape[1] != x_train.shape[1]:
        raise ValueError(f"validation x has {x_val.shape[1]} features, expected {x_train.shape[1]}")
    if config.batch_size > len(x_train):
        raise ValueError(
            f"batch_size must be at most the {len(x_train)} training examples, got {config.batch_size}"
        )
    check_dtype_enabled(variant.dtype)
    return x_train, y_train, x_val, y_val


class _Chunks(NamedTuple):
    """A run's steps cut into chunks of ``log_every`` steps, one compiled scan each.

    Attributes:
      orders: the examples of each step, ``[num_chunks, log_every, batch_size]``; the last
        chunk is padded with example 0.
      active: false on the padding, bool ``[num_chunks, log_every]``.
      num_steps: the steps without the padding.
    """

    orders: np.ndarray
    active: np.ndarray
    num_steps: int

    @classmethod
    def cut(cls, orders: np.ndarray, log_every: int) -> _Chunks:
        """Cuts ``orders`` ``[num_steps, batch_size]`` into chunks of ``log_every`` steps."""
        num_steps, batch_size = orders.shape
        num_chunks = -(-num_steps // log_every)
        padded = np.zeros((num_chunks * log_every, batch_size), orders.dtype)
        padded[:num_steps] = orders
        active = np.arange(num_chunks * log_every) < num_steps
        return cls(
            padded.reshape(num_chunks, log_every, batch_size),
            active.reshape(num_chunks, log_every),
            num_steps,
        )

    def evaluate(self, c: int) -> np.ndarray:
        """The steps of chunk ``c`` that measure the validation accuracy, bool ``[log_every]``.

        Every step of the first chunk (for the start of a log-scale plot), else the last
        step of the chunk, or of the run in the last chunk.
        """
        if c == 0:
            return self.active[0]
        log_every = self.active.shape[1]
        evaluate = np.zeros(log_every, bool)
        evaluate[(self.num_steps - 1) % log_every if c == len(self.active) - 1 else -1] = True
        return evaluate


def _run_until_all_nan(
    run: Callable[[Params, int, np.ndarray], tuple[Params, dict[str, jax.Array]]],
    params: Params,
    chunks: _Chunks,
) -> tuple[list[Params], list[dict[str, jax.Array]]]:
    """Runs the chunks in turn: the parameters each started from, and each one's records.

    Once every weight is NaN, every later step computes NaN from NaN: the run stops there.
    """
    starts, records = [], []
    for c in range(len(chunks.active)):
        starts.append(params)
        params, chunk_records = run(params, c, chunks.evaluate(c))
        records.append(chunk_records)
        if all(np.isnan(np.asarray(p)).all() for p in params):
            break
    return starts, records


def _replay_near(
    collapse: int,
    run: Callable[[Params, int, np.ndarray], tuple[Params, dict[str, jax.Array]]],
    starts: list[Params],
    records: list[dict[str, jax.Array]],
    active: np.ndarray,
    num_steps: int,
) -> None:
    """Replaces the records of the chunks within ``log_every`` steps of the collapse by a replay
    that measures the validation accuracy at every step."""
    log_every = active.shape[1]
    first = max(collapse - log_every, 1)
    last = min(collapse + log_every, num_steps)
    for c in range((first - 1) // log_every, (last - 1) // log_every + 1):
        _, records[c] = run(starts[c], c, active[c])


def _log(
    chunks: list[dict[str, jax.Array]],
    active: np.ndarray,
    initial_correct: int,
    num_val: int,
    planned_steps: int,
) -> TrainingLog:
    """Joins the chunks' records, dropping the padding, into a :class:`TrainingLog`."""
    keep = active.reshape(-1)
    records = {name: np.concatenate([np.asarray(c[name]) for c in chunks])[keep] for name in chunks[0]}
    measured = records["val_correct"] >= 0
    val_steps = np.concatenate([[0], np.flatnonzero(measured) + 1])
    val_accuracy = np.concatenate([[initial_correct], records["val_correct"][measured]]) / num_val
    per_step = {
        name: value.astype(np.float64) if value.dtype.kind == "f" else value
        for name, value in records.items()
        if name != "val_correct"
    }
    return TrainingLog(
        **per_step, val_steps=val_steps, val_accuracy=val_accuracy, planned_steps=planned_steps
    )
