"""The user's own digits: images of any size turned into MNIST-like 784-pixel inputs.

MNIST's digits were size-normalised to fit a 20x20 box keeping their aspect ratio,
then placed in a 28x28 frame so that their centre of mass is at the frame's centre
(pixel (14, 14) in row, column index coordinates, which is where the training
images' mean centre of mass lies), light on a black background. A model trained on
MNIST has only seen digits like that, so :func:`preprocess_image` does the same to
any picture: grey, inverted if the paper is light, stretched to full contrast,
cropped to the ink, scaled to fit 20x20, centred by mass, in ``[0, 1]``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from jax_softmax.data._mnist import NUM_FEATURES

if TYPE_CHECKING:
    import PIL.Image

FRAME = 28  # side of the MNIST frame
BOX = 20  # side of the box the digit is scaled to fit
CENTRE = 14.0  # where MNIST puts the centre of mass, in pixel index coordinates
# After contrast stretching, grey levels below this are paper texture, shadows or
# compression noise, not ink: they are set to zero so they neither widen the crop
# nor pull the centre of mass.
NOISE_FLOOR = 0.1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Decoding works on float64 copies of the whole image: 50 megapixels (more than a
# 48-megapixel phone photo) take about 1.3 GB at the peak. Larger files are refused
# from their header, before anything is decoded.
MAX_IMAGE_PIXELS = 50_000_000

Invert = Literal["auto"] | bool


def _pil():
    try:
        from PIL import Image, ImageOps
    except ImportError as e:  # Pillow is a core dependency; this is a broken install
        raise ImportError(f"reading images needs Pillow: pip install pillow ({e})") from None
    return Image, ImageOps


def _grey_from_pil(image) -> np.ndarray:
    """A PIL image as grey levels ``[h, w]`` float64 in ``[0, 1]``, transparency resolved."""
    _, ImageOps = _pil()
    image = ImageOps.exif_transpose(image)  # phone photos store their rotation in EXIF
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        return _grey_from_array(np.asarray(image))
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if not has_alpha:
        return np.asarray(image.convert("L"), np.float64) / 255.0
    rgba = np.asarray(image.convert("RGBA"), np.float64) / 255.0
    return _composite(_luminance(rgba[..., :3]), rgba[..., 3])


def _luminance(rgb: np.ndarray) -> np.ndarray:
    # ITU-R 601-2 luma, the weights PIL's convert("L") uses.
    return rgb @ np.array([0.299, 0.587, 0.114])


def _composite(grey: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Lays a partly transparent drawing on paper of the colour opposite to its ink.

    A digit drawn on a transparent canvas carries its shape in the alpha channel;
    whether the strokes are dark or light, they stay visible on a contrasting paper.
    """
    if np.all(alpha >= 1.0):
        return grey
    weight = alpha.sum()
    ink = (grey * alpha).sum() / weight if weight > 0 else 0.0
    paper = 1.0 if ink < 0.5 else 0.0
    return alpha * grey + (1.0 - alpha) * paper


def _grey_from_array(array: np.ndarray) -> np.ndarray:
    """An array image ``[h, w]``, ``[h, w, 3]`` or ``[h, w, 4]`` as grey levels in ``[0, 1]``."""
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ValueError(f"image must be [h, w], [h, w, 3] or [h, w, 4], got shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.float64)
    elif np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        if info.min < 0 and array.min() < 0:
            raise ValueError(f"image must not hold negative values, got minimum {array.min()}")
        # 8-bit images scale by 255; wider integer images by their own largest value.
        top = 255.0 if info.bits == 8 or array.max() <= 255 else float(array.max())
        array = array.astype(np.float64) / top
    elif np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
        if not np.all(np.isfinite(array)):
            raise ValueError("image must hold finite values, got NaN or infinity")
    else:
        raise TypeError(f"image must be a numeric array, got dtype {array.dtype}")
    if array.ndim == 2:
        return array
    if array.shape[2] == 1:
        return array[..., 0]
    grey = _luminance(array[..., :3])
    return _composite(grey, array[..., 3]) if array.shape[2] == 4 else grey


def _resize(grey: np.ndarray, height: int, width: int) -> np.ndarray:
    Image, _ = _pil()
    if grey.shape == (height, width):
        return grey
    # Lanczos resampling low-passes when it shrinks, as MNIST's anti-aliasing did.
    resized = Image.fromarray(grey.astype(np.float32)).resize((width, height), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, np.float64), 0.0, 1.0)


