"""MNIST: a checked reader for the canonical IDX files, and the tfds download path.

``load_mnist`` reads the four IDX files from a directory when one is given (or
``$JAX_SOFTMAX_DATA_DIR`` names one), and otherwise asks tensorflow-datasets for MNIST
(downloading and caching it on first use). The split is fixed: the first 54,000
images of the official training set train, the last 6,000 validate, and the
official 10,000 test images test.

Inflating and hashing the gzip files takes most of a second, so the decoded arrays
are kept in a cache directory as ``.npy`` files, named by the SHA-256 of the IDX
content they came from, and memory-mapped on later reads. A record per IDX file
holds its size, modification and change times and the entry's CRC-32: a file whose
times or size changed is read again, and an entry that is missing, cut short or whose
CRC-32 differs is ignored, so the cache can make a read faster but never different.
"""

from __future__ import annotations

import os
import shutil
import socket
import urllib.parse
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jax_softmax.data._cache import derived, read_cached_source
from jax_softmax.data._idx import IdxError
from jax_softmax.data._pixels import to_features
from jax_softmax.storage import write_atomically

NUM_FEATURES = 784
NUM_CLASSES = 10
VALIDATION_SIZE = 6_000


# file stem -> (shape, SHA-256 of the decompressed bytes)
MNIST_FILES = {
    "train-images-idx3-ubyte": (
        (60_000, 28, 28),
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    "train-labels-idx1-ubyte": (
        (60_000,),
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    "t10k-images-idx3-ubyte": (
        (10_000, 28, 28),
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    "t10k-labels-idx1-ubyte": (
        (10_000,),
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
}

DATA_DIR_ENV = "JAX_SOFTMAX_DATA_DIR"

DATA_CACHE_SUBDIR = "mnist"
"""The folder of the cache directory (``$JAX_SOFTMAX_CACHE_DIR``) that holds decoded MNIST."""


class DataNotFoundError(RuntimeError):
    """MNIST could be found neither in a directory nor through tensorflow-datasets."""


class Split(NamedTuple):
    """One part of the data set.

    Attributes:
      x: images, ``[n, 784]`` float32 in ``[0, 1]``.
      y: labels, ``[n]`` int32 in ``[0, 10)``.
    """

    x: np.ndarray
    y: np.ndarray


class Mnist(NamedTuple):
    """MNIST split into 54,000 train, 6,000 validation and 10,000 test examples."""

    train: Split
    validation: Split
    test: Split


_MNIST_DIR_HINT = "expected a directory holding the four MNIST IDX files, gzip or raw: " + ", ".join(
    f"{stem}.gz" for stem in MNIST_FILES
)


def _find(data_dir: Path, stem: str) -> Path:
    for candidate in (data_dir / f"{stem}.gz", data_dir / stem):
        if candidate.is_file():
            return candidate
    raise IdxError(f"{data_dir}: neither {stem}.gz nor {stem} is there ({_MNIST_DIR_HINT})")


def _check_pair(images: np.ndarray, labels: np.ndarray, source: str) -> None:
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise IdxError(f"{source}: images must be uint8 [n, 28, 28], got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise IdxError(f"{source}: labels must be uint8 [n], got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise IdxError(f"{source}: {len(images)} images but {len(labels)} labels")
    if labels.size and labels.max() >= NUM_CLASSES:
        outside = labels >= NUM_CLASSES
        bad = int(np.argmax(outside))
        raise IdxError(
            f"{source}: label {labels[bad]} at index {bad} is outside 0-9 "
            f"({np.count_nonzero(outside)} of the {len(labels)} labels are)"
        )


def read_mnist_dir(
    data_dir: str | os.PathLike, *, verify: bool = True, cache_dir: str | os.PathLike | None = None
) -> dict[str, np.ndarray]:
    """Reads the four MNIST IDX files from ``data_dir``.

    Args:
      data_dir: directory holding ``train-images-idx3-ubyte[.gz]`` and the other three.
      verify: check each file's shape and the SHA-256 of its decompressed content
        against the canonical MNIST files.
      cache_dir: keep the decoded arrays in this directory and read them from there
        while the files' sizes and times stay the same (see the module's docstring);
        ``None``: read the files.

    Returns:
      ``{"train_images", "train_labels", "test_images", "test_labels"}``: images
      uint8 ``[n, 28, 28]``, labels uint8 ``[n]``. Arrays from the cache are
      read-only memory maps.

    Raises:
      IdxError: for a missing or malformed file, naming it.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise IdxError(f"{data_dir}: not a directory ({_MNIST_DIR_HINT})")
    cache = None if cache_dir is None else Path(cache_dir).expanduser().resolve()
    arrays = {}
    for stem, (shape, digest) in MNIST_FILES.items():
        path = _find(data_dir, stem)
        arrays[stem] = read_cached_source(path, shape if verify else None, digest if verify else None, cache)
    out = {
        "train_images": arrays["train-images-idx3-ubyte"],
        "train_labels": arrays["train-labels-idx1-ubyte"],
        "test_images": arrays["t10k-images-idx3-ubyte"],
        "test_labels": arrays["t10k-labels-idx1-ubyte"],
    }
    _check_pair(out["train_images"], out["train_labels"], f"{data_dir} (training files)")
    _check_pair(out["test_images"], out["test_labels"], f"{data_dir} (test files)")
    return out


def default_tfds_data_dir() -> Path:
    """Where tensorflow-datasets keeps its data: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``."""
    return Path(os.environ.get("TFDS_DATA_DIR", Path.home() / "tensorflow_datasets"))


def download_mnist(tfds_data_dir: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """Fetches the four MNIST files with tensorflow-datasets' download manager.

    The files land in tensorflow-datasets' download cache (``<data dir>/downloads``),
    checked against the sizes and SHA-256 sums that tensorflow-datasets registers for
    MNIST; a second call finds them there and downloads nothing. TensorFlow itself
    is not needed: the IDX files are parsed by :func:`read_idx`.

    Args:
      tfds_data_dir: tensorflow-datasets' data directory (its default if ``None``).
      download: allow a download; if ``False`` only the cache is consulted.

    Returns:
      A directory holding the four ``.gz`` files, ready for :func:`read_mnist_dir`.

    Raises:
      DataNotFoundError: tensorflow-datasets is missing, or the download failed.
    """
    try:
        import tensorflow_datasets as tfds
        from tensorflow_datasets.image_classification.mnist import MNIST
    except ImportError as e:
        raise DataNotFoundError(_not_found_message(f"tensorflow-datasets is not importable: {e}")) from None
    root = Path(tfds_data_dir) if tfds_data_dir is not None else default_tfds_data_dir()
    cache = root / "downloads" / "jax_softmax_mnist"
    if all((cache / f"{stem}.gz").is_file() for stem in MNIST_FILES):
        return cache
    if not download:
        raise DataNotFoundError(_not_found_message(f"not in the tensorflow-datasets cache {cache}"))
    host = urllib.parse.urlsplit(MNIST.URL).hostname
    try:
        # Fail at once when offline rather than after the download's retries and backoff.
        socket.getaddrinfo(host, None)
    except OSError as e:
        raise DataNotFoundError(_not_found_message(f"cannot reach {host} to download it: {e}")) from None
    manager = tfds.download.DownloadManager(
        download_dir=root / "downloads", dataset_name="mnist", url_infos=MNIST.url_infos
    )
    urls = {stem: urllib.parse.urljoin(MNIST.URL, f"{stem}.gz") for stem in MNIST_FILES}
    try:
        paths = manager.download(urls)
    except Exception as e:  # urllib, requests and tfds raise many types when offline
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataNotFoundError(
            _not_found_message(f"tensorflow-datasets could not download it: {reason}")
        ) from None
    cache.mkdir(parents=True, exist_ok=True)
    for stem, path in paths.items():
        with open(path, "rb") as source:
            write_atomically(cache / f"{stem}.gz", lambda f, source=source: shutil.copyfileobj(source, f))
    return cache


def _not_found_message(reason: str) -> str:
    return (
        f"MNIST not found ({reason}). Either pass --data-dir DIR (or set {DATA_DIR_ENV}) "
        "to a directory with the four IDX files train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz, "
        "or connect to the network so tensorflow-datasets can download MNIST"
    )


def default_data_cache_dir() -> Path | None:
    """Where :func:`load_mnist` keeps decoded MNIST: ``mnist`` in jax-softmax's cache directory.

    That is ``$JAX_SOFTMAX_CACHE_DIR`` if set (``None`` if it is set empty: no cache),
    else ``$XDG_CACHE_HOME/jax-softmax`` or ``~/.cache/jax-softmax``.
    """
    from jax_softmax.storage.cache import CACHE_DIR_ENV, default_cache_dir

    root = os.environ.get(CACHE_DIR_ENV)
    if root is None:
        return default_cache_dir() / DATA_CACHE_SUBDIR
    return Path(root) / DATA_CACHE_SUBDIR if root else None


def load_mnist_uint8(
    data_dir: str | os.PathLike | None = None,
    *,
    tfds_data_dir: str | None = None,
    download: bool = True,
    verify: bool = True,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    deskew: bool = False,
) -> Mnist:
    """Like :func:`load_mnist`, with the pixels left as uint8 ``[n, 784]`` in 0-255.

    From the cache, the images are read-only memory-mapped views of one file per split.
    With ``deskew``, every image is deskewed (:func:`jax_softmax.data.deskew_pixels`),
    once: the result is kept in the cache beside the decoded files.
    """
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    if cache:
        cache_dir = default_data_cache_dir() if cache_dir is None else cache_dir
    else:
        cache_dir = None
    if data_dir is None:
        data_dir = download_mnist(tfds_data_dir, download=download)
    arrays = read_mnist_dir(data_dir, verify=verify, cache_dir=cache_dir)
    if deskew:
        from jax_softmax.data._deskew import deskew_pixels  # imports JAX

        where = None if cache_dir is None else Path(cache_dir).expanduser().resolve()
        for name in ("train_images", "test_images"):
            arrays[name] = derived(where, "deskewed", arrays[name], deskew_pixels)
    train_x = arrays["train_images"].reshape(-1, NUM_FEATURES)
    train_y = arrays["train_labels"].astype(np.int32)
    test_x = arrays["test_images"].reshape(-1, NUM_FEATURES)
    test_y = arrays["test_labels"].astype(np.int32)
    cut = len(train_x) - VALIDATION_SIZE
    return Mnist(
        train=Split(train_x[:cut], train_y[:cut]),
        validation=Split(train_x[cut:], train_y[cut:]),
        test=Split(test_x, test_y),
    )


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    tfds_data_dir: str | None = None,
    download: bool = True,
    verify: bool = True,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    deskew: bool = False,
) -> Mnist:
    """Loads MNIST as 54,000 train / 6,000 validation / 10,000 test examples.

    The validation set is the last 6,000 images of the official training set (no
    shuffling, so every run and every tool sees the same split).

    Args:
      data_dir: a directory with the four canonical IDX files (gzip or raw). If
        ``None``, ``$JAX_SOFTMAX_DATA_DIR`` if it is set, else tensorflow-datasets
        provides MNIST.
      tfds_data_dir: tensorflow-datasets' data directory, whose download cache
        keeps the files (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets`` if ``None``).
      download: let tensorflow-datasets download MNIST if it is not cached.
      verify: check the IDX files' shapes and content hashes.
      cache: keep the decoded files in ``cache_dir`` and read them from there while
        the IDX files are unchanged (a second load takes a few hundredths of a second
        instead of most of one); ``False`` reads the IDX files every time.
      cache_dir: where; ``None`` for :func:`default_data_cache_dir`.
      deskew: deskew every image (:func:`jax_softmax.data.deskew`; rounded to the 256
        pixel levels, and kept in the cache).

    Returns:
      ``Mnist`` of ``Split(x, y)``: ``x`` float32 ``[n, 784]`` in ``[0, 1]``,
      ``y`` int32 ``[n]``.

    Raises:
      IdxError: a file in ``data_dir`` is missing or malformed.
      DataNotFoundError: no ``data_dir`` and tensorflow-datasets cannot provide MNIST.
    """
    raw = load_mnist_uint8(
        data_dir,
        tfds_data_dir=tfds_data_dir,
        download=download,
        verify=verify,
        cache=cache,
        cache_dir=cache_dir,
        deskew=deskew,
    )
    return Mnist(*(Split(to_features(s.x), s.y) for s in raw))
