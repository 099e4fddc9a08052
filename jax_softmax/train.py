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
from jax.typing import ArrayLike, DTypeLike

from jax_softmax import _program_store, _validation
from jax_softmax._validation import RawPixelsWarning as RawPixelsWarning  # fit's warning, public here
from jax_softmax.config import DEFAULT_BATCH_SIZE as DEFAULT_BATCH_SIZE
from jax_softmax.config import DEFAULT_EPOCHS as DEFAULT_EPOCHS
from jax_softmax.config import DEFAULT_INIT_SCALE as DEFAULT_INIT_SCALE
from jax_softmax.config import DEFAULT_LR as DEFAULT_LR
from jax_softmax.config import SEED_LIMIT as SEED_LIMIT
from jax_softmax.config import TrainConfig
from jax_softmax.distributed import data_parallel
from jax_softmax.gradients import GradMode, make_optimizer, train_step
from jax_softmax.model import Params, init_params, logits, loss
from jax_softmax.nonfinite import (
    NonFiniteError,
    NonFiniteStop,
    all_finite,
    describe_stop,
    scan_until_nonfinite,
    summarize_steps,
)

if TYPE_CHECKING:
    import optax


CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}
"""XLA options for the training epoch on a CPU.

XLA's CPU backend hands float32 matrix products to YNNPACK by default; for this
model's forward product, ``[batch, 784] x [784, 10]``, XLA's own Eigen kernel is
faster: 7-11% less per epoch at batch 200 on the x86-64 (AVX2) CPU measured.
"""


SETUP_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}
"""XLA options for :func:`fit`'s set-up program on a CPU.

The set-up runs once, and drawing the initial weights makes it the slowest program of
a run to compile: 0.9 s at LLVM's default optimization, 0.15 s at level 1, which gives
the same bits (level 0 does not).
"""


def _compile(lowered: jax.stages.Lowered, options: dict | None = CPU_COMPILER_OPTIONS) -> jax.stages.Compiled:
    """Compiles with ``options`` on a CPU; without them elsewhere or where unknown."""
    if options is None or jax.default_backend() != "cpu":
        return lowered.compile()
    try:
        return lowered.compile(compiler_options=options)
    except jax.errors.JaxRuntimeError as e:
        if "No such compile option" not in str(e):
            raise
        return lowered.compile()


def _program(name: str, jitted, args: tuple, settings: dict | None, options: dict | None, **static):
    """``jitted.lower(*args, **static)`` compiled (with ``options`` on a CPU), or the same program
    kept by an earlier run.

    ``settings`` names what the program depends on besides its arguments and this
    package's code (``None``: not nameable, never kept); see
    :mod:`jax_softmax._program_store`.
    """
    if settings is not None:
        settings = {**settings, "compiler_options": options if jax.default_backend() == "cpu" else None}
    return _program_store.compiled(name, jitted, args, static, settings, partial(_compile, options=options))


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


