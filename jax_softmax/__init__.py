"""Softmax (multinomial logistic) regression on MNIST, in pure JAX functions."""

from jax_softmax import _startup

if _startup.is_command_line():  # before the imports below, which take seconds
    _startup.exit_on_stop_signals("starting")

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
from jax_softmax.plots import plot_confusion, plot_curves, plot_weights, plot_zero_probabilities, save_figure
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
