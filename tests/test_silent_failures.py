"""Runs that would learn nothing without a word, and inputs that would fail without naming themselves."""

import errno
import json
import math
import warnings

import jax
import numpy as np
import optax
import pytest
from PIL import Image, ImageDraw

import jax_softmax as js
from jax_softmax import _validation as validation
from jax_softmax.cli import _main as cli
from jax_softmax.cli._train import format_loss
from jax_softmax.data.images import MAX_IMAGE_PIXELS, load_inputs
from jax_softmax.runs import checkpoint as checkpoint_module
from jax_softmax.train.nonfinite import describe_stop, learning_warnings


def pixels(n=300, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 784)).astype(np.uint8), rng.integers(0, 10, n)


# ---------------------------------------------------------------------------------------
# Raw 0-255 pixels


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.slow
def test_fit_warns_once_about_raw_pixels_naming_the_fix(dtype):
    x, y = pixels()
    with pytest.warns(
        validation.RawPixelsWarning, match=r"train x looks like raw 0-255 pixels.*divide by 255"
    ) as w:
        js.fit((x.astype(dtype), y), epochs=2, batch_size=50)
    assert len([r for r in w if issubclass(r.category, validation.RawPixelsWarning)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", validation.RawPixelsWarning)
        js.fit((x / 255.0, y), epochs=1, batch_size=50)  # scaled: no warning


def test_the_checked_step_warns_once_about_raw_pixels():
    x, y = pixels(20)
    adam = optax.adam(0.1)
    step = js.make_update("autodiff", adam)
    params = js.init_params(jax.random.key(0))
    state = adam.init(params)
    with pytest.warns(validation.RawPixelsWarning, match=r"x looks like raw 0-255 pixels") as w:
        for _ in range(3):
            params, state = step(params, state, x, y)
    assert len(w) == 1
    sgd = js.make_update("manual")
    with warnings.catch_warnings():
        warnings.simplefilter("error", validation.RawPixelsWarning)
        sgd(params, x / 255.0, y, 0.1)
        step.__wrapped__(params, state, x, y)  # the unchecked step checks nothing
    assert not validation.looks_like_raw_pixels(np.zeros((2, 784)) - 3.0)
    assert not validation.looks_like_raw_pixels(np.full((2, 784), 1000.0))


def test_an_empty_split_is_refused_by_name():
    x, y = pixels()
    with pytest.raises(ValueError, match=r"the train split is empty \(x has shape \(0, 784\)\)"):
        js.fit((x[:0] / 255.0, y[:0]))
    with pytest.raises(ValueError, match=r"the validation split is empty"):
        js.fit((x / 255.0, y), (x[:0] / 255.0, y[:0]), batch_size=50)


# ---------------------------------------------------------------------------------------
# Divergence, chance accuracy, and the L2 strength named


def test_learning_warnings_name_the_cause():
    # --lr 1e30: the first epoch's mean is already huge, and the accuracy is not at chance.
    rose = learning_warnings([4.16e29, 1.85e29], 0.857, lr=1e30, l2=0.0, init_scale=0.01, num_classes=10)
    assert rose == [
        "divergence: the training loss ended at 1.85e+29, far above the 2.3 it started from; the cause "
        "is the learning rate 1e+30: lower --lr (try 1e+29)"
    ]
    both = learning_warnings([2.3, 50.0, 2e29], 0.1, lr=1e30, l2=0.0, init_scale=0.01, num_classes=10)
    assert len(both) == 2 and "validation accuracy is 10.0%, chance level for 10 classes" in both[1]
    l2 = learning_warnings([2.3, 90.0], 0.5, lr=0.5, l2=100.0, init_scale=0.01, num_classes=10)
    assert l2 == [
        "divergence: the training loss ended at 90, far above the 2.3 it started from; the cause is the L2 "
        "strength 100 with learning rate 0.5 (lr * l2 = 50 > 2, so every step grows the weights): lower "
        "--l2 below 4"
    ]
    # lr * l2 = 5, but a tenfold lower learning rate (the advice) cures it.
    lr = learning_warnings([2.3, 90.0], 0.5, lr=0.5, l2=10.0, init_scale=0.01, num_classes=10)
    assert lr[0].endswith("the cause is the learning rate 0.5: lower --lr (try 0.05)")
    assert learning_warnings([2.3, 9.0], 0.5, lr=0.5, l2=0.0, init_scale=0.01, num_classes=10) == []
    init = learning_warnings([3e30, 2e30], 0.13, lr=0.5, l2=0.0, init_scale=1e30, num_classes=10)
    assert init == [
        "the validation accuracy is 13.0%, chance level for 10 classes; the likely cause is the initial "
        "scale 1e+30: the first loss was already 3e+30; use --init-scale 0.01 (or 0)"
    ]
    tiny = learning_warnings([2.3026, 2.3026], 0.13, lr=1e-30, l2=0.0, init_scale=0.01, num_classes=10)
    assert tiny == [
        "the validation accuracy is 13.0%, chance level for 10 classes; the likely cause is the learning "
        "rate 1e-30, too small to move the loss (2.303): raise --lr"
    ]
    assert learning_warnings([2.3, 0.3], 0.92, lr=0.5, l2=0.0, init_scale=0.01, num_classes=10) == []
    assert learning_warnings([2.3, 0.3], math.nan, lr=0.5, l2=0.0, init_scale=0.01, num_classes=10) == []


def test_a_non_finite_stop_caused_by_l2_names_the_l2_strength():
    losses = np.array([2.3, 1e20, np.inf])
    stop = describe_stop(
        epoch=1,
        step=3,
        losses=losses,
        start_loss=2.3,
        previous_loss=math.nan,
        lr=0.5,
        dtype="float32",
        l2=1e10,
    )
    assert (
        "Lower the L2 strength (it is 1e+10; with learning rate 0.5 it must stay below 2 / lr = 4"
        in stop.message()
    )
    assert "Lower the learning rate" not in stop.message()
    assert stop.to_json()["l2"] == 1e10
    plain = describe_stop(
        epoch=1, step=3, losses=losses, start_loss=2.3, previous_loss=math.nan, lr=1e4, dtype="float32"
    )
    assert "Lower the learning rate (it is 10000; try 1000)" in plain.message()


def test_losses_print_readably():
    assert format_loss(0.26571) == "0.2657"
    assert format_loss(2.0400001e29) == "2.04e+29"
    assert format_loss(12345.678) == "1.23e+04"
    assert format_loss(math.nan) == "nan"


# ---------------------------------------------------------------------------------------
# Seeds


@pytest.mark.parametrize("seed", [str(2**70), "4294967296", "-1", "1.5", "x"])
def test_seeds_outside_32_bits_are_refused_in_one_line(seed, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--seed", seed])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--seed: must be an integer" in err and seed in err


def test_fit_refuses_seeds_that_would_repeat_another_run():
    x, y = pixels(100)
    for seed in (2**32, -1, 2**70, True, 1.5):
        with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32 - 1\]"):
            js.fit((x / 255.0, y), seed=seed)


# ---------------------------------------------------------------------------------------
# I/O errors: the file named, what was saved, exit status 3


@pytest.mark.slow
def test_a_full_disk_names_the_file_and_what_the_run_holds(mnist_dir, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    real = checkpoint_module.write_atomically
    saves = []

    def full_after_two(path, write):
        saves.append(path)
        if len(saves) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, write)

    monkeypatch.setattr(checkpoint_module, "write_atomically", full_after_two)
    status = cli.main(
        ["train", "--data-dir", str(mnist_dir), "--batch-size", "27000", "--epochs", "5", "--out", str(run)]
    )
    err = capsys.readouterr().err
    assert status == 3
    assert err.strip() == (
        f"jax-softmax train: error: could not write {run / 'params.npz'} (No space left on device); "
        f"{run} holds epoch 2, the last saved"
    )
    assert js.load_params(run / "params.npz").metadata["epoch"] == 2


def test_an_unwritable_out_is_found_before_training(tmp_path, capsys, monkeypatch):
    from jax_softmax.runs import _train_run

    def read_only(out_dir):
        raise PermissionError(errno.EACCES, "Permission denied", str(out_dir))

    monkeypatch.setattr(_train_run, "lock_run", read_only)
    monkeypatch.setattr(
        js.data, "load_mnist", lambda *a, **k: pytest.fail("loaded data before --out was checked")
    )
    status = cli.main(["train", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 3
    assert err.strip() == (
        f"jax-softmax train: error: --out {tmp_path / 'run'}: cannot write there (Permission denied); "
        "nothing trained"
    )


def test_exit_statuses_are_documented_in_the_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "2 bad input" in out and "3 a file could not be written" in out and "143 terminated by SIGTERM" in out
    )


# ---------------------------------------------------------------------------------------
# Images


@pytest.fixture
def checkpoint(tmp_path):
    return js.save_params(
        tmp_path / "params.npz", js.init_params(jax.random.key(0)), {"pixel_divisor": 255.0}
    )


def test_an_image_over_the_size_limit_is_refused_from_its_header(tmp_path, monkeypatch):
    big = tmp_path / "big.png"
    Image.new("L", (300, 200), 255).save(big)
    monkeypatch.setattr(js.data.images, "MAX_IMAGE_PIXELS", 50_000)

    def no_decoding(image):
        pytest.fail("decoded an image over the limit")

    monkeypatch.setattr(js.data.images, "_grey_from_pil", no_decoding)
    with pytest.raises(
        ValueError, match=rf"{big}: too large: 300x200 pixels \(60,000\), the limit is 50,000"
    ):
        load_inputs(big)
    assert MAX_IMAGE_PIXELS == 50_000_000


def test_predict_names_each_failed_file_and_classifies_the_others(tmp_path, checkpoint, capsys):
    digit = tmp_path / "one.png"
    image = Image.new("L", (60, 60), 255)
    ImageDraw.Draw(image).line((30, 5, 30, 55), fill=0, width=6)
    image.save(digit)
    blank = tmp_path / "blank.png"
    Image.new("L", (50, 50), 255).save(blank)
    missing = tmp_path / "missing.png"
    status = cli.main(["predict", "--params", str(checkpoint), str(blank), str(digit), str(missing)])
    out, err = capsys.readouterr()
    assert status == 2
    assert out.startswith(f"{digit}: ") and out.count("\n") == 1
    assert err.splitlines() == [
        f"jax-softmax predict: error: {blank}: image has no digit: its lightest level is 0.000 against a "
        "background of 0.000 (after inverting it)",
        f"jax-softmax predict: error: {missing}: no such file",
        "jax-softmax predict: 2 of 3 files could not be classified",
    ]
    status = cli.main(["predict", "--json", "--params", str(checkpoint), str(digit), str(missing)])
    out, _ = capsys.readouterr()
    result = json.loads(out)
    assert status == 2
    assert [p["input"] for p in result["predictions"]] == [str(digit)]
    assert result["errors"] == [{"input": str(missing), "error": f"{missing}: no such file"}]