@jax.jit
def evaluate(params: Params, x: ArrayLike, y: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Mean negative log-likelihood and accuracy of ``params`` on ``(x, y)``.

    Args:
      params: model parameters.
      x: inputs, ``[n, num_features]``.
      y: integer labels, ``[n]``.

    Returns:
      ``(loss, accuracy)``, two scalars.
    """
    z = logits(params, x)
    return loss(params, x, y), jnp.mean(jnp.argmax(z, axis=-1) == y)


def pixel_features(pixels: jax.Array, dtype: DTypeLike = jnp.float32) -> jax.Array:
    """uint8 pixels to features in ``[0, 1]``, on the device, bit for bit as on the host.

    The values are those of :func:`jax_softmax.data.to_features` (``pixels / 255``
    rounded to float32), then cast to ``dtype``. XLA turns a division by a constant
    into a multiplication by its reciprocal, which is one unit in the last place off
    for 126 of the 256 pixel values; so the quotient is formed in integers. Shifted
    to ``v = u * 2**s`` in ``[128, 256)``, ``v * 2**24 / 255`` is ``v * 65793 + v / 255``,
    whose fraction ``v / 255`` is above one half (or exactly 1 for ``v = 255``): the
    24-bit quotient rounded to nearest is ``v * 65793 + 1``, exact in float32, and
    scaling it by ``2**-(24 + s)`` is exact too. No division, and no rounding but the
    one wanted.

    Args:
      pixels: uint8 (or integers in ``[0, 255]``), any shape.
      dtype: the floating dtype of the result.

    Returns:
      ``pixels / 255`` in float32, cast to ``dtype``; the shape of ``pixels``.
    """
    u = jnp.asarray(pixels).astype(jnp.uint32)
    shift = jax.lax.clz(u) - 24  # u << shift is in [128, 256); 0 stays 0
    q = (u << shift) * 65793 + (u != 0).astype(jnp.uint32)  # at most 2**24
    scale = jax.lax.bitcast_convert_type((103 - shift) << 23, jnp.float32)  # 2**-(24 + shift)
    return (q.astype(jnp.float32) * scale).astype(dtype)


EVALUATION_CHUNK = 1_000
"""Rows whose logits :func:`evaluate_pixels` computes at a time."""


@jax.jit
def evaluate_pixels(params: Params, pixels: ArrayLike, y: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """:func:`evaluate` on uint8 pixels ``[n, num_features]``, scaled by :func:`pixel_features`.

    The logits are computed :data:`EVALUATION_CHUNK` rows at a time, so that the
    float features never exist for all ``n`` rows at once (31 MB for MNIST's test
    set); on XLA's CPU backend the results are the bits :func:`evaluate` gives on
    the features.

    Returns:
      ``(loss, accuracy)``, two scalars.
    """
    pixels = jnp.asarray(pixels)
    n = pixels.shape[0]
    whole = n - n % EVALUATION_CHUNK

    def chunk_logits(rows: jax.Array) -> jax.Array:
        return logits(params, pixel_features(rows, params.w.dtype))

    parts = []
    if whole:
        chunks = pixels[:whole].reshape(whole // EVALUATION_CHUNK, EVALUATION_CHUNK, -1)
        parts.append(jax.lax.map(chunk_logits, chunks).reshape(whole, -1))
    if whole < n:
        parts.append(chunk_logits(pixels[whole:]))
    z = jnp.concatenate(parts)
    nll = -jnp.take_along_axis(jax.nn.log_softmax(z, axis=-1), jnp.asarray(y)[:, None], axis=-1)
    return jnp.mean(nll), jnp.mean(jnp.argmax(z, axis=-1) == y)


@jax.jit
def _split_key(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``jax.random.split(key)`` as two keys: the next shuffling key and this epoch's."""
    first, second = jax.random.split(key)
    return first, second


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


def stable_argsort_uint32(keys: jax.Array) -> jax.Array:
    """Indices that sort ``keys`` (uint32 ``[n]``), ties in their original order.

    On XLA's CPU backend ``lax.sort_key_val`` takes about 30 ms for 54,000 keys, a
    sort of one uint32 array about 3 ms. So this is a least-significant-digit radix
    sort made of single-array sorts: each pass packs one digit of the key above the
    element's current position into one uint32 and sorts that. The position breaks
    ties, which makes every pass stable, so the passes compose into a stable sort by
    the whole key.
    """
    n = keys.shape[0]
    position_bits = max(1, (n - 1).bit_length())
    digit_bits = 32 - position_bits
    position_mask = (1 << position_bits) - 1
    positions = jnp.arange(n, dtype=jnp.uint32)
    order = None
    for shift in range(0, 32, digit_bits):
        digits = (keys if order is None else keys[order]) >> shift
        digits = digits & ((1 << digit_bits) - 1) if shift + digit_bits < 32 else digits
        ranks = (jnp.sort((digits << position_bits) | positions) & position_mask).astype(jnp.int32)
        order = ranks if order is None else order[ranks]
    return order


def shuffled_indices(key: jax.Array, n: int) -> jax.Array:
    """The permutation of ``range(n)`` that ``jax.random.permutation(key, n)`` returns.

    The same algorithm (rounds of sorting by fresh random 32-bit keys) and the same
    result, with the key-value sort replaced by :func:`stable_argsort_uint32`:
    about three times faster on a CPU for MNIST's 54,000 examples. Above 2**24
    elements, where the radix sort needs many passes, it is
    ``jax.random.permutation`` itself.

    Args:
      key: a PRNG key.
      n: the number of elements, a static integer >= 1.

    Returns:
      ``[n]`` int32 indices.
    """
    if n > 1 << 24:
        return jax.random.permutation(key, n)
    # jax.random.permutation's number of rounds, from its heuristic stop criterion.
    rounds = int(np.ceil(3 * np.log(max(1, n)) / np.log(np.iinfo(np.uint32).max)))
    indices = jnp.arange(n, dtype=jnp.int32)
    for _ in range(rounds):
        key, subkey = jax.random.split(key)
        indices = indices[stable_argsort_uint32(jax.random.bits(subkey, (n,), jnp.uint32))]
    return indices


def train_epoch(
    params: Params,
    opt_state: optax.OptState,
    key: jax.Array,
    x: jax.Array,
    y: jax.Array,
    lr: jax.Array,
    *,
    batch_size: int,
    grad: GradMode,
    optimizer: optax.GradientTransformation | None,
    l2: float,
    stop_at_nonfinite: bool = False,
    batch_sharding: jax.sharding.Sharding | None = None,
    uint8_pixels: bool = False,
) -> tuple:
    """One pass of mini-batch gradient descent over a fresh permutation of ``(x, y)``.

    A pure function, written to be jitted (with the keyword arguments static) and
    vmapped over models. The batches are gathered from ``x`` by index inside one
    ``lax.scan``, so the data set is never copied; the remainder batch of
    ``n % batch_size`` examples is dropped.

    Each step is :func:`jax_softmax.gradients.train_step`, the step that
    :func:`jax_softmax.make_update` compiles; plain SGD carries the weights transposed
    through the scan, as that function describes.

    Args:
      params: model parameters.
      opt_state: the optimizer's state (``()`` for plain SGD).
      key: PRNG key for this epoch's order.
      x: inputs, ``[n, num_features]`` in the parameters' dtype.
      y: int32 labels, ``[n]``.
      lr: the learning rate, a scalar (used by plain SGD; optax optimizers hold theirs).
      batch_size: examples per step, at most ``n``.
      grad: ``"autodiff"`` or ``"manual"``.
      optimizer: an optax optimizer, or ``None`` for plain SGD.
      l2: strength of the L2 penalty on the weights.
      stop_at_nonfinite: run the scan through
        :func:`jax_softmax.nonfinite.scan_until_nonfinite`: from the first step whose
        loss, parameters or optimizer state is not finite, no update is applied.
      batch_sharding: how to split each mini-batch over devices: a sharding of the
        epoch's ``[num_batches, batch_size]`` example indices, such as
        :attr:`jax_softmax.distributed.DataParallel.batch_indices`. Each device then
        gathers and differentiates its own rows of every batch, and the partitioned
        program sums the gradients across devices. ``None``: no constraint.
      uint8_pixels: ``x`` holds uint8 pixels; each batch is scaled to the parameters'
        dtype by :func:`pixel_features` as it is gathered.

    Returns:
      ``(params, opt_state, mean_loss)``: the mean of the mini-batch losses. With
      ``stop_at_nonfinite``, ``(params, opt_state, mean_loss, first_bad_step,
      losses)``: the last finite parameters and state, the mean of the finite steps'
      losses, the 1-based first non-finite step (0 for none) and every step's loss,
      ``[num_batches]``.
    """

    def batch(batch_idx, dtype):
        return pixel_features(x[batch_idx], dtype) if uint8_pixels else x[batch_idx]

    num_batches = x.shape[0] // batch_size
    order = shuffled_indices(key, x.shape[0])[: num_batches * batch_size]
    order = order.reshape(num_batches, batch_size)
    if batch_sharding is not None:
        order = jax.lax.with_sharding_constraint(order, batch_sharding)
    # Plain SGD carries the weights transposed (see train_step): the same update, faster.
    transposed = optimizer is None
    step = partial(train_step, lr=lr, grad=grad, optimizer=optimizer, l2=l2, weights_transposed=transposed)

    def body(carry, batch_idx):
        params, opt_state = carry
        x_batch = batch(batch_idx, params.w.dtype)
        params, opt_state, value = step(params, opt_state, x_batch, y[batch_idx])
        return (params, opt_state), value

    init = (Params(params.w.T, params.b) if transposed else params, opt_state)
    if stop_at_nonfinite:
        (params, opt_state), losses, ok = scan_until_nonfinite(body, init, order)
    else:
        (params, opt_state), losses = jax.lax.scan(body, init, order)
        ok = None
    if transposed:
        params = Params(params.w.T, params.b)
    return _epoch_result(params, opt_state, losses, ok)


def checked_epoch(
    params: Params,
    opt_state: optax.OptState,
    key: jax.Array,
    x: jax.Array,
    y: jax.Array,
    lr: jax.Array,
    **settings,
) -> tuple[Params, optax.OptState, jax.Array, jax.Array]:
    """:func:`train_epoch`, and whether it stayed finite: what :func:`fit` compiles.

    A NaN or an infinity, once in the parameters or the optimizer's state, stays there
    (every later update involves it), and one in a step's loss makes the epoch's mean
    loss non-finite. So checking the mean loss and the final state, once, inside the
    compiled epoch, finds any non-finite step at no cost per step.

    Args:
      params, opt_state, key, x, y, lr: as for :func:`train_epoch`.
      **settings: the keyword arguments of :func:`train_epoch` (static under ``jit``).

    Returns:
      ``(params, opt_state, mean_loss, finite)``: ``finite`` is a scalar bool, false
      when the mean loss, a parameter or a value of the optimizer's state is not finite.
    """
    params, opt_state, mean_loss = train_epoch(params, opt_state, key, x, y, lr, **settings)
    return params, opt_state, mean_loss, jnp.isfinite(mean_loss) & all_finite((params, opt_state))


def _epoch_result(params: Params, opt_state: optax.OptState, losses: jax.Array, ok: jax.Array | None):
    if ok is None:
        return params, opt_state, jnp.mean(losses)
    mean_loss, first_bad_step = summarize_steps(losses, ok)
    return params, opt_state, mean_loss, first_bad_step, losses


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
    start = _program("start", _start, (), static if kept else None, SETUP_COMPILER_OPTIONS, **static)
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
    """The compiled epoch (:func:`_fit_epoch`) for ``state = (params, opt_state, shuffle_key)``,
    the replay of a failed epoch and the evaluation after it, and the :class:`History` that
    records the compilation time.

    With ``kept``, the programs are those an earlier run kept (see :func:`_program`) when
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
    jitted = jax.jit(partial(_fit_epoch, evaluation=evaluation, **settings))
    epoch = _program("epoch", jitted, epoch_args, named, CPU_COMPILER_OPTIONS)
    history = History(compile_seconds=time.perf_counter() - start)
    replay = partial(_replay, settings=settings, data=data, config=config)
    evaluate_fn = partial(_evaluate_after_replay, data.validation, uint8_pixels, kept)
    return _Programs(epoch, replay, evaluate_fn), history


def _optax_version() -> str:
    import optax

    return optax.__version__


def _fit_epoch(params, opt_state, shuffle_key, x, y, lr, *validation, evaluation: Callable, **settings):
    """One epoch of :func:`fit` as one program: the epoch's key split off the shuffling key,
    :func:`checked_epoch`, and ``evaluation`` of the result on ``validation`` (NaNs without).

    Returns:
      ``(params, opt_state, shuffle_key, epoch_key, mean_loss, finite, (val_loss, val_accuracy))``.
    """
    shuffle_key, epoch_key = _split_key(shuffle_key)
    params, opt_state, mean_loss, finite = checked_epoch(params, opt_state, epoch_key, x, y, lr, **settings)
    metrics = evaluation(params, *validation) if validation else (jnp.nan, jnp.nan)
    return params, opt_state, shuffle_key, epoch_key, mean_loss, finite, metrics


def evaluation_program(
    params: Params, x: jax.Array, y: jax.Array, *, uint8_pixels: bool = False, kept: bool = True
) -> jax.stages.Compiled:
    """:func:`evaluate` (or :func:`evaluate_pixels`) compiled for these arguments.

    With ``kept``, the program a previous process compiled for the same arguments is
    loaded when the compilation cache keeps one
    (:func:`jax_softmax.compilation_cache.enable_compilation_cache`), without tracing it.

    Returns:
      A function of ``(params, x, y)`` that returns ``(loss, accuracy)``.
    """
    function = evaluate_pixels if uint8_pixels else evaluate
    settings = {"uint8_pixels": uint8_pixels} if kept else None
    name = "evaluate_pixels" if uint8_pixels else "evaluate"
    return _program(name, function, (params, x, y), settings, None)


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
    replay = _compile(replay.lower(*before, epoch_key, *data.train))
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
