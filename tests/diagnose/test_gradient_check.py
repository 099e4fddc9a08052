"""check_gradient and `jax-softmax check-grad`: hand-written gradients, right and wrong, and verdicts."""

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import jax_softmax as js
from jax_softmax.cli import main
from jax_softmax.data import DATA_DIR_ENV, load_mnist_uint8
from jax_softmax.diagnose.gradient_check import GradientCheckError, tolerance

# ---------------------------------------------------------------------------------------
# Hand-written gradients, in NumPy, as a user would write them.


def softmax_minus_onehot(w, b, x, y, dtype=np.float64):
    w, b, x = w.astype(dtype), b.astype(dtype), x.astype(dtype)
    z = x @ w + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return x, p


def correct(w, b, x, y):
    x, delta = softmax_minus_onehot(w, b, x, y)
    return x.T @ delta / len(y), delta.mean(axis=0)


def correct_float32(w, b, x, y):
    x, delta = softmax_minus_onehot(w, b, x, y, np.float32)
    return x.T @ delta / np.float32(len(y)), delta.mean(axis=0)


def correct_jax(w, b, x, y):
    import jax
    import jax.numpy as jnp

    def loss(w, b):
        return -jnp.mean(jax.nn.log_softmax(x @ w + b[None, :])[jnp.arange(len(y)), y])

    return jax.grad(loss, argnums=(0, 1))(w, b)  # float32 JAX arrays: 64-bit JAX is off


def negated(w, b, x, y):
    dw, db = correct(w, b, x, y)
    return -dw, -db


def summed(w, b, x, y):
    x, delta = softmax_minus_onehot(w, b, x, y)
    return x.T @ delta, delta.sum(axis=0)


def halved(w, b, x, y):
    dw, db = correct(w, b, x, y)
    return 0.5 * dw, 0.5 * db


def transposed(w, b, x, y):
    dw, db = correct(w, b, x, y)
    return dw.T, db


def without_db(w, b, x, y):
    return correct(w, b, x, y)[0]


def db_summed(w, b, x, y):
    x, delta = softmax_minus_onehot(w, b, x, y)
    return x.T @ delta / len(y), delta.sum(axis=0)


def dw_summed(w, b, x, y):
    x, delta = softmax_minus_onehot(w, b, x, y)
    return x.T @ delta, delta.mean(axis=0)


def forgot_onehot(w, b, x, y):
    z = x @ w + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return x.T @ p / len(y), p.mean(axis=0)


def slightly_off(w, b, x, y):
    dw, db = correct(w, b, x, y)
    return dw * (1 + 1e-6), db * (1 + 1e-6)


def slightly_off_float32(w, b, x, y):
    dw, db = slightly_off(w, b, x, y)
    return dw.astype(np.float32), db.astype(np.float32)


# ---------------------------------------------------------------------------------------
# The verdicts, on random inputs.


@pytest.mark.parametrize(
    "fn, dtype", [(correct, "float64"), (correct_float32, "float32"), (correct_jax, "float32")]
)
@pytest.mark.slow
def test_a_correct_gradient_passes_in_its_own_dtype(fn, dtype):
    check = js.check_gradient(fn)
    assert check.verdict == "correct" and check.correct and check.dtype == dtype
    assert check.inputs == "random" and check.batch_size == 200
    assert check.relative_error_w <= check.tolerance and check.relative_error_b <= check.tolerance
    assert check.factor == pytest.approx(1.0, rel=check.tolerance)
    assert [(p.batch_size, p.weights) for p in check.points] == [
        (n, w) for n in (1, 7, 200) for w in ("zero", "random")
    ]


def test_the_tolerance_follows_the_returned_dtype():
    # A relative error of 1e-6 is far above float64 rounding and below float32's.
    assert js.check_gradient(slightly_off).verdict != "correct"
    assert js.check_gradient(slightly_off_float32).verdict == "correct"
    assert tolerance(np.dtype("float64")) < 1e-12 and 1e-6 < tolerance(np.dtype("float32")) < 1e-3


def test_negated_is_the_update_that_climbs_the_loss():
    check = js.check_gradient(negated)
    assert check.verdict == "negated" and check.factor == pytest.approx(-1.0)
    assert check.relative_error_w == pytest.approx(2.0) and "climbs the loss" in check.message


def test_a_sum_over_the_batch_is_scaled_by_the_batch_size():
    check = js.check_gradient(summed)
    assert check.verdict == "scaled" and check.factor == pytest.approx(200.0)
    assert "a sum over the batch instead of a mean" in check.message
    assert [p.factor for p in check.points] == pytest.approx([1, 1, 7, 7, 200, 200])


