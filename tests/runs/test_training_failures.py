"""Training that goes wrong: non-finite values, Ctrl-C, and resuming a run exactly."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_softmax as js
from jax_softmax._process import interrupts_deferred
from jax_softmax.cli import _main as cli
from jax_softmax.data import Mnist, Split
from jax_softmax.gradients import make_optimizer
from jax_softmax.runs._directory import read_metrics
from jax_softmax.runs._resume import (
    ResumeError,
    check_same_data,
    merge_flags,
    read_opt_state,
)
from jax_softmax.runs.checkpoint import read_checkpoint
from jax_softmax.train import shuffled_indices, train_epoch
from jax_softmax.train._fast import compile_with
from jax_softmax.train.nonfinite import scan_until_nonfinite, summarize_steps

NUM_CLASSES = 4


def synthetic(n: int = 600, features: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, features)).astype(np.float32) / 255
    return x, rng.integers(0, NUM_CLASSES, size=n)


def fit(**kwargs):
    settings = {"epochs": 3, "batch_size": 50, "lr": 0.5, "num_classes": NUM_CLASSES, **kwargs}
    return js.fit(synthetic(), **settings)


def epoch_keys(seed: int, epochs: int):
    """fit's keys: the initialisation key, then one shuffling key per epoch."""
    init_key, shuffle_key = jax.random.split(jax.random.key(seed))
    keys = []
    for _ in range(epochs):
        shuffle_key, epoch_key = jax.random.split(shuffle_key)
        keys.append(epoch_key)
    return init_key, keys


# ---------------------------------------------------------------------------------------
# Non-finite values


@pytest.mark.slow
def test_the_scan_guard_keeps_the_last_finite_carry():
    def step(total, x):
        total = total * x
        return total, total

    xs = jnp.array([2.0, 3.0, jnp.inf, 5.0, 7.0])
    carry, losses, ok = scan_until_nonfinite(step, jnp.float32(1.0), xs)
    assert float(carry) == 6.0  # 1 * 2 * 3; the inf step and every one after are discarded
    assert ok.tolist() == [True, True, False, False, False]
    mean, first_bad = summarize_steps(losses, ok)
    assert float(mean) == 4.0 and int(first_bad) == 3
    _, losses, ok = scan_until_nonfinite(step, jnp.float32(1.0), xs[:2])
    assert int(summarize_steps(losses, ok)[1]) == 0


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.slow
def test_the_check_changes_nothing_while_training_stays_finite(optimizer):
    x, y = synthetic()
    params, history = fit(optimizer=optimizer, lr=0.5 if optimizer == "sgd" else 0.01)
    assert history.stopped is None and len(history.epochs) == 3

    init_key, keys = epoch_keys(0, 3)
    reference = js.init_params(init_key, x.shape[1], NUM_CLASSES, scale=0.01)
    transform = make_optimizer(optimizer, 0.5 if optimizer == "sgd" else 0.01)
    state = () if transform is None else transform.init(reference)
    epoch = jax.jit(partial(train_epoch, batch_size=50, grad="autodiff", optimizer=transform, l2=0.0))
    arguments = (jnp.asarray(x), jnp.asarray(y, jnp.int32), jnp.float32(0.5))
    epoch = compile_with(epoch.lower(reference, state, keys[0], *arguments))  # as fit compiles it
    for key in keys:
        reference, state, _ = epoch(reference, state, key, *arguments)
    np.testing.assert_array_equal(np.asarray(params.w), np.asarray(reference.w))
    np.testing.assert_array_equal(np.asarray(params.b), np.asarray(reference.b))


