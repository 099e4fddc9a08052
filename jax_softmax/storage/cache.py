"""Compiled programs kept on disk between runs.

A second ``jax-softmax train`` with the same settings loads its compiled programs
instead of compiling them again. Two layers keep them: JAX's persistent compilation
cache, which finds a program after tracing it, and, for :func:`jax_softmax.fit`'s
programs, whole executables kept under a key of everything they depend on, which
are loaded without tracing (:mod:`jax_softmax.storage._programs`). The command line
turns the cache on; the library never does so by itself.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR_ENV = "JAX_SOFTMAX_CACHE_DIR"
"""Environment variable naming the cache directory for the command line."""

PROGRAMS_SUBDIR = "programs"
"""Subdirectory of the cache that keeps whole compiled programs (see :func:`enable_compilation_cache`)."""

# The cache's default size limit, in bytes: a few hundred compiled programs.
DEFAULT_MAX_BYTES = 1 << 30


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/jax-softmax``, or ``~/.cache/jax-softmax`` without ``XDG_CACHE_HOME``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jax-softmax"


def enable_compilation_cache(directory: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Path:
    """Turns on JAX's persistent compilation cache in ``directory``, creating it.

    Every compiled program is cached, however quick its compilation (JAX's default
    skips those under a second, which is most of this project's), and
    :func:`jax_softmax.fit` keeps its programs whole in ``directory/programs``, to be
    loaded by a later run without tracing them. Call it before the first compilation
    of the process; it changes JAX's global configuration.

    Args:
      directory: where the compiled programs are kept.
      max_bytes: the cache's size limit; JAX evicts the least recently used entries
        beyond it.

    Returns:
      The directory, as an absolute path.

    Raises:
      OSError: the directory cannot be created.
    """
    import jax  # here, so that the cache's location is known without importing JAX

    from jax_softmax.storage import _programs as _program_store

    path = Path(directory).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", max_bytes)
    _program_store.set_directory(path / PROGRAMS_SUBDIR)
    return path
