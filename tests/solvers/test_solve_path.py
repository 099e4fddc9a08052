"""``solve_path``: strongest regularisation first, each point warm-started, the best chosen on validation."""

import math

import jax
import numpy as np
import pytest
from helpers import blobs, x64

import jax_softmax as js
from jax_softmax.solvers import (
    NotConvergedWarning,
    PathPoint,
    PathResult,
    l2_from_c,
    solve,
    solve_path,
)
from jax_softmax.solvers import _path as path_module
from jax_softmax.solvers._path import DEFAULT_CS, regularisation_path


def noisy_split(seed: int = 0):
    """Overlapping clusters: the validation accuracy changes along the path."""
    x, y = blobs(n=500, features=6, classes=3, seed=seed)
    rng = np.random.default_rng(seed + 1)
    x = (x + rng.normal(0, 4, size=x.shape)).astype(np.float32)
    return (x[:400], y[:400]), (x[400:], y[400:])


@pytest.mark.slow
def test_the_path_is_solved_strongest_first_each_point_from_the_last(monkeypatch):
    train, validation = noisy_split()
    calls = []

    def recording_solve(x, y, l2, *, init=None, **settings):
        result = solve(x, y, l2, init=init, **settings)
        calls.append((l2, init, result))
        return result

    monkeypatch.setattr(path_module, "solve", recording_solve)
    Cs = [1.0, 0.001, 100.0, 0.1]
    path = solve_path(train, validation, Cs=Cs, dtype="float32")
    assert [point.C for point in path.points] == [0.001, 0.1, 1.0, 100.0]
    assert [l2 for l2, _, _ in calls] == [l2_from_c(c, 400) for c in sorted(Cs)]
    assert calls[0][1] is None  # the first point starts from zeros
    for (_, init, _), (_, _, previous) in zip(calls[1:], calls[:-1], strict=True):
        assert init is previous.params
    for point, (_, _, result) in zip(path.points, calls, strict=True):
        assert (point.objective, point.grad_norm, point.iterations) == (
            result.objective,
            result.grad_norm,
            result.iterations,
        )


def test_a_warm_start_takes_fewer_iterations_than_a_cold_one():
    train, validation = noisy_split()
    path = solve_path(train, validation, Cs=[0.1, 0.3], dtype="float32")
    cold = solve(*train, l2_from_c(0.3, 400), dtype="float32")
    assert path.points[1].iterations < cold.iterations
    assert path.points[1].objective == pytest.approx(cold.objective, rel=1e-5)


def test_the_best_validation_accuracy_is_chosen_and_its_figures_are_true():
    train, validation = noisy_split()
    Cs = [1e-4, 1e-3, 1e-2, 0.1, 1.0]
    path = solve_path(train, validation, Cs=Cs, dtype="float32")
    accuracies = [point.val_accuracy for point in path.points]
    assert len(set(accuracies)) > 1, "the data must make the choice matter"
    expected = max(range(len(Cs)), key=lambda i: (accuracies[i], -i))  # ties: the earlier, stronger
    assert path.best == expected
    assert path.best_point is path.points[expected]
    # The chosen parameters are the optimum at that C, and the validation figures are theirs.
    cold = solve(*train, l2_from_c(path.best_point.C, 400), dtype="float32")
    np.testing.assert_allclose(path.params.w, cold.params.w, atol=5e-3)
    loss, accuracy = js.evaluate(path.params, *validation)
    assert path.best_point.val_accuracy == pytest.approx(float(accuracy))
    assert path.best_point.val_loss == pytest.approx(float(loss))


@pytest.mark.slow
def test_a_tie_goes_to_the_stronger_regularisation():
    x = np.array([[0.0], [1.0], [2.0], [3.0]], np.float32)
    y = np.array([0, 0, 1, 1])
    seen = []
    path = solve_path((x, y), (x, y), Cs=[10.0, 1.0, 0.1], callback=seen.append)
    assert [point.val_accuracy for point in path.points] == [1.0, 1.0, 1.0]
    assert path.best == 0 and path.best_point.C == 0.1
    assert seen == list(path.points)
    assert all(isinstance(point, PathPoint) for point in seen) and isinstance(path, PathResult)


def test_l2s_and_the_default_path():
    assert regularisation_path(None, None, 1000) == [(c, l2_from_c(c, 1000)) for c in DEFAULT_CS]
    assert DEFAULT_CS == (0.01, 0.1, 1.0, 10.0)
    assert regularisation_path(None, [0.0, 0.01, 1e-3], 100) == [(1.0, 0.01), (10.0, 1e-3), (None, 0.0)]
    assert regularisation_path(2.0, None, 10) == [(2.0, 0.05)]
    train, validation = noisy_split()
    path = solve_path(train, validation, l2s=[0.0, 0.1], dtype="float32")
    assert [(point.C, point.l2) for point in path.points] == [(1 / (0.1 * 400), 0.1), (None, 0.0)]


