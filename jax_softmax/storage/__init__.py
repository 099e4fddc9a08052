"""What the package keeps on disk: files written whole, and the caches kept between runs.

- :mod:`~jax_softmax.storage.files`: the one atomic writer, the removal of what a killed
  writer left, and the checksum every cache entry carries.
- :mod:`~jax_softmax.storage.cache`: the cache directory, and JAX's compilation cache.
- ``_programs``: compiled programs kept whole, found without tracing them again.

One policy for every cache (decoded MNIST in ``data``, compiled programs here): an
entry is written atomically with a checksum of its bytes; an entry that is missing,
cut short, or whose checksum differs is ignored and written again, so a cache can
make a run faster but never different.
"""

from jax_softmax.storage.cache import CACHE_DIR_ENV, default_cache_dir, enable_compilation_cache
from jax_softmax.storage.files import (
    STALE_TEMPORARY_SECONDS,
    checksum,
    remove_temporaries,
    write_atomically,
)

__all__ = [
    "write_atomically",
    "remove_temporaries",
    "checksum",
    "STALE_TEMPORARY_SECONDS",
    "enable_compilation_cache",
    "default_cache_dir",
    "CACHE_DIR_ENV",
    "compiled_program",
]


def __getattr__(name: str):
    """``compiled_program``, imported on first use: it imports JAX, and reading MNIST's cache does not."""
    if name == "compiled_program":
        import importlib

        return importlib.import_module("jax_softmax.storage._programs").compiled_program
    raise AttributeError(f"module 'jax_softmax.storage' has no attribute {name!r}")
