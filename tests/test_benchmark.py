"""scripts/benchmark.py: its timing helpers, and each measurement run once with tiny settings.

The figures are not checked (the machine may be busy); that every measurement runs,
reports what it measured, and reports a missing optional peer as skipped, is.
"""

import argparse
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import REPO, source_env

SCRIPT = REPO / "scripts" / "benchmark.py"


def load_timing():
    spec = importlib.util.spec_from_file_location("_timing", REPO / "scripts" / "_timing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def benchmark(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=source_env(),
    )


def test_interleaved_rotates_the_order_and_drops_the_warmup_rounds():
    timing = load_timing()
    calls, logged = [], []

    def case(name):
        def run(round_):
            calls.append((round_, name))
            return f"{name}{round_}"

        return run

    results = timing.interleaved(
        {n: case(n) for n in "abc"}, 3, warmup=1, log=lambda r, n, x: logged.append((r, n, x))
    )
    assert calls == [
        (0, "a"), (0, "b"), (0, "c"),
        (1, "b"), (1, "c"), (1, "a"),
        (2, "c"), (2, "a"), (2, "b"),
        (3, "a"), (3, "b"), (3, "c"),
    ]  # fmt: skip
    assert results == {"a": ["a1", "a2", "a3"], "b": ["b1", "b2", "b3"], "c": ["c1", "c2", "c3"]}
    assert logged[:3] == [(0, "b", "b1"), (0, "c", "c1"), (0, "a", "a1")]


def test_two_cases_alternate_which_goes_first():
    timing = load_timing()
    order = []
    timing.interleaved({"x": lambda r: order.append("x"), "y": lambda r: order.append("y")}, 4)
    assert order == ["x", "y", "y", "x", "x", "y", "y", "x"]


def test_medians_fastest_and_paired_ratios():
    timing = load_timing()
    assert timing.median([3.0, 1.0, 2.0]) == 2.0
    assert timing.fastest([3.0, 1.0, 2.0]) == 1.0
    # Round by round: 2/1, 6/2, 4/4; the median is 2 though the medians' ratio is 4/2 = 2 too.
    assert timing.paired_ratio([2.0, 6.0, 4.0], [1.0, 2.0, 4.0]) == 2.0
    with pytest.raises(ValueError):
        timing.paired_ratio([1.0], [1.0, 2.0])
    assert timing.fmt(None, ".2f") == "-" and timing.fmt(0.5, ".0%") == "50%"


def test_run_measured_reports_a_child_peak_memory_and_exit_status(tmp_path):
    timing = load_timing()
    script = tmp_path / "child.py"
    script.write_text("import sys\nblock = bytearray(64 * 2**20)\nprint('done')\nsys.exit(3)\n")
    seconds, peak, stdout, status = timing.run_measured([str(script)])
    assert status == 3 and stdout == "done\n" and seconds > 0
    assert peak is not None and peak >= 64


