"""The command line's process and its stop signals: SIGINT and SIGTERM from start-up to exit.

The one module that sets signal handlers:

- while the command line starts (its imports) and shuts down (the interpreter's exit),
  :func:`exit_on_stop_signals` prints one line and exits at once, with the shell's
  status for the signal (130 for SIGINT, 143 for SIGTERM): nothing is written or left
  to save there;
- while a command runs, :func:`raise_on_stop_signals` raises :class:`Interrupted`
  once in the main thread, and :func:`interrupts_deferred` holds signals back while a
  file is being written;
- :func:`stop_signals_raised` does the former for a block, quiets Python's report of
  such an exception raised where it cannot propagate, and puts back what was there before.

It also pauses the garbage collector while the command line imports JAX
(:func:`pause_collector`, :func:`freeze_imports`). It uses the built-in ``_signal``
module, not ``signal``, whose import alone builds enums for a noticeable time: this
must be in place as early as possible.
"""

from __future__ import annotations

import _signal
import contextlib
import gc
import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

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


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM (what schedulers send to stop a job) arrived.

    A ``KeyboardInterrupt``, so that code which stops cleanly on Ctrl-C does so on
    both. ``signum`` says which; ``exit_status`` is the shell's ``128 + signum``
    (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signum: int):
        super().__init__(STOP_SIGNALS.get(signum, str(signum)))
        self.signum = int(signum)

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def raise_on_stop_signals() -> list[int]:
    """Makes SIGINT and SIGTERM raise :class:`Interrupted` in the main thread, once.

    The first signal raises; later ones are only recorded, so that the code stopping
    because of the first one is not itself interrupted. Every signal is recorded in
    the returned list, which lets a caller find one that a library swallowed (caught
    the exception and went on) with :func:`check_interrupted`.

    A signal that is ignored (``SIG_IGN``, as ``nohup`` sets) stays ignored.

    Returns:
      The list the handler appends each received signal number to.
    """
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) == 1:
            raise Interrupted(signum)

    for signum in STOP_SIGNALS:
        if _signal.getsignal(signum) != _signal.SIG_IGN:  # nohup and background jobs ignore SIGINT
            _signal.signal(signum, handler)
    return received


def check_interrupted(received: Sequence[int]) -> None:
    """Raises :class:`Interrupted` if ``received`` (from :func:`raise_on_stop_signals`) holds a _signal."""
    if received:
        raise Interrupted(received[0])


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Holds SIGINT (Ctrl-C) and SIGTERM back while the block runs, then delivers them.

    Inside the block a signal is only recorded; when the block ends, the first one
    goes to the handler that was there before: by default ``KeyboardInterrupt`` is
    raised for SIGINT, and the process ends for SIGTERM. Outside the main thread,
    where signal handlers cannot be set, the block runs unprotected.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous: dict[int, Any] = {}
    try:
        for signum in STOP_SIGNALS:
            previous[signum] = _signal.signal(signum, lambda signum, frame: received.append(signum))
        yield
    finally:
        for signum, handler in previous.items():
            _signal.signal(signum, handler)
    if received:
        signum = received[0]
        handler = previous[signum]
        if callable(handler):
            handler(signum, None)
        elif handler == _signal.SIG_DFL:
            _signal.raise_signal(signum)


@contextlib.contextmanager
def stop_signals_raised() -> Iterator[list[int]]:
    """:func:`raise_on_stop_signals` while the block runs; yields the list of received signals.

    A signal's exception raised inside a garbage-collection callback is printed and
    dropped by Python ("Exception ignored in ..."); it is recorded in the list all the
    same, and acted on at the next :func:`check_interrupted`, so nothing is printed for
    it. Afterwards the previous handlers are back. Outside the main thread, where no
    handler can be set, the list stays empty.
    """
    previous = _current_handlers()
    received = raise_on_stop_signals() if previous else []
    previous_hook = sys.unraisablehook

    def quiet_interrupts(unraisable: Any) -> None:
        if not (isinstance(unraisable.exc_value, KeyboardInterrupt) and received):
            previous_hook(unraisable)

    sys.unraisablehook = quiet_interrupts
    try:
        yield received
    finally:
        sys.unraisablehook = previous_hook
        _restore_handlers(previous)


def _current_handlers() -> dict[int, Any]:
    """The handlers of SIGINT and SIGTERM now (none outside the main thread), to restore later."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: _signal.getsignal(signum) for signum in STOP_SIGNALS}


def _restore_handlers(previous: Mapping[int, Any]) -> None:
    """Sets the handlers :func:`_current_handlers` returned back."""
    for signum, handler in previous.items():
        if handler is not None:
            _signal.signal(signum, handler)
