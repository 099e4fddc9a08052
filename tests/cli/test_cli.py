"""The command line: end to end on real MNIST, --json, and one-line errors."""

import json
import sys

import pytest
from helpers import run_cli

import jax_softmax as js
from jax_softmax.cli import main


@pytest.mark.slow
@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_default_training_reaches_92_percent_on_mnist(mnist_dir, grad, capsys):
    assert main(["train", "--data-dir", str(mnist_dir), "--grad", grad, "--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)  # stdout holds exactly one JSON object
    print(
        f"{grad}: test accuracy {result['test_accuracy']:.4f}, compile {result['compile_seconds']:.2f} s",
        file=sys.stderr,
    )
    assert result["grad"] == grad and result["batch_size"] == 200
    assert len(result["epochs"]) == 20
    assert set(result["epochs"][0]) == {"epoch", "train_loss", "val_loss", "val_accuracy", "seconds"}
    assert result["test_accuracy"] >= 0.92
    assert "epoch  20/20" in err


@pytest.mark.slow
def test_human_output_and_float64(mnist_dir):
    # A subprocess: --dtype float64 switches on 64-bit JAX for the whole process.
    result = run_cli("train", "--data-dir", str(mnist_dir), "--epochs", "1", "--dtype", "float64")
    assert result.returncode == 0, result.stderr
    assert "epoch   1/1" in result.stdout and "test accuracy" in result.stdout
    accuracy = float(result.stdout.split("test accuracy")[1].split("%")[0])
    assert accuracy > 85


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--lr", "0"], "--lr: must be a finite number > 0"),
        (["train", "--lr", "nan"], "--lr: must be a finite number > 0"),
        (["train", "--epochs", "0"], "--epochs: must be an integer >= 1"),
        (["train", "--batch-size", "x"], "--batch-size: invalid integer value"),
        (["train", "--grad", "numeric"], "--grad: invalid choice"),
        (["train", "--bogus"], "unrecognized arguments: --bogus"),
        (["train", "--data-dir", "/nonexistent/mnist"], "/nonexistent/mnist: not a directory"),
    ],
)
@pytest.mark.slow
def test_bad_input_is_one_line_and_status_2(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


@pytest.mark.slow
def test_batch_larger_than_the_training_set(mnist_dir):
    result = run_cli("train", "--data-dir", str(mnist_dir), "--batch-size", "54001")
    assert result.returncode == 2
    assert "larger than the training set (54000 examples)" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "diagnose", "check-grad", "sweep"])
def test_help_shows_each_default_once_and_explains_every_flag(command, capsys):
    from jax_softmax.cli import build_parser

    parser = build_parser().commands[command]
    text = parser.format_help()
    assert "(default: None)" not in text and "(default: False)" not in text
    for action in parser._actions:
        if action.option_strings:
            assert action.help, f"{command} {action.option_strings[0]} has no help"
            assert action.help.count("default") <= 1
    for line in text.splitlines():
        assert line.count("(default") <= 1, line


def test_an_unknown_flag_is_reported_by_its_command():
    result = run_cli("sweep", "--bogus", timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("jax-softmax sweep: error: unrecognized arguments: --bogus")


def test_train_flags_are_the_configs_fields_with_its_defaults():
    from jax_softmax.cli import build_parser
    from jax_softmax.config import RECORDED

    defaults = vars(build_parser().commands["train"].parse_args([]))
    config = js.TrainConfig()
    for name in (*RECORDED, "on_nonfinite"):
        assert defaults[name] == getattr(config, name), name


def test_a_library_bug_keeps_its_traceback_and_bad_input_does_not(monkeypatch, capsys, tmp_path):
    import numpy as np

    import jax_softmax.data

    def broken(*args, **kwargs):
        return np.reshape(np.zeros(3), (2, 2))  # NumPy's own ValueError: a bug, not bad input

    monkeypatch.setattr(jax_softmax.data, "load_mnist_uint8", broken)
    with pytest.raises(ValueError, match="cannot reshape"):
        main(["train", "--epochs", "1"])
    junk = tmp_path / "params.npz"
    junk.write_bytes(b"not a checkpoint")
    assert main(["evaluate", "--params", str(junk)]) == 2  # the package's own check
    assert str(junk) in capsys.readouterr().err
