"""--deskew through train, resume, evaluate, predict, sweep and solve: recorded once, applied everywhere."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from idx_files import write_mnist_like

import jax_softmax as js
from jax_softmax.cli import _main as cli
from jax_softmax.data import deskew, deskew_pixels, load_mnist_uint8
from jax_softmax.runs.checkpoint import read_checkpoint, save_params


@pytest.fixture(scope="module")
def small_mnist_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mnist")
    write_mnist_like(directory, n_train=6_040, n_test=30)
    return directory


@pytest.fixture
def small_mnist(small_mnist_files, monkeypatch):
    """MNIST-named IDX files of random digits (40 training, 6,000 validation, 30 test images),
    which the commands read without checking them against the real MNIST's sizes and hashes."""
    for name in ("load_mnist", "load_mnist_uint8"):
        monkeypatch.setattr(js.data, name, functools.partial(getattr(js.data, name), verify=False))
    return small_mnist_files


def train(small_mnist, *flags, capsys):
    status = cli.main(["train", "--data-dir", str(small_mnist), "--batch-size", "20", "--json", *flags])
    out = capsys.readouterr()
    return status, (json.loads(out.out) if out.out.strip() else None), out.err


def test_train_deskew_records_it_and_evaluate_applies_it(small_mnist, tmp_path, capsys):
    run = tmp_path / "run"
    status, result, _ = train(small_mnist, "--epochs", "2", "--deskew", "--out", str(run), capsys=capsys)
    assert status == 0 and result["deskew"] is True
    metadata = read_checkpoint(run / "params.npz")[2]
    assert metadata["preprocessing"] == ["deskew"] and metadata["training"]["deskew"] is True
    assert (
        cli.main(["evaluate", "--params", str(run / "params.npz"), "--data-dir", str(small_mnist), "--json"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["deskew"] is True and report["accuracy"] == result["test_accuracy"]
    status, plain, _ = train(small_mnist, "--epochs", "2", capsys=capsys)
    assert plain["deskew"] is False and plain["epochs"] != result["epochs"]


def test_a_resumed_run_keeps_deskewing(small_mnist, tmp_path, capsys):
    whole, run = tmp_path / "whole", tmp_path / "run"
    _, expected, _ = train(small_mnist, "--epochs", "3", "--deskew", "--out", str(whole), capsys=capsys)
    train(small_mnist, "--epochs", "1", "--deskew", "--out", str(run), capsys=capsys)
    status, resumed, err = train(small_mnist, "--resume", str(run), "--epochs", "3", capsys=capsys)
    assert status == 0 and resumed["deskew"] is True and "--deskew" in err
    assert [e["train_loss"] for e in resumed["epochs"]] == [e["train_loss"] for e in expected["epochs"]]
    plain = tmp_path / "plain"
    train(small_mnist, "--epochs", "1", "--out", str(plain), capsys=capsys)
    status, _, err = train(small_mnist, "--resume", str(plain), "--epochs", "2", "--deskew", capsys=capsys)
    assert status == 2 and "--deskew True conflicts with the run" in err


def test_fit_deskews_through_its_config(small_mnist):
    data = load_mnist_uint8(small_mnist, verify=False, cache=False)
    settings = {"epochs": 2, "batch_size": 20}
    ours, _ = js.fit(data.train, data.validation, deskew=True, uint8_pixels=True, **settings)
    deskewed = [(deskew_pixels(x), y) for x, y in (data.train, data.validation)]
    expected, _ = js.fit(*deskewed, uint8_pixels=True, **settings)
    np.testing.assert_array_equal(ours.w, expected.w)
    floats, _ = js.fit((data.train.x / 255.0, data.train.y), deskew=True, **settings)
    reference, _ = js.fit((np.asarray(deskew(data.train.x / 255.0)), data.train.y), **settings)
    np.testing.assert_array_equal(floats.w, reference.w)
    with pytest.raises(ValueError, match=r"deskew expects images of shape \[n, 784\]"):
        js.fit((np.zeros((4, 3), np.float32), np.arange(4) % 2), deskew=True, batch_size=2, epochs=1)


def test_predict_deskews_for_a_deskewed_model(small_mnist, tmp_path, capsys):
    run = tmp_path / "run"
    train(small_mnist, "--epochs", "1", "--deskew", "--out", str(run), capsys=capsys)
    rows = np.random.default_rng(1).random((3, 784)).astype(np.float32)
    np.save(tmp_path / "rows.npy", rows)
    assert (
        cli.main(["predict", "--params", str(run / "params.npz"), str(tmp_path / "rows.npy"), "--json"]) == 0
    )
    predicted = [p["probabilities"] for p in json.loads(capsys.readouterr().out)["predictions"]]
    params = js.load_params(run / "params.npz").params
    expected = np.asarray(js.class_probabilities(params, deskew(rows)), np.float64)
    np.testing.assert_allclose(predicted, expected, rtol=1e-6)


def test_a_preprocessing_this_version_does_not_know_is_refused(small_mnist, tmp_path, capsys):
    run = tmp_path / "run"
    train(small_mnist, "--epochs", "1", "--out", str(run), capsys=capsys)
    checkpoint = js.load_params(run / "params.npz")
    strange = tmp_path / "strange.npz"
    save_params(strange, checkpoint.params, {**checkpoint.metadata, "preprocessing": ["elastic"]})
    for command in (["evaluate", "--data-dir", str(small_mnist)], ["predict", str(tmp_path / "x.npy")]):
        np.save(tmp_path / "x.npy", np.zeros(784, np.float32))
        assert cli.main([command[0], "--params", str(strange), *command[1:]]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "records the preprocessing 'elastic'" in err, err


def test_solve_deskew_takes_mnist_only(tmp_path, capsys):
    np.savez(tmp_path / "f.npz", x_train=np.eye(4, dtype=np.float32), y_train=np.arange(4) % 2)
    assert cli.main(["solve", "--features", str(tmp_path / "f.npz"), "--deskew", "--C", "1"]) == 2
    assert "the rows of --features are not images" in capsys.readouterr().err


def test_sweep_deskew_trains_on_deskewed_images(small_mnist, capsys):
    flags = [
        "--data-dir",
        str(small_mnist),
        "--epochs",
        "1",
        "--batch-size",
        "20",
        "--lr",
        "0.1",
        "--l2",
        "0",
    ]
    assert cli.main(["sweep", *flags, "--json", "--deskew"]) == 0
    deskewed = json.loads(capsys.readouterr().out)
    assert cli.main(["sweep", *flags, "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert deskewed["runs"][0]["val_loss"] != plain["runs"][0]["val_loss"]
