"""SIGINT and SIGTERM while a command runs: raised once in the main thread, or held back.

Imports nothing heavy, so that the command line can set its handlers before JAX loads.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Sequence
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM (what schedulers send to stop a job) arrived.

    A ``KeyboardInterrupt``, so that code which stops cleanly on Ctrl-C does so on
    both. ``signum`` says which; ``exit_status`` is the shell's ``128 + signum``
    (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
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
        if signal.getsignal(signum) != signal.SIG_IGN:  # nohup and background jobs ignore SIGINT
            signal.signal(signum, handler)
    return received


def check_interrupted(received: Sequence[int]) -> None:
    """Raises :class:`Interrupted` if ``received`` (from :func:`raise_on_stop_signals`) holds a signal."""
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
            previous[signum] = signal.signal(signum, lambda signum, frame: received.append(signum))
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        signum = received[0]
        handler = previous[signum]
        if callable(handler):
            handler(signum, None)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(signum)
