"""Shared fixtures: the MNIST directory, loud broadcasting, no persistent compilation cache."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import jax
import pytest

from jax_softmax.data import DATA_DIR_ENV
from jax_softmax.storage.cache import CACHE_DIR_ENV

jax.config.update("jax_numpy_rank_promotion", "raise")

# A shell without job control starts background jobs with Ctrl-C ignored, and a process
# started from such a job inherits that; the tests that send SIGINT to the commands they
# start need its default (exec resets a handled signal, not an ignored one).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# The command line's persistent compilation cache is global to a process (and lives in
# the user's home): off for the tests and the commands they start, which would
# otherwise compile less and count fewer compilations after one another.
os.environ[CACHE_DIR_ENV] = ""


def pytest_collection_modifyitems(items) -> None:
    """Marks every test that reads the real MNIST files ``mnist``: ``make test`` leaves them out."""
    for item in items:
        if {"mnist_dir", "mnist"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.mnist)


@pytest.fixture(autouse=True)
def _x64_as_it_was():
    """Puts ``jax_enable_x64`` back after each test: the commands called in-process with
    ``--dtype float64`` switch it on for the whole process, as they should in their own."""
    before = jax.config.jax_enable_x64
    yield
    if jax.config.jax_enable_x64 != before:
        jax.config.update("jax_enable_x64", before)


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
