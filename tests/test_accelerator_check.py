"""The accelerator check's ``--quick`` run on the CPU, so the script cannot rot between GPU runs."""

import json
import os
import subprocess
import sys

import pytest
from helpers import REPO


@pytest.mark.slow
def test_quick_run_writes_every_part(mnist_dir, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [
            sys.executable,
            "scripts/accelerator_check.py",
            "--quick",
            "--data-dir",
            str(mnist_dir),
            "--out",
            str(out),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "accelerator_check.json").read_text())

    assert report["environment"]["devices"] and report["environment"]["jax"]
    grads = report["gradients"]
    assert grads["passed"] and "passed" in grads["summary"]
    for device in report["environment"]["devices"]:
        errors = grads["max_relative_error"][f"{device['platform']}:{device['id']}"]
        assert 0 < errors["float32"] <= 1e-6 and 0 < errors["float64"] <= 1e-12

    timed = [row for row in report["epochs"] if "ms_per_epoch" in row]
    assert {row["grad"] for row in timed} == {"autodiff", "manual"}
    assert {row["batch_size"] for row in timed} >= {200}
    assert all(row["ms_per_epoch"] > 0 for row in timed)

    runs = report["train"]
    assert [row["cache"] for row in runs] == ["empty", "filled"]
    assert all(row["exit_code"] == 0 and row["test_accuracy"] > 0.85 for row in runs)
    assert runs[0]["test_accuracy"] == runs[1]["test_accuracy"]

    sweep = [row for row in report["sweep"]["rows"] if "models_per_s" in row]
    assert [row["models"] for row in sweep][:2] == [1, 4]
    assert sweep[1]["models_per_s"] > sweep[0]["models_per_s"]

    table = (out / "accelerator_check.md").read_text()
    assert "largest relative error" in table and "models / s" in table
