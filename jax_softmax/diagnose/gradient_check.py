"""Checks a hand-written gradient of the softmax-regression loss against ``jax.grad``.

A hand-written gradient ``fn(w, b, x, y) -> (dw, db)`` of the mean negative
log-likelihood (the loss of :func:`jax_softmax.loss`) is compared, in float64, with
``jax.grad`` of that loss at several points: batches of 1, a small odd number and 200
examples, each with the weights at zero (every probability 1/10) and at a random scale
where the probabilities are far from uniform (logits with a standard deviation of
about 5). The mistakes people make have a shape, and the verdict names it:

- ``correct``: within the rounding of the dtype ``fn`` returns;
- ``negated``: ``-1`` times the gradient, so that ``w - lr * dw`` climbs the loss;
- ``scaled``: a constant multiple other than ``+-1`` (a sum over the batch instead of a
  mean shows as a factor equal to the batch size at every batch size);
- ``transposed``: ``dw`` comes back ``[num_classes, num_features]`` and is the transpose;
- ``bias``: ``dw`` right, ``db`` wrong or missing;
- ``wrong``: none of these, with where the largest difference is.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jax_softmax._validation import x64
from jax_softmax.config import CHECK_GRADIENT_BATCH_SIZES
from jax_softmax.diagnose._gradient_verdict import PointCheck, classify, point_check
from jax_softmax.gradients import autodiff_grad
from jax_softmax.model import Params

BATCH_SIZES: tuple[int, ...] = CHECK_GRADIENT_BATCH_SIZES
LOGIT_SCALE = 5.0
"""Standard deviation of the logits at the random weights: far from uniform probabilities."""
ROUNDING_ULPS = 1000
"""The tolerance, in units of the returned dtype's machine epsilon (float32: 1.2e-4, float64: 2.2e-13)."""
MAX_TOLERANCE = 0.05
"""The tolerance of the half-precision dtypes, whose 1000 epsilons would let any gradient within 100% pass."""


class GradientCheckError(ValueError):
    """The function under test could not be checked: it raised, or returned something unusable."""


@dataclasses.dataclass(frozen=True)
class GradientCheck:
    """The verdict on a hand-written gradient.

    Attributes:
      verdict: one of :data:`VERDICTS`.
      message: the verdict in words, with the figures.
      relative_error_w, relative_error_b, factor: as in :class:`PointCheck`, at the
        largest batch with the larger of its two errors.
      batch_size: that batch's size.
      dtype: the dtype ``fn`` returned (the lower precision of ``dw`` and ``db``).
      tolerance: the relative error allowed for that dtype.
      inputs: ``"given"`` (drawn from ``x`` and ``y``) or ``"random"``.
      points: every comparison, in order.
    """

    verdict: str
    message: str
    relative_error_w: float
    relative_error_b: float | None
    factor: float | None
    batch_size: int
    dtype: str
    tolerance: float
    inputs: str
    points: tuple[PointCheck, ...]

    @property
    def correct(self) -> bool:
        return self.verdict == "correct"

    def to_json(self) -> dict:
        """The object of ``jax-softmax check-grad --json``."""
        return {
            "verdict": self.verdict,
            "relative_error_w": self.relative_error_w,
            "relative_error_b": self.relative_error_b,
            "factor": self.factor,
            "batch_size": self.batch_size,
            "message": self.message,
        }


def tolerance(dtype: np.dtype) -> float:
    """The relative error allowed to a gradient returned in ``dtype``.

    >>> tolerance(np.dtype("float64")) < 1e-12 < tolerance(np.dtype("float32")) < 1e-3
    True
    >>> tolerance(np.dtype("float16"))
    0.05
    """
    return min(ROUNDING_ULPS * float(jnp.finfo(dtype).eps), MAX_TOLERANCE)


