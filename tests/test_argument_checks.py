"""Bad input at the library's boundary: every public function checks its arguments, naming them."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

import jax_softmax as js
from jax_softmax import _validation as validation
from jax_softmax import model

PARAMS = js.Params(w=jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32), b=jnp.zeros(3))
X = np.linspace(0, 1, 8, dtype=np.float32).reshape(2, 4)
Y = np.array([0, 2])
GOOD = {"params": PARAMS, "x": X, "y": Y, "l2": 0.0, "lr": 0.1}

_sgd_step = js.make_update("manual")
_adam = optax.adam(0.1)
_adam_step = js.make_update("autodiff", _adam)

FUNCTIONS = {
    "logits": lambda a: js.logits(a["params"], a["x"]),
    "predict": lambda a: js.predict(a["params"], a["x"]),
    "accuracy": lambda a: js.accuracy(a["params"], a["x"], a["y"]),
    "loss": lambda a: js.loss(a["params"], a["x"], a["y"], a["l2"]),
    "manual_grad": lambda a: js.manual_grad(a["params"], a["x"], a["y"], a["l2"]),
    "autodiff_grad": lambda a: js.autodiff_grad(a["params"], a["x"], a["y"], a["l2"]),
    "sgd_step": lambda a: _sgd_step(a["params"], a["x"], a["y"], a["lr"]),
    "optax_step": lambda a: _adam_step(a["params"], _adam.init(PARAMS), a["x"], a["y"]),
}
TAKES = {
    "y": {"accuracy", "loss", "manual_grad", "autodiff_grad", "sgd_step", "optax_step"},
    "l2": {"loss", "manual_grad", "autodiff_grad"},
    "lr": {"sgd_step"},
}

NAN_X = X.copy()
NAN_X[0, 1] = np.nan
NAN_X[1, 3] = -np.inf

# (what is wrong, the arguments that differ from GOOD, error type, message pattern)
BAD_ARGUMENTS = [
    (
        "params-tuple",
        {"params": (PARAMS.w, PARAMS.b)},
        TypeError,
        r"params must be a jax_softmax.Params\(w, b\), got tuple",
    ),
    (
        "params-int-w",
        {"params": PARAMS._replace(w=PARAMS.w.astype(jnp.int32))},
        TypeError,
        "params.w must have a floating dtype, got int32",
    ),
    (
        "params-list-b",
        {"params": PARAMS._replace(b=[0.0, 0.0, 0.0])},
        TypeError,
        "params.b must be an array, got list",
    ),
    (
        "params-1d-w",
        {"params": PARAMS._replace(w=PARAMS.w[:, 0])},
        ValueError,
        r"params.w must be \[num_features, num_classes\], got shape \(4,\)",
    ),
    (
        "params-b-shape",
        {"params": PARAMS._replace(b=jnp.zeros(4))},
        ValueError,
        r"params.b must have shape \(3,\) to match params.w \(4, 3\), got \(4,\)",
    ),
    ("x-1d", {"x": X[0]}, ValueError, r"x must be \[batch, num_features\], got shape \(4,\)"),
    ("x-3d", {"x": X[None]}, ValueError, r"x must be \[batch, num_features\], got shape \(1, 2, 4\)"),
    (
        "x-features",
        {"x": X[:, :3]},
        ValueError,
        r"x must have 4 features per example, as many as params.w has rows, got shape \(2, 3\)",
    ),
    (
        "x-empty",
        {"x": X[:0], "y": Y[:0]},
        ValueError,
        r"x must hold at least one example \(batch >= 1\), got shape \(0, 4\)",
    ),
    (
        "x-bool",
        {"x": X > 0.5},
        TypeError,
        r"x must hold real numbers \(a floating or integer dtype\), got bool",
    ),
    ("x-complex", {"x": X.astype(np.complex64)}, TypeError, "x must hold real numbers .* got complex64"),
    ("x-text", {"x": "pixels"}, TypeError, "x must hold real numbers .* got <U6"),
    (
        "x-nan",
        {"x": NAN_X},
        ValueError,
        r"x must be finite, got 2 NaN or infinite values, the first \(nan\) at index \[0, 1\]",
    ),
    (
        "x-inf-device",
        {"x": jnp.asarray(X).at[1, 2].set(jnp.inf)},
        ValueError,
        r"x must be finite, got 1 NaN or infinite value, the first \(inf\) at index \[1, 2\]",
    ),
    (
        "y-float",
        {"y": Y.astype(np.float32)},
        TypeError,
        "y must hold integer class labels, got dtype float32",
    ),
    ("y-bool", {"y": Y > 0}, TypeError, "y must hold integer class labels, got dtype bool"),
    (
        "y-column",
        {"y": Y[:, None]},
        ValueError,
        r"y must have shape \(2,\), one label per example of x, got \(2, 1\)",
    ),
    (
        "y-length",
        {"y": Y[:1]},
        ValueError,
        r"y must have shape \(2,\), one label per example of x, got \(1,\)",
    ),
    (
        "y-too-large",
        {"y": np.array([0, 3])},
        ValueError,
        r"y must hold class labels in \[0, 3\), got 1 label outside it, the first 3 at index 1",
    ),
    (
        "y-negative-device",
        {"y": jnp.array([-1, -2])},
        ValueError,
        r"y must hold class labels in \[0, 3\), got 2 labels outside it, the first -1 at index 0",
    ),
    ("l2-negative", {"l2": -0.5}, ValueError, "l2 must be a finite number >= 0, got -0.5"),
    ("l2-nan", {"l2": float("nan")}, ValueError, "l2 must be a finite number >= 0, got nan"),
    ("l2-vector", {"l2": np.array([0.1, 0.2])}, ValueError, r"l2 must be a scalar, got shape \(2,\)"),
    ("l2-text", {"l2": "0.1"}, TypeError, "l2 must be a real number, got str"),
    ("lr-zero", {"lr": 0.0}, ValueError, "lr must be a finite number > 0, got 0.0"),
    ("lr-negative", {"lr": -0.1}, ValueError, "lr must be a finite number > 0, got -0.1"),
    ("lr-inf", {"lr": jnp.inf}, ValueError, "lr must be a finite number > 0, got inf"),
    ("lr-nan-array", {"lr": jnp.asarray(jnp.nan)}, ValueError, "lr must be a finite number > 0, got nan"),
    ("lr-vector", {"lr": jnp.array([0.1, 0.2])}, ValueError, r"lr must be a scalar, got shape \(2,\)"),
    ("lr-bool", {"lr": True}, TypeError, "lr must be a real number, got bool"),
]


def _cases():
    for case, changed, error, pattern in BAD_ARGUMENTS:
        needs = {k for k in changed if k in TAKES}
        for name, call in FUNCTIONS.items():
            if all(name in TAKES[k] for k in needs):
                yield pytest.param(call, {**GOOD, **changed}, error, pattern, id=f"{name}-{case}")


@pytest.mark.parametrize("call, arguments, error, pattern", list(_cases()))
def test_bad_arguments_are_named_with_expected_and_actual(call, arguments, error, pattern):
    with pytest.raises(error, match=pattern):
        call(arguments)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.slow
def test_good_arguments_pass_in_every_accepted_form(name):
    call = FUNCTIONS[name]
    reference = call(GOOD)
    variants = [
        {"x": jnp.asarray(X), "y": jnp.asarray(Y)},  # on the device
        {"x": X.tolist(), "y": Y.tolist()},  # nested lists
        {"x": X.astype(np.float64), "y": Y.astype(np.uint8)},  # other float and integer dtypes
        {"l2": 0, "lr": np.float32(0.1)},  # Python int, NumPy scalar
    ]
    for changed in variants:
        result = call({**GOOD, **changed})
        for got, expected in zip(jax.tree.leaves(result), jax.tree.leaves(reference), strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_integer_pixels_are_converted_like_floats():
    pixels = np.array([[0, 255, 17, 3], [9, 9, 200, 1]], np.uint8)
    np.testing.assert_array_equal(js.logits(PARAMS, pixels), js.logits(PARAMS, pixels.astype(np.float32)))


@pytest.mark.slow
def test_accelerator_path_reduces_on_the_device(monkeypatch):
    # Arrays on a GPU or TPU are checked with jax.numpy where they live; force that path here.
    monkeypatch.setattr(validation, "_on_host", lambda value: False)
    x = jnp.asarray(NAN_X)
    with pytest.raises(
        ValueError, match=r"got 2 NaN or infinite values, the first \(nan\) at index \[0, 1\]"
    ):
        js.loss(PARAMS, x, Y)
    with pytest.raises(ValueError, match=r"got 1 label outside it, the first 7 at index 0"):
        js.loss(PARAMS, X, jnp.array([7, 1]))
    assert float(js.loss(PARAMS, jnp.asarray(X), jnp.asarray(Y))) == float(model.unchecked_loss(PARAMS, X, Y))


def test_make_update_checks_its_own_arguments():
    with pytest.raises(ValueError, match="l2 must be a finite number >= 0, got -1.0"):
        js.make_update("manual", l2=-1.0)
    with pytest.raises(TypeError, match="optimizer must be an optax GradientTransformation or None, got str"):
        js.make_update("manual", "adam")


def test_checks_change_no_result():
    l2 = 1e-3
    assert float(js.loss(PARAMS, X, Y, l2)) == float(model.unchecked_loss(PARAMS, X, Y, l2))
    np.testing.assert_array_equal(js.logits(PARAMS, X), model.unchecked_logits(PARAMS, X))
    checked = _sgd_step(PARAMS, X, Y, 0.1)
    unchecked = _sgd_step.__wrapped__(PARAMS, X, Y, 0.1)
    for got, expected in zip(checked, unchecked, strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.slow
def test_checks_work_under_every_transformation():
    y_bad = jnp.array([0, 5])  # out of range: only a concrete value can show it
    # Static checks run on tracers too, with the same message...
    with pytest.raises(ValueError, match="x must have 4 features per example"):
        jax.jit(js.loss)(PARAMS, X[:, :3], Y)
    with pytest.raises(TypeError, match="y must hold integer class labels"):
        jax.jit(js.accuracy)(PARAMS, X, Y.astype(np.float32))
    # ...value checks do not: a traced label or learning rate is not inspected.
    jax.block_until_ready(jax.jit(js.loss)(PARAMS, X, y_bad))
    jax.block_until_ready(jax.jit(_sgd_step)(PARAMS, X, Y, -1.0))
    # grad, vmap and scan see the same values as a direct call.
    grads = jax.grad(js.loss)(PARAMS, X, Y, 1e-3)
    for got, expected in zip(grads, js.autodiff_grad(PARAMS, X, Y, 1e-3), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    grad_x = jax.grad(js.loss, argnums=1)(PARAMS, jnp.asarray(X), Y)
    assert grad_x.shape == X.shape
    l2s = jnp.array([0.0, 0.1, 1.0])
    np.testing.assert_allclose(
        jax.vmap(js.loss, in_axes=(None, None, None, 0))(PARAMS, X, Y, l2s),
        [float(js.loss(PARAMS, X, Y, float(l2))) for l2 in l2s],
        rtol=1e-6,
    )
    stacked = jax.tree.map(lambda leaf: jnp.stack([leaf, 2 * leaf]), PARAMS)
    np.testing.assert_array_equal(
        jax.vmap(js.predict, in_axes=(0, None))(stacked, X)[0], js.predict(PARAMS, X)
    )

    def body(params, _):
        return _sgd_step(params, X, Y, 0.1), js.loss(params, X, Y)

    scanned, losses = jax.lax.scan(body, PARAMS, None, length=3)
    expected = PARAMS
    for _ in range(3):
        expected = _sgd_step(expected, X, Y, 0.1)
    np.testing.assert_allclose(scanned.w, expected.w, rtol=1e-6)
    assert losses.shape == (3,)


def test_check_grads_through_the_checked_functions():
    # tests/test_gradients.py checks the gradient in the parameters; here, in the inputs.
    check_grads(lambda x: js.loss(PARAMS, x, Y, 0.01), (jnp.asarray(X),), order=1, modes=("rev",), atol=1e-2)


def test_a_diverged_model_is_still_accepted():
    # Non-finite parameters are what a diverged run has; diagnosing it needs the loss.
    nan_params = PARAMS._replace(b=jnp.array([jnp.nan, 0.0, jnp.inf]))
    assert not bool(jnp.isfinite(js.loss(nan_params, X, Y)))
