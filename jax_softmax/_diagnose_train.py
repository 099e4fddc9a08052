"""The reproduction of the question's arithmetic: its softmax forms, and training in compiled chunks."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jax_softmax._diagnose_runs import DEFAULT_CONFIG, SOFTMAXES, DiagnoseConfig, TrainingLog, Variant
from jax_softmax._diagnose_verdict import classify_collapse
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
    batch = orders.shape[1]

    def step(params: Params, inputs):
        idx, active_now, evaluate_now = inputs
        x = x_train[idx].astype(dtype) / divisor
        y = y_train[idx]
        onehot = jax.nn.one_hot(y, num_classes, dtype=dtype)
        z = logits(params, x)
        probs, log_likelihood, (exp_overflow, zero_true_probs, all_probs_zero) = jax.lax.switch(
            softmax, SOFTMAX_FORMS, z, y
        )
        # The question's rule, w <- w - lr/|B| * sum_l x_l (delta - P), subtracts the
        # derivative of +log P; the correct one subtracts that of -log P.
        delta = jnp.where(as_written, onehot - probs, probs - onehot)
        new = Params(
            w=params.w - lr / batch * jnp.matmul(x.T, delta, precision=PRECISION),
            b=params.b - lr / batch * jnp.sum(delta, axis=0),
        )
        # Instruments, computed stably whatever the variant does.
        nll = -jnp.take_along_axis(jax.nn.log_softmax(z, axis=1), y[:, None], axis=1)[:, 0]
        grad = manual_grad(params, x, y)
        slope = jnp.vdot(grad.w, new.w - params.w) + jnp.vdot(grad.b, new.b - params.b)
        val_correct = jax.lax.cond(
            evaluate_now,
            lambda p: _val_correct(p, x_val, y_val, divisor),
            lambda p: jnp.array(-1, jnp.int32),  # not measured
            new,
        )
        record = {
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
        return jax.tree.map(lambda n, p: jnp.where(active_now, n, p), new, params), record

    return jax.lax.scan(step, params, (orders, active, evaluate))


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
    x_train, y_train = _check_pixels("train", train, config.num_classes)
    x_val, y_val = _check_pixels("validation", validation, config.num_classes)
    if x_val.shape[1] != x_train.shape[1]:
        raise ValueError(f"validation x has {x_val.shape[1]} features, expected {x_train.shape[1]}")
    if config.batch_size > len(x_train):
        raise ValueError(
            f"batch_size must be at most the {len(x_train)} training examples, got {config.batch_size}"
        )
    if variant.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("dtype float64 needs 64-bit JAX: set jax.config.update('jax_enable_x64', True)")
    dtype = jnp.dtype(variant.dtype)

    params, orders = initial_params_and_orders(
        config.seed,
        num_features=x_train.shape[1],
        num_examples=len(x_train),
        config=config,
        dtype=variant.dtype,
    )
    orders = np.asarray(orders)
    num_steps, chunk = len(orders), config.log_every
    num_chunks = -(-num_steps // chunk)
    padded = np.zeros((num_chunks * chunk, config.batch_size), orders.dtype)
    padded[:num_steps] = orders
    padded = padded.reshape(num_chunks, chunk, config.batch_size)
    active = (np.arange(num_chunks * chunk) < num_steps).reshape(num_chunks, chunk)
    at_end = np.zeros(chunk, bool)
    at_end[(num_steps - 1) % chunk] = True  # the last chunk's last real step
    end_of_chunk = np.zeros(chunk, bool)
    end_of_chunk[-1] = True

    divisor = jnp.asarray(255.0 if variant.pixels == "scaled" else 1.0, dtype)
    data = (jnp.asarray(x_train), jnp.asarray(y_train))
    val = (jnp.asarray(x_val), jnp.asarray(y_val), divisor, jnp.asarray(config.lr, dtype))
    switches = (jnp.asarray(variant.sign == "as_written"), jnp.asarray(SOFTMAXES.index(variant.softmax)))

    def run(params: Params, c: int, evaluate: np.ndarray):
        return _train_chunk(params, *data, padded[c], active[c], evaluate, *val, *switches)

    initial_correct = int(_val_correct(params, val[0], val[1], divisor))
    starts, chunks = [], []
    for c in range(num_chunks):
        starts.append(params)
        # Every step of the first chunk is measured too, for the start of a log-scale plot.
        evaluate = active[0] if c == 0 else at_end if c == num_chunks - 1 else end_of_chunk
        params, records = run(params, c, evaluate)
        chunks.append(records)
        # Once every weight is NaN, every later step computes NaN from NaN: stop there.
        if all(np.isnan(np.asarray(p)).all() for p in params):
            break
    active = active[: len(chunks)]
    log = _log(chunks, active, initial_correct, len(y_val), num_steps)
    collapse = classify_collapse(log).collapse_step
    if collapse is not None:
        first = max(collapse - chunk, 1)
        last = min(collapse + chunk, log.num_steps)
        for c in range((first - 1) // chunk, (last - 1) // chunk + 1):
            _, chunks[c] = run(starts[c], c, active[c])
        log = _log(chunks, active, initial_correct, len(y_val), num_steps)
    return log


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
