"""Benchmarks of jax-softmax: one entry point for every measurement, each named.

    .venv/bin/python scripts/benchmark.py --data-dir /path/to/mnist [--json] [--skip-sklearn]
    .venv/bin/python scripts/benchmark.py --data-dir /path/to/mnist --end-to-end-only
    .venv/bin/python scripts/benchmark.py checks nonfinite sweep-cost data-parallel [--rounds N]

The measurements (the default run is ``epochs whole-process``):

- ``epochs``: the per-epoch table. In one process and in interleaved rounds, the same
  problem (MNIST's 54,000 training images, batch 200, the same learning rate, zero
  initial weights, float32, a fresh shuffle per epoch) is trained by this project in
  both gradient modes, by NumPy, by PyTorch on the CPU, and by JAX with a Python loop
  over a jitted step (scripts/_references.py); scikit-learn's LogisticRegression
  trains to convergence; two rows time the epoch's matrix products alone. For each:
  the median milliseconds per epoch over every epoch but each run's first, samples per
  second, compilation seconds, seconds to 92% test accuracy, the final test accuracy,
  the peak resident memory of a separate process that trains two epochs, and the
  ratio to this project; then the same over batch sizes. A missing optional peer
  (PyTorch, scikit-learn: `pip install -e '.[bench]'`) is reported as skipped.
- ``whole-process``: what a user waits for, `jax-softmax train --epochs 10` with an
  empty and with a filled cache against scripts/numpy_softmax.py, process start to
  exit, with peak memory, test accuracy and ratios to the NumPy script
  (``--end-to-end-only``: just these).
- ``checks``: what the argument checks cost a call of the jitted step.
- ``nonfinite``: what the non-finite check costs a training epoch.
- ``sweep-cost``: what a sweep of 32 models costs against one model.
- ``data-parallel``: how far training on 4 devices, and on 2 processes, lands from
  training on one device.
- ``solve``: time to the L2-regularised optimum (``js.solve``, Newton-CG and L-BFGS,
  float64 and float32) against scikit-learn's ``newton-cg`` and ``lbfgs``, each
  objective's distance from the lowest one of the run (scripts/_solver.py).
- ``deskew``: ``js.deskew`` on MNIST's 70,000 images, once compiled, against a
  per-image SciPy loop (scripts/_deskew.py).

Every measurement times its cases in interleaved rounds (scripts/_timing.py) and
prints Markdown (or, with ``--json``, one JSON object); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

DATA_DIR_ENV = "JAX_SOFTMAX_DATA_DIR"
DEFAULT = ("epochs", "whole-process")


def _epochs(args, report, log) -> list[str]:
    import _epochs

    _epochs.measure(args, report, log)
    return _epochs.markdown(report)


def _whole_process(args, report, log) -> list[str]:
    import _whole_process

    _whole_process.measure(args, report, log)
    return _whole_process.markdown(report)


def _checks(args, report, log) -> list[str]:
    from _overheads import check_overhead, check_overhead_markdown

    report["checks"] = check_overhead(args.rounds or 15, args.calls)
    return check_overhead_markdown(report)


def _nonfinite(args, report, log) -> list[str]:
    from _overheads import nonfinite_markdown, nonfinite_overhead

    grads, optimizers = args.grad or ["autodiff", "manual"], args.optimizer or ["sgd", "adam"]
    report["nonfinite"] = nonfinite_overhead(
        args.data_dir, args.rounds or 30, args.batch_size, grads, optimizers
    )
    return nonfinite_markdown(report)


def _sweep_cost(args, report, log) -> list[str]:
    from _overheads import sweep_cost, sweep_cost_markdown

    report["sweep_cost"] = sweep_cost(args.data_dir, args.epochs or 5, args.rounds or 3)
    return sweep_cost_markdown(report)


def _data_parallel(args, report, log) -> list[str]:
    import _data_parallel

    epochs = args.epochs or 3
    report["data_parallel"] = [
        _data_parallel.data_parallel(args.data_dir, epochs, name) for name in args.optimizer or ["sgd"]
    ]
    return _data_parallel.markdown(report)


def _solve(args, report, log) -> list[str]:
    import _solver

    _solver.measure(args, report, log)
    return _solver.markdown(report)


def _deskew(args, report, log) -> list[str]:
    import _deskew

    _deskew.measure(args, report, log)
    return _deskew.markdown(report)


# name -> (runs the measurement into the report and returns its Markdown lines, needs MNIST)
MEASUREMENTS: dict[str, tuple[Callable, bool]] = {
    "epochs": (_epochs, True),
    "whole-process": (_whole_process, True),
    "checks": (_checks, False),
    "nonfinite": (_nonfinite, True),
    "sweep-cost": (_sweep_cost, True),
    "data-parallel": (_data_parallel, True),
    "solve": (_solve, True),
    "deskew": (_deskew, True),
}


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[2:4]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "measurements",
        nargs="*",
        metavar="MEASUREMENT",
        help=f"any of {', '.join(MEASUREMENTS)} (default: epochs whole-process)",
    )
    p.add_argument("--only", action="append", default=[], metavar="MEASUREMENT", help="the same, as a flag")
    p.add_argument(
        "--data-dir", default=os.environ.get(DATA_DIR_ENV), help=f"MNIST IDX files (default ${DATA_DIR_ENV})"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of Markdown")
    p.add_argument(
        "--epochs", type=positive_int, help="epochs per run (epochs 8, sweep-cost 5, data-parallel 3)"
    )
    p.add_argument(
        "--rounds",
        type=positive_int,
        help="interleaved rounds (epochs 2, checks 15, nonfinite 30, sweep-cost 3)",
    )
    _epochs_flags(p.add_argument_group("epochs"))
    _whole_process_flags(p.add_argument_group("whole-process"))
    _solve_flags(p.add_argument_group("solve"))
    other = p.add_argument_group("checks, nonfinite, data-parallel")
    other.add_argument(
        "--calls", type=positive_int, default=500, help="checks: calls per round (default 500)"
    )
    other.add_argument(
        "--batch-size", type=positive_int, default=200, help="nonfinite: batch size (default 200)"
    )
    other.add_argument(
        "--grad", nargs="+", choices=("autodiff", "manual"), help="nonfinite: gradients (default both)"
    )
    other.add_argument(
        "--optimizer",
        nargs="+",
        help="nonfinite: optimizers (default sgd adam); data-parallel: (default sgd)",
    )
    p.add_argument("--probe", nargs=3, metavar=("SYSTEM", "GRAD", "NPZ"), help=argparse.SUPPRESS)
    return p


def _epochs_flags(g) -> None:
    g.add_argument("--lr", type=float, default=0.5, help="learning rate (default 0.5)")
    g.add_argument(
        "--batch-sizes", default="1,32,1000,full", help="the batch-size table besides 200 ('' for none)"
    )
    g.add_argument(
        "--sweep-epochs", type=positive_int, default=4, help="epochs per batch size in the table (default 4)"
    )
    g.add_argument(
        "--sklearn-max-iter", type=positive_int, default=200, help="lbfgs iterations at most (default 200)"
    )
    g.add_argument("--skip-sklearn", action="store_true", help="leave out scikit-learn (30-90 s)")
    g.add_argument("--no-memory", action="store_true", help="leave out the peak-memory processes")
    g.add_argument("--no-end-to-end", action="store_true", help="default run: leave out whole-process")


def _whole_process_flags(g) -> None:
    g.add_argument(
        "--end-to-end-only", action="store_true", help="default run: only whole-process (a minute or two)"
    )
    g.add_argument("--e2e-epochs", type=positive_int, default=10, help="epochs of each process (default 10)")
    g.add_argument("--e2e-rounds", type=positive_int, default=3, help="interleaved rounds (default 3)")
    g.add_argument(
        "--numpy-threads",
        type=positive_int,
        help="BLAS threads of the NumPy script (default: its own choice)",
    )


def _solve_flags(g) -> None:
    g.add_argument("--C", type=float, default=1.0, help="scikit-learn's C (default 1)")
    g.add_argument(
        "--methods", nargs="+", choices=("newton-cg", "lbfgs"), default=["newton-cg", "lbfgs"], help="ours"
    )
    g.add_argument(
        "--solve-dtypes", nargs="+", choices=("float64", "float32"), default=["float64", "float32"]
    )
    g.add_argument("--gap", type=float, default=1e-7, help="relative gap that counts as the optimum")


def parse_args(argv=None) -> argparse.Namespace:
    parser = _parser()
    args = parser.parse_args(argv)
    names = [*args.measurements, *args.only]
    unknown = [name for name in names if name not in MEASUREMENTS]
    if unknown:
        parser.error(f"unknown measurement {unknown[0]!r}; the measurements are {', '.join(MEASUREMENTS)}")
    if not names:
        names = [n for n in DEFAULT if not (args.end_to_end_only and n == "epochs")]
        names = [n for n in names if not (args.no_end_to_end and n == "whole-process")]
    args.names = list(dict.fromkeys(names))
    if args.probe is None and not args.data_dir and any(MEASUREMENTS[n][1] for n in args.names):
        parser.error(f"pass --data-dir or set {DATA_DIR_ENV}")
    if "sweep-cost" in args.names and args.epochs == 1:
        parser.error("sweep-cost times the epochs after the first: --epochs must be at least 2")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.probe:
        from _epochs import probe

        probe(*args.probe, lr=args.lr)
        return 0
    from _timing import load_average, machine, machine_markdown

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    report = {"machine": machine()}
    sections = []
    for name in args.names:
        sections.append(MEASUREMENTS[name][0](args, report, log))
    report["machine"]["load_average_end"] = load_average()
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(
            "\n".join([machine_markdown(report["machine"])] + [line for s in sections for line in ["", *s]])
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
