"""Deskewing: each digit sheared upright about its centre of mass, by its second moments.

Each image is sheared horizontally so that its principal stroke direction becomes
vertical, and shifted so that its centre of mass lands on the image centre: the
classic preprocessing of the deskewed entries of LeCun's MNIST table, which takes a
linear classifier from 12.0% to 8.4% error. :func:`deskew` is the JAX function;
:func:`deskew_pixels` keeps uint8 pixels uint8, as a run's data and its cache hold them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.ndimage import map_coordinates

IMAGE_SIDE = 28
_FLAT_SIZE = IMAGE_SIDE * IMAGE_SIDE


def _check_shape(shape: tuple[int, ...]) -> None:
    """Raises ValueError unless ``shape`` is ``[n, 784]`` or ``[n, 28, 28]``."""
    side = IMAGE_SIDE
    if len(shape) == 2 and shape[1] == _FLAT_SIZE:
        return
    if len(shape) == 3 and tuple(shape[1:]) == (side, side):
        return
    hint = ""
    if tuple(shape) in ((side, side), (_FLAT_SIZE,)):
        hint = " (for a single image add a batch axis: images[None])"
    raise ValueError(
        f"deskew expects images of shape [n, {_FLAT_SIZE}] or "
        f"[n, {side}, {side}]; got shape {tuple(shape)}{hint}"
    )


@jax.jit
def _all_finite(images: jax.Array) -> jax.Array:
    """Returns whether every value of ``images`` is finite (one fused pass)."""
    return jnp.isfinite(images).all()


def _check_finite(images: np.ndarray | jax.Array) -> None:
    """Raises ValueError if concrete ``images`` hold NaN or infinity.

    Traced values (inside ``jax.jit``, ``vmap`` and friends) are not checked.
    """
    if isinstance(images, jax.core.Tracer):
        return
    if not jnp.issubdtype(images.dtype, jnp.inexact):
        return
    if isinstance(images, jax.Array):
        finite = bool(_all_finite(images))
    else:
        finite = bool(np.isfinite(images).all())
    if not finite:
        raise ValueError("deskew got non-finite values (NaN or infinity) in images")


def _output_dtype(dtype: np.dtype) -> np.dtype:
    """Floating dtypes are kept; integer and boolean images give float32."""
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise ValueError(f"deskew expects real-valued images; got dtype {dtype}")
    if jnp.issubdtype(dtype, jnp.floating):
        return jnp.dtype(dtype)
    return jnp.dtype(jnp.float32)


def _shear_and_shift(image: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns ``(shift_r, shift_c, alpha)`` of one ``[h, w]`` image.

    ``shift_*`` is centre of mass minus image centre; ``alpha`` is the ratio
    of the row/column covariance to the row variance. All three are 0 for an
    image without positive mass or without row spread.
    """
    h, w = image.shape
    rows = jnp.arange(h, dtype=image.dtype)
    cols = jnp.arange(w, dtype=image.dtype)
    row_mass = image.sum(axis=1)
    col_mass = image.sum(axis=0)
    mass = row_mass.sum()
    has_mass = mass > 0
    safe_mass = jnp.where(has_mass, mass, 1)
    mean_r = row_mass @ rows / safe_mass
    mean_c = col_mass @ cols / safe_mass
    dr = rows - mean_r
    dc = cols - mean_c
    var_r = row_mass @ (dr * dr) / safe_mass
    cov = dr @ image @ dc / safe_mass
    has_spread = has_mass & (var_r > 0)
    alpha = jnp.where(has_spread, cov / jnp.where(has_spread, var_r, 1), 0)
    shift_r = jnp.where(has_mass, mean_r - (h - 1) / 2, 0)
    shift_c = jnp.where(has_mass, mean_c - (w - 1) / 2, 0)
    return shift_r, shift_c, alpha


def _deskew_one(image: jax.Array) -> jax.Array:
    """Deskews one ``[h, w]`` floating image (bilinear, zero outside)."""
    h, w = image.shape
    shift_r, shift_c, alpha = _shear_and_shift(image)
    r = jnp.arange(h, dtype=image.dtype)[:, None]
    c = jnp.arange(w, dtype=image.dtype)[None, :]
    in_r = jnp.broadcast_to(r + shift_r, (h, w))
    in_c = c + shift_c + alpha * (r - (h - 1) / 2)
    out = map_coordinates(image, [in_r, in_c], order=1, mode="constant", cval=0.0)
    low = jnp.minimum(image.min(), 0)
    high = jnp.maximum(image.max(), 0)
    return jnp.where(out > high, high, jnp.where(out < low, low, out))


