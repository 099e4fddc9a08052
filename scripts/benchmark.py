"""Softmax-regression training on MNIST: jax-softmax against the obvious alternatives.

In one process and in interleaved rounds (every system once per round), the same
problem (MNIST's 54,000 training images, batch 200, the same learning rate, zero
initial weights, float32, a fresh shuffle per epoch) is trained by this project in
both gradient modes, by NumPy, by PyTorch on the CPU, and by JAX with a Python loop
over a jitted step (see scripts/bench_references.py); scikit-learn's
LogisticRegression trains to convergence. Two rows time the epoch's matrix products
alone (XLA and NumPy), the floor the training loop is measured against.

For each system: the median milliseconds per epoch over every epoch but each run's
first, samples per second, compilation seconds, seconds to 92% test accuracy
(compilation plus the training epochs up to the first that reaches it), the final
test accuracy, the peak resident memory of a separate process that loads the data and
trains two epochs, and the ratio to this project. Then the same over batch sizes.
A missing optional peer (PyTorch, scikit-learn: `pip install -e '.[bench]'`) is
reported as skipped.

Then whole processes, what a user waits for: `jax-softmax train --epochs 10` with an
empty cache (a first run) and with a filled one, against scripts/numpy_softmax.py,
which reads the same gzip IDX files and trains the same way, in interleaved rounds,
each timed from process start to exit with its peak resident memory and test
accuracy, and their ratios to the NumPy script (`--end-to-end-only`: just these).

    .venv/bin/python scripts/benchmark.py --data-dir /path/to/mnist [--json] [--skip-sklearn]
    .venv/bin/python scripts/benchmark.py --data-dir /path/to/mnist --end-to-end-only
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import bench_references as ref
import numpy as np

TARGET_ACCURACY = 0.92
MAIN_BATCH_SIZE = 200
DATA_DIR_ENV = "JAX_SOFTMAX_DATA_DIR"

# (system, grad, trainer, optional module it needs)
SYSTEMS: list[tuple[str, str, Callable[..., ref.Run], str | None]] = [
    ("jax-softmax", "autodiff", lambda p, b, e: ref.jax_softmax_fit(p, b, e, "autodiff"), None),
    ("jax-softmax", "manual", lambda p, b, e: ref.jax_softmax_fit(p, b, e, "manual"), None),
    ("numpy", "manual", ref.numpy_sgd, None),
    ("pytorch", "autodiff", ref.torch_sgd, "torch"),
    ("jax, python loop", "autodiff", ref.jax_python_loop, None),
    ("matmuls only, XLA", "-", ref.xla_matmul_floor, None),
    ("matmuls only, numpy", "-", ref.numpy_matmul_floor, None),
]
PROJECT = "jax-softmax"
SCRIPT = str(Path(__file__).resolve())


def machine() -> dict:
    import jax
    import jaxlib

    model = "unknown"
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__}
    versions["numpy"] = np.__version__
    for name in ("torch", "sklearn"):
        if importlib.util.find_spec(name) is not None:
            versions[name] = __import__(name).__version__
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "versions": versions,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_average_start": round(os.getloadavg()[0], 2),
    }


def load_problem(data_dir: str, lr: float) -> ref.Problem:
    from jax_softmax.data import load_mnist

    data = load_mnist(data_dir)
    return ref.Problem(data.train.x, data.train.y, data.test.x, data.test.y, lr=lr)


def summarize(system: str, grad: str, batch_size: int, runs: list[ref.Run], num_examples: int) -> dict:
    """One row from the runs of one system: medians over runs, each run's first epoch left out."""
    steady = [s for run in runs for s in run.epoch_seconds[1:]] or [
        s for run in runs for s in run.epoch_seconds
    ]
    per_epoch = statistics.median(steady)
    compile_seconds = [run.compile_seconds for run in runs if run.compile_seconds is not None]
    to_target = []
    for run in runs:
        reached = [i for i, a in enumerate(run.test_accuracy) if a >= TARGET_ACCURACY]
        if reached:
            to_target.append((run.compile_seconds or 0.0) + sum(run.epoch_seconds[: reached[0] + 1]))
    accuracy = [run.test_accuracy[-1] for run in runs if run.test_accuracy]
    return {
        "system": system,
        "grad": grad,
        "batch_size": batch_size,
        "ms_per_epoch": 1e3 * per_epoch,
        "samples_per_s": (num_examples // batch_size) * batch_size / per_epoch,
        "compile_s": statistics.median(compile_seconds) if compile_seconds else None,
        "seconds_to_92": statistics.median(to_target) if len(to_target) == len(runs) else None,
        "test_accuracy": statistics.median(accuracy) if accuracy else None,
        "peak_rss_mb": None,
        "epochs_timed": len(steady),
    }


def skipped(system: str, grad: str, batch_size: int, reason: str) -> dict:
    row = {"system": system, "grad": grad, "batch_size": batch_size, "skipped": reason}
    for key in (
        "ms_per_epoch",
        "samples_per_s",
        "compile_s",
        "seconds_to_92",
        "test_accuracy",
        "peak_rss_mb",
    ):
        row[key] = None
    return row


def missing(module: str | None) -> str | None:
    if module is not None and importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install -e '.[bench]')"
    return None


