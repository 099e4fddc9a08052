"""What the diagnosis runs: the four switches of a variant, the training setup, and what a run records."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import numpy as np

from jax_softmax.config import DTYPES, DiagnoseConfig

SIGNS: tuple[str, ...] = ("as_written", "correct")
PIXELS: tuple[str, ...] = ("raw", "scaled")
SOFTMAXES: tuple[str, ...] = ("naive", "shifted", "stable")


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


DEFAULT_CONFIG = DiagnoseConfig()
"""The question's setup, the default of every function that takes a :class:`DiagnoseConfig`."""


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
