"""sweep: a grid of models in one compiled program, each equal to its own fit."""

import dataclasses
import json
import logging
import math
import sys

import numpy as np
import pytest
from helpers import assert_trees_close, blobs

import jax_softmax as js
from jax_softmax.cli import main
from jax_softmax.plots import plot_sweep, save_figure
from jax_softmax.sweeps import (
    SweepResult,
    SweepRun,
    format_sweep,
    parse_grid,
    rank_runs,
)

RUN_KEYS = {"lr", "l2", "seed", "batch_size", "val_accuracy", "val_loss", "test_accuracy", "diverged"}


@pytest.fixture(scope="module")
def splits():
    x, y = blobs(n=500)
    return (x[:300], y[:300]), (x[300:400], y[300:400]), (x[400:], y[400:])


@pytest.mark.parametrize(
    "grad, optimizer, lrs, batch_sizes",
    [
        ("autodiff", "sgd", (0.03, 0.3), (30, 60)),
        ("manual", "sgd", (0.03, 0.3), (30,)),
        ("autodiff", "adam", (0.003, 0.03), (30,)),
    ],
)
@pytest.mark.slow
def test_every_member_equals_a_separate_fit(splits, grad, optimizer, lrs, batch_sizes):
    train, validation, _ = splits
    l2s, seeds = (0.0, 0.01), (0, 3)
    result = js.sweep(
        train,
        validation,
        lrs=lrs,
        l2s=l2s,
        seeds=seeds,
        batch_sizes=batch_sizes,
        epochs=2,
        grad=grad,
        optimizer=optimizer,
        num_classes=3,
    )
    grid = {(lr, l2, seed, b) for lr in lrs for l2 in l2s for seed in seeds for b in batch_sizes}
    assert {(r.lr, r.l2, r.seed, r.batch_size) for r in result.runs} == grid
    # Members that differ from each other in every setting (fit compiles afresh each time).
    chosen = [(lrs[1], l2s[1], seeds[1], batch_sizes[0])]
    if optimizer == "sgd":
        chosen.append((lrs[0], l2s[0], seeds[0], batch_sizes[-1]))
    if grad == "autodiff" and optimizer == "sgd":
        chosen.append((lrs[0], l2s[1], seeds[0], batch_sizes[0]))
    rtol = 1e-5 if optimizer == "sgd" else 1e-4  # Adam divides by a root of small numbers
    for lr, l2, seed, batch_size in chosen:
        run = next(r for r in result.runs if (r.lr, r.l2, r.seed, r.batch_size) == (lr, l2, seed, batch_size))
        params, history = js.fit(
            train,
            validation,
            epochs=2,
            batch_size=batch_size,
            lr=lr,
            l2=l2,
            seed=seed,
            grad=grad,
            optimizer=optimizer,
            num_classes=3,
        )
        assert not run.diverged
        assert_trees_close(run.params, params, rtol)
        assert run.val_loss == pytest.approx(history.epochs[-1].val_loss, rel=10 * rtol)
        assert run.val_accuracy == pytest.approx(history.epochs[-1].val_accuracy, abs=0.011)
        assert run.train_loss == pytest.approx(history.epochs[-1].train_loss, rel=10 * rtol)


@pytest.mark.slow
def test_one_program_trains_every_member(splits, caplog):
    train, validation, _ = splits
    kwargs = dict(l2s=(0.0, 0.1), batch_sizes=(15,), optimizer="sgd", num_classes=3)

    def epoch_compilations() -> int:
        return sum("compilation of jit(_member_epoch)" in r.getMessage() for r in caplog.records)

    with caplog.at_level(logging.DEBUG, logger="jax._src.dispatch"):
        js.sweep(train, validation, lrs=(0.1, 0.2, 0.4), seeds=(0, 1, 2), epochs=3, **kwargs)
        assert epoch_compilations() == 1  # 18 members, 3 epochs: one program
        js.sweep(train, validation, lrs=(0.5, 0.6, 0.7), seeds=(4, 5, 6), epochs=2, **kwargs)
        assert epoch_compilations() == 1  # other values, the same grid shape: the same program
        js.sweep(train, validation, lrs=(0.5,), seeds=(4,), epochs=2, **kwargs)
        assert epoch_compilations() == 2  # another grid shape: another program


# The tests below share one grid shape, 2 seeds x 4 configurations at batch 30, so that
# they share its compiled program.
GRID = dict(seeds=(0, 1), batch_sizes=(30,), optimizer="sgd", num_classes=3)


