"""Softmax (multinomial logistic) regression on MNIST, in pure JAX functions.

The public names below are imported on first use, so that ``import jax_softmax`` (and
each command of the command line) loads only the modules, and the libraries, that it
uses: JAX for training, matplotlib for plots, Pillow for images, optax for optimizers
other than plain SGD.
"""

from __future__ import annotations

from jax_softmax import _startup

if _startup.is_command_line():  # before anything else: importing JAX takes seconds
    _startup.exit_on_stop_signals("starting")

import importlib
import sys
import types
from typing import TYPE_CHECKING

# public name -> module of the package that defines it (or (module, its name there))
_EXPORTS: dict[str, str | tuple[str, str]] = {
    "Checkpoint": "checkpoint",
    "CheckpointError": "checkpoint",
    "load_params": "checkpoint",
    "read_checkpoint": "checkpoint",
    "save_params": "checkpoint",
    "enable_compilation_cache": "compilation_cache",
    "GradientCheck": "gradient_check",
    "check_gradient": "gradient_check",
    "DataNotFoundError": "data",
    "IdxError": "data",
    "Mnist": "data",
    "Split": "data",
    "load_mnist": "data",
    "load_mnist_uint8": "data",
    "read_idx": "data",
    "read_mnist_dir": "data",
    "DiagnoseConfig": "diagnose",
    "Diagnosis": "diagnose",
    "TrainingLog": "diagnose",
    "Variant": "diagnose",
    "Verdict": "diagnose",
    "all_variants": "diagnose",
    "classify_collapse": "diagnose",
    "default_variants": "diagnose",
    "diagnose_variant": "diagnose",
    "format_diagnosis": "diagnose",
    "format_diagnosis_log": "diagnose",
    "plot_diagnosis": "diagnose",
    "run_diagnosis": "diagnose",
    "train_variant": "diagnose",
    "DataParallel": "distributed",
    "data_parallel": "distributed",
    "initialize_distributed": ("distributed", "initialize"),
    "Report": "evaluation",
    "class_probabilities": "evaluation",
    "classification_report": "evaluation",
    "confusion_matrix": "evaluation",
    "autodiff_grad": "gradients",
    "make_optimizer": "gradients",
    "make_update": "gradients",
    "manual_grad": "gradients",
    "load_inputs": "images",
    "preprocess_image": "images",
    "Params": "model",
    "accuracy": "model",
    "init_params": "model",
    "logits": "model",
    "loss": "model",
    "predict": "model",
    "NonFiniteError": "nonfinite",
    "NonFiniteStop": "nonfinite",
    "plot_confusion": "plots",
    "plot_curves": "plots",
    "plot_weights": "plots",
    "plot_zero_probabilities": "plots",
    "save_figure": "plots",
    "append_metrics": "run_dir",
    "epoch_writer": "run_dir",
    "read_metrics": "run_dir",
    "run_metadata": "run_dir",
    "start_run": "run_dir",
    "write_plots": "run_dir",
    "SweepResult": "sweep",
    "SweepRun": "sweep",
    "format_sweep": "sweep",
    "plot_sweep": "sweep",
    "rank_runs": "sweep",
    "sweep": "sweep",
    "EpochMetrics": "train",
    "History": "train",
    "evaluate": "train",
    "fit": "train",
    "shuffled_indices": "train",
    "train_epoch": "train",
}


