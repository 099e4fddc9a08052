"""One process of a data-parallel ``fit``, started by tests/test_sharding.py.

    python tests/distributed_worker.py --out results.npz [--devices all,1,4] [--optimizers sgd,adam]
        [--coordinator HOST:PORT --num-processes N --process-id I]

Trains on :func:`training_data` once for each optimizer and each entry of
``--devices`` (``all``: the default of ``fit``) and writes, for each, the parameters,
the per-epoch validation losses and the number of devices the parameters live on to
``--out`` (keys ``w_OPTIMIZER_DEVICES`` and so on), with the device and process
counts it saw.
"""

from __future__ import annotations

import argparse

import numpy as np

EPOCHS = 3
BATCH_SIZE = 40


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--devices", default="all")
    parser.add_argument("--optimizers", default="sgd")
    parser.add_argument("--coordinator")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    args = parser.parse_args()

    import jax_softmax as js

    if args.coordinator is not None:
        js.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    import jax

    train, validation = training_data()
    results = {"process_count": jax.process_count(), "device_count": jax.device_count()}
    for optimizer in args.optimizers.split(","):
        for entry in args.devices.split(","):
            devices = None if entry == "all" else int(entry)
            params, history = js.fit(train, validation, devices=devices, **fit_kwargs(optimizer))
            run = f"{optimizer}_{entry}"
            results[f"w_{run}"] = np.asarray(params.w)
            results[f"b_{run}"] = np.asarray(params.b)
            results[f"val_loss_{run}"] = np.array([m.val_loss for m in history.epochs])
            results[f"mesh_{run}"] = len(params.w.sharding.device_set)
    np.savez(args.out, **results)


if __name__ == "__main__":
    main()
