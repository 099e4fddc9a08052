"""js.deskew: the shear by second moments, against SciPy, on real and drawn digits."""

import doctest
import gzip
import logging
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_softmax as js
from jax_softmax.data import _deskew as deskew_module
from jax_softmax.data import deskew, deskew_pixels

CENTRE = 13.5


def load_mnist_test_images(count: int) -> np.ndarray:
    directory = Path(os.environ.get("JAX_SOFTMAX_DATA_DIR", "/nonexistent"))
    if not directory.is_dir():
        pytest.skip("real MNIST not available: set JAX_SOFTMAX_DATA_DIR to the directory of the IDX files")
    path = directory / "t10k-images-idx3-ubyte.gz"
    with gzip.open(path) as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16)
    return raw.reshape(-1, 28, 28)[:count]


def moments(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centre of mass (rows, cols), row/col covariance and shear, in float64."""
    b = np.asarray(batch, np.float64).reshape(-1, 28, 28)
    r = np.arange(28.0)[:, None]
    c = np.arange(28.0)[None, :]
    m = b.sum(axis=(1, 2))
    mr = (b * r).sum(axis=(1, 2)) / m
    mc = (b * c).sum(axis=(1, 2)) / m
    dr = r - mr[:, None, None]
    dc = c - mc[:, None, None]
    var_r = (b * dr**2).sum(axis=(1, 2)) / m
    cov = (b * dr * dc).sum(axis=(1, 2)) / m
    return mr, mc, cov, cov / var_r


def scipy_deskew(image: np.ndarray) -> np.ndarray:
    """Reference: scipy.ndimage.affine_transform with the same map."""
    ndimage = pytest.importorskip("scipy.ndimage", reason="scipy is not installed")
    mr, mc, _, alpha = (v[0] for v in moments(image[None]))
    affine = np.array([[1.0, 0.0], [alpha, 1.0]])
    offset = np.array([mr, mc]) - affine @ np.array([CENTRE, CENTRE])
    return ndimage.affine_transform(
        np.asarray(image, np.float64), affine, offset=offset, order=1, mode="grid-constant"
    )


def slanted_bar(slope: float) -> np.ndarray:
    """A 2-pixel-wide stroke whose column grows by ``slope`` per row."""
    image = np.zeros((28, 28), np.float32)
    for r in range(5, 23):
        c = int(round(12 + slope * (r - 14)))
        image[r, c : c + 2] = 1.0
    return image


def test_docstring_examples() -> None:
    result = doctest.testmod(deskew_module)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.mnist
def test_matches_scipy_reference_on_mnist() -> None:
    images = load_mnist_test_images(300).astype(np.float32) / 255
    expected = np.stack([scipy_deskew(im) for im in images])
    got = np.asarray(deskew(images))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


@pytest.mark.mnist
def test_matches_scipy_reference_in_float64() -> None:
    images = load_mnist_test_images(50).astype(np.float64) / 255
    expected = np.stack([scipy_deskew(im) for im in images])
    with jax.enable_x64(True):
        got = np.asarray(deskew(images))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("slope", [0.6, -0.6, 0.25])
def test_slanted_bar_becomes_vertical(slope: float) -> None:
    bar = slanted_bar(slope)
    _, _, cov_before, alpha_before = moments(bar[None])
    assert abs(alpha_before[0] - slope) < 0.1
    out = np.asarray(deskew(bar[None]))
    mr, mc, cov_after, alpha_after = moments(out)
    assert abs(cov_after[0]) < 0.02 * abs(cov_before[0])
    assert abs(alpha_after[0]) < 0.02
    assert abs(mr[0] - CENTRE) < 1e-4 and abs(mc[0] - CENTRE) < 1e-4


def test_blank_images_stay_blank() -> None:
    for dtype in (np.float32, np.uint8):
        out = np.asarray(deskew(np.zeros((3, 784), dtype)))
        assert out.dtype == np.float32
        assert np.array_equal(out, np.zeros((3, 784), np.float32))


def test_single_row_image_is_only_shifted() -> None:
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 5, 3:11] = 1.0
    out = np.asarray(deskew(image))
    assert np.all(np.isfinite(out))
    mr, mc, _, _ = moments(out)
    assert abs(mr[0] - CENTRE) < 1e-5 and abs(mc[0] - CENTRE) < 1e-5
    np.testing.assert_allclose(out[0, 13:15, 10:18], 0.5, atol=1e-6)
    assert abs(out.sum() - 8.0) < 1e-5


@pytest.mark.mnist
def test_blank_image_in_batch_does_not_disturb_others() -> None:
    images = load_mnist_test_images(4).astype(np.float32)
    images[1] = 0
    out = np.asarray(deskew(images))
    assert np.all(out[1] == 0)
    np.testing.assert_allclose(out[[0, 2, 3]], np.asarray(deskew(images[[0, 2, 3]])), rtol=0, atol=1e-3)


def solid_blocks(count: int, value: float, seed: int) -> np.ndarray:
    """Constant-valued blocks with ragged edges: bilinear sums of equal values."""
    rng = np.random.default_rng(seed)
    r = np.arange(28)[:, None]
    c = np.arange(28)[None, :]
    left, top, cut_row, cut_col = (
        rng.integers(lo, hi, (count, 1, 1)) for lo, hi in ((1, 6), (0, 4), (0, 28), (20, 28))
    )
    inside = (c >= left) & (r >= top) & ~((r >= cut_row) & (c >= cut_col))
    return np.where(inside, np.float32(value), np.float32(0))


def test_output_stays_in_input_range() -> None:
    rng = np.random.default_rng(0)
    binary = (rng.random((300, 28, 28)) < 0.4).astype(np.float32)
    uniform = rng.random((200, 28, 28)).astype(np.float32) * rng.random((200, 1, 1)).astype(np.float32)
    signed = rng.uniform(-1, 1, (200, 28, 28)).astype(np.float32)
    blocks = [solid_blocks(200, value, seed) for seed, value in enumerate((255.0, 0.3, 1.0))]
    for images in (binary, uniform, signed, *blocks):
        out = np.asarray(deskew(images))
        low = np.minimum(images.min(axis=(1, 2)), 0)[:, None, None]
        high = np.maximum(images.max(axis=(1, 2)), 0)[:, None, None]
        assert np.all(out >= low) and np.all(out <= high)


def test_dtype_is_kept_or_float32() -> None:
    image = slanted_bar(0.5)[None]
    assert deskew(image).dtype == jnp.float32
    assert deskew((image * 255).astype(np.uint8)).dtype == jnp.float32
    assert deskew(jnp.asarray(image, jnp.bfloat16)).dtype == jnp.bfloat16
    with jax.enable_x64(True):
        out64 = deskew(image.astype(np.float64))
        assert out64.dtype == jnp.float64


@pytest.mark.mnist
def test_uint8_equals_float_of_same_values() -> None:
    images = load_mnist_test_images(20)
    np.testing.assert_allclose(
        np.asarray(deskew(images)), np.asarray(deskew(images.astype(np.float32))), rtol=0, atol=1e-3
    )


@pytest.mark.mnist
def test_flat_and_square_layouts_agree() -> None:
    images = load_mnist_test_images(30).astype(np.float32) / 255
    square = deskew(images)
    flat = deskew(images.reshape(30, 784))
    assert square.shape == (30, 28, 28) and flat.shape == (30, 784)
    np.testing.assert_allclose(np.asarray(flat), np.asarray(square).reshape(30, 784), rtol=0, atol=1e-5)


@pytest.mark.mnist
def test_works_under_jit_and_on_lists() -> None:
    images = load_mnist_test_images(5).astype(np.float32) / 255
    expected = np.asarray(deskew(images))
    np.testing.assert_allclose(np.asarray(jax.jit(deskew)(images)), expected, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(deskew(images.tolist())), expected)


def test_empty_batch() -> None:
    assert deskew(np.zeros((0, 784), np.float32)).shape == (0, 784)


def test_same_shape_does_not_recompile(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(1)
    first = rng.random((17, 784)).astype(np.float32)
    second = rng.random((17, 784)).astype(np.float32)

    def compiles() -> int:
        return sum(
            "Compiling" in rec.getMessage() and "_deskew_batch" in rec.getMessage() for rec in caplog.records
        )

    with caplog.at_level(logging.WARNING), jax.log_compiles(True):
        deskew(first)
        after_first = compiles()
        deskew(second)
        deskew(jnp.asarray(second))
    assert after_first == 1
    assert compiles() == 1


@pytest.mark.parametrize("shape", [(28, 28), (784,), (5, 28, 27), (5, 783), (2, 1, 28, 28), (), (5, 27, 28)])
def test_bad_shapes_raise(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"shape") as info:
        deskew(np.zeros(shape, np.float32))
    assert str(tuple(shape)) in str(info.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_raise(bad: float) -> None:
    images = np.zeros((2, 784), np.float32)
    images[1, 300] = bad
    with pytest.raises(ValueError, match="non-finite"):
        deskew(images)
    with pytest.raises(ValueError, match="non-finite"):
        deskew(jnp.asarray(images))


def test_non_finite_values_are_not_checked_under_jit() -> None:
    images = np.zeros((2, 784), np.float32)
    images[1, 300] = np.nan
    out = np.asarray(jax.jit(deskew)(images))
    assert out.shape == (2, 784)
    assert np.all(out[0] == 0)


def test_complex_input_raises() -> None:
    with pytest.raises(ValueError, match="real"):
        deskew(np.zeros((1, 784), np.complex64))


@pytest.mark.mnist
def test_deskewing_twice_changes_little() -> None:
    images = load_mnist_test_images(300).astype(np.float32) / 255
    once = np.asarray(deskew(images))
    twice = np.asarray(deskew(once))
    alpha_raw = np.abs(moments(images)[3])
    alpha_once = np.abs(moments(once)[3])
    assert np.median(alpha_raw) > 0.05
    assert np.median(alpha_once) < 0.01 * np.median(alpha_raw)
    assert np.abs(moments(twice)[3]).max() < 1e-4
    assert np.abs(twice - once).mean() < 0.05 * np.abs(once - images).mean()


@pytest.mark.mnist
def test_centre_of_mass_moves_to_centre_and_mass_is_kept() -> None:
    images = load_mnist_test_images(200).astype(np.float32) / 255
    out = np.asarray(deskew(images))
    mr, mc, _, _ = moments(out)
    np.testing.assert_allclose(mr, CENTRE, atol=1e-3)
    np.testing.assert_allclose(mc, CENTRE, atol=1e-3)
    np.testing.assert_allclose(out.sum(axis=(1, 2)), images.sum(axis=(1, 2)), rtol=1e-3)


# ---------------------------------------------------------------------------------------
# deskew_pixels, and deskewed MNIST kept in the cache beside the decoded files


def test_deskew_pixels_is_deskew_rounded_to_the_pixel_levels() -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (5, 784), dtype=np.uint8)
    out = deskew_pixels(pixels)
    assert out.dtype == np.uint8 and out.shape == pixels.shape
    np.testing.assert_array_equal(out, np.rint(np.asarray(deskew(pixels))).astype(np.uint8))
    with pytest.raises(ValueError, match="takes uint8 pixels, got dtype float32"):
        deskew_pixels(pixels.astype(np.float32))


def test_deskewed_mnist_is_computed_once_and_kept_verified(tmp_path, monkeypatch) -> None:
    from idx_files import write_mnist_like

    from jax_softmax.data import _deskew

    write_mnist_like(tmp_path / "mnist", n_train=6_010, n_test=7)
    cache = tmp_path / "cache"
    raw = js.data.load_mnist_uint8(tmp_path / "mnist", verify=False, cache_dir=cache)
    first = js.data.load_mnist_uint8(tmp_path / "mnist", verify=False, cache_dir=cache, deskew=True)
    np.testing.assert_array_equal(first.train.x, deskew_pixels(raw.train.x))
    np.testing.assert_array_equal(first.test.x, deskew_pixels(raw.test.x))
    assert first.train.y.tolist() == raw.train.y.tolist()
    entries = sorted(cache.glob("deskewed-*.npy"))
    assert len(entries) == 2

    computed = []
    real = _deskew.deskew_pixels

    def counting(pixels):
        computed.append(len(pixels))
        return real(pixels)

    monkeypatch.setattr(_deskew, "deskew_pixels", counting)
    again = js.data.load_mnist_uint8(tmp_path / "mnist", verify=False, cache_dir=cache, deskew=True)
    assert computed == [] and again.train.x.tobytes() == first.train.x.tobytes()
    data = bytearray(entries[0].read_bytes())
    data[-1] ^= 0xFF  # a damaged entry is computed again, never used
    entries[0].write_bytes(bytes(data))
    healed = js.data.load_mnist_uint8(tmp_path / "mnist", verify=False, cache_dir=cache, deskew=True)
    assert len(computed) == 1
    assert (
        healed.train.x.tobytes() + healed.test.x.tobytes() == first.train.x.tobytes() + first.test.x.tobytes()
    )
