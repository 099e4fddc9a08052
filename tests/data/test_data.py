"""The IDX reader, load_mnist on real and written files, and the tfds download path."""

import functools
import gzip
import hashlib
import http.server
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from idx_files import idx_bytes, write_idx, write_mnist_like

import jax_softmax as js
from jax_softmax.data import (
    DataNotFoundError,
    Mnist,
    _cache,
    _idx,
    load_mnist_uint8,
    read_idx,
    read_mnist_dir,
)
from jax_softmax.data import _mnist as data


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([5, 0, 9], np.uint8),
        np.array([[1, -2], [300, 4]], np.int32),
        np.array([0.5, -1.25], np.float32),
    ],
    ids=["uint8-3d", "uint8-1d", "int32", "float32"],
)
def test_idx_round_trip(tmp_path, compress, array):
    code = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}[array.dtype.type]
    path = write_idx(tmp_path / "f.idx", array, compress=compress, type_code=code)
    read = read_idx(path)
    assert read.dtype == array.dtype and read.shape == array.shape
    np.testing.assert_array_equal(read, array)


GOOD = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x00\x01\x08\x02" + GOOD[4:], "bad magic number"),
        (b"\x08\x03", "too short"),
        (GOOD[:2] + b"\x07" + GOOD[3:], "unknown IDX element type"),
        (GOOD[:3] + b"\x00" + GOOD[4:], "zero dimensions"),
        (GOOD[:6], "truncated header"),
        (GOOD[:-1], "truncated"),
        (GOOD + b"\x00", "trailing bytes"),
        (gzip.compress(GOOD)[:-6], "corrupt gzip"),
        (gzip.compress(GOOD)[:-2], "corrupt gzip"),
        (gzip.compress(GOOD)[:-8] + bytes(8), "corrupt gzip"),
        (gzip.compress(GOOD)[:10] + b"garbage" * 10, "corrupt gzip"),
        (gzip.compress(GOOD) + b"garbage", "corrupt gzip"),
        (gzip.compress(GOOD) + gzip.compress(b"\x00"), "trailing bytes"),
        (b"%PDF-1.4 not an idx file", "bad magic number"),
    ],
    ids=[
        "magic",
        "short",
        "type",
        "ndim0",
        "header",
        "truncated",
        "trailing",
        "gz-cut",
        "gz-cut-size",
        "gz-crc",
        "gz-garbage",
        "gz-garbage-after",
        "gz-second-member",
        "pdf",
    ],
)
def test_malformed_idx_raises_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.idx"
    path.write_bytes(content)
    with pytest.raises(js.IdxError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "compressed",
    [
        gzip.compress(GOOD),
        gzip.compress(GOOD) + bytes(64),  # zero padding after the member, which gzip allows
        gzip.compress(GOOD[:9]) + gzip.compress(GOOD[9:]),  # two members
    ],
    ids=["one-member", "zero-padding", "two-members"],
)
def test_gzip_files_read_as_gzip_reads_them(tmp_path, compressed):
    assert gzip.decompress(compressed) == GOOD
    path = tmp_path / "f.gz"
    path.write_bytes(compressed)
    np.testing.assert_array_equal(read_idx(path), np.arange(12, dtype=np.uint8).reshape(3, 4))


def test_a_large_gzip_file_is_read_whole(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (700, 784), dtype=np.uint8)  # several input pieces
    path = write_idx(tmp_path / "big.gz", array, compress=True)
    np.testing.assert_array_equal(read_idx(path), array)


def test_missing_file_and_wrong_shape_are_named(tmp_path):
    with pytest.raises(js.IdxError, match="no such file"):
        read_idx(tmp_path / "absent.gz")
    path = write_idx(tmp_path / "f", np.zeros((2, 3), np.uint8), compress=False)
    with pytest.raises(js.IdxError, match=r"shape \(2, 3\), expected \(4,\)"):
        read_idx(path, expected_shape=(4,))


