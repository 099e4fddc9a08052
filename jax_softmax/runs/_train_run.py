"""A training run kept in a directory: locked, trained with every epoch saved, resumable, pictured."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from jax_softmax._process import Interrupted, check_interrupted, interrupts_deferred
from jax_softmax._validation import x64
from jax_softmax.config import TrainConfig
from jax_softmax.data import Mnist, to_features
from jax_softmax.runs._directory import (
    METRICS_FILE,
    PARAMS_FILE,
    RunInUseError,
    RunWriteError,
    epoch_writer,
    lock_run,
    make_run_dir,
    remove_temp_files,
    run_metadata,
    start_run,
    write_plots,
)
from jax_softmax.runs._resume import (
    ResumeError,
    RunState,
    check_same_data,
    load_run,
    merge_flags,
    read_run_metadata,
)
from jax_softmax.runs.checkpoint import save_params
from jax_softmax.train import EpochMetrics, History, fit
from jax_softmax.train.nonfinite import NonFiniteError, learning_warnings


class Progress:
    """What :func:`train_run` tells as it goes; this one says nothing. Subclass to show it."""

    def message(self, text: str) -> None:
        """A line about the run directory: the temporary files a killed save left, removed."""

    def repaired(self, text: str) -> None:
        """A repair of a resumed run's files: the metrics cut back to its checkpoint."""

    def start(self, config: TrainConfig, start_epoch: int) -> None:
        """Training starts after ``start_epoch`` completed epochs."""

    def epoch(self, metrics: EpochMetrics, config: TrainConfig) -> None:
        """An epoch ended (and, with a run directory, is saved there)."""

    def close(self) -> None:
        """Training ended, whichever way."""


@dataclasses.dataclass
class RunResult:
    """What :func:`train_run` returns.

    Attributes:
      params: the parameters after the last epoch (the last finite ones when training
        stopped on a non-finite value: ``history.stopped`` says where and why).
      history: this call's epochs and compilation time (:class:`jax_softmax.train.History`).
      config: the settings trained with (a resumed run's own, with its ``epochs``).
      test: ``(loss, accuracy)`` on the test split.
      epochs: every epoch of the run, those before a resume included.
      out_dir: the run directory, or ``None``.
      written: the files of the run directory, once written.
      resumed_after: the epoch a resumed run continued from, or ``None``.
      warnings: what suggests the run is learning nothing, in words.
      plots_error: why the pictures were not drawn (matplotlib missing), or ``None``.
    """

    params: Any
    history: History
    config: TrainConfig
    test: tuple[float, float]
    epochs: list[EpochMetrics]
    out_dir: Path | None = None
    written: list[Path] = dataclasses.field(default_factory=list)
    resumed_after: int | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    plots_error: str | None = None


class RunInterrupted(Interrupted):
    """SIGINT or SIGTERM stopped :func:`train_run`; ``saved`` epochs are kept in ``out_dir``.

    Attributes:
      saved: the last epoch the run directory holds (0: none), or completed without one.
      epochs: the epochs the run was to train.
      out_dir: the run directory, or ``None``.
    """

    def __init__(self, signum: int, saved: int, epochs: int, out_dir: Path | None):
        super().__init__(signum)
        self.saved, self.epochs, self.out_dir = saved, epochs, out_dir


@dataclasses.dataclass
class _Run:
    """What :func:`train_run` holds between its steps."""

    config: TrainConfig
    out_dir: Path | None
    progress: Progress
    received: Sequence[int]
    state: RunState | None = None
    write_epoch: Callable | None = None
    done: int = 0  # the last completed epoch, saved in out_dir when there is one


