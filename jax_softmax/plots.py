"""Pictures of a run: learning curves, the learned weight templates, the confusion matrix, and
the collapses of the diagnosis and the zero probabilities of a max-shifted softmax.

Each function returns a ``matplotlib.figure.Figure`` built without pyplot (no GUI
backend, no global figure state); :func:`save_figure` writes one to a PNG file
atomically. matplotlib is an optional dependency: ``pip install 'jax-softmax[plot]'``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from jax.typing import ArrayLike

from jax_softmax.config import DiagnoseConfig
from jax_softmax.model import Params
from jax_softmax.storage import write_atomically

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from jax_softmax._sweep_results import SweepResult
    from jax_softmax.diagnose import Diagnosis
    from jax_softmax.train import EpochMetrics

DPI = 100
INSTALL_HINT = "pip install 'jax-softmax[plot]'"


def require_matplotlib() -> None:
    """Raises ``ImportError`` with the install command when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(f"plotting needs matplotlib, which is not installed: {INSTALL_HINT}") from None


def _figure(width: float, height: float) -> Figure:
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def plot_curves(epochs: Sequence[EpochMetrics], test_accuracy: float | None = None) -> Figure:
    """Training and validation loss, and validation accuracy, against epoch.

    The training loss is the mean of the epoch's mini-batch losses, measured while
    the parameters moved; the validation figures are measured after the epoch.

    Args:
      epochs: the per-epoch metrics of a run (``History.epochs``), in order.
      test_accuracy: if given, drawn as a horizontal line on the accuracy panel.

    Returns:
      A 1000x400-pixel figure with two panels.

    Raises:
      ValueError: for no epochs.
      ImportError: when matplotlib is not installed.
    """
    if len(epochs) == 0:
        raise ValueError("epochs must hold at least one EpochMetrics, got none")
    fig = _figure(10, 4)
    loss_ax, acc_ax = fig.subplots(1, 2)
    n = [m.epoch for m in epochs]
    loss_ax.plot(n, [m.train_loss for m in epochs], "o-", ms=3, label="training (mean over the epoch)")
    loss_ax.plot(n, [m.val_loss for m in epochs], "o-", ms=3, label="validation (after the epoch)")
    loss_ax.set(xlabel="epoch", ylabel="mean negative log-likelihood", title="loss")
    acc_ax.plot(n, [100 * m.val_accuracy for m in epochs], "o-", ms=3, color="C1", label="validation")
    if test_accuracy is not None:
        acc_ax.axhline(100 * test_accuracy, color="C2", ls="--", label=f"test {100 * test_accuracy:.2f}%")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    return fig


def plot_weights(params: Params, image_shape: tuple[int, int] = (28, 28)) -> Figure:
    """Each class's weight vector as an image: the template a linear model matches.

    Red pixels raise the class's score, blue ones lower it; every panel shares one
    colour scale, symmetric about zero, so white is exactly zero.

    Args:
      params: ``w`` ``[num_features, num_classes]`` with ``num_features`` equal to
        ``image_shape[0] * image_shape[1]``.
      image_shape: ``(height, width)`` of an input image.

    Returns:
      A figure of ``num_classes`` panels, five per row, 1000 pixels wide.

    Raises:
      ValueError: when ``w`` does not fit ``image_shape``.
      ImportError: when matplotlib is not installed.
    """
    w = np.asarray(params.w, np.float64)
    if w.ndim != 2 or w.shape[0] != image_shape[0] * image_shape[1]:
        raise ValueError(f"params.w must be [{image_shape[0] * image_shape[1]}, num_classes], got {w.shape}")
    num_classes = w.shape[1]
    cols = min(5, num_classes)
    rows = math.ceil(num_classes / cols)
    fig = _figure(10, 2.3 * rows + 0.4)
    limit = float(np.abs(w).max()) or 1.0
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for k, ax in enumerate(axes):
        ax.set_axis_off()
        if k < num_classes:
            image = ax.imshow(w[:, k].reshape(image_shape), cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_title(f"class {k}")
    fig.colorbar(image, ax=axes.tolist(), shrink=0.8, label="weight")
    fig.suptitle("weights: red raises the class score, blue lowers it")
    return fig


def plot_deskew(images: ArrayLike, count: int = 8) -> Figure:
    """The first ``count`` of ``images`` (``[n, 784]`` or ``[n, 28, 28]``, uint8 or floats) in a
    row, and :func:`jax_softmax.deskew` of them below.

    Raises:
      ValueError: for images of another shape, or none. ImportError: without matplotlib.
    """
    from jax_softmax.data import deskew

    before = np.asarray(images)[:count]
    if len(before) == 0:
        raise ValueError("plot_deskew needs at least one image, got none")
    after = np.asarray(deskew(before.astype(np.float32)))
    fig = _figure(1.25 * len(before), 3.0)
    axes = fig.subplots(2, len(before), squeeze=False)
    for row, (label, shown) in enumerate((("as written", before), ("deskewed", after))):
        for k, ax in enumerate(axes[row]):
            ax.imshow(shown[k].reshape(28, 28), cmap="gray_r")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row][0].set_ylabel(label)
    fig.suptitle("deskewing: each digit sheared upright about its centre of mass")
    return fig


