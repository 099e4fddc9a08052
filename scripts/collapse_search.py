"""Where, if anywhere, does the question's exact shape appear: 60-70% accuracy at the first -inf?

The question: a hand-written softmax regression "reaches 60-70% and then collapses",
its log-likelihood becoming infinite. This script runs ``jax-softmax diagnose``'s
training over a log grid of learning rates (1e-6 to 1, two per decade), both dtypes,
both initialisations (zeros and ``N(0, 0.01^2)``) and both pixel scales, with the two
softmax forms whose log-likelihood can become ``-inf`` (the naive and the max-shifted
one; ``log_softmax`` is finite for finite logits), and the correct update sign
(``--signs both`` adds the question's sign, which climbs the loss and so takes
accuracy down from its start, not up to 60%). For each
run it finds the first step whose batch log-likelihood is ``-inf`` and the validation
accuracy of the weights that produced it, and it lists the runs where that accuracy is
between 60% and 70%: the question's shape.

    .venv/bin/python scripts/collapse_search.py --data-dir /path/to/mnist [--json]

``--lr-min``, ``--lr-max`` and ``--per-decade`` refine the grid where the first
``-inf`` moves from early to late, e.g. ``--lr-min 1e-4 --lr-max 1e-3 --per-decade 10``.

On the 2-core CPU the grid (208 runs of 3 epochs) takes 10-25 minutes, depending on
what else runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)  # for the float64 runs; set before any array exists

from jax_softmax.data import load_mnist_uint8  # noqa: E402
from jax_softmax.diagnose import DiagnoseConfig, Diagnosis, Variant, diagnose_variant  # noqa: E402

LOW, HIGH = 0.60, 0.70


def first_minus_inf(d: Diagnosis) -> tuple[int | None, float | None]:
    """The first step whose log-likelihood is -inf, and the accuracy of the weights it started from.

    A run whose first non-finite value is a NaN (an overflow) has NaN weights from then
    on, and its log-likelihood never becomes -inf; such a run has none.
    """
    step = d.verdict.first_nonfinite_step
    if step is None or d.log.log_likelihood[step - 1] != -np.inf:
        return None, None
    # The collapse step is the first non-finite one here, so the accuracy was measured.
    return step, d.val_accuracy_at_collapse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("JAX_SOFTMAX_DATA_DIR"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--per-decade", type=int, default=2, help="learning rates per decade (default 2)")
    parser.add_argument("--lr-min", type=float, default=1e-6, help="smallest learning rate (default 1e-6)")
    parser.add_argument("--lr-max", type=float, default=1.0, help="largest learning rate (default 1)")
    parser.add_argument("--pixels", choices=("raw", "scaled", "both"), default="both")
    parser.add_argument("--softmax", choices=("shifted", "naive", "both"), default="both")
    parser.add_argument("--signs", choices=("correct", "both"), default="correct", help="update signs")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return parser


def _learning_rates(args) -> list[float]:
    low, high = np.log10(args.lr_min), np.log10(args.lr_max)
    count = round((high - low) * args.per_decade) + 1
    return [float(f"{lr:.3g}") for lr in np.logspace(low, high, count)]


def _variants(args) -> list[tuple[str, str, str]]:
    return [
        (sign, pixels, softmax)
        for sign in (("correct",) if args.signs == "correct" else ("correct", "as_written"))
        for pixels in (("raw", "scaled") if args.pixels == "both" else (args.pixels,))
        for softmax in (("shifted", "naive") if args.softmax == "both" else (args.softmax,))
    ]


def _run(data, variant: Variant, lr: float, init_scale: float, epochs: int) -> dict:
    """Trains one variant and describes its first -inf log-likelihood, if any."""
    config = DiagnoseConfig(epochs=epochs, lr=lr, init_scale=init_scale)
    d = diagnose_variant(variant, data.train, data.validation, config)
    step, accuracy = first_minus_inf(d)
    print(
        f"{variant.dtype} init {init_scale:g} {variant.sign} {variant.pixels} {variant.softmax} lr {lr:g}: "
        + ("no -inf" if step is None else f"-inf at step {step}, accuracy {accuracy:.1%}"),
        file=sys.stderr,
        flush=True,
    )
    return {
        "dtype": variant.dtype,
        "init_scale": init_scale,
        "sign": variant.sign,
        "pixels": variant.pixels,
        "softmax": variant.softmax,
        "lr": lr,
        "cause": d.verdict.cause,
        "first_minus_inf_step": step,
        "val_accuracy_at_first_minus_inf": accuracy,
        "zero_true_probs_there": None if step is None else int(d.log.zero_true_probs[step - 1]),
        "best_val_accuracy": d.best_val_accuracy,
        "final_val_accuracy": d.final_val_accuracy,
        "shape_of_the_question": accuracy is not None and LOW <= accuracy <= HIGH,
    }


def _print_table(rows: list[dict], lrs: list[float], epochs: int, seconds: float) -> None:
    header = f"{'dtype':<8} {'init':<5} {'sign':<10} {'pixels':<6} {'softmax':<7}"
    print(f"{header}  first -inf (step: accuracy) by lr")
    for key, group in itertools.groupby(
        rows, lambda r: (r["dtype"], r["init_scale"], r["sign"], r["pixels"], r["softmax"])
    ):
        cells = [
            "-"
            if r["first_minus_inf_step"] is None
            else f"{r['first_minus_inf_step']}:{r['val_accuracy_at_first_minus_inf']:.0%}"
            for r in group
        ]
        dtype, init, sign, pixels, softmax = key
        print(
            f"{dtype:<8} {init:<5g} {sign:<10} {pixels:<6} {softmax:<7}  "
            + " ".join(f"{c:>8}" for c in cells)
        )
    print(f"learning rates: {', '.join(f'{lr:g}' for lr in lrs)}")
    matches = [r for r in rows if r["shape_of_the_question"]]
    if matches:
        print(f"{len(matches)} runs with {LOW:.0%}-{HIGH:.0%} accuracy at the first -inf:")
        for r in matches:
            print("  " + json.dumps(r))
    else:
        print(f"nowhere: no run had {LOW:.0%}-{HIGH:.0%} validation accuracy at its first -inf")
    print(f"{len(rows)} runs of {epochs} epochs in {seconds:.0f} s")


def main() -> int:
    args = _parser().parse_args()
    lrs = _learning_rates(args)
    data = load_mnist_uint8(args.data_dir)
    start = time.perf_counter()
    rows = [
        _run(data, Variant(sign, pixels, softmax, dtype), lr, init_scale, args.epochs)
        for dtype, init_scale, (sign, pixels, softmax), lr in itertools.product(
            ("float64", "float32"), (0.0, 0.01), _variants(args), lrs
        )
    ]
    seconds = time.perf_counter() - start
    if args.json:
        matches = [r for r in rows if r["shape_of_the_question"]]
        print(json.dumps({"runs": rows, "matches": matches, "seconds": seconds}))
    else:
        _print_table(rows, lrs, args.epochs, seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
