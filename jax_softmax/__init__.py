"""Softmax (multinomial logistic) regression on MNIST, in pure JAX functions.

The public names below are imported on first use, so that ``import jax_softmax`` (and
each command of the command line: ``--help`` and a bad flag never import JAX) loads
only the modules, and the libraries, that it uses. Measured on a 2-core machine:
``import jax_softmax`` takes 0.05-0.09 s this way, and 2.9-4.1 s with every public
name imported at once (JAX, optax, matplotlib). The layout of the package:
``docs/architecture.md``.
"""

from __future__ import annotations

from jax_softmax import _process

if _process.is_command_line():  # before anything else: the imports take a moment
    _process.exit_on_stop_signals("starting")
    _process.pause_collector()

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module of the package that defines it (or (module, its name there)).
# Everything else is importable from its module: jax_softmax.data.Mnist, jax_softmax.plots, ...
_EXPORTS: dict[str, str | tuple[str, str]] = {
    # the model and its gradient
    "Params": "model",
    "init_params": "model",
    "logits": "model",
    "loss": "model",
    "predict": "model",
    "accuracy": "model",
    "manual_grad": "gradients",
    "autodiff_grad": "gradients",
    "manual_hvp": "gradients",
    "make_update": "gradients",
    # training
    "TrainConfig": "config",
    "fit": "train",
    "evaluate": "evaluation",
    "NonFiniteError": "train.nonfinite",
    "sweep": "sweeps",
    "solve": "solvers",
    "SolveResult": "solvers",
    "LogisticRegression": "solvers.estimator",  # needs scikit-learn: pip install jax-softmax[sklearn]
    "initialize_distributed": ("distributed", "initialize"),
    # data and checkpoints
    "load_mnist": "data",
    "IdxError": "data",
    "deskew": "data",
    "save_params": "runs.checkpoint",
    "load_params": "runs.checkpoint",
    "CheckpointError": "runs.checkpoint",
    # using a model
    "classification_report": "evaluation",
    "class_probabilities": "evaluation",
    "preprocess_image": "data.images",
    # the question
    "run_diagnosis": "diagnose",
    "check_gradient": "diagnose.gradient_check",
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


if TYPE_CHECKING:  # what static analysers and IDEs see: the same names, imported eagerly
    from jax_softmax.config import TrainConfig
    from jax_softmax.data import IdxError, deskew, load_mnist
    from jax_softmax.data.images import preprocess_image
    from jax_softmax.diagnose import run_diagnosis
    from jax_softmax.diagnose.gradient_check import check_gradient
    from jax_softmax.distributed import initialize as initialize_distributed
    from jax_softmax.evaluation import class_probabilities, classification_report, evaluate
    from jax_softmax.gradients import autodiff_grad, make_update, manual_grad, manual_hvp
    from jax_softmax.model import Params, accuracy, init_params, logits, loss, predict
    from jax_softmax.runs.checkpoint import CheckpointError, load_params, save_params
    from jax_softmax.solvers import SolveResult, solve
    from jax_softmax.solvers.estimator import LogisticRegression
    from jax_softmax.sweeps import sweep
    from jax_softmax.train import fit
    from jax_softmax.train.nonfinite import NonFiniteError


__all__ = [
    "Params",
    "init_params",
    "logits",
    "loss",
    "predict",
    "accuracy",
    "manual_grad",
    "autodiff_grad",
    "manual_hvp",
    "make_update",
    "TrainConfig",
    "fit",
    "evaluate",
    "NonFiniteError",
    "sweep",
    "solve",
    "SolveResult",
    "LogisticRegression",
    "initialize_distributed",
    "load_mnist",
    "IdxError",
    "deskew",
    "save_params",
    "load_params",
    "CheckpointError",
    "classification_report",
    "class_probabilities",
    "preprocess_image",
    "run_diagnosis",
    "check_gradient",
]