def plot_confusion(confusion: ArrayLike, title: str = "test set") -> Figure:
    """A confusion matrix with its counts written in the cells.

    The colour grows with the square root of the count so that the off-diagonal
    mistakes, tens against the diagonal's hundreds, stay visible.

    Args:
      confusion: ``[num_classes, num_classes]`` non-negative counts, rows the true
        class and columns the predicted one.
      title: what the matrix was measured on.

    Returns:
      A 700x600-pixel figure.

    Raises:
      ValueError: for a matrix that is not square or holds negative counts.
      ImportError: when matplotlib is not installed.
    """
    counts = np.asarray(confusion)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] < 1:
        raise ValueError(f"confusion must be [num_classes, num_classes], got shape {counts.shape}")
    if counts.min() < 0:
        raise ValueError(f"confusion must hold counts >= 0, got {counts.min()}")
    fig = _figure(7, 6)
    from matplotlib.colors import PowerNorm

    k = counts.shape[0]
    norm = PowerNorm(gamma=0.5, vmin=0, vmax=max(int(counts.max()), 1))
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues", norm=norm)
    for i in range(k):
        for j in range(k):
            dark = norm(counts[i, j]) > 0.6
            ax.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if dark else "black",
            )
    ax.set(
        xticks=range(k),
        yticks=range(k),
        xlabel="predicted class",
        ylabel="true class",
        title=f"confusion matrix, {title}: {int(np.trace(counts))} of {int(counts.sum())} correct",
    )
    fig.colorbar(image, ax=ax, label="count (square-root colour scale)")
    return fig


