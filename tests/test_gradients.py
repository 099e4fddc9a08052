"""The hand-derived gradient against ``jax.grad``, the update step, and its sign."""

import contextlib
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import count_compiles, x64
from jax.test_util import check_grads

import jax_softmax as js
from jax_softmax.gradients import make_optimizer

# Relative error ||manual - autodiff||_2 / ||autodiff||_2, the 2-norm taken over every
# entry of every leaf (w and b) at once.
TOLERANCE = {"float32": 1e-6, "float64": 1e-12}

SHAPES = {
    "batch1": (1, 784, 10),
    "three_classes": (16, 5, 3),
    "mnist": (200, 784, 10),
    "odd": (37, 13, 7),
}


def all_devices() -> list:
    """Every device of every backend present: the accelerator's and the host CPU's."""
    devices = list(jax.devices())
    if jax.default_backend() != "cpu":
        devices += jax.devices("cpu")
    return devices


def relative_error(a: js.Params, b: js.Params) -> float:
    diff = np.sqrt(
        sum(
            np.sum((np.asarray(u, np.float64) - np.asarray(v, np.float64)) ** 2)
            for u, v in zip(a, b, strict=True)
        )
    )
    norm = np.sqrt(sum(np.sum(np.asarray(v, np.float64) ** 2) for v in b))
    return float(diff / norm)


def problem(kind: str, shape: tuple[int, int, int], dtype: str, device):
    """A random problem, the same in every process (``hash`` of a str is salted per run)."""
    batch, features, classes = shape
    rng = np.random.default_rng(zlib.crc32(repr((kind, shape)).encode()))
    y = rng.integers(0, classes, size=batch)
    if kind == "standard":
        x = rng.uniform(0, 1, size=(batch, features))
        w = rng.normal(0, 0.1, size=(features, classes))
        b = rng.normal(0, 1, size=(classes,))
    elif kind == "extreme":
        # Raw 0-255 pixels and logits near 2000, with gaps of a few units between
        # classes, so the softmax is neither uniform nor one-hot.
        x = rng.integers(0, 256, size=(batch, features)).astype(np.float64)
        w = rng.normal(0, 0.02, size=(features, classes)) / np.sqrt(features)
        b = 2000 + rng.normal(0, 1, size=(classes,))
    else:  # "saturated": large weights, logits thousands apart, every label wrong
        x = rng.integers(0, 256, size=(batch, features)).astype(np.float64)
        w = rng.normal(0, 1.0, size=(features, classes)) * 40 / np.sqrt(features)
        b = rng.normal(0, 1, size=(classes,))
        y = np.argmin(x @ w + b, axis=1)
    put = lambda a, t=dtype: jax.device_put(jnp.asarray(a, t), device)  # noqa: E731
    return js.Params(put(w), put(b)), put(x), put(y, jnp.int32)


@pytest.mark.parametrize("device", all_devices(), ids=lambda d: f"{d.platform}{d.id}")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("kind", ["standard", "extreme", "saturated"])
@pytest.mark.parametrize("l2", [0.0, 1e-3])
def test_manual_gradient_matches_autodiff(device, dtype, shape, kind, l2):
    with x64() if dtype == "float64" else contextlib.nullcontext():
        params, x, y = problem(kind, shape, dtype, device)
        if kind != "standard":
            assert float(jnp.abs(js.logits(params, x)).max()) > 1000
        manual = jax.jit(js.manual_grad)(params, x, y, l2)
        auto = jax.jit(js.autodiff_grad)(params, x, y, l2)
        assert manual.w.dtype == auto.w.dtype == jnp.dtype(dtype)
        assert manual.w.devices() == {device}
        error = relative_error(manual, auto)
        print(f"{device} {dtype} {kind} {shape} l2={l2}: relative error {error:.3e}")
        assert error <= TOLERANCE[dtype]


@pytest.mark.slow
def test_check_grads_on_the_loss():
    with x64():
        params, x, y = problem("standard", (9, 6, 4), "float64", jax.devices()[0])
        check_grads(lambda p: js.loss(p, x, y, 1e-2), (params,), order=2, modes=("rev", "fwd"))


@pytest.mark.slow
def test_manual_gradient_does_not_call_autodiff(monkeypatch):
    params, x, y = problem("standard", (4, 3, 2), "float32", jax.devices()[0])
    expected = js.autodiff_grad(params, x, y)

    def forbidden(*args, **kwargs):
        raise AssertionError("manual_grad called into JAX's autodiff")

    for name in ("grad", "value_and_grad", "vjp", "jvp", "linearize"):
        monkeypatch.setattr(jax, name, forbidden)
    manual = js.manual_grad(params, x, y)
    assert relative_error(manual, expected) <= TOLERANCE["float32"]


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_one_step_lowers_the_loss(grad):
    params, x, y = problem("standard", (64, 20, 5), "float32", jax.devices()[0])
    step = js.make_update(grad)
    before = float(js.loss(params, x, y))
    after = float(js.loss(step(params, x, y, 0.1), x, y))
    assert after < before


@pytest.mark.slow
def test_both_gradient_modes_agree_after_100_steps():
    params, x, y = problem("standard", (50, 30, 6), "float32", jax.devices()[0])
    results = {}
    for grad in ("autodiff", "manual"):
        step = js.make_update(grad, l2=1e-3)
        p = params
        for i in range(100):
            p = step(p, x[i % 5 * 10 : i % 5 * 10 + 10], y[i % 5 * 10 : i % 5 * 10 + 10], 0.5)
        results[grad] = p
    assert relative_error(results["manual"], results["autodiff"]) < 1e-5
    assert float(js.loss(results["manual"], x, y)) < float(js.loss(params, x, y))


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_second_call_does_not_recompile(grad):
    params, x, y = problem("standard", (32, 10, 4), "float32", jax.devices()[0])
    step = js.make_update(grad)
    params = step(params, x, y, 0.1)
    with count_compiles() as compiles:
        params = step(params, x, y, 0.05)
        jax.block_until_ready(params)
    assert compiles[0] == 0


def test_optax_step_threads_its_state():
    params, x, y = problem("standard", (32, 10, 4), "float32", jax.devices()[0])
    optimizer = optax.adam(0.05)
    step = js.make_update("manual", optimizer)
    state = optimizer.init(params)
    before = float(js.loss(params, x, y))
    for _ in range(20):
        params, state = step(params, state, x, y)
    assert float(js.loss(params, x, y)) < before
    with count_compiles() as compiles:
        jax.block_until_ready(step(params, state, x, y))
    assert compiles[0] == 0


def test_unknown_gradient_mode_is_rejected():
    with pytest.raises(ValueError, match="grad must be one of"):
        js.make_update("numerical")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer("lbfgs-ish", 0.1)
