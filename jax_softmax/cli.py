"""The ``jax-softmax`` command line: parses flags, calls the library, prints."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from jax_softmax.config import RECORDED as TRAIN_FLAGS
from jax_softmax.data import DATA_DIR_ENV, DataNotFoundError

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


class _Parser(argparse.ArgumentParser):
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


SEED_LIMIT = 2**32


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


def add_cache_flags(parser: argparse.ArgumentParser) -> None:
    from jax_softmax.compilation_cache import CACHE_DIR_ENV, default_cache_dir

    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=os.environ.get(CACHE_DIR_ENV, str(default_cache_dir())),
        help=f"the cache: a second run loads its compiled programs (JAX's persistent compilation cache) "
        f"and MNIST, decoded from its IDX files, from DIR (${CACHE_DIR_ENV} sets the default; empty "
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
    from jax_softmax.compilation_cache import enable_compilation_cache

    try:
        enable_compilation_cache(args.cache_dir)
    except OSError as e:
        print(f"{PROG}: warning: compilation cache off ({e})", file=sys.stderr)


def enable_dtype(name: str) -> None:
    """Switches on 64-bit JAX when float64 is asked for; call before any array exists."""
    if name == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)


def _add_train(subparsers) -> None:
    from jax_softmax.config import (
        DEFAULT_BATCH_SIZE,
        DEFAULT_EPOCHS,
        DEFAULT_INIT_SCALE,
        DEFAULT_LR,
        GRAD_MODES,
        OPTIMIZER_NAMES,
    )

    p = subparsers.add_parser(
        "train",
        help="train softmax regression on MNIST",
        description="Train softmax regression on MNIST with mini-batch gradient descent "
        "and report the test accuracy.",
        epilog=EXIT_STATUS_HELP + ". What each fault (kill, full disk, corrupt file, ...) gives: "
        "docs/failures.md.",
    )
    p.add_argument("--epochs", type=positive_int, default=DEFAULT_EPOCHS, help="passes over the training set")
    p.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, help="examples per step")
    p.add_argument("--lr", type=positive_float, default=DEFAULT_LR, help="learning rate")
    p.add_argument(
        "--grad", choices=GRAD_MODES, default="autodiff", help="gradient: jax.grad or the closed form"
    )
    p.add_argument(
        "--optimizer", choices=OPTIMIZER_NAMES, default="sgd", help="plain SGD, or an optax optimizer"
    )
    p.add_argument("--l2", type=non_negative_float, default=0.0, help="L2 penalty on the weights")
    p.add_argument(
        "--init-scale", type=non_negative_float, default=DEFAULT_INIT_SCALE, help="std of the initial weights"
    )
    p.add_argument(
        "--seed", type=seed_int, default=0, help="seed for initialisation and shuffling, 0 to 2**32-1"
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float32",
        help="dtype of the parameters and arithmetic",
    )
    add_data_flags(p)
    _add_run_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")
    add_cache_flags(p)
    add_device_flags(p)
    p.set_defaults(run=run_train)


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    """``train``'s flags for the run directory and for a run that goes non-finite."""
    p.add_argument(
        "--out",
        metavar="DIR",
        help="write metrics.jsonl, params.npz, curves.png, weights.png and confusion.png to DIR",
    )
    p.add_argument("--overwrite", action="store_true", help="with --out, replace a run already in DIR")
    p.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run that --out DIR saved, with its flags, up to --epochs (default: the run's); "
        "the result equals an uninterrupted run's",
    )
    p.add_argument(
        "--on-nonfinite",
        choices=("stop", "raise"),
        default="stop",
        help="when the loss or the parameters become NaN or infinite: stop (keep the last finite "
        "parameters, save them with --out, report, exit status 1) or raise (an error line, exit "
        "status 1; --out keeps the last completed epoch)",
    )


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


def _train_config(args: argparse.Namespace, devices: int | None):
    """The :class:`jax_softmax.TrainConfig` that ``train``'s flags ask for."""
    from jax_softmax.config import TrainConfig

    settings = {name: getattr(args, name) for name in TRAIN_FLAGS}
    return TrainConfig(**settings, on_nonfinite=args.on_nonfinite, devices=devices)


def describe_flags(flags, names: Sequence[str]) -> str:
    """``--batch-size 200 --lr 0.5 ...``: the flags ``names`` as a command line would give them."""

    def show(value) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    return " ".join(f"--{name.replace('_', '-')} {show(flags[name])}" for name in names if name in flags)


def format_loss(value: float) -> str:
    """``0.2657``, or ``2.04e+29`` for a loss too large for four decimals to be readable."""
    return f"{value:.4f}" if abs(value) < 1e4 or value != value else f"{value:.3g}"


def _epoch_line(metrics, epochs: int) -> str:
    return (
        f"epoch {metrics.epoch:3d}/{epochs}  train loss {format_loss(metrics.train_loss)}  "
        f"val loss {format_loss(metrics.val_loss)}  val acc {100 * metrics.val_accuracy:6.2f}%  "
        f"{metrics.seconds:.3f} s"
    )


