"""``solve``: the L2-regularised softmax-regression optimum, by full-batch minimisation."""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from jax_softmax import _validation as validation
from jax_softmax.config import SOLVE_METHODS, check_choice, check_int, check_positive
from jax_softmax.model import Params
from jax_softmax.solvers import _lbfgs, _newton_cg
from jax_softmax.solvers._trees import largest_entry

METHODS = {"newton-cg": _newton_cg.minimize, "lbfgs": _lbfgs.minimize}
"""The solvers by name: Newton-CG with the hand-derived Hessian product, and optax's L-BFGS."""

DEFAULT_MAX_ITER = {"newton-cg": 100, "lbfgs": 1000}


class NotConvergedWarning(UserWarning):
    """The solver stopped before the gradient fell to the tolerance."""


class SolveResult(NamedTuple):
    """What :func:`solve` found.

    Attributes:
      params: the parameters, ``w`` ``[num_features, num_classes]`` and ``b``
        ``[num_classes]`` (centred: the loss does not change when the same number is
        added to every bias, so the solver returns the biases that sum to zero).
      objective: the loss at ``params``: mean negative log-likelihood plus
        ``0.5 * l2 * ||w||^2``.
      grad_norm: the largest absolute entry of the gradient at ``params``.
      iterations: outer iterations taken (Newton steps, or L-BFGS steps).
      converged: whether ``grad_norm <= tol``.
    """

    params: Params
    objective: float
    grad_norm: float
    iterations: int
    converged: bool


def l2_from_c(c: float, num_examples: int) -> float:
    """The ``l2`` of this project's mean loss that matches scikit-learn's ``C``.

    scikit-learn minimises ``C * sum(nll) + 0.5 * ||w||^2``; divided by ``C * n`` that is
    ``mean(nll) + 0.5 / (C * n) * ||w||^2``.

    >>> l2_from_c(1.0, 50_000)
    2e-05
    """
    check_positive("C", c)
    return 1.0 / (float(c) * num_examples)


def solve(
    x: ArrayLike,
    y: ArrayLike,
    l2: float = 0.0,
    *,
    method: str = "newton-cg",
    tol: float = 1e-4,
    max_iter: int | None = None,
    dtype: DTypeLike | None = None,
    init: Params | None = None,
    num_classes: int | None = None,
) -> SolveResult:
    """Minimises :func:`jax_softmax.loss` over the whole data set: the exact optimum.

    The objective is the mean negative log-likelihood plus ``0.5 * l2 * ||w||^2``, the
    biases not penalised (scikit-learn's ``C`` is ``l2 = 1 / (C * n)``, see
    :func:`l2_from_c`). The whole minimisation is one compiled program (a
    ``lax.while_loop``) that runs where the data lies: on the accelerator, or split
    over several devices when ``x`` and ``y`` are sharded along their first axis, the
    products then summing across devices.

    Args:
      x: inputs, ``[n, num_features]``, finite (a NumPy or JAX array; a sharded JAX
        array is solved where it lies).
      y: integer labels, ``[n]``, in ``[0, num_classes)``, every class present at least
        once (a class without examples has no finite optimum), at least two classes.
      l2: strength of the L2 penalty on the weights, finite and >= 0 (without it, data
        that a linear model separates has no optimum).
      method: ``"newton-cg"`` (Newton's method, the Hessian reached through the
        hand-derived product, :func:`jax_softmax.gradients.manual_hvp`) or ``"lbfgs"``
        (``optax.lbfgs`` with its zoom line search).
      tol: stop once the largest absolute gradient entry is at most this, > 0.
      max_iter: most outer iterations, >= 1; ``None`` for 100 (Newton-CG) or 1000 (L-BFGS).
      dtype: ``float32`` or ``float64``; ``None`` for ``x``'s floating dtype as JAX holds
        it (float64 only with ``jax_enable_x64``; float32 for integer ``x``). float64
        needs ``jax_enable_x64``.
      init: parameters to start from (a warm start); ``None`` for zeros.
      num_classes: the number of classes; ``None`` for ``max(y) + 1``.

    Returns:
      A :class:`SolveResult`. If the solver stopped before reaching ``tol``, it warns
      (:class:`NotConvergedWarning`), naming the gradient norm it reached.

    Raises:
      TypeError, ValueError: for malformed or non-finite data, labels out of range,
        fewer than two classes or a class without examples, a negative ``l2``, a ``tol``
        that is not positive, an unknown method, or an ``init`` of the wrong shape.

    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> result = solve(x, np.array([0, 0, 1, 1]), l2=0.1)
    >>> result.converged, round(result.objective, 4)
    (True, 0.2809)
    """
    method, tol, max_iter = _check_settings(method, tol, max_iter)
    dtype = _solve_dtype(x, dtype)
    x, y, num_classes = _check_data(x, y, num_classes)
    validation.check_l2(l2)
    if init is None:
        init = Params(jnp.zeros((x.shape[1], num_classes), dtype), jnp.zeros((num_classes,), dtype))
    else:
        init = _checked_init(init, x.shape[1], num_classes, dtype)
    params, value, grad_norm, iterations = _PROGRAMS[method](x, y, num_classes, l2, init, tol, max_iter)
    result = SolveResult(params, float(value), float(grad_norm), int(iterations), float(grad_norm) <= tol)
    if not result.converged:
        warnings.warn(
            f"{method} stopped after {result.iterations} iteration{'s' * (result.iterations != 1)} with "
            f"gradient norm {result.grad_norm:.3g}, above tol={tol:g}: raise max_iter, loosen tol, "
            "raise l2, or solve in float64",
            NotConvergedWarning,
            stacklevel=2,
        )
    return result


