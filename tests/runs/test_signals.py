"""Stop signals from a run's start to its exit: one line, the shell's status, the last epoch kept."""

import os
import signal
import subprocess
import sys
import time
import weakref

import pytest
from helpers import package_command, source_env

import jax_softmax as js
from jax_softmax._process import interrupts_deferred
from jax_softmax.cli import _main as cli
from jax_softmax.runs import _train_run
from jax_softmax.runs._directory import read_metrics

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and flock")

# A run long enough to be stopped while it trains.
TRAIN = ["--optimizer", "adam", "--lr", "0.01", "--batch-size", "27000", "--seed", "7", "--epochs", "500"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.slow
def test_a_signal_while_starting_gives_one_line_and_its_exit_status(raw_mnist, tmp_path, signum):
    # From the package's first import (the interpreter's own start, tens of milliseconds,
    # is before any of its code) to the first epoch.
    delays = [0.25, 0.4, 0.6, 0.8, 1.2, 2.0, 3.0]  # the first ones while JAX is imported
    procs = []
    for i, delay in enumerate(delays):
        procs.append(
            subprocess.Popen(
                package_command(
                    "train",
                    "--data-dir",
                    str(raw_mnist),
                    "--out",
                    str(tmp_path / f"run{i}"),
                    "--epochs",
                    "200",
                ),
                env=source_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        time.sleep(delay)
        procs[-1].send_signal(signum)
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signum, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert signal.Signals(signum).name in err or "interrupted" in err, err


SHUTTING_DOWN = """
import os, signal, sys
sys.argv = ["jax-softmax"]
from jax_softmax import _process
assert _process.is_command_line()
_process.exit_on_stop_signals("shutting down")
print("result", flush=True)
os.kill(os.getpid(), signal.SIGNUM)
signal.pause()
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_shutting_down_gives_one_line_and_its_exit_status(signum):
    code = SHUTTING_DOWN.replace("SIGNUM", signal.Signals(signum).name)
    result = subprocess.run(
        [sys.executable, "-c", code], env=source_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 128 + signum
    assert result.stdout == "result\n"
    assert result.stderr == f"jax-softmax: {signal.Signals(signum).name} while shutting down; stopped\n"


@pytest.mark.slow
def test_sigterm_during_training_saves_the_last_epoch(raw_mnist, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        package_command("train", *TRAIN, "--data-dir", str(raw_mnist), "--out", str(run)),
        env=source_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().count("\n") >= 2):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143
    [line] = err.strip().splitlines()
    done = js.load_params(run / "params.npz").metadata["epoch"]
    assert line == (
        f"jax-softmax train: terminated (SIGTERM); saved epoch {done} of 500 in {run} "
        f"(metrics.jsonl, params.npz); continue with 'jax-softmax train --resume {run}'"
    )
    assert [m.epoch for m in read_metrics(run / "metrics.jsonl")][:done] == list(range(1, done + 1))


def _assert_sigterm_stops_before_the_first_epoch(mnist_dir, run, capsys) -> None:
    """``train --out run`` with a SIGTERM sent before its first epoch ends: one line, exit 143."""
    status = cli.main(
        ["train", "--data-dir", str(mnist_dir), "--batch-size", "27000", "--epochs", "5", "--out", str(run)]
    )
    err = capsys.readouterr().err
    assert status == 143
    assert (
        err.strip()
        == f"jax-softmax train: terminated (SIGTERM) before the first epoch ended; nothing saved in {run}"
    )


@pytest.mark.slow
def test_a_signal_swallowed_by_a_library_still_stops_the_run(mnist_dir, tmp_path, capsys, monkeypatch):
    """A SIGTERM whose exception some library caught is noticed at the next epoch's save."""
    real_fit = js.train.fit

    def fit_that_swallows(*args, checkpoint_callback, **kwargs):
        def callback(metrics, params, opt_state):
            if metrics.epoch == 1:
                try:
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.1)
                except KeyboardInterrupt:
                    pass  # what a careless library does
            checkpoint_callback(metrics, params, opt_state)

        return real_fit(*args, checkpoint_callback=callback, **kwargs)

    monkeypatch.setattr(_train_run, "fit", fit_that_swallows)
    _assert_sigterm_stops_before_the_first_epoch(mnist_dir, tmp_path / "run", capsys)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # main put the handlers back


@pytest.mark.slow
def test_a_signal_inside_a_garbage_collection_callback_prints_no_traceback(
    mnist_dir, tmp_path, capsys, monkeypatch
):
    """Python drops an exception raised in a weakref callback, printing 'Exception ignored'."""
    real_fit = js.train.fit

    def fit_after_a_collection(*args, **kwargs):
        class Thing:
            pass

        def on_collect(ref):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)  # the handler raises here, inside the callback

        thing = Thing()
        ref = weakref.ref(thing, on_collect)
        del thing  # calls on_collect
        assert ref() is None
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(_train_run, "fit", fit_after_a_collection)
    _assert_sigterm_stops_before_the_first_epoch(mnist_dir, tmp_path / "run", capsys)


def test_interrupts_deferred_holds_sigterm_and_delivers_it_after():
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert received == []
        assert received == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
