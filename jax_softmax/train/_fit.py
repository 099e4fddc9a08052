"""Mini-batch training: each epoch is one compiled ``lax.scan`` over the batches."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jax_softmax import _validation
from jax_softmax._validation import RawPixelsWarning as RawPixelsWarning  # fit's warning, public here
from jax_softmax.config import DEFAULT_BATCH_SIZE as DEFAULT_BATCH_SIZE
from jax_softmax.config import DEFAULT_EPOCHS as DEFAULT_EPOCHS
from jax_softmax.config import DEFAULT_INIT_SCALE as DEFAULT_INIT_SCALE
from jax_softmax.config import DEFAULT_LR as DEFAULT_LR
from jax_softmax.config import SEED_LIMIT as SEED_LIMIT
from jax_softmax.config import TrainConfig
from jax_softmax.distributed import data_parallel
from jax_softmax.evaluation import evaluate, evaluate_pixels
from jax_softmax.gradients import make_optimizer
from jax_softmax.model import Params, init_params
from jax_softmax.train._epoch import fit_epoch, train_epoch
from jax_softmax.train._fast import CPU_COMPILER_OPTIONS, SETUP_COMPILER_OPTIONS, compile_with, program
from jax_softmax.train.nonfinite import (
    NonFiniteError,
    NonFiniteStop,
    describe_stop,
)

if TYPE_CHECKING:
    import optax


@dataclasses.dataclass(frozen=True)
class EpochMetrics:
    """What one epoch of :func:`fit` measured.

    Attributes:
      epoch: 1-based epoch number.
      train_loss: mean of the mini-batch losses seen during the epoch.
      val_loss: loss on the validation set after the epoch (NaN without one).
      val_accuracy: accuracy on the validation set after the epoch (NaN without one).
      seconds: wall time of the epoch, evaluation included, compilation excluded.
    """

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    seconds: float


@dataclasses.dataclass
class History:
    """Per-epoch metrics of a :func:`fit` run and its compilation time.

    Attributes:
      epochs: the metrics of each completed epoch.
      compile_seconds: time spent compiling the epoch (with its validation), or loading
        it when the compilation cache keeps it; the set-up program is not counted.
      stopped: where and why training stopped on a non-finite value, or ``None``.
    """

    epochs: list[EpochMetrics] = dataclasses.field(default_factory=list)
    compile_seconds: float = 0.0
    stopped: NonFiniteStop | None = None


@partial(jax.jit, static_argnames=("seed", "skip", "shape", "scale", "dtype"))
def _start(*, seed: int, skip: int, shape: tuple[int, int] | None, scale: float, dtype) -> tuple:
    """:func:`fit`'s set-up as one compiled program, where each eager step would be one.

    Returns ``(shuffle_key, params)``: the shuffling key once the keys of ``skip``
    epochs are split off it, and fresh parameters of ``shape`` (``None`` without one).
    """
    init_key, shuffle_key = jax.random.split(jax.random.key(seed))
    shuffle_key = jax.lax.fori_loop(0, skip, lambda _, key: jax.random.split(key)[0], shuffle_key)
    params = None if shape is None else init_params(init_key, *shape, scale=scale, dtype=dtype)
    return shuffle_key, params


def fit(
    train: Sequence[ArrayLike],
    validation: Sequence[ArrayLike] | None = None,
    config: TrainConfig | None = None,
    *,
    params: Params | None = None,
    opt_state: optax.OptState | None = None,
    start_epoch: int = 0,
    callback: Callable[[EpochMetrics, Params], None] | None = None,
    checkpoint_callback: Callable[[EpochMetrics, Params, optax.OptState], None] | None = None,
    uint8_pixels: bool = False,
    deskewed: bool = False,
    **settings: Any,
) -> tuple[Params, History]:
    """Trains softmax regression with mini-batch gradient descent.

    Each epoch shuffles the training set with a fresh key split from the seed and
    runs one compiled ``jax.lax.scan`` of :func:`jax_softmax.gradients.train_step`
    over its ``len(x) // batch_size`` batches. The training set is put on the device
    once.

    Args:
      train: ``(x, y)``: inputs ``[n, num_features]`` float, labels ``[n]`` int.
      validation: an optional ``(x, y)`` evaluated after every epoch.
      config: the settings (:class:`jax_softmax.TrainConfig`; its defaults if ``None``).
      params: start from these parameters instead of a fresh initialisation.
      opt_state: continue from this optimizer state (with ``params``) instead of
        ``optimizer.init(params)``.
      start_epoch: the number of epochs already trained: epochs ``start_epoch + 1``
        to ``epochs`` run, with the shuffling keys a run from epoch 1 would use, so
        resuming from the parameters and optimizer state saved after epoch
        ``start_epoch`` gives the same result, bit for bit, as not stopping.
      callback: called as ``callback(metrics, params)`` after every epoch.
      checkpoint_callback: called as ``checkpoint_callback(metrics, params,
        opt_state)`` after every epoch (after ``callback``): everything a later
        ``fit(..., params=params, opt_state=opt_state, start_epoch=metrics.epoch)``
        needs.
      uint8_pixels: the inputs (training and validation) are uint8 pixels, as
        :func:`jax_softmax.data.load_mnist_uint8` returns them: they go to the device
        as they are (a quarter of the bytes of float32; on a CPU, without a copy) and
        each batch is scaled to ``x / 255`` there, the values
        :func:`jax_softmax.load_mnist` gives, so training is the same, bit for bit.
      deskewed: with ``config.deskew``, the inputs are deskewed already (as
        ``load_mnist(deskew=True)`` gives them): they are not deskewed again.
      **settings: fields of :class:`jax_softmax.TrainConfig` that replace the
        config's (``fit(data, epochs=5, lr=0.1)``).

    Returns:
      ``(params, history)``: the parameters after the last epoch, or the last finite
      ones when training stopped on a non-finite value (``history.stopped`` says
      where and why; with ``on_nonfinite="raise"``, :class:`jax_softmax.NonFiniteError`
      carries them instead).

    Raises:
      ValueError, TypeError: for malformed data or settings, naming them, for an
        empty split, and for a ``batch_size`` that does not divide evenly over the
        devices.
      NonFiniteError: (a ``FloatingPointError``) with ``on_nonfinite="raise"``.

    Warns:
      RawPixelsWarning: the training inputs look like raw 0-255 pixels, not pixels in [0, 1].
    """
    config = (config or TrainConfig()).replace(**settings)
    _check_continuation(config, params, opt_state, start_epoch)
    if config.deskew and not deskewed:
        train, validation = _deskewed(train, uint8_pixels), _deskewed(validation, uint8_pixels)
    data, parallel = _training_data(train, validation, config, params, uint8_pixels)
    # Programs are kept between runs where everything they depend on can be named.
    kept = parallel is None and isinstance(config.optimizer, str)
    shuffle_key, params, opt_state, transform = _initial_state(
        config, data, params, opt_state, start_epoch, kept
    )
    replicate = _replicator(parallel)
    params, opt_state, shuffle_key = replicate((params, opt_state, shuffle_key))
    programs, history = _compile_programs(
        config, data, parallel, transform, uint8_pixels, (params, opt_state, shuffle_key), kept
    )
    losses: list[float] = []  # the epochs' mean training losses, for describing a stop
    for epoch in range(start_epoch + 1, config.epochs + 1):
        start = time.perf_counter()
        before = (params, opt_state)
        params, opt_state, shuffle_key, epoch_key, train_loss, finite, validation = programs.epoch(
            params, opt_state, shuffle_key, *data.train, *(data.validation or ())
        )
        if not bool(finite):
            history.stopped, params, opt_state = programs.replay(before, epoch_key, epoch, losses)
            if history.stopped is not None:
                if config.on_nonfinite == "raise":
                    raise NonFiniteError(history.stopped, params)
                return params, history
            validation = programs.evaluate(params)  # of the replay's parameters
        metrics = _epoch_metrics(epoch, train_loss, validation, start)
        history.epochs.append(metrics)
        losses.append(metrics.train_loss)
        if callback is not None:
            callback(metrics, params)
        if checkpoint_callback is not None:
            checkpoint_callback(metrics, params, opt_state)
    return params, history


class _Data(NamedTuple):
    """The training set ``(x, y, lr)`` as the epoch takes it, and the validation set or ``None``."""

    train: tuple[jax.Array, jax.Array, jax.Array]
    validation: tuple[jax.Array, jax.Array] | None
    num_features: int


class _Programs(NamedTuple):
    """What :func:`fit` runs each epoch, compiled for its data and settings."""

    epoch: Callable
    replay: Callable
    evaluate: Callable


def _check_continuation(config: TrainConfig, params, opt_state, start_epoch: int) -> None:
    if not isinstance(start_epoch, int) or not 0 <= start_epoch < config.epochs:
        raise ValueError(
            f"start_epoch must be an integer in [0, epochs={config.epochs}), got {start_epoch!r}"
        )
    if opt_state is not None and params is None:
        raise ValueError("opt_state needs the params it belongs to: pass params too")
    _validation.check_dtype_enabled(config.dtype)


def _deskewed(split, uint8_pixels: bool):
    """``(deskew(x), y)``: uint8 pixels stay uint8 (:func:`jax_softmax.data.deskew_pixels`)."""
    if split is None:
        return None
    from jax_softmax.data import deskew, deskew_pixels

    x, y = split
    return (deskew_pixels(x) if uint8_pixels else deskew(x)), y


def _training_data(train, validation, config: TrainConfig, params, uint8_pixels: bool):
    """Checks the splits and puts them on the device(s): ``(_Data, DataParallel or None)``."""
    classes = config.num_classes if params is None else params.w.shape[1]
    x_train, y_train = _validation.check_split(
        "train", train, None if params is None else params.w.shape[0], classes
    )
    if config.batch_size > len(x_train):
        raise ValueError(f"batch_size must be an integer in [1, {len(x_train)}], got {config.batch_size!r}")
    splits = [("train", x_train, y_train)]
    if validation is not None:
        splits.append(
            ("validation", *_validation.check_split("validation", validation, x_train.shape[1], classes))
        )
    if not uint8_pixels and _validation.looks_like_raw_pixels(x_train):
        _validation.warn_raw_pixels("train x", stacklevel=3)
    parallel = data_parallel(config.devices)
    if parallel is not None:
        parallel.check_batch_size(config.batch_size)
    replicate = _replicator(parallel)
    placed = []
    for name, x, y in splits:
        if uint8_pixels and x.dtype != np.uint8:
            raise TypeError(f"uint8_pixels=True needs uint8 {name} x, got dtype {x.dtype}")
        # device_put, not jnp.asarray: on a CPU it can use the host array without copying it.
        x = jax.device_put(x) if uint8_pixels else jnp.asarray(x, config.dtype)
        placed.append(replicate((x, jnp.asarray(y, jnp.int32))))
    lr = replicate(jax.device_put(np.asarray(config.lr, config.dtype)))  # a transfer, not a compiled cast
    data = _Data((*placed[0], lr), placed[1] if validation is not None else None, x_train.shape[1])
    return data, parallel


def _replicator(parallel) -> Callable:
    """Puts a pytree on every device of ``parallel``; leaves it as it is on one device."""
    return (lambda tree: tree) if parallel is None else parallel.replicate


def _initial_state(
    config: TrainConfig, data: _Data, params, opt_state, start_epoch: int, kept: bool
) -> tuple:
    """``(shuffle_key, params, opt_state, optimizer)`` for epoch ``start_epoch + 1``."""
    static = {
        "seed": config.seed,
        "skip": start_epoch,
        "shape": None if params is not None else (data.num_features, config.num_classes),
        "scale": float(config.init_scale),
        "dtype": jnp.dtype(config.dtype).name,
    }
    start = program("start", _start, (), static if kept else None, SETUP_COMPILER_OPTIONS, **static)
    shuffle_key, fresh = start()
    params = fresh if params is None else jax.tree.map(jnp.asarray, params)
    optimizer = config.optimizer
    transform = make_optimizer(optimizer, config.lr) if isinstance(optimizer, str) else optimizer
    fresh_state = () if transform is None else transform.init(params)
    if opt_state is None:
        opt_state = fresh_state
    elif jax.tree.structure(opt_state) == jax.tree.structure(fresh_state):
        opt_state = jax.tree.map(jnp.asarray, opt_state)
    else:
        raise ValueError(
            f"opt_state does not belong to this optimizer: its tree is {jax.tree.structure(opt_state)}, "
            f"the optimizer's is {jax.tree.structure(fresh_state)}"
        )
    return shuffle_key, params, opt_state, transform


def _compile_programs(
    config: TrainConfig, data: _Data, parallel, transform, uint8_pixels: bool, state: tuple, kept: bool
):
    """The compiled epoch (:func:`fit_epoch`) for ``state = (params, opt_state, shuffle_key)``,
    the replay of a failed epoch and the evaluation after it, and the :class:`History` that
    records the compilation time.

    With ``kept``, the programs are those an earlier run kept (see :func:`program`) when
    there are any.
    """
    settings = {"batch_size": config.batch_size, "grad": config.grad, "optimizer": transform, "l2": config.l2}
    if uint8_pixels:
        settings["uint8_pixels"] = True
    if parallel is not None:
        settings["batch_sharding"] = parallel.batch_indices
    # An optax optimizer is named by its name, its learning rate, which it holds as a
    # constant, and optax's version; plain SGD takes the rate as an argument.
    optax_version = None if transform is None else _optax_version()
    lr = None if transform is None else config.lr
    named = {**settings, "optimizer": config.optimizer, "lr": lr, "optax": optax_version} if kept else None
    start = time.perf_counter()
    # Not donated: the parameters are small, and the epoch's inputs stay valid for a replay.
    epoch_args = (*state, *data.train, *(data.validation or ()))
    evaluation = evaluate_pixels if uint8_pixels else evaluate
    jitted = jax.jit(partial(fit_epoch, evaluation=evaluation, **settings))
    epoch = program("epoch", jitted, epoch_args, named, CPU_COMPILER_OPTIONS)
    history = History(compile_seconds=time.perf_counter() - start)
    replay = partial(_replay, settings=settings, data=data, config=config)
    evaluate_fn = partial(_evaluate_after_replay, data.validation, uint8_pixels, kept)
    return _Programs(epoch, replay, evaluate_fn), history


def _optax_version() -> str:
    import optax

    return optax.__version__


def evaluation_program(
    params: Params, x: jax.Array, y: jax.Array, *, uint8_pixels: bool = False, kept: bool = True
) -> jax.stages.Compiled:
    """:func:`evaluate` (or :func:`evaluate_pixels`) compiled for these arguments.

    With ``kept``, the program a previous process compiled for the same arguments is
    loaded when the compilation cache keeps one
    (:func:`jax_softmax.storage.cache.enable_compilation_cache`), without tracing it.

    Returns:
      A function of ``(params, x, y)`` that returns ``(loss, accuracy)``.
    """
    function = evaluate_pixels if uint8_pixels else evaluate
    settings = {"uint8_pixels": uint8_pixels} if kept else None
    name = "evaluate_pixels" if uint8_pixels else "evaluate"
    return program(name, function, (params, x, y), settings, None)


def _evaluate_after_replay(validation: tuple | None, uint8_pixels: bool, kept: bool, params: Params) -> tuple:
    """The validation loss and accuracy of ``params`` (NaNs without a validation set), compiled here."""
    if validation is None:
        return np.nan, np.nan
    return evaluation_program(params, *validation, uint8_pixels=uint8_pixels, kept=kept)(params, *validation)


def _replay(before: tuple, epoch_key, epoch: int, losses: list[float], *, settings, data: _Data, config):
    """Replays an epoch that went non-finite with every step checked: ``(stop, params, opt_state)``.

    Compiled only when an epoch goes wrong. ``stop`` is ``None`` when no step of the
    replay was non-finite, and then the parameters and state are the epoch's result.
    """
    replay = jax.jit(partial(train_epoch, **settings, stop_at_nonfinite=True))
    replay = compile_with(replay.lower(*before, epoch_key, *data.train))
    params, opt_state, _, first_bad_step, step_losses = replay(*before, epoch_key, *data.train)
    if not int(first_bad_step):
        return None, params, opt_state
    step_losses = np.asarray(step_losses)
    stop = describe_stop(
        epoch=epoch,
        step=int(first_bad_step),
        losses=step_losses,
        start_loss=losses[0] if losses else float(step_losses[0]),
        previous_loss=losses[-1] if losses else np.nan,
        lr=config.lr,
        dtype=config.dtype,
        l2=config.l2,
    )
    return stop, params, opt_state


def _epoch_metrics(epoch: int, train_loss, validation: tuple, start: float) -> EpochMetrics:
    val_loss, val_acc = validation
    return EpochMetrics(
        epoch=epoch,
        train_loss=float(train_loss),
        val_loss=float(val_loss),
        val_accuracy=float(val_acc),
        seconds=time.perf_counter() - start,
    )
