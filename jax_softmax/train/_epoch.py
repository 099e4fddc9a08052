"""One epoch: a compiled ``lax.scan`` of the update step over a fresh permutation of the data."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

from jax_softmax.data import pixel_features
from jax_softmax.gradients import GradMode, train_step
from jax_softmax.model import Params
from jax_softmax.train._fast import shuffled_indices
from jax_softmax.train.nonfinite import all_finite, scan_until_nonfinite, summarize_steps

if TYPE_CHECKING:
    import optax


@jax.jit
def split_key(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``jax.random.split(key)`` as two keys: the next shuffling key and this epoch's."""
    first, second = jax.random.split(key)
    return first, second


def train_epoch(
    params: Params,
    opt_state: optax.OptState,
    key: jax.Array,
    x: jax.Array,
    y: jax.Array,
    lr: jax.Array,
    *,
    batch_size: int,
    grad: GradMode,
    optimizer: optax.GradientTransformation | None,
    l2: float,
    stop_at_nonfinite: bool = False,
    batch_sharding: jax.sharding.Sharding | None = None,
    uint8_pixels: bool = False,
) -> tuple:
    """One pass of mini-batch gradient descent over a fresh permutation of ``(x, y)``.

    A pure function, written to be jitted (with the keyword arguments static) and
    vmapped over models. The batches are gathered from ``x`` by index inside one
    ``lax.scan``, so the data set is never copied; the remainder batch of
    ``n % batch_size`` examples is dropped.

    Each step is :func:`jax_softmax.gradients.train_step`, the step that
    :func:`jax_softmax.make_update` compiles; plain SGD carries the weights transposed
    through the scan, as that function describes.

    Args:
      params: model parameters.
      opt_state: the optimizer's state (``()`` for plain SGD).
      key: PRNG key for this epoch's order.
      x: inputs, ``[n, num_features]`` in the parameters' dtype.
      y: int32 labels, ``[n]``.
      lr: the learning rate, a scalar (used by plain SGD; optax optimizers hold theirs).
      batch_size: examples per step, at most ``n``.
      grad: ``"autodiff"`` or ``"manual"``.
      optimizer: an optax optimizer, or ``None`` for plain SGD.
      l2: strength of the L2 penalty on the weights.
      stop_at_nonfinite: run the scan through
        :func:`jax_softmax.train.nonfinite.scan_until_nonfinite`: from the first step whose
        loss, parameters or optimizer state is not finite, no update is applied.
      batch_sharding: how to split each mini-batch over devices: a sharding of the
        epoch's ``[num_batches, batch_size]`` example indices, such as
        :attr:`jax_softmax.distributed.DataParallel.batch_indices`. Each device then
        gathers and differentiates its own rows of every batch, and the partitioned
        program sums the gradients across devices. ``None``: no constraint.
      uint8_pixels: ``x`` holds uint8 pixels; each batch is scaled to the parameters'
        dtype by :func:`pixel_features` as it is gathered.

    Returns:
      ``(params, opt_state, mean_loss)``: the mean of the mini-batch losses. With
      ``stop_at_nonfinite``, ``(params, opt_state, mean_loss, first_bad_step,
      losses)``: the last finite parameters and state, the mean of the finite steps'
      losses, the 1-based first non-finite step (0 for none) and every step's loss,
      ``[num_batches]``.
    """

    def batch(batch_idx, dtype):
        return pixel_features(x[batch_idx], dtype) if uint8_pixels else x[batch_idx]

    num_batches = x.shape[0] // batch_size
    order = shuffled_indices(key, x.shape[0])[: num_batches * batch_size]
    order = order.reshape(num_batches, batch_size)
    if batch_sharding is not None:
        order = jax.lax.with_sharding_constraint(order, batch_sharding)
    # Plain SGD carries the weights transposed (see train_step): the same update, faster.
    transposed = optimizer is None
    step = partial(train_step, lr=lr, grad=grad, optimizer=optimizer, l2=l2, weights_transposed=transposed)

    def body(carry, batch_idx):
        params, opt_state = carry
        x_batch = batch(batch_idx, params.w.dtype)
        params, opt_state, value = step(params, opt_state, x_batch, y[batch_idx])
        return (params, opt_state), value

    init = (Params(params.w.T, params.b) if transposed else params, opt_state)
    if stop_at_nonfinite:
        (params, opt_state), losses, ok = scan_until_nonfinite(body, init, order)
    else:
        (params, opt_state), losses = jax.lax.scan(body, init, order)
        ok = None
    if transposed:
        params = Params(params.w.T, params.b)
    return _epoch_result(params, opt_state, losses, ok)


def checked_epoch(
    params: Params,
    opt_state: optax.OptState,
    key: jax.Array,
    x: jax.Array,
    y: jax.Array,
    lr: jax.Array,
    **settings,
) -> tuple[Params, optax.OptState, jax.Array, jax.Array]:
    """:func:`train_epoch`, and whether it stayed finite: what :func:`fit` compiles.

    A NaN or an infinity, once in the parameters or the optimizer's state, stays there
    (every later update involves it), and one in a step's loss makes the epoch's mean
    loss non-finite. So checking the mean loss and the final state, once, inside the
    compiled epoch, finds any non-finite step at no cost per step.

    Args:
      params, opt_state, key, x, y, lr: as for :func:`train_epoch`.
      **settings: the keyword arguments of :func:`train_epoch` (static under ``jit``).

    Returns:
      ``(params, opt_state, mean_loss, finite)``: ``finite`` is a scalar bool, false
      when the mean loss, a parameter or a value of the optimizer's state is not finite.
    """
    params, opt_state, mean_loss = train_epoch(params, opt_state, key, x, y, lr, **settings)
    return params, opt_state, mean_loss, jnp.isfinite(mean_loss) & all_finite((params, opt_state))


def _epoch_result(params: Params, opt_state: optax.OptState, losses: jax.Array, ok: jax.Array | None):
    if ok is None:
        return params, opt_state, jnp.mean(losses)
    mean_loss, first_bad_step = summarize_steps(losses, ok)
    return params, opt_state, mean_loss, first_bad_step, losses


def fit_epoch(params, opt_state, shuffle_key, x, y, lr, *validation, evaluation: Callable, **settings):
    """One epoch of :func:`fit` as one program: the epoch's key split off the shuffling key,
    :func:`checked_epoch`, and ``evaluation`` of the result on ``validation`` (NaNs without).

    Returns:
      ``(params, opt_state, shuffle_key, epoch_key, mean_loss, finite, (val_loss, val_accuracy))``.
    """
    shuffle_key, epoch_key = split_key(shuffle_key)
    params, opt_state, mean_loss, finite = checked_epoch(params, opt_state, epoch_key, x, y, lr, **settings)
    metrics = evaluation(params, *validation) if validation else (jnp.nan, jnp.nan)
    return params, opt_state, shuffle_key, epoch_key, mean_loss, finite, metrics