def _check_image_size(path: Path, width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(
            f"{path}: too large: {width}x{height} pixels ({width * height:,}), the limit is "
            f"{MAX_IMAGE_PIXELS:,}; scale the image down first (a digit needs no more than a few "
            "hundred pixels a side)"
        )


def preprocess_image(
    image: str | os.PathLike | np.ndarray | PIL.Image.Image, *, invert: Invert = "auto"
) -> np.ndarray:
    """Turns a picture of one digit into an MNIST-like input.

    Steps: convert to grey (a transparent background becomes paper of the colour
    opposite to the ink); invert if the background is light (``invert="auto"``
    decides from the median of the border pixels); stretch the contrast so the
    background is 0 and the brightest ink 1, zeroing levels below
    :data:`NOISE_FLOOR`; crop to the ink's bounding box; scale it to fit a 20x20 box
    keeping its aspect ratio; place it in a 28x28 frame with its centre of mass at
    pixel (14, 14).

    Args:
      image: a path to a PNG or JPEG file, a ``PIL.Image.Image``, or an array
        ``[h, w]``, ``[h, w, 3]`` (RGB) or ``[h, w, 4]`` (RGBA); integer arrays are
        8-bit (0-255) levels, float arrays levels in ``[0, 1]``. Any size, colour or
        grey, dark ink on light paper or light on dark.
      invert: ``"auto"``, or ``True`` / ``False`` to force whether the grey levels
        are inverted (the digit must end up light on dark).

    Returns:
      float32 ``[784]`` in ``[0, 1]``: the 28x28 frame, row by row.

    Raises:
      ValueError: for an image with no contrast (no digit), an unreadable file, one over
        ``MAX_IMAGE_PIXELS`` (checked from its header, before decoding), or a
        malformed array.
      TypeError: for an ``image`` of another type, or ``invert`` not ``"auto"`` or a bool.

    >>> frame = np.zeros((50, 30)); frame[5:45, 3:13] = 1.0  # a light bar, off-centre
    >>> x = preprocess_image(frame).reshape(28, 28)
    >>> int((x > 0.5).sum(axis=0).max()), int((x > 0.5).sum(axis=1).max())  # 20 tall, 5 wide
    (20, 5)
    """
    if not (invert == "auto" or isinstance(invert, bool)):
        raise TypeError(f"invert must be 'auto', True or False, got {invert!r}")
    grey = _grey_image(image)
    if min(grey.shape) < 1:
        raise ValueError(f"image is empty, shape {grey.shape}")

    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if invert == "auto":
        invert = bool(np.median(border) > 0.5)
    if invert:
        grey, border = 1.0 - grey, 1.0 - border
    background = float(np.median(border))
    ink = float(grey.max())
    if ink - background < 0.05:
        raise ValueError(
            f"image has no digit: its lightest level is {ink:.3f} against a background of "
            f"{background:.3f}{' (after inverting it)' if invert else ''}"
        )
    grey = np.clip((grey - background) / (ink - background), 0.0, 1.0)
    grey[grey < NOISE_FLOOR] = 0.0

    return _place_in_frame(grey).reshape(NUM_FEATURES).astype(np.float32)


def _grey_image(image) -> np.ndarray:
    """Grey levels in ``[0, 1]``, ``[height, width]``, from a path, a PIL image or an array."""
    Image, _ = _pil()
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        try:
            with warnings.catch_warnings():
                # PIL's own limit warns from 89 megapixels: ours, lower, says it in one line.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as opened:
                    _check_image_size(path, *opened.size)
                    grey = _grey_from_pil(opened)
        except FileNotFoundError:
            raise ValueError(f"{path}: no such file") from None
        except Image.DecompressionBombError:
            raise ValueError(
                f"{path}: too large: over {2 * Image.MAX_IMAGE_PIXELS:,} pixels, the limit is "
                f"{MAX_IMAGE_PIXELS:,}; scale the image down first"
            ) from None
        except (Image.UnidentifiedImageError, OSError) as e:
            raise ValueError(f"{path}: not an image that can be read ({e})") from None
    elif isinstance(image, Image.Image):
        grey = _grey_from_pil(image)
    elif isinstance(image, np.ndarray):
        grey = _grey_from_array(image)
    else:
        raise TypeError(f"image must be a path, a PIL image or a numpy array, got {type(image).__name__}")
    return grey


def _place_in_frame(grey: np.ndarray) -> np.ndarray:
    """The digit cropped, scaled into the 20x20 box and centred by mass in a 28x28 frame."""
    rows = np.flatnonzero(grey.any(axis=1))
    cols = np.flatnonzero(grey.any(axis=0))
    digit = grey[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = digit.shape
    scale = BOX / max(height, width)
    digit = _resize(digit, max(1, round(height * scale)), max(1, round(width * scale)))

    # Integer shift, as for MNIST: a fractional one would blur the strokes.
    mass = digit.sum()
    if mass <= 0:  # every pixel rounded away when a speck was enlarged
        raise ValueError("image has no digit: nothing is left after scaling")
    centre_row = (digit.sum(axis=1) @ np.arange(digit.shape[0])) / mass
    centre_col = (digit.sum(axis=0) @ np.arange(digit.shape[1])) / mass
    top = int(np.round(CENTRE - centre_row))
    left = int(np.round(CENTRE - centre_col))
    frame = np.zeros((FRAME, FRAME))
    # Clip the placement to the frame: the centre of mass can sit near an edge of a
    # lopsided digit, pushing part of the 20x20 box out of the 28x28 frame.
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + digit.shape[0], FRAME), min(left + digit.shape[1], FRAME)
    frame[r0:r1, c0:c1] = digit[r0 - top : r1 - top, c0 - left : c1 - left]
    return frame


def load_inputs(
    path: str | os.PathLike, *, num_features: int = NUM_FEATURES, invert: Invert = "auto"
) -> np.ndarray:
    """Reads one file as model inputs: an image, or a ``.npy`` array of features.

    Args:
      path: a PNG or JPEG image (one digit, see :func:`preprocess_image`), or a
        ``.npy`` file holding ``[num_features]`` or ``[n, num_features]`` values in
        ``[0, 1]`` (loaded without pickling).
      num_features: the model's input size; images need 784.
      invert: passed to :func:`preprocess_image`.

    Returns:
      float32 ``[n, num_features]`` (``n = 1`` for an image).

    Raises:
      ValueError: naming the file, for a file that cannot be read, a shape that does
        not fit the model, or values outside ``[0, 1]``.
    """
    path = Path(path)
    if path.suffix.lower() != ".npy":
        if num_features != NUM_FEATURES:
            raise ValueError(
                f"{path}: images become {NUM_FEATURES} pixels but the model takes {num_features} features"
            )
        try:
            return preprocess_image(path, invert=invert)[None, :]
        except ValueError as e:
            message = str(e)
            if message.startswith(f"{path}:"):
                raise
            raise ValueError(f"{path}: {message}") from None
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npy array of numbers ({e})") from None
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path}: expected one .npy array, got an .npz archive")
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != num_features or array.shape[0] < 1:
        raise ValueError(f"{path}: expected shape [{num_features}] or [n, {num_features}], got {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{path}: expected numbers, got dtype {array.dtype}")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{path}: holds NaN or infinity")
    if array.min() < 0 or array.max() > 1:
        raise ValueError(
            f"{path}: values must be in [0, 1] (pixels / 255), got [{array.min():g}, {array.max():g}]"
        )
    return array


def input_names(path: str | os.PathLike, count: int) -> list[str]:
    """Labels for the rows :func:`load_inputs` read from ``path``: ``path`` or ``path[i]``."""
    if count == 1 and Path(path).suffix.lower() != ".npy":
        return [str(path)]
    return [f"{path}[{i}]" for i in range(count)]


def load_many(
    paths: Sequence[str | os.PathLike], *, num_features: int = NUM_FEATURES, invert: Invert = "auto"
) -> tuple[list[str], np.ndarray]:
    """Reads several files with :func:`load_inputs`.

    Returns:
      ``(names, x)``: one name per row (see :func:`input_names`) and float32
      ``[n, num_features]``.
    """
    names: list[str] = []
    rows = []
    for path in paths:
        x = load_inputs(path, num_features=num_features, invert=invert)
        names += input_names(path, len(x))
        rows.append(x)
    if not rows:
        raise ValueError("no inputs given")
    return names, np.concatenate(rows)
