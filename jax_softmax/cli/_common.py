"""What every command of the command line shares.

Errors and exit statuses, the parser, flag types, and the data, cache and device flags.
"""

from __future__ import annotations

import argparse
import os
import sys

from jax_softmax.config import SEED_LIMIT
from jax_softmax.data import DATA_DIR_ENV

PROG = "jax-softmax"


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


class WriteError(Exception):
    """A file could not be written (disk full, permissions): one line, exit status 3."""


# Exit statuses, the same for every command.
EXIT_STATUS = {
    0: "success",
    1: "training stopped on a non-finite value, or every sweep model diverged",
    2: "bad input: flags, data, checkpoint or image files (one line on stderr says which)",
    3: "a file could not be written, e.g. the disk is full or --out is read-only "
    "(the line names the file and what the run directory still holds)",
    130: "interrupted by SIGINT (Ctrl-C); train --out saves the last completed epoch first",
    143: "terminated by SIGTERM; saved like SIGINT",
}
EXIT_STATUS_HELP = "exit status: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_STATUS.items())


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default once, where it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False:
            return text
        if action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def seed_int(text: str) -> int:
    """A seed: JAX's PRNG keys take 32 bits, so larger seeds would repeat smaller ones."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text}") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(
            f"must be an integer in [0, {SEED_LIMIT - 1}] (a PRNG key holds 32 bits), got {text}"
        )
    return value


for _fn, _name in (
    (positive_int, "integer"),
    (positive_float, "number"),
    (non_negative_float, "number"),
    (seed_int, "seed"),
):
    _fn.__name__ = _name  # argparse names the type in its "invalid ... value" message


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=os.environ.get(DATA_DIR_ENV),
        help=f"directory with the four MNIST IDX files (default: ${DATA_DIR_ENV}, "
        "else tensorflow-datasets downloads MNIST)",
    )


def add_deskew_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--deskew",
        action="store_true",
        help="deskew every image first (its slant sheared upright about its centre of mass): "
        "a linear model then passes 95%% on MNIST",
    )


def add_cache_flags(parser: argparse.ArgumentParser) -> None:
    from jax_softmax.storage.cache import CACHE_DIR_ENV, default_cache_dir

    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=os.environ.get(CACHE_DIR_ENV, str(default_cache_dir())),
        help="the cache: a second run loads its compiled programs and MNIST, decoded from its IDX "
        f"files, from DIR (${CACHE_DIR_ENV} sets the default; empty "
        "turns the cache off)",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="compile everything afresh and read the IDX files: cache nothing",
    )


def data_cache(args: argparse.Namespace) -> dict:
    """The cache arguments of ``load_mnist`` that ``--cache-dir`` and ``--no-cache`` ask for."""
    if args.no_cache or not args.cache_dir:
        return {"cache": False}
    from pathlib import Path

    from jax_softmax.data import DATA_CACHE_SUBDIR

    return {"cache": True, "cache_dir": Path(args.cache_dir) / DATA_CACHE_SUBDIR}


def enable_cache(args: argparse.Namespace) -> None:
    """Turns on the compilation cache unless it is off; warns and goes on if DIR cannot be made."""
    if args.no_cache or not args.cache_dir:
        return
    from jax_softmax.storage.cache import enable_compilation_cache

    try:
        enable_compilation_cache(args.cache_dir)
    except OSError as e:
        print(f"{PROG}: warning: compilation cache off ({e})", file=sys.stderr)


def enable_dtype(name: str) -> None:
    """Switches on 64-bit JAX when float64 is asked for; call before any array exists."""
    if name == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)


def coordinator_address(text: str) -> str:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT with a port in [1, 65535], got {text}")
    return text


coordinator_address.__name__ = "address"


def add_device_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--devices",
        type=positive_int,
        metavar="N",
        help="split each batch over N devices, all of them when not given (batch size: a multiple of N)",
    )
    group = parser.add_argument_group(
        "several processes (hosts)",
        "run the same command in every process; process 0 writes --out",
    )
    group.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-process run that JAX detects (Cloud TPU slice, Slurm, Open MPI, "
        "or $JAX_COORDINATOR_ADDRESS with the two flags below)",
    )
    group.add_argument(
        "--coordinator", type=coordinator_address, metavar="HOST:PORT", help="process 0's address"
    )
    group.add_argument("--num-processes", type=positive_int, metavar="N", help="how many processes")
    group.add_argument("--process-id", type=int, metavar="I", help="this process, 0 to N-1")


def start_devices(args: argparse.Namespace) -> int:
    """Joins a multi-process run if the flags ask for one; returns how many devices split a batch.

    Call before anything else touches JAX.
    """
    explicit = args.coordinator is not None or args.num_processes is not None or args.process_id is not None
    if explicit or args.distributed:
        if explicit and (args.num_processes is None or args.process_id is None):
            raise CommandError("--coordinator, --num-processes and --process-id go together: pass all three")
        if args.coordinator is None and explicit and not os.environ.get("JAX_COORDINATOR_ADDRESS"):
            raise CommandError("--num-processes and --process-id need --coordinator HOST:PORT")
        if explicit and not 0 <= args.process_id < args.num_processes:
            raise CommandError(
                f"--process-id must be in [0, {args.num_processes - 1}] for --num-processes "
                f"{args.num_processes}, got {args.process_id}"
            )
        from jax_softmax.distributed import initialize

        try:
            initialize(args.coordinator, args.num_processes, args.process_id)
        except (RuntimeError, ValueError) as e:
            raise CommandError(f"could not join the multi-process run: {e}") from None
        from jax.experimental.multihost_utils import sync_global_devices

        # The first collective connects the processes, and the CPU collectives (gloo)
        # announce it on file descriptor 1: send that to stderr, keeping stdout for results.
        sys.stdout.flush()
        saved_stdout = os.dup(1)
        os.dup2(2, 1)
        try:
            sync_global_devices("jax-softmax: every process joined")
        finally:
            os.dup2(saved_stdout, 1)
            os.close(saved_stdout)
    import jax

    from jax_softmax.distributed import data_parallel

    available = jax.device_count()
    if args.devices is not None and args.devices > available:
        raise CommandError(
            f"--devices {args.devices}: this machine has {available} device{'s' * (available != 1)} "
            f"({jax.devices()[0].platform})"
        )
    parallel = data_parallel(args.devices)
    if parallel is None:
        return 1
    if args.batch_size % parallel.num_devices:
        raise CommandError(
            f"--batch-size {args.batch_size} does not split evenly over {parallel.num_devices} devices: "
            f"pass a multiple of {parallel.num_devices}, or --devices"
        )
    return parallel.num_devices


def lock_out_dir(out: str, doing: str, on_exit: list):
    """Creates ``--out`` and locks it for this process until the command ends.

    Creating the lock file is the first write there, so an unwritable directory is
    reported now, before anything is computed.

    Args:
      out: the directory ``--out`` names.
      doing: what the command would have done, for the message (``"solved"``).
      on_exit: the command's list of what to do as it ends; the lock's release joins it.

    Returns:
      The lock.

    Raises:
      CommandError: another process holds the directory, or ``--out`` is a file.
      WriteError: the directory cannot be written.
    """
    from jax_softmax.runs import RunInUseError, lock_run, make_run_dir

    try:
        lock = lock_run(make_run_dir(out))
    except RunInUseError as e:
        raise CommandError(str(e)) from None
    except NotADirectoryError as e:
        raise CommandError(f"--out {e}") from None
    except OSError as e:
        raise WriteError(f"--out {out}: cannot write there ({e.strerror or e}); nothing {doing}") from None
    on_exit.append(lock.release)
    return lock


def check_plot_path(path: str | None) -> None:
    """Checks, before any training, that a ``--plot`` file can be drawn and written."""
    if path is None:
        return
    from pathlib import Path

    from jax_softmax.plots import require_matplotlib

    try:
        require_matplotlib()
    except ImportError as e:
        raise CommandError(f"--plot: {e}") from None
    if not Path(path).resolve().parent.is_dir():
        raise CommandError(f"--plot {path}: the directory {Path(path).parent} does not exist")


def in_background(function, *args, **kwargs):
    """Runs ``function(*args, **kwargs)`` in a daemon thread; returns its ``concurrent.futures.Future``.

    A daemon thread, so that a command stopped by a signal exits without waiting for it.
    """
    import threading
    from concurrent.futures import Future

    future: Future = Future()

    def run() -> None:
        try:
            future.set_result(function(*args, **kwargs))
        except BaseException as e:  # handed to whoever takes the result
            future.set_exception(e)

    threading.Thread(target=run, name=getattr(function, "__name__", "background"), daemon=True).start()
    return future


def stopped_by(signum: int) -> str:
    import signal

    return "interrupted" if signum == signal.SIGINT else f"terminated ({signal.Signals(signum).name})"
