"""Pixels to features: uint8 0-255 to floats in ``[0, 1]``, on the host and on the device."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # JAX is imported where it is used: reading MNIST needs only NumPy
    import jax
    from jax.typing import DTypeLike


def to_features(images: np.ndarray) -> np.ndarray:
    """uint8 images ``[n, 28, 28]`` (or ``[n, 784]``) to float32 features ``[n, 784]`` in ``[0, 1]``.

    The values of ``images.astype(np.float32) / np.float32(255)``, in one pass; a large
    array is converted in row blocks on up to four threads (NumPy releases the
    interpreter lock), which takes MNIST's 70,000 images from 0.055 s to 0.034 s on
    two cores.
    """
    flat = images.reshape(len(images), -1)
    features = np.empty(flat.shape, np.float32)
    parts = min(os.cpu_count() or 1, 4) if flat.size >= 1 << 22 else 1
    bounds = [len(flat) * i // parts for i in range(parts + 1)]

    def convert(part: int) -> None:
        rows = slice(bounds[part], bounds[part + 1])
        np.divide(flat[rows], np.float32(255.0), out=features[rows], dtype=np.float32)

    threads = [threading.Thread(target=convert, args=(part,)) for part in range(1, parts)]
    for thread in threads:
        thread.start()
    convert(0)
    for thread in threads:
        thread.join()
    return features


def pixel_features(pixels: jax.Array, dtype: DTypeLike = np.float32) -> jax.Array:
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
    import jax
    import jax.numpy as jnp

    u = jnp.asarray(pixels).astype(jnp.uint32)
    shift = jax.lax.clz(u) - 24  # u << shift is in [128, 256); 0 stays 0
    q = (u << shift) * 65793 + (u != 0).astype(jnp.uint32)  # at most 2**24
    scale = jax.lax.bitcast_convert_type((103 - shift) << 23, jnp.float32)  # 2**-(24 + shift)
    return (q.astype(jnp.float32) * scale).astype(dtype)