def _progress_bar(epochs: int, stream):
    """A tqdm bar over the epochs when ``stream`` is a terminal, else ``None`` (plain lines)."""
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=epochs, file=stream, unit="epoch", dynamic_ncols=True, leave=True)


def _given_train_flags(argv: Sequence[str]) -> set[str]:
    """The training flags that ``argv`` sets explicitly (a default value given counts too)."""
    parser = _Parser(prog=PROG)
    subparsers = parser.add_subparsers(dest="command", parser_class=_Parser)
    _add_train(subparsers)
    unset = object()
    subparsers.choices["train"].set_defaults(**dict.fromkeys(TRAIN_FLAGS, unset))
    parsed = vars(parser.parse_args(argv))
    return {name for name in TRAIN_FLAGS if parsed.get(name, unset) is not unset}


def _read_resumed_run(args: argparse.Namespace) -> dict:
    """Takes the training flags of the run in ``--resume DIR`` into ``args``; returns its metadata."""
    from pathlib import Path

    from jax_softmax._resume import merge_flags, read_run_metadata

    if args.overwrite:
        raise CommandError("--resume continues the run in DIR and --overwrite would delete it; leave one out")
    if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
        raise CommandError(
            f"--resume {args.resume} writes to {args.resume}, not to --out {args.out}; leave --out out"
        )
    metadata = read_run_metadata(args.resume)
    given = {name: getattr(args, name) for name in _given_train_flags(args.argv)}
    flags = merge_flags(metadata["training"], given, args.resume)
    done = metadata["epoch"]
    if flags["epochs"] <= done:
        raise CommandError(
            f"--resume {args.resume}: the run has completed {done} of its {flags['epochs']} epochs; "
            f"pass --epochs N with N > {done} to train it further"
        )
    for name in TRAIN_FLAGS:
        if name in flags:
            setattr(args, name, flags[name])
    args.out = args.resume
    return metadata


def _stopped_by(signum: int) -> str:
    import signal

    return "interrupted" if signum == signal.SIGINT else f"terminated ({signal.Signals(signum).name})"


def _interrupted_line(epochs: int, done: int, out_dir, signum: int) -> str:
    stopped = _stopped_by(signum)
    if out_dir is None and done == 0:
        return f"{PROG} train: {stopped} before the first epoch ended"
    if out_dir is None:
        return (
            f"{PROG} train: {stopped} after epoch {done} of {epochs}; nothing saved "
            "(pass --out DIR to keep a run)"
        )
    if done == 0:
        return f"{PROG} train: {stopped} before the first epoch ended; nothing saved in {out_dir}"
    return (
        f"{PROG} train: {stopped}; saved epoch {done} of {epochs} in {out_dir} "
        f"(metrics.jsonl, params.npz); continue with '{PROG} train --resume {out_dir}'"
    )


def _lock_out_dir(args: argparse.Namespace, progress) -> None:
    """Creates and locks ``--out`` for this process until the command ends; clears stale temp files.

    Creating the lock file is the first write there, so an unwritable directory is
    reported now, before the data is loaded or anything is trained.
    """
    from jax_softmax._run_dir import RunInUseError, lock_run, make_run_dir, remove_temp_files

    try:
        lock = lock_run(make_run_dir(args.out))
    except RunInUseError as e:
        raise CommandError(str(e)) from None
    except NotADirectoryError as e:
        raise CommandError(f"--out {e}") from None
    except OSError as e:
        raise WriteError(
            f"--out {args.out}: cannot write there ({e.strerror or e}); nothing trained"
        ) from None
    args.on_exit.append(lock.release)
    removed = remove_temp_files(args.out)
    if removed:
        print(
            f"removed {len(removed)} temporary file{'s' * (len(removed) != 1)} that an interrupted save "
            f"left in {args.out}",
            file=progress,
            flush=True,
        )


@dataclasses.dataclass
class _TrainRun:
    """What ``train`` holds between its phases."""

    args: argparse.Namespace
    progress: Any
    data: Any
    config: Any
    devices: int
    run: Any = None  # the resumed run's state, or None
    out_dir: Any = None
    write_epoch: Any = None
    done: int = 0  # the last completed epoch, saved to out_dir when there is one


def run_train(args: argparse.Namespace) -> int:
    resumed = _read_resumed_run(args) if args.resume is not None else None
    enable_dtype(args.dtype)
    enable_cache(args)
    devices = start_devices(args)
    state = _start_training(args, resumed, devices)
    trained = _train(state)
    if isinstance(trained, int):  # stopped by a signal or a non-finite value
        return trained
    params, history = trained
    return _finish_training(state, params, history)