def test_a_constant_factor_is_scaled_with_that_factor():
    check = js.check_gradient(halved)
    assert check.verdict == "scaled" and check.factor == pytest.approx(0.5)
    assert "sum over the batch" not in check.message and "constant factor" in check.message


def test_the_question_s_update_summed_and_negated():
    check = js.check_gradient(lambda w, b, x, y: tuple(-g for g in summed(w, b, x, y)))
    assert check.verdict == "scaled" and check.factor == pytest.approx(-200.0)
    assert "instead of a mean" in check.message and "climbs the loss" in check.message


def test_a_transposed_dw_is_named():
    check = js.check_gradient(transposed)
    assert check.verdict == "transposed" and check.relative_error_w <= check.tolerance
    assert "[10, 784]" in check.message


@pytest.mark.parametrize("fn, words", [(without_db, "db is missing"), (db_summed, "db is wrong")])
def test_dw_right_and_db_wrong_or_missing_is_bias(fn, words):
    check = js.check_gradient(fn)
    assert check.verdict == "bias" and check.relative_error_w <= check.tolerance
    assert words in check.message
    if fn is without_db:
        assert check.relative_error_b is None
    else:
        assert check.relative_error_b == pytest.approx(199.0) and "db[" in check.message


def test_anything_else_is_wrong_and_says_where():
    check = js.check_gradient(forgot_onehot)
    assert check.verdict == "wrong" and check.factor is None
    assert "the largest difference is in" in check.message and "jax.grad gives" in check.message
    # dw a sum, db a mean: no common factor, but the message says what dw alone is.
    check = js.check_gradient(dw_summed)
    assert check.verdict == "wrong" and check.relative_error_b <= check.tolerance
    assert "dw alone is 200 times its gradient (a sum over the batch instead of a mean)" in check.message
    assert "pixel row" in check.message


def test_two_mistakes_are_wrong_and_both_named():
    check = js.check_gradient(lambda w, b, x, y: tuple(-g for g in transposed(w, b, x, y)))
    assert check.verdict == "wrong"
    assert "transposed" in check.message and "-1 times the gradient (negated)" in check.message


def test_half_precision_gets_a_bounded_tolerance():
    def half(w, b, x, y):
        return tuple(g.astype(np.float16) for g in halved(w, b, x, y))

    assert tolerance(np.dtype("float16")) == 0.05
    check = js.check_gradient(half)
    assert (
        check.dtype == "float16"
        and check.verdict == "scaled"
        and check.factor == pytest.approx(0.5, rel=1e-3)
    )


def test_the_function_gets_copies_of_numpy_arrays():
    seen = []

    def mutating(w, b, x, y):
        seen.append((type(w), w.dtype, w.shape, b.shape, x.shape, y.dtype.kind, x.min() >= 0, x.max() <= 1))
        dw, db = correct(w, b, x, y)
        w += 1.0  # must not change the point the reference is computed at
        x *= 2.0
        return dw, db

    assert js.check_gradient(mutating).verdict == "correct"
    assert seen[0] == (np.ndarray, np.float64, (784, 10), (10,), (1, 784), "i", True, True)
    assert [s[4] for s in seen] == [(n, 784) for n in (1, 1, 7, 7, 200, 200)]


# ---------------------------------------------------------------------------------------
# Bad input.


def raises(w, b, x, y):
    return {}["dw"]


@pytest.mark.parametrize(
    "fn, message",
    [
        (raises, re.escape("raises raised KeyError: 'dw' (batch of 1, zero weights)")),
        (
            lambda w, b, x, y: (np.zeros((784, 9)), np.zeros(10)),
            r"dw of shape \(784, 9\), expected \(784, 10\)",
        ),
        (lambda w, b, x, y: (np.zeros((784, 10)), np.zeros(9)), r"db of shape \(9,\), expected \(10,\)"),
        (lambda w, b, x, y: (np.full((784, 10), np.nan), np.zeros(10)), "non-finite values in dw"),
        (lambda w, b, x, y: (np.zeros((784, 10)), np.full(10, np.inf)), "non-finite values in db"),
        (lambda w, b, x, y: (1, 2, 3), "returned 3 values, expected \\(dw, db\\)"),
        (
            lambda w, b, x, y: (np.zeros((784, 10), int), np.zeros(10)),
            "dw of dtype int64, expected a floating",
        ),
    ],
)
def test_a_function_that_cannot_be_checked_is_named(fn, message):
    with pytest.raises(GradientCheckError, match=message):
        js.check_gradient(fn)


def test_bad_inputs_are_named():
    x, y = np.random.default_rng(0).random((300, 784)), np.zeros(300, int)
    with pytest.raises(ValueError, match=r"x must hold pixels in \[0, 1\]"):
        js.check_gradient(correct, x * 255, y)
    with pytest.raises(ValueError, match="at least 200 examples"):
        js.check_gradient(correct, x[:100], y[:100])
    with pytest.raises(ValueError, match="given together"):
        js.check_gradient(correct, x)