def __getattr__(name: str):
    try:
        where = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'jax_softmax' has no attribute {name!r}") from None
    module, attribute = (where, name) if isinstance(where, str) else where
    value = getattr(importlib.import_module(f"jax_softmax.{module}"), attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


class _Package(types.ModuleType):
    """The package's module type: ``sweep`` stays the function of that name.

    ``sweep`` names both a function and the module that defines it, and importing the
    module sets the package's attribute to the module; this property, which takes
    precedence over the attribute, keeps ``jax_softmax.sweep`` the function, as an
    eager ``from jax_softmax.sweep import sweep`` here would.
    """

    @property
    def sweep(self):
        from jax_softmax.sweep import sweep

        return sweep

    @sweep.setter
    def sweep(self, module) -> None:  # the import system recording the submodule
        pass


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # what static analysers and IDEs see: the same names, imported eagerly
    from jax_softmax.checkpoint import Checkpoint, CheckpointError, load_params, read_checkpoint, save_params
    from jax_softmax.compilation_cache import enable_compilation_cache
    from jax_softmax.data import (
        DataNotFoundError,
        IdxError,
        Mnist,
        Split,
        load_mnist,
        load_mnist_uint8,
        read_idx,
        read_mnist_dir,
    )
    from jax_softmax.diagnose import (
        DiagnoseConfig,
        Diagnosis,
        TrainingLog,
        Variant,
        Verdict,
        all_variants,
        classify_collapse,
        default_variants,
        diagnose_variant,
        format_diagnosis,
        format_diagnosis_log,
        plot_diagnosis,
        run_diagnosis,
        train_variant,
    )
    from jax_softmax.distributed import DataParallel, data_parallel
    from jax_softmax.distributed import initialize as initialize_distributed
    from jax_softmax.evaluation import Report, class_probabilities, classification_report, confusion_matrix
    from jax_softmax.gradient_check import GradientCheck, check_gradient
    from jax_softmax.gradients import autodiff_grad, make_optimizer, make_update, manual_grad
    from jax_softmax.images import load_inputs, preprocess_image
    from jax_softmax.model import Params, accuracy, init_params, logits, loss, predict
    from jax_softmax.nonfinite import NonFiniteError, NonFiniteStop
    from jax_softmax.plots import (
        plot_confusion,
        plot_curves,
        plot_weights,
        plot_zero_probabilities,
        save_figure,
    )
    from jax_softmax.run_dir import (
        append_metrics,
        epoch_writer,
        read_metrics,
        run_metadata,
        start_run,
        write_plots,
    )
    from jax_softmax.sweep import SweepResult, SweepRun, format_sweep, plot_sweep, rank_runs, sweep
    from jax_softmax.train import EpochMetrics, History, evaluate, fit, shuffled_indices, train_epoch

__version__ = "0.1.0"

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "DataNotFoundError",
    "DataParallel",
    "DiagnoseConfig",
    "Diagnosis",
    "EpochMetrics",
    "GradientCheck",
    "History",
    "IdxError",
    "Mnist",
    "NonFiniteError",
    "NonFiniteStop",
    "Params",
    "Report",
    "Split",
    "SweepResult",
    "SweepRun",
    "TrainingLog",
    "Variant",
    "Verdict",
    "accuracy",
    "all_variants",
    "append_metrics",
    "autodiff_grad",
    "check_gradient",
    "class_probabilities",
    "classification_report",
    "classify_collapse",
    "confusion_matrix",
    "data_parallel",
    "default_variants",
    "diagnose_variant",
    "enable_compilation_cache",
    "epoch_writer",
    "evaluate",
    "fit",
    "format_diagnosis",
    "format_diagnosis_log",
    "format_sweep",
    "init_params",
    "initialize_distributed",
    "load_inputs",
    "load_mnist",
    "load_mnist_uint8",
    "load_params",
    "logits",
    "loss",
    "make_optimizer",
    "make_update",
    "manual_grad",
    "plot_confusion",
    "plot_curves",
    "plot_diagnosis",
    "plot_sweep",
    "plot_weights",
    "plot_zero_probabilities",
    "predict",
    "preprocess_image",
    "rank_runs",
    "read_checkpoint",
    "read_idx",
    "read_metrics",
    "read_mnist_dir",
    "run_diagnosis",
    "run_metadata",
    "save_figure",
    "save_params",
    "shuffled_indices",
    "start_run",
    "sweep",
    "train_epoch",
    "train_variant",
    "write_plots",
]
