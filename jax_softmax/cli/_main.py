"""The command line, ``jax-softmax COMMAND``: each command parses its flags, calls the library, prints.

The commands live in private modules, one per concern: ``_cli_train``, ``_cli_models``
(evaluate, predict), ``_cli_question`` (diagnose, check-grad), ``_cli_sweep`` and
``_cli_solve`` (its data in ``_cli_solve_data``).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence

from jax_softmax.cli._common import (
    PROG,
    CommandError,
    Parser,
    WriteError,
    stopped_by,
)
from jax_softmax.cli._models import add_evaluate_command, add_predict_command
from jax_softmax.cli._question import add_check_grad_command, add_diagnose_command
from jax_softmax.cli._solve import add_solve_command
from jax_softmax.cli._sweep import add_sweep_command
from jax_softmax.cli._train import add_train_command
from jax_softmax.cli._train import format_loss as format_loss
from jax_softmax.data import DataNotFoundError


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Softmax regression on MNIST in JAX.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_train_command(subparsers)
    add_evaluate_command(subparsers)
    add_predict_command(subparsers)
    add_diagnose_command(subparsers)
    add_check_grad_command(subparsers)
    add_sweep_command(subparsers)
    add_solve_command(subparsers)
    parser.commands = subparsers.choices
    return parser


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """``argv`` parsed; an unknown flag is reported by its command (``jax-softmax train: error: ...``)."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _raised_by_the_package(error: BaseException) -> bool:
    """Whether the package's own code raised ``error``: one of its checks, naming bad input.

    A ``ValueError`` or ``TypeError`` raised inside NumPy, JAX or Python itself and not
    turned into such a message by the package is a bug, and keeps its traceback.
    """
    from pathlib import Path

    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    if frame is None:
        return False
    package = Path(__file__).resolve().parents[1]  # jax_softmax/
    return Path(frame.tb_frame.f_code.co_filename).resolve().is_relative_to(package)


def _start(argv: Sequence[str] | None) -> argparse.Namespace:
    """``argv`` parsed (a bad flag exits here, status 2), the command's work that needs no
    JAX started, and JAX imported.

    JAX's compiled modules cannot take an exception while they load, so JAX is imported
    before :func:`main` sets handlers that raise one: until then a signal gets the
    start-up handler (:mod:`jax_softmax._process`), one line and exit.
    """
    from jax_softmax._process import freeze_imports

    args = parse_arguments(argv)
    if getattr(args, "prefetch", None) is not None:
        args.prefetch(args)
    freeze_imports()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (see :data:`EXIT_STATUS`).

    While it runs, SIGINT and SIGTERM raise :class:`jax_softmax._process.Interrupted`:
    ``train --out`` saves its last completed epoch, every command prints one line and
    returns ``128 + signal``. The previous handlers are restored on return.
    """
    import signal

    from jax_softmax._process import check_interrupted, stop_signals_raised

    args = _start(argv)
    command = f"{PROG} {args.command}"
    on_exit: list = []
    with stop_signals_raised() as received:
        try:
            args.argv = list(sys.argv[1:] if argv is None else argv)
            args.signals, args.on_exit, args.interrupt_reported = received, on_exit, False
            status = args.run(args)
            if not args.interrupt_reported:
                check_interrupted(received)  # never finish as if a signal had not come
            return status
        except (CommandError, DataNotFoundError, WriteError, OSError, ValueError, TypeError) as e:
            status = _error_status(e)
            if status is None:
                raise  # a bug, not bad input: the traceback is what is needed
            print(f"{command}: error: {e}", file=sys.stderr)
            return status
        except KeyboardInterrupt as e:
            signum = getattr(e, "signum", signal.SIGINT)
            print(f"{command}: {stopped_by(signum)}", file=sys.stderr)
            return 128 + signum
        finally:
            for release in on_exit:
                release()
            try:
                sys.stdout.flush()  # before a signal in the shutdown can end the process unflushed
            except (OSError, ValueError):
                pass


def _error_status(error: Exception) -> int | None:
    """3 for a file that could not be written, 2 for bad input, None for a bug."""
    if isinstance(error, WriteError):
        return 3
    if isinstance(error, (CommandError, DataNotFoundError, OSError)) or _raised_by_the_package(error):
        return 2
    return None


def main_entry() -> None:
    """Console-script entry point."""
    from jax_softmax._process import exit_on_stop_signals

    # A signal after main has returned (the interpreter's exit takes a moment) ends
    # the process with one line; main keeps it in place for that.
    exit_on_stop_signals("shutting down")
    try:
        status = main()
    except KeyboardInterrupt as e:  # arrived while main was reporting an error
        import signal

        status = 128 + getattr(e, "signum", signal.SIGINT)
        print(f"{PROG}: {stopped_by(status - 128)}", file=sys.stderr)
    if status > 128:
        # Stopped by a signal, maybe in the middle of JAX's initialisation or a
        # compilation: its teardown at exit can then crash. Everything is saved and
        # reported; leave without it.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)
    gc.freeze()  # the interpreter's last collection need not walk what the command made
    sys.exit(status)
