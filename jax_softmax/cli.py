"""The ``jax-softmax`` command line: parses flags, calls the library, prints."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence

from jax_softmax.data import DATA_DIR_ENV, DataNotFoundError

PROG = "jax-softmax"


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2."""

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


for _fn, _name in ((positive_int, "integer"), (positive_float, "number"), (non_negative_float, "number")):
    _fn.__name__ = _name  # argparse names the type in its "invalid ... value" message


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=os.environ.get(DATA_DIR_ENV),
        help=f"directory with the four MNIST IDX files (default: ${DATA_DIR_ENV}, "
        "else tensorflow-datasets downloads MNIST)",
    )


def enable_dtype(name: str) -> None:
    """Switches on 64-bit JAX when float64 is asked for; call before any array exists."""
    if name == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)


def _add_train(subparsers) -> None:
    from jax_softmax.gradients import GRAD_MODES, OPTIMIZERS
    from jax_softmax.train import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_INIT_SCALE, DEFAULT_LR

    p = subparsers.add_parser(
        "train",
        help="train softmax regression on MNIST",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train softmax regression on MNIST with mini-batch gradient descent "
        "and report the test accuracy.",
    )
    p.add_argument("--epochs", type=positive_int, default=DEFAULT_EPOCHS, help="passes over the training set")
    p.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, help="examples per step")
    p.add_argument("--lr", type=positive_float, default=DEFAULT_LR, help="learning rate")
    p.add_argument(
        "--grad", choices=GRAD_MODES, default="autodiff", help="gradient: jax.grad or the closed form"
    )
    p.add_argument("--optimizer", choices=("sgd", *OPTIMIZERS), default="sgd", help="optimizer (default sgd)")
    p.add_argument("--l2", type=non_negative_float, default=0.0, help="L2 penalty on the weights (default 0)")
    p.add_argument(
        "--init-scale", type=non_negative_float, default=DEFAULT_INIT_SCALE, help="std of the initial weights"
    )
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation and shuffling")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    add_data_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    enable_dtype(args.dtype)
    import jax

    from jax_softmax.data import load_mnist
    from jax_softmax.train import evaluate, fit

    progress = sys.stderr if args.json else sys.stdout
    data = load_mnist(args.data_dir)
    if args.batch_size > len(data.train.x):
        raise CommandError(
            f"--batch-size {args.batch_size} is larger than the training set ({len(data.train.x)} examples)"
        )

    def report(metrics, params) -> None:
        print(
            f"epoch {metrics.epoch:3d}/{args.epochs}  train loss {metrics.train_loss:.4f}  "
            f"val loss {metrics.val_loss:.4f}  val acc {100 * metrics.val_accuracy:6.2f}%  "
            f"{metrics.seconds:.3f} s",
            file=progress,
            flush=True,
        )

    params, history = fit(
        data.train,
        data.validation,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        grad=args.grad,
        optimizer=args.optimizer,
        l2=args.l2,
        init_scale=args.init_scale,
        seed=args.seed,
        dtype=args.dtype,
        callback=report,
    )
    test_loss, test_acc = (float(v) for v in evaluate(params, data.test.x.astype(args.dtype), data.test.y))
    last = history.epochs[-1]
    if args.json:
        result = {
            "test_accuracy": test_acc,
            "test_loss": test_loss,
            "val_accuracy": last.val_accuracy,
            "val_loss": last.val_loss,
            "compile_seconds": history.compile_seconds,
            "train_seconds": sum(m.seconds for m in history.epochs),
            "grad": args.grad,
            "optimizer": args.optimizer,
            "lr": args.lr,
            "batch_size": args.batch_size,
            "l2": args.l2,
            "init_scale": args.init_scale,
            "seed": args.seed,
            "dtype": args.dtype,
            "device": str(jax.devices()[0]),
            "epochs": [dataclasses.asdict(m) for m in history.epochs],
        }
        print(json.dumps(result))
    else:
        print(
            f"test accuracy {100 * test_acc:.2f}%  test loss {test_loss:.4f}  "
            f"(compile {history.compile_seconds:.2f} s, {args.grad} gradient, {jax.devices()[0].platform})"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Softmax regression on MNIST in JAX.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CommandError, DataNotFoundError, ValueError, TypeError, OSError) as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 2


def main_entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
