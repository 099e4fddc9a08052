"""train --out, evaluate and predict on the command line, on real MNIST."""

import contextlib
import io
import json
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

import jax_softmax as js
from jax_softmax.cli import main

RUN_FILES = ["metrics.jsonl", "params.npz", "curves.png", "weights.png", "confusion.png"]


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(scope="module")
def run(mnist_dir, tmp_path_factory):
    """A two-epoch run with --out, its stdout a terminal."""
    out = tmp_path_factory.mktemp("run") / "out"
    stdout, stderr = Terminal(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(
            ["train", "--data-dir", str(mnist_dir), "--epochs", "2", "--lr", "0.3", "--out", str(out)]
        )
    assert status == 0, stderr.getvalue()
    return out, stdout.getvalue()


@pytest.mark.slow
def test_train_out_writes_the_run_and_says_where(run):
    out, stdout = run
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)
    assert f"wrote {', '.join(RUN_FILES)} to {out}" in stdout
    assert "2/2" in stdout and "100%" in stdout  # the progress bar, on a terminal
    assert "epoch   2/2  train loss" in stdout  # the epoch lines, written above the bar
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert set(records[0]) == {"epoch", "train_loss", "val_loss", "val_accuracy", "seconds"}
    params, meta = js.load_params(out / "params.npz")
    assert params.w.shape == (784, 10)
    assert meta["epoch"] == 2 and meta["training"]["lr"] == 0.3 and meta["training"]["epochs"] == 2
    assert meta["split"] == {"train": 54000, "validation": 6000, "test": 10000}
    for name, size in [
        ("curves.png", (1000, 400)),
        ("weights.png", (1000, 500)),
        ("confusion.png", (700, 600)),
    ]:
        with Image.open(out / name) as image:
            assert image.size == size
            assert np.asarray(image.convert("L")).std() > 10


@pytest.mark.slow
def test_train_out_with_json_prints_only_json_and_will_not_mix_runs(run, mnist_dir, capsys, monkeypatch):
    out, _ = run
    args = ["train", "--data-dir", str(mnist_dir), "--epochs", "1", "--json", "--out"]
    assert main([*args, str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out} already holds a run" in err and "pass --overwrite" in err
    assert len(err.strip().splitlines()) == 1

    other = out.parent / "again"
    other.mkdir()
    for name in RUN_FILES:  # an older run's files
        (other / name).write_text("old")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if matplotlib were not installed
    assert main([*args, str(other), "--overwrite"]) == 0
    stdout, stderr = capsys.readouterr()
    result = json.loads(stdout)  # nothing but the JSON object
    written = ["metrics.jsonl", "params.npz"]
    assert result["out"] == {"dir": str(other), "files": [str(other / name) for name in written]}
    assert "epoch   1/1" in stderr  # progress went to stderr as plain lines
    assert "plots not written: plotting needs matplotlib" in stderr and "jax-softmax[plot]" in stderr
    assert sorted(p.name for p in other.iterdir()) == written  # no stale pictures from the old run
    assert [json.loads(line)["epoch"] for line in (other / "metrics.jsonl").read_text().splitlines()] == [1]


def test_evaluate_reports_the_saved_model(run, mnist_dir, capsys):
    out, train_stdout = run
    assert (
        main(["evaluate", "--params", str(out / "params.npz"), "--data-dir", str(mnist_dir), "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    confusion = np.array(report["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == 10_000
    assert report["support"] == confusion.sum(axis=1).tolist()
    assert report["accuracy"] == pytest.approx(np.trace(confusion) / 10_000, abs=1e-6)
    train_accuracy = float(train_stdout.split("test accuracy")[1].split("%")[0])
    assert 100 * report["accuracy"] == pytest.approx(train_accuracy, abs=0.006)
    np.testing.assert_allclose(report["recall"], np.diag(confusion) / confusion.sum(axis=1))
    np.testing.assert_allclose(report["precision"], np.diag(confusion) / confusion.sum(axis=0))
    assert 0.1 < report["nll"] < 0.5

    assert main(["evaluate", "--params", str(out / "params.npz"), "--data-dir", str(mnist_dir)]) == 0
    text = capsys.readouterr().out
    assert f"accuracy {100 * report['accuracy']:.2f}%" in text
    assert "confusion matrix (rows: true class, columns: predicted)" in text
    assert len(text.splitlines()) == 1 + 1 + 1 + 1 + 10 + 1 + 2 + 10


def hand_drawn_three(path):
    """A '3' drawn with a thick pen, off-centre on a large white page."""
    page = Image.new("RGB", (600, 450), "white")
    pen = ImageDraw.Draw(page)
    pen.arc([320, 40, 480, 200], start=200, end=90, fill=(10, 10, 40), width=22)
    pen.arc([305, 180, 495, 380], start=270, end=160, fill=(10, 10, 40), width=22)
    page.save(path)
    return path


def test_predict_classifies_a_hand_drawn_digit_and_npy_rows(run, mnist, tmp_path, capsys):
    out, _ = run
    params_file = str(out / "params.npz")
    three = hand_drawn_three(tmp_path / "three.png")
    rows = mnist.test.x[:3]
    np.save(tmp_path / "digits.npy", rows)

    assert main(["predict", "--params", params_file, str(three), str(tmp_path / "digits.npy")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"{three}: 3  (3: ")
    assert lines[1].startswith(f"{tmp_path / 'digits.npy'}[0]: ")

    assert main(["predict", "--params", params_file, str(three), str(tmp_path / "digits.npy"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    predictions = result["predictions"]
    assert [p["input"] for p in predictions] == [str(three)] + [
        f"{tmp_path / 'digits.npy'}[{i}]" for i in range(3)
    ]
    for p in predictions:
        assert len(p["probabilities"]) == 10
        assert sum(p["probabilities"]) == pytest.approx(1.0, abs=1e-5)
        assert p["digit"] == int(np.argmax(p["probabilities"]))
    assert predictions[0]["digit"] == 3
    params = js.load_params(params_file).params
    assert [p["digit"] for p in predictions[1:]] == np.asarray(js.predict(params, rows)).tolist()


def test_bad_input_is_one_line_and_status_2(run, tmp_path, capsys):
    out, _ = run
    (tmp_path / "note.png").write_text("not an image")
    with open(tmp_path / "pickled.npz", "wb") as f:
        np.savez(f, w=np.array([[{}]], dtype=object), b=np.zeros(1), metadata=np.array("{}"))
    cases = [
        (["predict", "--params", str(out / "params.npz"), str(tmp_path / "note.png")], "not an image"),
        (["predict", "--params", str(tmp_path / "pickled.npz"), "x.png"], "pickled object array; refused"),
        (["evaluate", "--params", str(tmp_path / "absent.npz")], "absent.npz: no such file"),
    ]
    for args, message in cases:
        assert main(args) == 2
        stdout, stderr = capsys.readouterr()
        assert stdout == "" and message in stderr and len(stderr.strip().splitlines()) == 1