def test_load_mnist_from_written_files(tmp_path):
    arrays = write_mnist_like(tmp_path, n_train=6_100, n_test=50, compress=False)
    mnist = js.load_mnist(tmp_path, verify=False)
    assert [len(s.y) for s in mnist] == [100, 6_000, 50]
    assert mnist.train.x.dtype == np.float32 and mnist.train.y.dtype == np.int32
    np.testing.assert_array_equal(
        mnist.validation.x * 255, arrays["train-images-idx3-ubyte"][100:].reshape(-1, 784)
    )
    np.testing.assert_array_equal(mnist.test.y, arrays["t10k-labels-idx1-ubyte"])
    with pytest.raises(js.IdxError, match="SHA-256 mismatch|shape"):
        js.load_mnist(tmp_path, verify=True)


def test_mismatched_lengths_and_bad_labels_are_rejected(tmp_path):
    write_mnist_like(tmp_path, n_train=20, n_test=5)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8), compress=True)
    with pytest.raises(js.IdxError, match="5 images but 4 labels"):
        read_mnist_dir(tmp_path, verify=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([1, 2, 12, 3, 4], np.uint8), compress=True)
    with pytest.raises(js.IdxError, match="label 12 at index 2 is outside 0-9"):
        read_mnist_dir(tmp_path, verify=False)
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(js.IdxError, match="neither train-images-idx3-ubyte.gz nor"):
        read_mnist_dir(tmp_path, verify=False)


def test_load_mnist_without_a_directory_reads_the_environment_variable(tmp_path, monkeypatch):
    arrays = write_mnist_like(tmp_path, n_train=6_010, n_test=7)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    mnist = js.load_mnist(verify=False)
    np.testing.assert_array_equal(mnist.test.y, arrays["t10k-labels-idx1-ubyte"])
    np.testing.assert_array_equal(
        mnist.train.x * 255, arrays["train-images-idx3-ubyte"][:10].reshape(-1, 784)
    )


def _same(got: Mnist, expected: Mnist) -> None:
    for a, b in zip(got, expected, strict=True):
        assert a.x.dtype == b.x.dtype and a.x.shape == b.x.shape and a.y.dtype == b.y.dtype
        assert a.x.tobytes() == b.x.tobytes() and a.y.tobytes() == b.y.tobytes()


@pytest.fixture
def idx_reads(monkeypatch):
    """Counts the IDX files read (cache misses)."""
    reads = []
    read = _cache.read_idx_and_bytes

    def counting(path, shape):
        reads.append(path.name)
        return read(path, shape)

    for module in (_cache, _idx):  # through the cache, and without it
        monkeypatch.setattr(module, "read_idx_and_bytes", counting)
    return reads


@pytest.mark.slow
def test_cache_hit_equals_the_idx_read_bit_for_bit(mnist_dir, tmp_path, idx_reads):
    from_files = js.load_mnist(mnist_dir, cache=False)
    assert len(idx_reads) == 4
    first = js.load_mnist(mnist_dir, cache_dir=tmp_path)  # reads the files, fills the cache
    assert len(idx_reads) == 8 and len(list(tmp_path.glob("*.npy"))) == 4
    second = js.load_mnist(mnist_dir, cache_dir=tmp_path)
    assert len(idx_reads) == 8, "the second load must come from the cache"
    _same(first, from_files)
    _same(second, from_files)
    raw = load_mnist_uint8(mnist_dir, cache_dir=tmp_path)
    assert isinstance(raw.train.x.base, np.memmap) or isinstance(raw.train.x, np.memmap)
    assert not raw.train.x.flags.writeable


def _cached_images(cache_dir, arrays) -> Path:
    digest = hashlib.sha256(idx_bytes(arrays["train-images-idx3-ubyte"])).hexdigest()
    return cache_dir / f"{digest}.npy"