def _start_training(args: argparse.Namespace, resumed: dict | None, devices: int) -> _TrainRun:
    """Locks ``--out``, loads the data and the resumed run, and starts the run directory."""
    import jax

    from jax_softmax._resume import check_interrupted, read_run_metadata
    from jax_softmax.data import load_mnist_uint8

    if args.out is not None and jax.process_index() > 0:
        args.out = None  # process 0 writes the run directory
    progress = sys.stderr if args.json else sys.stdout
    if args.out is not None:
        _lock_out_dir(args, progress)
        if resumed is not None and read_run_metadata(args.resume)["epoch"] != resumed["epoch"]:
            raise CommandError(f"--resume {args.resume}: the run there moved on while starting; run again")
    # The pixels stay uint8, memory-mapped from the cache, and are scaled on the device.
    data = load_mnist_uint8(args.data_dir, **data_cache(args))
    check_interrupted(args.signals)  # one that arrived in a callback that dropped it
    if args.batch_size > len(data.train.x):
        raise CommandError(
            f"--batch-size {args.batch_size} is larger than the training set ({len(data.train.x)} examples); "
            f"choose at most {len(data.train.x)}"
        )
    state = _TrainRun(args, progress, data, _train_config(args, devices), devices)
    if resumed is not None:
        _load_resumed_run(state, resumed)
    if args.out is not None:
        _open_run_dir(state)
    return state


def _load_resumed_run(state: _TrainRun, resumed: dict) -> None:
    from jax_softmax._resume import check_same_data, load_run

    args = state.args
    check_same_data(resumed, state.data, args.resume)
    state.run = load_run(args.resume, resumed, repair=args.out is not None)  # only the writer repairs
    state.done = state.run.epoch
    for repair in state.run.repairs:
        print(f"{PROG} train: {repair}", file=state.progress, flush=True)
    print(
        f"resuming the run in {args.resume} after epoch {state.run.epoch}: epochs {state.run.epoch + 1} to "
        f"{args.epochs} with {describe_flags(vars(args), TRAIN_FLAGS[1:])}",
        file=state.progress,
        flush=True,
    )


def _open_run_dir(state: _TrainRun) -> None:
    from pathlib import Path

    from jax_softmax._run_dir import RunExistsError, epoch_writer, run_metadata, start_run

    if state.run is None:
        try:
            state.out_dir = start_run(state.args.out, overwrite=state.args.overwrite)
        except RunExistsError as e:
            raise CommandError(f"--out {e}; pass --overwrite to replace it") from None
    else:
        state.out_dir = Path(state.args.out)
    state.write_epoch = epoch_writer(state.out_dir, run_metadata(state.config.recorded(), state.data))


def _epoch_reporter(state: _TrainRun, bar):
    """``fit``'s checkpoint callback: saves the epoch (signals held back meanwhile) and prints its line."""
    from jax_softmax._resume import check_interrupted, interrupts_deferred

    epochs = state.args.epochs

    def report(metrics, params, opt_state) -> None:
        check_interrupted(state.args.signals)  # one that a library caught and went on from
        if state.write_epoch is not None:
            # The save is atomic whatever happens; holding SIGINT and SIGTERM back until it
            # is done makes the line printed on stopping name the epoch actually saved.
            with interrupts_deferred():
                state.write_epoch(metrics, params, opt_state)
                state.done = metrics.epoch
        state.done = metrics.epoch
        if bar is None:
            print(_epoch_line(metrics, epochs), file=state.progress, flush=True)
        else:
            bar.write(_epoch_line(metrics, epochs), file=state.progress)
            bar.set_postfix_str(f"val acc {100 * metrics.val_accuracy:.2f}%", refresh=False)
            bar.update(1)

    return report


