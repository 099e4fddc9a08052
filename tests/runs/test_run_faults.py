"""What clusters do to long runs: kills at any moment, SIGTERM, two writers, damaged files."""

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from helpers import package_command, source_env

import jax_softmax as js
from jax_softmax.cli import _main as cli
from jax_softmax.runs._directory import (
    RunInUseError,
    append_metrics,
    cut_metrics,
    lock_run,
    read_metrics,
    remove_temp_files,
)
from jax_softmax.runs._resume import load_run, read_run_metadata
from jax_softmax.runs.checkpoint import CheckpointError, read_checkpoint, read_opt_state_leaves

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and flock")


# ---------------------------------------------------------------------------------------
# Killing `train --optimizer adam --out DIR` at random moments

EPOCHS = 20
TRAIN = [
    "--optimizer",
    "adam",
    "--lr",
    "0.01",
    "--batch-size",
    "27000",
    "--seed",
    "7",
    "--epochs",
    str(EPOCHS),
]
RESUMING = re.compile(r"resuming the run in .* after epoch (\d+): epochs")


def final_state(run: Path):
    params, metadata = js.load_params(run / "params.npz")
    losses = [m.train_loss for m in read_metrics(run / "metrics.jsonl")]
    return np.asarray(params.w), np.asarray(params.b), metadata["epoch"], losses