def _check_settings(method: Any, tol: Any, max_iter: Any) -> tuple[str, float, int]:
    check_choice("method", method, SOLVE_METHODS)
    check_positive("tol", tol)
    if max_iter is None:
        max_iter = DEFAULT_MAX_ITER[method]
    check_int("max_iter", max_iter, 1)
    return method, float(tol), int(max_iter)


def _solve_dtype(x: Any, dtype: Any) -> np.dtype:
    if dtype is None:
        kind = getattr(getattr(x, "dtype", None), "kind", None) or np.asarray(x).dtype.kind
        dtype = jax.dtypes.canonicalize_dtype(getattr(x, "dtype", np.float64)) if kind == "f" else np.float32
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype.name}")
    validation.check_dtype_enabled(dtype)
    return dtype


def _check_data(x: Any, y: Any, num_classes: int | None) -> tuple[Any, Any, int]:
    """``(x, y, num_classes)``, checked; JAX arrays stay where they are."""
    if not isinstance(x, jax.Array):
        x = np.asarray(x)
    if not isinstance(y, jax.Array):
        y = np.asarray(y)
    if getattr(x, "ndim", None) != 2:
        raise ValueError(f"x must be [n, num_features], got shape {tuple(np.shape(x))}")
    n = validation.check_inputs(x, x.shape[1])
    if num_classes is not None:
        check_int("num_classes", num_classes, 2)
    validation.check_labels(y, n, np.iinfo(np.int32).max if num_classes is None else num_classes)
    if num_classes is None:
        num_classes = int(np.max(y) if isinstance(y, np.ndarray) else jnp.max(y)) + 1
    _check_every_class_present(y, int(num_classes))
    return x, y, int(num_classes)


def _check_every_class_present(y: Any, num_classes: int) -> None:
    """Without an example of some class, that class's bias has no finite optimum: it only falls."""
    if isinstance(y, np.ndarray):
        counts = np.bincount(y.astype(np.int64), minlength=num_classes)
    else:  # a sharded y is counted where it lies
        counts = np.asarray(jnp.zeros(num_classes, jnp.int32).at[y].add(1))
    present = np.flatnonzero(counts)
    if len(present) < 2:
        raise ValueError(
            f"y must hold at least two classes, got only class {int(present[0])}: with one class there is "
            "no optimum (its bias grows without bound)"
        )
    missing = np.flatnonzero(counts == 0)
    if len(missing):
        raise ValueError(
            f"y has no example of class {int(missing[0])} of its {num_classes} classes "
            f"({len(missing)} class{'es' * (len(missing) != 1)} without examples): such a class's bias "
            "has no finite optimum; relabel the classes present as 0, 1, ..."
        )


def _checked_init(init: Any, num_features: int, num_classes: int, dtype: np.dtype) -> Params:
    features, classes = validation.check_params(init, "init")
    if (features, classes) != (num_features, num_classes):
        raise ValueError(
            f"init must have w of shape ({num_features}, {num_classes}) for this data, "
            f"got ({features}, {classes})"
        )
    return Params(jnp.asarray(init.w, dtype), jnp.asarray(init.b, dtype))


def _make_program(method: str):
    minimize = METHODS[method]

    def program(x, y, num_classes, l2, init, tol, max_iter):
        dtype = init.w.dtype
        x = jnp.asarray(x, dtype)
        onehot = jax.nn.one_hot(jnp.asarray(y), num_classes, dtype=dtype)
        l2, tol = jnp.asarray(l2, dtype), jnp.asarray(tol, dtype)
        params, value, grad, iterations = minimize(x, onehot, l2, init, tol, max_iter)
        centred = Params(params.w, params.b - jnp.mean(params.b))
        return centred, value, largest_entry(grad), iterations

    return jax.jit(program, static_argnums=(2,))


_PROGRAMS = {name: _make_program(name) for name in METHODS}
