"""The IDX reader under fuzzing: one error type, never partial data, never a hang."""

import gzip
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from idx_files import idx_bytes, write_idx, write_mnist_like

import jax_softmax as js
from jax_softmax.data import read_idx, read_mnist_dir

EXAMPLES = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
FUZZ = settings(max_examples=150, deadline=2000, database=None, suppress_health_check=[HealthCheck.too_slow])


def write_bytes(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _read(content: bytes) -> np.ndarray | None:
    """read_idx on a file holding ``content``: the array, or None after an IdxError naming the file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzzed-idx"
        path.write_bytes(content)
        try:
            array = read_idx(path)
        except js.IdxError as e:
            assert str(path) in str(e)
            return None
    # Whatever was returned is exactly what the (decompressed) file encodes.
    data = gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content
    assert idx_bytes(array, type_code=data[2]) == data
    return array


@st.composite
def idx_files(draw) -> bytes:
    """A valid IDX file of a random element type and shape, raw or gzip-compressed."""
    code, dtype = draw(st.sampled_from(sorted(js.data.IDX_DTYPES.items())))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=1, max_size=3)))
    size = int(np.prod(shape)) * dtype.itemsize
    array = np.frombuffer(draw(st.binary(min_size=size, max_size=size)), dtype).reshape(shape)
    data = idx_bytes(array, code)
    return gzip.compress(data) if draw(st.booleans()) else data


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes(content):
    _read(content)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_gzip_compressed(content):
    _read(gzip.compress(content))


@st.composite
def idx_headers(draw) -> bytes:
    """An IDX header, often with as many dimensions as it declares, and a body that often fits it.

    Dimension counts go up to 255, and the shapes include sizes of 0, sizes that wrap
    around to 0 in 64-bit arithmetic (65536**4 bytes) and sizes too large to allocate.
    """
    type_code = draw(st.sampled_from(sorted(js.data.IDX_DTYPES)))
    ndim = draw(st.integers(0, 4) | st.integers(0, 255))
    dim = st.sampled_from([0, 1, 2, 3, 65536, 2**31, 2**32 - 1]) | st.integers(0, 2**32 - 1)
    dims = draw(st.lists(dim, min_size=ndim, max_size=ndim) | st.lists(dim, max_size=8))
    size = math.prod(dims) * js.data.IDX_DTYPES[type_code].itemsize
    body_size = draw(st.sampled_from([size, size - 1, size + 1]) if size < 300 else st.integers(0, 300))
    header = bytes([0, 0, type_code, ndim]) + np.asarray(dims, ">u4").tobytes()
    return header + draw(st.binary(min_size=max(body_size, 0), max_size=max(body_size, 0)))


@FUZZ
@given(idx_headers(), st.booleans())
def test_random_headers(data, compress):
    _read(gzip.compress(data) if compress else data)


@FUZZ
@given(idx_files(), st.data())
def test_truncated_files_are_rejected(content, data):
    assert _read(content) is not None
    cut = data.draw(st.integers(0, len(content) - 1))
    assert _read(content[:cut]) is None


@FUZZ
@given(idx_files(), st.data())
def test_bit_flips(content, data):
    flips = data.draw(st.lists(st.integers(0, 8 * len(content) - 1), min_size=1, max_size=4))
    flipped = bytearray(content)
    for bit in flips:
        flipped[bit // 8] ^= 1 << bit % 8
    _read(bytes(flipped))


@FUZZ
@given(idx_files(), st.binary(min_size=1, max_size=20))
def test_trailing_bytes_are_rejected(content, extra):
    data = gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content
    assert _read(data + extra) is None


def test_huge_declared_shapes_fail_without_allocating_them(tmp_path):
    header = bytes([0, 0, 0x0E, 4]) + np.full(4, 0xFFFFFFFF, ">u4").tobytes()  # 2**128 float64s
    raw = write_bytes(tmp_path / "huge", header + bytes(64))
    compressed = write_bytes(tmp_path / "huge.gz", gzip.compress(header + bytes(64)))
    # 2**64 bytes: a size that wraps around to 0 in 64-bit arithmetic.
    wraps = write_bytes(tmp_path / "wraps", bytes([0, 0, 0x08, 4]) + np.full(4, 65536, ">u4").tobytes())
    for path in (raw, compressed, wraps):
        with pytest.raises(js.IdxError, match="truncated: header declares shape"):
            read_idx(path)
    # Empty, yet NumPy refuses the shape: its other dimensions multiply past 2**63.
    empty = write_bytes(
        tmp_path / "empty", bytes([0, 0, 0x08, 3]) + np.array([0, 2**32 - 1, 2**32 - 1], ">u4").tobytes()
    )
    with pytest.raises(js.IdxError, match=r"shape \(0, 4294967295, 4294967295\) cannot be an array"):
        read_idx(empty)
    many = write_bytes(tmp_path / "many", bytes([0, 0, 0x08, 70]) + bytes(4 * 70))  # 70 zero dimensions
    with pytest.raises(js.IdxError, match="declares 70 dimensions, more than 32"):
        read_idx(many)


def test_large_files_of_the_wrong_kind(tmp_path):
    png = write_bytes(tmp_path / "image.png", b"\x89PNG\r\n\x1a\n" + bytes(20_000_000))
    with pytest.raises(js.IdxError, match="bad magic number 0x89504e47"):
        read_idx(png)
    padded = gzip.compress(idx_bytes(EXAMPLES) + bytes(20_000_000), compresslevel=1)
    with pytest.raises(js.IdxError, match="has trailing bytes"):
        read_idx(write_bytes(tmp_path / "padded.gz", padded))


def test_a_corrupt_gzip_body_is_caught_by_its_checksum(tmp_path):
    content = bytearray(gzip.compress(idx_bytes(EXAMPLES)))
    content[-8] ^= 0xFF  # the CRC-32 of the decompressed data
    with pytest.raises(js.IdxError, match="corrupt gzip stream"):
        read_idx(write_bytes(tmp_path / "crc.gz", bytes(content)))


def test_unreadable_paths_raise_idx_errors(tmp_path):
    with pytest.raises(js.IdxError, match="is a directory"):
        read_idx(tmp_path)
    if os.geteuid() != 0:  # root reads anything
        path = write_idx(tmp_path / "locked", EXAMPLES, compress=False)
        path.chmod(0)
        with pytest.raises(js.IdxError, match="cannot be read"):
            read_idx(path)


@pytest.mark.parametrize(
    "stem, array, message",
    [
        ("train-images-idx3-ubyte", np.zeros((20, 28), np.uint8), r"images must be uint8 \[n, 28, 28\]"),
        ("train-images-idx3-ubyte", np.zeros(20, np.uint8), r"images must be uint8 \[n, 28, 28\]"),
        ("train-labels-idx1-ubyte", np.zeros((20, 28, 28), np.uint8), r"labels must be uint8 \[n\]"),
        ("t10k-labels-idx1-ubyte", np.zeros(4, np.uint8), "5 images but 4 labels"),
        (
            "t10k-labels-idx1-ubyte",
            np.array([1, 10, 2, 3, 255], np.uint8),
            r"label 10 at index 1 is outside 0-9 \(2 of the 5 labels are\)",
        ),
    ],
    ids=["images-2d", "images-1d", "labels-3d", "lengths", "labels-out-of-range"],
)
def test_mnist_files_of_the_wrong_kind(tmp_path, stem, array, message):
    write_mnist_like(tmp_path, n_train=20, n_test=5)
    write_idx(tmp_path / f"{stem}.gz", array, compress=True)
    with pytest.raises(js.IdxError, match=message) as info:
        read_mnist_dir(tmp_path, verify=False)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(js.IdxError, match="shape|SHA-256"):
        read_mnist_dir(tmp_path, verify=True)
