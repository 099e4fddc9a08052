"""``solve_path``: the regularisation path, each optimum warm-started from the last, chosen on validation."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from jax_softmax._validation import check_dtype_enabled, check_labels, check_split
from jax_softmax.config import check_grid, check_int
from jax_softmax.model import Params
from jax_softmax.solvers._solve import NotConvergedWarning, l2_from_c, solve

DEFAULT_CS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
"""The path without ``Cs`` or ``l2s``: scikit-learn's ``C`` from strong to weak regularisation."""


class PathPoint(NamedTuple):
    """One point of the path: the optimum at one regularisation strength.

    Attributes:
      C: scikit-learn's ``C``, ``1 / (l2 * n)`` for ``n`` training examples; ``None``
        for ``l2 = 0`` (no regularisation, infinite ``C``).
      l2: the L2 strength of this project's mean loss.
      objective: the loss at the optimum: mean negative log-likelihood plus
        ``0.5 * l2 * ||w||^2``, on the training split.
      grad_norm: the largest absolute gradient entry at the optimum.
      iterations: the solver's outer iterations from the previous point's optimum.
      converged: whether ``grad_norm <= tol``.
      seconds: the solve's wall time (the first point's includes compilation).
      val_accuracy: accuracy on the validation split; ``None`` without one.
      val_loss: mean negative log-likelihood on the validation split (no penalty);
        ``None`` without one.
    """

    C: float | None
    l2: float
    objective: float
    grad_norm: float
    iterations: int
    converged: bool
    seconds: float
    val_accuracy: float | None
    val_loss: float | None


class PathResult(NamedTuple):
    """What :func:`solve_path` found.

    Attributes:
      points: one :class:`PathPoint` per strength, strongest regularisation first.
      best: the index in ``points`` of the chosen point: the highest validation
        accuracy, ties to the stronger regularisation (the only point when there is
        one).
      params: the chosen point's parameters, ``w`` ``[num_features, num_classes]`` and
        ``b`` ``[num_classes]``.
    """

    points: tuple[PathPoint, ...]
    best: int
    params: Params

    @property
    def best_point(self) -> PathPoint:
        """``points[best]``."""
        return self.points[self.best]


def solve_path(
    train: Sequence[ArrayLike],
    validation: Sequence[ArrayLike] | None = None,
    *,
    Cs: float | Sequence[float] | None = None,  # scikit-learn's name
    l2s: float | Sequence[float] | None = None,
    method: str = "newton-cg",
    tol: float = 1e-4,
    max_iter: int | None = None,
    dtype: DTypeLike | None = None,
    num_classes: int | None = None,
    callback: Callable[[PathPoint], None] | None = None,
) -> PathResult:
    """Solves along a regularisation path, and chooses the strength on the validation split.

    The strengths are solved from the strongest regularisation (smallest ``C``,
    largest ``l2``) to the weakest, each with :func:`jax_softmax.solvers.solve` started
    from the previous optimum (a warm start: neighbouring optima are close, so each
    point after the first takes a few iterations). The training data is put on the
    device once, in the solve's dtype, for the whole path.

    Args:
      train: ``(x, y)``: inputs ``[n, num_features]``, finite, and integer labels ``[n]``
        holding at least two classes.
      validation: ``(x, y)`` of the same width, to choose on; ``None`` is allowed only
        for a path of one point.
      Cs: scikit-learn's ``C`` values, finite and > 0, distinct (``l2 = 1 / (C n)``).
      l2s: L2 strengths instead, finite and >= 0, distinct; not together with ``Cs``.
        Neither: :data:`DEFAULT_CS`.
      method, tol, max_iter: as for :func:`jax_softmax.solvers.solve`.
      dtype: ``float32`` or ``float64``; ``None`` for ``solve``'s default.
      num_classes: the number of classes; ``None`` for the largest label of ``train``
        and ``validation``, plus one.
      callback: called with each :class:`PathPoint` as soon as it is solved.

    Returns:
      A :class:`PathResult`. A point that stops above ``tol`` warns
      (:class:`~jax_softmax.solvers.NotConvergedWarning`), naming its ``C``.

    Raises:
      TypeError, ValueError: naming the argument: malformed or non-finite splits, a
        training split of one class, both ``Cs`` and ``l2s``, an empty list, a ``C``
        that is not > 0, an ``l2`` < 0, a repeated value, several points without
        ``validation``, and whatever ``solve`` refuses.

    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> y = np.array([0, 0, 1, 1])
    >>> path = solve_path((x, y), (x, y), Cs=[10.0, 0.1])
    >>> [point.C for point in path.points], path.best_point.C, path.best_point.val_accuracy
    ([0.1, 10.0], 0.1, 1.0)
    """
    x, y, validation, num_classes = _checked_splits(train, validation, num_classes)
    strengths = regularisation_path(Cs, l2s, len(y))
    if validation is None and len(strengths) > 1:
        raise ValueError(f"validation is needed to choose among {len(strengths)} strengths, got None")
    x, y = _on_device(x, dtype), jax.device_put(y)
    if validation is not None:
        validation = jax.device_put(validation)
    points: list[PathPoint] = []
    best, params, init = 0, None, None
    settings = {
        "method": method,
        "tol": tol,
        "max_iter": max_iter,
        "dtype": dtype,
        "num_classes": num_classes,
    }
    for c, l2 in strengths:
        result, seconds = _solve_point(x, y, c, l2, init, settings)
        init = result.params
        val_loss, val_accuracy = (None, None) if validation is None else _evaluate(init, *validation)
        points.append(
            PathPoint(
                C=c,
                l2=l2,
                objective=result.objective,
                grad_norm=result.grad_norm,
                iterations=result.iterations,
                converged=result.converged,
                seconds=seconds,
                val_accuracy=val_accuracy,
                val_loss=val_loss,
            )
        )
        if callback is not None:
            callback(points[-1])
        # Strongest first, so a later point must be strictly better: a tie keeps the stronger.
        if params is None or (val_accuracy is not None and val_accuracy > points[best].val_accuracy):
            best, params = len(points) - 1, init
    return PathResult(tuple(points), best, params)