def test_diverged_members_are_reported_and_leave_the_others_unchanged(splits):
    train, validation, test = splits
    alone = js.sweep(train, validation, test, lrs=(0.3, 0.1), l2s=(0.0, 0.01), epochs=3, **GRID)
    mixed = js.sweep(train, validation, test, lrs=(0.3, 1e30), l2s=(0.0, 0.01), epochs=3, **GRID)
    diverged = [r for r in mixed.runs if r.diverged]
    assert {(r.lr, r.l2, r.seed) for r in diverged} == {(1e30, l2, s) for l2 in (0.0, 0.01) for s in (0, 1)}
    assert mixed.runs[-len(diverged) :] == tuple(diverged)  # ranked last
    for run in diverged:
        assert math.isnan(run.val_accuracy) and math.isnan(run.val_loss) and run.test_accuracy is None
        assert run.to_json()["val_accuracy"] is None and run.to_json()["val_loss"] is None
    assert mixed.best is not None and not mixed.best.diverged and mixed.best.lr == 0.3
    for run in (r for r in alone.runs if r.lr == 0.3):
        twin = next(r for r in mixed.runs if (r.lr, r.l2, r.seed) == (run.lr, run.l2, run.seed))
        assert not twin.diverged
        assert_trees_close(twin.params, run.params, 1e-6)
        assert twin.val_accuracy == run.val_accuracy
    assert "diverged" in format_sweep(mixed)
    json.dumps(mixed.to_json(), allow_nan=False)  # no NaN or inf reaches the JSON

    hopeless = js.sweep(train, validation, test, lrs=(1e30, 1e31), l2s=(0.01, 0.1), epochs=3, **GRID)
    assert hopeless.best is None and hopeless.best_params is None
    assert all(r.diverged and r.test_accuracy is None for r in hopeless.runs)
    assert hopeless.to_json()["best"] is None


def test_selection_uses_validation_and_the_test_set_once(splits):
    train, validation, test = splits
    grid = dict(lrs=(0.1, 1.0), l2s=(0.0, 0.1), epochs=2, **GRID)
    result = js.sweep(train, validation, test, **grid)
    runs = result.runs
    key = [(-r.val_accuracy, r.val_loss) for r in runs]
    assert key == sorted(key)  # best first: accuracy, then loss
    assert result.best is runs[0] and result.best_params is runs[0].params
    # Blobs are easy: several members tie on accuracy and the lower loss wins.
    assert runs[0].val_accuracy == runs[1].val_accuracy and runs[0].val_loss < runs[1].val_loss
    assert [r.test_accuracy is not None for r in runs] == [True] + [False] * (len(runs) - 1)
    _, test_accuracy = js.evaluate(result.best_params, *test)
    assert result.best.test_accuracy == pytest.approx(float(test_accuracy))

    by_loss = js.sweep(train, validation, test, select="loss", **grid)
    assert [r.val_loss for r in by_loss.runs] == sorted(r.val_loss for r in by_loss.runs)
    assert by_loss.select == "loss" and by_loss.best.val_loss == min(r.val_loss for r in runs)


def test_exact_ties_go_to_the_first_in_the_grid():
    def run(lr, acc, loss, diverged=False):
        return SweepRun(lr, 0.0, 0, 10, acc, loss, 0.1, diverged)

    runs = [run(0.1, 0.9, 0.3), run(0.2, 0.95, 0.3), run(0.3, 0.9, 0.2), run(0.4, math.nan, math.nan, True)]
    runs += [run(0.5, 0.95, 0.3)]
    assert [r.lr for r in rank_runs(runs)] == [0.2, 0.5, 0.3, 0.1, 0.4]
    assert [r.lr for r in rank_runs(runs, "loss")] == [0.3, 0.2, 0.5, 0.1, 0.4]
    with pytest.raises(ValueError, match="select must be one of"):
        rank_runs(runs, "test")


def test_json_has_the_documented_keys(splits):
    train, validation, test = splits
    result = js.sweep(train, validation, test, lrs=(0.1, 0.3), l2s=(0.0, 0.01), epochs=1, **GRID)
    data = json.loads(json.dumps(result.to_json()))
    assert set(data) == {"runs", "best", "seconds"}
    assert set(data["best"]) == RUN_KEYS and all(set(r) == RUN_KEYS for r in data["runs"])
    assert data["best"] == data["runs"][0] and data["best"]["test_accuracy"] is not None
    assert data["seconds"] > 0