def train_run(
    config: TrainConfig,
    data: Callable[[bool], Mnist],
    out_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    given: Collection[str] = (),
    progress: Progress | None = None,
    received: Sequence[int] = (),
    on_exit: list | None = None,
) -> RunResult:
    """Trains on MNIST, keeping every completed epoch in ``out_dir``, or continues such a run.

    ``out_dir`` is locked for the process first (the first write there, so an
    unwritable directory is found before anything else), and the temporary files a
    killed save left are removed. With ``resume``, the run's checkpoint is read once,
    under the lock: its recorded settings replace ``config``'s, but for ``epochs`` and
    any setting named in ``given``, which must agree with the record. After each
    epoch its metrics line is appended and the parameters and optimizer state are
    saved in one atomic file, SIGINT and SIGTERM held back meanwhile; at the end the
    pictures are drawn (when matplotlib is there). In a run of several processes only
    process 0 writes.

    Args:
      config: the training settings; float64 runs in a 64-bit block of its own.
      data: a function of ``deskew`` that returns MNIST as
        :func:`jax_softmax.data.load_mnist_uint8` gives it (deskewed when asked),
        called once ``out_dir`` is locked and a resumed run's settings are known.
      out_dir: the run directory, or ``None`` to keep nothing.
      resume: continue the run in ``out_dir``.
      overwrite: replace a run already in ``out_dir`` (not with ``resume``).
      given: with ``resume``, the settings the caller set explicitly.
      progress: told about the run as it goes (:class:`Progress`).
      received: signals recorded by :func:`jax_softmax._process.raise_on_stop_signals`
        that a library caught and went on from: the run stops at the next epoch.
      on_exit: the lock's release is appended here instead of released on return,
        for a caller that still writes after this returns.

    Returns:
      A :class:`RunResult`.

    Raises:
      RunInterrupted: SIGINT or SIGTERM arrived (a ``KeyboardInterrupt``).
      NonFiniteError: with ``config.on_nonfinite="raise"``; ``saved`` and ``out_dir``
        attributes say what the run directory keeps.
      ResumeError, RunExistsError, RunInUseError, CheckpointError: for a run directory
        that cannot be used as asked, naming why.
      RunWriteError: (an ``OSError``) a file of the run could not be written.
    """
    import jax

    run_dir = None if out_dir is None else Path(out_dir)
    out_dir = None if jax.process_index() > 0 else run_dir  # process 0 writes the run directory
    run = _Run(config, out_dir, progress or Progress(), received)
    if resume and not run_dir.is_dir():  # before the lock, which would create it
        raise ResumeError(f"{run_dir}: no such directory")
    releases: list = []
    try:
        if out_dir is not None:
            _lock(out_dir, run.progress, releases)
        metadata = _resumed_metadata(run, run_dir if resume else None, given)
        mnist = data(run.config.deskew)
        check_interrupted(received)
        _check_batch_size(run.config, mnist)
        if metadata is not None:
            _load(run, run_dir, metadata, mnist)
        if out_dir is not None:
            _open(run, mnist, overwrite, resumed=metadata is not None)
        with x64(run.config.dtype == "float64"):
            return _train(run, mnist)
    finally:
        if on_exit is None:
            for release in releases:
                release()
        else:
            on_exit.extend(releases)


def _lock(out_dir: Path, progress: Progress, releases: list) -> None:
    """Locks the run directory (creating it): the first write there, so an unwritable one fails here."""
    try:
        lock = lock_run(make_run_dir(out_dir))
    except (RunInUseError, NotADirectoryError):
        raise
    except OSError as e:
        raise RunWriteError(
            f"--out {out_dir}: cannot write there ({e.strerror or e}); nothing trained"
        ) from None
    releases.append(lock.release)
    removed = remove_temp_files(out_dir)
    if removed:
        plural = "s" * (len(removed) != 1)
        progress.message(
            f"removed {len(removed)} temporary file{plural} that an interrupted save left in {out_dir}"
        )


def _resumed_metadata(run: _Run, run_dir: Path | None, given: Collection[str]) -> dict | None:
    """The resumed run's metadata, read once, with ``run.config`` taken from it; ``None`` for a new run."""
    if run_dir is None:
        return None
    metadata = read_run_metadata(run_dir)
    recorded = run.config.recorded()
    flags = merge_flags(
        metadata["training"], {name: recorded[name] for name in given if name in recorded}, str(run_dir)
    )
    done = metadata["epoch"]
    if flags["epochs"] <= done:
        raise ResumeError(
            f"--resume {run_dir}: the run has completed {done} of its {flags['epochs']} epochs; "
            f"pass --epochs N with N > {done} to train it further"
        )
    run.config = TrainConfig.from_recorded(
        flags, on_nonfinite=run.config.on_nonfinite, devices=run.config.devices
    )
    return metadata


def _check_batch_size(config: TrainConfig, data: Mnist) -> None:
    n = len(data.train.x)
    if config.batch_size > n:
        raise ValueError(
            f"--batch-size {config.batch_size} is larger than the training set ({n} examples); "
            f"choose at most {n}"
        )


def _load(run: _Run, run_dir: Path, metadata: dict, data: Mnist) -> None:
    """The resumed run's parameters, optimizer state and metrics; only the writer repairs its files."""
    check_same_data(metadata, data, str(run_dir))
    run.state = load_run(run_dir, metadata, repair=run.out_dir is not None)
    run.done = run.state.epoch
    for repair in run.state.repairs:
        run.progress.repaired(repair)


