"""Gradients of the loss, by hand and by ``jax.grad``, and the update step.

The manual gradient follows from the derivation. With ``z = x w + b`` and
``P = softmax(z)``, the loss of one example is ``-log P[y] = -z[y] + logsumexp(z)``,
so ``dL/dz = P - onehot(y)``. The chain rule through ``z = x w + b`` gives, for a
batch ``B``::

    dL/dw = x^T (P - onehot(y)) / |B|  (+ l2 * w)
    dL/db = mean over the batch of (P - onehot(y))

Gradient descent *subtracts* this: ``w <- w - lr * dL/dw``. Subtracting
``x^T (onehot(y) - P)`` instead is a step up the loss.

One derivative further, the Hessian-vector product along a direction ``v = (v_w, v_b)``
follows by differentiating ``P - onehot(y)`` along ``v``. The logits move by
``dz = x v_w + v_b`` and, since ``dP_k / dz_j = P_k (delta_kj - P_j)``, the probabilities
by ``dP = P * (dz - sum_j P_j dz_j)`` (row by row), so::

    (H v)_w = x^T dP / |B|  (+ l2 * v_w)
    (H v)_b = mean over the batch of dP

Newton's method (:func:`jax_softmax.solve`) needs nothing else of the Hessian.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jax_softmax import _validation as validation
from jax_softmax.config import GRAD_MODES, OPTIMIZER_NAMES, check_choice
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
    z = unchecked_logits(params, x)
    onehot = jax.nn.one_hot(jnp.asarray(y), z.shape[-1], dtype=z.dtype)
    value, grads, _ = value_grad_and_probs(params, x, onehot, z, l2)
    return value, grads


def value_grad_and_probs(
    params: Params, x: jax.Array, onehot: jax.Array, z: jax.Array, l2: ArrayLike
) -> tuple[jax.Array, Params, jax.Array]:
    """The loss, its gradient and the probabilities from the logits ``z = x w + b``, unchecked.

    The solver, which moves the logits along a line itself, calls it with ``z`` at hand.
    """
    log_p = jax.nn.log_softmax(z, axis=-1)
    batch = z.shape[0]
    value = -jnp.sum(onehot * log_p) / batch
    probs = jnp.exp(log_p)
    delta = (probs - onehot) / batch
    grad_w = jnp.matmul(x.T, delta, precision=PRECISION)
    if not is_literal_zero(l2):
        value = value + 0.5 * l2 * jnp.sum(params.w * params.w)
        grad_w = grad_w + l2 * params.w
    grad_b = jnp.sum(delta, axis=0)
    return value, Params(w=grad_w, b=grad_b), probs


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


def manual_hvp(params: Params, x: ArrayLike, y: ArrayLike, direction: Params, l2: ArrayLike = 0.0) -> Params:
    """Hessian of :func:`jax_softmax.loss` times ``direction``, in closed form, without autodiff.

    Args:
      params: model parameters, where the Hessian is taken.
      x: inputs, ``[batch, num_features]``.
      y: integer labels, ``[batch]`` (the Hessian of this loss does not depend on them,
        but they are checked as the loss checks them).
      direction: a ``Params`` shaped like ``params``.
      l2: strength of the L2 penalty on the weights.

    Returns:
      ``Params`` shaped like ``params``: ``H @ direction``.

    Raises:
      TypeError, ValueError: as :func:`jax_softmax.loss`, and for a direction whose
        shapes differ from the parameters'.

    >>> p = Params(jnp.zeros((1, 2)), jnp.zeros(2))
    >>> hv = manual_hvp(p, jnp.ones((1, 1)), jnp.array([0]), Params(jnp.ones((1, 2)), jnp.zeros(2)))
    >>> hv.w.tolist()  # uniform probabilities move together: no curvature along (1, 1)
    [[0.0, 0.0]]
    """
    validation.check_batch(params, x, y, l2)
    validation.check_direction(direction, params)
    x = jnp.asarray(x, params.w.dtype)
    probs = jax.nn.softmax(unchecked_logits(params, x), axis=-1)
    return curvature_product(x, probs, direction, l2)


def curvature_product(x: jax.Array, probs: jax.Array, direction: Params, l2: ArrayLike) -> Params:
    """``H v`` from the batch's probabilities ``probs`` ``[batch, num_classes]``, unchecked.

    The solver keeps ``probs`` across many products at the same parameters.
    """
    dz = jnp.matmul(x, direction.w, precision=PRECISION) + direction.b[None, :]
    weighted = probs * dz
    dp = (weighted - probs * jnp.sum(weighted, axis=-1, keepdims=True)) / x.shape[0]
    hv_w = jnp.matmul(x.T, dp, precision=PRECISION)
    if not is_literal_zero(l2):
        hv_w = hv_w + l2 * direction.w
    return Params(w=hv_w, b=jnp.sum(dp, axis=0))


def autodiff_hvp(
    params: Params, x: ArrayLike, y: ArrayLike, direction: Params, l2: ArrayLike = 0.0
) -> Params:
    """Hessian of :func:`jax_softmax.loss` times ``direction`` by ``jax.jvp`` of ``jax.grad``.

    Raises:
      TypeError, ValueError: as :func:`manual_hvp`.
    """
    validation.check_batch(params, x, y, l2)
    validation.check_direction(direction, params)
    grad = jax.grad(unchecked_loss)
    return jax.jvp(lambda p: grad(p, x, y, l2), (params,), (direction,))[1]


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
    check_choice("grad", grad, GRAD_MODES)
    return manual_value_and_grad


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
    check_choice("optimizer", name, OPTIMIZER_NAMES)
    return None if name == "sgd" else OPTIMIZERS[name](lr)


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
    check_choice("grad", grad, GRAD_MODES)
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
