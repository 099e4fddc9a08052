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


def at(where: str, shape, dtype: str, device) -> tuple[js.Params, jax.Array, jax.Array]:
    """A problem whose parameters are zero, small (logits within a unit or two) or large
    (weights ten to a hundred times larger: logits up to about 20 apart, probabilities
    from near one-hot to 1e-9). Further apart, float32 itself bounds the agreement: see
    the test at logits near 2000."""
    params, x, y = problem("standard", shape, dtype, device)
    if where == "zero":
        params = jax.tree.map(jnp.zeros_like, params)
    if where == "large":  # the weights scaled until the logits' spread is about 4 (from about 0.3)
        scale = 4 / float(jnp.std(jnp.matmul(x, params.w, precision="highest")))
        params = js.Params(params.w * scale, params.b)
    return params, x, y


SHAPES = {"mnist": (200, 784, 10), "odd": (37, 13, 7), "one": (1, 5, 2)}
# A single example with large weights has a class of probability ~3e-4, whose curvature
# p (1 - p) both products form by cancellation: a float32 rounding of 6e-8 becomes a
# relative 2e-4 in either, so the pair agree only to that (it is in the test at 2000).
CASES = [
    (name, where)
    for name in SHAPES
    for where in ("zero", "small", "large")
    if not (name == "one" and where == "large")
]


@pytest.mark.parametrize("device", all_devices(), ids=lambda d: f"{d.platform}{d.id}")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("name", "where"), CASES, ids=[f"{n}-{w}" for n, w in CASES])
@pytest.mark.parametrize("l2", [0.0, 1e-3])
def test_manual_hvp_matches_autodiff(device, dtype, name, where, l2):
    shape = SHAPES[name]
    with x64() if dtype == "float64" else contextlib.nullcontext():
        params, x, y = at(where, shape, dtype, device)
        if where == "large":
            z = js.logits(params, x)
            assert float(jnp.max(z.max(axis=1) - z.min(axis=1))) > 5
        v = direction(shape, dtype, device)
        manual = jax.jit(manual_hvp)(params, x, y, v, l2)
        auto = jax.jit(autodiff_hvp)(params, x, y, v, l2)
        assert manual.w.dtype == auto.w.dtype == jnp.dtype(dtype)
        assert manual.w.devices() == {device}
        error = relative_error(manual, auto)
        print(f"{device} {dtype} {where} {shape} l2={l2}: relative error {error:.3e}")
        assert error <= TOLERANCE[dtype]


@pytest.mark.parametrize("device", all_devices(), ids=lambda d: f"{d.platform}{d.id}")
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.slow
def test_manual_hvp_is_as_accurate_as_autodiff_at_logits_near_2000(device, shape):
    """Logits near 2000 a few units apart: float32 holds them to 1.2e-4, so any float32
    product is that far from the exact one, and two orders of rounding differ by about
    as much. The measure is then the float64 product: the manual one is no further
    from it than autodiff's."""
    with x64():
        params, x, y = problem("extreme", shape, "float64", device)
        v = direction(shape, "float64", device)
        exact = manual_hvp(params, x, y, v)
        single = jax.tree.map(lambda a: a.astype(jnp.float32), (params, x, v))
        manual = jax.jit(manual_hvp)(single[0], single[1], y, single[2])
        auto = jax.jit(autodiff_hvp)(single[0], single[1], y, single[2])
        errors = relative_error(manual, exact), relative_error(auto, exact)
        print(f"{device} {shape}: manual {errors[0]:.3e}, autodiff {errors[1]:.3e} from float64")
        assert errors[0] <= 1.5 * errors[1] + 1e-6


def test_manual_hvp_does_not_call_autodiff(monkeypatch):
    with x64():
        params, x, y = problem("standard", (9, 6, 4), "float64", jax.devices()[0])
        v = direction((9, 6, 4), "float64", jax.devices()[0])
        expected = autodiff_hvp(params, x, y, v, 0.1)
        for name in ("grad", "value_and_grad", "vjp", "jvp", "linearize", "hessian"):
            monkeypatch.setattr(jax, name, lambda *a, **k: pytest.fail("manual_hvp called into autodiff"))
        assert relative_error(manual_hvp(params, x, y, v, 0.1), expected) <= TOLERANCE["float64"]


@pytest.mark.slow
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
