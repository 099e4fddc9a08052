"""The model and its loss: shapes, values, and numerical stability."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import x64

import jax_softmax as js


def test_init_params_shapes_dtype_and_scale():
    params = js.init_params(jax.random.key(0), 784, 10, scale=0.01)
    assert params.w.shape == (784, 10) and params.b.shape == (10,)
    assert params.w.dtype == jnp.float32
    assert 0.008 < float(jnp.std(params.w)) < 0.012
    assert float(jnp.abs(params.b).max()) == 0.0
    zeros = js.init_params(jax.random.key(0), 5, 3, scale=0.0)
    assert float(jnp.abs(zeros.w).max()) == 0.0


def test_init_params_rejects_bad_arguments():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="num_classes"):
        js.init_params(key, 784, 0)
    with pytest.raises(ValueError, match="scale"):
        js.init_params(key, scale=-1.0)
    with pytest.raises(TypeError, match="dtype"):
        js.init_params(key, dtype=jnp.int32)


def test_loss_matches_a_float64_numpy_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=7)
    params = js.Params(w=jnp.asarray(rng.normal(size=(5, 3)), jnp.float32), b=jnp.asarray([0.1, -0.2, 0.3]))
    z = x.astype(np.float64) @ np.asarray(params.w, np.float64) + np.asarray(params.b, np.float64)
    log_p = z - z.max(1, keepdims=True) - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
    expected = -log_p[np.arange(7), y].mean() + 0.5 * 0.01 * (np.asarray(params.w, np.float64) ** 2).sum()
    np.testing.assert_allclose(float(js.loss(params, x, y, l2=0.01)), expected, rtol=1e-6)


@pytest.mark.slow
def test_loss_and_gradient_do_not_change_when_every_logit_shifts():
    # float64 so that the shifted logits themselves are exact to 1e-10; a naive
    # exp(z) would overflow at z = 1e6 in any precision.
    with x64():
        rng = np.random.default_rng(1)
        x = jnp.asarray(rng.normal(size=(8, 6)))
        y = jnp.asarray(rng.integers(0, 4, size=8))
        params = js.Params(w=jnp.asarray(rng.normal(size=(6, 4))), b=jnp.zeros(4))
        shifted = params._replace(b=params.b + 1e6)
        for fn in (js.loss, jax.jit(js.loss)):
            np.testing.assert_allclose(fn(shifted, x, y), fn(params, x, y), rtol=1e-9)
        for grad in (js.manual_grad, js.autodiff_grad):
            for g_shifted, g in zip(grad(shifted, x, y), grad(params, x, y), strict=True):
                np.testing.assert_allclose(g_shifted, g, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_float32_logits_in_the_millions_stay_finite():
    params = js.Params(w=jnp.zeros((2, 3)), b=jnp.array([1e6, 2e6, 3e6]))
    x, y = jnp.ones((4, 2)), jnp.array([0, 1, 2, 2])
    assert bool(jnp.isfinite(js.loss(params, x, y)))
    for grad in (js.manual_grad, js.autodiff_grad):
        assert all(bool(jnp.isfinite(g).all()) for g in grad(params, x, y))


def test_confidently_wrong_prediction_gives_a_large_finite_loss():
    params = js.Params(w=jnp.zeros((1, 3)), b=jnp.array([0.0, 0.0, 5000.0]))
    value = js.loss(params, jnp.ones((1, 1)), jnp.array([0]))
    assert jnp.isfinite(value)
    np.testing.assert_allclose(float(value), 5000.0, rtol=1e-6)
    grads = js.manual_grad(params, jnp.ones((1, 1)), jnp.array([0]))
    assert all(bool(jnp.isfinite(g).all()) for g in grads)


def test_predict_and_accuracy():
    params = js.Params(w=jnp.eye(3), b=jnp.zeros(3))
    x = jnp.array([[1.0, 0, 0], [0, 0, 2.0], [0, 3.0, 0]])
    np.testing.assert_array_equal(js.predict(params, x), [0, 2, 1])
    assert float(js.accuracy(params, x, jnp.array([0, 2, 0]))) == pytest.approx(2 / 3)