@pytest.mark.slow
def test_divergence_stops_at_the_first_non_finite_step_and_keeps_the_last_finite_parameters():
    x, y = synthetic()
    lr, l2 = 300.0, 0.03  # lr * l2 = 9: the weights are multiplied by -8 at every step
    params, history = fit(epochs=30, lr=lr, l2=l2)
    stop = history.stopped
    assert stop is not None and stop.cause == "divergence" and stop.lr == lr
    assert len(history.epochs) == stop.epoch - 1 and 1 <= stop.step <= stop.steps_per_epoch == 12
    assert stop.last_finite_loss > stop.start_loss
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in params)

    # Replay the run step by step, outside the compiled epoch.
    init_key, keys = epoch_keys(0, stop.epoch)
    reference = js.init_params(init_key, x.shape[1], NUM_CLASSES, scale=0.01)
    epoch = jax.jit(partial(train_epoch, batch_size=50, grad="autodiff", optimizer=None, l2=l2))
    for key in keys[:-1]:
        reference = epoch(reference, (), key, jnp.asarray(x), jnp.asarray(y, jnp.int32), jnp.float32(lr))[0]
    step = js.make_update("autodiff", l2=l2)
    order = np.asarray(shuffled_indices(keys[-1], len(x)))[:600].reshape(12, 50)
    for batch in order[: stop.step - 1]:
        reference = step(reference, x[batch], y[batch], lr)
    np.testing.assert_allclose(np.asarray(params.w), np.asarray(reference.w), rtol=1e-4)
    batch = order[stop.step - 1]
    after = step(reference, x[batch], y[batch], lr)
    assert not (
        np.isfinite(float(js.loss(reference, x[batch], y[batch], l2)))
        and all(bool(jnp.all(jnp.isfinite(p))) for p in after)
    )

    message = stop.message()
    assert f"epoch {stop.epoch}, step {stop.step} of 12" in message
    assert "divergence" in message and "diagnose" in message
    assert "Lower the learning rate (it is 300; try 30)" in message


@pytest.mark.slow
def test_a_huge_learning_rate_overflows_in_one_step():
    params, history = fit(lr=1e38)
    stop = history.stopped
    assert (stop.epoch, stop.step, stop.cause, stop.what) == (1, 2, "overflow", "loss")
    assert not np.isfinite(stop.value) and history.epochs == []
    assert json.dumps(stop.to_json(), allow_nan=False)  # the record is strict JSON
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in params)


@pytest.mark.slow
def test_on_nonfinite_raise_carries_epoch_step_and_parameters():
    kept, history = fit(epochs=30, lr=300.0, l2=0.03)
    with pytest.raises(js.NonFiniteError) as caught:
        fit(epochs=30, lr=300.0, l2=0.03, on_nonfinite="raise")
    error = caught.value
    assert isinstance(error, FloatingPointError)
    assert (error.epoch, error.step) == (history.stopped.epoch, history.stopped.step)
    np.testing.assert_array_equal(np.asarray(error.params.w), np.asarray(kept.w))
    assert str(error) == history.stopped.message()


def test_fit_checks_the_new_arguments():
    with pytest.raises(ValueError, match="on_nonfinite must be one of"):
        fit(on_nonfinite="ignore")
    with pytest.raises(ValueError, match=r"start_epoch must be an integer in \[0, epochs=3\), got 3"):
        fit(start_epoch=3)
    params = js.init_params(jax.random.key(0), 20, NUM_CLASSES)
    with pytest.raises(ValueError, match="opt_state does not belong to this optimizer"):
        fit(params=params, opt_state=optax.sgd(0.1, momentum=0.9).init(params), optimizer="adam")
    with pytest.raises(ValueError, match="opt_state needs the params"):
        fit(opt_state=())


