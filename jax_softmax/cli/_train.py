"""``jax-softmax train``: its flags into a :class:`jax_softmax.TrainConfig`, the run
directory, resuming, and the result."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any

from jax_softmax.cli._common import (
    EXIT_STATUS_HELP,
    PROG,
    CommandError,
    Parser,
    WriteError,
    add_cache_flags,
    add_data_flags,
    add_device_flags,
    data_cache,
    enable_cache,
    enable_dtype,
    in_background,
    lock_out_dir,
    non_negative_float,
    positive_float,
    positive_int,
    seed_int,
    start_devices,
    stopped_by,
)
from jax_softmax.config import RECORDED as TRAIN_FLAGS


def add_train_command(subparsers) -> None:
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
    p.set_defaults(run=run_train, prefetch=prefetch_data)


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
    parser = Parser(prog=PROG)
    subparsers = parser.add_subparsers(dest="command", parser_class=Parser)
    add_train_command(subparsers)
    unset = object()
    subparsers.choices["train"].set_defaults(**dict.fromkeys(TRAIN_FLAGS, unset))
    parsed = vars(parser.parse_args(argv))
    return {name for name in TRAIN_FLAGS if parsed.get(name, unset) is not unset}


def _read_resumed_run(args: argparse.Namespace) -> dict:
    """Takes the training flags of the run in ``--resume DIR`` into ``args``; returns its metadata."""
    from pathlib import Path

    from jax_softmax.runs import merge_flags, read_run_metadata

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


def _interrupted_line(epochs: int, done: int, out_dir, signum: int) -> str:
    stopped = stopped_by(signum)
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
    from jax_softmax.runs import remove_temp_files

    lock_out_dir(args, "trained")
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


def prefetch_data(args: argparse.Namespace) -> None:
    """Starts reading MNIST from ``--data-dir`` in a thread: before JAX is imported, so that the two overlap.

    Decoding the gzip files, on a first run, takes about half a second, most of it in
    zlib, which leaves the interpreter free to import JAX meanwhile. The result, or
    the error, is taken where the data is needed (:func:`_start_training`).
    """
    args.prefetched = None
    if args.data_dir is not None:  # a download (no directory) waits until it is needed
        from jax_softmax.data import load_mnist_uint8

        args.prefetched = in_background(load_mnist_uint8, args.data_dir, **data_cache(args))


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

    from jax_softmax._process import check_interrupted
    from jax_softmax.data import load_mnist_uint8
    from jax_softmax.runs import read_run_metadata

    if args.out is not None and jax.process_index() > 0:
        args.out = None  # process 0 writes the run directory
    progress = sys.stderr if args.json else sys.stdout
    if args.out is not None:
        _lock_out_dir(args, progress)
        if resumed is not None and read_run_metadata(args.resume)["epoch"] != resumed["epoch"]:
            raise CommandError(f"--resume {args.resume}: the run there moved on while starting; run again")
    # The pixels stay uint8, memory-mapped from the cache, and are scaled on the device.
    prefetched = args.prefetched  # set by prefetch_data
    data = load_mnist_uint8(args.data_dir, **data_cache(args)) if prefetched is None else prefetched.result()
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
    from jax_softmax.runs import check_same_data, load_run

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

    from jax_softmax.runs import RunExistsError, epoch_writer, run_metadata, start_run

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
    from jax_softmax._process import check_interrupted, interrupts_deferred

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
    from jax_softmax.runs import RunWriteError
    from jax_softmax.train import fit
    from jax_softmax.train.nonfinite import NonFiniteError

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
    except KeyboardInterrupt as e:  # SIGINT or SIGTERM (jax_softmax._process.Interrupted)
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
    import jax

    from jax_softmax.train import evaluation_program

    x, y = jax.device_put((state.data.test.x, state.data.test.y))
    test = tuple(float(v) for v in evaluation_program(params, x, y, uint8_pixels=True)(params, x, y))
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
    from jax_softmax.data import to_features
    from jax_softmax.runs import METRICS_FILE, PARAMS_FILE, run_metadata, write_plots

    out_dir, done = state.out_dir, state.done
    if stop is not None:
        from jax_softmax.runs.checkpoint import save_params

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
    from jax_softmax.train.nonfinite import learning_warnings

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