def _train(state: _TrainRun):
    """``(params, history)`` from ``fit``, or the exit status of a run stopped by a signal or an error."""
    from jax_softmax._run_dir import RunWriteError
    from jax_softmax.nonfinite import NonFiniteError
    from jax_softmax.train import fit

    run, start_epoch = state.run, state.done
    bar = _progress_bar(state.args.epochs - start_epoch, state.progress)
    try:
        return fit(
            state.data.train,
            state.data.validation,
            state.config,
            params=None if run is None else run.params,
            opt_state=None if run is None else run.opt_state,
            start_epoch=start_epoch,
            checkpoint_callback=_epoch_reporter(state, bar),
            uint8_pixels=True,
        )
    except KeyboardInterrupt as e:  # SIGINT or SIGTERM (jax_softmax._resume.Interrupted)
        import signal

        signum = getattr(e, "signum", signal.SIGINT)
        print(_interrupted_line(state.args.epochs, state.done, state.out_dir, signum), file=sys.stderr)
        state.args.interrupt_reported = True
        return 128 + signum
    except RunWriteError as e:
        raise WriteError(str(e)) from None
    except NonFiniteError as e:
        print(f"{PROG} train: error: {e}{_kept_after_raise(state)}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()


def _kept_after_raise(state: _TrainRun) -> str:
    if state.out_dir is None:
        return ""
    if state.done == 0:
        return f"; nothing saved in {state.out_dir} (--on-nonfinite raise)"
    return f"; {state.out_dir} keeps epoch {state.done}, the last completed (--on-nonfinite raise)"


def _finish_training(state: _TrainRun, params, history) -> int:
    """Evaluates on the test set, writes what ``--out`` keeps, warns, and prints the result."""
    from jax_softmax.train import evaluate_pixels

    test = tuple(float(v) for v in evaluate_pixels(params, state.data.test.x, state.data.test.y))
    all_epochs = ([] if state.run is None else state.run.metrics) + history.epochs
    written = _save_outputs(state, params, history.stopped, all_epochs) if state.out_dir is not None else []
    if history.stopped is not None:
        where = "" if state.out_dir is None else f", saved in {state.out_dir / 'params.npz'}"
        print(f"{PROG} train: {history.stopped.message()}{where}", file=sys.stderr)
    else:
        _warn_if_not_learning(state, params, all_epochs)
    if state.args.json:
        print(json.dumps(_train_json(state, test, history, all_epochs, written)))
    else:
        _print_train_result(state, test, history, written)
    return 0 if history.stopped is None else 1


def _save_outputs(state: _TrainRun, params, stop, all_epochs) -> list:
    """The stopped run's last finite parameters, and the plots; returns the files written."""
    from jax_softmax._run_dir import METRICS_FILE, PARAMS_FILE, run_metadata, write_plots
    from jax_softmax.data import to_features

    out_dir, done = state.out_dir, state.done
    if stop is not None:
        from jax_softmax.checkpoint import save_params

        metadata = run_metadata(state.config.recorded(), state.data)
        try:
            save_params(out_dir / PARAMS_FILE, params, {**metadata, "epoch": done, "stopped": stop.to_json()})
        except OSError as e:
            raise WriteError(
                f"could not write {out_dir / PARAMS_FILE} ({e.strerror or e}): the last finite "
                f"parameters are not saved; {out_dir} holds epoch {done}"
            ) from None
    written = [path for path in (out_dir / METRICS_FILE, out_dir / PARAMS_FILE) if path.exists()]
    try:
        test = state.data.test._replace(x=to_features(state.data.test.x))
        written += write_plots(out_dir, all_epochs, params, test) if all_epochs else []
    except ImportError as e:
        print(f"{PROG} train: plots not written: {e}", file=sys.stderr)
    except OSError as e:
        raise WriteError(
            f"could not write the plots{' ' + e.filename if e.filename else ''} in {out_dir} "
            f"({e.strerror or e}); the run itself is saved there (epoch {done})"
        ) from None
    return written


def _warn_if_not_learning(state: _TrainRun, params, all_epochs) -> None:
    from jax_softmax.nonfinite import learning_warnings

    config = state.config
    for warning in learning_warnings(
        [m.train_loss for m in all_epochs],
        all_epochs[-1].val_accuracy if all_epochs else float("nan"),
        lr=config.lr,
        l2=config.l2,
        init_scale=config.init_scale,
        num_classes=int(params.w.shape[1]),
    ):
        print(f"{PROG} train: warning: {warning}", file=sys.stderr)


def _train_json(state: _TrainRun, test: tuple, history, all_epochs, written) -> dict:
    import jax

    last = all_epochs[-1] if all_epochs else None
    result = {
        "test_accuracy": test[1],
        "test_loss": test[0],
        "val_accuracy": None if last is None else last.val_accuracy,
        "val_loss": None if last is None else last.val_loss,
        "compile_seconds": history.compile_seconds,
        "train_seconds": sum(m.seconds for m in history.epochs),
        **{name: getattr(state.config, name) for name in TRAIN_FLAGS if name != "epochs"},
        "device": str(jax.devices()[0]),
        "devices": state.devices,
        "processes": jax.process_count(),
        "epochs": [dataclasses.asdict(m) for m in all_epochs],
    }
    if state.run is not None:
        result["resumed_after_epoch"] = state.run.epoch
    if history.stopped is not None:
        result["stopped"] = history.stopped.to_json()
    if state.out_dir is not None:
        result["out"] = {"dir": str(state.out_dir), "files": [str(path) for path in written]}
    return result


def _print_train_result(state: _TrainRun, test: tuple, history, written) -> None:
    import jax

    devices = f", {state.devices} devices" if state.devices > 1 else ""
    print(
        f"test accuracy {100 * test[1]:.2f}%  test loss {format_loss(test[0])}  "
        f"(compile {history.compile_seconds:.2f} s, {state.config.grad} gradient, "
        f"{jax.devices()[0].platform}{devices})"
    )
    if state.out_dir is not None:
        print(f"wrote {', '.join(path.name for path in written)} to {state.out_dir}")


def _load_checkpoint(path: str):
    """Loads a checkpoint for evaluate and predict, switching on 64-bit JAX if it needs it."""
    from jax_softmax._run_dir import check_pixel_scaling
    from jax_softmax.checkpoint import load_params, read_checkpoint

    if not os.path.exists(path):
        raise CommandError(
            f"--params {path}: no such file; pass the checkpoint params.npz that "
            f"'{PROG} train --out DIR' writes in DIR"
        )
    w, _, _ = read_checkpoint(path)
    enable_dtype(w.dtype.name)
    checkpoint = load_params(path)
    check_pixel_scaling(checkpoint.metadata, path)
    return checkpoint


def _add_checkpoint_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params",
        required=True,
        metavar="FILE",
        help="checkpoint written by 'train --out DIR': DIR/params.npz",
    )