def interleaved(problem, systems, batch_size: int, epochs: int, rounds: int, log) -> list[dict]:
    """Every system trains ``epochs`` epochs from scratch once per round, in turn."""
    runs: dict[int, list[ref.Run]] = {i: [] for i in range(len(systems))}
    for round_ in range(rounds):
        for i, (system, grad, trainer, module) in enumerate(systems):
            if missing(module):
                continue
            run = trainer(problem, batch_size, epochs)
            runs[i].append(run)
            log(
                f"batch {batch_size} round {round_ + 1}/{rounds}: {system} ({grad}) "
                f"{1e3 * statistics.median(run.epoch_seconds):.1f} ms/epoch"
            )
    rows = []
    for i, (system, grad, _, module) in enumerate(systems):
        reason = missing(module)
        if reason:
            rows.append(skipped(system, grad, batch_size, reason))
        else:
            rows.append(summarize(system, grad, batch_size, runs[i], len(problem.x)))
    return rows


def add_ratios(rows: list[dict]) -> None:
    """Each row's time per epoch over the project's, per gradient mode, at the same batch size."""
    for row in rows:
        for grad in ("autodiff", "manual"):
            base = next(
                (
                    r
                    for r in rows
                    if r["system"] == PROJECT
                    and r["grad"] == grad
                    and r["batch_size"] == row["batch_size"]
                    and r["ms_per_epoch"]
                ),
                None,
            )
            ratio = row["ms_per_epoch"] / base["ms_per_epoch"] if base and row["ms_per_epoch"] else None
            row[f"ratio_to_{grad}"] = ratio
        row["ratio_to_project"] = row["ratio_to_autodiff"]


def sklearn_row(problem: ref.Problem, max_iter: int, log) -> dict:
    reason = missing("sklearn")
    if reason:
        return skipped("scikit-learn lbfgs", "-", len(problem.x), reason)
    seconds, accuracy, iterations = ref.sklearn_logistic_regression(problem, max_iter)
    log(f"scikit-learn: {seconds:.1f} s, {iterations} iterations, test accuracy {accuracy:.4f}")
    return {
        "system": "scikit-learn lbfgs",
        "grad": "-",
        "batch_size": len(problem.x),
        "ms_per_epoch": None,
        "samples_per_s": None,
        "compile_s": None,
        "seconds_to_92": seconds if accuracy >= TARGET_ACCURACY else None,
        "test_accuracy": accuracy,
        "peak_rss_mb": None,
        "seconds_total": seconds,
        "iterations": iterations,
    }


# Runs argv[1] (a module name, or a script's path) as __main__ with the arguments after
# it, then prints the process's peak resident memory (VmHWM, kB) as stderr's last line.
# The kernel's ru_maxrss is no use here: a child of this large process inherits its peak.
PEAK_WRAPPER = """
import os, runpy, sys
target, sys.argv = sys.argv[1], sys.argv[1:]
try:
    if target.endswith(".py"):
        sys.path.insert(0, os.path.dirname(target))
        runpy.run_path(target, run_name="__main__")
    else:
        runpy.run_module(target, run_name="__main__", alter_sys=True)
finally:
    sys.stdout.flush()
    status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
    print("VmHWM", status, file=sys.stderr)
"""


