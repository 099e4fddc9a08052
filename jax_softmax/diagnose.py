"""Reproduces the "collapse" of a hand-written softmax regression and names its cause.

The question this project answers: mini-batch SGD softmax regression on MNIST
(batch 200, learning rate 0.1, weights started at zero) reaches some accuracy and then
"collapses", with training probabilities of exactly 0 and an infinite log-likelihood.
Four switches reproduce what such a program may do:

- ``sign``: ``"as_written"`` updates ``w <- w - lr/|B| * sum_l x_l (onehot - P)``, the
  question's rule, which subtracts the derivative of ``+log P`` and so climbs the loss;
  ``"correct"`` subtracts the derivative of ``-log P``, ``x_l (P - onehot)``.
- ``pixels``: ``"raw"`` feeds the 0-255 values as read from the file, ``"scaled"``
  divides them by 255.
- ``softmax``: ``"naive"`` forms ``exp(z) / sum(exp(z))`` and takes the log of it, as a
  hand-written program does; ``"shifted"`` subtracts each row's largest logit first,
  ``exp(z - max z) / sum(exp(z - max z))``, as most hand-written programs that know
  about overflow do, and still takes the log of that probability; ``"stable"`` uses
  ``jax.nn.log_softmax``.
- ``dtype``: ``"float32"`` or ``"float64"`` (a C++ ``double``).

Each variant trains in compiled ``lax.scan`` chunks that record, at every step, the
batch log-likelihood the variant computes, the largest ``|logit|``, what its
probabilities did (an ``exp`` that overflowed, how many true-class probabilities were exactly 0),
and two instruments computed stably whatever the variant does: the loss the step
starts from and the slope of the loss along the step. :func:`classify_collapse` reads
the cause off these records.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jax_softmax.gradients import manual_grad
from jax_softmax.model import PRECISION, Params, logits, predict

SIGNS: tuple[str, ...] = ("as_written", "correct")
PIXELS: tuple[str, ...] = ("raw", "scaled")
SOFTMAXES: tuple[str, ...] = ("naive", "shifted", "stable")
DTYPES: tuple[str, ...] = ("float32", "float64")
CAUSES: tuple[str, ...] = ("overflow", "underflow", "divergence")
"""The values of ``cause``; a run that stays finite and descends has cause ``None``."""

PLOT_INSTALL_HINT = "pip install 'jax-softmax[plot]'"


@dataclasses.dataclass(frozen=True)
class Variant:
    """One combination of the four switches.

    Attributes:
      sign: ``"as_written"`` (the question's update, which climbs the loss) or ``"correct"``.
      pixels: ``"raw"`` (0-255) or ``"scaled"`` (divided by 255).
      softmax: ``"naive"`` (``exp(z) / sum(exp(z))``, then its log), ``"shifted"``
        (``exp(z - max z) / sum(exp(z - max z))``, then its log) or ``"stable"`` (``log_softmax``).
      dtype: ``"float32"`` or ``"float64"``.

    Raises:
      ValueError: for a value outside the choices above, naming the field.
    """

    sign: str = "as_written"
    pixels: str = "raw"
    softmax: str = "naive"
    dtype: str = "float64"

    def __post_init__(self) -> None:
        for field, choices in (
            ("sign", SIGNS),
            ("pixels", PIXELS),
            ("softmax", SOFTMAXES),
            ("dtype", DTYPES),
        ):
            value = getattr(self, field)
            if value not in choices:
                raise ValueError(f"{field} must be one of {choices}, got {value!r}")

    @property
    def name(self) -> str:
        """What differs from the question's program, a shifted softmax, and a dtype other than float64.

        >>> Variant("correct", "raw", "naive").name
        'fix sign'
        >>> Variant("correct", "raw", "shifted").name
        'fix sign, shifted softmax'
        >>> Variant("correct", "scaled", "naive", "float32").name
        'fix sign+pixels, float32'
        >>> Variant("correct", "scaled", "stable").name
        'all fixed'
        """
        fixes = [
            label
            for label, fixed in (
                ("sign", self.sign == "correct"),
                ("pixels", self.pixels == "scaled"),
                ("softmax", self.softmax == "stable"),
            )
            if fixed
        ]
        if not fixes:
            name = "as written"
        elif len(fixes) == 3:
            name = "all fixed"
        else:
            name = "fix " + "+".join(fixes)
        if self.softmax == "shifted":
            name += ", shifted softmax"
        return name if self.dtype == "float64" else f"{name}, {self.dtype}"


def default_variants(dtype: str = "float64") -> tuple[Variant, ...]:
    """The question's program as written, each of its three fixes alone, and all three together.

    After the sign fix alone comes the same program with the max-shifted softmax: the
    question's symptom (true-digit probabilities of exactly 0, a log-likelihood of
    ``-inf``) while the classifier goes on learning.
    """
    return (
        Variant("as_written", "raw", "naive", dtype),
        Variant("correct", "raw", "naive", dtype),
        Variant("correct", "raw", "shifted", dtype),
        Variant("as_written", "scaled", "naive", dtype),
        Variant("as_written", "raw", "stable", dtype),
        Variant("correct", "scaled", "stable", dtype),
    )


def all_variants(dtypes: Sequence[str] = ("float64", "float32")) -> tuple[Variant, ...]:
    """Every combination of the switches: 12 per dtype, the question's float64 first."""
    return tuple(
        Variant(sign, pixels, softmax, dtype)
        for dtype, sign, pixels, softmax in itertools.product(dtypes, SIGNS, PIXELS, SOFTMAXES)
    )