def test_plot(tmp_path):
    runs = [
        SweepRun(lr, l2, seed, batch, 0.9 + lr / 10 - l2 + seed / 100, 0.3, 0.3, False)
        for lr in (0.01, 0.1, 1.0)
        for l2 in (0.0, 0.01)
        for seed in (0, 1)
        for batch in (50, 100)
    ] + [SweepRun(1e30, 0.0, 0, 50, math.nan, math.nan, math.nan, True)]
    ranked = tuple(rank_runs(runs))
    best = dataclasses.replace(ranked[0], test_accuracy=0.91)
    result = SweepResult((best, *ranked[1:]), best, "accuracy", epochs=3, seconds=1.0, compile_seconds=0.5)
    fig = plot_sweep(result)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and "learning rate" in ax.get_xlabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [
        "L2 0, batch 50",
        "L2 0, batch 100",
        "L2 0.01, batch 50",
        "L2 0.01, batch 100",
        "diverged (1)",
    ]
    line = ax.get_lines()[0]  # L2 0, batch 50: the mean over the two seeds
    np.testing.assert_allclose(line.get_xdata(), [0.01, 0.1, 1.0])
    np.testing.assert_allclose(line.get_ydata(), [100 * (0.9 + lr / 10 + 0.005) for lr in (0.01, 0.1, 1.0)])
    assert "lr 1, L2 0, seed 1, batch 50" in ax.get_title() and "test 91.00%" in ax.get_title()
    path = save_figure(fig, tmp_path / "sweep.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parse_grid():
    assert parse_grid("0.01,0.03,0.1", "lr", positive=True) == (0.01, 0.03, 0.1)
    assert parse_grid("1e-3:1:4", "lr", positive=True) == (0.001, 0.01, 0.1, 1.0)
    assert parse_grid("0, 1e-5:1e-3:3", "l2") == (0.0, 1e-5, 1e-4, 1e-3)
    assert parse_grid("0.5:0.5:1", "lr") == (0.5,)
    for text, message in [
        ("0,0.1", "lr must hold finite numbers > 0, got 0.0"),
        ("0.1,x", "lr: cannot read 'x'"),
        ("0.1:1", "lr: cannot read '0.1:1'"),
        ("0:1:3", "finite bounds > 0"),
        ("0.1:1:0", "number of values >= 1"),
        ("0.1,inf", "finite numbers > 0, got inf"),
        ("0.1,0.1", "must not repeat a value"),
    ]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_grid(text, "lr", positive=True)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lrs=()), "lrs must hold at least one value"),
        (dict(lrs=(0.1, -1.0)), "lrs must hold finite numbers > 0, got -1.0"),
        (dict(l2s=(math.nan,)), "l2s must hold finite numbers >= 0, got nan"),
        (dict(seeds=(0, 0)), "seeds must not repeat a value"),
        (dict(seeds=(-1,)), "seeds must hold integers >= 0, got -1"),
        (dict(batch_sizes=(400,)), r"batch_sizes must hold integers in \[1, 300\], got 400"),
        (dict(epochs=0), "epochs must be an integer >= 1"),
        (dict(optimizer="lbfgs"), "optimizer must be one of"),
        (dict(select="test"), "select must be one of"),
    ],
)
def test_bad_arguments_name_themselves(splits, kwargs, message):
    train, validation, _ = splits
    with pytest.raises(ValueError, match=message):
        js.sweep(train, validation, num_classes=3, **kwargs)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lr", "0,0.1"], "--lr must hold finite numbers > 0"),
        (["--l2", "1e-3:1e-1"], "--l2: cannot read '1e-3:1e-1'"),
        (["--batch-size", "100,0"], "--batch-size: must be integers >= 1"),
        (["--seeds", "0"], "--seeds: must be an integer >= 1"),
        (["--select", "test"], "--select: invalid choice"),
    ],
)
def test_bad_command_lines_exit_2_with_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


@pytest.mark.slow
def test_default_sweep_on_mnist(mnist_dir, tmp_path, capsys):
    plot = tmp_path / "sweep.png"
    assert main(["sweep", "--data-dir", str(mnist_dir), "--json", "--plot", str(plot)]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    best = result["best"]
    print(
        f"default sweep: {len(result['runs'])} models in {result['seconds']:.1f} s, best lr {best['lr']} "
        f"l2 {best['l2']}: validation {best['val_accuracy']:.4f}, test {best['test_accuracy']:.4f}",
        file=sys.stderr,
    )
    assert len(result["runs"]) == 9 and not any(r["diverged"] for r in result["runs"])
    assert [r["test_accuracy"] is not None for r in result["runs"]].count(True) == 1
    assert best == result["runs"][0]
    assert best["val_accuracy"] == max(r["val_accuracy"] for r in result["runs"])
    assert best["test_accuracy"] >= 0.925
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert "epoch  15/15" in err
