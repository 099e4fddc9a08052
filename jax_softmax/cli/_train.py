"""``jax-softmax train``: its flags into a :class:`jax_softmax.TrainConfig`, the run
directory, resuming, and the result."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence

from jax_softmax.cli._common import (
    EXIT_STATUS_HELP,
    PROG,
    CommandError,
    Parser,
    WriteError,
    add_cache_flags,
    add_data_flags,
    add_deskew_flag,
    add_device_flags,
    data_cache,
    enable_cache,
    in_background,
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
    add_deskew_flag(p)
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

    def show(name: str, value) -> str:
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):  # a switch: named when on
            return flag if value else ""
        return f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}"

    return " ".join(filter(None, (show(name, flags[name]) for name in names if name in flags)))


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


def _check_resume_flags(args: argparse.Namespace) -> None:
    """``--resume DIR`` continues the run in DIR: it neither overwrites it nor writes elsewhere."""
    from pathlib import Path

    if args.overwrite:
        raise CommandError("--resume continues the run in DIR and --overwrite would delete it; leave one out")
    if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
        raise CommandError(
            f"--resume {args.resume} writes to {args.resume}, not to --out {args.out}; leave --out out"
        )


def _interrupted_line(stop) -> str:
    """What a run stopped by a signal keeps: ``stop`` is a :class:`jax_softmax.runs.RunInterrupted`."""
    stopped = stopped_by(stop.signum)
    epochs, done, out_dir = stop.epochs, stop.saved, stop.out_dir
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


def _kept_after_raise(error) -> str:
    if error.out_dir is None:
        return ""
    if error.saved == 0:
        return f"; nothing saved in {error.out_dir} (--on-nonfinite raise)"
    return f"; {error.out_dir} keeps epoch {error.saved}, the last completed (--on-nonfinite raise)"


def prefetch_data(args: argparse.Namespace) -> None:
    """Starts reading MNIST from ``--data-dir`` in a thread: before JAX is imported, so that the two overlap.

    Decoding the gzip files, on a first run, takes about half a second, most of it in
    zlib, which leaves the interpreter free to import JAX meanwhile.
    """
    args.prefetched = None
    if args.data_dir is not None and not args.deskew:  # a download waits until it is needed
        from jax_softmax.data import load_mnist_uint8

        args.prefetched = in_background(load_mnist_uint8, args.data_dir, **data_cache(args))


def _data(args: argparse.Namespace, deskew: bool):
    """MNIST with uint8 pixels, memory-mapped from the cache: the prefetched copy, or read now."""
    from jax_softmax.data import load_mnist_uint8

    if args.prefetched is not None and not deskew:
        return args.prefetched.result()
    return load_mnist_uint8(args.data_dir, deskew=deskew, **data_cache(args))


def run_train(args: argparse.Namespace) -> int:
    """Flags -> one :class:`jax_softmax.TrainConfig` -> :func:`jax_softmax.runs.train_run` -> the result."""
    from jax_softmax.runs import RunExistsError, RunInterrupted, RunInUseError, RunWriteError, train_run
    from jax_softmax.train import NonFiniteError

    if args.resume is not None:
        _check_resume_flags(args)
    enable_cache(args)
    devices = start_devices(args)
    config = _train_config(args, devices)
    progress = _Printer(sys.stderr if args.json else sys.stdout, args.resume)
    try:
        result = train_run(
            config,
            lambda deskew: _data(args, deskew),
            args.resume or args.out,
            resume=args.resume is not None,
            overwrite=args.overwrite,
            given=_given_train_flags(args.argv),
            progress=progress,
            received=args.signals,
            on_exit=args.on_exit,
        )
    except RunInterrupted as stop:
        print(_interrupted_line(stop), file=sys.stderr)
        args.interrupt_reported = True
        return stop.exit_status
    except NonFiniteError as e:
        print(f"{PROG} train: error: {e}{_kept_after_raise(e)}", file=sys.stderr)
        return 1
    except RunWriteError as e:
        raise WriteError(str(e)) from None
    except RunExistsError as e:
        raise CommandError(f"--out {e}; pass --overwrite to replace it") from None
    except RunInUseError as e:
        raise CommandError(str(e)) from None
    except NotADirectoryError as e:
        raise CommandError(f"--out {e}") from None
    return _report(args, result, devices)


class _Printer:
    """Shows a run as it goes: its messages, then a line (or a tqdm bar on a terminal) per epoch."""

    def __init__(self, stream, resume: str | None):
        self.stream, self.resume, self.bar = stream, resume, None

    def message(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def repaired(self, text: str) -> None:
        print(f"{PROG} train: {text}", file=self.stream, flush=True)

    def start(self, config, start_epoch: int) -> None:
        if start_epoch:
            print(
                f"resuming the run in {self.resume} after epoch {start_epoch}: epochs {start_epoch + 1} to "
                f"{config.epochs} with {describe_flags(config.recorded(), TRAIN_FLAGS[1:])}",
                file=self.stream,
                flush=True,
            )
        self.bar = _progress_bar(config.epochs - start_epoch, self.stream)

    def epoch(self, metrics, config) -> None:
        if self.bar is None:
            print(_epoch_line(metrics, config.epochs), file=self.stream, flush=True)
        else:
            self.bar.write(_epoch_line(metrics, config.epochs), file=self.stream)
            self.bar.set_postfix_str(f"val acc {100 * metrics.val_accuracy:.2f}%", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _report(args: argparse.Namespace, result, devices: int) -> int:
    """Prints the result (one JSON object with ``--json``) and its warnings; the exit status."""
    if result.plots_error is not None:
        print(f"{PROG} train: plots not written: {result.plots_error}", file=sys.stderr)
    stopped = result.history.stopped
    if stopped is not None:
        where = "" if result.out_dir is None else f", saved in {result.out_dir / 'params.npz'}"
        print(f"{PROG} train: {stopped.message()}{where}", file=sys.stderr)
    for warning in result.warnings:
        print(f"{PROG} train: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(_train_json(result, devices)))
    else:
        _print_train_result(result, devices)
    return 0 if stopped is None else 1


def _train_json(result, devices: int) -> dict:
    import jax

    last = result.epochs[-1] if result.epochs else None
    history = result.history
    out = {
        "test_accuracy": result.test[1],
        "test_loss": result.test[0],
        "val_accuracy": None if last is None else last.val_accuracy,
        "val_loss": None if last is None else last.val_loss,
        "compile_seconds": history.compile_seconds,
        "train_seconds": sum(m.seconds for m in history.epochs),
        **{name: getattr(result.config, name) for name in TRAIN_FLAGS if name != "epochs"},
        "device": str(jax.devices()[0]),
        "devices": devices,
        "processes": jax.process_count(),
        "epochs": [dataclasses.asdict(m) for m in result.epochs],
    }
    if result.resumed_after is not None:
        out["resumed_after_epoch"] = result.resumed_after
    if history.stopped is not None:
        out["stopped"] = history.stopped.to_json()
    if result.out_dir is not None:
        out["out"] = {"dir": str(result.out_dir), "files": [str(path) for path in result.written]}
    return out


def _print_train_result(result, devices: int) -> None:
    import jax

    more = f", {devices} devices" if devices > 1 else ""
    print(
        f"test accuracy {100 * result.test[1]:.2f}%  test loss {format_loss(result.test[0])}  "
        f"(compile {result.history.compile_seconds:.2f} s, {result.config.grad} gradient, "
        f"{jax.devices()[0].platform}{more})"
    )
    if result.out_dir is not None:
        print(f"wrote {', '.join(path.name for path in result.written)} to {result.out_dir}")