def _add_evaluate(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="measure a saved model on MNIST",
        description="Accuracy, mean negative log-likelihood, per-class precision and recall, "
        "and the confusion matrix of a saved model on an MNIST split.",
    )
    _add_checkpoint_flag(p)
    p.add_argument(
        "--split", choices=("test", "validation", "train"), default="test", help="which split (default test)"
    )
    add_data_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")
    p.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from jax_softmax.data import NUM_FEATURES, load_mnist
    from jax_softmax.evaluation import classification_report, format_report

    checkpoint = _load_checkpoint(args.params)
    if checkpoint.params.w.shape[0] != NUM_FEATURES:
        raise CommandError(
            f"{args.params}: the model takes {checkpoint.params.w.shape[0]} features, "
            f"MNIST images have {NUM_FEATURES}"
        )
    split = getattr(load_mnist(args.data_dir), args.split)
    report = classification_report(checkpoint.params, split.x, split.y)
    if args.json:
        print(json.dumps({"params": args.params, "split": args.split, **report.to_json()}))
    else:
        print(f"{args.params} on the MNIST {args.split} set")
        print(format_report(report))
    return 0


def _add_predict(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="classify your own digit images",
        description="Classify images of handwritten digits (PNG or JPEG, any size, colour or grey, "
        "dark on light or light on dark), prepared the way MNIST was: cropped to the digit, "
        "scaled to fit 20x20, centred by centre of mass in 28x28. A .npy file of shape [784] "
        "or [n, 784] with values in [0, 1] is classified as it is.",
    )
    _add_checkpoint_flag(p)
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files, or .npy arrays of inputs")
    p.add_argument(
        "--invert",
        choices=("auto", "yes", "no"),
        default="auto",
        help="invert the grey levels: auto does it when the background is light (default auto)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")
    p.set_defaults(run=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from jax_softmax.evaluation import class_probabilities
    from jax_softmax.images import input_names, load_inputs

    checkpoint = _load_checkpoint(args.params)
    invert = {"auto": "auto", "yes": True, "no": False}[args.invert]
    # Each file on its own: one that cannot be read is reported, the others classified.
    names, rows, errors = [], [], []
    for path in args.inputs:
        try:
            x = load_inputs(path, num_features=checkpoint.params.w.shape[0], invert=invert)
        except (ValueError, TypeError, OSError) as e:
            message = str(e) if str(e).startswith(f"{path}:") else f"{path}: {e}"
            errors.append({"input": path, "error": message})
            continue
        names += input_names(path, len(x))
        rows.append(x)
    if rows:
        x = np.concatenate(rows)
        probabilities = np.asarray(class_probabilities(checkpoint.params, x), np.float64)
    else:
        probabilities = np.zeros((0, checkpoint.params.w.shape[1]))
    digits = probabilities.argmax(axis=1)
    if args.json:
        predictions = [
            {"input": name, "digit": int(digit), "probabilities": p.tolist()}
            for name, digit, p in zip(names, digits, probabilities, strict=True)
        ]
        result = {"params": args.params, "predictions": predictions}
        if errors:
            result["errors"] = errors
        print(json.dumps(result))
    else:
        for name, digit, p in zip(names, digits, probabilities, strict=True):
            top = np.argsort(-p, kind="stable")[:3]
            print(f"{name}: {digit}  ({', '.join(f'{k}: {100 * p[k]:.2f}%' for k in top)})")
    for error in errors:
        print(f"{PROG} predict: error: {error['error']}", file=sys.stderr)
    if errors and rows:
        print(
            f"{PROG} predict: {len(errors)} of {len(args.inputs)} files could not be classified",
            file=sys.stderr,
        )
    return 2 if errors else 0


def _add_diagnose(subparsers) -> None:
    from jax_softmax.diagnose import DTYPES, DiagnoseConfig

    defaults = DiagnoseConfig()
    p = subparsers.add_parser(
        "diagnose",
        help="reproduce the question's collapse and name its cause",
        description="Train the question's hand-written softmax regression (batch 200, learning rate "
        "0.1) on MNIST as written, with each of its three fixes alone (update sign, pixel scale, "
        "log-softmax) and with all three, and with the sign fixed and a max-shifted softmax "
        "(exp(z - max z) / sum, then log): the question's zero probabilities. Report for each run "
        "whether and when it collapsed, and why.",
    )
    p.add_argument("--all", action="store_true", help="run every combination of the four switches")
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        help="dtype of the runs (default float64, the question's double; with --all, both)",
    )
    p.add_argument(
        "--epochs", type=positive_int, default=defaults.epochs, help=f"passes (default {defaults.epochs})"
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=defaults.batch_size, help="examples per step (default 200)"
    )
    p.add_argument("--lr", type=positive_float, default=defaults.lr, help="learning rate (default 0.1)")
    p.add_argument(
        "--init-scale",
        type=non_negative_float,
        default=defaults.init_scale,
        help="std of the initial weights (default 0: zeros)",
    )
    p.add_argument(
        "--seed", type=seed_int, default=defaults.seed, help="seed for initialisation and order, 0 to 2**32-1"
    )
    p.add_argument(
        "--log-every",
        type=positive_int,
        default=defaults.log_every,
        help=f"measure validation accuracy every N steps (default {defaults.log_every})",
    )
    add_data_flags(p)
    p.add_argument("--log", action="store_true", help="print each run's logged steps before the table")
    p.add_argument("--plot", metavar="FILE.png", help="draw log-likelihood and accuracy against step")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")
    p.set_defaults(run=run_diagnose)


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


