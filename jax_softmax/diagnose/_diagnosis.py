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

import time
from collections.abc import Sequence

from jax.typing import ArrayLike

from jax_softmax.diagnose._runs import (
    DEFAULT_CONFIG,
    DiagnoseConfig,
    Variant,
    default_variants,
)
from jax_softmax.diagnose._train import train_variant
from jax_softmax.diagnose._verdict import Diagnosis, classify_collapse


def diagnose_variant(
    variant: Variant,
    train: Sequence[ArrayLike],
    validation: Sequence[ArrayLike],
    config: DiagnoseConfig = DEFAULT_CONFIG,
) -> Diagnosis:
    """Trains one variant (see :func:`train_variant`) and classifies what happened."""
    start = time.perf_counter()
    log = train_variant(variant, train, validation, config)
    return Diagnosis(variant, config, log, classify_collapse(log), time.perf_counter() - start)


def run_diagnosis(
    train: Sequence[ArrayLike],
    validation: Sequence[ArrayLike],
    variants: Sequence[Variant] | None = None,
    config: DiagnoseConfig = DEFAULT_CONFIG,
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
