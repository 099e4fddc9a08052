"""``jax-softmax solve``: the exact L2-regularised optimum, on MNIST or on a file of features.

Parses the flags, reads the data (MNIST, or an ``.npz`` of features: the linear-probe
case; ``_cli_solve_data``), calls :func:`jax_softmax.solvers.solve_path`, prints, and writes ``params.npz``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from jax_softmax.cli._common import (
    EXIT_STATUS_HELP,
    PROG,
    CommandError,
    WriteError,
    add_data_flags,
    add_deskew_flag,
    enable_dtype,
    lock_out_dir,
    positive_float,
    positive_int,
)
from jax_softmax.cli._solve_data import SolveData, read_features, read_mnist
from jax_softmax.config import SOLVE_METHODS

# The default path, written out so that the parser needs no JAX (the solvers' names are
# config.SOLVE_METHODS; tests/cli/test_cli_solve.py checks both against jax_softmax.solvers).
DEFAULT_PATH_TEXT = "0.01,0.1,1,10"


def _strengths(*, positive: bool):
    """An argparse type: one number or a list, ``0.01,0.1,1`` or log-spaced ``START:STOP:NUM``."""
    from jax_softmax.config import parse_grid

    def strengths(text: str) -> tuple[float, ...]:
        try:
            return parse_grid(text, "values", positive=positive)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    strengths.__name__ = "list of numbers"
    return strengths


def add_solve_command(subparsers) -> None:
    p = subparsers.add_parser(
        "solve",
        help="the exact L2-regularised optimum, on MNIST or on your own features",
        description="Minimise the mean negative log-likelihood plus 0.5 * l2 * ||w||^2 over the whole "
        "training set (Newton-CG or L-BFGS, one compiled program), on MNIST or on the features in an "
        ".npz file (x_train, y_train, optionally x_val, y_val, x_test, y_test). Several strengths are "
        "solved from the strongest to the weakest, each warm-started from the last, and the best "
        "validation accuracy chooses (ties: the stronger). scikit-learn's C is l2 = 1 / (C * n).",
        epilog=EXIT_STATUS_HELP + ".",
    )
    strength = p.add_mutually_exclusive_group()
    strength.add_argument(
        "--C",
        dest="C",
        type=_strengths(positive=True),
        metavar="C[,C...]",
        help="scikit-learn's C, > 0: one value, or a list (0.01,0.1,1, or log-spaced START:STOP:NUM) "
        f"solved as a path and chosen on the validation split (default: the path {DEFAULT_PATH_TEXT})",
    )
    strength.add_argument(
        "--l2",
        type=_strengths(positive=False),
        metavar="L2[,L2...]",
        help="the L2 strength of the mean loss instead, >= 0: one value or a list, as --C",
    )
    p.add_argument("--features", metavar="FILE.npz", help="solve on the arrays in FILE.npz instead of MNIST")
    add_deskew_flag(p)
    add_data_flags(p)
    p.add_argument("--method", choices=SOLVE_METHODS, default="newton-cg", help="the solver")
    p.add_argument(
        "--tol",
        type=positive_float,
        default=1e-4,
        help="stop when the largest gradient entry is at most this",
    )
    p.add_argument(
        "--max-iter",
        type=positive_int,
        metavar="N",
        help="most iterations per strength (default 100 for newton-cg, 1000 for lbfgs)",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float64",
        help="dtype of the parameters and arithmetic: float64 solves as scikit-learn does; float32 is "
        "about 1.5x as fast and reaches --tol 1e-4, not much less",
    )
    p.add_argument("--out", metavar="DIR", help="write the chosen model to DIR/params.npz")
    p.add_argument("--overwrite", action="store_true", help="with --out, replace a run already in DIR")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")
    p.set_defaults(run=run_solve)


def run_solve(args: argparse.Namespace) -> int:
    import warnings

    from jax_softmax.solvers import NotConvergedWarning, solve_path

    if args.deskew and args.features is not None:
        raise CommandError("--deskew deskews MNIST's images; the rows of --features are not images")
    enable_dtype(args.dtype)
    path_given = args.C is None and args.l2 is None or len(args.C or args.l2) > 1
    data = read_features(args.features, path_given) if args.features is not None else read_mnist(args)
    # After the data is read and checked (bad input leaves a run there alone), before solving.
    out_dir = _open_out_dir(args) if args.out is not None else None
    progress = sys.stderr if args.json else sys.stdout
    print(_header(args, data), file=progress, flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotConvergedWarning)  # said below, with the flags to change
        result = solve_path(
            data.train,
            data.validation,
            Cs=args.C,
            l2s=args.l2,
            method=args.method,
            tol=args.tol,
            max_iter=args.max_iter,
            dtype=args.dtype,
            num_classes=data.num_classes,
            callback=lambda point: print(_point_row(point), file=progress, flush=True),
        )
    for point in result.points:
        if not point.converged:
            print(f"{PROG} solve: warning: {_not_converged(args, point)}", file=sys.stderr)
    test = _test_figures(result.params, data.test)
    written = [_save(out_dir, args, data, result)] if out_dir is not None else []
    if args.json:
        print(json.dumps(_solve_json(args, data, result, test, out_dir, written)))
    else:
        _print_result(result, test, out_dir)
    return 0


def _open_out_dir(args: argparse.Namespace):
    """Creates and locks ``--out`` until the command ends, refusing a run already there (or removing it)."""
    from jax_softmax.runs import RunExistsError, start_run

    lock_out_dir(args.out, "solved", args.on_exit)
    try:
        return start_run(args.out, overwrite=args.overwrite)
    except RunExistsError as e:
        raise CommandError(f"--out {e}; pass --overwrite to replace it") from None


def _header(args: argparse.Namespace, data: SolveData) -> str:
    sizes = [f"{size} {name}" for name, size in _split_sizes(data).items() if size is not None]
    lines = [
        f"solving on {data.source}: {', '.join(sizes)}; {data.num_classes} classes, "
        f"{data.train[0].shape[1]} features; {args.method}, {args.dtype}, tol {args.tol:g}"
    ]
    if data.validation is not None:
        lines.append(f"validation: {data.validation_from}")
    lines.append(
        f"{'C':>10}  {'l2':>9}  {'objective':>10}  {'grad norm':>9}  {'iter':>5}  {'seconds':>8}  "
        f"{'val acc':>7}"
    )
    return "\n".join(lines)


def _point_row(point) -> str:
    c = "inf" if point.C is None else f"{point.C:g}"
    accuracy = "-" if point.val_accuracy is None else f"{100 * point.val_accuracy:.2f}%"
    return (
        f"{c:>10}  {point.l2:9.3g}  {point.objective:10.6f}  {point.grad_norm:9.2e}  {point.iterations:5d}  "
        f"{point.seconds:8.2f}  {accuracy:>7}"
    )


def _strength(point) -> str:
    return f"l2 {point.l2:g}" if point.C is None else f"C {point.C:g} (l2 {point.l2:.3g})"


def _iterations(count: int) -> str:
    return f"{count} iteration{'s' * (count != 1)}"


def _not_converged(args: argparse.Namespace, point) -> str:
    advice = "raise --max-iter, loosen --tol" + (
        ", or solve in --dtype float64" if args.dtype == "float32" else ""
    )
    return (
        f"{_strength(point)}: {args.method} stopped after {_iterations(point.iterations)} with gradient norm "
        f"{point.grad_norm:.3g}, above --tol {args.tol:g}: {advice}"
    )


def _test_figures(params, test: tuple | None) -> tuple[float, float] | None:
    """``(loss, accuracy)`` on the test split, or ``None`` without one."""
    if test is None:
        return None
    from jax_softmax.evaluation import evaluate

    loss, accuracy = evaluate(params, *test)
    return float(loss), float(accuracy)


def _save(out_dir, args: argparse.Namespace, data: SolveData, result):
    """Writes ``DIR/params.npz`` with the metadata that ``evaluate`` and ``predict`` read."""
    from jax_softmax.runs import IMAGE_SHAPE, PARAMS_FILE, PIXEL_DIVISOR
    from jax_softmax.runs.checkpoint import save_params

    metadata: dict[str, Any] = {
        "data_set": "MNIST" if data.source == "MNIST" else "features",
        "split": {name: size for name, size in _split_sizes(data).items() if size is not None},
        "solve": {**_settings(args), **result.best_point._asdict()},
    }
    if data.source == "MNIST":
        metadata.update(image_shape=list(IMAGE_SHAPE), pixel_divisor=PIXEL_DIVISOR)
        metadata["preprocessing"] = ["deskew"] if args.deskew else []
    else:
        metadata["features_file"] = os.path.abspath(data.source)
    path = out_dir / PARAMS_FILE
    try:
        return save_params(path, result.params, metadata)
    except OSError as e:
        raise WriteError(f"could not write {path} ({e.strerror or e}); the model is not saved") from None


def _settings(args: argparse.Namespace) -> dict:
    from jax_softmax.solvers import DEFAULT_MAX_ITER

    max_iter = DEFAULT_MAX_ITER[args.method] if args.max_iter is None else args.max_iter
    return {
        "method": args.method,
        "tol": args.tol,
        "max_iter": max_iter,
        "dtype": args.dtype,
        "deskew": args.deskew,
    }


def _split_sizes(data: SolveData) -> dict[str, int | None]:
    splits = {"train": data.train, "validation": data.validation, "test": data.test}
    return {name: None if split is None else len(split[1]) for name, split in splits.items()}


def _solve_json(args, data: SolveData, result, test, out_dir, written) -> dict:
    import jax

    best = result.best_point
    output = {
        "test_accuracy": None if test is None else test[1],
        "test_loss": None if test is None else test[0],
        "val_accuracy": best.val_accuracy,
        "val_loss": best.val_loss,
        **{
            name: getattr(best, name)
            for name in ("C", "l2", "objective", "grad_norm", "iterations", "converged")
        },
        **_settings(args),
        "chosen": result.best,
        "path": [point._asdict() for point in result.points],
        "solve_seconds": sum(point.seconds for point in result.points),
        "data": {
            "source": data.source,
            "num_classes": data.num_classes,
            "num_features": int(data.train[0].shape[1]),
            **_split_sizes(data),
            "validation_from": data.validation_from,
        },
        "device": str(jax.devices()[0]),
    }
    if out_dir is not None:
        output["out"] = {"dir": str(out_dir), "files": [str(path) for path in written]}
    return output


def _print_result(result, test, out_dir) -> None:
    best = result.best_point
    line = _strength(best)
    if len(result.points) > 1:
        line = f"chosen by validation accuracy: {line}"
    if best.val_accuracy is not None:
        line += f", validation accuracy {100 * best.val_accuracy:.2f}%"
    if test is not None:
        line += f"; test accuracy {100 * test[1]:.2f}%  test loss {test[0]:.4f}"
    print(line)
    if out_dir is not None:
        print(f"wrote params.npz to {out_dir}")
