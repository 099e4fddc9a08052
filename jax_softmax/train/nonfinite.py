"""Training that goes non-finite: detecting it inside the compiled epoch, and saying why.

:func:`jax_softmax.fit` runs each epoch as one compiled ``lax.scan``, and checks it
in two stages, with no host round trip per step:

1. Every epoch, inside the compiled program, one test of the epoch's mean loss and
   its final parameters and optimizer state (:func:`jax_softmax.train.checked_epoch`):
   a NaN or an infinity in a step's loss makes the mean non-finite, and one in the
   parameters or the state never leaves them, so this finds any non-finite step, and
   costs nothing per step. The host reads one boolean per epoch.
2. Only for an epoch that failed that test: a replay of the epoch from a copy of its
   starting parameters, with the same key, through :func:`scan_until_nonfinite`: the
   scan carries a flag, and from the first step whose loss, parameters or state is
   not finite every update is discarded, so it ends holding the last finite
   parameters and names that step.

A stopped run is described in the terms of ``jax-softmax diagnose``. The library's
loss goes through ``log_softmax``, so no probability underflows to 0 and no ``exp``
overflows; what remains is

- **divergence**: the loss rose from where it started (the steps overshoot, each one
  further), until the loss or the weights left the floating-point range (plain
  SGD's steps are bounded by the learning rate, so this takes an L2 penalty with
  ``lr * l2 > 2``, or a learning rate near the largest float);
- **overflow**: the loss had not risen, yet one step's logits, gradient or update was
  too large for the dtype (an enormous learning rate does that in one step).

Either way the cure is a smaller learning rate; or a smaller L2 strength, when even a
tenth of the learning rate leaves ``lr * l2 > 2``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jax_softmax.model import Params


def all_finite(tree: Any) -> jax.Array:
    """Whether every floating value in ``tree`` is finite: a scalar bool, for use under ``jit``."""
    finite = jnp.bool_(True)
    for leaf in jax.tree.leaves(tree):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            finite = finite & jnp.all(jnp.isfinite(leaf))
    return finite


def scan_until_nonfinite(
    step: Callable[[Any, Any], tuple[Any, jax.Array]], init: Any, xs: Any
) -> tuple[Any, jax.Array, jax.Array]:
    """``jax.lax.scan(step, init, xs)`` that stops updating at the first non-finite value.

    The scan also carries a flag, true while every loss and every floating leaf of the
    carry so far was finite. The step that makes it false, and every step after it,
    leave the carry as it was, so the scan ends holding the last finite carry. All of
    it happens on the device; nothing is read back per step.

    Args:
      step: ``step(carry, x) -> (carry, loss)``, one training step; ``loss`` is a scalar
        and ``carry`` holds the parameters (and the optimizer's state).
      init: the initial carry, finite.
      xs: what the scan runs over, as for ``jax.lax.scan``.

    Returns:
      ``(carry, losses, ok)``: the last finite carry, every step's loss ``[num_steps]``,
      and ``[num_steps]`` bool, true for the steps before the first non-finite one.
    """

    def guarded(carry, x):
        state, ok = carry
        new_state, value = step(state, x)
        ok = ok & jnp.isfinite(value) & all_finite(new_state)
        state = jax.tree.map(lambda new, old: jnp.where(ok, new, old), new_state, state)
        return (state, ok), (value, ok)

    (carry, _), (losses, ok) = jax.lax.scan(guarded, (init, jnp.bool_(True)), xs)
    return carry, losses, ok


def summarize_steps(losses: jax.Array, ok: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The mean loss of the finite steps and the first non-finite step of an epoch.

    Args:
      losses: ``[num_steps]`` each step's loss.
      ok: ``[num_steps]`` bool from :func:`scan_until_nonfinite`.

    Returns:
      ``(mean_loss, first_bad_step)``: the mean over the steps before the first bad
      one, and that step's 1-based number (0 when every step was finite).
    """
    count = jnp.sum(ok)
    mean = jnp.sum(jnp.where(ok, losses, 0)) / jnp.maximum(count, 1).astype(losses.dtype)
    first_bad = jnp.where(ok[-1], 0, jnp.argmin(ok) + 1)
    return mean, first_bad


def l2_is_the_cause(lr: float, l2: float) -> bool:
    """Whether the L2 strength, more than the learning rate, makes plain gradient steps grow.

    With the penalty ``l2 / 2 * ||w||^2`` a step multiplies the weights by ``1 - lr * l2``,
    which grows them once ``lr * l2 > 2``. The L2 strength is named as the cause when
    the usual advice, a tenfold lower learning rate, would still leave ``lr * l2 > 2``.
    """
    return lr * l2 / 10 > 2


@dataclasses.dataclass(frozen=True)
class NonFiniteStop:
    """Where and why training went non-finite.

    Attributes:
      epoch: the 1-based epoch of the first non-finite value.
      step: its 1-based step within that epoch.
      steps_per_epoch: steps in an epoch.
      what: ``"loss"`` (the step's loss, from finite parameters) or ``"parameters"``
        (the update made a weight, a bias or the optimizer's state non-finite).
      value: the step's loss (NaN or infinite when ``what`` is ``"loss"``).
      cause: ``"divergence"`` or ``"overflow"``, as ``jax-softmax diagnose`` names them.
      start_loss: the loss at the start of training: the first step's when the stop is
        in the first epoch trained, else that epoch's mean.
      last_finite_loss: the loss of the last step before the bad one.
      lr: the learning rate.
      dtype: the computation's dtype name.
      l2: the L2 strength. With ``lr * l2 > 2`` the penalty alone makes every plain
        gradient step grow the weights; when a tenfold lower learning rate would still
        leave it above 2, the message names the L2 strength as the cause.
    """

    epoch: int
    step: int
    steps_per_epoch: int
    what: str
    value: float
    cause: str
    start_loss: float
    last_finite_loss: float
    lr: float
    dtype: str
    l2: float = 0.0

    @property
    def l2_is_the_cause(self) -> bool:
        """Whether the L2 strength is what to lower: see :func:`l2_is_the_cause`."""
        return l2_is_the_cause(self.lr, self.l2)

    @property
    def kept(self) -> str:
        """Which parameters were kept: those after the step before the bad one."""
        if self.step > 1:
            return f"after step {self.step - 1} of epoch {self.epoch}"
        if self.epoch > 1:
            return f"after epoch {self.epoch - 1}"
        return "the initial ones"

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON values (a non-finite ``value`` as the string ``"nan"``, ``"inf"``...)."""
        record = dataclasses.asdict(self)
        record["value"] = self.value if math.isfinite(self.value) else str(self.value)
        return record

    def message(self) -> str:
        """One line: where, what, the likely cause and what to do."""
        where = f"epoch {self.epoch}, step {self.step} of {self.steps_per_epoch}"
        if self.what == "loss":
            what = f"the training loss became {self.value}"
        else:
            what = "the update made the parameters or the optimizer state non-finite"
        float_max = float(np.finfo(self.dtype).max)
        if self.cause == "divergence":
            why = (
                f"divergence: the loss rose from {self.start_loss:.3g} at the start of training to "
                f"{self.last_finite_loss:.3g}, each step overshooting further, until the loss or the "
                f"weights left the {self.dtype} range (largest finite value {float_max:.3g})"
            )
        else:
            why = (
                f"overflow: one step's logits or update exceeded the {self.dtype} range (largest "
                f"finite value {float_max:.3g}) before the loss had risen "
                f"(it was {self.last_finite_loss:.3g})"
            )
        if self.l2_is_the_cause:
            fix = (
                f"Lower the L2 strength (it is {self.l2:g}; with learning rate {self.lr:g} it must stay "
                f"below 2 / lr = {2 / self.lr:g}, or every step grows the weights; try {0.1 / self.lr:g})"
            )
        else:
            fix = f"Lower the learning rate (it is {self.lr:g}; try {self.lr / 10:g})"
        return (
            f"non-finite training at {where}: {what}. Likely cause, in the terms of 'jax-softmax "
            f"diagnose', {why}. {fix}. Kept the last finite parameters ({self.kept})"
        )


class NonFiniteError(FloatingPointError):
    """Training went non-finite and ``fit(..., on_nonfinite="raise")`` was asked for.

    Attributes:
      stop: the :class:`NonFiniteStop` saying where and why.
      epoch: ``stop.epoch``.
      step: ``stop.step``.
      params: the last finite parameters, ``w`` ``[num_features, num_classes]`` and
        ``b`` ``[num_classes]``.
    """

    def __init__(self, stop: NonFiniteStop, params: Params):
        super().__init__(stop.message())
        self.stop = stop
        self.epoch = stop.epoch
        self.step = stop.step
        self.params = params


def describe_stop(
    *,
    epoch: int,
    step: int,
    losses: np.ndarray,
    start_loss: float,
    previous_loss: float,
    lr: float,
    dtype: str,
    l2: float = 0.0,
) -> NonFiniteStop:
    """Names where and why an epoch went non-finite, from its per-step losses.

    Args:
      epoch: the 1-based epoch.
      step: the 1-based first bad step, from :func:`summarize_steps`.
      losses: ``[steps_per_epoch]`` the epoch's losses; those before ``step`` are finite.
      start_loss: the loss at the start of training (``losses[0]`` in the first epoch
        trained, else that epoch's mean).
      previous_loss: the previous epoch's mean loss (NaN in the first epoch trained).
      lr: the learning rate.
      dtype: the computation's dtype name.
      l2: the L2 strength.

    Returns:
      The :class:`NonFiniteStop`.
    """
    losses = np.asarray(losses, np.float64)
    value = float(losses[step - 1])
    last_finite = float(losses[step - 2]) if step > 1 else previous_loss
    if not math.isfinite(start_loss):  # the run's very first step was the bad one
        start_loss = last_finite = value
    cause = "divergence" if math.isfinite(last_finite) and last_finite > start_loss else "overflow"
    return NonFiniteStop(
        epoch=epoch,
        step=step,
        steps_per_epoch=len(losses),
        what="parameters" if math.isfinite(value) else "loss",
        value=value,
        cause=cause,
        start_loss=start_loss,
        last_finite_loss=last_finite,
        lr=float(lr),
        dtype=str(dtype),
        l2=float(l2),
    )


def learning_warnings(
    train_losses: list[float],
    val_accuracy: float,
    *,
    lr: float,
    l2: float,
    init_scale: float,
    num_classes: int,
) -> list[str]:
    """Sentences saying why a finished run learned nothing, naming the setting to change.

    A run can end with finite numbers and still be useless: its loss ended far above
    where it started (divergence: above twice the start and ten times the loss of a
    uniform guess, where training from small weights starts), or its accuracy stayed
    at chance. The cause named is
    the L2 strength when even ``lr / 10 * l2 > 2`` (:func:`l2_is_the_cause`), the
    initial scale when the very first loss was already huge (logits of weights that
    large saturate the softmax), else the learning rate (too large when the loss rose,
    too small when it did not move).

    Args:
      train_losses: the mean training loss of each epoch, in order.
      val_accuracy: the last epoch's validation accuracy (NaN without a validation set).
      lr, l2, init_scale: the run's settings.
      num_classes: the number of classes (chance accuracy is ``1 / num_classes``).

    Returns:
      Zero, one or two sentences.
    """
    if not train_losses:
        return []
    first, last = train_losses[0], train_losses[-1]
    chance = 1 / num_classes
    # log(num_classes) is the loss of a uniform guess: a start far above it is the weights' doing.
    huge_start = first > 100 * math.log(num_classes)
    found = []
    if l2_is_the_cause(lr, l2):
        cause = (
            f"the L2 strength {l2:g} with learning rate {lr:g} (lr * l2 = {lr * l2:.3g} > 2, so every "
            f"step grows the weights): lower --l2 below {2 / lr:g}"
        )
    elif huge_start and init_scale > 1:
        cause = (
            f"the initial scale {init_scale:g}: the first loss was already {first:.3g}; "
            "use --init-scale 0.01 (or 0)"
        )
    else:
        cause = f"the learning rate {lr:g}: lower --lr (try {lr / 10:g})"
    # Small initial weights start near the loss of a uniform guess, log(num_classes); an
    # epoch's mean can already be far above it when the very first steps blew up.
    uniform = math.log(num_classes)
    start = first if init_scale > 1 else min(first, uniform)
    if math.isfinite(start) and last > 2 * start and last > 10 * uniform:
        found.append(
            f"divergence: the training loss ended at {last:.3g}, far above the {start:.3g} it started "
            f"from; the cause is {cause}"
        )
    if math.isfinite(val_accuracy) and val_accuracy < chance + 0.05:
        if abs(last - first) <= 1e-3 * abs(first) and not huge_start:
            cause = f"the learning rate {lr:g}, too small to move the loss ({first:.4g}): raise --lr"
        found.append(
            f"the validation accuracy is {100 * val_accuracy:.1f}%, chance level for {num_classes} classes; "
            f"the likely cause is {cause}"
        )
    return found
