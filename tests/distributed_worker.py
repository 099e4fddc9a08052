"""One process of a data-parallel ``fit``, and how to start such processes.

Started by tests/test_sharding.py and by ``scripts/benchmark.py data-parallel``:

    python tests/distributed_worker.py --out results.npz [--devices all,1,4] [--optimizers sgd,adam]
        [--coordinator HOST:PORT --num-processes N --process-id I] [--data-dir MNIST --epochs N] [--solve]

Trains on :func:`training_data` (or, with ``--data-dir``, on MNIST with ``fit``'s
defaults) once for each optimizer and each entry of ``--devices`` (``all``: the
default of ``fit``) and writes, for each, the parameters, the per-epoch validation
losses and the number of devices the parameters live on to ``--out`` (keys
``w_OPTIMIZER_DEVICES`` and so on), with the device and process counts it saw. With
``--solve`` it solves :func:`training_data` to the optimum instead, its rows split over
every device (of every process), and writes ``w_solve``, ``b_solve`` and ``objective_solve``.

The device count of a JAX process is fixed when its backend starts, so a run on
several CPU devices is a process started with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (:func:`start_worker`).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

EPOCHS = 3
SOLVE_L2 = 1e-2
BATCH_SIZE = 40
HERE = Path(__file__).resolve().parent


def training_data(n: int = 480, features: int = 12, classes: int = 4, seed: int = 0):
    """Gaussian clusters: ``(train, validation)`` pairs of float32 ``x`` and int32 ``y``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, size=(classes, features))
    y = rng.integers(0, classes, size=n).astype(np.int32)
    x = (centres[y] + rng.normal(size=(n, features))).astype(np.float32)
    return (x[:400], y[:400]), (x[400:], y[400:])


def fit_kwargs(optimizer: str = "sgd") -> dict:
    lr = 0.1 if optimizer == "sgd" else 0.01
    return dict(
        epochs=EPOCHS, batch_size=BATCH_SIZE, lr=lr, optimizer=optimizer, l2=1e-3, seed=7, num_classes=4
    )


def forced_devices_env(devices: int) -> dict:
    """The environment of a CPU-only process with ``devices`` devices that imports this module."""
    return {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }


def start_worker(out: Path, *args: str, devices: int) -> subprocess.Popen:
    """This module as a process with ``devices`` CPU devices, writing to ``out``; output captured."""
    return subprocess.Popen(
        [sys.executable, str(HERE / "distributed_worker.py"), "--out", str(out), *args],
        env=forced_devices_env(devices),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(processes: list[subprocess.Popen], timeout: float | None) -> None:
    """Waits for every process; kills those left on the way out.

    Raises:
      RuntimeError: with the standard error of the first process that failed.
      subprocess.TimeoutExpired: when one runs longer than ``timeout`` seconds.
    """
    try:
        for process in processes:
            _, err = process.communicate(timeout=timeout)
            if process.returncode != 0:
                raise RuntimeError(f"a worker exited with status {process.returncode}:\n{err}")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data_and_settings(data_dir: str | None, epochs: int | None):
    """The training data and a function from an optimizer's name to the rest of ``fit``'s settings."""
    if data_dir is None:
        return (
            training_data(),
            lambda optimizer: fit_kwargs(optimizer) | ({} if epochs is None else {"epochs": epochs}),
        )
    import jax_softmax as js

    data = js.load_mnist(data_dir)
    return (data.train, data.validation), lambda optimizer: {
        "epochs": epochs or EPOCHS,
        "optimizer": optimizer,
    }


def solve_sharded() -> dict:
    """``js.solve`` in float64 on :func:`training_data` with its rows split over every device."""
    import jax

    import jax_softmax as js
    from jax_softmax.distributed import data_parallel

    jax.config.update("jax_enable_x64", True)
    (x, y), _ = training_data()
    mesh = data_parallel()
    result = js.solve(mesh.shard_rows(x.astype(np.float64)), mesh.shard_rows(y), SOLVE_L2, tol=1e-10)
    try:
        mesh.shard_rows(np.zeros(mesh.num_devices + 1))
        uneven = "accepted"
    except ValueError as e:
        uneven = str(e)
    return {
        "uneven_solve": uneven,
        "w_solve": np.asarray(result.params.w),
        "b_solve": np.asarray(result.params.b),
        "objective_solve": result.objective,
        "data_devices_solve": len(mesh.shard_rows(y).sharding.device_set),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--devices", default="all")
    parser.add_argument("--optimizers", default="sgd")
    parser.add_argument("--coordinator")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    parser.add_argument("--data-dir", help="train on MNIST here, with fit's defaults")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--solve", action="store_true", help="solve to the optimum instead of fit")
    args = parser.parse_args()

    import jax_softmax as js

    if args.coordinator is not None:
        js.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    import jax

    results = {"process_count": jax.process_count(), "device_count": jax.device_count()}
    if args.solve:
        np.savez(args.out, **results, **solve_sharded())
        return
    (train, validation), settings = _data_and_settings(args.data_dir, args.epochs)
    for optimizer in args.optimizers.split(","):
        for entry in args.devices.split(","):
            devices = None if entry == "all" else int(entry)
            params, history = js.fit(train, validation, devices=devices, **settings(optimizer))
            run = f"{optimizer}_{entry}"
            results[f"w_{run}"] = np.asarray(params.w)
            results[f"b_{run}"] = np.asarray(params.b)
            results[f"val_loss_{run}"] = np.array([m.val_loss for m in history.epochs])
            results[f"mesh_{run}"] = len(params.w.sharding.device_set)
    np.savez(args.out, **results)


if __name__ == "__main__":
    main()
