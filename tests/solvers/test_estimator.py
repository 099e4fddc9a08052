"""jax_softmax.LogisticRegression: scikit-learn's estimator checks, scikit-learn's optimum, labels of
any kind, the dtype it solves in, model selection, and the errors it raises."""

import subprocess
import sys
import textwrap
import warnings

import pytest

pytest.importorskip(
    "sklearn", reason="jax_softmax.LogisticRegression needs scikit-learn: pip install jax-softmax[sklearn]"
)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from helpers import x64  # noqa: E402
from scipy.special import logsumexp  # noqa: E402
from sklearn import linear_model  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import jax_softmax as js  # noqa: E402
from jax_softmax.solvers import NotConvergedWarning, l2_from_c, solve  # noqa: E402
from jax_softmax.solvers.estimator import LogisticRegression  # noqa: E402


def overlapping_classes(n: int = 120, features: int = 4, classes: int = 3, seed: int = 0):
    """float64 ``[n, features]`` and int labels drawn from a softmax model: no class separable."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)) * np.array([1.0, 2.0, 0.5, 3.0])[:features] + 0.5
    logits = x @ rng.normal(size=(features, classes)) + rng.normal(size=classes)
    y = np.array([rng.choice(classes, p=np.exp(z - logsumexp(z))) for z in logits])
    return x, y


def sklearn_objective(coef, intercept, x, y, c):
    """scikit-learn's ``C * sum(nll) + 0.5 * ||coef||^2``: multinomial, or binomial for one row."""
    logits = x @ coef.T + intercept
    if coef.shape[0] == 1:
        z = logits[:, 0]
        nll = np.logaddexp(0.0, z) - (y == 1) * z
    else:
        nll = logsumexp(logits, axis=1) - logits[np.arange(len(y)), y]
    return c * nll.sum() + 0.5 * np.sum(coef**2)


def centred(a):
    return a - a.mean(axis=0)


# scikit-learn's own suite, about 35 s (each new shape compiles a program): check_array_api_input and
# check_classifier_data_not_an_array skip themselves (they need SCIPY_ARRAY_API and pandas); nothing
# is marked as an expected failure. The solver only changes what solve does, which the tests below
# compare with scikit-learn for both; the suite runs on the default.
@parametrize_with_checks([LogisticRegression()])
@pytest.mark.slow
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("solver", ["newton-cg", "lbfgs"])
@pytest.mark.slow
def test_multiclass_reaches_scikit_learns_optimum(solver):
    x, y = overlapping_classes()
    c = 0.7
    ours = LogisticRegression(C=c, tol=1e-10, solver=solver, max_iter=1000).fit(x, y)
    theirs = linear_model.LogisticRegression(C=c, solver="newton-cg", tol=1e-10).fit(x, y)
    assert ours.coef_.shape == (3, 4) and ours.intercept_.shape == (3,) and ours.coef_.dtype == np.float64
    assert ours.n_iter_.shape == (1,) and ours.n_iter_[0] >= 1 and ours.n_features_in_ == 4
    objective = sklearn_objective(ours.coef_, ours.intercept_, x, y, c)
    optimum = sklearn_objective(theirs.coef_, theirs.intercept_, x, y, c)
    assert objective == pytest.approx(optimum, rel=1e-9)
    np.testing.assert_allclose(centred(ours.coef_), centred(theirs.coef_), atol=1e-6)
    np.testing.assert_allclose(centred(ours.intercept_), centred(theirs.intercept_), atol=1e-6)
    np.testing.assert_allclose(ours.predict_proba(x), theirs.predict_proba(x), atol=1e-6)
    assert ours.decision_function(x).shape == (len(x), 3)
    np.testing.assert_array_equal(ours.predict(x), theirs.predict(x))
    assert ours.score(x, y) == theirs.score(x, y)


