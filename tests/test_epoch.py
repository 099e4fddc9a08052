"""train_epoch and its pieces: the same permutation as jax.random, the same updates as make_update."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import blobs

import jax_softmax as js
from jax_softmax.train import shuffled_indices, stable_argsort_uint32, train_epoch


def device_blobs(n=300):
    x, y = blobs(n=n)
    return jnp.asarray(x), jnp.asarray(y)


@pytest.mark.parametrize("n", [1, 2, 3, 100, 4097, 54_000, 65_536, 70_001])
def test_shuffled_indices_is_jax_random_permutation(n):
    for seed in range(2):
        key = jax.random.key(seed)
        expected = jax.random.permutation(key, n)
        got = jax.jit(shuffled_indices, static_argnums=1)(key, n)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


@pytest.mark.slow
def test_shuffled_indices_accepts_raw_keys():
    key = jax.random.PRNGKey(7)
    np.testing.assert_array_equal(shuffled_indices(key, 500), jax.random.permutation(key, 500))


@pytest.mark.parametrize("n", [5, 1000, 65_536])
def test_stable_argsort_keeps_ties_in_order(n):
    # Few distinct keys, each spread over both 16-bit halves: many ties in every pass.
    rng = np.random.default_rng(n)
    keys = rng.integers(0, 7, size=n) * 0x00FF00FF + rng.integers(0, 2, size=n) * 0x80000000
    keys = keys.astype(np.uint32)
    got = jax.jit(stable_argsort_uint32)(jnp.asarray(keys))
    np.testing.assert_array_equal(got, np.argsort(keys, kind="stable"))


def replay(params, key, x, y, *, batch_size, grad, l2, lr):
    """The epoch done by hand with make_update, batch by batch in jax.random.permutation's order."""
    order = np.asarray(jax.random.permutation(key, len(x)))
    step = js.make_update(grad, l2=l2)
    for batch in order[: len(x) // batch_size * batch_size].reshape(-1, batch_size):
        params = step(params, x[batch], y[batch], lr)
    return params


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
@pytest.mark.parametrize("l2", [0.0, 1e-2])
@pytest.mark.slow
def test_sgd_epoch_matches_make_update(grad, l2):
    # Plain SGD carries the weights transposed; the updates must be the same.
    x, y = device_blobs()
    params = js.init_params(jax.random.key(1), 8, 3, scale=0.1)
    key = jax.random.key(2)
    epoch = jax.jit(partial(train_epoch, batch_size=32, grad=grad, optimizer=None, l2=l2))
    got, state, mean_loss = epoch(params, (), key, x, y, jnp.float32(0.3))
    expected = replay(params, key, x, y, batch_size=32, grad=grad, l2=l2, lr=0.3)
    np.testing.assert_allclose(got.w, expected.w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.b, expected.b, rtol=1e-5, atol=1e-6)
    assert state == ()
    assert np.isfinite(float(mean_loss))


@pytest.mark.slow
def test_optax_epoch_matches_make_update():
    x, y = device_blobs()
    params = js.init_params(jax.random.key(1), 8, 3, scale=0.1)
    key = jax.random.key(3)
    adam = optax.adam(0.01)
    epoch = jax.jit(partial(train_epoch, batch_size=50, grad="manual", optimizer=adam, l2=0.0))
    got, _, _ = epoch(params, adam.init(params), key, x, y, jnp.float32(0.01))
    step, state, expected = js.make_update("manual", adam), adam.init(params), params
    for batch in np.asarray(jax.random.permutation(key, len(x)))[:300].reshape(6, 50):
        expected, state = step(expected, state, x[batch], y[batch])
    np.testing.assert_allclose(got.w, expected.w, rtol=1e-5, atol=1e-6)


def test_literal_zero_l2_changes_nothing():
    # A literal 0 leaves the penalty out of the graph; a traced 0 keeps it: same numbers.
    x, y = device_blobs(n=50)
    params = js.init_params(jax.random.key(4), 8, 3, scale=0.1)
    for grad_fn in (js.autodiff_grad, js.manual_grad):
        literal = jax.jit(lambda p, x, y, grad_fn=grad_fn: grad_fn(p, x, y, 0.0))(params, x, y)
        traced = jax.jit(grad_fn)(params, x, y, jnp.float32(0.0))
        np.testing.assert_array_equal(literal.w, traced.w)
    np.testing.assert_array_equal(
        jax.jit(lambda p: js.loss(p, x, y, 0.0))(params), jax.jit(js.loss)(params, x, y, jnp.float32(0.0))
    )


@pytest.mark.slow
def test_epoch_vmaps_over_learning_rates():
    # The epoch is a pure function: a vmap over models equals separate runs.
    x, y = device_blobs()
    params = js.init_params(jax.random.key(5), 8, 3, scale=0.1)
    key = jax.random.key(6)
    epoch = partial(train_epoch, batch_size=30, grad="manual", optimizer=None, l2=0.0)
    rates = jnp.asarray([0.01, 0.1, 1.0], jnp.float32)
    batched, _, losses = jax.jit(jax.vmap(epoch, in_axes=(None, None, None, None, None, 0)))(
        params, (), key, x, y, rates
    )
    for i, lr in enumerate(rates):
        single, _, single_loss = jax.jit(epoch)(params, (), key, x, y, lr)
        np.testing.assert_allclose(batched.w[i], single.w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(losses[i], single_loss, rtol=1e-5)
