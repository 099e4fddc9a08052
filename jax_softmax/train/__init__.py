"""Training: :func:`fit`, a short loop over epochs, each epoch one compiled ``lax.scan`` over the step.

- ``_fit``: :func:`fit`, its set-up, and what it returns (:class:`History`,
  :class:`EpochMetrics`).
- ``_epoch``: :func:`train_epoch`, the scan of the update step over a fresh
  permutation of the data, and :func:`checked_epoch`.
- ``_fast``: what makes an epoch fast on a CPU (XLA's options, the shuffle, programs
  kept between runs), each measured in ``docs/speed.md``.
- :mod:`~jax_softmax.train.nonfinite`: training that goes non-finite, caught inside the
  epoch and explained.
"""

from jax_softmax._validation import RawPixelsWarning
from jax_softmax.train._epoch import checked_epoch, train_epoch
from jax_softmax.train._fast import (
    CPU_COMPILER_OPTIONS,
    SETUP_COMPILER_OPTIONS,
    shuffled_indices,
    stable_argsort_uint32,
)
from jax_softmax.train._fit import EpochMetrics, History, evaluation_program, fit
from jax_softmax.train.nonfinite import NonFiniteError, NonFiniteStop

__all__ = [
    "fit",
    "History",
    "EpochMetrics",
    "train_epoch",
    "checked_epoch",
    "evaluation_program",
    "shuffled_indices",
    "stable_argsort_uint32",
    "CPU_COMPILER_OPTIONS",
    "SETUP_COMPILER_OPTIONS",
    "NonFiniteError",
    "NonFiniteStop",
    "RawPixelsWarning",
]
