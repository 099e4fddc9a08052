"""Reading a run's records: the cause of a collapse, a run with its verdict, and the cause in words."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jax_softmax.diagnose._runs import DTYPES, DiagnoseConfig, TrainingLog, Variant

CAUSES: tuple[str, ...] = ("overflow", "underflow", "divergence")
"""The values of ``cause``; a run that stays finite and descends has cause ``None``."""


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
