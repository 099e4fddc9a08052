"""What the non-finite check costs a training epoch (MNIST, batch 200, float32).

Times the jitted :func:`jax_softmax.train.train_epoch` as ``fit`` runs it
(``stop_at_nonfinite=True``: the scan carries the finiteness flag and keeps the last
finite parameters) against the same epoch without the check, in interleaved rounds
in one process, alternating which goes first, and prints the median milliseconds per
epoch of each. Each timed call includes reading back what ``fit`` reads back.

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
from jax_softmax.train import train_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed epochs of each kind")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--data-dir", default=os.environ.get(DATA_DIR_ENV))
    args = parser.parse_args()

    data = js.load_mnist(args.data_dir)
    x, y = jnp.asarray(data.train.x), jnp.asarray(data.train.y, jnp.int32)
    lr = jnp.float32(0.5)
    print(f"device: {jax.devices()[0]}; batch {args.batch_size}, float32; median of {args.rounds} epochs")
    print("| gradient | optimizer | without check ms/epoch | with check ms/epoch | overhead |")
    print("| --- | --- | --- | --- | --- |")
    for grad in ("autodiff", "manual"):
        for name in ("sgd", "adam"):
            optimizer = js.make_optimizer(name, 0.5 if name == "sgd" else 1e-3)
            settings = {"batch_size": args.batch_size, "grad": grad, "optimizer": optimizer, "l2": 0.0}
            epochs = {
                "without": jax.jit(partial(train_epoch, **settings)),
                "with": jax.jit(partial(train_epoch, **settings, stop_at_nonfinite=True)),
            }
            params = js.init_params(jax.random.key(0))
            state = {k: (params, () if optimizer is None else optimizer.init(params)) for k in epochs}
            times = {k: [] for k in epochs}
            key = jax.random.key(1)
            for round_ in range(args.rounds + 1):  # round 0 compiles and warms up
                key, epoch_key = jax.random.split(key)
                order = list(epochs) if round_ % 2 else list(epochs)[::-1]
                for kind in order:
                    start = time.perf_counter()
                    out = epochs[kind](*state[kind], epoch_key, x, y, lr)
                    float(out[2])  # the mean loss, as fit reads it
                    if kind == "with":
                        int(out[3])  # the first non-finite step, as fit reads it
                    jax.block_until_ready(out[0])
                    if round_:
                        times[kind].append(time.perf_counter() - start)
                    state[kind] = out[:2]
            without, with_check = (1e3 * statistics.median(times[k]) for k in ("without", "with"))
            print(
                f"| {grad} | {name} | {without:.1f} | {with_check:.1f} | "
                f"{100 * (with_check / without - 1):+.1f}% |"
            )


if __name__ == "__main__":
    main()