# ---------------------------------------------------------------------------------------
# Resuming


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.slow
def test_resuming_gives_the_uninterrupted_parameters_bit_for_bit(optimizer):
    lr = 0.5 if optimizer == "sgd" else 0.01
    full, full_history = fit(epochs=5, optimizer=optimizer, lr=lr, seed=3)
    saved = {}

    def keep(metrics, params, opt_state):
        saved[metrics.epoch] = jax.tree.map(np.array, (params, opt_state))

    fit(epochs=2, optimizer=optimizer, lr=lr, seed=3, checkpoint_callback=keep)
    params, opt_state = jax.tree.map(jnp.asarray, saved[2])
    resumed, history = fit(
        epochs=5,
        optimizer=optimizer,
        lr=lr,
        seed=3,
        params=js.Params(*params),
        opt_state=opt_state,
        start_epoch=2,
    )
    assert [m.epoch for m in history.epochs] == [3, 4, 5]
    assert [m.train_loss for m in history.epochs] == [m.train_loss for m in full_history.epochs[2:]]
    np.testing.assert_array_equal(np.asarray(resumed.w), np.asarray(full.w))
    np.testing.assert_array_equal(np.asarray(resumed.b), np.asarray(full.b))


@pytest.mark.slow
def test_optimizer_state_round_trip_and_mismatches(tmp_path):
    params = js.init_params(jax.random.key(1), 20, NUM_CLASSES)
    adam = optax.adam(0.01)
    state = adam.update(params, adam.init(params), params)[1]
    path = js.save_params(tmp_path / "params.npz", params, {"epoch": 7}, opt_state=state)
    assert read_checkpoint(path)[2]["opt_state_leaves"] == 5
    loaded = read_opt_state(path, adam.init(params))
    assert jax.tree.structure(loaded) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert a.dtype == b.dtype
    # The parameters read the same with or without the state beside them.
    np.testing.assert_array_equal(np.asarray(js.load_params(path).params.w), np.asarray(params.w))
    with pytest.raises(ResumeError, match="holds an optimizer state of 5 arrays, this optimizer needs 1"):
        read_opt_state(path, [params.w])
    other = js.init_params(jax.random.key(1), 21, NUM_CLASSES)
    with pytest.raises(
        ResumeError, match=r"array 1 is float32 \(20, 4\), the optimizer needs float32 \(21, 4\)"
    ):
        read_opt_state(path, adam.init(other))
    with pytest.raises(js.CheckpointError, match="no such file"):
        read_opt_state(tmp_path / "missing.npz", adam.init(params))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(js.CheckpointError, match="bad.npz: not an .npz checkpoint"):
        read_opt_state(tmp_path / "bad.npz", adam.init(params))


def test_merge_flags_and_data_check():
    recorded = {"epochs": 20, "batch_size": 200, "lr": 0.5}
    assert merge_flags(recorded, {"epochs": 30, "lr": 0.5}, "runs/a") == {**recorded, "epochs": 30}
    with pytest.raises(
        ResumeError, match=r"--batch-size 100 conflicts with the run in runs/a \(--batch-size 200\)"
    ):
        merge_flags(recorded, {"batch_size": 100}, "runs/a")
    with pytest.raises(ResumeError, match=r"--deskew True conflicts .* \(--deskew False\)"):
        merge_flags(recorded, {"deskew": True}, "runs/a")  # recorded before deskewing existed
    with pytest.raises(ResumeError, match=r"--lr 0.5 conflicts .* \(--lr None\)"):
        merge_flags({**recorded, "lr": None}, {"lr": 0.5}, "runs/a")  # a damaged record
    data = Mnist(*(Split(np.zeros((n, 784), np.float32), np.zeros(n, np.int32)) for n in (5, 2, 3)))
    check_same_data({"data_set": "MNIST", "split": {"train": 5, "validation": 2, "test": 3}}, data, "runs/a")
    with pytest.raises(ResumeError, match="runs/a was trained on MNIST with splits .*'train': 50"):
        check_same_data(
            {"data_set": "MNIST", "split": {"train": 50, "validation": 2, "test": 3}}, data, "runs/a"
        )


def test_an_interrupt_during_a_write_is_delivered_after_it():
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # a handler that raised would do so here
            finished.append(True)
    assert finished == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ---------------------------------------------------------------------------------------
# The command line, on the real data set