def metrics_lines(run: Path) -> int:
    try:
        return (run / "metrics.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def uninterrupted_run(flags: list[str], run: Path) -> tuple[tuple, float, float]:
    """Trains ``run`` to the end: its final state, the seconds to its first epoch, the rest's."""
    started = time.monotonic()
    proc = subprocess.Popen(
        package_command("train", *flags, "--out", str(run)), env=source_env(), stderr=subprocess.PIPE
    )
    first_epoch = None
    while proc.poll() is None and metrics_lines(run) < EPOCHS:
        if first_epoch is None and metrics_lines(run):
            first_epoch = time.monotonic() - started
        time.sleep(0.01)
    training = time.monotonic() - started - first_epoch
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    proc.stderr.close()
    return final_state(run), first_epoch, training


class KillChains:
    """Starts, kills and resumes runs; each chain's last process runs its run to the end."""

    def __init__(self, flags: list[str], data_dir: Path, cache: list[str], timing: tuple[float, float]):
        self.flags, self.data_dir, self.cache = flags, data_dir, cache
        self.first_epoch, self.training = timing
        self.rng = random.Random(11)
        self.kills = {signal.SIGKILL: 0, signal.SIGTERM: 0}
        self.resumed_from, self.statuses, self.cut_back = [], [], 0

    def chain(self, run: Path) -> None:
        """Kills processes on ``run`` until one finishes it, at most 8 kills."""
        for chain_kills in range(9):
            if self.process(run, last=chain_kills == 8):
                return
            if (run / "params.npz").exists():
                metadata = read_run_metadata(run)  # every kill leaves a loadable run
                assert 1 <= metadata["epoch"] <= EPOCHS
                if metadata["epoch"] == EPOCHS:
                    return  # killed after its last epoch was saved (while drawing the plots)

    def process(self, run: Path, *, last: bool) -> bool:
        """One process on ``run``, killed at a random moment unless ``last``; True if it finished."""
        # Each process, holding the directory's lock, removes what an earlier one's kill
        # left half-written; none must be there but the last kill's.
        leftovers = list(run.glob(".*.tmp"))
        resume = (run / "params.npz").exists()
        argv = (
            ["--resume", str(run), "--data-dir", str(self.data_dir)]
            if resume
            else [*self.flags, "--out", str(run)]
        )
        if not resume and run.exists():
            argv.append("--overwrite")  # killed before its first epoch was saved
        lines_before = metrics_lines(run)
        proc = subprocess.Popen(
            package_command("train", *argv, *self.cache),
            env=source_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        signum = (signal.SIGKILL, signal.SIGTERM)[sum(self.kills.values()) % 2]
        if not last:
            self.wait_for_a_moment(proc, run, lines_before)
        finished = last or proc.poll() is not None
        if not finished:
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=300)
        assert "Traceback" not in err, err
        if resume and RESUMING.search(out):
            self.resumed_from.append(int(RESUMING.search(out)[1]))
        self.cut_back += "metrics.jsonl: cut back to epoch" in out
        if leftovers and (proc.returncode == 0 or re.search(r"^(resuming|epoch )", out, re.M)):
            assert all(not path.exists() for path in leftovers), leftovers  # it got past the lock
        if proc.returncode == 0:
            assert not list(run.glob(".*.tmp"))
            return True
        assert not finished, (proc.returncode, err)
        self.killed(signum, proc.returncode, err)
        return False

    def wait_for_a_moment(self, proc: subprocess.Popen, run: Path, lines_before: int) -> None:
        if self.rng.random() < 0.4:  # anywhere from the start, imports included
            time.sleep(self.rng.uniform(0.0, self.first_epoch + self.training / 2))
            return
        deadline = time.monotonic() + 120  # once this process is training and saving epochs
        while metrics_lines(run) <= lines_before and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(self.rng.uniform(0.0, self.training / 2))

    def killed(self, signum: int, status: int, err: str) -> None:
        self.kills[signum] += 1
        self.statuses.append(status)
        if signum == signal.SIGKILL:
            assert status == -signal.SIGKILL
            return
        # One line and 143; -SIGTERM only for a signal that came before Python ran any of
        # the package's code (the interpreter's own first milliseconds).
        assert status in (143, -signal.SIGTERM), (status, err)
        if status == 143:
            assert len(err.strip().splitlines()) == 1, err
            assert re.search(r"(terminated \(SIGTERM\)|SIGTERM while (starting|shutting down))", err), err


@pytest.mark.slow
def test_kills_at_random_moments_never_lose_the_run(raw_mnist, tmp_path):
    """SIGKILL and SIGTERM at >= 30 random moments of chained runs: start, kill, resume, kill, ...

    Each process after a kill resumes the killed one's directory, so every state a kill
    left is loaded and trained on. After at most 8 kills a chain's last resume runs to
    the end, and its parameters and losses must equal an uninterrupted run's bit for bit.
    """
    cache = ["--cache-dir", str(tmp_path / "cache")]
    flags = [*TRAIN, "--data-dir", str(raw_mnist), *cache]
    reference, *timing = uninterrupted_run(flags, tmp_path / "whole")
    chains = KillChains(flags, raw_mnist, cache, timing)
    runs = 0
    while sum(chains.kills.values()) < 30:
        runs += 1
        chains.chain(tmp_path / f"chain{runs}")
        w, b, epoch, losses = final_state(tmp_path / f"chain{runs}")
        assert epoch == EPOCHS
        np.testing.assert_array_equal(w, reference[0])
        np.testing.assert_array_equal(b, reference[1])
        assert losses == reference[3]
    assert chains.resumed_from, "no kill left a saved epoch to resume from"
    print(
        f"{sum(chains.kills.values())} kills ({chains.kills}), exit statuses {sorted(chains.statuses)}, "
        f"{runs} chains, resumed from epochs {chains.resumed_from}, metrics cut back {chains.cut_back} times"
    )


# ---------------------------------------------------------------------------------------
# One writer per run directory


HOLDER = """
import sys, time
from jax_softmax.runs._directory import lock_run
lock = lock_run(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


@pytest.mark.slow
def test_one_writer_per_run_directory(mnist_dir, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run)], env=source_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        for extra in ([], ["--overwrite"], ["--resume", str(run)]):
            out = [] if extra[:1] == ["--resume"] else ["--out", str(run)]
            if extra[:1] == ["--resume"]:
                js.save_params(
                    run / "params.npz",
                    js.init_params(jax.random.key(0)),
                    {"epoch": 1, "training": {"epochs": 3, "optimizer": "sgd", "lr": 0.5}},
                )
            status = cli.main(["train", "--data-dir", str(mnist_dir), *out, *extra])
            err = capsys.readouterr().err
            assert status == 2, err
            assert err.strip() == (
                f"jax-softmax train: error: {run} is in use: process {holder.pid} is writing a run there; "
                "wait for it to end (or stop it), or choose another directory"
            )
        with pytest.raises(RunInUseError, match=f"process {holder.pid}"):
            lock_run(run)
        holder.kill()
        holder.wait(timeout=30)
        assert (run / ".lock").exists()  # the killed holder's file stays, unlocked
        with lock_run(run) as lock:  # and blocks nothing
            assert lock.path.read_text() == f"{os.getpid()}\n"
        assert not (run / ".lock").exists()
    finally:
        holder.kill()
        holder.stdout.close()


# ---------------------------------------------------------------------------------------
# A run directory that a kill left between two writes


def test_a_torn_metrics_line_and_extra_epochs_are_cut_back_to_the_checkpoint(tmp_path):
    adam = optax.adam(0.01)
    params = js.init_params(jax.random.key(0))
    state = adam.init(params)
    metadata = {"epoch": 2, "training": {"epochs": 5, "optimizer": "adam", "lr": 0.01}}
    js.save_params(tmp_path / "params.npz", params, metadata, opt_state=state)
    lines = [
        f'{{"epoch": {k}, "train_loss": 1.0, "val_loss": null, "val_accuracy": null, "seconds": 0.5}}'
        for k in (1, 2, 3)
    ]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(lines[:2]) + "\n" + '{"epoch": 3, "tr')
    run = load_run(tmp_path, read_run_metadata(tmp_path))
    assert run.epoch == 2 and [m.epoch for m in run.metrics] == [1, 2]
    assert run.repairs == (
        f"{metrics}: cut back to epoch 2, the last saved in params.npz (removed a last line cut off "
        "mid-write (16 bytes))",
    )
    assert metrics.read_text() == "\n".join(lines[:2]) + "\n"
    metrics.write_text("\n".join(lines) + "\n" + '{"ep')
    assert "removed 1 epoch line beyond it and a last line cut off" in cut_metrics(metrics, 2)
    assert cut_metrics(metrics, 2) is None
    append_metrics(metrics, read_metrics(metrics)[0])  # appending after a repair makes whole lines
    assert len(read_metrics(metrics)) == 3
    with pytest.raises(ValueError, match="holds 3 complete epochs, the checkpoint 4"):
        cut_metrics(metrics, 4)


def test_leftover_temporary_files_are_removed(tmp_path):
    (tmp_path / ".params.npz.x1y2.tmp").write_bytes(b"PK\x03\x04 partial")
    (tmp_path / ".metrics.jsonl.abc.tmp").write_text("{")
    (tmp_path / "notes.tmp").write_text("mine")
    removed = remove_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == [".metrics.jsonl.abc.tmp", ".params.npz.x1y2.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["notes.tmp"]


# ---------------------------------------------------------------------------------------
# Damaged checkpoints: every byte flipped or cut gives a CheckpointError, nothing else


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint as `train --optimizer adam --out` writes it: parameters and Adam's state."""
    rng = np.random.default_rng(0)
    params = js.Params(
        w=jax.numpy.asarray(rng.normal(size=(784, 10)), np.float32), b=jax.numpy.zeros(10, np.float32)
    )
    adam = optax.adam(0.01)
    state = adam.update(params, adam.init(params), params)[1]
    metadata = {
        "epoch": 3,
        "training": {"epochs": 5, "optimizer": "adam", "lr": 0.01},
        "pixel_divisor": 255.0,
    }
    return js.save_params(tmp_path_factory.mktemp("ckpt") / "params.npz", params, metadata, opt_state=state)


def damaged_positions(data: bytes) -> list[int]:
    """Every byte of the zip and .npy headers, metadata and directory; every 53rd of the payloads."""
    structure = set()
    for marker in (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"\x93NUMPY"):
        start = data.find(marker)
        while start != -1:
            structure.update(range(start, min(len(data), start + 200)))
            start = data.find(marker, start + 1)
    structure.update(range(max(0, len(data) - 1500), len(data)))  # metadata, central directory
    return sorted(structure | set(range(0, len(data), 53)))


@pytest.mark.slow
def test_every_flipped_or_cut_byte_gives_a_checkpoint_error(real_checkpoint, tmp_path):
    data = real_checkpoint.read_bytes()
    leaves = read_opt_state_leaves(real_checkpoint)
    w, b, _ = read_checkpoint(real_checkpoint)
    positions = damaged_positions(data)
    assert len(positions) > 3000
    path = tmp_path / "params.npz"
    refused = 0
    for position in positions:
        damaged = bytearray(data)
        damaged[position] ^= 0xFF if position % 2 else 0x01  # all bits, or the lowest
        path.write_bytes(bytes(damaged))
        try:
            read_leaves = read_opt_state_leaves(path)
            read_w, read_b, _ = read_checkpoint(path)
        except CheckpointError as e:
            assert str(e).startswith(str(path)), e
            refused += 1
            continue
        # Read without complaint: the byte was one nothing reads (a zip timestamp, say),
        # and every value is the one saved.
        np.testing.assert_array_equal(read_w, w)
        np.testing.assert_array_equal(read_b, b)
        for read, saved in zip(read_leaves, leaves, strict=True):
            np.testing.assert_array_equal(read, saved)
    for length in range(0, len(data), 97):
        path.write_bytes(data[:length])
        with pytest.raises(CheckpointError):
            read_opt_state_leaves(path)
    assert refused > len(positions) // 2


@pytest.mark.slow
def test_the_command_line_refuses_a_damaged_checkpoint_in_one_line(real_checkpoint, tmp_path):
    data = bytearray(real_checkpoint.read_bytes())
    run = tmp_path / "run"
    run.mkdir()
    header = data.find(b"\x93NUMPY")
    data[header + 20] ^= 0xFF  # inside the first array's header dict
    (run / "params.npz").write_bytes(bytes(data))
    (run / "metrics.jsonl").write_text("")
    (tmp_path / "digit.npy").write_bytes(b"")
    for args in (
        ["evaluate", "--params", str(run / "params.npz")],
        ["predict", "--params", str(run / "params.npz"), str(tmp_path / "digit.npy")],
        ["train", "--resume", str(run)],
    ):
        result = subprocess.run(
            package_command(*args), env=source_env(), capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, (
            result.stderr
        )
        assert f"{run / 'params.npz'}: corrupt" in result.stderr
