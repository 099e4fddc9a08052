"""Proves and measures jax-softmax on whatever accelerator JAX finds, in one command.

Runs from the source tree with the machine's own JAX (no install, no network)::

    PYTHONPATH=. python3 scripts/accelerator_check.py --data-dir DIR --out DIR [--quick]

and writes ``accelerator_check.json`` and ``accelerator_check.md`` into ``--out``:

- the devices and the JAX and jaxlib versions;
- ``tests/test_gradients.py`` run on every device (float32 and float64), with the
  largest relative error between the manual gradient and ``jax.grad`` per device
  and dtype;
- milliseconds per epoch at batch 1, 200, 1,000 and 54,000 in both gradient modes;
- the default ``train`` run as a whole process: its test accuracy and wall time,
  with an empty and then a filled compilation cache;
- the sweep's scaling: models per second with 1 to 4,096 models sharing batches,
  and the ratio of the 1,024-model epoch to the 1-model epoch;
- the device's peak memory after each part, where JAX reports it.

Every part has a time budget (``--budget`` seconds in all); a measurement that would
overrun its part's budget is skipped and the report says so. ``--quick`` runs the
same parts with small settings, for a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The tests and the train runs below are separate processes on the same device: JAX
# must not take most of the device's memory up front in any of them.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jaxlib  # noqa: E402
import numpy as np  # noqa: E402
from _accelerator_report import markdown  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jax_softmax as js  # noqa: E402
from jax_softmax.data import Mnist  # noqa: E402
from jax_softmax.sweeps import log_range  # noqa: E402

FULL = {
    "budget": 320.0,
    "parts": {"gradients": 0.35, "epochs": 0.2, "train": 0.2, "sweep": 0.25},
    "epoch_batches": (1, 200, 1000, 54000),
    "epochs": 3,
    "train_examples": None,
    "train_args": (),
    "sweep_models": (1, 32, 256, 1024, 4096),
    "sweep_epochs": 3,
    "pytest_filter": None,
}
QUICK = {
    "budget": 150.0,
    "parts": {"gradients": 0.35, "epochs": 0.2, "train": 0.3, "sweep": 0.15},
    "epoch_batches": (200, 5400),
    "epochs": 2,
    "train_examples": 5400,
    "train_args": ("--epochs", "1"),
    "sweep_models": (1, 4),
    "sweep_epochs": 2,
    "pytest_filter": "manual_gradient_matches_autodiff and odd and not saturated",
}
ERROR_LINE = re.compile(r"([A-Za-z_]+:?\d+) (float32|float64) [^\n]*: relative error (\S+)")


class Budget:
    """Seconds left for one part of the check."""

    def __init__(self, seconds: float):
        self.deadline = time.perf_counter() + seconds

    def left(self) -> float:
        return self.deadline - time.perf_counter()


def peak_memory() -> dict[str, int | None]:
    """Peak bytes in use on each device, where the backend reports it (not on every CPU)."""
    peaks = {}
    for device in jax.devices():
        try:
            stats = device.memory_stats() or {}
        except Exception:  # backends without memory statistics raise different types
            stats = {}
        peaks[str(device)] = stats.get("peak_bytes_in_use")
    return peaks


def environment() -> dict:
    return {
        "devices": [
            {"id": d.id, "platform": d.platform, "kind": d.device_kind, "process": d.process_index}
            for d in jax.devices()
        ],
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }


def gradient_tests(budget: Budget, pytest_filter: str | None) -> dict:
    """``tests/test_gradients.py`` in a child process, and the relative errors it printed."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/test_gradients.py",
        "-q",
        "-s",
        "-p",
        "no:cacheprovider",
    ]
    command += ["-o", "addopts=", "-o", "pythonpath=tests"]
    if pytest_filter:
        command += ["-k", pytest_filter]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    start = time.perf_counter()
    timed_out = None
    try:
        done = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=max(1.0, budget.left())
        )
        stdout, exit_code = done.stdout, done.returncode
    except subprocess.TimeoutExpired as e:  # keep the errors of the tests that ran
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        exit_code, timed_out = None, f"stopped at its budget of {e.timeout:.0f} s"
    errors: dict[str, dict[str, float]] = {}
    for device, dtype, value in ERROR_LINE.findall(stdout):
        per_device = errors.setdefault(device, {})
        per_device[dtype] = max(per_device.get(dtype, 0.0), float(value))
    summary = timed_out or (stdout.strip().splitlines()[-1] if stdout.strip() else "")
    return {
        "command": " ".join(command[1:]),
        "exit_code": exit_code,
        "passed": exit_code == 0,
        "summary": summary,
        "seconds": time.perf_counter() - start,
        "max_relative_error": errors,
        "tolerance": {"float32": 1e-6, "float64": 1e-12},
        "failures": stdout[-3000:] if exit_code else "",
    }


