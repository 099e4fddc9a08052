"""Bad input on the command line: one line on stderr, exit status 2, no traceback."""

import concurrent.futures
import os
from pathlib import Path

import jax
import pytest
from helpers import run_cli
from idx_files import write_mnist_like

import jax_softmax as js
from jax_softmax.runs.checkpoint import save_params

# name -> (arguments, what stderr must say); {tmp} is a directory holding the files
# made by _cli_files, {missing} a path that does not exist.
CLI_CASES = {
    "unknown-command": (["fit"], "invalid choice: 'fit'"),
    "no-command": ([], "the following arguments are required: command"),
    "lr-negative": (["train", "--lr", "-0.1"], "--lr: must be a finite number > 0, got -0.1"),
    "lr-inf": (["train", "--lr", "inf"], "--lr: must be a finite number > 0, got inf"),
    "batch-size-zero": (["train", "--batch-size", "0"], "--batch-size: must be an integer >= 1, got 0"),
    "batch-size-negative": (["train", "--batch-size", "-5"], "--batch-size: must be an integer >= 1, got -5"),
    "epochs-negative": (["train", "--epochs", "-3"], "--epochs: must be an integer >= 1, got -3"),
    "l2-negative": (["train", "--l2", "-1"], "--l2: must be a finite number >= 0, got -1"),
    "data-dir-missing": (
        ["train", "--data-dir", "{missing}"],
        "{missing}: not a directory (expected a directory holding the four MNIST IDX files",
    ),
    "data-dir-empty": (
        ["train", "--data-dir", "{tmp}/empty"],
        "neither train-images-idx3-ubyte.gz nor train-images-idx3-ubyte is there (expected",
    ),
    "data-dir-corrupt": (
        ["train", "--data-dir", "{tmp}/corrupt"],
        "train-images-idx3-ubyte.gz: corrupt gzip stream",
    ),
    "evaluate-no-params": (["evaluate"], "the following arguments are required: --params"),
    "evaluate-params-missing": (
        ["evaluate", "--params", "{missing}"],
        "--params {missing}: no such file; pass the checkpoint params.npz",
    ),
    "evaluate-params-not-a-checkpoint": (
        ["evaluate", "--params", "{tmp}/file.txt"],
        "file.txt: not an .npz checkpoint",
    ),
    "evaluate-data-dir-missing": (
        ["evaluate", "--params", "{tmp}/params.npz", "--data-dir", "{missing}"],
        "{missing}: not a directory (expected a directory holding the four MNIST IDX files",
    ),
    "predict-image-missing": (
        ["predict", "--params", "{tmp}/params.npz", "{missing}.png"],
        "{missing}.png: no such file",
    ),
    "predict-params-missing": (
        ["predict", "--params", "{missing}", "digit.png"],
        "--params {missing}: no such file; pass the checkpoint",
    ),
    "diagnose-lr-zero": (["diagnose", "--lr", "0"], "--lr: must be a finite number > 0"),
    "diagnose-data-dir-missing": (
        ["diagnose", "--data-dir", "{missing}"],
        "{missing}: not a directory (expected",
    ),
    "diagnose-unknown-flag": (["diagnose", "--bogus"], "unrecognized arguments: --bogus"),
}


def _cli_files(tmp: Path) -> None:
    (tmp / "empty").mkdir()
    (tmp / "file.txt").write_text("neither a directory nor a checkpoint")
    write_mnist_like(tmp / "corrupt", n_train=20, n_test=5)
    (tmp / "corrupt" / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    save_params(tmp / "params.npz", js.init_params(jax.random.key(0)))


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    """Runs every case at once: each is a fresh interpreter that spends seconds importing JAX."""
    tmp = tmp_path_factory.mktemp("cli")
    _cli_files(tmp)
    fill = {"tmp": str(tmp), "missing": str(tmp / "missing")}
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {
            name: pool.submit(run_cli, *[arg.format(**fill) for arg in args], timeout=120)
            for name, (args, _) in CLI_CASES.items()
        }
        return {
            name: (future.result(), CLI_CASES[name][1].format(**fill)) for name, future in futures.items()
        }


@pytest.mark.parametrize("case", CLI_CASES)
@pytest.mark.slow
def test_bad_command_lines_print_one_line_and_exit_2(cli_results, case):
    result, message = cli_results[case]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert result.stdout == ""