def _flip_last_byte(path):
    content = bytearray(path.read_bytes())
    content[-1] ^= 0x01
    path.write_bytes(bytes(content))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-100])


def _garbage_header(path):
    path.write_bytes(b"not an npy file" + path.read_bytes()[15:])


def _garbage_record(path):
    for record in (path.parent / "sources").glob("*.json"):
        record.write_text("{not json")


def _empty(path):
    path.write_bytes(b"")


@pytest.mark.parametrize(
    "damage", [_flip_last_byte, _truncate, _garbage_header, _garbage_record, _empty, lambda p: p.unlink()]
)
def test_a_damaged_cache_entry_falls_back_to_the_idx_files(tmp_path, idx_reads, damage):
    arrays = write_mnist_like(tmp_path / "mnist", n_train=6_020, n_test=9)
    cache = tmp_path / "cache"
    expected = js.load_mnist(tmp_path / "mnist", verify=False, cache=False)
    js.load_mnist(tmp_path / "mnist", verify=False, cache_dir=cache)
    damage(_cached_images(cache, arrays))
    del idx_reads[:]
    _same(js.load_mnist(tmp_path / "mnist", verify=False, cache_dir=cache), expected)
    assert "train-images-idx3-ubyte.gz" in idx_reads
    # The fallback repaired the entry: the next load reads no file.
    del idx_reads[:]
    _same(js.load_mnist(tmp_path / "mnist", verify=False, cache_dir=cache), expected)
    assert idx_reads == []


@pytest.mark.parametrize("keep_mtime", [False, True], ids=["new-mtime", "mtime-restored"])
def test_a_changed_idx_file_invalidates_its_cache_entry(tmp_path, idx_reads, keep_mtime):
    write_mnist_like(tmp_path / "mnist", n_train=6_020, n_test=9, seed=0)
    cache = tmp_path / "cache"
    js.load_mnist(tmp_path / "mnist", verify=False, cache_dir=cache)
    labels = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    before = os.stat(labels)
    new_labels = (np.arange(9) % 10).astype(np.uint8)[::-1].copy()
    write_idx(labels, new_labels, compress=True)
    if keep_mtime:  # same mtime as before: the change time still moves
        os.utime(labels, ns=(before.st_atime_ns, before.st_mtime_ns))
    del idx_reads[:]
    mnist = js.load_mnist(tmp_path / "mnist", verify=False, cache_dir=cache)
    np.testing.assert_array_equal(mnist.test.y, new_labels)
    assert idx_reads == ["t10k-labels-idx1-ubyte.gz"]


def test_verify_does_not_take_a_cached_non_canonical_file(tmp_path):
    write_mnist_like(tmp_path / "mnist", n_train=6_020, n_test=9)
    js.load_mnist(tmp_path / "mnist", verify=False, cache_dir=tmp_path / "cache")
    with pytest.raises(js.IdxError, match="SHA-256 mismatch|shape"):
        js.load_mnist(tmp_path / "mnist", verify=True, cache_dir=tmp_path / "cache")


def test_an_unwritable_cache_directory_is_skipped(tmp_path, idx_reads):
    arrays = write_mnist_like(tmp_path / "mnist", n_train=6_020, n_test=9)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for _ in range(2):
        mnist = js.load_mnist(tmp_path / "mnist", verify=False, cache_dir=blocker / "cache")
        np.testing.assert_array_equal(mnist.test.y, arrays["t10k-labels-idx1-ubyte"])
    assert len(idx_reads) == 8 and blocker.read_text() == ""


