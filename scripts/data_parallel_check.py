"""How far data-parallel training on MNIST lands from training on one device.

Trains the same model (``fit`` with the same seed) on one device, on 4 devices of
one process, and on 2 processes of 2 devices each (joined on 127.0.0.1 with JAX's
gloo CPU collectives), each in its own subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count``, and prints the largest
differences of the parameters and of the per-epoch validation losses from the
one-device run, and whether the two processes agree bit for bit.

    .venv/bin/python scripts/data_parallel_check.py --data-dir /path/to/mnist [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def worker(args: argparse.Namespace) -> None:
    import jax_softmax as js

    if args.coordinator is not None:
        js.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    import jax

    data = js.load_mnist(args.data_dir)
    params, history = js.fit(data.train, data.validation, epochs=args.epochs, optimizer=args.optimizer)
    np.savez(
        args.out,
        w=np.asarray(params.w),
        b=np.asarray(params.b),
        val_loss=np.array([m.val_loss for m in history.epochs]),
        devices=len(params.w.sharding.device_set),
        processes=jax.process_count(),
    )


def start(script_args: list[str], devices: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
    }
    return subprocess.Popen([sys.executable, __file__, "--worker", *script_args], env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("JAX_SOFTMAX_DATA_DIR"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--optimizer", default="sgd")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--coordinator", help=argparse.SUPPRESS)
    parser.add_argument("--num-processes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--process-id", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    common = ["--data-dir", str(args.data_dir), "--epochs", str(args.epochs), "--optimizer", args.optimizer]
    with tempfile.TemporaryDirectory() as tmp:
        out = {name: str(Path(tmp) / f"{name}.npz") for name in ("one", "four", "process0", "process1")}
        for name, devices in (("one", 1), ("four", 4)):
            if start([*common, "--out", out[name]], devices).wait():
                sys.exit(f"the {name}-device run failed")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            coordinator = f"127.0.0.1:{s.getsockname()[1]}"
        processes = [
            start(
                [*common, "--out", out[f"process{i}"], "--coordinator", coordinator]
                + ["--num-processes", "2", "--process-id", str(i)],
                devices=2,
            )
            for i in range(2)
        ]
        if any(p.wait() for p in processes):
            sys.exit("the two-process run failed")
        runs = {name: dict(np.load(path)) for name, path in out.items()}

    one = runs["one"]
    print(f"MNIST, {args.optimizer}, batch 200, {args.epochs} epochs; largest difference from one device:")
    print(f"{'run':<26} {'|w|':>9} {'|b|':>9} {'val loss':>9}")
    for name, label in (("four", "4 devices, 1 process"), ("process0", "4 devices, 2 processes")):
        run = runs[name]
        assert int(run["devices"]) == 4, int(run["devices"])
        w, b = (float(np.abs(run[k] - one[k]).max()) for k in ("w", "b"))
        val = float(np.abs(run["val_loss"] - one["val_loss"]).max())
        print(f"{label:<26} {w:9.2e} {b:9.2e} {val:9.2e}")
    same = all(np.array_equal(runs["process0"][k], runs["process1"][k]) for k in ("w", "b"))
    print(f"the two processes' parameters are {'identical' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
