"""The per-epoch table: jax-softmax against the references of scripts/_references.py.

In one process and in interleaved rounds, the same problem (MNIST's 54,000 training
images, batch 200, the same learning rate, zero initial weights, float32, a fresh
shuffle per epoch) is trained by this project in both gradient modes, by NumPy, by
PyTorch on the CPU, and by JAX with a Python loop over a jitted step; scikit-learn's
LogisticRegression trains to convergence. Two rows time the epoch's matrix products
alone (XLA and NumPy), the floor the training loop is measured against. Then the same
over batch sizes, and the peak resident memory of a separate process per system.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Callable
from pathlib import Path

import _references as ref
import numpy as np
from _timing import fastest, fmt, interleaved, median, run_measured

TARGET_ACCURACY = 0.92
MAIN_BATCH_SIZE = 200
PROJECT = "jax-softmax"
SKLEARN = "scikit-learn lbfgs"
# The entry point, run again as the child whose memory is measured (its hidden --probe).
SCRIPT = str(Path(__file__).resolve().parent / "benchmark.py")

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
FIGURES = ("ms_per_epoch", "samples_per_s", "compile_s", "seconds_to_92", "test_accuracy", "peak_rss_mb")


def load_problem(data_dir: str, lr: float) -> ref.Problem:
    from jax_softmax.data import load_mnist

    data = load_mnist(data_dir)
    return ref.Problem(data.train.x, data.train.y, data.test.x, data.test.y, lr=lr)


def missing(module: str | None) -> str | None:
    if module is not None and importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install -e '.[bench]')"
    return None


def skipped(system: str, grad: str, batch_size: int, reason: str) -> dict:
    return {"system": system, "grad": grad, "batch_size": batch_size, "skipped": reason} | dict.fromkeys(
        FIGURES
    )


def seconds_to_target(run: ref.Run) -> float | None:
    """Compilation plus the epochs up to the first that reaches the target accuracy."""
    reached = [i for i, a in enumerate(run.test_accuracy) if a >= TARGET_ACCURACY]
    if not reached:
        return None
    return (run.compile_seconds or 0.0) + sum(run.epoch_seconds[: reached[0] + 1])


def summarize(system: str, grad: str, batch_size: int, runs: list[ref.Run], num_examples: int) -> dict:
    """One row from the runs of one system: medians over runs, each run's first epoch left out."""
    steady = [s for run in runs for s in run.epoch_seconds[1:]] or [
        s for run in runs for s in run.epoch_seconds
    ]
    per_epoch = median(steady)
    compile_seconds = [run.compile_seconds for run in runs if run.compile_seconds is not None]
    to_target = [s for s in map(seconds_to_target, runs) if s is not None]
    accuracy = [run.test_accuracy[-1] for run in runs if run.test_accuracy]
    return {
        "system": system,
        "grad": grad,
        "batch_size": batch_size,
        "ms_per_epoch": 1e3 * per_epoch,
        "fastest_ms_per_epoch": 1e3 * fastest(steady),
        "samples_per_s": (num_examples // batch_size) * batch_size / per_epoch,
        "compile_s": median(compile_seconds) if compile_seconds else None,
        "seconds_to_92": median(to_target) if len(to_target) == len(runs) else None,
        "test_accuracy": median(accuracy) if accuracy else None,
        "peak_rss_mb": None,
        "epochs_timed": len(steady),
    }


def systems_in_rounds(problem: ref.Problem, batch_size: int, epochs: int, rounds: int, log) -> list[dict]:
    """Every system trains ``epochs`` epochs from scratch once per round, in turn."""
    present = {i: trainer for i, (_, _, trainer, module) in enumerate(SYSTEMS) if not missing(module)}

    def report(round_: int, i: int, run: ref.Run) -> None:
        system, grad = SYSTEMS[i][:2]
        log(
            f"batch {batch_size} round {round_ + 1}/{rounds}: {system} ({grad}) "
            f"{1e3 * median(run.epoch_seconds):.1f} ms/epoch"
        )

    cases = {i: (lambda _, t=trainer: t(problem, batch_size, epochs)) for i, trainer in present.items()}
    runs = interleaved(cases, rounds, log=report)
    rows = []
    for i, (system, grad, _, module) in enumerate(SYSTEMS):
        if i in runs:
            rows.append(summarize(system, grad, batch_size, runs[i], len(problem.x)))
        else:
            rows.append(skipped(system, grad, batch_size, missing(module)))
    return rows


def add_ratios(rows: list[dict]) -> None:
    """Each row's time per epoch over the project's, per gradient mode, at the same batch size."""
    for row in rows:
        for grad in ("autodiff", "manual"):
            base = next(
                (
                    r
                    for r in rows
                    if (r["system"], r["grad"], r["batch_size"]) == (PROJECT, grad, row["batch_size"])
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
        return skipped(SKLEARN, "-", len(problem.x), reason)
    seconds, accuracy, iterations = ref.sklearn_logistic_regression(problem, max_iter)
    log(f"scikit-learn: {seconds:.1f} s, {iterations} iterations, test accuracy {accuracy:.4f}")
    row = {"system": SKLEARN, "grad": "-", "batch_size": len(problem.x)} | dict.fromkeys(FIGURES)
    row["seconds_to_92"] = seconds if accuracy >= TARGET_ACCURACY else None
    return row | {"test_accuracy": accuracy, "seconds_total": seconds, "iterations": iterations}


def memory_probes(problem: ref.Problem, log) -> tuple[dict[tuple[str, str], float], float | None]:
    """Peak RSS of a fresh process per system: load the data, train two epochs at batch 200."""
    peaks: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "mnist.npz"
        np.savez(data, x=problem.x, y=problem.y, x_test=problem.x_test, y_test=problem.y_test)
        _, baseline, _, status = run_measured([SCRIPT, "--probe", "data only", "-", str(data)])
        baseline = baseline if status == 0 else None
        for system, grad, _, module in [*SYSTEMS, (SKLEARN, "-", None, "sklearn")]:
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
    if system == SKLEARN:
        ref.sklearn_logistic_regression(problem, max_iter=5)
        return
    trainer = next(t for s, g, t, _ in SYSTEMS if (s, g) == (system, grad))
    trainer(problem, MAIN_BATCH_SIZE, 2)


def measure(args, report: dict, log) -> None:
    """The per-epoch table into ``report["settings"]`` and ``report["rows"]``."""
    problem = load_problem(args.data_dir, args.lr)
    epochs, rounds = args.epochs or 8, args.rounds or 2
    report["settings"] = {
        "lr": args.lr,
        "epochs": epochs,
        "rounds": rounds,
        "sweep_epochs": args.sweep_epochs,
        "train_examples": len(problem.x),
        "test_examples": len(problem.x_test),
        "dtype": "float32",
        "init": "zeros",
    }
    rows = systems_in_rounds(problem, MAIN_BATCH_SIZE, epochs, rounds, log)
    if not args.skip_sklearn:
        rows.append(sklearn_row(problem, args.sklearn_max_iter, log))
    for text in filter(None, args.batch_sizes.split(",")):
        batch_size = len(problem.x) if text == "full" else int(text)
        rows += systems_in_rounds(problem, batch_size, args.sweep_epochs, 1, log)
    add_ratios(rows)
    if not args.no_memory:
        peaks, report["machine"]["baseline_rss_mb"] = memory_probes(problem, log)
        for row in rows:
            if row["batch_size"] == MAIN_BATCH_SIZE or "iterations" in row:
                row["peak_rss_mb"] = peaks.get((row["system"], row["grad"]))
    report["rows"] = rows


def markdown(report: dict) -> list[str]:
    s = report["settings"]
    lines = [
        f"Batch {MAIN_BATCH_SIZE}, lr {s['lr']}, zero initial weights, float32, {s['epochs']} epochs x "
        f"{s['rounds']} interleaved rounds; medians over the epochs after each run's first.",
        "",
        "| system | grad | ms/epoch | samples/s | compile s | s to 92% | test acc | peak RSS MB "
        "| x autodiff | x manual |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    # Every system has a row at batch 200, skipped or not; scikit-learn's is the whole training set.
    main_rows = [r for r in report["rows"] if r["batch_size"] == MAIN_BATCH_SIZE or r["system"] == SKLEARN]
    lines += [_row_markdown(r) for r in main_rows]
    if report["machine"].get("baseline_rss_mb"):
        lines += [
            "",
            f"A process that only loads the data peaks at {report['machine']['baseline_rss_mb']:.0f} MB.",
        ]
    return lines + _batch_sizes_markdown(report)


def _row_markdown(r: dict) -> str:
    if r.get("skipped"):
        return f"| {r['system']} | {r['grad']} | skipped: {r['skipped']} | | | | | | | |"
    per_epoch = fmt(r["ms_per_epoch"], ".1f")
    if "iterations" in r:
        per_epoch = f"{r['seconds_total']:.1f} s total, {r['iterations']} iterations"
    return (
        f"| {r['system']} | {r['grad']} | {per_epoch} | {fmt(r['samples_per_s'], ',.0f')} "
        f"| {fmt(r['compile_s'], '.2f')} | {fmt(r['seconds_to_92'], '.2f', 'not reached')} "
        f"| {fmt(r['test_accuracy'], '.2%')} | {fmt(r['peak_rss_mb'], '.0f')} "
        f"| {fmt(r.get('ratio_to_autodiff'), '.2f')} | {fmt(r.get('ratio_to_manual'), '.2f')} |"
    )


def _batch_sizes_markdown(report: dict) -> list[str]:
    sizes = sorted({r["batch_size"] for r in report["rows"] if r["system"] != SKLEARN})
    if len(sizes) < 2:
        return []
    lines = [
        "",
        f"Milliseconds per epoch by batch size ({report['settings']['sweep_epochs']} epochs, the first "
        "left out; the test accuracy after the last in brackets):",
        "",
        "| system | grad | " + " | ".join(str(b) for b in sizes) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in sizes) + " |",
    ]
    rows = {(r["system"], r["grad"], r["batch_size"]): r for r in reversed(report["rows"])}
    for system, grad, _, _ in SYSTEMS:
        cells = []
        for b in sizes:
            r = rows.get((system, grad, b))
            if r is None or r.get("skipped"):
                cells.append("-")
            else:
                acc = f" ({r['test_accuracy']:.1%})" if r["test_accuracy"] is not None else ""
                cells.append(f"{r['ms_per_epoch']:.1f}{acc}")
        lines.append(f"| {system} | {grad} | " + " | ".join(cells) + " |")
    return lines
