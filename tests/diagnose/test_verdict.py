"""The classification rules that name a run's cause of collapse, on hand-made logs."""

import numpy as np
import pytest

from jax_softmax.diagnose import (
    TrainingLog,
    Verdict,
    classify_collapse,
)


def make_log(n=6, **changes):
    fields = {
        "log_likelihood": -np.linspace(2.3, 0.5, n),
        "max_abs_logit": np.linspace(0.0, 5.0, n),
        "worst_nll": np.full(n, 3.0),
        "loss": np.linspace(2.3, 0.5, n),
        "slope": -np.ones(n),
        "exp_overflow": np.zeros(n, bool),
        "true_prob_zero": np.zeros(n, bool),
        "zero_true_probs": np.zeros(n, np.int32),
        "all_probs_zero": np.zeros(n, bool),
        "params_finite": np.ones(n, bool),
        "val_steps": np.arange(n + 1),
        "val_accuracy": np.linspace(0.1, 0.9, n + 1),
        "planned_steps": n,
    }
    for name, value in changes.items():
        fields[name] = np.asarray(value) if name != "planned_steps" else value
    return TrainingLog(**fields)


def test_a_finite_descending_run_has_no_cause():
    assert classify_collapse(make_log()) == Verdict(None, None, None, None, 0.0, False)


def test_overflow_wins_over_a_zero_probability_at_the_same_step():
    ll = [-2.3, -1.0, np.nan, np.nan, np.nan, np.nan]
    verdict = classify_collapse(
        make_log(
            log_likelihood=ll,
            exp_overflow=[0, 0, 1, 0, 0, 0],
            true_prob_zero=[0, 0, 1, 0, 0, 0],
            params_finite=[1, 1, 0, 0, 0, 0],
        )
    )
    assert (verdict.cause, verdict.collapse_step, verdict.mechanism) == ("overflow", 3, "overflow")


@pytest.mark.parametrize("flag", ["true_prob_zero", "all_probs_zero"])
def test_a_zero_probability_is_an_underflow(flag):
    ll = [-2.3, -1.0, -0.8, -np.inf if flag == "true_prob_zero" else np.nan, -0.7, -0.6]
    verdict = classify_collapse(make_log(log_likelihood=ll, **{flag: [0, 0, 0, 1, 0, 0]}))
    assert (verdict.cause, verdict.collapse_step, verdict.first_nonfinite_step) == ("underflow", 4, 4)


def test_climbing_the_loss_is_divergence_whatever_breaks_first():
    climbing = {"slope": np.ones(6), "loss": [2.3, 2.2, 2.5, 3.0, 9.0, 30.0]}
    verdict = classify_collapse(make_log(**climbing))
    # The loss never comes back to its starting 2.3 after step 2.
    assert (verdict.cause, verdict.collapse_step, verdict.first_nonfinite_step) == ("divergence", 3, None)
    ll = [-2.3, -2.2, -2.5, -np.inf, -9.0, -30.0]
    verdict = classify_collapse(make_log(log_likelihood=ll, true_prob_zero=[0, 0, 0, 1, 0, 0], **climbing))
    assert (verdict.cause, verdict.collapse_step, verdict.mechanism) == ("divergence", 4, "underflow")


def test_steps_that_point_down_are_not_divergence_even_when_the_loss_grows():
    # Raw pixels with the correct sign: the loss is huge but every step points down it.
    verdict = classify_collapse(make_log(loss=[2.3, 900.0, 500.0, 800.0, 700.0, 600.0]))
    assert verdict.cause is None and verdict.loss_grew and verdict.uphill_fraction == 0.0