def plot_zero_probabilities(diagnoses: Sequence[Diagnosis]) -> Figure:
    """Validation accuracy, the share of zero true-digit probabilities and the log-likelihood against step.

    Made for a max-shifted softmax against ``log_softmax`` on the same raw pixels: the
    first has most of each batch's true-digit probabilities at exactly 0, and so a
    log-likelihood of ``-inf``, while its accuracy climbs like the second's. A tick
    along the bottom of the log-likelihood panel marks each step where it was not finite.

    Args:
      diagnoses: runs of :func:`jax_softmax.diagnose._diagnosis.diagnose_variant`.

    Returns:
      A 1000x850-pixel figure with three panels sharing a logarithmic step axis.

    Raises:
      ValueError: for no runs.
      ImportError: when matplotlib is not installed.
    """
    if len(diagnoses) == 0:
        raise ValueError("diagnoses must hold at least one Diagnosis, got none")
    fig = _figure(10, 8.5)
    acc_ax, zero_ax, ll_ax = fig.subplots(3, 1, sharex=True)
    for i, d in enumerate(diagnoses):
        color, log = f"C{i % 10}", d.log
        steps = np.arange(1, log.num_steps + 1)
        v = d.variant
        label = f"{v.softmax} softmax, {v.pixels} pixels, {v.sign.replace('_', ' ')} sign, {v.dtype}"
        measured = log.val_steps > 0  # the log scale has no step 0
        acc_ax.plot(
            log.val_steps[measured], 100 * log.val_accuracy[measured], color=color, lw=1.2, label=label
        )
        zero_ax.plot(steps, 100 * log.zero_true_probs / d.config.batch_size, color=color, lw=0.8, label=label)
        finite = np.isfinite(log.log_likelihood)
        ll_ax.plot(steps, np.where(finite, log.log_likelihood, np.nan), color=color, lw=0.8, label=label)
        ll_ax.plot(
            steps[~finite],
            np.full((~finite).sum(), 0.02 + 0.03 * i),
            "|",
            color=color,
            ms=6,
            transform=ll_ax.get_xaxis_transform(),
        )
    config = diagnoses[0].config
    acc_ax.set(ylabel="validation accuracy (%)", ylim=(0, 100))
    acc_ax.set_title(f"Softmax regression on MNIST, batch {config.batch_size}, learning rate {config.lr:g}")
    acc_ax.legend(loc="lower right", fontsize="small")
    zero_ax.set(ylabel="true-digit probabilities\nexactly 0 (% of the batch)", ylim=(-2, 100))
    ll_ax.set_yscale("symlog", linthresh=1.0)
    ll_ax.set_ylim(top=0.5)  # a log-likelihood is at most 0
    ll_ax.set(ylabel="batch log-likelihood\n(| marks -inf)", xlabel="step (log scale)")
    ll_ax.set_xscale("log")
    for ax in (acc_ax, zero_ax, ll_ax):
        ax.grid(alpha=0.3)
    return fig


def plot_diagnosis(diagnoses: Sequence[Diagnosis], path: str | os.PathLike) -> None:
    """Draws log-likelihood and validation accuracy against step for each run, collapses marked.

    The top panel is the batch log-likelihood each run computed (on a symmetric log
    scale, since it spans from -2.3 to minus millions), with a tick along the bottom
    at each step where it was not finite; the bottom panel is the validation accuracy.
    A cross marks each collapse. The file is written atomically (PNG).

    Args:
      diagnoses: runs of :func:`jax_softmax.diagnose._diagnosis.diagnose_variant`.
      path: the PNG file to write.

    Raises:
      ImportError: matplotlib is not installed (the message gives the install command).
    """
    fig = _figure(10, 7.5)
    ll_ax, acc_ax = fig.subplots(2, 1, sharex=True)
    for i, d in enumerate(diagnoses):
        _draw_diagnosis_run(ll_ax, acc_ax, d, color=f"C{i % 10}")
    _label_diagnosis_axes(ll_ax, acc_ax, diagnoses[0].config if diagnoses else DiagnoseConfig())
    save_figure(fig, path)


def _draw_diagnosis_run(ll_ax: Axes, acc_ax: Axes, d: Diagnosis, color: str) -> None:
    """One run's log-likelihood and validation accuracy, its collapse marked with a cross."""
    log, step = d.log, d.verdict.collapse_step
    steps = np.arange(1, log.num_steps + 1)
    finite = np.isfinite(log.log_likelihood)
    ll = np.where(finite, log.log_likelihood, np.nan)
    label = f"{d.variant.name}: {d.verdict.cause or 'no collapse'}"
    ll_ax.plot(steps, ll, color=color, lw=1.0, marker="." if finite.sum() < 20 else None, label=label)
    ll_ax.plot(
        steps[~finite],
        np.zeros((~finite).sum()),
        "|",
        color=color,
        ms=8,
        mew=1.5,
        transform=ll_ax.get_xaxis_transform(),
    )
    measured = log.val_steps > 0  # the log scale has no step 0
    acc_ax.plot(log.val_steps[measured], 100 * log.val_accuracy[measured], color=color, lw=1.0, label=label)
    if step is None:
        return
    at = np.flatnonzero(log.val_steps == step)
    if len(at):
        acc_ax.plot([step], [100 * log.val_accuracy[at[0]]], "x", color=color, ms=11, mew=2)
    before = ll[:step][np.isfinite(ll[:step])]  # the log-likelihood at the collapse, or just before it
    if len(before):
        ll_ax.plot([step], [before[-1]], "x", color=color, ms=11, mew=2)
    for ax in (ll_ax, acc_ax):
        ax.axvline(step, color=color, ls=":", lw=0.8)


