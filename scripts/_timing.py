"""Timing helpers shared by the measurements of scripts/benchmark.py.

Every measurement times its cases in interleaved rounds: each case once per round, in
an order that rotates from one round to the next (with two cases, alternating which
goes first), so that the load of other jobs, which drifts, falls on every case alike.
The figures reported are medians, the fastest sample (the least disturbed) and the
median of paired ratios (two cases timed side by side in the same round).

Only the standard library is imported here at the top, so that a child process timed
for its memory loads nothing it does not need.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

K = TypeVar("K")
T = TypeVar("T")


def interleaved(
    cases: Mapping[K, Callable[[int], T]],
    rounds: int,
    *,
    warmup: int = 0,
    log: Callable[[int, K, T], None] | None = None,
) -> dict[K, list[T]]:
    """Calls every case once per round, the order rotated by one place each round.

    Args:
      cases: name -> a function of the round's index (0-based, warm-up rounds first)
        that runs the case once and returns what it measured.
      rounds: the rounds whose results are kept.
      warmup: rounds run first, their results dropped (compilation, caches).
      log: called as ``log(round, name, result)`` after every kept result.

    Returns:
      name -> the results of its kept rounds, in round order.
    """
    names = list(cases)
    results: dict[K, list[T]] = {name: [] for name in names}
    for round_ in range(warmup + rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            result = cases[name](round_)
            if round_ >= warmup:
                results[name].append(result)
                if log is not None:
                    log(round_ - warmup, name, result)
    return results


def median(values: Iterable[float]) -> float:
    return statistics.median(values)


def fastest(values: Iterable[float]) -> float:
    return min(values)


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median over rounds of ``numerator / denominator``, each pair timed in the same round."""
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))


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
    """Runs ``python -m args...`` (or a script's path); returns its wall seconds, peak RSS in MB,
    stdout and exit status."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", PEAK_WRAPPER, *args],
        capture_output=True,
        text=True,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )
    wall = time.perf_counter() - start
    peak = None
    lines = result.stderr.strip().splitlines()
    if lines and lines[-1].startswith("VmHWM"):
        peak = int(lines[-1].split()[1]) / 1024
    return wall, peak, result.stdout, result.returncode


def machine() -> dict:
    """The CPU, the versions of the libraries measured, XLA_FLAGS and the load average now."""
    import jax
    import jaxlib
    import numpy as np

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
        "devices": [str(d) for d in jax.devices()],
        "versions": versions,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_average_start": load_average(),
    }


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def machine_markdown(m: dict) -> str:
    v = m["versions"]
    return (
        f"Machine: {m['cpu']}, {m['cores']} cores; JAX {v['jax']}, NumPy {v['numpy']}, "
        f"PyTorch {v.get('torch', 'not installed')}, scikit-learn {v.get('sklearn', 'not installed')}; "
        f"load average {m['load_average_start']} at the start, {m['load_average_end']} at the end."
    )


def fmt(value, spec: str, empty: str = "-") -> str:
    """``format(value, spec)``, or ``empty`` for ``None``."""
    return empty if value is None else format(value, spec)