def train(argv, capsys):
    status = cli.main(["train", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return status, out, err


@pytest.mark.slow
def test_train_stops_on_divergence_and_saves_the_last_finite_parameters(mnist_dir, tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["--data-dir", str(mnist_dir), "--epochs", "2", "--lr", "1000", "--l2", "0.01"]
    status, stdout, err = train([*flags, "--out", str(out)], capsys)
    assert status == 1
    [line] = err.strip().splitlines()
    assert re.search(r"non-finite training at epoch 1, step \d+ of 270: the training loss became inf", line)
    assert "divergence" in line and "Lower the learning rate (it is 1000; try 100)" in line
    assert line.endswith(f"saved in {out / 'params.npz'}")
    assert "test accuracy" in stdout
    saved, metadata = js.load_params(out / "params.npz")  # finite, or loading would fail
    assert metadata["epoch"] == 0 and metadata["stopped"]["cause"] == "divergence"
    assert metadata["stopped"]["step"] == int(re.search(r"step (\d+)", line)[1])

    status, _, err = train(["--resume", str(out), "--data-dir", str(mnist_dir)], capsys)
    assert status == 2 and "stopped on a non-finite value" in err and "lower learning rate" in err

    status, _, err = train([*flags, "--out", str(tmp_path / "raised"), "--on-nonfinite", "raise"], capsys)
    assert status == 1
    assert err.startswith("jax-softmax train: error: non-finite training at epoch 1") and err.count("\n") == 1
    assert "nothing saved in" in err and not (tmp_path / "raised" / "params.npz").exists()


@pytest.mark.slow
def test_ctrl_c_saves_the_last_epoch_and_resume_finishes_the_run_exactly(mnist_dir, tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["--data-dir", str(mnist_dir), "--optimizer", "adam", "--lr", "0.001", "--seed", "5"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "jax_softmax", "train", *flags, "--epochs", "500", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().count("\n") >= 1):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in err
    [line] = err.strip().splitlines()
    done = len(read_metrics(out / "metrics.jsonl"))
    assert line == (
        f"jax-softmax train: interrupted; saved epoch {done} of 500 in {out} (metrics.jsonl, params.npz); "
        f"continue with 'jax-softmax train --resume {out}'"
    )
    params, metadata = js.load_params(out / "params.npz")
    assert metadata["epoch"] == done and metadata["training"]["optimizer"] == "adam"
    read_opt_state(out / "params.npz", optax.adam(0.001).init(params))  # the state of the same epoch

    status, _, err = train(
        ["--resume", str(out), "--batch-size", "100", "--data-dir", str(mnist_dir)], capsys
    )
    assert status == 2 and "--batch-size 100 conflicts with the run in" in err and err.count("\n") == 1
    status, _, err = train(
        ["--resume", str(out), "--epochs", str(done), "--data-dir", str(mnist_dir)], capsys
    )
    assert status == 2 and f"has completed {done} of its {done} epochs" in err

    total = done + 1
    status, stdout, _ = train(
        ["--resume", str(out), "--epochs", str(total), "--data-dir", str(mnist_dir)], capsys
    )
    assert status == 0
    assert stdout.startswith(f"resuming the run in {out} after epoch {done}: epochs {total} to {total} with ")
    status, _, _ = train([*flags, "--epochs", str(total), "--out", str(tmp_path / "whole")], capsys)
    assert status == 0
    resumed, metadata = js.load_params(out / "params.npz")
    whole, _ = js.load_params(tmp_path / "whole" / "params.npz")
    assert metadata["epoch"] == total
    np.testing.assert_array_equal(np.asarray(resumed.w), np.asarray(whole.w))
    np.testing.assert_array_equal(np.asarray(resumed.b), np.asarray(whole.b))
    epochs = read_metrics(out / "metrics.jsonl")
    assert [m.epoch for m in epochs] == list(range(1, total + 1))
    whole_epochs = read_metrics(tmp_path / "whole" / "metrics.jsonl")
    assert [m.train_loss for m in epochs] == [m.train_loss for m in whole_epochs]
