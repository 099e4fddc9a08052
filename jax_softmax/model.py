"""The softmax-regression model: parameters, logits, loss and predictions.

Everything here is a pure function of a :class:`Params` pytree, so it can be
jitted, differentiated, vmapped and sharded without change.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from jax_softmax import _validation as validation

# Full float32 products on every backend: GPUs and TPUs otherwise default to
# reduced-precision (TF32 / bfloat16) passes, which would hide the agreement
# between the manual and the automatic gradient behind rounding noise.
PRECISION = jax.lax.Precision.HIGHEST


class Params(NamedTuple):
    """Parameters of a softmax-regression model.

    Attributes:
      w: weights, ``[num_features, num_classes]``.
      b: biases, ``[num_classes]``.
    """

    w: jax.Array
    b: jax.Array


def init_params(
    key: jax.Array,
    num_features: int = 784,
    num_classes: int = 10,
    *,
    scale: float = 0.01,
    dtype: DTypeLike = jnp.float32,
) -> Params:
    """Draws weights from ``N(0, scale**2)`` and sets the biases to zero.

    Args:
      key: a PRNG key.
      num_features: input dimension (784 for MNIST).
      num_classes: number of classes (10 for MNIST).
      scale: standard deviation of the weights; 0 gives all-zero weights.
      dtype: floating dtype of the parameters.

    Returns:
      ``Params`` with ``w`` of shape ``[num_features, num_classes]`` and ``b`` of
      shape ``[num_classes]``.

    Raises:
      ValueError: for a non-positive size or a negative or non-finite scale.
      TypeError: for a non-floating dtype.

    >>> p = init_params(jax.random.key(0), 4, 3, scale=0.0)
    >>> p.w.shape, p.b.shape, float(p.w.sum())
    ((4, 3), (3,), 0.0)
    """
    for name, value in (("num_features", num_features), ("num_classes", num_classes)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not math.isfinite(scale) or scale < 0:  # math, not jnp: no compiled program, and jit-safe
        raise ValueError(f"scale must be finite and >= 0, got {scale!r}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype must be a floating dtype, got {jnp.dtype(dtype).name}")
    # The barrier keeps the weights the same bits under jit as eagerly: XLA would fold
    # ``scale`` into the draw's own last multiplication, rounding differently.
    w = scale * jax.lax.optimization_barrier(jax.random.normal(key, (num_features, num_classes), dtype))
    return Params(w=w.astype(dtype), b=jnp.zeros((num_classes,), dtype))


def logits(params: Params, x: ArrayLike) -> jax.Array:
    """Unnormalised log-probabilities ``z = x w + b``.

    Args:
      params: model parameters.
      x: inputs, ``[batch, num_features]``, floating (or integer, such as uint8
        pixels); converted to the parameters' dtype.

    Returns:
      ``[batch, num_classes]`` logits in the parameters' dtype.

    Raises:
      TypeError, ValueError: for malformed parameters or inputs, or NaN/inf inputs,
        naming the argument (see :mod:`jax_softmax._validation`).
    """
    validation.check_batch(params, x)
    return unchecked_logits(params, x)


def unchecked_logits(params: Params, x: ArrayLike) -> jax.Array:
    x = jnp.asarray(x, params.w.dtype)
    return jnp.matmul(x, params.w, precision=PRECISION) + params.b[None, :]


def loss(params: Params, x: ArrayLike, y: ArrayLike, l2: ArrayLike = 0.0) -> jax.Array:
    """Mean negative log-likelihood of the labels, plus ``l2 / 2 * ||w||^2``.

    The log-probabilities come from ``jax.nn.log_softmax``, which subtracts the
    largest logit before exponentiating: the loss stays finite for any finite
    logits, however large.

    Args:
      params: model parameters.
      x: inputs, ``[batch, num_features]``.
      y: integer labels, ``[batch]``, each in ``[0, num_classes)``.
      l2: strength of the L2 penalty on the weights (not the biases), finite and >= 0.

    Returns:
      The scalar loss.

    Raises:
      TypeError, ValueError: for malformed arguments, NaN/inf inputs, labels out
        of range or a negative ``l2``, naming the argument.

    >>> p = init_params(jax.random.key(0), 2, 4, scale=0.0)
    >>> round(float(loss(p, jnp.ones((3, 2)), jnp.array([0, 1, 2]))), 6)  # log(4)
    1.386294
    """
    validation.check_batch(params, x, y, l2)
    return unchecked_loss(params, x, y, l2)


def unchecked_loss(params: Params, x: ArrayLike, y: ArrayLike, l2: ArrayLike = 0.0) -> jax.Array:
    log_p = jax.nn.log_softmax(unchecked_logits(params, x), axis=-1)
    nll = -jnp.take_along_axis(log_p, jnp.asarray(y)[:, None], axis=-1)
    if is_literal_zero(l2):
        return jnp.mean(nll)
    return jnp.mean(nll) + 0.5 * l2 * jnp.sum(params.w * params.w)


def is_literal_zero(l2: ArrayLike) -> bool:
    """Whether ``l2`` is a Python (or NumPy scalar) zero, known before tracing.

    Such a penalty is left out of the computation rather than multiplied by zero:
    XLA may not drop ``0 * sum(w * w)`` (it is NaN for infinite weights), and the dead
    term sits between the gradient's matrix product and the training step's update,
    where it keeps XLA's CPU backend from choosing the product's faster form.
    """
    return isinstance(l2, (int, float)) and l2 == 0


def predict(params: Params, x: ArrayLike) -> jax.Array:
    """Most probable class of each input.

    Args:
      params: model parameters.
      x: inputs, ``[batch, num_features]``.

    Returns:
      ``[batch]`` int32 class indices.

    Raises:
      TypeError, ValueError: for malformed parameters or inputs, or NaN/inf inputs.
    """
    validation.check_batch(params, x)
    return _predict(params, x)


def _predict(params: Params, x: ArrayLike) -> jax.Array:
    return jnp.argmax(unchecked_logits(params, x), axis=-1).astype(jnp.int32)


def accuracy(params: Params, x: ArrayLike, y: ArrayLike) -> jax.Array:
    """Fraction of inputs whose most probable class is the label.

    Args:
      params: model parameters.
      x: inputs, ``[batch, num_features]``.
      y: integer labels, ``[batch]``, each in ``[0, num_classes)``.

    Returns:
      A scalar in ``[0, 1]``.

    Raises:
      TypeError, ValueError: for malformed arguments, NaN/inf inputs or labels out of range.
    """
    validation.check_batch(params, x, y)
    return jnp.mean(_predict(params, x) == jnp.asarray(y))
