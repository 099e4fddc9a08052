"""Helpers shared by the tests: small data sets, the command line as a process, tree comparisons,
64-bit mode and compile counting."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from jax_softmax._validation import x64 as x64  # 64-bit JAX inside a block

REPO = Path(__file__).resolve().parents[1]


def blobs(n: int = 600, features: int = 8, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Linearly separable-ish Gaussian clusters: float32 ``[n, features]``, int32 ``[n]`` labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(classes, features))
    y = rng.integers(0, classes, size=n)
    x = centres[y] + rng.normal(size=(n, features))
    return x.astype(np.float32), y.astype(np.int32)


def source_env() -> dict[str, str]:
    """This process's environment with the checkout first on ``PYTHONPATH``: a child process
    imports the package from the source tree, as this one does."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def package_command(*args: str) -> list[str]:
    """``python -m jax_softmax ARGS`` with this interpreter, for ``subprocess.Popen``."""
    return [sys.executable, "-m", "jax_softmax", *args]


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``jax-softmax ARGS`` in a fresh process (``python -m jax_softmax``), output captured as text."""
    return subprocess.run(
        package_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def assert_trees_equal(actual, expected) -> None:
    """Every leaf of ``actual`` equals ``expected``'s bit for bit, with the same tree structure."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


def assert_trees_close(actual, expected, rtol: float) -> None:
    """Every leaf within ``rtol`` times the largest magnitude of ``expected``'s leaf."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        scale = float(np.abs(np.asarray(e)).max())
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=0, atol=rtol * scale)


@contextlib.contextmanager
def count_compiles():
    """Counts XLA backend compilations inside the block: ``with count_compiles() as n: ...; n[0]``."""
    count = [0]

    def listener(name, duration, **kwargs):
        if name == "/jax/core/compile/backend_compile_duration":
            count[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
