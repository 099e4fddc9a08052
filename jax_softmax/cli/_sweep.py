"""``jax-softmax sweep``: a grid of models trained together."""

from __future__ import annotations

import argparse
import json
import sys

from jax_softmax.cli._common import (
    PROG,
    CommandError,
    add_data_flags,
    add_deskew_flag,
    check_plot_path,
    enable_dtype,
    non_negative_float,
    positive_int,
)


def _grid_flag(name: str, *, positive: bool):
    """An argparse type for a grid of numbers: ``0.01,0.1,1`` or log-spaced ``START:STOP:NUM``."""
    from jax_softmax.config import parse_grid

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


def add_sweep_command(subparsers) -> None:
    from jax_softmax.config import (
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
    add_deskew_flag(p)
    add_data_flags(p)
    p.add_argument("--plot", metavar="FILE.png", help="draw validation accuracy against learning rate")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")
    p.set_defaults(run=run_sweep)


def _add_sweep_training_flags(p: argparse.ArgumentParser) -> None:
    """The flags every member of a sweep shares: epochs, optimizer, gradient, start, selection."""
    from jax_softmax.config import (
        DEFAULT_INIT_SCALE,
        DEFAULT_SWEEP_EPOCHS,
        DEFAULT_SWEEP_OPTIMIZER,
        GRAD_MODES,
        OPTIMIZER_NAMES,
        SELECT_BY,
    )

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
    from jax_softmax.sweeps import sweep

    progress = sys.stderr if args.json else sys.stdout
    data = load_mnist(args.data_dir, deskew=args.deskew)
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
        from jax_softmax.plots import plot_sweep, save_figure

        save_figure(plot_sweep(result), args.plot)
    _print_sweep_result(args, result)
    if result.best is None:
        print(f"{PROG} sweep: every model diverged; try smaller learning rates", file=sys.stderr)
        return 1
    return 0


def _print_sweep_result(args: argparse.Namespace, result) -> None:
    import jax

    from jax_softmax.sweeps import format_sweep

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
