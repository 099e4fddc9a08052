"""What the non-finite check costs a training epoch (MNIST, batch 200, float32).

Times an epoch as ``fit`` runs it: a copy of the parameters and optimizer state (kept
to replay an epoch that goes non-finite), then the jitted
:func:`jax_softmax.train.checked_epoch` (the epoch, and one finiteness test of its mean
loss and final state), against the jitted :func:`jax_softmax.train.train_epoch` alone,
the same epoch without the check, in interleaved rounds
in one process, alternating which goes first, and prints the median milliseconds per
epoch of each, the fastest epoch of each, and the median over rounds of the ratio of
the two epochs timed side by side (the least disturbed by other jobs' load, which
drifts). Each timed call includes reading back what ``fit`` reads back.

    JAX_SOFTMAX_DATA_DIR=/path/to/mnist .venv/bin/python scripts/nonfinite_overhead.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from functools import partial

import jax
import jax.numpy as jnp

import jax_softmax as js
from jax_softmax.data import DATA_DIR_ENV
from jax_softmax.gradients import make_optimizer
from jax_softmax.nonfinite import all_finite
from jax_softmax.train import _compile, checked_epoch, train_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed epochs of each kind")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--data-dir", default=os.environ.get(DATA_DIR_ENV))
    parser.add_argument("--grad", nargs="+", default=["autodiff", "manual"], help="gradients to time")
    parser.add_argument("--optimizer", nargs="+", default=["sgd", "adam"], help="optimizers to time")
    args = parser.parse_args()

    data = js.load_mnist(args.data_dir)
    x, y = jnp.asarray(data.train.x), jnp.asarray(data.train.y, jnp.int32)
    lr = jnp.float32(0.5)
    print(f"device: {jax.devices()[0]}; batch {args.batch_size}, float32; median of {args.rounds} epochs")
    print(
        "| gradient | optimizer | median ms, without / with check | overhead | fastest ms | overhead "
        "| median of the rounds' ratios |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for grad in args.grad:
        for name in args.optimizer:
            optimizer = make_optimizer(name, 0.5 if name == "sgd" else 1e-3)
            settings = {"batch_size": args.batch_size, "grad": grad, "optimizer": optimizer, "l2": 0.0}
            params = js.init_params(jax.random.key(0))
            start = (params, () if optimizer is None else optimizer.init(params))
            epochs = {  # compiled as fit compiles them
                kind: _compile(jax.jit(partial(fn, **settings)).lower(*start, jax.random.key(0), x, y, lr))
                for kind, fn in (("without", train_epoch), ("with", checked_epoch))
            }
            state = dict.fromkeys(epochs, start)
            times = {k: [] for k in epochs}
            key = jax.random.key(1)
            for round_ in range(args.rounds + 1):  # round 0 compiles and warms up
                key, epoch_key = jax.random.split(key)
                order = list(epochs) if round_ % 2 else list(epochs)[::-1]
                for kind in order:
                    start = time.perf_counter()
                    if kind == "with":
                        jax.tree.map(jnp.copy, state[kind])  # as fit keeps it
                    out = epochs[kind](*state[kind], epoch_key, x, y, lr)
                    if kind == "with":
                        bool(out[3])  # whether the epoch stayed finite, as fit reads it
                    float(out[2])  # the mean loss, as fit reads it
                    jax.block_until_ready(out[0])
                    if round_:
                        times[kind].append(time.perf_counter() - start)
                    state[kind] = out[:2]
            median = [1e3 * statistics.median(times[k]) for k in ("without", "with")]
            fastest = [1e3 * min(times[k]) for k in ("without", "with")]
            paired = statistics.median(b / a for a, b in zip(times["without"], times["with"], strict=True))
            cells = [f"{a:.1f} / {b:.1f} | {100 * (b / a - 1):+.1f}%" for a, b in (median, fastest)]
            print(f"| {grad} | {name} | {cells[0]} | {cells[1]} | {100 * (paired - 1):+.1f}% |")

    # The check's own work, alone: the copy fit keeps, and the test of the final state.
    params = js.init_params(jax.random.key(0))
    test = jax.jit(lambda p, loss: jnp.isfinite(loss) & all_finite(p))
    bool(test(params, jnp.float32(1.0)))
    calls = 2000
    start = time.perf_counter()
    for _ in range(calls):
        jax.tree.map(jnp.copy, params)
        bool(test(params, jnp.float32(1.0)))
    seconds = (time.perf_counter() - start) / calls
    print(f"copy and test of 784 x 10 float32 parameters, alone: {1e6 * seconds:.0f} us per epoch")


if __name__ == "__main__":
    main()