def run_diagnose(args: argparse.Namespace) -> int:

    from jax_softmax.diagnose import DiagnoseConfig, all_variants, default_variants

    check_plot_path(args.plot)
    if args.all:
        variants = all_variants((args.dtype,)) if args.dtype else all_variants()
    else:
        variants = default_variants(args.dtype or "float64")
    if any(v.dtype == "float64" for v in variants):
        enable_dtype("float64")
    import time

    import jax

    from jax_softmax.data import load_mnist_uint8
    from jax_softmax.diagnose import diagnose_variant, format_diagnosis, format_diagnosis_log, plot_diagnosis

    config = DiagnoseConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        init_scale=args.init_scale,
        seed=args.seed,
        log_every=args.log_every,
    )
    data = load_mnist_uint8(args.data_dir)
    if args.batch_size > len(data.train.x):
        raise CommandError(
            f"--batch-size {args.batch_size} is larger than the training set ({len(data.train.x)} examples)"
        )
    start = time.perf_counter()
    diagnoses = []
    for variant in variants:
        d = diagnose_variant(variant, data.train, data.validation, config)
        diagnoses.append(d)
        verdict = d.verdict.cause or "no collapse"
        at = f" at step {d.verdict.collapse_step}" if d.verdict.collapse_step is not None else ""
        print(f"{variant.name}: {verdict}{at} ({d.seconds:.1f} s)", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    if args.plot is not None:
        plot_diagnosis(diagnoses, args.plot)
    if args.json:
        print(json.dumps({"runs": [d.to_json() for d in diagnoses]}))
        return 0
    if args.log:
        for d in diagnoses:
            print(format_diagnosis_log(d) + "\n")
    print(format_diagnosis(diagnoses))
    print(
        f"{len(diagnoses)} runs of {config.epochs} epochs (batch {config.batch_size}, learning rate "
        f"{config.lr:g}) in {seconds:.1f} s on {jax.devices()[0].platform}, compilation included"
        + (f"; plot written to {args.plot}" if args.plot else "")
    )
    return 0


def _add_check_grad(subparsers) -> None:
    from jax_softmax.gradient_check import BATCH_SIZES

    p = subparsers.add_parser(
        "check-grad",
        help="check a hand-written gradient of the loss against jax.grad",
        description="Check FUNCTION(w, b, x, y) -> (dw, db), the gradient of the mean negative "
        "log-likelihood of softmax regression, against jax.grad in float64. FILE.py is imported and "
        "run like any Python module (its top-level code runs, its __main__ block does not); FUNCTION "
        "gets NumPy arrays: w float64 [784, 10], b [10], x [n, 784] in [0, 1], y int [n], and may "
        "return NumPy or JAX arrays in any floating dtype (the tolerance follows it). It is called at "
        f"batch sizes {', '.join(map(str, BATCH_SIZES))}, with zero weights and with weights that make "
        "the probabilities far from uniform. The verdict: correct, negated, scaled, transposed, bias "
        "(dw right, db wrong or missing) or wrong. Exit status 0 for correct, 1 for any other verdict, "
        "2 when the function cannot be checked.",
    )
    p.add_argument("target", metavar="FILE.py:FUNCTION", help="the file and the function in it")
    p.add_argument(
        "--data-dir",
        default=os.environ.get(DATA_DIR_ENV),
        help=f"directory with the four MNIST IDX files: batches of real images (default: ${DATA_DIR_ENV}; "
        "without either, random inputs)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the batches and the random weights")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")
    p.set_defaults(run=run_check_grad)


def run_check_grad(args: argparse.Namespace) -> int:
    import contextlib

    from jax_softmax.gradient_check import check_gradient, format_gradient_check, load_function

    x = y = None
    if args.data_dir:
        from jax_softmax.data import load_mnist_uint8

        train = load_mnist_uint8(args.data_dir).train
        x, y = train.x, train.y  # uint8 pixels: check_gradient divides the batches it draws by 255
    # The function's own prints go to stderr, so that stdout holds the result alone.
    with contextlib.redirect_stdout(sys.stderr):
        fn, name = load_function(args.target)
        check = check_gradient(fn, x, y, seed=args.seed, name=name)
    if args.json:
        print(json.dumps(check.to_json()))
    else:
        print(format_gradient_check(check, "MNIST" if args.data_dir else None))
    return 0 if check.correct else 1


def _grid_flag(name: str, *, positive: bool):
    """An argparse type for a grid of numbers: ``0.01,0.1,1`` or log-spaced ``START:STOP:NUM``."""
    from jax_softmax.sweep import parse_grid

    def grid(text: str) -> tuple[float, ...]:
        try:
            return parse_grid(text, name, positive=positive)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    grid.__name__ = "grid"
    return grid


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(positive_int(item) for item in text.split(","))
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"must be integers >= 1 separated by commas, got {text}") from None
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"must not repeat a value, got {text}")
    return values