def test_the_cache_is_off_when_asked_or_when_the_variable_is_empty(tmp_path, monkeypatch, idx_reads):
    write_mnist_like(tmp_path / "mnist", n_train=6_020, n_test=9)
    from jax_softmax.storage.cache import CACHE_DIR_ENV

    monkeypatch.setenv(CACHE_DIR_ENV, "")
    assert data.default_data_cache_dir() is None
    js.load_mnist(tmp_path / "mnist", verify=False)
    js.load_mnist(tmp_path / "mnist", verify=False, cache=False, cache_dir=tmp_path / "cache")
    assert len(idx_reads) == 8 and not (tmp_path / "cache").exists()
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "root"))
    assert data.default_data_cache_dir() == tmp_path / "root" / "mnist"
    js.load_mnist(tmp_path / "mnist", verify=False)
    js.load_mnist(tmp_path / "mnist", verify=False)
    assert len(idx_reads) == 12 and len(list((tmp_path / "root" / "mnist").glob("*.npy"))) == 4


def test_real_mnist_split(mnist, mnist_dir):
    assert [s.x.shape for s in mnist] == [(54_000, 784), (6_000, 784), (10_000, 784)]
    for split in mnist:
        assert split.x.dtype == np.float32 and split.y.dtype == np.int32
        assert split.x.min() == 0.0 and split.x.max() == 1.0
        assert set(np.unique(split.y)) == set(range(10))
    # The validation set is the last 6,000 official training images.
    raw = read_mnist_dir(mnist_dir)
    np.testing.assert_array_equal(mnist.validation.y, raw["train_labels"][-6_000:])


def test_no_data_dir_and_no_network_names_both_ways_out(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow_datasets", reason="the download path needs tensorflow-datasets")

    def offline(*args, **kwargs):
        raise OSError("name resolution failed")

    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(data.socket, "getaddrinfo", offline)
    with pytest.raises(DataNotFoundError) as info:
        js.load_mnist(None, tfds_data_dir=tmp_path)
    message = str(info.value)
    assert "--data-dir" in message and data.DATA_DIR_ENV in message and "tensorflow-datasets" in message
    with pytest.raises(DataNotFoundError, match="not in the tensorflow-datasets cache"):
        js.load_mnist(None, tfds_data_dir=tmp_path, download=False)


@pytest.fixture
def mnist_server(mnist_dir, monkeypatch):
    """Serves the real MNIST files over HTTP on 127.0.0.1, standing in for the internet."""
    pytest.importorskip("tensorflow_datasets", reason="the download path needs tensorflow-datasets")
    from tensorflow_datasets.image_classification.mnist import MNIST

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=mnist_dir))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(MNIST, "URL", f"http://127.0.0.1:{server.server_address[1]}/")
    yield server
    server.shutdown()


@pytest.mark.slow
def test_tfds_download_path_downloads_once_and_matches_the_files(mnist_server, mnist, tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    downloaded = js.load_mnist(None, tfds_data_dir=tmp_path)
    for got, expected in zip(downloaded, mnist, strict=True):
        np.testing.assert_array_equal(got.x, expected.x)
        np.testing.assert_array_equal(got.y, expected.y)
    mnist_server.shutdown()  # the second load must come from the cache
    cached = js.load_mnist(None, tfds_data_dir=tmp_path, download=False)
    np.testing.assert_array_equal(cached.test.y, mnist.test.y)


def test_the_cache_removes_temporary_files_that_killed_writers_left(tmp_path):
    from jax_softmax.storage import STALE_TEMPORARY_SECONDS

    write_mnist_like(tmp_path / "mnist", n_train=6_010, n_test=7)
    cache = tmp_path / "cache"
    (cache / "sources").mkdir(parents=True)
    stale = [cache / ".abc.npy.x1.tmp", cache / "sources" / ".def.json.x2.tmp"]
    fresh = cache / ".ghi.npy.x3.tmp"  # maybe another process's write under way
    for path in [*stale, fresh]:
        path.write_bytes(b"partial")
    old = time.time() - STALE_TEMPORARY_SECONDS - 60
    for path in stale:
        os.utime(path, (old, old))
    js.load_mnist(tmp_path / "mnist", cache_dir=cache, verify=False)
    assert [path.exists() for path in stale] == [False, False]
    assert fresh.exists()