def run_measured(args: list[str], env: dict[str, str] | None = None) -> tuple[float, float | None, str, int]:
    """Runs ``python -m args...``; returns its wall seconds, peak RSS in MB, stdout and exit status."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", PEAK_WRAPPER, *args],
        capture_output=True,
        text=True,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )
    seconds = time.perf_counter() - start
    peak = None
    lines = result.stderr.strip().splitlines()
    if lines and lines[-1].startswith("VmHWM"):
        peak = int(lines[-1].split()[1]) / 1024
    return seconds, peak, result.stdout, result.returncode


def memory_probes(problem: ref.Problem, systems, log) -> tuple[dict[tuple[str, str], float], float | None]:
    """Peak RSS of a fresh process per system: load the data, train two epochs at batch 200."""
    peaks: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "mnist.npz"
        np.savez(data, x=problem.x, y=problem.y, x_test=problem.x_test, y_test=problem.y_test)
        _, baseline, _, status = run_measured([SCRIPT, "--probe", "data only", "-", str(data)])
        baseline = baseline if status == 0 else None
        for system, grad, _, module in [*systems, ("scikit-learn lbfgs", "-", None, "sklearn")]:
            if missing(module):
                continue
            _, peak, _, status = run_measured(
                [SCRIPT, "--probe", system, grad, str(data), "--lr", str(problem.lr)]
            )
            if status == 0 and peak is not None:
                peaks[(system, grad)] = peak
                log(f"peak RSS {system} ({grad}): {peak:.0f} MB")
    return peaks, baseline


def probe(system: str, grad: str, data: str, lr: float) -> None:
    """The child of :func:`memory_probes`: loads ``data`` and trains ``system`` for two epochs."""
    arrays = np.load(data)
    problem = ref.Problem(arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"], lr=lr)
    if system == "data only":
        return
    if system == "scikit-learn lbfgs":
        ref.sklearn_logistic_regression(problem, max_iter=5)
        return
    trainer = next(t for s, g, t, _ in SYSTEMS if (s, g) == (system, grad))
    trainer(problem, MAIN_BATCH_SIZE, 2)


NUMPY_SCRIPT = str(Path(__file__).resolve().parent / "numpy_softmax.py")
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
E2E_RUNS = ("jax-softmax, empty cache", "jax-softmax, cache filled", "numpy script")


def _test_accuracy(stdout: str) -> float | None:
    """The accuracy in the last 'test accuracy 92.17% ...' line, as a fraction."""
    lines = [line for line in stdout.splitlines() if line.startswith("test accuracy")]
    return float(lines[-1].split()[2].rstrip("%")) / 100 if lines else None


def whole_process(data_dir: str, epochs: int, rounds: int, log, numpy_threads: int | None = None) -> dict:
    """`jax-softmax train --epochs N` and scripts/numpy_softmax.py as whole processes, interleaved.

    Every round runs the command with an empty cache (nothing compiled, MNIST not yet
    decoded: a first run), the command with the cache a previous run filled, and the
    NumPy script, in an order that rotates from round to round. Each is timed from
    process start to exit, with its peak resident memory and printed test accuracy.
    ``numpy_threads`` caps the BLAS threads of the NumPy script (on a busy machine,
    OpenBLAS threads that wait by spinning can take ten times as long).
    """
    blas = {} if numpy_threads is None else dict.fromkeys(BLAS_THREADS, str(numpy_threads))
    samples: dict[str, list[dict]] = {run: [] for run in E2E_RUNS}
    with tempfile.TemporaryDirectory() as tmp:
        filled = Path(tmp) / "filled"
        train = ["jax_softmax", "train", "--data-dir", data_dir, "--epochs", str(epochs)]
        warm_up = run_measured([*train, "--cache-dir", str(filled)])
        if warm_up[3] != 0:
            raise RuntimeError(f"jax-softmax train failed (exit status {warm_up[3]})")
        commands = {
            E2E_RUNS[1]: lambda: run_measured([*train, "--cache-dir", str(filled)]),
            E2E_RUNS[2]: lambda: run_measured([NUMPY_SCRIPT, data_dir, str(epochs)], env=blas),
        }
        for round_ in range(rounds):
            empty = Path(tmp) / f"empty-{round_}"
            commands[E2E_RUNS[0]] = lambda empty=empty: run_measured([*train, "--cache-dir", str(empty)])
            order = E2E_RUNS[round_ % 3 :] + E2E_RUNS[: round_ % 3]
            for run in order:
                load = os.getloadavg()[0]
                seconds, peak, out, status = commands[run]()
                accuracy = _test_accuracy(out)
                samples[run].append(
                    {"seconds": seconds, "peak_rss_mb": peak, "test_accuracy": accuracy, "status": status}
                )
                log(
                    f"whole process, round {round_ + 1}/{rounds}: {run} {seconds:.2f} s, "
                    f"{fmt(peak, '.0f')} MB, test accuracy {fmt(accuracy, '.2%')} (load average {load:.2f})"
                )
    rows = []
    for run in E2E_RUNS:
        ok = [r for r in samples[run] if r["status"] == 0]
        rows.append(
            {
                "run": run,
                "seconds": statistics.median(r["seconds"] for r in ok) if ok else None,
                "seconds_all": [round(r["seconds"], 3) for r in samples[run]],
                "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in ok if r["peak_rss_mb"])
                if ok
                else None,
                "test_accuracy": ok[0]["test_accuracy"] if ok else None,
                "failed": len(samples[run]) - len(ok),
            }
        )
    numpy_row = rows[2]
    for row in rows:
        for key in ("seconds", "peak_rss_mb"):
            base, value = numpy_row[key], row[key]
            row[f"{key}_ratio"] = value / base if base and value is not None else None
    return {"epochs": epochs, "rounds": rounds, "numpy_threads": numpy_threads, "rows": rows}


def fmt(value, spec: str, empty: str = "-") -> str:
    return empty if value is None else format(value, spec)


def machine_markdown(m: dict) -> str:
    v = m["versions"]
    return (
        f"Machine: {m['cpu']}, {m['cores']} cores; JAX {v['jax']}, NumPy {v['numpy']}, "
        f"PyTorch {v.get('torch', 'not installed')}, scikit-learn {v.get('sklearn', 'not installed')}; "
        f"load average {m['load_average_start']} at the start, {m['load_average_end']} at the end."
    )


def markdown(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    lines = [
        machine_markdown(m),
        "",
        f"Batch {MAIN_BATCH_SIZE}, lr {s['lr']}, zero initial weights, float32, {s['epochs']} epochs x "
        f"{s['rounds']} interleaved rounds; medians over the epochs after each run's first.",
        "",
        "| system | grad | ms/epoch | samples/s | compile s | s to 92% | test acc | peak RSS MB "
        "| x autodiff | x manual |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    main_rows = [r for r in report["rows"] if r["batch_size"] == MAIN_BATCH_SIZE or "iterations" in r]
    for r in main_rows + [r for r in report["rows"] if r.get("skipped") and r not in main_rows]:
        if r.get("skipped"):
            lines.append(f"| {r['system']} | {r['grad']} | skipped: {r['skipped']} | | | | | | | |")
            continue
        per_epoch = fmt(r["ms_per_epoch"], ".1f")
        if "iterations" in r:
            per_epoch = f"{r['seconds_total']:.1f} s total, {r['iterations']} iterations"
        lines.append(
            f"| {r['system']} | {r['grad']} | {per_epoch} | {fmt(r['samples_per_s'], ',.0f')} "
            f"| {fmt(r['compile_s'], '.2f')} | {fmt(r['seconds_to_92'], '.2f', 'not reached')} "
            f"| {fmt(r['test_accuracy'], '.2%')} | {fmt(r['peak_rss_mb'], '.0f')} "
            f"| {fmt(r.get('ratio_to_autodiff'), '.2f')} | {fmt(r.get('ratio_to_manual'), '.2f')} |"
        )
    if m.get("baseline_rss_mb"):
        lines += ["", f"A process that only loads the data peaks at {m['baseline_rss_mb']:.0f} MB."]
    sizes = sorted({r["batch_size"] for r in report["rows"] if "iterations" not in r})
    if len(sizes) > 1:
        lines += [
            "",
            f"Milliseconds per epoch by batch size ({s['sweep_epochs']} epochs, the first left out; "
            "the test accuracy after the last in brackets):",
            "",
            "| system | grad | " + " | ".join(str(b) for b in sizes) + " |",
            "| --- | --- | " + " | ".join("---:" for _ in sizes) + " |",
        ]
        for system, grad, _, _ in SYSTEMS:
            cells = []
            for b in sizes:
                r = next(
                    (
                        r
                        for r in report["rows"]
                        if (r["system"], r["grad"], r["batch_size"]) == (system, grad, b)
                    ),
                    None,
                )
                if r is None or r.get("skipped"):
                    cells.append("-")
                else:
                    acc = f" ({r['test_accuracy']:.1%})" if r["test_accuracy"] is not None else ""
                    cells.append(f"{r['ms_per_epoch']:.1f}{acc}")
            lines.append(f"| {system} | {grad} | " + " | ".join(cells) + " |")
    if report.get("whole_process"):
        lines += [""] + whole_process_markdown(report)
    return "\n".join(lines)


def whole_process_markdown(report: dict) -> list[str]:
    w = report["whole_process"]
    lines = [
        f"Whole processes, `jax-softmax train --epochs {w['epochs']}` against scripts/numpy_softmax.py "
        f"(the same data, batch 200, lr 0.5, {w['epochs']} epochs), {w['rounds']} interleaved rounds, "
        "medians; process start to exit"
        + ("" if w.get("numpy_threads") is None else f" (NumPy's BLAS on {w['numpy_threads']} thread(s))")
        + ":",
        "",
        "| run | seconds | x numpy | peak RSS MB | x numpy | test acc |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in w["rows"]:
        lines.append(
            f"| {r['run']} | {fmt(r['seconds'], '.2f')} | {fmt(r['seconds_ratio'], '.2f')} "
            f"| {fmt(r['peak_rss_mb'], '.0f')} | {fmt(r['peak_rss_mb_ratio'], '.2f')} "
            f"| {fmt(r['test_accuracy'], '.2%')} |"
        )
    return lines


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data-dir", default=os.environ.get(DATA_DIR_ENV), help=f"MNIST IDX files (default ${DATA_DIR_ENV})"
    )
    p.add_argument("--epochs", type=int, default=8, help="epochs per run at batch 200 (default 8)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved runs of every system (default 2)")
    p.add_argument("--lr", type=float, default=0.5, help="learning rate (default 0.5)")
    p.add_argument(
        "--batch-sizes", default="1,32,1000,full", help="the batch-size table besides 200 ('' for none)"
    )
    p.add_argument(
        "--sweep-epochs", type=int, default=4, help="epochs per batch size in the table (default 4)"
    )
    p.add_argument("--sklearn-max-iter", type=int, default=200, help="lbfgs iterations at most (default 200)")
    p.add_argument("--skip-sklearn", action="store_true", help="leave out scikit-learn (30-90 s)")
    p.add_argument("--no-memory", action="store_true", help="leave out the peak-memory processes")
    p.add_argument(
        "--no-end-to-end",
        action="store_true",
        help="leave out the whole-process runs (`jax-softmax train`, NumPy)",
    )
    p.add_argument(
        "--end-to-end-only", action="store_true", help="only the whole-process runs (a minute or two)"
    )
    p.add_argument("--e2e-epochs", type=int, default=10, help="epochs of the whole-process runs (default 10)")
    p.add_argument("--e2e-rounds", type=int, default=3, help="interleaved whole-process rounds (default 3)")
    p.add_argument(
        "--numpy-threads",
        type=int,
        help="BLAS threads of the NumPy script (default: its library's own choice)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of Markdown")
    p.add_argument("--probe", nargs=3, metavar=("SYSTEM", "GRAD", "NPZ"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.probe:
        probe(*args.probe, lr=args.lr)
        return 0
    if not args.data_dir:
        print(f"benchmark: error: pass --data-dir or set {DATA_DIR_ENV}", file=sys.stderr)
        return 2

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    report = {"machine": machine()}
    if args.end_to_end_only:
        report["whole_process"] = whole_process(
            args.data_dir, args.e2e_epochs, args.e2e_rounds, log, args.numpy_threads
        )
        report["machine"]["load_average_end"] = round(os.getloadavg()[0], 2)
        text = "\n".join([machine_markdown(report["machine"]), "", *whole_process_markdown(report)])
        print(json.dumps(report, indent=1) if args.json else text)
        return 0
    problem = load_problem(args.data_dir, args.lr)
    report["settings"] = {
        "lr": args.lr,
        "epochs": args.epochs,
        "rounds": args.rounds,
        "sweep_epochs": args.sweep_epochs,
        "train_examples": len(problem.x),
        "test_examples": len(problem.x_test),
        "dtype": "float32",
        "init": "zeros",
    }
    rows = interleaved(problem, SYSTEMS, MAIN_BATCH_SIZE, args.epochs, args.rounds, log)
    if not args.skip_sklearn:
        rows.append(sklearn_row(problem, args.sklearn_max_iter, log))
    for text in filter(None, args.batch_sizes.split(",")):
        batch_size = len(problem.x) if text == "full" else int(text)
        rows += interleaved(problem, SYSTEMS, batch_size, args.sweep_epochs, 1, log)
    add_ratios(rows)
    if not args.no_memory:
        peaks, baseline = memory_probes(problem, SYSTEMS, log)
        report["machine"]["baseline_rss_mb"] = baseline
        for row in rows:
            if row["batch_size"] == MAIN_BATCH_SIZE or "iterations" in row:
                row["peak_rss_mb"] = peaks.get((row["system"], row["grad"]))
    if not args.no_end_to_end:
        report["whole_process"] = whole_process(
            args.data_dir, args.e2e_epochs, args.e2e_rounds, log, args.numpy_threads
        )
    report["machine"]["load_average_end"] = round(os.getloadavg()[0], 2)
    report["rows"] = rows
    print(json.dumps(report, indent=1) if args.json else markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