def epoch_times(mnist: Mnist, budget: Budget, batches, epochs: int, examples: int | None) -> list[dict]:
    """Median milliseconds per epoch (the first epoch left out) of ``fit`` at each batch size."""
    x, y = mnist.train.x[:examples], mnist.train.y[:examples]
    rows = []
    for batch_size in batches:
        for grad in ("autodiff", "manual"):
            row = {"batch_size": batch_size, "grad": grad, "steps_per_epoch": len(x) // batch_size}
            if budget.left() <= 0:
                rows.append({**row, "skipped": "the part's time budget was spent"})
                continue
            _, history = js.fit((x, y), epochs=epochs, batch_size=batch_size, grad=grad, lr=0.1)
            seconds = [m.seconds for m in history.epochs[1:]]
            per_epoch = statistics.median(seconds)
            rows.append(
                {
                    **row,
                    "ms_per_epoch": 1e3 * per_epoch,
                    "us_per_step": 1e6 * per_epoch / row["steps_per_epoch"],
                    "samples_per_s": row["steps_per_epoch"] * batch_size / per_epoch,
                    "epochs_timed": len(seconds),
                    "compile_s": history.compile_seconds,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def train_runs(data_dir: str, budget: Budget, extra_args) -> list[dict]:
    """The default ``train`` as a whole process, with an empty and then a filled compilation cache."""
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_SOFTMAX_CACHE_DIR": cache}
        command = [
            sys.executable,
            "-m",
            "jax_softmax",
            "train",
            "--data-dir",
            data_dir,
            "--json",
            *extra_args,
        ]
        for cache_state in ("empty", "filled"):
            if budget.left() <= 5:
                rows.append({"cache": cache_state, "skipped": "the part's time budget was spent"})
                continue
            start = time.perf_counter()
            try:
                done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=budget.left())
            except subprocess.TimeoutExpired as e:
                rows.append({"cache": cache_state, "skipped": f"over its budget of {e.timeout:.0f} s"})
                continue
            wall = time.perf_counter() - start
            row = {"cache": cache_state, "command": "jax-softmax " + " ".join(command[3:]), "wall_s": wall}
            if done.returncode != 0:
                rows.append({**row, "exit_code": done.returncode, "stderr": done.stderr[-2000:]})
                continue
            result = json.loads(done.stdout)
            rows.append(
                {
                    **row,
                    "exit_code": 0,
                    "test_accuracy": result["test_accuracy"],
                    "compile_s": result["compile_seconds"],
                    "train_s": result["train_seconds"],
                    "epochs": len(result["epochs"]),
                    "device": result["device"],
                }
            )
    return rows


def sweep_scaling(mnist: Mnist, budget: Budget, models_list, epochs: int, examples: int | None) -> dict:
    """Models per second when ``models`` plain-SGD models share every batch (batch 200)."""
    train = (mnist.train.x[:examples], mnist.train.y[:examples])
    validation = (mnist.validation.x, mnist.validation.y)
    rows = []
    for models in models_list:
        if budget.left() <= 0:
            rows.append({"models": models, "skipped": "the part's time budget was spent"})
            continue
        if rows and "ms_per_epoch" in rows[-1]:
            # Cost grows at most linearly in the models; skip what cannot finish.
            guess = rows[-1]["ms_per_epoch"] / 1e3 * models / rows[-1]["models"] * (epochs + 1)
            if guess > budget.left() * 2:
                rows.append({"models": models, "skipped": f"estimated {guess:.0f} s, over the budget"})
                continue
        seconds: list[float] = []
        lrs = log_range(1e-3, 1.0, models) if models > 1 else (0.1,)
        start = time.perf_counter()
        result = js.sweep(
            train,
            validation,
            lrs=lrs,
            l2s=(0.0,),
            seeds=(0,),
            batch_sizes=(200,),
            epochs=epochs,
            optimizer="sgd",
            callback=lambda _b, _e, s, seconds=seconds: seconds.append(s),
        )
        per_epoch = statistics.median(seconds[1:] or seconds)
        rows.append(
            {
                "models": models,
                "ms_per_epoch": 1e3 * per_epoch,
                "models_per_s": models / per_epoch,
                "compile_s": result.compile_seconds,
                "wall_s": time.perf_counter() - start,
                "best_val_accuracy": None if result.best is None else result.best.val_accuracy,
            }
        )
    timed = {row["models"]: row["ms_per_epoch"] for row in rows if "ms_per_epoch" in row}
    ratio = timed[1024] / timed[1] if 1024 in timed and 1 in timed else None
    return {"batch_size": 200, "optimizer": "sgd", "rows": rows, "epoch_ratio_1024_to_1": ratio}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="directory of the four MNIST IDX files")
    parser.add_argument("--out", required=True, help="directory for accelerator_check.json and .md")
    parser.add_argument("--quick", action="store_true", help="small settings, for a CPU")
    parser.add_argument("--budget", type=float, help="seconds for the whole check (default 330, quick 150)")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    total = args.budget or settings["budget"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    report: dict = {"environment": environment(), "quick": args.quick, "budget_s": total}
    print(json.dumps(report["environment"]), flush=True)

    def run(name, function, *args):
        budget = Budget(total * settings["parts"][name])
        print(f"== {name} ({budget.left():.0f} s budget)", flush=True)
        try:
            report[name] = function(*args, budget)
        except Exception as e:  # one part failing must not lose the others' figures
            report[name] = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(report[name]), flush=True)
        report["peak_memory_bytes"] = peak_memory()
        report["seconds"] = time.perf_counter() - start
        (out / "accelerator_check.json").write_text(json.dumps(report, indent=2) + "\n")

    run("gradients", lambda budget: gradient_tests(budget, settings["pytest_filter"]))
    mnist = js.load_mnist(args.data_dir)
    examples = settings["train_examples"]
    run(
        "epochs",
        lambda budget: epoch_times(mnist, budget, settings["epoch_batches"], settings["epochs"], examples),
    )
    run("train", lambda budget: train_runs(args.data_dir, budget, settings["train_args"]))
    run(
        "sweep",
        lambda budget: sweep_scaling(
            mnist, budget, settings["sweep_models"], settings["sweep_epochs"], examples
        ),
    )
    table = markdown(report)
    (out / "accelerator_check.md").write_text(table)
    print(table, flush=True)
    train_ok = isinstance(report["train"], list) and all(r.get("exit_code", 0) == 0 for r in report["train"])
    ok = report["gradients"].get("passed", False) and train_ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
