"""Softmax (multinomial logistic) regression on MNIST, in pure JAX functions."""

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
from jax_softmax.gradients import autodiff_grad, make_optimizer, make_update, manual_grad
from jax_softmax.model import Params, accuracy, init_params, logits, loss, predict
from jax_softmax.train import EpochMetrics, History, evaluate, fit

__version__ = "0.1.0"

__all__ = [
    "DataNotFoundError",
    "EpochMetrics",
    "History",
    "IdxError",
    "Mnist",
    "Params",
    "Split",
    "accuracy",
    "autodiff_grad",
    "evaluate",
    "fit",
    "init_params",
    "load_mnist",
    "load_mnist_uint8",
    "logits",
    "loss",
    "make_optimizer",
    "make_update",
    "manual_grad",
    "predict",
    "read_idx",
    "read_mnist_dir",
]
