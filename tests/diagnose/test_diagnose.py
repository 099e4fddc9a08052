"""The collapse diagnosis: each switch's failure on synthetic data, the outputs, bad input, and
the library's own finiteness on raw pixels."""

import contextlib
import dataclasses
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import x64

import jax_softmax as js
from jax_softmax.data import load_mnist_uint8
from jax_softmax.diagnose import (
    CAUSES,
    EXP_LIMITS,
    DiagnoseConfig,
    Variant,
    all_variants,
    default_variants,
    diagnose_variant,
    format_diagnosis,
    format_diagnosis_log,
    plot_diagnosis,
    train_variant,
)
from jax_softmax.plots import plot_zero_probabilities, save_figure
from jax_softmax.train import RawPixelsWarning

NUM_CLASSES = 4


def synthetic_digits(n_train=2000, n_val=500, num_features=64, seed=0, flip=0.05):
    """Raw uint8 "images": each class lights a fixed random 30% of the pixels (150-255, the
    rest 0-39), with a share ``flip`` of the pixels flipped. As with MNIST, one SGD step at
    learning rate 0.1 on these raw pixels makes logits in the thousands."""
    rng = np.random.default_rng(seed)
    templates = rng.random((NUM_CLASSES, num_features)) < 0.3
    n = n_train + n_val
    y = rng.integers(0, NUM_CLASSES, n).astype(np.int32)
    lit = templates[y] ^ (rng.random((n, num_features)) < flip)
    x = np.where(lit, rng.integers(150, 256, (n, num_features)), rng.integers(0, 40, (n, num_features)))
    x = x.astype(np.uint8)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


SYNTHETIC = synthetic_digits()
# With 30% of the pixels flipped some images are still misclassified after a step, and
# by a margin of thousands: their true-class probability is exactly 0 in a shifted softmax.
NOISY = synthetic_digits(flip=0.3)
CONFIG = DiagnoseConfig(epochs=3, batch_size=50, num_classes=NUM_CLASSES, log_every=5)  # 120 steps


def dtype_context(dtype):
    return x64() if dtype == "float64" else contextlib.nullcontext()


def diagnose(sign, pixels, softmax, dtype="float32", config=CONFIG, data=SYNTHETIC):
    with dtype_context(dtype):
        return diagnose_variant(Variant(sign, pixels, softmax, dtype), *data, config)


# ---------------------------------------------------------------------------------------
# Each switch produces its failure on synthetic data, and the fixed pipeline none.


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.slow
def test_fixed_pipeline_does_not_collapse(dtype):
    d = diagnose("correct", "scaled", "stable", dtype)
    assert d.verdict.cause is None and not d.collapsed and d.verdict.collapse_step is None
    assert np.isfinite(d.log.log_likelihood).all() and d.log.params_finite.all()
    assert (d.log.slope < 0).all()  # every step goes down the loss
    assert d.final_val_accuracy >= 0.95
    assert d.log.num_steps == d.log.planned_steps == 120


@pytest.mark.parametrize("pixels, softmax", [("scaled", "stable"), ("raw", "stable"), ("raw", "naive")])
def test_the_question_s_sign_diverges_whatever_else_is_fixed(pixels, softmax):
    d = diagnose("as_written", pixels, softmax)
    assert d.verdict.cause == "divergence"
    assert d.verdict.uphill_fraction == 1.0
    finite = d.log.loss[np.isfinite(d.log.loss)]
    assert finite[-1] > 10 * finite[0]  # the loss climbs
    assert d.log.val_accuracy.max() <= 0.35  # chance is 0.25 here; the correct sign reaches 1.0


def test_raw_pixels_overflow_the_naive_softmax():
    d = diagnose("correct", "raw", "naive")
    assert d.verdict.cause == "overflow" and d.verdict.collapse_step == 2
    step = d.verdict.collapse_step - 1
    assert d.log.exp_overflow[step] and not d.log.params_finite[step]
    assert d.log.max_abs_logit[step] > 1000  # from pixels of 0-255
    assert np.isnan(d.log.log_likelihood[step])  # inf/inf
    # Every weight is NaN afterwards, so the run stops at the end of that chunk.
    assert d.log.num_steps == CONFIG.log_every < d.log.planned_steps
    assert d.best_val_accuracy > 0.9  # it had learned before it collapsed (step 1)


