"""Argument checks for the public functions, run at their boundary.

There are two kinds of check:

* static checks (rank, shape, dtype) read only what a tracer also knows, so they run
  under ``jit``, ``grad``, ``vmap`` and ``lax.scan`` as well, once per trace;
* value checks (labels in range, finite inputs, a positive learning rate) need the
  numbers, so they run on concrete values only and are skipped for tracers. They
  never enter a traced computation, so they change no result and no derivative.

Concrete values held on the host or on the CPU are read in place with NumPy, with no
copy and no device dispatch, which keeps the cost for a batch of 200 MNIST images to
tens of microseconds. Arrays on an accelerator are reduced where they live, so only a
few scalars cross to the host.

Every check raises ``TypeError`` for a wrong kind of value and ``ValueError`` for a
wrong shape or value, naming the argument, what it must be and what it is.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

if TYPE_CHECKING:
    from jax_softmax.model import Params


def is_concrete(value: Any) -> bool:
    """Whether ``value`` holds numbers now, rather than standing for them in a trace.

    A nested list is concrete when none of its entries is a tracer.
    """
    if isinstance(value, (list, tuple)):
        return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(value))
    return not isinstance(value, jax.core.Tracer)


def _shape_and_dtype(value: Any, name: str) -> tuple[tuple[int, ...], np.dtype]:
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is None or dtype is None:
        try:
            # jax.numpy also stacks a list of tracers, as the functions themselves do.
            array = np.asarray(value) if is_concrete(value) else jnp.asarray(value)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name} must be an array, got {type(value).__name__} ({e})") from None
        shape, dtype = array.shape, array.dtype
    return tuple(shape), dtype


# The dtype's kind answers for NumPy's own dtypes at a fraction of jnp.issubdtype's cost;
# jnp.issubdtype answers for the others (bfloat16, float8, JAX's key types).
def _is_floating(dtype: Any) -> bool:
    return getattr(dtype, "kind", None) == "f" or jnp.issubdtype(dtype, jnp.floating)


def _is_integer(dtype: Any) -> bool:
    return getattr(dtype, "kind", None) in ("i", "u") or jnp.issubdtype(dtype, jnp.integer)


def _on_host(value: Any) -> bool:
    """Whether NumPy can read ``value`` in place: host data, or a whole array on the CPU."""
    if not isinstance(value, jax.Array):
        return True
    return value.is_fully_addressable and all(d.platform == "cpu" for d in value.sharding.device_set)


def _readable(value: Any) -> tuple[Any, Any]:
    """``(np, array)`` to reduce ``value`` on the host, or ``(jnp, value)`` where it lives."""
    return (np, np.asarray(value)) if _on_host(value) else (jnp, value)


def _first_bad(bad: Any, shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """How many entries of the boolean array ``bad`` are set, and the index of the first."""
    xp = np if isinstance(bad, np.ndarray) else jnp
    count = int(xp.count_nonzero(bad))
    first = np.unravel_index(int(xp.argmax(bad.reshape(-1))), shape)
    return count, tuple(int(i) for i in first)


def _index(index: tuple[int, ...]) -> str:
    return str(index[0]) if len(index) == 1 else str(list(index))


def check_finite(value: Any, name: str) -> None:
    """Rejects NaN and infinite entries of a concrete floating array; tracers pass.

    Raises:
      ValueError: naming ``name``, the number of non-finite entries and the first index.
    """
    if not is_concrete(value):
        return
    shape, dtype = _shape_and_dtype(value, name)
    if not _is_floating(dtype):
        return
    xp, values = _readable(value)
    finite = xp.isfinite(values)
    if finite.all():
        return
    count, first = _first_bad(~finite, shape)
    raise ValueError(
        f"{name} must be finite, got {count} NaN or infinite value{'s' * (count != 1)}, "
        f"the first ({float(values[first])}) at index {_index(first)}"
    )


class RawPixelsWarning(UserWarning):
    """Inputs look like raw 0-255 pixel values: the model expects them in [0, 1]."""


def looks_like_raw_pixels(x: Any) -> bool:
    """Whether concrete inputs look like raw 0-255 pixels: none negative, some above 1.5, none above 255.

    Tracers and non-numeric values give ``False``.
    """
    if not is_concrete(x):
        return False
    dtype = getattr(x, "dtype", None) or np.asarray(x).dtype
    if not (_is_floating(dtype) or _is_integer(dtype)) or np.size(x) == 0:
        return False
    xp, values = _readable(x)
    low, high = float(xp.min(values)), float(xp.max(values))
    return low >= 0 and 1.5 < high <= 255


def warn_raw_pixels(name: str, stacklevel: int = 2) -> None:
    """Warns (:class:`RawPixelsWarning`) that ``name`` looks like raw 0-255 pixels, naming the fix."""
    warnings.warn(
        f"{name} looks like raw 0-255 pixels (values up to 255, none negative): divide by 255 "
        "(x / 255.0) to feed pixels in [0, 1]; at 255 times the scale the steps are far too large "
        "and training learns little",
        RawPixelsWarning,
        stacklevel=stacklevel + 1,
    )


def check_params(params: Any, name: str = "params") -> tuple[int, int]:
    """Checks that ``params`` is a :class:`Params` of a floating ``w [f, c]`` and ``b [c]``.

    Static only: the parameters' values are not inspected (a diverged model's
    non-finite parameters are still parameters).

    Returns:
      ``(num_features, num_classes)``.

    Raises:
      TypeError: not a ``Params``, or ``w``/``b`` not floating arrays.
      ValueError: ``w`` not 2-D or ``b`` not ``[num_classes]``.
    """
    from jax_softmax.model import Params  # model imports this module

    if not isinstance(params, Params):
        raise TypeError(f"{name} must be a jax_softmax.Params(w, b), got {type(params).__name__}")
    for field in ("w", "b"):
        leaf = getattr(params, field)
        if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
            raise TypeError(f"{name}.{field} must be an array, got {type(leaf).__name__}")
        if not _is_floating(leaf.dtype):
            raise TypeError(f"{name}.{field} must have a floating dtype, got {leaf.dtype}")
    w_shape, b_shape = tuple(params.w.shape), tuple(params.b.shape)
    if len(w_shape) != 2:
        raise ValueError(f"{name}.w must be [num_features, num_classes], got shape {w_shape}")
    if b_shape != (w_shape[1],):
        raise ValueError(
            f"{name}.b must have shape ({w_shape[1]},) to match {name}.w {w_shape}, got {b_shape}"
        )
    return w_shape[0], w_shape[1]


def check_direction(direction: Any, params: Params, name: str = "direction") -> None:
    """Checks that ``direction`` is a :class:`Params` of the same shapes and dtype as ``params``.

    Raises:
      TypeError: not a ``Params`` of floating arrays, or another dtype.
      ValueError: other shapes.
    """
    check_params(direction, name)
    for field in ("w", "b"):
        mine, theirs = getattr(direction, field), getattr(params, field)
        if tuple(mine.shape) != tuple(theirs.shape):
            raise ValueError(
                f"{name}.{field} must have the shape of params.{field}, {tuple(theirs.shape)}, "
                f"got {tuple(mine.shape)}"
            )
        if mine.dtype != theirs.dtype:
            raise TypeError(
                f"{name}.{field} must have params.{field}'s dtype {theirs.dtype}, got {mine.dtype}"
            )


def check_inputs(x: Any, num_features: int, name: str = "x") -> int:
    """Checks inputs ``x`` ``[batch, num_features]``: real numbers, batch >= 1, finite.

    Integer inputs (uint8 pixels, say) are accepted; the model converts them to its
    floating dtype. The finiteness check runs on concrete values only.

    Returns:
      The batch size.

    Raises:
      TypeError: ``x`` is not an array of real numbers.
      ValueError: wrong rank, wrong number of features, an empty batch, or NaN/inf entries.
    """
    shape, dtype = _shape_and_dtype(x, name)
    if not (_is_floating(dtype) or _is_integer(dtype)):
        raise TypeError(f"{name} must hold real numbers (a floating or integer dtype), got {dtype}")
    if len(shape) != 2:
        raise ValueError(f"{name} must be [batch, num_features], got shape {shape}")
    if shape[1] != num_features:
        raise ValueError(
            f"{name} must have {num_features} features per example, as many as params.w has rows, "
            f"got shape {shape}"
        )
    if shape[0] < 1:
        raise ValueError(f"{name} must hold at least one example (batch >= 1), got shape {shape}")
    check_finite(x, name)
    return shape[0]


def check_labels(y: Any, batch: int, num_classes: int, name: str = "y") -> None:
    """Checks labels ``y`` ``[batch]``: integers in ``[0, num_classes)``.

    The range check runs on concrete values only.

    Raises:
      TypeError: ``y`` does not hold integers.
      ValueError: wrong shape, or a label outside ``[0, num_classes)``.
    """
    shape, dtype = _shape_and_dtype(y, name)
    if not _is_integer(dtype):
        raise TypeError(f"{name} must hold integer class labels, got dtype {dtype}")
    if shape != (batch,):
        raise ValueError(f"{name} must have shape ({batch},), one label per example of x, got {shape}")
    if not is_concrete(y):
        return
    _, labels = _readable(y)
    if 0 <= labels.min() and labels.max() < num_classes:
        return
    count, first = _first_bad((labels < 0) | (labels >= num_classes), shape)
    raise ValueError(
        f"{name} must hold class labels in [0, {num_classes}), got {count} label{'s' * (count != 1)} "
        f"outside it, the first {int(labels[first])} at index {_index(first)}"
    )


def _check_scalar(value: Any, name: str) -> float | None:
    """The value of a real scalar as a float, or ``None`` for a tracer."""
    shape, dtype = _shape_and_dtype(value, name)
    if isinstance(value, bool) or not (_is_floating(dtype) or _is_integer(dtype)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} of dtype {dtype}")
    if shape != ():
        raise ValueError(f"{name} must be a scalar, got shape {shape}")
    return float(value) if is_concrete(value) else None


def check_learning_rate(lr: Any, name: str = "lr") -> None:
    """Checks that ``lr`` is a real scalar, finite and > 0 (the value only when concrete).

    Raises:
      TypeError: not a real number.
      ValueError: not a scalar, or not finite and positive.
    """
    value = _check_scalar(lr, name)
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_l2(l2: Any, name: str = "l2") -> None:
    """Checks that ``l2`` is a real scalar, finite and >= 0 (the value only when concrete).

    Raises:
      TypeError: not a real number.
      ValueError: not a scalar, or negative or not finite.
    """
    value = _check_scalar(l2, name)
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_batch(params: Any, x: Any, y: Any = None, l2: Any = None) -> None:
    """Checks the arguments of a function of ``(params, x[, y][, l2])`` together.

    Raises:
      TypeError, ValueError: as :func:`check_params`, :func:`check_inputs`,
        :func:`check_labels` and :func:`check_l2`.
    """
    num_features, num_classes = check_params(params)
    batch = check_inputs(x, num_features)
    if y is not None:
        check_labels(y, batch, num_classes)
    if l2 is not None:
        check_l2(l2)


def check_split(
    name: str, split: Sequence[ArrayLike], num_features: int | None, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of a data split as NumPy arrays, checked: shapes, a non-empty split, integer
    labels in ``[0, num_classes)``, finite inputs.

    Raises:
      ValueError, TypeError: naming the split and what is wrong with it.
    """
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
    check_finite(x, f"{name} x")
    if num_classes is not None:
        check_labels(y, len(y), num_classes, f"{name} y")
    return x, y


def check_dtype_enabled(dtype: Any) -> None:
    """Refuses float64 when 64-bit JAX is off: JAX would silently compute in float32.

    Raises:
      ValueError: for float64 without ``jax_enable_x64``, saying how to switch it on.
    """
    if np.dtype(dtype) == np.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype float64 needs 64-bit JAX: set jax.config.update('jax_enable_x64', True)")


@contextlib.contextmanager
def x64(enabled: bool = True) -> Iterator[None]:
    """64-bit JAX inside the block only (nothing changes with ``enabled`` false)."""
    if not enabled or jax.config.jax_enable_x64:
        yield
    elif hasattr(jax, "enable_x64"):
        with jax.enable_x64(True):
            yield
    else:  # older JAX
        from jax.experimental import enable_x64

        with enable_x64():
            yield
