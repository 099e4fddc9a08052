"""The hand-derived Hessian-vector product against ``jax.jvp`` of ``jax.grad``."""

import contextlib
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import x64
from test_gradients import TOLERANCE, all_devices, problem, relative_error

import jax_softmax as js
from jax_softmax.gradients import autodiff_hvp, manual_hvp


def direction(shape, dtype, device) -> js.Params:
    _, features, classes = shape
    rng = np.random.default_rng(zlib.crc32(repr(shape).encode()))
    put = lambda a: jax.device_put(jnp.asarray(a, dtype), device)  # noqa: E731
    return js.Params(put(rng.normal(size=(features, classes))), put(rng.normal(size=(classes,))))


@pytest.mark.parametrize("device", all_devices(), ids=lambda d: f"{d.platform}{d.id}")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(200, 784, 10), (37, 13, 7), (1, 5, 2)], ids=["mnist", "odd", "one"])
@pytest.mark.parametrize("where", ["zero", "small", "large"])
@pytest.mark.parametrize("l2", [0.0, 1e-3])
def test_manual_hvp_matches_autodiff(device, dtype, shape, where, l2):
    with x64() if dtype == "float64" else contextlib.nullcontext():
        params, x, y = problem("standard" if where != "large" else "extreme", shape, dtype, device)
        if where == "zero":
            params = jax.tree.map(jnp.zeros_like, params)
        v = direction(shape, dtype, device)
        manual = jax.jit(manual_hvp)(params, x, y, v, l2)
        auto = jax.jit(autodiff_hvp)(params, x, y, v, l2)
        assert manual.w.dtype == auto.w.dtype == jnp.dtype(dtype)
        assert manual.w.devices() == {device}
        error = relative_error(manual, auto)
        print(f"{device} {dtype} {where} {shape} l2={l2}: relative error {error:.3e}")
        assert error <= TOLERANCE[dtype]


def test_manual_hvp_does_not_call_autodiff(monkeypatch):
    with x64():
        params, x, y = problem("standard", (9, 6, 4), "float64", jax.devices()[0])
        v = direction((9, 6, 4), "float64", jax.devices()[0])
        expected = autodiff_hvp(params, x, y, v, 0.1)
        for name in ("grad", "value_and_grad", "vjp", "jvp", "linearize", "hessian"):
            monkeypatch.setattr(jax, name, lambda *a, **k: pytest.fail("manual_hvp called into autodiff"))
        assert relative_error(manual_hvp(params, x, y, v, 0.1), expected) <= TOLERANCE["float64"]


def test_manual_hvp_matches_the_full_hessian():
    with x64():
        params, x, y = problem("standard", (11, 3, 4), "float64", jax.devices()[0])
        flat, unflatten = jax.flatten_util.ravel_pytree(params)
        hessian = jax.hessian(lambda f: js.loss(unflatten(f), x, y, 0.05))(flat)
        for i in range(0, flat.size, 5):
            basis = unflatten(jnp.zeros_like(flat).at[i].set(1.0))
            column = jax.flatten_util.ravel_pytree(manual_hvp(params, x, y, basis, 0.05))[0]
            np.testing.assert_allclose(column, hessian[:, i], rtol=1e-12, atol=1e-14)


def test_bias_shift_has_no_curvature():
    """Adding the same number to every bias changes no probability: H (0, 1) = 0."""
    with x64():
        params, x, y = problem("standard", (30, 5, 4), "float64", jax.devices()[0])
        shift = js.Params(jnp.zeros_like(params.w), jnp.ones_like(params.b))
        hv = manual_hvp(params, x, y, shift, 0.1)
        assert float(jnp.abs(hv.w).max()) < 1e-15 and float(jnp.abs(hv.b).max()) < 1e-15


def test_direction_must_match_the_parameters():
    params, x, y = problem("standard", (4, 3, 2), "float32", jax.devices()[0])
    with pytest.raises(ValueError, match=r"direction.w must have the shape of params.w, \(3, 2\)"):
        manual_hvp(params, x, y, js.Params(jnp.zeros((2, 2)), jnp.zeros(2)))
    with pytest.raises(TypeError, match="direction must be a jax_softmax.Params"):
        manual_hvp(params, x, y, (params.w, params.b))
