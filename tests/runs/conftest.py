"""Fixtures of the run tests."""

import gzip
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def raw_mnist(mnist_dir, tmp_path_factory) -> Path:
    """The MNIST files decompressed into a temporary directory: each process loads them in a fraction
    of the time the gzip files take, which is most of what a short run spends."""
    out = tmp_path_factory.mktemp("mnist")
    for path in Path(mnist_dir).glob("*.gz"):
        (out / path.name.removesuffix(".gz")).write_bytes(gzip.decompress(path.read_bytes()))
    return out
