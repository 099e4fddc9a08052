"""``jax-softmax solve``: on a small .npz of features and on MNIST, --json, --out, and one-line errors."""

import json
import re

import numpy as np
import pytest
from helpers import run_cli

import jax_softmax as js
from jax_softmax.cli import build_parser, main
from jax_softmax.solvers import PathPoint


def write_features(path, *, n=600, test=200, features=8, classes=3, seed=0, **extra):
    """Separable-ish clusters with values in [0, 1] (so that ``predict`` takes the rows as .npy)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.2, 0.8, size=(classes, features))

    def draw(count):
        y = rng.integers(0, classes, count)
        return np.clip(centres[y] + rng.normal(0, 0.15, (count, features)), 0, 1).astype(np.float32), y

    (x_train, y_train), (x_test, y_test) = draw(n), draw(test)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test, **extra}
    np.savez(path, **{key: value for key, value in arrays.items() if value is not None})
    return arrays


@pytest.fixture
def features(tmp_path):
    path = tmp_path / "features.npz"
    write_features(path)
    return str(path)


@pytest.fixture
def cli(capsys):
    """``jax-softmax ARGS`` in this process: ``(status, stdout, stderr)``."""

    def run(*args):
        try:
            status = main(list(args))
        except SystemExit as e:  # the parser's errors
            status = e.code
        out, err = capsys.readouterr()
        return status, out, err

    return run


@pytest.mark.slow
def test_json_on_features_holds_the_path_and_the_choice(features):
    # A fresh process: the default float64 switches on 64-bit JAX for all of it.
    result = run_cli("solve", "--features", features, "--json")
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)  # stdout holds exactly one JSON object; the table goes to stderr
    assert "C" in result.stderr.splitlines()[2] and "val acc" in result.stderr
    assert output["dtype"] == "float64" and output["method"] == "newton-cg" and output["max_iter"] == 100
    path = output["path"]
    assert [point["C"] for point in path] == [0.01, 0.1, 1.0, 10.0]
    assert set(path[0]) == set(PathPoint._fields)
    for point in path:
        assert point["converged"] and point["grad_norm"] <= 1e-4
        assert point["l2"] == pytest.approx(1 / (point["C"] * 540))
    accuracies = [point["val_accuracy"] for point in path]
    assert output["chosen"] == max(range(4), key=lambda i: (accuracies[i], -i))
    best = path[output["chosen"]]
    assert (output["C"], output["l2"], output["val_accuracy"]) == (
        best["C"],
        best["l2"],
        best["val_accuracy"],
    )
    assert output["data"] == {
        "source": features,
        "num_classes": 3,
        "num_features": 8,
        "train": 540,
        "validation": 60,
        "test": 200,
        "validation_from": "the last 60 of the 600 training rows (the file has no x_val, y_val)",
    }
    assert output["test_accuracy"] >= 0.95 and 0 < output["test_loss"] < 1
    assert {"val_loss", "solve_seconds", "device", "tol"} <= set(output) and "out" not in output


@pytest.mark.slow
def test_the_table_and_the_choice_are_printed(cli, features, tmp_path):
    arrays = np.load(features)
    with_val = tmp_path / "with_val.npz"
    np.savez(with_val, **arrays, x_val=arrays["x_test"][:50], y_val=arrays["y_test"][:50])
    status, out, err = cli("solve", "--features", str(with_val), "--C", "0.1,1", "--dtype", "float32")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"solving on {with_val}: 600 train, 50 validation, 200 test; 3 classes")
    assert lines[1] == "validation: x_val, y_val in the file"
    assert lines[2].split() == ["C", "l2", "objective", "grad", "norm", "iter", "seconds", "val", "acc"]
    assert [line.split()[0] for line in lines[3:5]] == ["0.1", "1"]
    assert lines[3].split()[-1].endswith("%")
    assert lines[5].startswith("chosen by validation accuracy: C ")
    assert "; test accuracy " in lines[5] and len(lines) == 6 and err == ""


def test_one_C_without_validation_uses_every_training_row(cli, features):
    status, out, err = cli("solve", "--features", features, "--C", "1", "--dtype", "float32", "--json")
    assert status == 0, err
    output = json.loads(out)
    assert output["data"]["train"] == 600 and output["data"]["validation"] is None
    assert output["val_accuracy"] is None and len(output["path"]) == 1
    assert output["C"] == 1.0 and output["l2"] == pytest.approx(1 / 600)


@pytest.mark.slow
def test_l2_values_and_no_test_split(cli, tmp_path):
    path = tmp_path / "train_only.npz"
    write_features(path, x_test=None, y_test=None)
    np.savez(path, **{k: v for k, v in np.load(path).items() if k.endswith("_train")})
    status, out, err = cli("solve", "--features", str(path), "--l2", "0.01,0", "--dtype", "float32", "--json")
    assert status == 0, err
    output = json.loads(out)
    assert [(point["C"], point["l2"]) for point in output["path"]] == [(1 / (0.01 * 540), 0.01), (None, 0.0)]
    assert output["test_accuracy"] is None and output["test_loss"] is None and output["data"]["test"] is None
    status, out, _ = cli("solve", "--features", str(path), "--l2", "0.01,0", "--dtype", "float32")
    assert status == 0 and "test accuracy" not in out and "       inf" in out


def test_out_writes_a_checkpoint_that_predict_reads(cli, features, tmp_path):
    out_dir = tmp_path / "probe"
    status, out, err = cli(
        "solve", "--features", features, "--C", "1", "--dtype", "float32", "--out", str(out_dir)
    )
    assert status == 0, err
    assert out.splitlines()[-1] == f"wrote params.npz to {out_dir}"
    params, metadata = js.load_params(out_dir / "params.npz")
    assert params.w.shape == (8, 3) and metadata["data_set"] == "features"
    assert metadata["solve"]["C"] == 1.0 and metadata["solve"]["method"] == "newton-cg"
    assert metadata["split"] == {"train": 600, "test": 200}
    rows = np.load(features)["x_test"][:5]
    np.save(tmp_path / "rows.npy", rows)
    status, out, err = cli(
        "predict", "--params", str(out_dir / "params.npz"), str(tmp_path / "rows.npy"), "--json"
    )
    assert status == 0, err
    digits = [prediction["digit"] for prediction in json.loads(out)["predictions"]]
    assert digits == np.asarray(js.predict(params, rows)).tolist()
    # evaluate measures on MNIST: a model of 8 features is refused in one line
    status, out, err = cli("evaluate", "--params", str(out_dir / "params.npz"))
    assert status == 2 and "the model takes 8 features, MNIST images have 784" in err
    assert out == "" and len(err.strip().splitlines()) == 1


def test_out_refuses_a_run_already_there_unless_overwrite(cli, features, tmp_path):
    out_dir = str(tmp_path / "probe")
    assert cli("solve", "--features", features, "--C", "1", "--dtype", "float32", "--out", out_dir)[0] == 0
    status, out, err = cli(
        "solve", "--features", features, "--C", "2", "--dtype", "float32", "--out", out_dir
    )
    assert status == 2 and "already holds a run (params.npz); pass --overwrite" in err and out == ""
    assert js.load_params(tmp_path / "probe" / "params.npz").metadata["solve"]["C"] == 1.0
    args = (
        "solve",
        "--features",
        features,
        "--C",
        "2",
        "--dtype",
        "float32",
        "--out",
        out_dir,
        "--overwrite",
    )
    assert cli(*args)[0] == 0
    assert js.load_params(tmp_path / "probe" / "params.npz").metadata["solve"]["C"] == 2.0
    status, _, err = cli("train", "--resume", out_dir)
    assert status == 2 and "not written by 'train --out'" in err
    # Bad input is refused before --overwrite removes anything.
    nan_file = tmp_path / "nan.npz"
    np.savez(nan_file, x_train=np.full((20, 2), np.nan), y_train=np.arange(20) % 2)
    status, _, err = cli(
        "solve", "--features", str(nan_file), "--out", out_dir, "--overwrite", "--dtype", "float32"
    )
    assert status == 2 and "x_train must be finite" in err
    assert js.load_params(tmp_path / "probe" / "params.npz").metadata["solve"]["C"] == 2.0


def test_an_unconverged_point_warns_and_still_succeeds(cli, features):
    args = ("solve", "--features", features, "--C", "1", "--max-iter", "1", "--tol", "1e-12", "--json")
    status, out, err = cli(*args, "--dtype", "float32")
    assert status == 0
    assert json.loads(out)["converged"] is False
    assert re.fullmatch(
        r"jax-softmax solve: warning: C 1 \(l2 0\.00167\): newton-cg stopped after 1 iteration with "
        r"gradient norm [0-9.e-]+, above --tol 1e-12: raise --max-iter, loosen --tol, "
        r"or solve in --dtype float64",
        err.splitlines()[-1],
    ), err


def test_rows_sorted_by_label_are_pointed_out(cli, tmp_path):
    path = tmp_path / "sorted.npz"
    arrays = write_features(path)
    order = np.argsort(arrays["y_train"], kind="stable")
    np.savez(path, x_train=arrays["x_train"][order], y_train=arrays["y_train"][order])
    status, _, err = cli("solve", "--features", str(path), "--dtype", "float32")
    assert status == 0
    assert "warning: the last 60 training rows, held out for validation, hold 1 of the 3 classes" in err
    assert "are the rows sorted by label?" in err


def bad_files(tmp_path):
    """``{name: (file, expected message)}``: one .npz per way a file of features can be wrong."""
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(100, 4)).astype(np.float32), np.arange(100) % 3
    nan = x.copy()
    nan[7, 2] = np.nan
    cases = {
        "nan": ({"x_train": nan, "y_train": y}, "x_train must be finite, got 1 NaN or infinite value"),
        "inf": ({"x_train": x, "y_train": y, "x_test": x * np.inf, "y_test": y}, "x_test must be finite"),
        "float labels": ({"x_train": x, "y_train": y * 1.0}, "y_train must hold integer class labels"),
        "negative label": ({"x_train": x, "y_train": y - 1}, "y_train holds the label -1"),
        "label gap": (
            {"x_train": x, "y_train": y * 2},
            "labels must be 0 to K-1 with every class in y_train",
        ),
        "test label": (
            {"x_train": x, "y_train": y, "x_test": x, "y_test": y + 1},
            "1 of the 4 classes are not",
        ),
        "one class": ({"x_train": x, "y_train": y * 0}, "y_train holds only class 0; at least two"),
        "lengths": ({"x_train": x, "y_train": y[:-1]}, r"y_train must have shape (100,), one label per row"),
        "rank": ({"x_train": x[:, 0], "y_train": y}, "x_train must be [n, num_features]"),
        "label rank": ({"x_train": x, "y_train": y[:, None]}, "y_train must have shape (100,)"),
        "empty": ({"x_train": x[:0], "y_train": y[:0]}, "x_train must be [n, num_features]"),
        "width": (
            {"x_train": x, "y_train": y, "x_val": x[:, :3], "y_val": y},
            "x_val has 3 features per row",
        ),
        "strings": ({"x_train": x.astype(str), "y_train": y}, "x_train must hold real numbers"),
        "no labels": ({"x_train": x}, "has no y_train (it holds: x_train)"),
        "no arrays": ({"w": x}, "has no x_train and no y_train"),
        "half a split": ({"x_train": x, "y_train": y, "y_test": y}, "has y_test but no x_test"),
        "too few rows": ({"x_train": x[:9], "y_train": y[:9]}, "x_train has 9 rows, too few to hold out 10%"),
        "sorted": (
            {"x_train": x, "y_train": np.repeat([0, 1, 2], [50, 40, 10])},
            "holding out the last 10 training rows for validation leaves 1 of the 3 classes without",
        ),
    }
    files = {}
    for name, (arrays, message) in cases.items():
        files[name] = (tmp_path / f"{name.replace(' ', '_')}.npz", message)
        np.savez(files[name][0], **arrays)
    np.save(tmp_path / "one.npy", x)
    (tmp_path / "text.npz").write_text("x_train,y_train\n")
    raw = (tmp_path / "nan.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    np.savez(tmp_path / "objects.npz", x_train=np.array([object()] * 3), y_train=y[:3])
    files["npy"] = (tmp_path / "one.npy", "holds one array (.npy), not an .npz archive")
    files["text"] = (tmp_path / "text.npz", "not an .npz file (not a zip archive")
    files["truncated"] = (tmp_path / "cut.npz", "not a readable .npz file")
    files["pickled"] = (tmp_path / "objects.npz", "x_train cannot be read (Object arrays cannot be loaded")
    files["missing"] = (tmp_path / "nope.npz", "nope.npz: no such file")
    files["directory"] = (tmp_path, "is a directory, not an .npz file")
    return files


def test_each_bad_file_is_one_line_and_status_2(cli, tmp_path):
    for name, (path, message) in bad_files(tmp_path).items():
        status, out, err = cli("solve", "--features", str(path), "--dtype", "float32")
        assert status == 2, f"{name}: {err}"
        assert err.startswith(f"jax-softmax solve: error: --features {path}"), name
        assert message in err, f"{name}: {err}"
        assert len(err.strip().splitlines()) == 1 and out == "", name


@pytest.mark.parametrize(
    "args, message",
    [
        (["--C", "0"], "argument --C: values must hold finite numbers > 0, got 0.0"),
        (["--C", "1,-1"], "argument --C: values must hold finite numbers > 0, got -1.0"),
        (["--C", "1,1"], "argument --C: values must not repeat a value"),
        (["--C", "x"], "argument --C: values: cannot read 'x'"),
        (["--l2", "-0.1"], "argument --l2: values must hold finite numbers >= 0, got -0.1"),
        (["--l2", "nan"], "argument --l2: values must hold finite numbers >= 0, got nan"),
        (["--C", "1", "--l2", "0.1"], "argument --l2: not allowed with argument --C"),
        (["--tol", "0"], "argument --tol: must be a finite number > 0, got 0"),
        (["--tol=-1e-4"], "argument --tol: must be a finite number > 0, got -1e-4"),
        (["--max-iter", "0"], "argument --max-iter: must be an integer >= 1"),
        (["--method", "sgd"], "argument --method: invalid choice: 'sgd'"),
        (["--dtype", "float16"], "argument --dtype: invalid choice"),
    ],
)
def test_bad_flags_are_one_line_and_status_2(cli, features, args, message):
    status, out, err = cli("solve", "--features", features, *args)
    assert status == 2
    assert message in err and err.startswith("jax-softmax solve: ")
    assert len(err.strip().splitlines()) == 1 and out == ""


@pytest.mark.slow
def test_bad_input_in_a_fresh_process_has_no_traceback(tmp_path):
    files = bad_files(tmp_path)
    for name in ("nan", "float labels", "lengths", "truncated"):
        result = run_cli("solve", "--features", str(files[name][0]))
        assert result.returncode == 2 and files[name][1] in result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = run_cli("solve", "--features", str(files["nan"][0]), "--C", "-1")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_the_parser_matches_the_library():
    from jax_softmax.cli._solve import DEFAULT_PATH_TEXT
    from jax_softmax.config import SOLVE_METHODS
    from jax_softmax.solvers import METHODS
    from jax_softmax.solvers._path import DEFAULT_CS

    assert SOLVE_METHODS == tuple(METHODS)
    assert tuple(float(c) for c in DEFAULT_PATH_TEXT.split(",")) == DEFAULT_CS
    parser = build_parser().commands["solve"]
    text = parser.format_help()
    assert "(default: None)" not in text and "(default: False)" not in text
    for action in parser._actions:
        if action.option_strings:
            assert action.help and action.help.count("default") <= 1, action.option_strings


@pytest.mark.slow
def test_a_subset_of_mnist_as_features_is_evaluated_like_a_trained_model(cli, mnist_dir, mnist, tmp_path):
    path = tmp_path / "mnist_part.npz"
    train, test = mnist.train, mnist.test
    np.savez(path, x_train=train.x[:3000], y_train=train.y[:3000], x_test=test.x, y_test=test.y)
    out_dir = tmp_path / "part"
    args = ("--C", "1", "--dtype", "float32", "--json", "--out", str(out_dir))
    status, out, err = cli("solve", "--features", str(path), *args)
    assert status == 0, err
    solved = json.loads(out)
    assert solved["out"] == {"dir": str(out_dir), "files": [str(out_dir / "params.npz")]}
    params = str(out_dir / "params.npz")
    status, out, err = cli("evaluate", "--params", params, "--json", "--data-dir", str(mnist_dir))
    assert status == 0, err
    assert json.loads(out)["accuracy"] == pytest.approx(solved["test_accuracy"], abs=1e-6)
    assert solved["test_accuracy"] > 0.85


@pytest.mark.slow
def test_C_1_on_mnist_reaches_92_percent_and_evaluate_and_predict_take_it(cli, mnist_dir, mnist, tmp_path):
    out_dir = tmp_path / "solved"
    args = ("--data-dir", str(mnist_dir), "--C", "1", "--dtype", "float32", "--json", "--out", str(out_dir))
    status, out, err = cli("solve", *args)
    assert status == 0, err
    solved = json.loads(out)
    assert solved["test_accuracy"] >= 0.92 and solved["converged"]
    assert solved["data"]["train"] == 54000 and solved["data"]["validation"] == 6000
    assert solved["l2"] == pytest.approx(1 / 54000)
    params = str(out_dir / "params.npz")
    metadata = js.load_params(params).metadata
    assert metadata["data_set"] == "MNIST" and metadata["pixel_divisor"] == 255.0
    status, out, err = cli("evaluate", "--params", params, "--json", "--data-dir", str(mnist_dir))
    assert status == 0, err
    assert json.loads(out)["accuracy"] == pytest.approx(solved["test_accuracy"], abs=1e-6)
    np.save(tmp_path / "digits.npy", mnist.test.x[:20])
    status, out, err = cli("predict", "--params", params, str(tmp_path / "digits.npy"), "--json")
    assert status == 0, err
    digits = [prediction["digit"] for prediction in json.loads(out)["predictions"]]
    assert np.mean(np.array(digits) == mnist.test.y[:20]) >= 0.85
    print(f"test accuracy {solved['test_accuracy']:.4f}, solved in {solved['solve_seconds']:.1f} s")


def test_a_missing_mnist_directory_is_one_line(cli):
    status, out, err = cli("solve", "--data-dir", "/nonexistent/mnist", "--dtype", "float32")
    assert status == 2 and out == ""
    assert err.startswith("jax-softmax solve: error: /nonexistent/mnist: not a directory")
    assert len(err.strip().splitlines()) == 1
