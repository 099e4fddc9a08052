"""What the argument checks cost a call of the jitted SGD step (batch 200, 784 x 10, float32).

Times ``step(params, x, y, lr)`` from ``make_update`` against ``step.__wrapped__``,
the same compiled step without the checks, in interleaved rounds, with the batch
on the device and as NumPy arrays. Prints the median microseconds per call.

    .venv/bin/python scripts/check_overhead.py [--rounds 15] [--calls 500]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import jax_softmax as js


def microseconds_per_call(step, params, x, y, lr: float, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        params = step(params, x, y, lr)
    jax.block_until_ready(params)
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x_host = rng.uniform(0, 1, (200, 784)).astype(np.float32)
    y_host = rng.integers(0, 10, 200).astype(np.int32)
    batches = {"device": (jnp.asarray(x_host), jnp.asarray(y_host)), "numpy": (x_host, y_host)}
    params = js.init_params(jax.random.key(0))
    print(f"device: {jax.devices()[0]}; median of {args.rounds} rounds of {args.calls} calls")
    print("| gradient | batch | unchecked us/call | checked us/call | overhead |")
    print("| --- | --- | --- | --- | --- |")
    for grad in ("autodiff", "manual"):
        step = js.make_update(grad)
        for kind, (x, y) in batches.items():
            times = {"unchecked": [], "checked": []}
            for fn in (step, step.__wrapped__):  # compile and warm up
                microseconds_per_call(fn, params, x, y, 0.1, 10)
            for _ in range(args.rounds):
                times["unchecked"].append(
                    microseconds_per_call(step.__wrapped__, params, x, y, 0.1, args.calls)
                )
                times["checked"].append(microseconds_per_call(step, params, x, y, 0.1, args.calls))
            unchecked, checked = (statistics.median(times[k]) for k in ("unchecked", "checked"))
            print(
                f"| {grad} | {kind} | {unchecked:.1f} | {checked:.1f} | "
                f"{checked - unchecked:+.1f} us ({100 * (checked / unchecked - 1):+.1f}%) |"
            )


if __name__ == "__main__":
    main()