def _add_sweep(subparsers) -> None:
    from jax_softmax.sweep import (
        DEFAULT_SWEEP_BATCH_SIZES,
        DEFAULT_SWEEP_L2S,
        DEFAULT_SWEEP_LRS,
        DEFAULT_SWEEP_SEEDS,
    )

    def show(values) -> str:
        return ",".join(f"{v:g}" for v in values)

    p = subparsers.add_parser(
        "sweep",
        help="train a grid of learning rates, L2 strengths and seeds at once",
        description="Train every combination of the learning rates, L2 strengths and seeds in one "
        "compiled program (jax.vmap; each batch size is its own program), choose the best model by "
        "validation accuracy (or loss) and report its test accuracy. A grid is a comma-separated "
        "list of numbers and log-spaced ranges START:STOP:NUM, e.g. --lr 1e-3:1:4 for 0.001,0.01,0.1,1.",
    )
    p.add_argument(
        "--lr",
        type=_grid_flag("--lr", positive=True),
        default=DEFAULT_SWEEP_LRS,
        help=f"learning rates (default {show(DEFAULT_SWEEP_LRS)})",
    )
    p.add_argument(
        "--l2",
        type=_grid_flag("--l2", positive=False),
        default=DEFAULT_SWEEP_L2S,
        help=f"L2 penalties on the weights (default {show(DEFAULT_SWEEP_L2S)})",
    )
    p.add_argument(
        "--seeds",
        type=positive_int,
        default=len(DEFAULT_SWEEP_SEEDS),
        help="number of seeds, 0 to N-1, each seeding initialisation and order (default 1)",
    )
    p.add_argument(
        "--batch-size",
        type=_int_list,
        default=DEFAULT_SWEEP_BATCH_SIZES,
        help=f"batch sizes, each its own program (default {show(DEFAULT_SWEEP_BATCH_SIZES)})",
    )
    _add_sweep_training_flags(p)
    add_data_flags(p)
    p.add_argument("--plot", metavar="FILE.png", help="draw validation accuracy against learning rate")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")
    p.set_defaults(run=run_sweep)


def _add_sweep_training_flags(p: argparse.ArgumentParser) -> None:
    """The flags every member of a sweep shares: epochs, optimizer, gradient, start, selection."""
    from jax_softmax.config import DEFAULT_INIT_SCALE, GRAD_MODES, OPTIMIZER_NAMES
    from jax_softmax.sweep import DEFAULT_SWEEP_EPOCHS, DEFAULT_SWEEP_OPTIMIZER, SELECT_BY

    p.add_argument(
        "--epochs",
        type=positive_int,
        default=DEFAULT_SWEEP_EPOCHS,
        help=f"passes over the training set (default {DEFAULT_SWEEP_EPOCHS})",
    )
    p.add_argument(
        "--optimizer",
        choices=OPTIMIZER_NAMES,
        default=DEFAULT_SWEEP_OPTIMIZER,
        help=f"optimizer (default {DEFAULT_SWEEP_OPTIMIZER})",
    )
    p.add_argument("--grad", choices=GRAD_MODES, default="autodiff", help="gradient (default autodiff)")
    p.add_argument(
        "--init-scale",
        type=non_negative_float,
        default=DEFAULT_INIT_SCALE,
        help=f"std of the initial weights (default {DEFAULT_INIT_SCALE})",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float32",
        help="dtype of the parameters and arithmetic",
    )
    p.add_argument(
        "--select",
        choices=SELECT_BY,
        default="accuracy",
        help="choose by validation accuracy or validation loss (default accuracy)",
    )


