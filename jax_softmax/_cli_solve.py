"""``jax-softmax solve``: the exact L2-regularised optimum, on MNIST or on a file of features.

Parses the flags, reads the data (MNIST, or an ``.npz`` of features: the linear-probe
case), calls :func:`jax_softmax.solvers.solve_path`, prints, and writes ``params.npz``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, NamedTuple

from jax_softmax._cli_common import (
    EXIT_STATUS_HELP,
    PROG,
    CommandError,
    WriteError,
    add_data_flags,
    enable_dtype,
    lock_out_dir,
    positive_float,
    positive_int,
)

# The solvers' names and default path, written out so that the parser needs no JAX
# (tests/test_cli_solve.py checks them against jax_softmax.solvers).
SOLVE_METHODS = ("newton-cg", "lbfgs")
DEFAULT_PATH_TEXT = "0.01,0.1,1,10"
HOLD_OUT_FRACTION = 0.1  # of the training rows, for validation when a file has no x_val
FEATURE_SPLITS = {
    "train": ("x_train", "y_train"),
    "validation": ("x_val", "y_val"),
    "test": ("x_test", "y_test"),
}


def _strengths(*, positive: bool):
    """An argparse type: one number or a list, ``0.01,0.1,1`` or log-spaced ``START:STOP:NUM``."""
    from jax_softmax._sweep_grid import parse_grid

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


class SolveData(NamedTuple):
    """The splits to solve on, and what to say about them."""

    train: tuple  # (x, y)
    validation: tuple | None
    test: tuple | None
    num_classes: int
    source: str  # "MNIST" or the file's path
    validation_from: str | None  # how the validation split was made; None without one


def run_solve(args: argparse.Namespace) -> int:
    import warnings

    from jax_softmax.solvers import NotConvergedWarning, solve_path

    enable_dtype(args.dtype)
    path_given = args.C is None and args.l2 is None or len(args.C or args.l2) > 1
    data = _read_features(args.features, path_given) if args.features is not None else _read_mnist(args)
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
    from jax_softmax._run_dir import RunExistsError, start_run

    lock_out_dir(args, "solved")
    try:
        return start_run(args.out, overwrite=args.overwrite)
    except RunExistsError as e:
        raise CommandError(f"--out {e}; pass --overwrite to replace it") from None


def _read_mnist(args: argparse.Namespace) -> SolveData:
    from jax_softmax.data import load_mnist

    data = load_mnist(args.data_dir)
    return SolveData(
        tuple(data.train),
        tuple(data.validation),
        tuple(data.test),
        10,
        "MNIST",
        f"the last {len(data.validation.y)} of MNIST's {len(data.train.y) + len(data.validation.y)} "
        "training images",
    )


def _read_features(path: str, path_given: bool) -> SolveData:
    """The splits in ``--features FILE.npz``, checked; the last 10% of the training rows
    held out for validation when a path needs choosing and the file has none."""
    arrays = _read_npz(path)
    splits = {name: _feature_split(arrays, path, name) for name in FEATURE_SPLITS}
    num_features = splits["train"][0].shape[1]
    for name, (x_key, _) in FEATURE_SPLITS.items():
        if splits[name] is not None and splits[name][0].shape[1] != num_features:
            raise CommandError(
                f"--features {path}: {x_key} has {splits[name][0].shape[1]} features per row, "
                f"x_train has {num_features}"
            )
    num_classes = _check_labels(path, splits)
    validation_from = None if splits["validation"] is None else "x_val, y_val in the file"
    if splits["validation"] is None and path_given:
        splits["train"], splits["validation"], validation_from = _hold_out(splits["train"], path, num_classes)
    return SolveData(
        splits["train"], splits["validation"], splits["test"], num_classes, path, validation_from
    )


def _read_npz(path: str) -> dict[str, Any]:
    """The arrays of an ``.npz`` file, read without pickling; a CommandError naming what is wrong."""
    import zipfile

    import numpy as np

    where = f"--features {path}"
    if not os.path.exists(path):
        raise CommandError(f"{where}: no such file")
    if os.path.isdir(path):
        raise CommandError(f"{where}: is a directory, not an .npz file")
    unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile)
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
        if magic == b"\x93NUMPY":
            raise CommandError(
                f"{where}: holds one array (.npy), not an .npz archive of x_train, y_train, ..."
            )
        if magic[:4] != b"PK\x03\x04":
            raise CommandError(f"{where}: not an .npz file (not a zip archive; write it with numpy.savez)")
        archive = np.load(path, allow_pickle=False)
    except unreadable as e:
        raise CommandError(f"{where}: not a readable .npz file ({e})") from None
    with archive:
        missing = [key for key in FEATURE_SPLITS["train"] if key not in archive.files]
        if missing:
            raise CommandError(
                f"{where}: has no {' and no '.join(missing)} (it holds: "
                f"{', '.join(archive.files) or 'nothing'}); expected x_train, y_train and optionally "
                "x_val, y_val, x_test, y_test"
            )
        arrays = {}
        for key in (key for pair in FEATURE_SPLITS.values() for key in pair):
            if key in archive.files:
                try:
                    arrays[key] = archive[key]
                except unreadable as e:
                    raise CommandError(f"{where}: {key} cannot be read ({e})") from None
    return arrays


def _feature_split(arrays: dict, path: str, name: str) -> tuple | None:
    """``(x, y)`` of one split, shapes and values checked, or ``None`` when the file has neither."""
    from jax_softmax._validation import check_finite

    x_key, y_key = FEATURE_SPLITS[name]
    if x_key not in arrays and y_key not in arrays:
        return None
    where = f"--features {path}"
    if x_key not in arrays or y_key not in arrays:
        given, lacking = (x_key, y_key) if x_key in arrays else (y_key, x_key)
        raise CommandError(f"{where}: has {given} but no {lacking}; give both or neither")
    x, y = arrays[x_key], arrays[y_key]
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise CommandError(
            f"{where}: {x_key} must be [n, num_features] with n, num_features >= 1, got {x.shape}"
        )
    if x.dtype.kind not in "fiu":
        raise CommandError(f"{where}: {x_key} must hold real numbers, got dtype {x.dtype}")
    if y.shape != (len(x),):
        raise CommandError(
            f"{where}: {y_key} must have shape ({len(x)},), one label per row of {x_key}, got {y.shape}"
        )
    if y.dtype.kind not in "iu":
        raise CommandError(f"{where}: {y_key} must hold integer class labels 0, 1, ..., got dtype {y.dtype}")
    try:
        check_finite(x, x_key)
    except ValueError as e:
        raise CommandError(f"{where}: {e}") from None
    return x, y


def _hold_out(train: tuple, path: str, num_classes: int) -> tuple[tuple, tuple, str]:
    """The training rows split into training and validation: the last 10% validate."""
    import numpy as np

    x, y = train
    held = int(len(y) * HOLD_OUT_FRACTION)
    if held < 1:
        raise CommandError(
            f"--features {path}: x_train has {len(y)} rows, too few to hold out 10% for choosing among "
            "strengths; add x_val and y_val to the file, or give one --C"
        )
    cut = len(y) - held
    sorted_hint = "are the rows sorted by label? shuffle them, or add x_val and y_val to the file"
    kept = len(np.unique(y[:cut]))
    if kept < num_classes:
        raise CommandError(
            f"--features {path}: holding out the last {held} training rows for validation leaves "
            f"{num_classes - kept} of the {num_classes} classes without training rows; {sorted_hint}"
        )
    held_classes = len(np.unique(y[cut:]))
    if held_classes < num_classes:
        print(
            f"{PROG} solve: warning: the last {held} training rows, held out for validation, hold "
            f"{held_classes} of the {num_classes} classes; {sorted_hint}",
            file=sys.stderr,
        )
    note = f"the last {held} of the {len(y)} training rows (the file has no x_val, y_val)"
    return (x[:cut], y[:cut]), (x[cut:], y[cut:]), note


def _check_labels(path: str, splits: dict) -> int:
    """The number of classes, ``K``: labels must be 0 to K-1, each class among the training rows."""
    import numpy as np

    where = f"--features {path}"
    for name, split in splits.items():
        if split is not None and int(split[1].min()) < 0:
            key = FEATURE_SPLITS[name][1]
            raise CommandError(f"{where}: {key} holds the label {int(split[1].min())}; labels are 0, 1, ...")
    num_classes = 1 + max(int(split[1].max()) for split in splits.values() if split is not None)
    trained = np.unique(splits["train"][1])
    if len(trained) < 2:
        raise CommandError(
            f"{where}: y_train holds only class {int(trained[0])}; at least two classes are needed"
        )
    if len(trained) < num_classes:
        gaps = np.flatnonzero(trained != np.arange(len(trained)))
        first = int(gaps[0]) if len(gaps) else len(trained)
        raise CommandError(
            f"{where}: labels must be 0 to K-1 with every class in y_train; {num_classes - len(trained)} "
            f"of the {num_classes} classes are not (the first: class {first})"
        )
    return num_classes


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
    from jax_softmax.train import evaluate

    loss, accuracy = evaluate(params, *test)
    return float(loss), float(accuracy)


def _save(out_dir, args: argparse.Namespace, data: SolveData, result):
    """Writes ``DIR/params.npz`` with the metadata that ``evaluate`` and ``predict`` read."""
    from jax_softmax._run_dir import IMAGE_SHAPE, PARAMS_FILE, PIXEL_DIVISOR
    from jax_softmax.checkpoint import save_params

    metadata: dict[str, Any] = {
        "data_set": "MNIST" if data.source == "MNIST" else "features",
        "split": {name: size for name, size in _split_sizes(data).items() if size is not None},
        "solve": {**_settings(args), **result.best_point._asdict()},
    }
    if data.source == "MNIST":
        metadata.update(image_shape=list(IMAGE_SHAPE), pixel_divisor=PIXEL_DIVISOR)
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
    return {"method": args.method, "tol": args.tol, "max_iter": max_iter, "dtype": args.dtype}


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