def regularisation_path(
    Cs: float | Sequence[float] | None,
    l2s: float | Sequence[float] | None,
    num_examples: int,
) -> list[tuple[float | None, float]]:
    """``[(C, l2), ...]`` for ``num_examples`` training examples, strongest regularisation first.

    Raises:
      ValueError: naming ``Cs`` or ``l2s``: both given, empty, repeated values, a ``C``
        that is not finite and > 0, an ``l2`` that is not finite and >= 0.

    >>> regularisation_path([1.0, 0.1], None, 1000)
    [(0.1, 0.01), (1.0, 0.001)]
    """
    if Cs is not None and l2s is not None:
        raise ValueError("give Cs or l2s, not both (l2 = 1 / (C * num_examples))")
    if l2s is not None:
        l2s = check_grid("l2s", _as_list(l2s), positive=False)
        pairs = [(None if l2 == 0 else 1.0 / (l2 * num_examples), l2) for l2 in l2s]
    else:
        Cs = DEFAULT_CS if Cs is None else check_grid("Cs", _as_list(Cs), positive=True)
        pairs = [(c, l2_from_c(c, num_examples)) for c in Cs]
    return sorted(pairs, key=lambda pair: -pair[1])


def _checked_splits(train: Any, validation: Any, num_classes: Any) -> tuple[Any, Any, Any, int]:
    """``(x, y, validation, num_classes)``, checked: shapes, finite inputs, labels in range, two classes."""
    x, y = check_split("train", train, None)
    if validation is not None:
        validation = check_split("validation", validation, x.shape[1])
    if num_classes is None:
        num_classes = 1 + int(max(y.max(), -1 if validation is None else validation[1].max()))
    else:
        check_int("num_classes", num_classes, 2)
    check_labels(y, len(y), num_classes, "train y")
    if validation is not None:
        check_labels(validation[1], len(validation[1]), num_classes, "validation y")
    if np.all(y == y[0]):
        raise ValueError(
            f"train y must hold at least two classes, got only class {int(y[0])} "
            f"(in {len(y)} example{'s' * (len(y) != 1)})"
        )
    return x, y, validation, int(num_classes)


def _as_list(values: Any) -> Sequence[Any]:
    return [values] if isinstance(values, (int, float, np.number)) else list(values)


def _on_device(x: np.ndarray, dtype: Any) -> jax.Array:
    """``x`` on the default device, in ``dtype`` (converted once, for every point of the path)."""
    if dtype is None:
        return jax.device_put(x)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype.name}")
    check_dtype_enabled(dtype)
    return jax.device_put(np.asarray(x, dtype))


def _solve_point(x, y, c: float | None, l2: float, init: Params | None, settings: dict):
    """``(SolveResult, seconds)`` at one strength; not converging warns once, naming the point."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotConvergedWarning)  # said again below, with the strength
        result = solve(x, y, l2, init=init, **settings)
    seconds = time.perf_counter() - start
    if not result.converged:
        where = f"C={c:g} (l2={l2:.3g})" if c is not None else f"l2={l2:g}"
        warnings.warn(
            f"{where}: {settings['method']} stopped after {result.iterations} "
            f"iteration{'s' * (result.iterations != 1)} with gradient norm "
            f"{result.grad_norm:.3g}, above tol={settings['tol']:g}",
            NotConvergedWarning,
            stacklevel=3,
        )
    return result, seconds


def _evaluate(params: Params, x: jax.Array, y: jax.Array) -> tuple[float, float]:
    from jax_softmax.evaluation import evaluate

    loss, accuracy = evaluate(params, x, y)
    return float(loss), float(accuracy)