# ---------------------------------------------------------------------------------------
# Real MNIST batches.


@pytest.mark.slow
def test_mnist_batches(mnist_dir):
    train = load_mnist_uint8(mnist_dir).train
    check = js.check_gradient(correct_float32, train.x, train.y)  # uint8 pixels, divided by 255
    assert check.inputs == "given" and check.verdict == "correct"
    assert js.check_gradient(negated, train.x, train.y).verdict == "negated"
    assert js.check_gradient(summed, train.x, train.y).factor == pytest.approx(200.0)
    scaled = np.asarray(js.load_mnist(mnist_dir).train.x)  # floats in [0, 1]: the same batches
    assert js.check_gradient(summed, scaled, train.y).factor == pytest.approx(200.0)


# ---------------------------------------------------------------------------------------
# The command line.

GRADIENTS_FILE = textwrap.dedent(
    """
    import numpy as np

    print("imported")  # the module's own output goes to stderr


    def correct(w, b, x, y):
        z = x @ w + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(y)), y] -= 1
        return x.T @ p / len(y), p.mean(axis=0)


    def summed(w, b, x, y):
        dw, db = correct(w, b, x, y)
        return dw * len(y), db * len(y)


    def broken(w, b, x, y):
        return np.linalg.inv(np.zeros((2, 2)))


    LIMIT = 3

    if __name__ == "__main__":
        raise SystemExit("not run on import")
    """
)


@pytest.fixture
def gradients_file(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)  # random inputs: fast, and no data needed
    path = tmp_path / "my_gradients.py"
    path.write_text(GRADIENTS_FILE)
    return path


def cli(capsys, *args):
    status = main(["check-grad", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_exit_status_follows_the_verdict(gradients_file, capsys):
    status, out, err = cli(capsys, f"{gradients_file}:correct", "--json")
    assert status == 0 and "imported" in err
    assert json.loads(out) == {
        "verdict": "correct",
        "relative_error_w": pytest.approx(0, abs=1e-13),
        "relative_error_b": pytest.approx(0, abs=1e-13),
        "factor": pytest.approx(1.0),
        "batch_size": 200,
        "message": json.loads(out)["message"],
    }
    status, out, _ = cli(capsys, f"{gradients_file}:summed", "--json")
    result = json.loads(out)
    assert status == 1 and result["verdict"] == "scaled" and result["factor"] == pytest.approx(200)
    assert "a sum over the batch instead of a mean" in result["message"]
    status, out, _ = cli(capsys, f"{gradients_file}:summed")
    assert status == 1 and out.startswith("scaled: 200 times the gradient")
    assert "random inputs" in out and len(out.splitlines()) == 3 + 6


@pytest.mark.parametrize(
    "target, message",
    [
        (
            "{file}:broken",
            "my_gradients.py:broken raised LinAlgError: Singular matrix (batch of 1, zero weights)",
        ),
        ("{file}:missing", "has no function 'missing'"),
        ("{file}:LIMIT", "LIMIT is not a function but an int"),
        ("{dir}/nothere.py:f", "nothere.py: no such file"),
        ("{file}", "expected FILE.py:FUNCTION"),
        ("{bad}:f", "importing {bad} raised ZeroDivisionError: division by zero"),
    ],
)
def test_cli_bad_input_is_one_line_and_status_2(gradients_file, capsys, target, message):
    bad = gradients_file.with_name("bad.py")
    bad.write_text("x = 1 / 0\n")
    names = {"file": gradients_file, "dir": gradients_file.parent, "bad": bad}
    status, out, err = cli(capsys, target.format(**names))
    assert status == 2 and out == ""
    # One line of error; before it, only what the imported file itself printed.
    lines = [line for line in err.splitlines() if line != "imported"]
    assert len(lines) == 1 and message.format(**names) in lines[0]


@pytest.mark.slow
def test_cli_subprocess_no_traceback_and_help(gradients_file):
    env = {k: v for k, v in os.environ.items() if k != DATA_DIR_ENV}
    run = subprocess.run(
        [sys.executable, "-m", "jax_softmax", "check-grad", f"{gradients_file}:broken"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("jax-softmax check-grad: error:")
    help_text = subprocess.run(
        [sys.executable, "-m", "jax_softmax", "check-grad", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    ).stdout
    assert "imported and run like any Python module" in " ".join(help_text.split())


def test_cli_uses_mnist_batches_from_the_data_dir(gradients_file, mnist_dir, capsys):
    status, out, _ = cli(capsys, f"{gradients_file}:correct", "--data-dir", mnist_dir)
    assert status == 0 and out.startswith("correct: ") and "on MNIST inputs" in out
