"""``jax-softmax diagnose`` and ``check-grad``: the question's program rerun, and a
hand-written gradient checked."""

from __future__ import annotations

import argparse
import json
import os
import sys

from jax_softmax.cli._common import (
    CommandError,
    add_data_flags,
    check_plot_path,
    enable_dtype,
    non_negative_float,
    positive_float,
    positive_int,
    seed_int,
)
from jax_softmax.data import DATA_DIR_ENV


def add_diagnose_command(subparsers) -> None:
    from jax_softmax.config import DTYPES, DiagnoseConfig

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
    from jax_softmax.diagnose import (
        diagnose_variant,
        format_diagnosis,
        format_diagnosis_log,
        plot_diagnosis,
    )

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


def add_check_grad_command(subparsers) -> None:
    from jax_softmax.config import CHECK_GRADIENT_BATCH_SIZES as BATCH_SIZES

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

    from jax_softmax.diagnose.gradient_check import check_gradient, format_gradient_check, load_function

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
