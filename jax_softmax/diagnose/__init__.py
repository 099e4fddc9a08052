"""The question: its "collapse" reproduced and explained, and a checker for a hand-written gradient.

- ``_diagnosis``: :func:`run_diagnosis`, the variants of the question's program side by side.
- ``_runs``: what a variant switches on, and what a run records.
- ``_train``: the question's arithmetic, reproduced, trained in compiled chunks.
- ``_verdict``: a run's records read into the cause of its collapse.
- :mod:`~jax_softmax.diagnose.gradient_check`: :func:`check_gradient`, a learner's
  gradient against ``jax.grad``, with the slip named.
"""

from jax_softmax.diagnose._diagnosis import (
    diagnose_variant,
    format_diagnosis,
    format_diagnosis_log,
    run_diagnosis,
)
from jax_softmax.diagnose._runs import (
    DTYPES,
    PIXELS,
    SIGNS,
    SOFTMAXES,
    DiagnoseConfig,
    TrainingLog,
    Variant,
    all_variants,
    default_variants,
)
from jax_softmax.diagnose._train import (
    train_variant,
)
from jax_softmax.diagnose._verdict import (
    CAUSES,
    EXP_LIMITS,
    Diagnosis,
    Verdict,
    classify_collapse,
)
from jax_softmax.diagnose.gradient_check import (
    GradientCheck,
    GradientCheckError,
    check_gradient,
    format_gradient_check,
    load_function,
)
from jax_softmax.plots import plot_diagnosis

__all__ = [
    "CAUSES",
    "DTYPES",
    "EXP_LIMITS",
    "PIXELS",
    "SIGNS",
    "SOFTMAXES",
    "DiagnoseConfig",
    "Diagnosis",
    "TrainingLog",
    "Variant",
    "Verdict",
    "all_variants",
    "classify_collapse",
    "default_variants",
    "diagnose_variant",
    "format_diagnosis",
    "format_diagnosis_log",
    "plot_diagnosis",
    "run_diagnosis",
    "train_variant",
    "GradientCheck",
    "GradientCheckError",
    "check_gradient",
    "format_gradient_check",
    "load_function",
]
