"""How well a model does: its loss and accuracy on a data set, its probabilities, confusion matrix
and per-class report."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jax_softmax.data import pixel_features
from jax_softmax.model import Params, logits, loss, predict


@jax.jit
def evaluate(params: Params, x: ArrayLike, y: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Mean negative log-likelihood and accuracy of ``params`` on ``(x, y)``.

    Args:
      params: model parameters.
      x: inputs, ``[n, num_features]``.
      y: integer labels, ``[n]``.

    Returns:
      ``(loss, accuracy)``, two scalars.
    """
    z = logits(params, x)
    return loss(params, x, y), jnp.mean(jnp.argmax(z, axis=-1) == y)


EVALUATION_CHUNK = 1_000
"""Rows whose logits :func:`evaluate_pixels` computes at a time."""


@jax.jit
def evaluate_pixels(params: Params, pixels: ArrayLike, y: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """:func:`evaluate` on uint8 pixels ``[n, num_features]``, scaled by :func:`pixel_features`.

    The logits are computed :data:`EVALUATION_CHUNK` rows at a time, so that the
    float features never exist for all ``n`` rows at once (31 MB for MNIST's test
    set); on XLA's CPU backend the results are the bits :func:`evaluate` gives on
    the features.

    Returns:
      ``(loss, accuracy)``, two scalars.
    """
    pixels = jnp.asarray(pixels)
    n = pixels.shape[0]
    whole = n - n % EVALUATION_CHUNK

    def chunk_logits(rows: jax.Array) -> jax.Array:
        return logits(params, pixel_features(rows, params.w.dtype))

    parts = []
    if whole:
        chunks = pixels[:whole].reshape(whole // EVALUATION_CHUNK, EVALUATION_CHUNK, -1)
        parts.append(jax.lax.map(chunk_logits, chunks).reshape(whole, -1))
    if whole < n:
        parts.append(chunk_logits(pixels[whole:]))
    z = jnp.concatenate(parts)
    nll = -jnp.take_along_axis(jax.nn.log_softmax(z, axis=-1), jnp.asarray(y)[:, None], axis=-1)
    return jnp.mean(nll), jnp.mean(jnp.argmax(z, axis=-1) == y)


@jax.jit
def class_probabilities(params: Params, x: ArrayLike) -> jax.Array:
    """Probability of each class, ``exp(log_softmax(z))``, ``[batch, num_classes]``.

    >>> p = Params(w=jnp.zeros((2, 4)), b=jnp.zeros(4))
    >>> class_probabilities(p, jnp.ones((1, 2))).tolist()
    [[0.25, 0.25, 0.25, 0.25]]
    """
    return jnp.exp(jax.nn.log_softmax(logits(params, x), axis=-1))


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Args:
      y_true: labels, ``[n]`` int in ``[0, num_classes)``.
      y_pred: predictions, ``[n]`` int in ``[0, num_classes)``.
      num_classes: number of classes.

    Returns:
      int64 ``[num_classes, num_classes]``: row ``i``, column ``j`` counts the
      examples of class ``i`` predicted as ``j``.

    Raises:
      ValueError: for mismatched shapes or a class outside ``[0, num_classes)``.

    >>> confusion_matrix([0, 1, 1], [0, 1, 0], 2).tolist()
    [[1, 0], [1, 1]]
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must both be [n], got {y_true.shape} and {y_pred.shape}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]")
    counts = np.bincount(y_true.astype(np.int64) * num_classes + y_pred, minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes)


@dataclasses.dataclass(frozen=True)
class Report:
    """How a model does on a labelled set.

    Attributes:
      accuracy: fraction classified correctly.
      nll: mean negative log-likelihood of the labels (nats).
      precision: ``[num_classes]``: of the examples predicted as class ``k``, the
        fraction that are ``k`` (NaN when none is predicted as ``k``).
      recall: ``[num_classes]``: of the examples of class ``k``, the fraction
        predicted as ``k`` (NaN when the set has none).
      confusion: int64 ``[num_classes, num_classes]``, rows true, columns predicted.
    """

    accuracy: float
    nll: float
    precision: np.ndarray
    recall: np.ndarray
    confusion: np.ndarray

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values; NaN becomes ``None``."""

        def clean(values):
            return [None if math.isnan(v) else float(v) for v in values]

        return {
            "accuracy": self.accuracy,
            "nll": self.nll,
            "precision": clean(self.precision),
            "recall": clean(self.recall),
            "support": self.confusion.sum(axis=1).tolist(),
            "confusion": self.confusion.tolist(),
        }


def classification_report(params: Params, x: ArrayLike, y: ArrayLike) -> Report:
    """Accuracy, mean NLL, per-class precision and recall, and the confusion matrix.

    Args:
      params: model parameters, ``w`` ``[num_features, num_classes]``.
      x: inputs, ``[n, num_features]``.
      y: integer labels, ``[n]``.

    Returns:
      A :class:`Report`.

    Raises:
      ValueError: for inputs of the wrong width or labels outside the classes.
    """
    x, y = np.asarray(x), np.asarray(y)
    num_features, num_classes = params.w.shape
    if x.ndim != 2 or x.shape[1] != num_features:
        raise ValueError(f"x must be [n, {num_features}], got shape {x.shape}")
    confusion = confusion_matrix(y, np.asarray(predict(params, x)), num_classes)  # checks the labels
    nll, accuracy = evaluate(params, x, y)
    correct = np.diag(confusion).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = correct / confusion.sum(axis=0)
        recall = correct / confusion.sum(axis=1)
    return Report(float(accuracy), float(nll), precision, recall, confusion)


def format_report(report: Report) -> str:
    """The report as a table for a terminal: totals, per-class figures, confusion matrix."""
    k = len(report.recall)
    lines = [
        f"accuracy {100 * report.accuracy:.2f}%  mean NLL {report.nll:.4f}  "
        f"({report.confusion.sum()} examples)",
        "",
        "class  precision   recall  support",
    ]
    support = report.confusion.sum(axis=1)
    for c in range(k):
        lines.append(
            f"{c:>5}  {100 * report.precision[c]:8.2f}%  {100 * report.recall[c]:6.2f}%  {support[c]:7d}"
        )
    width = max(5, len(str(report.confusion.max())) + 1)
    lines += ["", "confusion matrix (rows: true class, columns: predicted)"]
    lines.append("true\\pred" + "".join(f"{c:>{width}}" for c in range(k)))
    for c in range(k):
        lines.append(f"{c:>9}" + "".join(f"{v:>{width}}" for v in report.confusion[c]))
    return "\n".join(lines)