def test_stable_softmax_survives_the_same_raw_logits():
    naive = diagnose("correct", "raw", "naive")
    stable = diagnose("correct", "raw", "stable")
    # Step 2 computes from the same parameters, so the same logits, in both runs.
    assert stable.log.max_abs_logit[1] == naive.log.max_abs_logit[1] > EXP_LIMITS["float32"][0]
    assert stable.verdict.cause is None
    assert np.isfinite(stable.log.log_likelihood).all()
    assert stable.final_val_accuracy >= 0.95


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_shifted_softmax_zeroes_probabilities_while_the_model_learns(dtype):
    shifted = diagnose("correct", "raw", "shifted", dtype, data=NOISY)
    stable = diagnose("correct", "raw", "stable", dtype, data=NOISY)
    assert shifted.verdict.cause == "underflow" and shifted.verdict.mechanism == "underflow"
    step = shifted.verdict.collapse_step
    assert step == 2  # the first step after one update on raw pixels
    i = step - 1
    # Nothing overflows: every exponent is at most 0. The true digit's probability is 0 for
    # some images, so the batch log-likelihood is -inf.
    assert not shifted.log.exp_overflow.any() and shifted.log.log_likelihood[i] == -np.inf
    assert shifted.zero_true_probs_at_collapse == shifted.log.zero_true_probs[i] > 0
    assert shifted.log.worst_nll[i] > -EXP_LIMITS[dtype][1]
    assert shifted.log.max_abs_logit[i] > 1000
    # The weights stay finite and the classifier keeps learning, as far as the stable run does.
    assert shifted.log.params_finite.all() and shifted.model_survived
    assert shifted.best_val_accuracy > 0.9 > shifted.val_accuracy_at_collapse
    assert shifted.best_val_accuracy > float(np.max(shifted.log.val_accuracy[shifted.log.val_steps < step]))
    assert abs(shifted.final_val_accuracy - stable.final_val_accuracy) < 0.05
    # The same logits through log_softmax: finite, and no probability of 0 to take the log of.
    assert stable.log.max_abs_logit[i] == shifted.log.max_abs_logit[i]
    assert stable.verdict.cause is None and np.isfinite(stable.log.log_likelihood).all()
    assert (stable.log.zero_true_probs == 0).all()
    words = shifted.explanation()
    assert f"for {shifted.log.zero_true_probs[i]} of the 50 images" in words
    assert "the weights stayed finite" in words and "not the model" in words


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_shifted_softmax_on_scaled_pixels_does_not_collapse(dtype):
    d = diagnose("correct", "scaled", "shifted", dtype, data=NOISY)
    assert d.verdict.cause is None and (d.log.zero_true_probs == 0).all()
    assert np.isfinite(d.log.log_likelihood).all()


def test_float32_underflows_where_float64_still_holds():
    # Climbing the loss on scaled pixels: the true class's probability falls below the
    # smallest normal float32 (e^-87.3) long before the smallest normal float64 (e^-708.4).
    single = diagnose("as_written", "scaled", "naive", "float32")
    double = diagnose("as_written", "scaled", "naive", "float64")
    assert single.verdict.cause == double.verdict.cause == "divergence"
    step = single.verdict.first_nonfinite_step
    assert step is not None and single.verdict.mechanism == "underflow"
    assert single.log.true_prob_zero[step - 1] and not single.log.exp_overflow[step - 1]
    assert single.log.log_likelihood[step - 1] == -np.inf
    assert single.log.worst_nll[step - 1] > -EXP_LIMITS["float32"][1]
    assert single.log.params_finite[step - 1]  # the gradient stays finite: training goes on
    first_double = double.verdict.first_nonfinite_step
    assert first_double is None or first_double > step
    assert np.isfinite(double.log.log_likelihood[:step]).all()


def test_replaying_near_a_collapse_changes_nothing_but_adds_measurements():
    coarse = diagnose("as_written", "scaled", "naive", config=dataclasses.replace(CONFIG, log_every=40))
    fine = diagnose("as_written", "scaled", "naive")  # log_every=5
    # A run stops at the end of the chunk where its weights became NaN, so lengths may differ.
    n = min(coarse.log.num_steps, fine.log.num_steps)
    np.testing.assert_array_equal(coarse.log.log_likelihood[:n], fine.log.log_likelihood[:n])
    np.testing.assert_array_equal(coarse.log.slope[:n], fine.log.slope[:n])
    assert coarse.verdict == fine.verdict
    step = coarse.verdict.collapse_step
    # Every step within log_every of the collapse is measured.
    near = set(range(step - 40, step + 41)) & set(range(1, coarse.log.num_steps + 1))
    assert near <= set(coarse.log.val_steps)
    common = np.intersect1d(coarse.log.val_steps, fine.log.val_steps)
    np.testing.assert_array_equal(
        coarse.log.val_accuracy[np.isin(coarse.log.val_steps, common)],
        fine.log.val_accuracy[np.isin(fine.log.val_steps, common)],
    )


