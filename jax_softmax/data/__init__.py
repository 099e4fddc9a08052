"""The data: MNIST's IDX files, read and checked, from a directory or tensorflow-datasets; the user's images.

- ``_mnist``: MNIST's splits (:func:`load_mnist`) and its sources: a directory, or
  tensorflow-datasets (:func:`download_mnist`).
- ``_idx``: the IDX reader (:func:`read_idx`), gzip or raw, checked.
- ``_cache``: the decoded arrays kept between runs, memory-mapped.
- ``_pixels``: uint8 pixels to features in ``[0, 1]``, on the host (:func:`to_features`)
  and on the device (:func:`pixel_features`), the same bits.
- :mod:`~jax_softmax.data.images`: the user's own digits, turned into MNIST-like inputs.
- ``_deskew``: each digit sheared upright (:func:`deskew`), the classic
  preprocessing that takes a linear model past 95% on MNIST.
"""

from jax_softmax.data._idx import IDX_DTYPES, MAX_IDX_DIMS, IdxError, parse_idx, read_idx
from jax_softmax.data._mnist import (
    DATA_CACHE_SUBDIR,
    DATA_DIR_ENV,
    MNIST_FILES,
    NUM_CLASSES,
    NUM_FEATURES,
    VALIDATION_SIZE,
    DataNotFoundError,
    Mnist,
    Split,
    default_data_cache_dir,
    default_tfds_data_dir,
    download_mnist,
    load_mnist,
    load_mnist_uint8,
    read_mnist_dir,
)
from jax_softmax.data._pixels import pixel_features, to_features

__all__ = [
    "deskew",
    "deskew_pixels",
    "load_mnist",
    "load_mnist_uint8",
    "Mnist",
    "Split",
    "read_mnist_dir",
    "download_mnist",
    "default_tfds_data_dir",
    "default_data_cache_dir",
    "read_idx",
    "parse_idx",
    "to_features",
    "pixel_features",
    "IdxError",
    "DataNotFoundError",
    "NUM_FEATURES",
    "NUM_CLASSES",
    "VALIDATION_SIZE",
    "IDX_DTYPES",
    "MNIST_FILES",
    "MAX_IDX_DIMS",
    "DATA_DIR_ENV",
    "DATA_CACHE_SUBDIR",
]


def __getattr__(name: str):
    """``deskew`` and ``deskew_pixels``, imported on first use: they import JAX, and reading
    MNIST does not (the command line reads it while JAX is imported)."""
    if name in ("deskew", "deskew_pixels"):
        import importlib

        return getattr(importlib.import_module("jax_softmax.data._deskew"), name)
    raise AttributeError(f"module 'jax_softmax.data' has no attribute {name!r}")