def _draw_batches(
    x: ArrayLike | None, y: ArrayLike | None, batch_sizes: Sequence[int], num_classes: int, rng
) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """One batch per size, ``x`` float64 in [0, 1] and ``y`` int64: drawn from ``(x, y)``, else random."""
    if x is None and y is None:
        batches = [(rng.random((n, 784)), rng.integers(0, num_classes, n)) for n in batch_sizes]
        return batches, "random"
    if x is None or y is None:
        raise ValueError("x and y must be given together (or neither, for random inputs)")
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"x must be a numeric [n, num_features] array, got shape {x.shape} dtype {x.dtype}")
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"y must be integer labels of shape ({x.shape[0]},), got shape {y.shape} dtype {y.dtype}"
        )
    if len(x) < max(batch_sizes):
        raise ValueError(
            f"x must hold at least {max(batch_sizes)} examples (the largest batch), got {len(x)}"
        )
    batches = []
    for n in batch_sizes:
        idx = np.sort(rng.choice(len(x), n, replace=False))
        xb = x[idx].astype(np.float64) / (255.0 if x.dtype == np.uint8 else 1.0)
        if not (np.isfinite(xb).all() and xb.min() >= 0 and xb.max() <= 1):
            raise ValueError(f"x must hold pixels in [0, 1], got values from {xb.min()} to {xb.max()}")
        yb = y[idx].astype(np.int64)
        if yb.min() < 0 or yb.max() >= num_classes:
            raise ValueError(f"y must be in [0, {num_classes}), got labels from {yb.min()} to {yb.max()}")
        batches.append((xb, yb))
    return batches, "given"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _call(fn: Callable, name: str, w, b, x, y, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Calls ``fn`` on copies of the point, and returns ``(dw, db)`` as NumPy arrays (``db`` may be None)."""
    try:
        result = fn(w.copy(), b.copy(), x.copy(), y.copy())
    except (Exception, SystemExit) as e:
        raise GradientCheckError(f"{name} raised {_first_line(e)} ({where})") from None
    if isinstance(result, (tuple, list)):
        if len(result) == 2:
            dw, db = result
        elif len(result) == 1:
            dw, db = result[0], None
        else:
            raise GradientCheckError(f"{name} returned {len(result)} values, expected (dw, db) ({where})")
    else:
        dw, db = result, None
    if dw is None:
        raise GradientCheckError(
            f"{name} returned None, expected (dw, db): is its return statement missing? ({where})"
        )
    arrays = []
    for label, value in (("dw", dw), ("db", db)):
        if value is None:
            arrays.append(None)
            continue
        try:
            array = np.asarray(value)
        except Exception as e:
            raise GradientCheckError(
                f"{name} returned a {label} that is not an array: {_first_line(e)}"
            ) from None
        if not jnp.issubdtype(array.dtype, jnp.floating):
            raise GradientCheckError(
                f"{name} returned {label} of dtype {array.dtype}, expected a floating dtype"
            )
        arrays.append(array)
    return arrays[0], arrays[1]


def check_gradient(
    fn: Callable,
    x: ArrayLike | None = None,
    y: ArrayLike | None = None,
    *,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    num_classes: int = 10,
    seed: int = 0,
    name: str | None = None,
) -> GradientCheck:
    """Compares a hand-written gradient with ``jax.grad`` of :func:`jax_softmax.loss`, in float64.

    ``fn(w, b, x, y) -> (dw, db)`` gets NumPy arrays: ``w`` float64
    ``[num_features, num_classes]``, ``b`` ``[num_classes]``, ``x`` ``[n, num_features]``
    in [0, 1] and ``y`` int ``[n]``, and may return NumPy or JAX arrays, in any floating
    dtype: the tolerance is :data:`ROUNDING_ULPS` times that dtype's machine epsilon, so
    a correct float32 implementation passes. It is called at every batch size in
    ``batch_sizes`` with the weights at zero and at random weights (logits with a
    standard deviation of about 5, biases ``N(0, 1)``).

    Args:
      fn: the gradient to check.
      x: inputs to draw the batches from, ``[n, num_features]``: values in [0, 1], or
        uint8 pixels (0-255), which are divided by 255; random ``[batch, 784]`` inputs
        in [0, 1] when ``None``.
      y: their labels, ``[n]``, each in ``[0, num_classes)``.
      batch_sizes: the batch sizes tried; the reported figures are the largest's.
      num_classes: number of classes.
      seed: seeds the batches, the random weights and the random inputs.
      name: what to call ``fn`` in messages (default its ``__name__``).

    Returns:
      The :class:`GradientCheck`.

    Raises:
      GradientCheckError: ``fn`` raised (the message names the exception), returned
        something other than ``(dw, db)`` of the right shapes, or non-finite values.
      ValueError: for malformed ``x``, ``y`` or ``batch_sizes``.

    >>> def grad(w, b, x, y):
    ...     z = x @ w + b
    ...     p = np.exp(z - z.max(axis=1, keepdims=True))
    ...     p /= p.sum(axis=1, keepdims=True)
    ...     p[np.arange(len(y)), y] -= 1
    ...     return x.T @ p / len(y), p.mean(axis=0)
    >>> check_gradient(grad).verdict
    'correct'
    >>> check_gradient(lambda w, b, x, y: tuple(-g for g in grad(w, b, x, y))).verdict
    'negated'
    """
    if not batch_sizes or any(not isinstance(n, int) or n < 1 for n in batch_sizes):
        raise ValueError(f"batch_sizes must be integers >= 1, got {batch_sizes!r}")
    name = name or getattr(fn, "__name__", "the function")
    rng = np.random.default_rng(seed)
    batches, inputs = _draw_batches(x, y, batch_sizes, num_classes, rng)
    num_features = batches[0][0].shape[1]
    # Random weights that give logits of standard deviation about LOGIT_SCALE.
    mean_square = float(np.mean(np.concatenate([np.sum(xb**2, axis=1) for xb, _ in batches])))
    scale = LOGIT_SCALE / math.sqrt(max(mean_square, 1e-12))
    random_weights = (rng.normal(0, scale, (num_features, num_classes)), rng.normal(0, 1, num_classes))
    zero_weights = (np.zeros((num_features, num_classes)), np.zeros(num_classes))

    compared = []  # (n, weights label, uw, ub, gw, gb)
    dtypes = []
    transposed = False
    for n, (xb, yb) in zip(batch_sizes, batches, strict=True):
        for label, (w, b) in (("zero", zero_weights), ("random", random_weights)):
            where = f"batch of {n}, {label} weights"
            uw, ub, flipped = _checked_call(fn, name, w, b, xb, yb, where)
            transposed |= flipped
            dtypes += [a.dtype for a in (uw, ub) if a is not None]
            with x64():
                g = autodiff_grad(Params(jnp.asarray(w), jnp.asarray(b)), jnp.asarray(xb), jnp.asarray(yb))
                gw, gb = np.asarray(g.w, np.float64), np.asarray(g.b, np.float64)
            compared.append(
                (n, label, uw.astype(np.float64), None if ub is None else ub.astype(np.float64), gw, gb)
            )

    dtype = min(dtypes, key=lambda d: jnp.finfo(d).bits)
    tol = tolerance(dtype)
    points = [point_check(n, label, uw, ub, gw, gb, tol) for n, label, uw, ub, gw, gb in compared]
    largest = max(batch_sizes)
    report = max((p for p in points if p.batch_size == largest), key=lambda p: p.relative_error_w)
    verdict, message = classify(points, tol, transposed, num_features, num_classes)
    return GradientCheck(
        verdict=verdict,
        message=message,
        relative_error_w=report.relative_error_w,
        relative_error_b=report.relative_error_b,
        factor=report.factor,
        batch_size=report.batch_size,
        dtype=np.dtype(dtype).name,
        tolerance=tol,
        inputs=inputs,
        points=tuple(points),
    )


def _checked_call(fn, name: str, w, b, xb, yb, where: str) -> tuple:
    """``(dw, db, transposed)`` from the user's function, checked: shapes and finite values.

    A ``dw`` of shape ``[num_classes, num_features]`` comes back transposed, with
    ``transposed`` true.
    """
    num_features, num_classes = w.shape
    uw, ub = _call(fn, name, w, b, xb, yb, where)
    transposed = uw.shape == (num_classes, num_features) and num_classes != num_features
    if transposed:
        uw = uw.T
    elif uw.shape != (num_features, num_classes):
        raise GradientCheckError(
            f"{name} returned dw of shape {uw.shape}, expected {(num_features, num_classes)} ({where})"
        )
    if ub is not None and ub.shape != (num_classes,):
        raise GradientCheckError(
            f"{name} returned db of shape {ub.shape}, expected ({num_classes},) ({where})"
        )
    for label, array in (("dw", uw), ("db", ub)):
        if array is not None and not np.isfinite(array.astype(np.float64)).all():
            raise GradientCheckError(f"{name} returned non-finite values in {label} ({where})")
    return uw, ub, transposed


def load_function(spec: str) -> tuple[Callable, str]:
    """Imports ``FILE.py`` and returns its ``FUNCTION`` from ``"FILE.py:FUNCTION"``, with that text.

    The file is imported and run like any Python module (its top-level code runs; its
    ``if __name__ == "__main__":`` block does not), with its directory first on
    ``sys.path`` so that it can import its neighbours.

    Raises:
      GradientCheckError: for a malformed spec, a missing file or function, or a file
        whose import raises (the message names the exception).
    """
    path_text, sep, function = spec.rpartition(":")
    if not sep or not path_text or not function:
        raise GradientCheckError(f"expected FILE.py:FUNCTION, got {spec!r}")
    path = Path(path_text)
    if not path.is_file():
        raise GradientCheckError(f"{path_text}: no such file")
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    if module_spec is None or module_spec.loader is None:
        raise GradientCheckError(f"{path_text}: not a Python file (the name must end in .py)")
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, str(path.resolve().parent))
    try:
        module_spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:
        raise GradientCheckError(f"importing {path_text} raised {_first_line(e)}") from None
    fn = getattr(module, function, None)
    if fn is None:
        raise GradientCheckError(f"{path_text} has no function {function!r}")
    if not callable(fn):
        kind = type(fn).__name__
        article = "an" if kind[0] in "aeiou" else "a"
        raise GradientCheckError(f"{path_text}: {function} is not a function but {article} {kind}")
    return fn, f"{path.name}:{function}"


def format_gradient_check(check: GradientCheck, inputs: str | None = None) -> str:
    """The verdict, its message and one line per point, for the terminal.

    ``inputs`` names what the batches held (default: ``check.inputs``).
    """
    lines = [
        f"{check.verdict}: {check.message}",
        f"compared with jax.grad in float64 on {inputs or check.inputs} inputs; returned {check.dtype}, "
        f"tolerance {check.tolerance:.2g} (relative, 2-norm)",
        f"{'batch':>6}  {'weights':<7}  {'rel. error dw':>13}  {'rel. error db':>13}  {'factor':>10}",
    ]
    for p in check.points:
        b = "missing" if p.relative_error_b is None else f"{p.relative_error_b:.3g}"
        factor = "-" if p.factor is None else f"{p.factor:.6g}"
        lines.append(f"{p.batch_size:>6}  {p.weights:<7}  {p.relative_error_w:>13.3g}  {b:>13}  {factor:>10}")
    return "\n".join(lines)
