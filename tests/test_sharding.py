"""Data parallelism: each batch split over forced host devices, and over two processes.

The device count of a JAX process is fixed when its backend starts, so every check
with several devices runs in a subprocess started with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``. The processes train with
:mod:`distributed_worker` (which also starts them) and are compared with ``fit`` on this process's one device.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from distributed_worker import (
    BATCH_SIZE,
    finish,
    fit_kwargs,
    forced_devices_env,
    free_port,
    start_worker,
    training_data,
)

import jax_softmax as js
from jax_softmax.cli import main

TESTS = Path(__file__).resolve().parent
TIMEOUT = 180


@pytest.fixture(scope="module")
def single_device():
    """``fit`` on this process's one device, for each optimizer the tests use."""
    train, validation = training_data()
    return {
        optimizer: js.fit(train, validation, devices=1, **fit_kwargs(optimizer))
        for optimizer in ("sgd", "momentum")
    }


def max_difference(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


@pytest.mark.slow
def test_four_devices_give_the_single_device_result(tmp_path, single_device):
    out = tmp_path / "four.npz"
    finish([start_worker(out, "--devices", "all,4,2,1", "--optimizers", "sgd,momentum", devices=4)], TIMEOUT)
    result = np.load(out)
    assert int(result["device_count"]) == 4
    for optimizer in ("sgd", "momentum"):
        # By default fit uses every device; 1 keeps the parameters on one device.
        assert [int(result[f"mesh_{optimizer}_{n}"]) for n in ("all", "4", "2", "1")] == [4, 4, 2, 1]
        params, history = single_device[optimizer]
        np.testing.assert_array_equal(result[f"w_{optimizer}_1"], params.w)  # one device of four
        val_loss = [m.val_loss for m in history.epochs]
        for n in ("all", "4", "2"):
            np.testing.assert_allclose(result[f"w_{optimizer}_{n}"], params.w, rtol=0, atol=1e-5)
            np.testing.assert_allclose(result[f"b_{optimizer}_{n}"], params.b, rtol=0, atol=1e-5)
            np.testing.assert_allclose(result[f"val_loss_{optimizer}_{n}"], val_loss, rtol=1e-5)
        differences = {n: max_difference(result[f"w_{optimizer}_{n}"], params.w) for n in ("4", "2")}
        print(f"{optimizer}: largest |w| difference from one device: {differences}", file=sys.stderr)


FOUR_DEVICE_PROGRAM = f"""
import json
from functools import partial

import jax, jax.numpy as jnp
import jax_softmax as js
from jax_softmax.distributed import data_parallel
from jax_softmax.train import train_epoch
from distributed_worker import training_data

parallel = data_parallel()
(x, y), _ = training_data()
params = js.init_params(jax.random.key(0), x.shape[1], 4)
args = parallel.replicate((params, (), jax.random.key(1), x, y, jnp.float32(0.1)))
epoch = partial(train_epoch, batch_size={BATCH_SIZE}, grad="manual", optimizer=None, l2=0.0)
hlo = jax.jit(partial(epoch, batch_sharding=parallel.batch_indices)).lower(*args).compile().as_text()
errors = []
for kwargs in (dict(devices=4, batch_size=42), dict(devices=5), dict(devices=0)):
    try:
        js.fit((x, y), **{{"batch_size": 40, **kwargs}})
    except ValueError as e:
        errors.append(str(e))
print(json.dumps({{"hlo": hlo, "errors": errors}}))
"""


@pytest.mark.slow
def test_each_device_gathers_its_share_and_jit_inserts_the_reduction():
    result = subprocess.run(
        [sys.executable, "-c", FOUR_DEVICE_PROGRAM],
        env=forced_devices_env(4),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    hlo = output["hlo"].splitlines()
    # The partitioned program: each device gathers 40 / 4 = 10 examples of 12 features per
    # step, and the partial gradients are summed across the devices.
    gathers = [line for line in hlo if " gather(" in line and "f32[" in line.split("=")[1]]
    assert gathers and all("f32[10," in line.split("=")[1] for line in gathers), gathers
    assert any("all-reduce(" in line for line in hlo)
    assert output["errors"] == [
        "batch_size must be a multiple of the number of devices, 4, so that each device gets the "
        "same share of every batch, got 42",
        "devices must be at most the 4 devices present (cpu), got 5",
        "devices must be an integer >= 1, got 0",
    ]


@pytest.mark.slow
def test_two_processes_end_with_identical_parameters_equal_to_one_process(tmp_path, single_device):
    coordinator = f"127.0.0.1:{free_port()}"
    outs = [tmp_path / f"process{i}.npz" for i in range(2)]
    processes = [
        start_worker(
            out, "--coordinator", coordinator, "--num-processes", "2", "--process-id", str(i), devices=2
        )
        for i, out in enumerate(outs)
    ]
    finish(processes, TIMEOUT)
    first, second = (np.load(out) for out in outs)
    for result in (first, second):
        assert int(result["process_count"]) == 2 and int(result["device_count"]) == 4
        assert int(result["mesh_sgd_all"]) == 4  # two devices in each process, one mesh
    np.testing.assert_array_equal(first["w_sgd_all"], second["w_sgd_all"])
    np.testing.assert_array_equal(first["b_sgd_all"], second["b_sgd_all"])
    params, history = single_device["sgd"]
    np.testing.assert_allclose(first["w_sgd_all"], params.w, rtol=0, atol=1e-5)
    np.testing.assert_allclose(first["b_sgd_all"], params.b, rtol=0, atol=1e-5)
    np.testing.assert_allclose(first["val_loss_sgd_all"], [m.val_loss for m in history.epochs], rtol=1e-5)
    difference = max_difference(first["w_sgd_all"], params.w)
    print(f"two processes: largest |w| difference from one device {difference:.3g}", file=sys.stderr)


def test_devices_beyond_those_present_is_one_line_and_status_2(capsys):
    assert main(["train", "--devices", "3", "--data-dir", str(TESTS)]) == 2
    err = capsys.readouterr().err
    assert err == "jax-softmax train: error: --devices 3: this machine has 1 device (cpu)\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--coordinator", "localhost"], "--coordinator: must be HOST:PORT"),
        (["--coordinator", "127.0.0.1:99999"], "--coordinator: must be HOST:PORT with a port in [1, 65535]"),
        (["--devices", "0"], "--devices: must be an integer >= 1"),
    ],
)
def test_malformed_device_flags(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--num-processes", "2", "--process-id", "0"],
            "--num-processes and --process-id need --coordinator",
        ),
        (["--coordinator", "127.0.0.1:1234"], "--coordinator, --num-processes and --process-id go together"),
        (
            ["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2"],
            "--process-id must be in [0, 1] for --num-processes 2, got 2",
        ),
    ],
)
def test_inconsistent_process_flags(args, message, capsys, monkeypatch):
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


@pytest.mark.slow
def test_train_command_over_two_processes(mnist_dir, tmp_path):
    """The CLI: the same ``train`` command in two processes; process 0 writes ``--out``."""
    out = tmp_path / "run"
    coordinator = f"127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "jax_softmax", "train", "--data-dir", str(mnist_dir), "--epochs", "1"]
    command += ["--json", "--out", str(out), "--coordinator", coordinator, "--num-processes", "2"]
    processes = [
        subprocess.Popen(
            [*command, "--process-id", str(i)],
            env=forced_devices_env(1),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=TIMEOUT)
            assert process.returncode == 0, stderr
            outputs.append(json.loads(stdout))  # stdout holds the JSON object only
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    first, second = outputs
    assert (first["devices"], first["processes"]) == (second["devices"], second["processes"]) == (2, 2)
    assert first["val_loss"] == second["val_loss"] and first["test_accuracy"] == second["test_accuracy"]
    assert first["test_accuracy"] > 0.88
    assert "out" in first and "out" not in second
    assert (out / "params.npz").is_file()