@pytest.mark.slow
def test_binary_solves_the_two_class_multinomial_in_scikit_learns_shapes():
    x, y = overlapping_classes(classes=2, seed=1)
    c = 0.3
    ours = LogisticRegression(C=c, tol=1e-10).fit(x, y)
    assert ours.coef_.shape == (1, 4) and ours.intercept_.shape == (1,)
    assert ours.decision_function(x).shape == (len(x),)
    # The 2-class multinomial optimum, read as the log-odds w[:, 1] - w[:, 0] ...
    with x64():
        params = solve(x, y, l2_from_c(c, len(x)), tol=1e-10, dtype=np.float64).params
        w, b = np.asarray(params.w), np.asarray(params.b)
    np.testing.assert_allclose(ours.coef_[0], w[:, 1] - w[:, 0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.intercept_[0], b[1] - b[0], rtol=1e-9, atol=1e-12)
    # ... is scikit-learn's binomial optimum with C doubled, at half its objective.
    theirs = linear_model.LogisticRegression(C=2 * c, solver="newton-cg", tol=1e-10).fit(x, y)
    objective = sklearn_objective(ours.coef_, ours.intercept_, x, y, 2 * c) / 2
    logits = x @ w + b
    nll = logsumexp(logits, axis=1) - logits[np.arange(len(y)), y]
    multinomial = c * np.sum(nll) + 0.5 * np.sum(w**2)  # both columns penalised
    assert objective == pytest.approx(multinomial, rel=1e-12)
    assert objective == pytest.approx(
        sklearn_objective(theirs.coef_, theirs.intercept_, x, y, 2 * c) / 2, rel=1e-9
    )
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-6)
    np.testing.assert_allclose(ours.decision_function(x), theirs.decision_function(x), atol=1e-6)
    np.testing.assert_allclose(ours.predict_proba(x), theirs.predict_proba(x), atol=1e-6)
    np.testing.assert_allclose(ours.predict_log_proba(x), theirs.predict_log_proba(x), atol=1e-6)
    np.testing.assert_array_equal(ours.predict(x), theirs.predict(x))


@pytest.mark.parametrize(
    "names", [np.array(["cat", "dog", "emu"]), np.array([3, 7, 10]), np.array(["b", "a", "c"], dtype=object)]
)
def test_labels_of_any_kind_round_trip(names):
    x, y = overlapping_classes()
    by_index = LogisticRegression().fit(x, y)
    by_name = LogisticRegression().fit(x, names[y])
    np.testing.assert_array_equal(by_name.classes_, np.sort(names))
    order = np.argsort(names)  # classes_ is sorted: the probabilities' columns follow it
    np.testing.assert_allclose(by_name.predict_proba(x), by_index.predict_proba(x)[:, order], atol=1e-12)
    np.testing.assert_array_equal(by_name.predict(x), names[by_index.predict(x)])
    assert by_name.score(x, names[y]) == by_index.score(x, y) > 0.5


def test_float32_is_solved_in_float32_and_agrees_with_float64():
    x, y = overlapping_classes()
    single = LogisticRegression(tol=1e-5).fit(x.astype(np.float32), y)
    double = LogisticRegression(tol=1e-10).fit(x, y)
    assert single.coef_.dtype == single.intercept_.dtype == np.float32
    assert double.coef_.dtype == double.intercept_.dtype == np.float64
    np.testing.assert_allclose(single.coef_, double.coef_, atol=1e-4)
    np.testing.assert_allclose(single.predict_proba(x), double.predict_proba(x), atol=1e-4)


def test_integer_input_is_solved_in_float64():
    x, y = overlapping_classes()
    integers = np.round(x * 10).astype(np.int64)
    model = LogisticRegression().fit(integers, y)
    assert model.coef_.dtype == np.float64
    expected = LogisticRegression().fit(integers.astype(np.float64), y)
    np.testing.assert_array_equal(model.coef_, expected.coef_)


@pytest.mark.slow
def test_fitting_float64_leaves_the_callers_x64_setting_alone():
    x, y = overlapping_classes()
    assert not jax.config.jax_enable_x64
    model = LogisticRegression().fit(x, y)
    assert model.coef_.dtype == np.float64
    assert not jax.config.jax_enable_x64 and jnp.zeros(1).dtype == jnp.float32
    with x64():  # a caller that had it on keeps it on
        LogisticRegression().fit(x.astype(np.float32), y)
        assert jax.config.jax_enable_x64 and jnp.zeros(1).dtype == jnp.float64