def test_memory_probe_child_trains_a_reference(tmp_path):
    """The hidden --probe the epochs table runs for each system's peak memory."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    x = rng.uniform(0, 1, (400, 784)).astype(np.float32)
    y = rng.integers(0, 10, 400).astype(np.int32)
    np.savez(data, x=x, y=y, x_test=x[:50], y_test=y[:50])
    done = benchmark("--probe", "numpy", "manual", str(data), "--lr", "0.5")
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_checks_prints_its_table():
    done = benchmark("checks", "--rounds", "1", "--calls", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Machine: ")
    assert lines[2].startswith("device: ") and lines[2].endswith("; median of 1 rounds of 2 calls")
    rows = [line for line in lines if line.startswith(("| autodiff", "| manual"))]
    assert [row.split(" | ")[:2] for row in rows] == [
        ["| autodiff", "device"],
        ["| autodiff", "numpy"],
        ["| manual", "device"],
        ["| manual", "numpy"],
    ]


@pytest.mark.slow
def test_checks_as_json():
    done = benchmark("--only", "checks", "--rounds", "2", "--calls", "2", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) == {"machine", "checks"}
    assert report["checks"]["rounds"] == 2 and len(report["checks"]["rows"]) == 4
    for row in report["checks"]["rows"]:
        assert row["unchecked_us"] > 0 and row["checked_us"] > 0 and row["paired_ratio"] > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["speed"], "unknown measurement 'speed'; the measurements are epochs, whole-process, checks"),
        (["--only", "nonfinite", "--data-dir", ""], "pass --data-dir or set JAX_SOFTMAX_DATA_DIR"),
        (["sweep-cost", "--epochs", "1", "--data-dir", "x"], "--epochs must be at least 2"),
        (["checks", "--rounds", "0"], "--rounds: must be an integer >= 1, got 0"),
    ],
)
def test_bad_arguments_are_one_line_and_status_2(args, message):
    done = benchmark(*args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_every_measurement_runs_once_on_mnist(mnist_dir):
    measurements = ["epochs", "whole-process", "nonfinite", "sweep-cost", "data-parallel"]
    done = benchmark(
        *measurements,
        *["--data-dir", str(mnist_dir), "--json", "--epochs", "2", "--rounds", "1"],
        *["--batch-sizes", "", "--skip-sklearn", "--no-memory", "--e2e-epochs", "1", "--e2e-rounds", "1"],
        *["--grad", "manual", "--optimizer", "sgd"],
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    rows = {(r["system"], r["grad"]): r for r in report["rows"]}
    assert rows[("jax-softmax", "manual")]["test_accuracy"] > 0.85
    assert rows[("jax-softmax", "autodiff")]["ratio_to_autodiff"] == 1.0
    for system, grad, module in (("pytorch", "autodiff", "torch"), ("numpy", "manual", None)):
        row = rows[(system, grad)]
        if module is not None and importlib.util.find_spec(module) is None:
            assert row["skipped"] == f"{module} is not installed (pip install -e '.[bench]')"
        else:
            assert row["ms_per_epoch"] > 0 and row["test_accuracy"] > 0.85
    processes = {r["run"]: r for r in report["whole_process"]["rows"]}
    assert processes["numpy script"]["seconds_ratio"] == 1.0
    assert all(r["failed"] == 0 and r["test_accuracy"] > 0.85 for r in processes.values())
    (nonfinite,) = report["nonfinite"]["rows"]
    assert (nonfinite["grad"], nonfinite["optimizer"]) == ("manual", "sgd") and nonfinite["paired_ratio"] > 0
    assert [r["case"] for r in report["sweep_cost"]["rows"]][1] == "sweep, 1 model"
    (parallel,) = report["data_parallel"]
    assert parallel["processes_identical"]
    assert all(r["w"] < 1e-5 and r["val_loss"] < 1e-5 for r in parallel["rows"])


def test_deskew_measurement_reports_every_case_against_scipy(monkeypatch):
    pytest.importorskip("scipy", reason="the SciPy reference needs scipy (pip install -e '.[bench]')")
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import _deskew

    images = np.zeros((300, 28, 28), np.uint8)
    images[:, 6:22, 12:16] = np.random.default_rng(0).integers(100, 256, (300, 16, 4), dtype=np.uint8)
    monkeypatch.setattr(_deskew, "_images", lambda data_dir: images)
    report, logged = {}, []
    _deskew.measure(argparse.Namespace(data_dir=None, rounds=2), report, logged.append)
    result = report["deskew"]
    assert result["images"] == 300 and result["scipy"] is None
    assert [r["case"] for r in result["rows"]][0] == "js.deskew (float32 on the device)"
    assert len(result["rows"]) == 3 and result["rows"][0]["ratio_to_js_deskew"] == 1.0
    assert result["largest_difference_to_scipy"] < 1e-5
    assert len(logged) == 2 * 3 and all(line.startswith("deskew round") for line in logged)
    assert "| SciPy, one affine_transform per image |" in "\n".join(_deskew.markdown(report))
