"""SIGINT and SIGTERM while the command line starts or shuts down: one line, no traceback.

The command line's own handlers (:func:`jax_softmax._signals.raise_on_stop_signals`)
are set once the package and its modules are imported, and after the command has
printed its result the interpreter takes a moment to exit. A signal in either window
would otherwise print a traceback from the middle of an import, or end the process
silently. Nothing has been written or is left to save there, so the handler here
prints one line and exits at once with the shell's status for the signal (130 for
SIGINT, 143 for SIGTERM).

It uses the built-in ``_signal`` module, not ``signal``, whose import alone builds
enums for a noticeable time: this must be in place as early as possible.
"""

from __future__ import annotations

import _signal
import gc
import os
import sys

PROG = "jax-softmax"
STOP_SIGNALS = {_signal.SIGINT: "SIGINT", _signal.SIGTERM: "SIGTERM"}


def is_command_line() -> bool:
    """Whether this process is the ``jax-softmax`` command (``python -m jax_softmax`` or the script)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 == "-m":  # `python -m` is importing a package: this one, or one that imports it?
        orig = getattr(sys, "orig_argv", [])
        pairs = zip(orig, orig[1:], strict=False)
        return any(flag == "-m" and module == __package__ for flag, module in pairs)
    return os.path.basename(argv0).removesuffix(".exe") == PROG


def exit_on_stop_signals(when: str) -> None:
    """Makes SIGINT and SIGTERM print ``jax-softmax: <SIGNAL> while <when>; stopped`` and exit at once.

    A signal that the parent set to be ignored (``nohup``, a background job) stays
    ignored. Outside the main thread, where handlers cannot be set, nothing changes.
    """

    def handler(signum: int, frame: object) -> None:
        try:
            os.write(2, f"{PROG}: {STOP_SIGNALS.get(signum, signum)} while {when}; stopped\n".encode())
        finally:
            os._exit(128 + signum)

    for signum in STOP_SIGNALS:
        try:
            if _signal.getsignal(signum) != _signal.SIG_IGN:
                _signal.signal(signum, handler)
        except ValueError:  # not the main thread
            return


_collector_paused = False


def pause_collector() -> None:
    """Pauses the garbage collector while the command line imports its libraries.

    Importing JAX makes about 150,000 objects and no garbage, and the collections it
    triggers cost about a tenth of a second; :func:`freeze_imports` resumes collecting.
    """
    global _collector_paused
    _collector_paused = gc.isenabled()
    gc.disable()


def freeze_imports() -> None:
    """Imports JAX if it is not yet, then resumes the collector with what exists so far frozen.

    Frozen objects (the modules, and everything they hold) are left out of every later
    collection, the interpreter's last one at exit included: that one would otherwise
    walk them all, for about 0.2 s. Does nothing unless :func:`pause_collector` paused
    it (``main`` called from a program that imported the package is left alone).
    """
    global _collector_paused
    if not _collector_paused:
        return
    import jax  # noqa: F401  every command uses it

    gc.freeze()
    gc.enable()
    _collector_paused = False