@pytest.mark.slow
def test_the_initialisation_is_init_params_draw():
    from jax_softmax.diagnose._train import initial_params_and_orders

    config = dataclasses.replace(CONFIG, init_scale=0.5, seed=3)
    params, orders = initial_params_and_orders(
        3, num_features=64, num_examples=2000, config=config, dtype="float32"
    )
    expected = js.init_params(jax.random.split(jax.random.key(3))[0], 64, NUM_CLASSES, scale=0.5)
    np.testing.assert_array_equal(params.w, expected.w)
    np.testing.assert_array_equal(params.b, expected.b)
    assert orders.shape == (3 * 40, 50)
    for epoch in np.asarray(orders).reshape(3, -1):
        assert len(np.unique(epoch)) == 2000  # a permutation of the training set


# ---------------------------------------------------------------------------------------
# Outputs.


@pytest.fixture(scope="module")
def synthetic_runs():
    return js.run_diagnosis(*SYNTHETIC, default_variants("float32"), CONFIG)


DEFAULT_NAMES = [
    "as written",
    "fix sign",
    "fix sign, shifted softmax",
    "fix pixels",
    "fix softmax",
    "all fixed",
]


def test_default_variants_are_the_question_each_fix_the_reproduction_and_all_fixes():
    variants = default_variants()
    assert [v.name for v in variants] == DEFAULT_NAMES
    assert variants[0] == Variant("as_written", "raw", "naive", "float64")
    assert variants[2] == Variant("correct", "raw", "shifted", "float64")
    assert variants[-1] == Variant("correct", "scaled", "stable", "float64")
    everything = all_variants()
    assert len(everything) == len(set(everything)) == 24
    assert len({v.name for v in everything}) == 24
    assert everything[0] == Variant() and everything[12].dtype == "float32"  # the question's float64 first
    assert {v.softmax for v in everything} == {"naive", "shifted", "stable"}


def test_json_has_exactly_the_documented_fields(synthetic_runs):
    runs = json.loads(json.dumps({"runs": [d.to_json() for d in synthetic_runs]}, allow_nan=False))["runs"]
    assert [set(r) for r in runs] == [
        {
            "variant",
            "sign",
            "pixels",
            "softmax",
            "dtype",
            "collapsed",
            "collapse_step",
            "cause",
            "best_val_accuracy",
            "final_val_accuracy",
            "val_accuracy_at_collapse",
            "zero_true_probs_at_collapse",
            "batch_size",
        }
    ] * 6
    # SYNTHETIC is easy: one step classifies every image right, so no true-class
    # probability is 0 in the shifted softmax (NOISY above shows the underflow).
    assert [r["cause"] for r in runs] == ["divergence", "overflow", None, "divergence", "divergence", None]
    assert all(r["cause"] in (*CAUSES, None) and r["collapsed"] == (r["cause"] is not None) for r in runs)
    assert runs[-1]["collapse_step"] is None and runs[1]["collapse_step"] == 2
    assert runs[-1]["zero_true_probs_at_collapse"] is None and runs[-1]["val_accuracy_at_collapse"] is None
    assert runs[1]["zero_true_probs_at_collapse"] == synthetic_runs[1].log.zero_true_probs[1]
    assert runs[1]["val_accuracy_at_collapse"] == synthetic_runs[1].log.val_accuracy[1]  # after step 1
    assert all(r["batch_size"] == 50 for r in runs)


def test_table_has_one_line_per_run_with_the_cause_in_words(synthetic_runs):
    lines = format_diagnosis(synthetic_runs).splitlines()
    assert len(lines) == 1 + 6 and lines[0].startswith("variant")
    assert "climbs the loss" in lines[1] and "overflowed to inf" in lines[1]
    assert "pixels were 0-255" in lines[2] and "at step 2" in lines[2]
    assert "no collapse" in lines[3] and "no collapse" in lines[6]
    log = format_diagnosis_log(synthetic_runs[1])
    assert "<- collapse" in log.splitlines()[4]  # header lines, step 0, step 1, step 2


