"""Whole processes, what a user waits for: `jax-softmax train` against scripts/numpy_softmax.py.

`jax-softmax train --epochs N` with an empty cache (a first run) and with a filled
one, and scripts/numpy_softmax.py, which reads the same gzip IDX files and trains the
same way, in interleaved rounds, each timed from process start to exit with its peak
resident memory and test accuracy, and their ratios to the NumPy script.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from _timing import fmt, interleaved, median, run_measured

NUMPY_SCRIPT = str(Path(__file__).resolve().parent / "numpy_softmax.py")
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
RUNS = ("jax-softmax, empty cache", "jax-softmax, cache filled", "numpy script")


def _test_accuracy(stdout: str) -> float | None:
    """The accuracy in the last 'test accuracy 92.17% ...' line, as a fraction."""
    lines = [line for line in stdout.splitlines() if line.startswith("test accuracy")]
    return float(lines[-1].split()[2].rstrip("%")) / 100 if lines else None


def _sample(command) -> dict:
    load = os.getloadavg()[0]
    seconds, peak, out, status = command()
    return {
        "seconds": seconds,
        "peak_rss_mb": peak,
        "test_accuracy": _test_accuracy(out),
        "status": status,
        "load": load,
    }


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
    with tempfile.TemporaryDirectory() as tmp:
        filled = Path(tmp) / "filled"
        train = ["jax_softmax", "train", "--data-dir", data_dir, "--epochs", str(epochs)]
        warm_up = run_measured([*train, "--cache-dir", str(filled)])
        if warm_up[3] != 0:
            raise RuntimeError(f"jax-softmax train failed (exit status {warm_up[3]})")
        cases = {
            RUNS[0]: lambda r: _sample(lambda: run_measured([*train, "--cache-dir", f"{tmp}/empty-{r}"])),
            RUNS[1]: lambda r: _sample(lambda: run_measured([*train, "--cache-dir", str(filled)])),
            RUNS[2]: lambda r: _sample(lambda: run_measured([NUMPY_SCRIPT, data_dir, str(epochs)], env=blas)),
        }

        def report(round_: int, run: str, s: dict) -> None:
            log(
                f"whole process, round {round_ + 1}/{rounds}: {run} {s['seconds']:.2f} s, "
                f"{fmt(s['peak_rss_mb'], '.0f')} MB, test accuracy {fmt(s['test_accuracy'], '.2%')} "
                f"(load average {s['load']:.2f})"
            )

        samples = interleaved(cases, rounds, log=report)
    rows = [_summary(run, samples[run]) for run in RUNS]
    for row in rows:
        for key in ("seconds", "peak_rss_mb"):
            base, value = rows[2][key], row[key]
            row[f"{key}_ratio"] = value / base if base and value is not None else None
    return {"epochs": epochs, "rounds": rounds, "numpy_threads": numpy_threads, "rows": rows}


def _summary(run: str, samples: list[dict]) -> dict:
    ok = [s for s in samples if s["status"] == 0]
    peaks = [s["peak_rss_mb"] for s in ok if s["peak_rss_mb"]]
    return {
        "run": run,
        "seconds": median(s["seconds"] for s in ok) if ok else None,
        "seconds_all": [round(s["seconds"], 3) for s in samples],
        "peak_rss_mb": median(peaks) if peaks else None,
        "test_accuracy": ok[0]["test_accuracy"] if ok else None,
        "failed": len(samples) - len(ok),
    }


def measure(args, report: dict, log) -> None:
    report["whole_process"] = whole_process(
        args.data_dir, args.e2e_epochs, args.e2e_rounds, log, args.numpy_threads
    )


def markdown(report: dict) -> list[str]:
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
