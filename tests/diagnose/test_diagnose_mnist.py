"""The diagnosis on real MNIST in the question's float64, by the library and by the command line."""

import json
import sys

import numpy as np
import pytest
from helpers import run_cli, x64

import jax_softmax as js
from jax_softmax.cli import main
from jax_softmax.data import load_mnist_uint8
from jax_softmax.diagnose import EXP_LIMITS, DiagnoseConfig, default_variants


@pytest.fixture(scope="module")
def mnist_runs(mnist_dir):
    raw = load_mnist_uint8(mnist_dir)
    with x64():
        runs = js.run_diagnosis(
            raw.train, raw.validation, default_variants("float64"), DiagnoseConfig(epochs=2)
        )
    return {d.variant.name: d for d in runs}


@pytest.mark.slow
def test_mnist_as_written_diverges_and_never_passes_20_percent(mnist_runs):
    d = mnist_runs["as written"]
    assert d.verdict.cause == "divergence" and d.collapsed
    assert d.log.val_accuracy.max() <= 0.20
    assert d.verdict.collapse_step == 2 and d.verdict.mechanism == "overflow"


@pytest.mark.slow
def test_mnist_correct_sign_on_raw_pixels_overflows_or_underflows(mnist_runs):
    d = mnist_runs["fix sign"]
    assert d.verdict.cause in ("underflow", "overflow")
    assert d.log.max_abs_logit[d.verdict.collapse_step - 1] > EXP_LIMITS["float64"][0]


@pytest.mark.slow
def test_mnist_shifted_softmax_reproduces_the_question_s_symptom(mnist_runs):
    d = mnist_runs["fix sign, shifted softmax"]
    assert d.verdict.cause == "underflow" and d.verdict.collapse_step == 2
    assert not d.log.exp_overflow.any() and d.log.params_finite.all()
    # Most of the batch's true digits get a probability of exactly 0 from step 2 on ...
    assert d.zero_true_probs_at_collapse >= 50
    assert (d.log.zero_true_probs[1:] > 0).mean() > 0.9
    assert (d.log.log_likelihood[1:] == -np.inf).mean() > 0.9
    # ... while the classifier learns on as the stable softmax does.
    assert d.best_val_accuracy > 0.8 and d.final_val_accuracy > 0.6
    assert mnist_runs["fix sign"].log.max_abs_logit[1] == d.log.max_abs_logit[1] > 10_000


@pytest.mark.slow
def test_mnist_scaled_pixels_show_the_question_s_zero_probability(mnist_runs):
    d = mnist_runs["fix pixels"]
    assert d.verdict.cause == "divergence" and d.verdict.mechanism == "underflow"
    step = d.verdict.first_nonfinite_step
    assert d.log.log_likelihood[step - 1] == -np.inf and d.log.true_prob_zero[step - 1]


@pytest.mark.slow
def test_mnist_stable_softmax_alone_still_diverges(mnist_runs):
    d = mnist_runs["fix softmax"]
    assert d.verdict.cause == "divergence" and d.verdict.first_nonfinite_step is None
    assert d.log.val_accuracy.max() <= 0.20


@pytest.mark.slow
def test_mnist_fixed_pipeline_reaches_90_percent_without_collapse(mnist_runs):
    d = mnist_runs["all fixed"]
    assert d.verdict.cause is None and np.isfinite(d.log.log_likelihood).all()
    assert d.best_val_accuracy >= 0.90 and d.final_val_accuracy >= 0.90


# ---------------------------------------------------------------------------------------
# The command line.


@pytest.mark.slow
def test_cli_json_and_plot(mnist_dir, tmp_path):
    plot = tmp_path / "collapse.png"
    result = run_cli(
        "diagnose",
        "--data-dir",
        str(mnist_dir),
        "--dtype",
        "float32",
        "--epochs",
        "1",
        "--json",
        "--plot",
        str(plot),
    )
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)["runs"]
    assert [r["variant"] for r in runs] == [f"{v.name}, float32" for v in default_variants()]
    causes = ["divergence", "overflow", "underflow", "divergence", "divergence", None]
    assert [r["cause"] for r in runs] == causes
    reproduction = runs[2]
    assert reproduction["collapse_step"] == 2 and reproduction["best_val_accuracy"] > 0.8
    assert reproduction["zero_true_probs_at_collapse"] >= 50 and reproduction["batch_size"] == 200
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert len(result.stderr.splitlines()) == 6  # one progress line per run


@pytest.mark.parametrize(
    "args, message",
    [
        (["--log-every", "0"], "--log-every: must be an integer >= 1"),
        (["--dtype", "float16"], "--dtype: invalid choice"),
        (["--plot", "/nonexistent/dir/x.png"], "the directory /nonexistent/dir does not exist"),
    ],
)
def test_cli_bad_input_is_one_line_and_status_2(args, message, capsys):
    try:
        status = main(["diagnose", *args])
    except SystemExit as e:  # argparse
        status = e.code
    assert status == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_plot_without_matplotlib(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["diagnose", "--plot", "x.png"]) == 2
    assert "pip install 'jax-softmax[plot]'" in capsys.readouterr().err