def run_sweep(args: argparse.Namespace) -> int:

    check_plot_path(args.plot)
    enable_dtype(args.dtype)

    from jax_softmax.data import load_mnist
    from jax_softmax.sweep import sweep

    progress = sys.stderr if args.json else sys.stdout
    data = load_mnist(args.data_dir)
    too_large = [b for b in args.batch_size if b > len(data.train.x)]
    if too_large:
        raise CommandError(
            f"--batch-size {too_large[0]} is larger than the training set ({len(data.train.x)} examples)"
        )
    models = len(args.lr) * len(args.l2) * args.seeds

    def report(batch_size: int, epoch: int, seconds: float) -> None:
        print(
            f"batch {batch_size}: epoch {epoch:3d}/{args.epochs}, {models} models  {seconds:.3f} s",
            file=progress,
            flush=True,
        )

    result = sweep(
        data.train,
        data.validation,
        data.test,
        lrs=args.lr,
        l2s=args.l2,
        seeds=range(args.seeds),
        batch_sizes=args.batch_size,
        epochs=args.epochs,
        grad=args.grad,
        optimizer=args.optimizer,
        init_scale=args.init_scale,
        dtype=args.dtype,
        select=args.select,
        callback=report,
    )
    if args.plot is not None:
        from jax_softmax.plots import save_figure
        from jax_softmax.sweep import plot_sweep

        save_figure(plot_sweep(result), args.plot)
    _print_sweep_result(args, result)
    if result.best is None:
        print(f"{PROG} sweep: every model diverged; try smaller learning rates", file=sys.stderr)
        return 1
    return 0


def _print_sweep_result(args: argparse.Namespace, result) -> None:
    import jax

    from jax_softmax.sweep import format_sweep

    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(format_sweep(result))
        best = result.best
        if best is not None:
            print(
                f"chosen by validation {args.select}: lr {best.lr:g}, l2 {best.l2:g}, seed {best.seed}, "
                f"batch {best.batch_size}; test accuracy {100 * best.test_accuracy:.2f}%"
            )
        print(
            f"{len(result.runs)} models ({args.optimizer}, {args.epochs} epochs) in {result.seconds:.1f} s, "
            f"compilation {result.compile_seconds:.1f} s, on {jax.devices()[0].platform}"
            + (f"; plot written to {args.plot}" if args.plot else "")
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Softmax regression on MNIST in JAX.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(subparsers)
    _add_evaluate(subparsers)
    _add_predict(subparsers)
    _add_diagnose(subparsers)
    _add_check_grad(subparsers)
    _add_sweep(subparsers)
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
    package = Path(__file__).resolve().parent
    return Path(frame.tb_frame.f_code.co_filename).resolve().is_relative_to(package)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (see :data:`EXIT_STATUS`).

    While it runs, SIGINT and SIGTERM raise :class:`jax_softmax._resume.Interrupted`:
    ``train --out`` saves its last completed epoch, every command prints one line and
    returns ``128 + signal``. The previous handlers are restored on return.
    """
    import signal
    import threading

    from jax_softmax._resume import STOP_SIGNALS, check_interrupted, raise_on_stop_signals

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS} if in_main_thread else {}
    received = raise_on_stop_signals() if in_main_thread else []
    previous_hook = sys.unraisablehook

    def quiet_interrupts(unraisable) -> None:
        # A signal's exception raised inside a garbage-collection callback is printed and
        # dropped by Python ("Exception ignored in ..."). It is recorded in `received`,
        # and acted on at the next check: print nothing here.
        if not (isinstance(unraisable.exc_value, KeyboardInterrupt) and received):
            previous_hook(unraisable)

    sys.unraisablehook = quiet_interrupts
    on_exit: list = []
    command = PROG
    try:
        args = parse_arguments(argv)
        command = f"{PROG} {args.command}"
        args.argv = list(sys.argv[1:] if argv is None else argv)
        args.signals, args.on_exit, args.interrupt_reported = received, on_exit, False
        status = args.run(args)
        if not args.interrupt_reported:
            check_interrupted(received)  # never finish as if a signal had not come
        return status
    except WriteError as e:
        print(f"{command}: error: {e}", file=sys.stderr)
        return 3
    except (CommandError, DataNotFoundError, OSError) as e:
        print(f"{command}: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as e:
        if not _raised_by_the_package(e):
            raise  # a bug, not bad input: the traceback is what is needed
        print(f"{command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"{command}: {_stopped_by(signum)}", file=sys.stderr)
        return 128 + signum
    finally:
        sys.unraisablehook = previous_hook
        for release in on_exit:
            release()
        try:
            sys.stdout.flush()  # before a signal in the shutdown can end the process unflushed
        except (OSError, ValueError):
            pass
        for signum, handler in previous.items():
            if handler is not None:
                signal.signal(signum, handler)


def main_entry() -> None:
    """Console-script entry point."""
    from jax_softmax._startup import exit_on_stop_signals

    # A signal after main has returned (the interpreter's exit takes a moment) ends
    # the process with one line; main keeps it in place for that.
    exit_on_stop_signals("shutting down")
    try:
        status = main()
    except KeyboardInterrupt as e:  # arrived while main was reporting an error
        import signal

        status = 128 + getattr(e, "signum", signal.SIGINT)
        print(f"{PROG}: {_stopped_by(status - 128)}", file=sys.stderr)
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
    sys.exit(status)
