"""The run directory: start, per-epoch metrics and checkpoint through fit's callback, plots."""

import json
import math

import numpy as np
import pytest
from helpers import blobs
from PIL import Image

import jax_softmax as js
from jax_softmax.data import Mnist, Split
from jax_softmax.runs._directory import (
    RUN_FILES,
    RunExistsError,
    append_metrics,
    epoch_writer,
    read_metrics,
    run_metadata,
    start_run,
    write_plots,
)
from jax_softmax.train import EpochMetrics


def fake_mnist():
    return Mnist(*(Split(*blobs(n, 784, 10, seed)) for n, seed in ((500, 0), (100, 1), (100, 2))))


def test_start_run_refuses_to_mix_runs(tmp_path):
    out = start_run(tmp_path / "a" / "b")
    assert out.is_dir()
    (out / "metrics.jsonl").write_text("{}\n")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RunExistsError, match=r"already holds a run \(metrics.jsonl\)"):
        start_run(out)
    start_run(out, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]  # only the run's own files go
    with pytest.raises(NotADirectoryError):
        start_run(out / "notes.txt")


def test_metrics_lines_round_trip_and_survive_a_cut_off_write(tmp_path):
    path = tmp_path / "metrics.jsonl"
    first = EpochMetrics(epoch=1, train_loss=0.5, val_loss=math.nan, val_accuracy=math.nan, seconds=0.25)
    second = EpochMetrics(epoch=2, train_loss=0.25, val_loss=0.3, val_accuracy=0.9, seconds=0.125)
    append_metrics(path, first)
    append_metrics(path, second)
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {
        "epoch": 1,
        "train_loss": 0.5,
        "val_loss": None,
        "val_accuracy": None,
        "seconds": 0.25,
    }
    read = read_metrics(path)
    assert read[1] == second and read[0].epoch == 1 and math.isnan(read[0].val_loss)
    with open(path, "a") as f:
        f.write('{"epoch": 3, "train_lo')  # a crash in the middle of a line
    assert read_metrics(path) == read
    path.write_text('{"epoch": 1}\n' + lines[1] + "\n")
    with pytest.raises(ValueError, match="line 1: not an epoch record"):
        read_metrics(path)


@pytest.mark.slow
def test_fit_callback_keeps_the_directory_at_the_last_completed_epoch(tmp_path):
    data = fake_mnist()
    metadata = run_metadata({"epochs": 3, "lr": 0.5}, data)
    assert metadata["split"] == {"train": 500, "validation": 100, "test": 100}
    out = start_run(tmp_path)
    write_epoch = epoch_writer(out, metadata)
    seen = []

    def callback(metrics, params):
        write_epoch(metrics, params)
        # What a crash right now would leave: every epoch so far, and this epoch's parameters.
        assert [m.epoch for m in read_metrics(out / "metrics.jsonl")] == list(range(1, metrics.epoch + 1))
        saved, meta = js.load_params(out / "params.npz")
        np.testing.assert_array_equal(np.asarray(saved.w), np.asarray(params.w))
        assert meta["epoch"] == metrics.epoch
        seen.append(metrics.epoch)

    params, history = js.fit(data.train, data.validation, epochs=3, batch_size=50, callback=callback)
    assert seen == [1, 2, 3]
    assert read_metrics(out / "metrics.jsonl") == history.epochs
    saved, meta = js.load_params(out / "params.npz")
    np.testing.assert_array_equal(np.asarray(saved.b), np.asarray(params.b))
    assert meta["training"] == {"epochs": 3, "lr": 0.5}
    assert meta["data_set"] == "MNIST" and meta["pixel_divisor"] == 255.0 and meta["image_shape"] == [28, 28]

    written = write_plots(out, history.epochs, params, data.test)
    assert [p.name for p in written] == ["curves.png", "weights.png", "confusion.png"]
    for path, size in zip(written, [(1000, 400), (1000, 500), (700, 600)], strict=True):
        with Image.open(path) as image:
            assert image.size == size
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)