@jax.jit
def _deskew_batch(images: jax.Array) -> jax.Array:
    """Deskews a checked batch, computing in at least float32."""
    compute = jnp.promote_types(images.dtype, jnp.float32)
    square = images.reshape(images.shape[0], IMAGE_SIDE, IMAGE_SIDE)
    out = jax.vmap(_deskew_one)(square.astype(compute))
    return out.reshape(images.shape).astype(_output_dtype(images.dtype))


def deskew(images: jax.typing.ArrayLike) -> jax.Array:
    """Deskews a batch of 28x28 digit images.

    For each image with intensities ``p(r, c)`` (row ``r``, column ``c``) the
    mass ``m = sum p``, the centre of mass ``(mr, mc)``, the row variance
    ``var_r = sum p (r - mr)**2 / m`` and the covariance
    ``cov = sum p (r - mr) (c - mc) / m`` give the shear ``alpha = cov / var_r``.
    Output pixel ``(r, c)`` is the bilinear sample of the input at row
    ``r - 13.5 + mr`` and column ``c - 13.5 + mc + alpha * (r - 13.5)``, with
    zero outside the image. This makes the stroke vertical (covariance 0)
    and moves the centre of mass to the image centre ``(13.5, 13.5)``. It is
    ``scipy.ndimage.affine_transform(p, [[1, 0], [alpha, 1]], offset=(mr, mc)
    - [[1, 0], [alpha, 1]] @ (13.5, 13.5), order=1, mode='grid-constant')``;
    SciPy's ``mode='constant'`` differs only where a sample falls less than
    one pixel outside the image, which it sets to 0 instead of interpolating.

    Intensities are meant to be non-negative (such as raw 0..255 values or
    values scaled to [0, 1]); they are not rescaled. Images without positive
    mass are returned unchanged, so blank images stay exactly blank, and an
    image whose mass lies in a single row is only shifted. Every output value
    lies in ``[min(0, image.min()), max(0, image.max())]`` of its own image.

    Compiled with ``jax.jit`` (once per input shape and dtype) and vectorised
    over the batch; it can itself be used inside ``jax.jit``.

    Args:
        images: Array-like of shape ``[n, 28, 28]`` or ``[n, 784]`` (rows
            flattened row-major), of any real dtype.

    Returns:
        A ``jax.Array`` of the same shape as ``images``. Its dtype is that of
        ``images`` when it is floating (float32 stays float32, float64 stays
        float64 when 64-bit mode is on); integer and boolean images, such as
        raw uint8 MNIST, give float32. Half-precision inputs are computed in
        float32 and returned in their own dtype.

    Raises:
        ValueError: If ``images`` is not of shape ``[n, 784]`` or
            ``[n, 28, 28]``, is complex, or (when its values are concrete,
            that is, not traced under a JAX transformation) holds NaN or
            infinity.

    Example:
        >>> import numpy as np
        >>> bar = np.zeros((1, 28, 28), np.float32)
        >>> bar[0, 8:20, 13:15] = 1.0  # vertical bar, already centred
        >>> out = deskew(bar)
        >>> out.shape, out.dtype
        ((1, 28, 28), dtype('float32'))
        >>> bool((out == bar).all())
        True
        >>> deskew(np.zeros((2, 784), np.uint8)).sum().item()
        0.0
    """
    if not isinstance(images, (jax.Array, np.ndarray)):
        images = np.asarray(images)
    _check_shape(images.shape)
    _output_dtype(images.dtype)
    _check_finite(images)
    return _deskew_batch(images)


DESKEW_CHUNK = 10_000
"""Images deskewed by one call of :func:`deskew_pixels`: bounds the float copy's memory."""


def deskew_pixels(pixels: np.ndarray) -> np.ndarray:
    """:func:`deskew` of uint8 pixels ``[n, 784]`` (or ``[n, 28, 28]``), rounded back to uint8.

    Deskewing resamples the image, so its values fall between the 256 levels; they are
    rounded to the nearest one, as an image file would keep them, so that a deskewed
    data set takes the same path through training as the raw one (uint8 on the device,
    scaled there) and the same bytes whether it is computed or read from the cache.

    Returns:
      uint8 of the shape of ``pixels``.

    Raises:
      ValueError: for another dtype than uint8, or another shape than ``deskew`` takes.
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise ValueError(f"deskew_pixels takes uint8 pixels, got dtype {pixels.dtype}")
    _check_shape(pixels.shape)
    out = np.empty(pixels.shape, np.uint8)
    for start in range(0, len(pixels), DESKEW_CHUNK):
        part = np.asarray(_deskew_batch(pixels[start : start + DESKEW_CHUNK]))
        out[start : start + DESKEW_CHUNK] = np.rint(part)
    return out
