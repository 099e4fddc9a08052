"""How far data-parallel training on MNIST lands from training on one device.

Trains the same model (``fit`` with the same seed) on one device, on 4 devices of one
process, and on 2 processes of 2 devices each (joined on 127.0.0.1 with JAX's gloo CPU
collectives), each in its own process started by the tests' worker
(tests/distributed_worker.py, the set-up tests/test_sharding.py uses), and reports
the largest differences of the parameters and of the per-epoch validation losses from
the one-device run, and whether the two processes agree bit for bit.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from distributed_worker import finish, free_port, start_worker  # noqa: E402

RUNS = {"four": "4 devices, 1 process", "process0": "4 devices, 2 processes"}


def _train(data_dir: str, epochs: int, optimizer: str, tmp: str) -> dict[str, dict]:
    """The worker's results of the one-device, four-device and two-process runs."""
    common = ["--data-dir", data_dir, "--epochs", str(epochs), "--optimizers", optimizer]
    out = {name: Path(tmp) / f"{name}.npz" for name in ("one", "four", "process0", "process1")}
    for name, devices in (("one", 1), ("four", 4)):
        finish([start_worker(out[name], *common, devices=devices)], timeout=None)
    coordinator = ["--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2"]
    finish(
        [
            start_worker(out[f"process{i}"], *common, *coordinator, "--process-id", str(i), devices=2)
            for i in range(2)
        ],
        timeout=None,
    )
    keys = ("w", "b", "val_loss", "mesh")
    return {name: {k: np.load(path)[f"{k}_{optimizer}_all"] for k in keys} for name, path in out.items()}


def data_parallel(data_dir: str, epochs: int, optimizer: str) -> dict:
    """The largest differences from one device of the 4-device and the two-process runs."""
    with tempfile.TemporaryDirectory() as tmp:
        runs = _train(data_dir, epochs, optimizer, tmp)
    one = runs["one"]
    rows = []
    for name, label in RUNS.items():
        run = runs[name]
        if int(run["mesh"]) != 4:
            raise RuntimeError(f"the run on {label} trained on {int(run['mesh'])} devices")
        rows.append(
            {"run": label} | {k: float(np.abs(run[k] - one[k]).max()) for k in ("w", "b", "val_loss")}
        )
    same = all(np.array_equal(runs["process0"][k], runs["process1"][k]) for k in ("w", "b"))
    return {"optimizer": optimizer, "epochs": epochs, "rows": rows, "processes_identical": same}


def markdown(report: dict) -> list[str]:
    lines = []
    for d in report["data_parallel"]:
        lines += [
            f"MNIST, {d['optimizer']}, batch 200, {d['epochs']} epochs; largest difference from one device:",
            f"{'run':<26} {'|w|':>9} {'|b|':>9} {'val loss':>9}",
        ]
        for r in d["rows"]:
            lines.append(f"{r['run']:<26} {r['w']:9.2e} {r['b']:9.2e} {r['val_loss']:9.2e}")
        lines.append(
            f"the two processes' parameters are {'identical' if d['processes_identical'] else 'DIFFERENT'}"
        )
    return lines