def _label_diagnosis_axes(ll_ax: Axes, acc_ax: Axes, config: DiagnoseConfig) -> None:
    """Scales, labels, title and legend of :func:`plot_diagnosis`'s two panels."""
    ll_ax.set_yscale("symlog", linthresh=1.0)
    ll_ax.set_ylabel("batch log-likelihood (mean per image)")
    ll_ax.set_title(
        f"Softmax regression on MNIST, batch {config.batch_size}, learning rate {config.lr:g}: "
        "x marks a collapse, | a non-finite log-likelihood"
    )
    ll_ax.legend(loc="lower left", fontsize="small")
    acc_ax.set_xscale("log")
    acc_ax.set_xlabel("step (log scale)")
    acc_ax.set_ylabel("validation accuracy (%)")
    acc_ax.set_ylim(0, 100)
    for ax in (ll_ax, acc_ax):
        ax.grid(alpha=0.3)


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Writes ``fig`` as a PNG of its own size, atomically (temporary file, then rename)."""
    return write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=fig.dpi))


def plot_sweep(result: SweepResult) -> Figure:
    """Validation accuracy against learning rate, one line per L2 strength.

    With several seeds a line joins the mean over the seeds and each seed is a dot;
    with several batch sizes each has its own line style. Diverged members are left
    out of the lines and drawn as crosses along the bottom; a star marks the chosen one.

    Args:
      result: what :func:`sweep` returned.

    Returns:
      A 900x550-pixel figure (log-scaled learning-rate axis).

    Raises:
      ImportError: when matplotlib is not installed.
    """

    fig = _figure(9, 5.5)
    ax = fig.subplots()
    runs = result.runs
    _draw_sweep_lines(ax, runs)
    diverged = [r for r in runs if r.diverged]
    if diverged:  # crosses along the bottom
        marks = {"color": "black", "ms": 8, "transform": ax.get_xaxis_transform(), "clip_on": False}
        label = f"diverged ({len(diverged)})"
        ax.plot([r.lr for r in diverged], [0.0] * len(diverged), "x", label=label, **marks)
    if result.best is not None:
        best = result.best
        ax.plot([best.lr], [100 * best.val_accuracy], "*", color="gold", mec="black", ms=16, zorder=5)
        test = "" if best.test_accuracy is None else f", test {100 * best.test_accuracy:.2f}%"
        title = (
            f"chosen: lr {best.lr:g}, L2 {best.l2:g}, seed {best.seed}, batch {best.batch_size} "
            f"(validation {100 * best.val_accuracy:.2f}%{test})"
        )
    else:
        title = "every member diverged"
    ax.set_xscale("log")
    ax.set(
        xlabel="learning rate",
        ylabel="validation accuracy (%)",
        title=f"{len(runs)} models, {result.epochs} epochs each\n{title}",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return fig


def _draw_sweep_lines(ax: Axes, runs) -> None:
    """A line of mean validation accuracy per (L2, batch size); each seed a dot when there are several."""
    l2s = sorted({r.l2 for r in runs})
    batch_sizes = sorted({r.batch_size for r in runs})
    styles = ("-", "--", ":", "-.")
    for i, l2 in enumerate(l2s):
        for j, batch_size in enumerate(batch_sizes):
            members = [r for r in runs if r.l2 == l2 and r.batch_size == batch_size and not r.diverged]
            lrs = sorted({r.lr for r in members})
            if not lrs:
                continue
            color = f"C{i % 10}"
            means = [100 * np.mean([r.val_accuracy for r in members if r.lr == lr]) for lr in lrs]
            label = f"L2 {l2:g}" + (f", batch {batch_size}" if len(batch_sizes) > 1 else "")
            ax.plot(lrs, means, styles[j % len(styles)], color=color, marker="o", ms=4, label=label)
            if len({r.seed for r in members}) > 1:
                seeds = ([r.lr for r in members], [100 * r.val_accuracy for r in members])
                ax.plot(*seeds, ".", color=color, alpha=0.4)