def test_log_probabilities_come_from_log_softmax_not_from_probabilities():
    x, y = overlapping_classes()
    model = LogisticRegression(C=100.0).fit(x, y)
    far = x * 1e4  # logits thousands apart: some probabilities round to exactly 0
    assert (model.predict_proba(far) == 0).any()
    log_probabilities = model.predict_log_proba(far)
    assert np.isfinite(log_probabilities).all()
    logits = model.decision_function(far)
    np.testing.assert_allclose(
        log_probabilities, logits - logsumexp(logits, axis=1, keepdims=True), rtol=1e-12
    )


@pytest.mark.slow
def test_grid_search_over_c():
    x, y = overlapping_classes(n=150)
    search = GridSearchCV(LogisticRegression(), {"C": [1e-4, 1.0, 100.0]}, cv=3).fit(x, y)
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all() and scores[0] < max(scores[1:])  # C=1e-4 underfits
    assert search.best_params_["C"] in (1.0, 100.0)
    assert isinstance(search.best_estimator_, LogisticRegression)
    np.testing.assert_array_equal(search.predict(x), search.best_estimator_.predict(x))


def test_pipeline_with_standard_scaler():
    x, y = overlapping_classes()
    x = x * 1000.0 + 5000.0
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(tol=1e-10)).fit(x, y)
    scaled = StandardScaler().fit_transform(x)
    direct = LogisticRegression(tol=1e-10).fit(scaled, y)
    np.testing.assert_allclose(pipeline.predict_proba(x), direct.predict_proba(scaled), atol=1e-9)
    assert pipeline.score(x, y) == direct.score(scaled, y) > 0.5


def test_not_converging_warns_convergence_warning_only():
    x, y = overlapping_classes()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = LogisticRegression(max_iter=1, tol=1e-12).fit(x, y)
    categories = [w.category for w in caught]
    assert categories == [ConvergenceWarning], [str(w.message) for w in caught]
    assert "max_iter" in str(caught[0].message) and model.n_iter_[0] == 1
    assert not issubclass(ConvergenceWarning, NotConvergedWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LogisticRegression().fit(x, y)  # converges: no warning


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("C", 0.0),
        ("C", -1.0),
        ("C", float("inf")),
        ("C", float("nan")),
        ("C", "1"),
        ("tol", 0.0),
        ("tol", -1e-4),
        ("tol", float("inf")),
        ("max_iter", 0),
        ("max_iter", 10.0),
        ("max_iter", True),
        ("solver", "sag"),
        ("solver", None),
    ],
)
def test_a_bad_hyperparameter_is_named_in_fit(name, value):
    x, y = overlapping_classes(n=20)
    model = LogisticRegression(**{name: value})  # __init__ only stores it
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        model.fit(x, y)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), y), "NaN"),
        (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 5, np.inf, x), y), "infinity"),
        (lambda x, y: (x, np.zeros_like(y)), "at least two classes, got 1 class"),
        (lambda x, y: (x[:-1], y), "inconsistent numbers of samples"),
        (lambda x, y: (x, y + 0.5), "Unknown label type"),
        (lambda x, y: (x[:0], y[:0]), "0 sample"),
        (lambda x, y: (x[:, 0], y), "2D array"),
    ],
    ids=["nan", "inf", "one-class", "lengths", "continuous-y", "empty", "1d-x"],
)
def test_bad_data_is_a_clear_value_error(change, message):
    x, y = change(*overlapping_classes(n=20))
    with pytest.raises(ValueError, match=message):
        LogisticRegression().fit(x, y)


def test_prediction_needs_a_fit_with_as_many_features():
    x, y = overlapping_classes(n=20)
    with pytest.raises(NotFittedError):
        LogisticRegression().predict(x)
    model = LogisticRegression().fit(x, y)
    with pytest.raises(ValueError, match="4 features"):
        model.predict(x[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        model.predict_proba(np.full_like(x, np.nan))


def test_exported_from_the_package():
    assert js.LogisticRegression is LogisticRegression
    assert "LogisticRegression" in js.__all__


@pytest.mark.slow
def test_without_scikit_learn_the_package_imports_and_the_estimator_says_how_to_install_it():
    child = textwrap.dedent(
        """
        import sys
        sys.modules["sklearn"] = None  # as if scikit-learn were not installed
        import jax_softmax as js
        from jax_softmax.solvers import solve
        try:
            js.LogisticRegression
        except ImportError as error:
            print("ImportError:", error)
        """
    )
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "ImportError:" in result.stdout and "pip install jax-softmax[sklearn]" in result.stdout