def test_one_point_needs_no_validation():
    train, _ = noisy_split()
    path = solve_path(train, Cs=[1.0], dtype="float32")
    assert len(path.points) == 1 and path.best == 0
    assert path.best_point.val_accuracy is None and path.best_point.val_loss is None
    assert path.best_point.converged and path.best_point.seconds > 0


@pytest.mark.slow
def test_float64():
    train, validation = noisy_split()
    with pytest.raises(ValueError, match="float64 needs 64-bit JAX"):
        solve_path(train, validation, Cs=[1.0], dtype="float64")
    with x64():
        path = solve_path(train, validation, Cs=[1.0, 0.1], dtype="float64", tol=1e-8)
        assert path.params.w.dtype == np.float64
        assert all(point.converged and point.grad_norm <= 1e-8 for point in path.points)


def test_a_point_that_stops_early_warns_with_its_C():
    train, validation = noisy_split()
    with pytest.warns(
        NotConvergedWarning, match=r"C=0\.1 \(l2=.*\): newton-cg stopped after 1 iteration with"
    ):
        path = solve_path(train, validation, Cs=[0.1], max_iter=1, tol=1e-9, dtype="float32")
    assert not path.points[0].converged and path.points[0].iterations == 1


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"Cs": [1.0], "l2s": [0.1]}, ValueError, "give Cs or l2s, not both"),
        ({"Cs": []}, ValueError, "Cs must hold at least one value"),
        ({"l2s": []}, ValueError, "l2s must hold at least one value"),
        ({"Cs": [1.0, 0.0]}, ValueError, r"Cs must hold finite numbers > 0, got 0\.0"),
        ({"Cs": [-1.0]}, ValueError, r"Cs must hold finite numbers > 0, got -1\.0"),
        ({"Cs": [math.inf]}, ValueError, "Cs must hold finite numbers > 0, got inf"),
        ({"l2s": [-0.5]}, ValueError, r"l2s must hold finite numbers >= 0, got -0\.5"),
        ({"Cs": [1.0, 1.0]}, ValueError, "Cs must not repeat a value"),
        ({"Cs": [1.0], "tol": 0.0}, ValueError, "tol must be a finite number > 0"),
        ({"Cs": [1.0], "method": "sgd"}, ValueError, "method must be one of"),
        ({"Cs": [1.0], "dtype": "int32"}, TypeError, "dtype must be float32 or float64"),
        ({"Cs": [1.0], "num_classes": 1}, ValueError, "num_classes must be an integer >= 2"),
    ],
)
def test_bad_settings_name_the_argument(kwargs, error, message):
    train, validation = noisy_split()
    with pytest.raises(error, match=message):
        solve_path(train, validation, **kwargs)


def test_bad_data_names_the_split():
    (x, y), (x_val, y_val) = noisy_split()
    cases = [
        (((x, y), None, {"Cs": [0.1, 1.0]}), "validation is needed to choose among 2 strengths"),
        (((x, np.zeros_like(y)), (x_val, y_val), {}), "train y must hold at least two classes"),
        (((x, y), (x_val[:, :5], y_val), {}), "validation x has 5 features, expected 6"),
        (((x, y), (x_val, y_val - 1), {}), r"validation y must hold class labels in \[0, 3\)"),
        (((x, y[:-1]), (x_val, y_val), {}), r"train y must have shape \(400,\)"),
        (((x * np.nan, y), (x_val, y_val), {}), "train x must be finite"),
        (((x, y), (x_val, y_val), {"num_classes": 2}), r"train y must hold class labels in \[0, 2\)"),
    ]
    for (train, validation, kwargs), message in cases:
        with pytest.raises(ValueError, match=message):
            solve_path(train, validation, dtype="float32", **kwargs)
    with pytest.raises(TypeError, match="train y must hold integer labels"):
        solve_path((x, y.astype(np.float32)), (x_val, y_val))


def test_the_data_is_put_on_the_device_once(monkeypatch):
    train, validation = noisy_split()
    puts = []
    real_put = jax.device_put
    monkeypatch.setattr(
        path_module.jax, "device_put", lambda value, *a: puts.append(1) or real_put(value, *a)
    )
    solve_path(train, validation, Cs=[0.1, 1.0, 10.0], dtype="float32")
    assert len(puts) == 3  # x, y and the validation pair, not once per point
