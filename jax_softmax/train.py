"""Mini-batch training: each epoch is one compiled ``lax.scan`` over the batches."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from jax_softmax import validation
from jax_softmax.distributed import data_parallel
from jax_softmax.gradients import GRAD_MODES, GradMode, make_optimizer, train_step
from jax_softmax.model import Params, init_params, logits, loss
from jax_softmax.nonfinite import (
    ON_NONFINITE,
    NonFiniteError,
    NonFiniteStop,
    all_finite,
    describe_stop,
    scan_until_nonfinite,
    summarize_steps,
)

if TYPE_CHECKING:
    import optax

# Defaults that reach about 92.3% test accuracy on MNIST in 20 epochs. Batch 200 is
# the one in the question this project answers; its learning rate 0.1 also works
# but needs more epochs to pass 92%.
DEFAULT_EPOCHS = 20
DEFAULT_BATCH_SIZE = 200
DEFAULT_LR = 0.5
DEFAULT_INIT_SCALE = 0.01
SEED_LIMIT = 2**32  # seeds are 0 to 2**32 - 1: a PRNG key holds 32 bits


CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}
"""XLA options for the training epoch on a CPU.

XLA's CPU backend hands float32 matrix products to YNNPACK by default; for this
model's forward product, ``[batch, 784] x [784, 10]``, XLA's own Eigen kernel is
faster: 7-11% less per epoch at batch 200 on the x86-64 (AVX2) CPU measured.
"""


def _compile(lowered: jax.stages.Lowered) -> jax.stages.Compiled:
    """Compiles with :data:`CPU_COMPILER_OPTIONS` on a CPU; without them elsewhere or where unknown."""
    if jax.default_backend() != "cpu":
        return lowered.compile()
    try:
        return lowered.compile(compiler_options=CPU_COMPILER_OPTIONS)
    except jax.errors.JaxRuntimeError as e:
        if "No such compile option" not in str(e):
            raise
        return lowered.compile()


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
      compile_seconds: time spent compiling the epoch and the evaluation.
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
    """``jax.random.split(key)`` as two keys, in one compiled program (unpacking an array takes another)."""
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


def _stable_argsort_uint32(keys: jax.Array) -> jax.Array:
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
    result, with the key-value sort replaced by :func:`_stable_argsort_uint32`:
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
        indices = indices[_stable_argsort_uint32(jax.random.bits(subkey, (n,), jnp.uint32))]
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


def _check_split(
    name: str, split: Sequence[ArrayLike], num_features: int | None, num_classes: int | None = None
) -> tuple:
    if len(split) != 2:
        raise ValueError(f"{name} must be an (x, y) pair, got {len(split)} items")
    x, y = np.asarray(split[0]), np.asarray(split[1])
    if x.ndim != 2:
        raise ValueError(f"{name} x must be [n, num_features], got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"the {name} split is empty (x has shape {x.shape}); it needs at least one example")
    if num_features is not None and x.shape[1] != num_features:
        raise ValueError(f"{name} x has {x.shape[1]} features, expected {num_features}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"{name} y must have shape ({x.shape[0]},) to match x, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name} y must hold integer labels, got dtype {y.dtype}")
    validation.check_finite(x, f"{name} x")
    if num_classes is not None:
        validation.check_labels(y, len(y), num_classes, f"{name} y")
    return x, y


def _warn_if_raw_pixels(x: np.ndarray) -> None:
    # Here, not in fit: fit's argument ``validation`` hides the module of that name.
    if validation.looks_like_raw_pixels(x):
        validation.warn_raw_pixels("train x", stacklevel=3)


def fit(
    train: Sequence[ArrayLike],
    validation: Sequence[ArrayLike] | None = None,
    *,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lr: float = DEFAULT_LR,
    grad: GradMode = "autodiff",
    optimizer: str | optax.GradientTransformation = "sgd",
    l2: float = 0.0,
    init_scale: float = DEFAULT_INIT_SCALE,
    seed: int = 0,
    dtype: DTypeLike = jnp.float32,
    num_classes: int = 10,
    params: Params | None = None,
    callback: Callable[[EpochMetrics, Params], None] | None = None,
    opt_state: optax.OptState | None = None,
    start_epoch: int = 0,
    on_nonfinite: str = "stop",
    checkpoint_callback: Callable[[EpochMetrics, Params, optax.OptState], None] | None = None,
    devices: int | None = None,
    uint8_pixels: bool = False,
) -> tuple[Params, History]:
    """Trains softmax regression with mini-batch gradient descent.

    Each epoch shuffles the training set with a fresh key split from ``seed`` and
    runs one compiled ``jax.lax.scan`` over its ``len(x) // batch_size`` batches.
    The training set is put on the device once.

    Args:
      train: ``(x, y)``: inputs ``[n, num_features]`` float, labels ``[n]`` int.
      validation: an optional ``(x, y)`` evaluated after every epoch.
      epochs: number of passes over the training set.
      batch_size: examples per step.
      lr: learning rate.
      grad: ``"autodiff"`` or ``"manual"``.
      optimizer: ``"sgd"`` (plain ``params - lr * grad``), another name from
        :data:`jax_softmax.gradients.OPTIMIZERS`, or an optax optimizer.
      l2: strength of the L2 penalty on the weights.
      init_scale: standard deviation of the initial weights (0 for zeros).
      seed: seeds the initial weights and the shuffling, 0 to 2**32 - 1.
      dtype: floating dtype of the parameters and computation.
      num_classes: number of classes.
      params: start from these parameters instead of a fresh initialisation.
      callback: called as ``callback(metrics, params)`` after every epoch.
      opt_state: continue from this optimizer state (with ``params``) instead of
        ``optimizer.init(params)``.
      start_epoch: the number of epochs already trained: epochs ``start_epoch + 1``
        to ``epochs`` run, with the shuffling keys a run from epoch 1 would use, so
        resuming from the parameters and optimizer state saved after epoch
        ``start_epoch`` gives the same result, bit for bit, as not stopping.
      on_nonfinite: what to do when a step's loss, parameters or optimizer state is
        NaN or infinite (found inside the compiled epoch, see
        :mod:`jax_softmax.nonfinite`): ``"stop"`` returns the last finite parameters
        with ``history.stopped`` saying where and why; ``"raise"`` raises
        :class:`jax_softmax.NonFiniteError`, which carries them.
      checkpoint_callback: called as ``checkpoint_callback(metrics, params,
        opt_state)`` after every epoch (after ``callback``): everything a later
        ``fit(..., params=params, opt_state=opt_state, start_epoch=metrics.epoch)``
        needs.
      devices: how many devices share each mini-batch (data parallelism, see
        :mod:`jax_softmax.distributed`): ``None`` for all of them (every process's
        after :func:`jax_softmax.initialize_distributed`), 1 for one device. The
        result equals the one-device result to float rounding.
      uint8_pixels: the inputs (training and validation) are uint8 pixels, as
        :func:`jax_softmax.load_mnist_uint8` returns them: they go to the device as
        they are (a quarter of the bytes of float32; on a CPU, without a copy) and each
        batch is scaled to ``x / 255`` there, the values :func:`jax_softmax.load_mnist`
        gives, so training is the same, bit for bit. ``False``: inputs are used as given.

    Returns:
      ``(params, history)``: the parameters after the last epoch, or the last finite
      ones when training stopped on a non-finite value.

    Raises:
      ValueError, TypeError: for malformed data or hyperparameters, naming them,
        for an empty split, and for a ``batch_size`` that does not divide evenly over
        the devices.

    Warns:
      RawPixelsWarning: the training inputs look like raw 0-255 pixels, not pixels in [0, 1].
      NonFiniteError: (a ``FloatingPointError``) with ``on_nonfinite="raise"``.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < SEED_LIMIT:
        # PRNG keys hold 32 bits: a larger seed would silently train a smaller one's run.
        raise ValueError(f"seed must be an integer in [0, 2**32 - 1], got {seed!r}")
    if grad not in GRAD_MODES:
        raise ValueError(f"grad must be one of {GRAD_MODES}, got {grad!r}")
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be finite and > 0, got {lr!r}")
    if not (np.isfinite(l2) and l2 >= 0):
        raise ValueError(f"l2 must be finite and >= 0, got {l2!r}")
    if on_nonfinite not in ON_NONFINITE:
        raise ValueError(f"on_nonfinite must be one of {ON_NONFINITE}, got {on_nonfinite!r}")
    if not isinstance(start_epoch, int) or not 0 <= start_epoch < epochs:
        raise ValueError(f"start_epoch must be an integer in [0, epochs={epochs}), got {start_epoch!r}")
    if opt_state is not None and params is None:
        raise ValueError("opt_state needs the params it belongs to: pass params too")
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype float64 needs 64-bit JAX: set jax.config.update('jax_enable_x64', True)")
    classes = num_classes if params is None else params.w.shape[1]
    x_train, y_train = _check_split("train", train, None if params is None else params.w.shape[0], classes)
    if not isinstance(batch_size, int) or not 1 <= batch_size <= len(x_train):
        raise ValueError(f"batch_size must be an integer in [1, {len(x_train)}], got {batch_size!r}")
    if validation is not None:
        x_val, y_val = _check_split("validation", validation, x_train.shape[1], classes)
    if not uint8_pixels:  # uint8_pixels says they are raw pixels, and scales them
        _warn_if_raw_pixels(x_train)
    parallel = data_parallel(devices)
    if parallel is not None:
        parallel.check_batch_size(batch_size)

    shape = None if params is not None else (x_train.shape[1], num_classes)
    scale = float(init_scale)
    shuffle_key, fresh = _start(seed=seed, skip=start_epoch, shape=shape, scale=scale, dtype=dtype)
    params = fresh if params is None else params
    transform = make_optimizer(optimizer, lr) if isinstance(optimizer, str) else optimizer
    fresh_state = () if transform is None else transform.init(params)
    if opt_state is None:
        opt_state = fresh_state
    elif jax.tree.structure(opt_state) != jax.tree.structure(fresh_state):
        raise ValueError(
            f"opt_state does not belong to this optimizer: its tree is {jax.tree.structure(opt_state)}, "
            f"the optimizer's is {jax.tree.structure(fresh_state)}"
        )

    if uint8_pixels:
        for name, x in (("train", x_train), ("validation", x_val if validation is not None else None)):
            if x is not None and x.dtype != np.uint8:
                raise TypeError(f"uint8_pixels=True needs uint8 {name} x, got dtype {x.dtype}")
        # device_put, not jnp.asarray: on a CPU it can use the host array without copying it.
        x_train = jax.device_put(x_train)
    else:
        x_train = jnp.asarray(x_train, dtype)
    y_train = jnp.asarray(y_train, jnp.int32)
    if validation is not None:
        x_val = jax.device_put(x_val) if uint8_pixels else jnp.asarray(x_val, dtype)
        y_val = jnp.asarray(y_val, jnp.int32)
    lr_array = jax.device_put(np.asarray(lr, dtype))  # a transfer, where jnp.asarray compiles a cast
    # With several devices every array is replicated and each batch is split.
    replicate = (lambda tree: tree) if parallel is None else parallel.replicate
    params, opt_state, x_train, y_train, lr_array = replicate((params, opt_state, x_train, y_train, lr_array))
    if validation is not None:
        x_val, y_val = replicate((x_val, y_val))

    settings = {"batch_size": batch_size, "grad": grad, "optimizer": transform, "l2": l2}
    if uint8_pixels:
        settings["uint8_pixels"] = True
    if parallel is not None:
        settings["batch_sharding"] = parallel.batch_indices
    # Not donated: the parameters are small, and the epoch's inputs stay valid for a replay.
    epoch_fn = jax.jit(partial(checked_epoch, **settings))
    start = time.perf_counter()
    compiled = _compile(epoch_fn.lower(params, opt_state, replicate(shuffle_key), x_train, y_train, lr_array))
    if validation is not None:
        evaluate_compiled = (
            (evaluate_pixels if uint8_pixels else evaluate).lower(params, x_val, y_val).compile()
        )
    history = History(compile_seconds=time.perf_counter() - start)

    start_loss = previous_loss = None  # epoch means, for describing a stop
    for epoch in range(start_epoch + 1, epochs + 1):
        start = time.perf_counter()
        shuffle_key, epoch_key = _split_key(shuffle_key)
        epoch_key = replicate(epoch_key)
        before = (params, opt_state)
        params, opt_state, train_loss, finite = compiled(
            params, opt_state, epoch_key, x_train, y_train, lr_array
        )
        if not bool(finite):
            # Replay the epoch with every step checked, to find the first non-finite one
            # and the last finite parameters; compiled only when an epoch goes wrong.
            replay = jax.jit(partial(train_epoch, **settings, stop_at_nonfinite=True))
            replay = _compile(replay.lower(*before, epoch_key, x_train, y_train, lr_array))
            params, opt_state, train_loss, first_bad_step, losses = replay(
                *before, epoch_key, x_train, y_train, lr_array
            )
            if int(first_bad_step):
                losses = np.asarray(losses)
                history.stopped = describe_stop(
                    epoch=epoch,
                    step=int(first_bad_step),
                    losses=losses,
                    start_loss=float(losses[0]) if start_loss is None else start_loss,
                    previous_loss=np.nan if previous_loss is None else previous_loss,
                    lr=lr,
                    dtype=dtype.name,
                    l2=l2,
                )
                if on_nonfinite == "raise":
                    raise NonFiniteError(history.stopped, params)
                return params, history
        if validation is not None:
            val_loss, val_acc = evaluate_compiled(params, x_val, y_val)
        else:
            val_loss = val_acc = jnp.nan
        metrics = EpochMetrics(
            epoch=epoch,
            train_loss=float(train_loss),
            val_loss=float(val_loss),
            val_accuracy=float(val_acc),
            seconds=time.perf_counter() - start,
        )
        history.epochs.append(metrics)
        start_loss = metrics.train_loss if start_loss is None else start_loss
        previous_loss = metrics.train_loss
        if callback is not None:
            callback(metrics, params)
        if checkpoint_callback is not None:
            checkpoint_callback(metrics, params, opt_state)
    return params, history
