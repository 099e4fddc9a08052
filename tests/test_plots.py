"""Plots: each returns a Figure of the stated size that draws something, and saves as PNG."""

import sys

import numpy as np
import pytest
from PIL import Image

import jax_softmax as js
from jax_softmax import plots
from jax_softmax.train import EpochMetrics

EPOCHS = [
    EpochMetrics(epoch=e, train_loss=1 / e, val_loss=1.2 / e, val_accuracy=0.8 + e / 100, seconds=0.1)
    for e in range(1, 6)
]


def params(num_classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return js.Params(w=rng.normal(size=(784, num_classes)), b=np.zeros(num_classes))


def confusion():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 30, size=(10, 10))
    np.fill_diagonal(counts, 900)
    return counts


def assert_picture(path, size):
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == size
        pixels = np.asarray(image.convert("RGB")).astype(np.int64)
    colours = np.unique(pixels.reshape(-1, 3) @ np.array([1, 256, 65536]))
    assert len(colours) > 50, "the picture is blank or nearly so"
    assert pixels.std() > 10


@pytest.mark.parametrize(
    "make, size",
    [
        (lambda: plots.plot_curves(EPOCHS, test_accuracy=0.83), (1000, 400)),
        (lambda: plots.plot_curves(EPOCHS[:1]), (1000, 400)),
        (lambda: plots.plot_weights(params()), (1000, 500)),
        (lambda: plots.plot_weights(params(3)), (1000, 270)),
        (lambda: plots.plot_confusion(confusion()), (700, 600)),
    ],
)
def test_figures_save_as_pictures_of_their_size(tmp_path, make, size):
    fig = make()
    assert tuple(np.round(fig.get_size_inches() * fig.dpi).astype(int)) == size
    path = plots.save_figure(fig, tmp_path / "plot.png")
    assert_picture(path, size)
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_weights_share_a_colour_scale_centred_on_zero():
    w = params().w
    fig = plots.plot_weights(js.Params(w=w, b=np.zeros(10)))
    images = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    assert len(images) == 10
    limit = np.abs(w).max()
    for image in images:
        assert image.get_clim() == (-limit, limit)
    np.testing.assert_array_equal(images[3].get_array(), w[:, 3].reshape(28, 28))


def test_confusion_writes_every_count():
    counts = confusion()
    ax = plots.plot_confusion(counts).axes[0]
    texts = sorted(int(t.get_text()) for t in ax.texts)
    assert texts == sorted(counts.ravel().tolist())
    assert "9000 of" in ax.get_title()


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="at least one EpochMetrics"):
        plots.plot_curves([])
    with pytest.raises(ValueError, match=r"params.w must be \[784, num_classes\], got \(10, 3\)"):
        plots.plot_weights(js.Params(w=np.zeros((10, 3)), b=np.zeros(3)))
    with pytest.raises(ValueError, match="confusion must be"):
        plots.plot_confusion(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="counts >= 0"):
        plots.plot_confusion(-np.eye(3))


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(ImportError, match=r"plotting needs matplotlib.*pip install 'jax-softmax\[plot\]'"):
        plots.plot_curves(EPOCHS)
