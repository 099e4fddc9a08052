"""Compiled programs kept whole between runs, found without tracing them again.

JAX's persistent compilation cache (:mod:`jax_softmax.storage.cache`) saves the
compilation, but to find a program there JAX traces and lowers it first: about half a
second for a ``train`` run's programs on a CPU, a quarter of what a NumPy script needs
for the whole run. The store here keeps each compiled executable under a key made
of everything the program depends on, so a later run loads it without tracing:

- the program's name and the settings its caller names (static arguments, optimizer,
  compiler options);
- the shapes, dtypes and placements of its arguments, and their tree structure;
- the source of this package, byte for byte;
- the versions of Python, NumPy, JAX and jaxlib (optax's is among the settings of a
  program that uses it), JAX's configuration, ``XLA_FLAGS``, the devices and, for a
  CPU, its model and instruction-set extensions (XLA compiles for the host's).

Change any of them and the key changes: the program is compiled afresh (through JAX's
own cache) and stored beside the old one. An entry that cannot be read, is cut short,
or whose checksum differs is ignored and replaced. What the store returns is the
:class:`jax.stages.Compiled` that compiling would return, and calling it checks its
arguments' shapes and dtypes as any compiled program does.

Like JAX's cache, the store trusts its directory: loading an executable can run code,
so the directory must be the user's own.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import secrets
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax

from jax_softmax.storage.files import checksum, write_atomically

_MAGIC = b"jax-softmax program 2\n"
_CHECKSUM_BYTES = 4
_SUFFIX = ".program"
MAX_ENTRIES = 256
"""Programs kept; beyond it the least recently used are removed."""

_directory: Path | None = None


def set_directory(directory: str | os.PathLike | None) -> None:
    """Keeps compiled programs in ``directory`` from now on (``None``: keep none)."""
    global _directory
    _directory = None if directory is None else Path(directory)


def compiled_program(
    name: str,
    jitted: Any,
    args: Sequence[Any],
    static: Mapping[str, Any],
    settings: Mapping[str, Any] | None,
    compile: Callable[[jax.stages.Lowered], jax.stages.Compiled],
) -> jax.stages.Compiled:
    """``jitted.lower(*args, **static)`` compiled: from the store, or compiled and stored.

    Args:
      name: what the program is, part of its key.
      jitted: the program, a ``jax.jit``-wrapped function without options (a kept
        program is compiled from ``jitted.__wrapped__`` under a new ``jax.jit``).
      args: the arguments the program will be called with; their shapes, dtypes,
        placements and tree structure are part of the key.
      static: its static keyword arguments, bound into the program.
      settings: everything else the program depends on that is not in this package's
        source (the static arguments, an optimizer's name and learning rate, compiler
        options), as JSON values; ``None`` when that cannot be named: then the
        program is compiled and not stored.
      compile: compiles the lowered program.
    """
    if _directory is None or settings is None or jax.process_count() > 1:
        return compile(jitted.lower(*args, **static))
    key = _key(name, args, settings)
    path = _directory / f"{name}-{key}{_SUFFIX}"
    program = _load(path)
    if program is not None:
        return program
    # An executable that JAX loaded from its persistent cache serializes into one that
    # cannot run ("Function ... not found", jaxlib 0.10): only a fresh compilation is
    # stored. Named after its key, the program is new to JAX's cache unless this store
    # lost its copy; then it is compiled once more under a name JAX has not seen.
    function = functools.partial(jitted.__wrapped__, **static)
    for label in (f"{name}_{key[:16]}", f"{name}_{key[:16]}_{secrets.token_hex(4)}"):
        hits = _cache_hits()
        program = compile(jax.jit(_named(function, label)).lower(*args))
        if _cache_hits() == hits:
            _store(path, program)
            break
    return program


def _named(function: Callable, name: str) -> Callable:
    def program(*args):
        return function(*args)

    program.__name__ = program.__qualname__ = name
    return program


_local = threading.local()


def _count_cache_hit(event: str, **kwargs) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _local.hits = getattr(_local, "hits", 0) + 1


@functools.cache
def _listen_for_cache_hits() -> None:
    jax.monitoring.register_event_listener(_count_cache_hit)


def _cache_hits() -> int:
    """Programs this thread has loaded from JAX's persistent cache so far."""
    _listen_for_cache_hits()
    return getattr(_local, "hits", 0)


