"""``js.solve``: the optimum it reaches, its two methods, warm starts, devices and bad input."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from distributed_worker import SOLVE_L2, finish, free_port, start_worker, training_data
from helpers import blobs, count_compiles, x64

import jax_softmax as js
from jax_softmax.solvers import NotConvergedWarning, l2_from_c

TIMEOUT = 180


@pytest.fixture(scope="module")
def data():
    x, y = blobs(300, features=6, classes=4, seed=3)
    return x.astype(np.float64), y


def max_gradient(params, x, y, l2) -> float:
    grad = js.manual_grad(params, x, y, l2)
    return max(float(jnp.abs(grad.w).max()), float(jnp.abs(grad.b).max()))


@pytest.mark.parametrize("method", ["newton-cg", "lbfgs"])
@pytest.mark.slow
def test_the_result_is_a_stationary_point_of_the_projects_loss(data, method):
    x, y = data
    with x64():
        result = js.solve(x, y, 1e-2, method=method, tol=1e-9)
        assert result.converged and result.grad_norm <= 1e-9
        assert result.params.w.dtype == jnp.float64
        assert result.objective == pytest.approx(float(js.loss(result.params, x, y, 1e-2)), rel=1e-13)
        assert max_gradient(result.params, x, y, 1e-2) <= 1e-9
        # every direction goes up from it (the loss is convex: this is the minimum)
        rng = np.random.default_rng(0)
        for _ in range(5):
            nudge = jax.tree.map(lambda a: a + 1e-3 * rng.normal(size=a.shape), result.params)
            assert float(js.loss(nudge, x, y, 1e-2)) > result.objective


def test_newton_cg_and_lbfgs_reach_the_same_optimum(data):
    x, y = data
    with x64():
        newton = js.solve(x, y, 1e-3, tol=1e-10)
        lbfgs = js.solve(x, y, 1e-3, method="lbfgs", tol=1e-10)
    assert newton.objective == pytest.approx(lbfgs.objective, rel=1e-12)
    np.testing.assert_allclose(newton.params.w, lbfgs.params.w, atol=1e-6)
    np.testing.assert_allclose(newton.params.b, lbfgs.params.b, atol=1e-6)
    assert newton.iterations < 30 < lbfgs.iterations  # second order: a few steps


@pytest.mark.slow
def test_the_biases_are_centred(data):
    x, y = data
    result = js.solve(x.astype(np.float32), y, 1e-2)
    assert abs(float(result.params.b.sum())) < 1e-5


def test_a_warm_start_at_the_optimum_takes_no_step(data):
    x, y = data
    with x64():
        first = js.solve(x, y, 1e-2, tol=1e-8)
        again = js.solve(x, y, 1e-2, tol=1e-8, init=first.params)
    assert again.iterations == 0 and again.converged
    np.testing.assert_array_equal(again.params.w, first.params.w)


def test_l2_from_c_matches_scikit_learns_scaling():
    assert l2_from_c(1.0, 54_000) == pytest.approx(1.85185185e-5)
    with pytest.raises(ValueError, match="C must be a finite number > 0, got 0"):
        l2_from_c(0, 10)


def test_float32_data_is_solved_in_float32(data):
    x, y = data
    result = js.solve(x.astype(np.float32), y, 1e-2, tol=1e-5)
    assert result.params.w.dtype == jnp.float32 and result.converged
    with x64():
        exact = js.solve(x, y, 1e-2, tol=1e-10)
    assert result.objective == pytest.approx(exact.objective, rel=1e-6)


@pytest.mark.slow
def test_integer_inputs_are_solved_in_float32():
    x, y = blobs(90, features=3, classes=3)
    result = js.solve(np.round(x * 10).astype(np.int32), y, 1e-1)
    assert result.params.w.dtype == jnp.float32 and result.converged


def test_stopping_short_warns_with_the_gradient_norm(data):
    x, y = data
    with pytest.warns(
        NotConvergedWarning, match=r"after 1 iteration with gradient norm [0-9.e-]+, above tol"
    ):
        result = js.solve(x.astype(np.float32), y, 1e-3, max_iter=1)
    assert not result.converged and result.iterations == 1


def test_another_strength_or_tolerance_does_not_recompile(data):
    x, y = data
    x = x.astype(np.float32)
    js.solve(x, y, 1e-2)
    with count_compiles() as compiles, warnings.catch_warnings():
        warnings.simplefilter("error")
        js.solve(x, y, 1e-1, tol=1e-3, max_iter=50)
    assert compiles[0] == 0


@pytest.mark.slow
def test_data_on_a_device_is_solved_there(data):
    x, y = data
    device = jax.devices()[-1]
    result = js.solve(jax.device_put(x.astype(np.float32), device), jax.device_put(y, device), 1e-2)
    assert result.params.w.devices() == {device}


@pytest.mark.slow
def test_rows_split_over_four_devices_give_the_single_device_optimum(tmp_path):
    out = tmp_path / "four.npz"
    finish([start_worker(out, "--solve", devices=4)], TIMEOUT)
    result = np.load(out)
    assert int(result["data_devices_solve"]) == 4
    (x, y), _ = training_data()
    with x64():
        single = js.solve(x.astype(np.float64), y, SOLVE_L2, tol=1e-10)
    np.testing.assert_allclose(result["w_solve"], single.params.w, rtol=0, atol=1e-9)
    np.testing.assert_allclose(result["b_solve"], single.params.b, rtol=0, atol=1e-9)
    assert float(result["objective_solve"]) == pytest.approx(single.objective, rel=1e-13)
    assert "must be a multiple of the number of devices, 4" in str(result["uneven_solve"])


@pytest.mark.slow
def test_two_processes_solve_their_rows_together(tmp_path):
    coordinator = f"127.0.0.1:{free_port()}"
    outs = [tmp_path / f"process{i}.npz" for i in range(2)]
    args = ("--solve", "--coordinator", coordinator, "--num-processes", "2")
    finish(
        [start_worker(out, *args, "--process-id", str(i), devices=2) for i, out in enumerate(outs)], TIMEOUT
    )
    first, second = (np.load(out) for out in outs)
    assert int(first["process_count"]) == 2 and int(first["data_devices_solve"]) == 4
    np.testing.assert_array_equal(first["w_solve"], second["w_solve"])
    (x, y), _ = training_data()
    with x64():
        single = js.solve(x.astype(np.float64), y, SOLVE_L2, tol=1e-10)
    np.testing.assert_allclose(first["w_solve"], single.params.w, rtol=0, atol=1e-9)


GOOD_X, GOOD_Y = blobs(40, features=3, classes=3)
BAD = {
    "non-finite x": (
        dict(x=np.where(np.arange(120).reshape(40, 3) == 7, np.nan, GOOD_X)),
        "x must be finite, got 1 NaN or infinite value",
    ),
    "float labels": (dict(y=GOOD_Y.astype(float)), "y must hold integer class labels"),
    "negative label": (dict(y=np.where(np.arange(40) == 2, -1, GOOD_Y)), r"y must hold class labels in \[0"),
    "label above num_classes": (dict(y=GOOD_Y, num_classes=2), r"class labels in \[0, 2\)"),
    "one class": (dict(y=np.zeros(40, np.int32)), "at least two classes, got only class 0"),
    "a class without examples": (dict(y=GOOD_Y + 1), "no example of class 0 of its 4 classes"),
    "lengths differ": (dict(y=GOOD_Y[:-1]), r"y must have shape \(40,\)"),
    "1-D x": (dict(x=GOOD_X[:, 0]), r"x must be \[n, num_features\]"),
    "negative l2": (dict(l2=-1e-3), "l2 must be a finite number >= 0"),
    "zero tol": (dict(tol=0.0), "tol must be a finite number > 0, got 0.0"),
    "nan tol": (dict(tol=float("nan")), "tol must be a finite number > 0"),
    "zero max_iter": (dict(max_iter=0), "max_iter must be an integer >= 1, got 0"),
    "unknown method": (dict(method="sgd"), r"method must be one of \('newton-cg', 'lbfgs'\)"),
    "float16": (dict(dtype=np.float16), "dtype must be float32 or float64, got float16"),
    "float64 without x64": (dict(dtype=np.float64), "dtype float64 needs 64-bit JAX"),
    "init of another shape": (
        dict(init=js.Params(jnp.zeros((4, 3)), jnp.zeros(3))),
        r"init must have w of shape \(3, 3\)",
    ),
    "num_classes of one": (dict(num_classes=1), "num_classes must be an integer >= 2, got 1"),
}


@pytest.mark.parametrize("case", BAD, ids=BAD)
def test_bad_input_is_refused_naming_the_problem(case):
    change, message = BAD[case]
    args = dict(x=GOOD_X, y=GOOD_Y, l2=1e-2) | change
    x, y, l2 = args.pop("x"), args.pop("y"), args.pop("l2")
    with pytest.raises((ValueError, TypeError), match=message):
        js.solve(x, y, l2, **args)


@pytest.mark.slow
def test_mnist_at_c_1_reaches_scikit_learns_optimum(mnist):
    """scikit-learn 1.9's newton-cg at tol=1e-8 ends at 0.2352482222297 (mean form) here."""
    x, y = np.asarray(mnist.train.x, np.float64), mnist.train.y
    with x64():
        result = js.solve(x, y, l2_from_c(1.0, len(x)), tol=1e-6)
        accuracy = float(js.accuracy(result.params, mnist.test.x.astype(np.float64), mnist.test.y))
    assert result.converged
    assert result.objective == pytest.approx(0.2352482222297, rel=1e-7)
    assert accuracy >= 0.925