def test_plot_is_written_atomically(synthetic_runs, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "collapse.png"
    plot_diagnosis(synthetic_runs, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["collapse.png"]


def test_zero_probability_figure_draws_each_run_s_share_of_zeros(tmp_path):
    pytest.importorskip("matplotlib")
    runs = [
        diagnose("correct", "raw", "shifted", data=NOISY),
        diagnose("correct", "raw", "stable", data=NOISY),
    ]
    fig = plot_zero_probabilities(runs)
    accuracy_ax, zero_ax, ll_ax = fig.axes
    shifted, stable = (np.asarray(line.get_ydata()) for line in zero_ax.get_lines())
    np.testing.assert_allclose(shifted, 100 * runs[0].log.zero_true_probs / CONFIG.batch_size)
    assert shifted.max() > 0 and (stable == 0).all()
    measured = runs[0].log.val_steps > 0
    np.testing.assert_allclose(
        accuracy_ax.get_lines()[0].get_ydata(), 100 * runs[0].log.val_accuracy[measured]
    )
    minus_inf = int(np.sum(runs[0].log.log_likelihood == -np.inf))
    assert minus_inf > 0 and len(ll_ax.get_lines()[1].get_xdata()) == minus_inf  # one tick per -inf
    path = save_figure(fig, tmp_path / "zeros.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="at least one Diagnosis"):
        plot_zero_probabilities([])


def test_plot_without_matplotlib_says_how_to_install_it(synthetic_runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'jax-softmax\[plot\]'"):
        plot_diagnosis(synthetic_runs, tmp_path / "x.png")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Variant(sign="minus"), "sign must be one of"),
        (lambda: Variant(dtype="float16"), "dtype must be one of"),
        (lambda: DiagnoseConfig(lr=0.0), "lr must be finite and > 0"),
        (lambda: DiagnoseConfig(epochs=0), "epochs must be an integer >= 1"),
        (lambda: DiagnoseConfig(init_scale=float("nan")), "init_scale must be finite"),
    ],
)
def test_bad_switches_and_config_name_the_field(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_data_is_named():
    (x, y), val = SYNTHETIC
    variant = Variant("correct", "scaled", "stable", "float32")
    with pytest.raises(TypeError, match="train x must hold raw uint8 pixels"):
        train_variant(variant, (x / 255.0, y), val, CONFIG)
    with pytest.raises(ValueError, match=r"validation y must be in \[0, 4\)"):
        train_variant(variant, (x, y), (val[0], val[1] + 4), CONFIG)
    with pytest.raises(ValueError, match="batch_size must be at most the 2000 training examples"):
        train_variant(variant, (x, y), val, dataclasses.replace(CONFIG, batch_size=2001))
    with pytest.raises(TypeError, match=r"variants\[0\] must be a Variant"):
        js.run_diagnosis((x, y), val, ["as written"], CONFIG)


def test_float64_needs_64_bit_jax():
    if jax.config.jax_enable_x64:
        pytest.skip("64-bit JAX is on in this process")
    with pytest.raises(ValueError, match="float64 needs 64-bit JAX"):
        train_variant(Variant(dtype="float64"), *SYNTHETIC, CONFIG)


# ---------------------------------------------------------------------------------------
# The library's own training stays finite on raw pixels.


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.slow
def test_library_loss_and_update_stay_finite_on_raw_pixels(grad, dtype):
    (x, y), _ = SYNTHETIC
    with dtype_context(dtype):
        params = js.init_params(jax.random.key(0), x.shape[1], NUM_CLASSES, scale=0.0, dtype=dtype)
        step = js.make_update(grad)
        largest = 0.0
        with pytest.warns(RawPixelsWarning, match="raw 0-255 pixels"):  # once, on the first step
            step(params, jnp.asarray(x[:50]), jnp.asarray(y[:50]), 0.1)
        for i in range(40):
            xb, yb = jnp.asarray(x[50 * i : 50 * (i + 1)]), jnp.asarray(y[50 * i : 50 * (i + 1)])
            value = js.loss(params, xb, yb)
            assert np.isfinite(float(value)), f"step {i}: loss {value}"
            largest = max(largest, float(jnp.max(jnp.abs(js.logits(params, xb)))))
            params = step(params, xb, yb, 0.1)
            assert all(np.isfinite(np.asarray(p)).all() for p in params), f"step {i}: non-finite params"
    assert largest > EXP_LIMITS[dtype][0]  # logits that overflow a naive exp


@pytest.mark.slow
def test_library_loss_and_update_stay_finite_on_raw_mnist(mnist_dir):
    raw = load_mnist_uint8(mnist_dir)
    x, y = jnp.asarray(raw.train.x[:20_000]), jnp.asarray(raw.train.y[:20_000])
    params = js.init_params(jax.random.key(0), 784, 10, scale=0.0)
    step = js.make_update("manual")
    with pytest.warns(RawPixelsWarning, match="divide by 255"):  # the question's own mistake, named
        step(params, x[:200], y[:200], 0.1)
    losses, largest = [], 0.0
    for i in range(100):
        xb, yb = x[200 * i : 200 * (i + 1)], y[200 * i : 200 * (i + 1)]
        losses.append(float(js.loss(params, xb, yb)))
        largest = max(largest, float(jnp.max(jnp.abs(js.logits(params, xb)))))
        params = step(params, xb, yb, 0.1)
    assert np.isfinite(losses).all() and all(np.isfinite(np.asarray(p)).all() for p in params)
    assert largest > 10_000
    assert float(js.accuracy(params, raw.validation.x, raw.validation.y)) > 0.7