def _key(name: str, args: Sequence[Any], settings: Mapping[str, Any]) -> str:
    leaves, tree = jax.tree.flatten(args)
    described = {
        "name": name,
        "settings": settings,
        "arguments": [_describe(leaf) for leaf in leaves],
        "tree": str(tree),
        "environment": _environment(),
    }
    text = json.dumps(described, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def _describe(leaf: Any) -> list:
    if isinstance(leaf, jax.Array):
        return [leaf.shape, str(leaf.dtype), bool(getattr(leaf, "weak_type", False)), repr(leaf.sharding)]
    raise TypeError(f"a stored program's arguments must be JAX arrays, got {type(leaf).__name__}")


def _environment() -> dict:
    """What every program depends on besides its own settings; changes with any of it."""
    return {**_static_environment(), "jax_config": {k: repr(v) for k, v in jax.config.values.items()}}


@functools.cache
def _static_environment() -> dict:
    import jaxlib
    import numpy as np

    backend = jax.devices()[0].client
    return {
        "source": _source_digest(),
        "python": sys.version,
        "numpy": np.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "platform": [backend.platform, backend.platform_version],
        "devices": [[d.id, d.device_kind] for d in jax.devices()],
        "host": _host_cpu() if backend.platform == "cpu" else None,
    }


def _host_cpu() -> list[str]:
    """The CPU's model and instruction-set extensions, which XLA compiles for (Linux; else the machine)."""
    import platform

    first: dict[str, str] = {}  # the first processor's lines; the others repeat them
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                field, _, value = line.partition(":")
                if field.strip() in ("model name", "flags", "Features"):
                    first.setdefault(field.strip(), value.strip())
    except OSError:
        pass
    return [platform.machine(), *(f"{k}: {v}" for k, v in sorted(first.items()))]


PACKAGE_DIR = Path(__file__).resolve().parents[1]
"""The package's directory, whose every Python file, at any depth, is part of a program's key."""


def _source_digest() -> str:
    """SHA-256 over the package's Python files at any depth: their paths and bytes."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        name = path.relative_to(PACKAGE_DIR).as_posix()
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _load(path: Path) -> jax.stages.Compiled | None:
    from jax.experimental.serialize_executable import deserialize_and_load

    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(_MAGIC) + _CHECKSUM_BYTES
    payload = data[head:]
    if not data.startswith(_MAGIC) or checksum(payload).to_bytes(4, "big") != data[len(_MAGIC) : head]:
        return None
    try:
        serialized, in_tree, out_tree = pickle.loads(payload)
        program = deserialize_and_load(serialized, in_tree, out_tree)
    except Exception:  # written by another version of a library, say: compile afresh
        return None
    try:
        os.utime(path)  # recently used
    except OSError:
        pass
    return program


def _store(path: Path, program: jax.stages.Compiled) -> None:
    """Keeps ``program`` at ``path`` if it can; a program that cannot be kept is not an error."""
    from jax.experimental.serialize_executable import serialize

    try:
        payload = pickle.dumps(serialize(program))
    except Exception:  # a backend that cannot serialize its executables
        return
    data = _MAGIC + checksum(payload).to_bytes(4, "big") + payload
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda f: f.write(data))
        _prune(path.parent)
    except OSError:
        return


def _prune(directory: Path) -> None:
    """Removes the least recently used programs beyond :data:`MAX_ENTRIES`."""
    entries = []
    for path in directory.glob(f"*{_SUFFIX}"):
        try:
            entries.append((path.stat().st_mtime, path))
        except OSError:
            continue
    for _, path in sorted(entries, reverse=True)[MAX_ENTRIES:]:
        try:
            path.unlink()
        except OSError:
            continue
