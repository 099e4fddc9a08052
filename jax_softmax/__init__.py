"""Softmax (multinomial logistic) regression on MNIST, in pure JAX functions."""

from jax_softmax.checkpoint import Checkpoint, CheckpointError, load_params, read_checkpoint, save_params
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
from jax_softmax.evaluation import Report, class_probabilities, classification_report, confusion_matrix
from jax_softmax.gradients import autodiff_grad, make_optimizer, make_update, manual_grad
from jax_softmax.images import load_inputs, preprocess_image
from jax_softmax.model import Params, accuracy, init_params, logits, loss, predict
from jax_softmax.plots import plot_confusion, plot_curves, plot_weights, save_figure
from jax_softmax.run_dir import (
    append_metrics,
    epoch_writer,
    read_metrics,
    run_metadata,
    start_run,
    write_plots,
)
from jax_softmax.train import EpochMetrics, History, evaluate, fit

__version__ = "0.1.0"

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "DataNotFoundError",
    "EpochMetrics",
    "History",
    "IdxError",
    "Mnist",
    "Params",
    "Report",
    "Split",
    "accuracy",
    "append_metrics",
    "autodiff_grad",
    "class_probabilities",
    "classification_report",
    "confusion_matrix",
    "epoch_writer",
    "evaluate",
    "fit",
    "init_params",
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
    "plot_weights",
    "predict",
    "preprocess_image",
    "read_checkpoint",
    "read_idx",
    "read_metrics",
    "read_mnist_dir",
    "run_metadata",
    "save_figure",
    "save_params",
    "start_run",
    "write_plots",
]