def _open(run: _Run, data: Mnist, overwrite: bool, *, resumed: bool) -> None:
    if not resumed:
        start_run(run.out_dir, overwrite=overwrite)
    run.write_epoch = epoch_writer(run.out_dir, run_metadata(run.config.recorded(), data))


def _train(run: _Run, data: Mnist) -> RunResult:
    state = run.state
    run.progress.start(run.config, run.done)
    try:
        params, history = fit(
            data.train,
            data.validation,
            run.config,
            params=None if state is None else state.params,
            opt_state=None if state is None else state.opt_state,
            start_epoch=run.done,
            checkpoint_callback=_epoch_saver(run),
            uint8_pixels=True,
            deskewed=True,  # the data comes deskewed from its loader, when the config asks
        )
    except KeyboardInterrupt as e:  # SIGINT or SIGTERM (jax_softmax._process.Interrupted)
        import signal

        signum = getattr(e, "signum", signal.SIGINT)
        raise RunInterrupted(signum, run.done, run.config.epochs, run.out_dir) from None
    except NonFiniteError as e:
        e.saved, e.out_dir = run.done, run.out_dir
        raise
    finally:
        run.progress.close()
    return _finish(run, data, params, history)


def _epoch_saver(run: _Run) -> Callable:
    """``fit``'s checkpoint callback: saves the epoch, signals held back meanwhile, and tells of it."""

    def save(metrics: EpochMetrics, params, opt_state) -> None:
        check_interrupted(run.received)  # one that a library caught and went on from
        if run.write_epoch is not None:
            # The save is atomic whatever happens; holding SIGINT and SIGTERM back until it
            # is done makes what is reported on stopping the epoch actually saved.
            with interrupts_deferred():
                run.write_epoch(metrics, params, opt_state)
                run.done = metrics.epoch
        run.done = metrics.epoch
        run.progress.epoch(metrics, run.config)

    return save


def _finish(run: _Run, data: Mnist, params, history: History) -> RunResult:
    """The test figures, the stopped run's last finite parameters and the pictures, and the warnings."""
    import jax

    from jax_softmax.train import evaluation_program

    x, y = jax.device_put((data.test.x, data.test.y))
    test = tuple(float(v) for v in evaluation_program(params, x, y, uint8_pixels=True)(params, x, y))
    epochs = ([] if run.state is None else run.state.metrics) + history.epochs
    result = RunResult(params, history, run.config, test, epochs, run.out_dir)
    result.resumed_after = None if run.state is None else run.state.epoch
    if run.out_dir is not None:
        result.written, result.plots_error = _save_outputs(run, data, params, history, epochs)
    if history.stopped is None:
        result.warnings = _learning_warnings(run.config, params, epochs)
    return result


def _save_outputs(
    run: _Run, data: Mnist, params, history: History, epochs: list
) -> tuple[list[Path], str | None]:
    """The stopped run's last finite parameters, and the plots: the files written, and why
    the plots were not (``None`` when they were)."""
    out_dir, done = run.out_dir, run.done
    if history.stopped is not None:
        metadata = run_metadata(run.config.recorded(), data)
        stopped = {**metadata, "epoch": done, "stopped": history.stopped.to_json()}
        try:
            save_params(out_dir / PARAMS_FILE, params, stopped)
        except OSError as e:
            raise RunWriteError(
                f"could not write {out_dir / PARAMS_FILE} ({e.strerror or e}): the last finite "
                f"parameters are not saved; {out_dir} holds epoch {done}"
            ) from None
    written = [path for path in (out_dir / METRICS_FILE, out_dir / PARAMS_FILE) if path.exists()]
    try:
        test = data.test._replace(x=to_features(data.test.x))
        written += write_plots(out_dir, epochs, params, test) if epochs else []
    except ImportError as e:
        return written, str(e)
    except OSError as e:
        raise RunWriteError(
            f"could not write the plots{' ' + e.filename if e.filename else ''} in {out_dir} "
            f"({e.strerror or e}); the run itself is saved there (epoch {done})"
        ) from None
    return written, None


def _learning_warnings(config: TrainConfig, params, epochs: list) -> list[str]:
    return learning_warnings(
        [m.train_loss for m in epochs],
        epochs[-1].val_accuracy if epochs else float("nan"),
        lr=config.lr,
        l2=config.l2,
        init_scale=config.init_scale,
        num_classes=int(params.w.shape[1]),
    )
