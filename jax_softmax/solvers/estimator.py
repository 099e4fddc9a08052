"""``LogisticRegression``: a scikit-learn classifier whose ``fit`` is :func:`solve`.

It minimises scikit-learn's multinomial objective, ``C * sum(nll) + 0.5 * ||W||^2``
(the intercepts not penalised), which is :func:`solve`'s ``mean(nll) + 0.5 * l2 *
||W||^2`` with ``l2 = 1 / (C * n)``, and follows scikit-learn's conventions for the
rest: labels of any kind in ``classes_``, ``coef_`` ``[n_classes, n_features]``, one
coefficient row for two classes, and a ``ConvergenceWarning`` when the solver stops
short. scikit-learn is an optional dependency: ``pip install jax-softmax[sklearn]``.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import numpy as np

try:
    from scipy.special import log_softmax, softmax  # a dependency of scikit-learn
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"jax_softmax.LogisticRegression needs scikit-learn ({error}): pip install jax-softmax[sklearn]"
    ) from error

from jax_softmax._validation import x64
from jax_softmax.config import SOLVE_METHODS, check_choice, check_int, check_positive
from jax_softmax.solvers._solve import NotConvergedWarning, l2_from_c, solve

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # scikit-learn < 1.6: the same check as a method of the estimator

    def validate_data(estimator: BaseEstimator, /, *args: Any, **kwargs: Any) -> Any:
        """``estimator._validate_data(...)``, the form scikit-learn 1.3 to 1.5 provide."""
        return estimator._validate_data(*args, **kwargs)


# Float64 and float32 input are solved in their own precision; anything else becomes float64.
_DTYPES = [np.float64, np.float32]


class LogisticRegression(ClassifierMixin, BaseEstimator):
    """L2-regularised multinomial logistic regression, fitted exactly by :func:`solve`.

    The objective is scikit-learn's ``C * sum_i nll_i + 0.5 * ||W||^2`` over the whole
    training set, the intercepts not penalised, minimised in one compiled JAX program.
    float64 input is solved in float64 (inside a block with 64-bit JAX enabled; the
    global ``jax_enable_x64`` setting is left as it was), float32 input in float32, and
    any other numeric input as float64. The fitted attributes are NumPy arrays.

    Two classes: the 2-class multinomial objective is solved (a weight column and a
    penalty for each class), and the result is stored in scikit-learn's binary shapes:
    ``coef_`` ``[1, n_features]`` is ``w[:, 1] - w[:, 0]``, ``intercept_`` ``[1]`` is
    ``b[1] - b[0]``, and ``decision_function`` returns the log-odds of ``classes_[1]``,
    ``[n_samples]``. At the optimum ``w[:, 0] = -w[:, 1]``, so the penalty is ``0.25 *
    ||coef_||^2``: the same fit as scikit-learn's binary (binomial)
    ``LogisticRegression`` with ``C`` doubled.

    Args:
      C: inverse strength of the L2 penalty, a finite number > 0.
      tol: stop once the largest absolute entry of the gradient of the mean objective
        (``objective / (C * n)``, as scikit-learn's ``newton-cg`` and ``lbfgs``
        measure it) is at most this; a finite number > 0.
      max_iter: most solver iterations (Newton steps or L-BFGS steps), an integer >= 1.
      solver: ``"newton-cg"`` or ``"lbfgs"``.

    Attributes:
      classes_: the labels, sorted, ``[n_classes]``.
      coef_: weights, ``[n_classes, n_features]`` (``[1, n_features]`` for two classes),
        in the dtype the problem was solved in.
      intercept_: intercepts, ``[n_classes]`` (``[1]`` for two classes).
      n_iter_: the iterations the solver took, ``[1]`` (as scikit-learn).
      n_features_in_: the number of features seen in ``fit``.

    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> model = LogisticRegression(C=10.0).fit(x, ["low", "low", "high", "high"])
    >>> model.predict([[0.5], [2.5]]).tolist(), model.coef_.shape
    (['low', 'high'], (1, 1))
    """

    def __init__(self, C: float = 1.0, tol: float = 1e-4, max_iter: int = 100, solver: str = "newton-cg"):
        self.C = C
        self.tol = tol
        self.max_iter = max_iter
        self.solver = solver

    def fit(self, X: Any, y: Any) -> LogisticRegression:
        """Fits the model to the whole training set.

        Args:
          X: inputs, ``[n_samples, n_features]``, finite and numeric.
          y: labels, ``[n_samples]``, of any kind (numbers, strings); at least two classes.

        Returns:
          ``self``, fitted. Warns ``sklearn.exceptions.ConvergenceWarning`` when the
          solver stopped before the gradient fell to ``tol``.

        Raises:
          ValueError: for ``C``, ``tol``, ``max_iter`` or ``solver`` out of range (naming
            it), non-finite or empty ``X``, ``y`` of another length or continuous, or
            fewer than two classes.
        """
        self._check_hyperparameters()
        X, y = validate_data(self, X, y, dtype=_DTYPES)
        check_classification_targets(y)
        classes, labels = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"y must hold at least two classes, got 1 class ({classes[0]!r}): with one class there "
                "is nothing to learn"
            )
        weights, biases, iterations = self._solve(X, labels.astype(np.int32), len(classes))
        if len(classes) == 2:  # scikit-learn's binary form: the log-odds of classes[1]
            weights = weights[:, 1:] - weights[:, :1]
            biases = biases[1:] - biases[:1]
        self.classes_ = classes
        self.coef_ = np.ascontiguousarray(weights.T)
        self.intercept_ = biases
        self.n_iter_ = np.array([iterations], dtype=np.int32)
        return self

    def _check_hyperparameters(self) -> None:
        """Raises ValueError naming the first hyperparameter out of range."""
        check_positive("C", self.C)
        check_positive("tol", self.tol)
        check_int("max_iter", self.max_iter, 1)
        check_choice("solver", self.solver, SOLVE_METHODS)

    def _solve(
        self, X: np.ndarray, labels: np.ndarray, num_classes: int
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """``(w [n_features, n_classes], b [n_classes], iterations)`` as NumPy arrays in ``X``'s dtype."""
        precision = x64() if X.dtype == np.float64 else contextlib.nullcontext()
        with precision, warnings.catch_warnings():
            warnings.simplefilter("ignore", NotConvergedWarning)  # warned below, in scikit-learn's terms
            result = solve(
                X,
                labels,
                l2_from_c(self.C, X.shape[0]),
                method=self.solver,
                tol=float(self.tol),
                max_iter=int(self.max_iter),
                dtype=X.dtype,
                num_classes=num_classes,
            )
            weights, biases = np.asarray(result.params.w), np.asarray(result.params.b)
        if not result.converged:
            warnings.warn(
                f"LogisticRegression(solver={self.solver!r}) did not converge: after {result.iterations} "
                f"iterations the largest gradient entry is {result.grad_norm:.3g}, above tol={self.tol:g}. "
                "Raise max_iter, scale the data (StandardScaler), lower C, or fit float64 data.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return weights, biases, result.iterations

    def decision_function(self, X: Any) -> np.ndarray:
        """Logits ``X @ coef_.T + intercept_``, ``[n_samples, n_classes]``.

        For two classes, the log-odds of ``classes_[1]``, ``[n_samples]``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=_DTYPES)
        scores = X @ self.coef_.T + self.intercept_
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict(self, X: Any) -> np.ndarray:
        """The most probable label of each row of ``X``, ``[n_samples]`` (ties: the first class)."""
        best = np.argmax(self._logits(X), axis=1)  # first: it raises NotFittedError before fit
        return self.classes_[best]

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log-probabilities of each class, ``[n_samples, n_classes]``, from ``log_softmax``."""
        return log_softmax(self._logits(X), axis=1)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities of each class, ``[n_samples, n_classes]``, columns in ``classes_``' order."""
        return softmax(self._logits(X), axis=1)

    def _logits(self, X: Any) -> np.ndarray:
        """``[n_samples, n_classes]``: for two classes ``[0, log-odds]``, which softmax reads the same."""
        scores = self.decision_function(X)
        return np.stack([np.zeros_like(scores), scores], axis=1) if scores.ndim == 1 else scores
