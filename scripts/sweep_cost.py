"""What a sweep of 32 models costs against one model, on MNIST.

Trains, in interleaved rounds, one model with ``fit``, a one-member ``sweep``, and
32-member sweeps (8 learning rates x 4 L2 strengths sharing one seed, hence every
batch; and 32 seeds, each with its own order of the examples), all with plain SGD at
batch 200. Prints the median seconds per epoch after the first (compilation
excluded), the fastest such epoch (the least disturbed by other work on the
machine), the median wall time of the whole call (compilation and evaluation
included), and each one's ratio to the one-member sweep.

    .venv/bin/python scripts/sweep_cost.py --data-dir /path/to/mnist [--epochs 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax

import jax_softmax as js
from jax_softmax.sweep import log_range

LRS = log_range(0.05, 2.0, 8)
L2S = (0.0, 1e-5, 1e-4, 1e-3)


def time_fit(data, epochs: int) -> tuple[list[float], float]:
    start = time.perf_counter()
    _, history = js.fit(data.train, data.validation, epochs=epochs, batch_size=200, lr=0.5)
    return [m.seconds for m in history.epochs[1:]], time.perf_counter() - start


def time_sweep(data, epochs: int, **grid) -> tuple[list[float], float]:
    seconds: list[float] = []
    start = time.perf_counter()
    js.sweep(
        data.train,
        data.validation,
        batch_sizes=(200,),
        epochs=epochs,
        optimizer="sgd",
        callback=lambda batch_size, epoch, s: seconds.append(s),
        **grid,
    )
    return seconds[1:], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("JAX_SOFTMAX_DATA_DIR"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    data = js.load_mnist(args.data_dir)
    cases = {
        "fit, 1 model": lambda: time_fit(data, args.epochs),
        "sweep, 1 model": lambda: time_sweep(data, args.epochs, lrs=(0.5,), l2s=(0.0,), seeds=(0,)),
        "sweep, 8 lr x 4 l2, 1 seed": lambda: time_sweep(data, args.epochs, lrs=LRS, l2s=L2S, seeds=(0,)),
        "sweep, 1 lr, 32 seeds": lambda: time_sweep(
            data, args.epochs, lrs=(0.5,), l2s=(0.0,), seeds=range(32)
        ),
    }
    per_epoch: dict[str, list[float]] = {name: [] for name in cases}
    wall: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, run in cases.items():
            epoch_seconds, wall_seconds = run()
            per_epoch[name].extend(epoch_seconds)
            wall[name].append(wall_seconds)

    base_epoch = statistics.median(per_epoch["sweep, 1 model"])
    base_fastest = min(per_epoch["sweep, 1 model"])
    base_wall = statistics.median(wall["sweep, 1 model"])
    print(
        f"{jax.devices()[0].platform}, {os.cpu_count()} CPUs, batch 200, {args.epochs} epochs, "
        f"median of {args.rounds} rounds"
    )
    print(f"{'case':<28} {'s/epoch':>8} {'ratio':>6} {'fastest':>8} {'ratio':>6} {'wall s':>7} {'ratio':>6}")
    for name in cases:
        e, f, w = statistics.median(per_epoch[name]), min(per_epoch[name]), statistics.median(wall[name])
        print(
            f"{name:<28} {e:8.3f} {e / base_epoch:6.2f} {f:8.3f} {f / base_fastest:6.2f} "
            f"{w:7.2f} {w / base_wall:6.2f}"
        )


if __name__ == "__main__":
    main()
