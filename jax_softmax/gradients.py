"""Gradients of the loss, by hand and by ``jax.grad``, and the update step.

The manual gradient follows from the derivation. With ``z = x w + b`` and
``P = softmax(z)``, the loss of one example is ``-log P[y] = -z[y] + logsumexp(z)``,
so ``dL/dz = P - onehot(y)``. The chain rule through ``z = x w + b`` gives, for a
batch ``B``::

    dL/dw = x^T (P - onehot(y)) / |B|  (+ l2 * w)
    dL/db = mean over the batch of (P - onehot(y))

Gradient descent *subtracts* this: ``w <- w - lr * dL/dw``. Subtracting
``x^T (onehot(y) - P)`` instead is a step up the loss.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jax_softmax import _validation as validation
from jax_softmax.config import GRAD_MODES
from jax_softmax.model import PRECISION, Params, is_literal_zero, loss, unchecked_logits, unchecked_loss

if TYPE_CHECKING:
    import optax

GradMode = Literal["autodiff", "manual"]


def manual_value_and_grad(
    params: Params, x: ArrayLike, y: ArrayLike, l2: ArrayLike = 0.0
) -> tuple[jax.Array, Params]:
    """The loss and its gradient in closed form, sharing one forward pass.

    Args:
      params: model parameters.
      x: inputs, ``[batch, num_features]``.
      y: integer labels, ``[batch]``.
      l2: strength of the L2 penalty on the weights.

    Returns:
      ``(loss, grads)`` with ``grads`` shaped like ``params``.

    Raises:
      TypeError, ValueError: for malformed arguments, NaN/inf inputs, labels out
        of range or a negative ``l2``, naming the argument.
    """
    validation.check_batch(params, x, y, l2)
    return _manual_value_and_grad(params, x, y, l2)


def _manual_value_and_grad(
    params: Params, x: ArrayLike, y: ArrayLike, l2: ArrayLike
) -> tuple[jax.Array, Params]:
    x = jnp.asarray(x, params.w.dtype)
    y = jnp.asarray(y)
    z = unchecked_logits(params, x)
    log_p = jax.nn.log_softmax(z, axis=-1)
    num_classes = z.shape[-1]
    onehot = jax.nn.one_hot(y, num_classes, dtype=z.dtype)
    batch = z.shape[0]
    value = -jnp.sum(onehot * log_p) / batch
    delta = (jnp.exp(log_p) - onehot) / batch
    grad_w = jnp.matmul(x.T, delta, precision=PRECISION)
    if not is_literal_zero(l2):
        value = value + 0.5 * l2 * jnp.sum(params.w * params.w)
        grad_w = grad_w + l2 * params.w
    grad_b = jnp.sum(delta, axis=0)
    return value, Params(w=grad_w, b=grad_b)


def manual_grad(params: Params, x: ArrayLike, y: ArrayLike, l2: ArrayLike = 0.0) -> Params:
    """Gradient of :func:`jax_softmax.loss` from the closed form, without autodiff.

    Args:
      params: model parameters.
      x: inputs, ``[batch, num_features]``.
      y: integer labels, ``[batch]``.
      l2: strength of the L2 penalty on the weights.

    Returns:
      ``Params`` of gradients: ``w`` ``[num_features, num_classes]``, ``b`` ``[num_classes]``.

    Raises:
      TypeError, ValueError: as :func:`jax_softmax.loss`.
    """
    validation.check_batch(params, x, y, l2)
    return _manual_value_and_grad(params, x, y, l2)[1]


def autodiff_grad(params: Params, x: ArrayLike, y: ArrayLike, l2: ArrayLike = 0.0) -> Params:
    """Gradient of :func:`jax_softmax.loss` by ``jax.grad``; same shapes as ``params``.

    Raises:
      TypeError, ValueError: as :func:`jax_softmax.loss`.
    """
    validation.check_batch(params, x, y, l2)
    return jax.grad(unchecked_loss)(params, x, y, l2)


def value_and_grad_fn(grad: GradMode) -> Callable[..., tuple[jax.Array, Params]]:
    """``(params, x, y, l2) -> (loss, grads)`` for the chosen gradient mode."""
    if grad == "autodiff":
        return jax.value_and_grad(loss)
    if grad == "manual":
        return manual_value_and_grad
    raise ValueError(f"grad must be one of {GRAD_MODES}, got {grad!r}")


def _optax():
    """optax, imported only where an optimizer other than plain SGD is used (it takes ~0.1 s)."""
    import optax

    return optax


OPTIMIZERS: dict[str, Callable[[float], optax.GradientTransformation]] = {
    "momentum": lambda lr: _optax().sgd(lr, momentum=0.9),
    "nesterov": lambda lr: _optax().sgd(lr, momentum=0.9, nesterov=True),
    "adam": lambda lr: _optax().adam(lr),
    "adamw": lambda lr: _optax().adamw(lr),
    "adagrad": lambda lr: _optax().adagrad(lr),
    "rmsprop": lambda lr: _optax().rmsprop(lr),
}
"""Optimizers other than plain SGD, by name, each built from a learning rate."""


def make_optimizer(name: str, lr: float) -> optax.GradientTransformation | None:
    """The optax optimizer called ``name``, or ``None`` for plain SGD (``"sgd"``).

    Raises:
      ValueError: for an unknown name.
    """
    if name == "sgd":
        return None
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {('sgd', *OPTIMIZERS)}, got {name!r}")
    return OPTIMIZERS[name](lr)


def train_step(
    params: Params,
    opt_state: optax.OptState,
    x: ArrayLike,
    y: ArrayLike,
    lr: ArrayLike,
    *,
    grad: GradMode = "autodiff",
    optimizer: optax.GradientTransformation | None = None,
    l2: ArrayLike = 0.0,
    weights_transposed: bool = False,
) -> tuple[Params, optax.OptState, jax.Array]:
    """One step of mini-batch gradient descent: the step :func:`make_update` compiles
    and every epoch of :func:`jax_softmax.fit` scans.

    Plain SGD (``optimizer=None``) computes ``params - lr * grad``; an optax optimizer
    computes its update from the gradient and its state. A pure function: nothing is
    checked here (see :func:`make_update` for the checked, compiled step).

    With ``weights_transposed`` the weights come and go as ``w^T``, ``[num_classes,
    num_features]``, and the SGD update is applied in that layout. The loss and the
    gradient are the same; XLA then computes the weight gradient as ``delta^T x``,
    which its CPU backend does about 1.7 times as fast as ``x^T delta`` for MNIST's
    shapes, so the epoch carries the weights this way through its scan.

    Args:
      params: model parameters (with ``w`` transposed if ``weights_transposed``).
      opt_state: the optimizer's state (``()`` for plain SGD).
      x: inputs, ``[batch, num_features]``.
      y: integer labels, ``[batch]``.
      lr: the learning rate of plain SGD (an optax optimizer holds its own).
      grad: ``"autodiff"`` or ``"manual"``.
      optimizer: an optax optimizer, or ``None`` for plain SGD.
      l2: strength of the L2 penalty on the weights.
      weights_transposed: ``params.w`` is ``w^T``; plain SGD only.

    Returns:
      ``(params, opt_state, loss)``: the updated parameters and state, and the batch's
      loss before the update.
    """
    if weights_transposed and optimizer is not None:
        raise ValueError("weights_transposed is for plain SGD only")
    w = params.w.T if weights_transposed else params.w
    value, grads = value_and_grad_fn(grad)(Params(w, params.b), x, y, l2)
    if optimizer is None:
        grad_w = grads.w.T if weights_transposed else grads.w
        new = Params(
            (params.w - lr * grad_w).astype(params.w.dtype), (params.b - lr * grads.b).astype(params.b.dtype)
        )
        return new, opt_state, value
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return _optax().apply_updates(params, updates), opt_state, value


def make_update(
    grad: GradMode = "autodiff",
    optimizer: optax.GradientTransformation | None = None,
    *,
    l2: float = 0.0,
) -> Callable:
    """A jit-compiled training step: :func:`train_step` with its arguments checked.

    With ``optimizer=None`` the step is plain SGD,
    ``step(params, x, y, lr) -> params`` with ``params - lr * grad``. With an optax
    ``GradientTransformation`` the optimizer's state is threaded explicitly:
    ``step(params, opt_state, x, y) -> (params, opt_state)``, with the state from
    ``optimizer.init(params)``. Either step compiles once per input shape and dtype.

    The step checks its arguments before it enters the compiled code, like
    :func:`jax_softmax.loss` (and ``lr``: a finite scalar > 0), raising
    ``TypeError``/``ValueError``; ``step.__wrapped__`` is the compiled step without
    the checks, for callers that have checked their data already. The first time
    ``x`` looks like raw 0-255 pixels, it warns (``RawPixelsWarning``), naming the fix.

    Args:
      grad: ``"autodiff"`` (``jax.grad``) or ``"manual"`` (the closed form).
      optimizer: an optax optimizer, or ``None`` for plain SGD.
      l2: strength of the L2 penalty on the weights, finite and >= 0.

    Raises:
      ValueError: for an unknown gradient mode or a negative or non-finite ``l2``.
      TypeError: for an optimizer that is not an optax ``GradientTransformation``.
    """
    validation.check_l2(l2)
    if optimizer is not None and not isinstance(optimizer, _optax().GradientTransformation):
        raise TypeError(
            f"optimizer must be an optax GradientTransformation or None, got {type(optimizer).__name__}"
        )
    if grad not in GRAD_MODES:
        raise ValueError(f"grad must be one of {GRAD_MODES}, got {grad!r}")
    step = functools.partial(train_step, grad=grad, optimizer=optimizer, l2=l2)
    warned = []  # the raw-pixel warning is given once per step function

    def check_pixels(x: ArrayLike) -> None:
        if not warned and validation.looks_like_raw_pixels(x):
            warned.append(True)
            validation.warn_raw_pixels("x", stacklevel=3)

    if optimizer is None:

        @jax.jit
        def sgd_step(params: Params, x: ArrayLike, y: ArrayLike, lr: ArrayLike) -> Params:
            return step(params, (), x, y, lr)[0]

        @functools.wraps(sgd_step)
        def checked_sgd_step(params: Params, x: ArrayLike, y: ArrayLike, lr: ArrayLike) -> Params:
            validation.check_batch(params, x, y)
            validation.check_learning_rate(lr)
            check_pixels(x)
            return sgd_step(params, x, y, lr)

        return checked_sgd_step

    @jax.jit
    def optax_step(params: Params, opt_state, x: ArrayLike, y: ArrayLike):
        return step(params, opt_state, x, y, None)[:2]

    @functools.wraps(optax_step)
    def checked_optax_step(params: Params, opt_state, x: ArrayLike, y: ArrayLike):
        validation.check_batch(params, x, y)
        check_pixels(x)
        return optax_step(params, opt_state, x, y)

    return checked_optax_step
