"""Shared fixtures: the MNIST directory, 64-bit mode, loud broadcasting, compile counting."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import jax
import pytest

from jax_softmax.compilation_cache import CACHE_DIR_ENV
from jax_softmax.data import DATA_DIR_ENV

jax.config.update("jax_numpy_rank_promotion", "raise")

# The command line's persistent compilation cache is global to a process (and lives in
# the user's home): off for the tests and the commands they start, which would
# otherwise compile less and count fewer compilations after one another.
os.environ[CACHE_DIR_ENV] = ""

REPO = Path(__file__).resolve().parents[1]


def mnist_dir_or_none() -> Path | None:
    value = os.environ.get(DATA_DIR_ENV)
    if value and Path(value).is_dir():
        return Path(value)
    return None


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST directory from $JAX_SOFTMAX_DATA_DIR; the test is skipped without it."""
    path = mnist_dir_or_none()
    if path is None:
        pytest.skip(f"real MNIST not available: set {DATA_DIR_ENV} to the directory of the IDX files")
    return path


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    from jax_softmax import load_mnist

    return load_mnist(mnist_dir)


@contextlib.contextmanager
def x64():
    """64-bit JAX inside the block only."""
    if hasattr(jax, "enable_x64"):
        with jax.enable_x64(True):
            yield
    else:  # older JAX
        from jax.experimental import enable_x64

        with enable_x64():
            yield


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
