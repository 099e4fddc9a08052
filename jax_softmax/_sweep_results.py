"""A sweep's results: each member's figures, the ranking that chooses one, and the table."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from jax_softmax.config import SELECT_BY, SelectBy
from jax_softmax.model import Params


@dataclasses.dataclass(frozen=True)
class SweepRun:
    """One member of a sweep and what it measured after its last epoch.

    Attributes:
      lr: learning rate.
      l2: strength of the L2 penalty on the weights.
      seed: seed of the initial weights and of the order of the examples.
      batch_size: examples per step.
      val_accuracy: validation accuracy (NaN for a diverged member).
      val_loss: validation loss, the mean negative log-likelihood (NaN for a diverged member).
      train_loss: mean of the last epoch's mini-batch losses, penalty included.
      diverged: whether the parameters, the validation loss or the last epoch's
        training loss are not finite.
      test_accuracy: test accuracy, for the chosen member only, else ``None``.
      params: the member's parameters after the last epoch.
    """

    lr: float
    l2: float
    seed: int
    batch_size: int
    val_accuracy: float
    val_loss: float
    train_loss: float
    diverged: bool
    test_accuracy: float | None = None
    params: Params | None = dataclasses.field(default=None, repr=False, compare=False)

    def to_json(self) -> dict:
        """The run as ``{"lr", "l2", "seed", "batch_size", "val_accuracy", "val_loss",
        "test_accuracy", "diverged"}``; figures that are not finite become ``None``."""
        return {
            "lr": self.lr,
            "l2": self.l2,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "val_accuracy": _finite_or_none(self.val_accuracy),
            "val_loss": _finite_or_none(self.val_loss),
            "test_accuracy": self.test_accuracy,
            "diverged": self.diverged,
        }


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """What :func:`sweep` found.

    Attributes:
      runs: every member, best first, in the order of the selection (diverged last).
      best: the chosen member, with its ``test_accuracy`` when a test set was given;
        ``None`` when every member diverged.
      select: ``"accuracy"`` or ``"loss"``, what chose the best member.
      epochs: epochs every member trained for.
      seconds: wall time of the whole sweep, compilation and evaluation included.
      compile_seconds: the part of ``seconds`` spent compiling.
    """

    runs: tuple[SweepRun, ...]
    best: SweepRun | None
    select: SelectBy
    epochs: int
    seconds: float
    compile_seconds: float

    @property
    def best_params(self) -> Params | None:
        """The chosen member's parameters, or ``None`` when every member diverged."""
        return None if self.best is None else self.best.params

    def to_json(self) -> dict:
        """``{"runs": [...], "best": {...} or None, "seconds": float}``, runs best first."""
        return {
            "runs": [run.to_json() for run in self.runs],
            "best": None if self.best is None else self.best.to_json(),
            "seconds": self.seconds,
        }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _selection_key(run: SweepRun, position: int, select: SelectBy) -> tuple:
    if run.diverged:
        return (1, 0.0, 0.0, position)
    if select == "loss":
        return (0, run.val_loss, -run.val_accuracy, position)
    return (0, -run.val_accuracy, run.val_loss, position)


def rank_runs(runs: Sequence[SweepRun], select: SelectBy = "accuracy") -> list[SweepRun]:
    """``runs`` best first: by validation accuracy (or loss), ties as the module says, diverged last.

    Args:
      runs: the members, in grid order (the order breaks the last ties).
      select: ``"accuracy"`` or ``"loss"``.

    Raises:
      ValueError: for another ``select``.
    """
    if select not in SELECT_BY:
        raise ValueError(f"select must be one of {SELECT_BY}, got {select!r}")
    order = sorted(range(len(runs)), key=lambda i: _selection_key(runs[i], i, select))
    return [runs[i] for i in order]


def format_number(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) and abs(value) < 1e4 else f"{value:.3g}"


def format_sweep(result: SweepResult) -> str:
    """The runs as a table, best first, the chosen one marked and with its test accuracy."""
    header = (
        f"{'rank':>4}  {'lr':>8}  {'l2':>8}  {'seed':>4}  {'batch':>5}  {'val acc':>8}  "
        f"{'val loss':>8}  {'train loss':>10}  {'test acc':>8}"
    )
    lines = [header]
    for rank, run in enumerate(result.runs, start=1):
        if run.diverged:
            figures = f"{'diverged':>8}  {'-':>8}  {format_number(run.train_loss):>10}  {'':>8}"
        else:
            test = "" if run.test_accuracy is None else f"{100 * run.test_accuracy:.2f}%"
            val = f"{100 * run.val_accuracy:7.2f}%  {run.val_loss:8.4f}"
            figures = f"{val}  {format_number(run.train_loss):>10}  {test:>8}"
        mark = "*" if run is result.best else " "
        line = f"{rank:>3}{mark}  {run.lr:>8g}  {run.l2:>8g}  {run.seed:>4}  {run.batch_size:>5}  {figures}"
        lines.append(line.rstrip())
    return "\n".join(lines)