@dataclasses.dataclass(frozen=True)
class DiagnoseConfig:
    """How every variant trains; the defaults are the question's setup.

    Attributes:
      epochs: passes over the training set, each in a fresh order.
      batch_size: examples per step.
      lr: learning rate.
      init_scale: standard deviation of the initial weights (0 for zeros).
      seed: seeds the initial weights and the order of the examples (the same for every variant).
      log_every: validation accuracy is measured every this many steps, at each of the
        first this many steps, and at every step within this many steps of a collapse.
      num_classes: number of classes.

    Raises:
      ValueError: for a value out of range, naming the field.
    """

    epochs: int = 3
    batch_size: int = 200
    lr: float = 0.1
    init_scale: float = 0.0
    seed: int = 0
    log_every: int = 10
    num_classes: int = 10

    def __post_init__(self) -> None:
        for field in ("epochs", "batch_size", "log_every"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{field} must be an integer >= 1, got {value!r}")
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {self.num_classes!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be finite and > 0, got {self.lr!r}")
        if not (math.isfinite(self.init_scale) and self.init_scale >= 0):
            raise ValueError(f"init_scale must be finite and >= 0, got {self.init_scale!r}")


@dataclasses.dataclass(frozen=True)
class TrainingLog:
    """What one variant's training recorded; step ``t`` is the ``t``-th update.

    The per-step arrays have length ``num_steps``; entry ``t - 1`` belongs to step ``t``
    and is computed on that step's batch with the parameters before its update.

    Attributes:
      log_likelihood: mean log-probability of the true labels, as the variant computes it
        (``-inf`` or NaN once it collapses), float64 ``[num_steps]``.
      max_abs_logit: largest ``|z|`` in the batch, ``[num_steps]``.
      worst_nll: largest ``-log P(true class)`` in the batch, computed stably, ``[num_steps]``:
        the true class's probability is ``exp(-worst_nll)``.
      loss: mean ``-log P(true class)`` computed stably (``log_softmax``), ``[num_steps]``.
      slope: the directional derivative of that loss along the update, ``<grad, new - old>``;
        positive when the step points up the loss, ``[num_steps]``.
      exp_overflow: a naive ``exp(z)`` (or, for the shifted and stable softmax, a logit) was infinite,
        bool ``[num_steps]``.
      true_prob_zero: a true-class probability the variant formed (naive or shifted) was
        exactly 0, bool ``[num_steps]``.
      zero_true_probs: how many of the batch's true-class probabilities were exactly 0,
        int ``[num_steps]`` (always 0 for the stable softmax, which forms no probability
        to take its log).
      all_probs_zero: every naive ``exp(z)`` of an example was 0, so ``0/0`` gave NaN,
        bool ``[num_steps]``.
      params_finite: the parameters after the update are finite, bool ``[num_steps]``.
      val_steps: the steps at which validation accuracy was measured (0 is the
        initialisation), int ``[m]``.
      val_accuracy: validation accuracy at those steps, ``[m]``.
      planned_steps: the steps the configuration asked for. A run stops early, with
        ``num_steps < planned_steps``, once every weight is NaN: from then on every
        step computes NaN from NaN and the predictions no longer change.
    """

    log_likelihood: np.ndarray
    max_abs_logit: np.ndarray
    worst_nll: np.ndarray
    loss: np.ndarray
    slope: np.ndarray
    exp_overflow: np.ndarray
    true_prob_zero: np.ndarray
    zero_true_probs: np.ndarray
    all_probs_zero: np.ndarray
    params_finite: np.ndarray
    val_steps: np.ndarray
    val_accuracy: np.ndarray
    planned_steps: int

    @property
    def num_steps(self) -> int:
        """The steps the run took."""
        return len(self.log_likelihood)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The verdict on one :class:`TrainingLog`.

    Attributes:
      cause: ``"overflow"``, ``"underflow"``, ``"divergence"``, or ``None``.
      collapse_step: the step of the collapse, or ``None``.
      first_nonfinite_step: the first step with a non-finite value, or ``None``.
      mechanism: what produced that value, ``"overflow"`` or ``"underflow"`` (or ``None``).
      uphill_fraction: fraction of steps with a finite slope whose update points up the loss.
      loss_grew: the stable loss at the last finite step exceeds the loss at step 1.
    """

    cause: str | None
    collapse_step: int | None
    first_nonfinite_step: int | None
    mechanism: str | None
    uphill_fraction: float
    loss_grew: bool


def classify_collapse(log: TrainingLog) -> Verdict:
    """Names the cause of a collapse from a training log.

    - ``divergence``: most updates point up the loss (positive slope) and the loss
      ended higher than it started; the collapse step is the first non-finite value
      if there is one, else the step from which the loss never came back down to
      its value at step 1. Whatever the arithmetic later does, climbing the loss is
      the cause.
    - otherwise the first non-finite value decides: ``overflow`` when an ``exp`` (or a
      logit, or a weight) was infinite at that step, since ``inf/inf`` is NaN and the
      NaN then spreads to every weight; else ``underflow``, when the true class's
      probability was exactly 0 (its log is ``-inf``) or every ``exp`` of an example
      was 0 (``0/0`` is NaN).
    - ``None`` when the run stays finite and descends.

    Args:
      log: the records of one run.

    Returns:
      The :class:`Verdict`.
    """
    nonfinite = ~np.isfinite(log.log_likelihood) | ~np.isfinite(log.max_abs_logit) | ~log.params_finite
    first = int(np.argmax(nonfinite)) if nonfinite.any() else None
    mechanism = None
    if first is not None:
        if (
            log.exp_overflow[first]
            or not np.isfinite(log.max_abs_logit[first])
            or not log.params_finite[first]
        ):
            mechanism = "overflow"
        elif log.true_prob_zero[first] or log.all_probs_zero[first]:
            mechanism = "underflow"
        else:  # a NaN with neither: only an infinite weight can do that, which is an overflow
            mechanism = "overflow"

    finite_slope = np.isfinite(log.slope)
    uphill = float(np.mean(log.slope[finite_slope] > 0)) if finite_slope.any() else 0.0
    finite_loss = np.flatnonzero(np.isfinite(log.loss))
    loss_grew = len(finite_loss) > 1 and log.loss[finite_loss[-1]] > log.loss[finite_loss[0]]
    step_of = None if first is None else first + 1

    if uphill > 0.5 and loss_grew:
        if step_of is None:
            came_down = np.flatnonzero(log.loss <= log.loss[0])
            step_of = int(came_down[-1]) + 2  # the step after the last one at or below the start
        return Verdict("divergence", step_of, None if first is None else first + 1, mechanism, uphill, True)
    return Verdict(mechanism, step_of, step_of, mechanism, uphill, bool(loss_grew))


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """One variant's run and its verdict.

    Attributes:
      variant: the switches.
      config: how it trained.
      log: what it recorded.
      verdict: the classification of ``log``.
      seconds: wall time of the run, compilation included.
    """

    variant: Variant
    config: DiagnoseConfig
    log: TrainingLog
    verdict: Verdict
    seconds: float

    @property
    def collapsed(self) -> bool:
        return self.verdict.cause is not None

    @property
    def model_survived(self) -> bool:
        """The collapse was an underflow of the log-likelihood alone: the weights stayed finite.

        Then only the log of a probability of exactly 0 is ``-inf``; the update, which
        uses the probabilities and not their log, goes on and so does the learning.
        """
        return self.verdict.cause == "underflow" and bool(self.log.params_finite.all())

    @property
    def best_val_accuracy(self) -> float:
        """Highest validation accuracy measured before the collapse.

        Over the whole run when there is no collapse, or when the collapse left the
        weights finite (see :attr:`model_survived`).
        """
        end = None if self.model_survived else self.verdict.collapse_step
        before = self.log.val_steps < (end or self.log.num_steps + 1)
        return float(np.max(self.log.val_accuracy[before]))

    @property
    def val_accuracy_at_collapse(self) -> float | None:
        """Validation accuracy of the weights the collapse step started from, ``None`` without a collapse.

        These are the weights whose log-likelihood first stopped being finite: the
        accuracy "at the moment of the collapse".
        """
        step = self.verdict.collapse_step
        if step is None:
            return None
        at = np.flatnonzero(self.log.val_steps == step - 1)
        return float(self.log.val_accuracy[at[0]]) if len(at) else None

    @property
    def zero_true_probs_at_collapse(self) -> int | None:
        """How many true-class probabilities of the collapse step's batch were exactly 0."""
        step = self.verdict.collapse_step
        return None if step is None else int(self.log.zero_true_probs[step - 1])

    @property
    def final_val_accuracy(self) -> float:
        """Validation accuracy after the last step."""
        return float(self.log.val_accuracy[-1])

    def to_json(self) -> dict:
        """The run as the JSON object of ``jax-softmax diagnose --json``."""
        return {
            "variant": self.variant.name,
            "sign": self.variant.sign,
            "pixels": self.variant.pixels,
            "softmax": self.variant.softmax,
            "dtype": self.variant.dtype,
            "collapsed": self.collapsed,
            "collapse_step": self.verdict.collapse_step,
            "cause": self.verdict.cause,
            "best_val_accuracy": self.best_val_accuracy,
            "final_val_accuracy": self.final_val_accuracy,
            "val_accuracy_at_collapse": self.val_accuracy_at_collapse,
            "zero_true_probs_at_collapse": self.zero_true_probs_at_collapse,
            "batch_size": self.config.batch_size,
        }

    def explanation(self) -> str:
        """What happened, in plain words."""
        return _explain(self)


# Where exp leaves the floating-point range: above the first bound it is inf; below
# the second its value is smaller than the smallest normal number, which XLA flushes
# to 0 (it does not keep subnormals).
EXP_LIMITS = {
    name: (math.log(float(np.finfo(name).max)), math.log(float(np.finfo(name).tiny))) for name in DTYPES
}


def _mechanism_words(d: Diagnosis, step: int) -> str:
    log, v = d.log, d.variant
    i = step - 1
    high, low = EXP_LIMITS[v.dtype]
    if d.verdict.mechanism == "overflow":
        if v.softmax == "naive" and np.isfinite(log.max_abs_logit[i]):
            return (
                f"exp of a logit of {log.max_abs_logit[i]:,.0f} overflowed to inf (exp overflows above "
                f"{high:.1f} in {v.dtype}) and inf/inf gave NaN, which spread to every weight"
            )
        return f"the logits overflowed the {v.dtype} range"
    if log.all_probs_zero[i] and not log.true_prob_zero[i]:
        return f"every exp(z) of an image underflowed to 0 (below e^{low:.1f} in {v.dtype}) and 0/0 gave NaN"
    zeros = int(log.zero_true_probs[i])
    return (
        f"the probability of the true digit underflowed to exactly 0 for {zeros} of the "
        f"{d.config.batch_size} images (the smallest was e^-{log.worst_nll[i]:,.0f}, below the smallest "
        f"normal {v.dtype}, e^{low:.1f}), so its log is -inf"
    )


def _explain(d: Diagnosis) -> str:
    """The cause of a run's collapse in words a non-specialist understands.

    Args:
      d: a diagnosed run.

    Returns:
      One sentence (no trailing newline).
    """
    log, verdict, v = d.log, d.verdict, d.variant
    finite = np.isfinite(log.max_abs_logit)
    largest = float(np.max(log.max_abs_logit[finite])) if finite.any() else float("nan")
    pixels_reason = "because the pixels were 0-255 instead of 0-1" if v.pixels == "raw" else ""
    if verdict.cause is None:
        return (
            f"no collapse: {d.final_val_accuracy:.1%} validation accuracy after {log.num_steps} steps, "
            f"largest |logit| {largest:,.3g}"
        )
    if verdict.cause == "divergence":
        # The loss the collapse step started from (its parameters were still finite), else the last.
        last = (verdict.first_nonfinite_step or log.num_steps) - 1
        words = (
            f"the update climbs the loss instead of descending it (its sign is wrong: "
            f"{verdict.uphill_fraction:.0%} of steps point uphill), so the training loss rose from "
            f"{log.loss[0]:,.3g} at step 1 to {log.loss[last]:,.3g} at step {last + 1} and validation "
            f"accuracy never passed {float(np.max(log.val_accuracy)):.1%}"
        )
        if verdict.first_nonfinite_step is not None:
            words += f"; at step {verdict.first_nonfinite_step} " + _mechanism_words(
                d, verdict.first_nonfinite_step
            )
        return words
    step = verdict.collapse_step
    reached = float(np.max(log.val_accuracy[log.val_steps < step]))
    head = f"at step {step}, after reaching {reached:.1%} validation accuracy, " + _mechanism_words(d, step)
    if pixels_reason:
        head = f"{head}: the logits were that large {pixels_reason}"
    if d.model_survived:
        never_finite = not np.isfinite(log.log_likelihood[step - 1 :]).any()
        head += (
            f"; the weights stayed finite and validation accuracy went on to {d.best_val_accuracy:.1%} "
            f"({d.final_val_accuracy:.1%} after step {log.num_steps}), with the log-likelihood "
            + ("-inf from then on" if never_finite else "-inf at some later steps")
            + ": the log of a zero probability collapsed, not the model"
        )
    return head


# ---------------------------------------------------------------------------------------
# Training


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
def _start(seed: jax.Array, *, num_features: int, num_examples: int, config: DiagnoseConfig, dtype: str):
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
    config: DiagnoseConfig = DiagnoseConfig(),
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

    params, orders = _start(
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


def diagnose_variant(
    variant: Variant,
    train: Sequence[ArrayLike],
    validation: Sequence[ArrayLike],
    config: DiagnoseConfig = DiagnoseConfig(),
) -> Diagnosis:
    """Trains one variant (see :func:`train_variant`) and classifies what happened."""
    start = time.perf_counter()
    log = train_variant(variant, train, validation, config)
    return Diagnosis(variant, config, log, classify_collapse(log), time.perf_counter() - start)


def run_diagnosis(
    train: Sequence[ArrayLike],
    validation: Sequence[ArrayLike],
    variants: Sequence[Variant] | None = None,
    config: DiagnoseConfig = DiagnoseConfig(),
) -> list[Diagnosis]:
    """Diagnoses each variant in turn, all with the same initialisation and order of examples.

    Args:
      train: ``(x, y)``: raw pixels uint8 ``[n, num_features]``, integer labels ``[n]``.
      validation: ``(x, y)`` of the same form.
      variants: the runs; :func:`default_variants` if ``None``.
      config: the training setup.

    Returns:
      One :class:`Diagnosis` per variant, in order.

    Raises:
      ValueError, TypeError: for malformed data or variants.
    """
    variants = default_variants() if variants is None else tuple(variants)
    for i, variant in enumerate(variants):
        if not isinstance(variant, Variant):
            raise TypeError(f"variants[{i}] must be a Variant, got {type(variant).__name__}")
    return [diagnose_variant(variant, train, validation, config) for variant in variants]


# ---------------------------------------------------------------------------------------
# Output


TABLE_COLUMNS = (
    "variant",
    "sign",
    "pixels",
    "softmax",
    "dtype",
    "collapse",
    "cause",
    "best val",
    "final val",
)


def format_diagnosis(diagnoses: Sequence[Diagnosis]) -> str:
    """A plain-text table, one line per run, ending with the cause in words.

    Args:
      diagnoses: the runs.

    Returns:
      The table, lines joined by newlines (no trailing newline).
    """
    rows = [
        (
            d.variant.name,
            d.variant.sign,
            d.variant.pixels,
            d.variant.softmax,
            d.variant.dtype,
            "-" if d.verdict.collapse_step is None else f"step {d.verdict.collapse_step}",
            d.verdict.cause or "none",
            f"{d.best_val_accuracy:.1%}",
            f"{d.final_val_accuracy:.1%}",
        )
        for d in diagnoses
    ]
    widths = [max(len(str(r[i])) for r in (TABLE_COLUMNS, *rows)) for i in range(len(TABLE_COLUMNS))]
    right = {"best val", "final val"}

    def line(cells) -> str:
        return "  ".join(
            f"{c:>{w}}" if name in right else f"{c:<{w}}"
            for c, w, name in zip(cells, widths, TABLE_COLUMNS, strict=True)
        )

    lines = [line(TABLE_COLUMNS) + "  what happened"]
    lines += [line(row) + "  " + d.explanation() for row, d in zip(rows, diagnoses, strict=True)]
    return "\n".join(lines)


def format_diagnosis_log(d: Diagnosis) -> str:
    """A run's logged steps (every ``log_every`` steps and each step near the collapse), one per line."""
    log = d.log
    lines = [
        f"{d.variant.name} ({d.variant.sign}, {d.variant.pixels}, {d.variant.softmax}, {d.variant.dtype})"
    ]
    lines.append(f"{'step':>6}  {'log-likelihood':>15}  {'max |logit|':>12}  {'val acc':>8}")
    for step, accuracy in zip(log.val_steps, log.val_accuracy, strict=True):
        if step == 0:
            lines.append(f"{0:>6}  {'':>15}  {'':>12}  {accuracy:8.1%}")
            continue
        i = step - 1
        mark = "  <- collapse" if step == d.verdict.collapse_step else ""
        lines.append(
            f"{step:>6}  {log.log_likelihood[i]:>15.6g}  {log.max_abs_logit[i]:>12.4g}  {accuracy:8.1%}{mark}"
        )
    return "\n".join(lines)


def plot_diagnosis(diagnoses: Sequence[Diagnosis], path: str | os.PathLike) -> None:
    """Draws log-likelihood and validation accuracy against step for each run, collapses marked.

    The top panel is the batch log-likelihood each run computed (on a symmetric log
    scale, since it spans from -2.3 to minus millions), with a tick along the bottom
    at each step where it was not finite; the bottom panel is the validation accuracy.
    A cross marks each collapse. The file is written atomically (PNG).

    Args:
      diagnoses: the runs.
      path: the PNG file to write.

    Raises:
      ImportError: matplotlib is not installed (the message gives the install command).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(f"--plot needs matplotlib, which is not installed: {PLOT_INSTALL_HINT}") from None

    fig = Figure(figsize=(10, 7.5), dpi=100, layout="constrained")
    ax_ll, ax_acc = fig.subplots(2, 1, sharex=True)
    for i, d in enumerate(diagnoses):
        color = f"C{i % 10}"
        log, step = d.log, d.verdict.collapse_step
        steps = np.arange(1, log.num_steps + 1)
        finite = np.isfinite(log.log_likelihood)
        ll = np.where(finite, log.log_likelihood, np.nan)
        label = f"{d.variant.name}: {d.verdict.cause or 'no collapse'}"
        ax_ll.plot(steps, ll, color=color, lw=1.0, marker="." if finite.sum() < 20 else None, label=label)
        ax_ll.plot(
            steps[~finite],
            np.zeros((~finite).sum()),
            "|",
            color=color,
            ms=8,
            mew=1.5,
            transform=ax_ll.get_xaxis_transform(),
        )
        measured = log.val_steps > 0  # the log scale has no step 0
        ax_acc.plot(
            log.val_steps[measured], 100 * log.val_accuracy[measured], color=color, lw=1.0, label=label
        )
        if step is None:
            continue
        at = np.flatnonzero(log.val_steps == step)
        if len(at):
            ax_acc.plot([step], [100 * log.val_accuracy[at[0]]], "x", color=color, ms=11, mew=2)
        before = ll[:step][np.isfinite(ll[:step])]  # the log-likelihood at the collapse, or just before it
        if len(before):
            ax_ll.plot([step], [before[-1]], "x", color=color, ms=11, mew=2)
        for ax in (ax_ll, ax_acc):
            ax.axvline(step, color=color, ls=":", lw=0.8)
    config = diagnoses[0].config if diagnoses else DiagnoseConfig()
    ax_ll.set_yscale("symlog", linthresh=1.0)
    ax_ll.set_ylabel("batch log-likelihood (mean per image)")
    ax_ll.set_title(
        f"Softmax regression on MNIST, batch {config.batch_size}, learning rate {config.lr:g}: "
        "x marks a collapse, | a non-finite log-likelihood"
    )
    ax_ll.legend(loc="lower left", fontsize="small")
    ax_acc.set_xscale("log")
    ax_acc.set_xlabel("step (log scale)")
    ax_acc.set_ylabel("validation accuracy (%)")
    ax_acc.set_ylim(0, 100)
    for ax in (ax_ll, ax_acc):
        ax.grid(alpha=0.3)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            fig.savefig(f, format="png")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
