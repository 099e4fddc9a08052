"""preprocess_image: any picture of a digit becomes an MNIST-like input."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

import jax_softmax as js
from jax_softmax.data.images import BOX, CENTRE, input_names, load_inputs, load_many


def centre_of_mass(x):
    frame = x.reshape(28, 28).astype(np.float64)
    idx = np.arange(28)
    return frame.sum(1) @ idx / frame.sum(), frame.sum(0) @ idx / frame.sum()


def ink_box(x, level=0.0):
    frame = x.reshape(28, 28)
    rows = np.flatnonzero((frame > level).any(1))
    cols = np.flatnonzero((frame > level).any(0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def drawn_seven(size=(300, 400), ink=(20, 20, 60), paper=(250, 248, 240), offset=(150, 30), scale=1):
    """A thick-stroked '7' drawn off-centre on paper, as a person might draw it."""
    image = Image.new("RGB", size, paper)
    dx, dy = offset
    points = [(dx + scale * x, dy + scale * y) for x, y in [(0, 20), (110, 20), (40, 210)]]
    ImageDraw.Draw(image).line(points, fill=ink, width=18 * scale, joint="curve")
    return image


def test_output_is_784_float32_in_unit_range_and_centred_in_a_20_box():
    x = js.preprocess_image(drawn_seven())
    assert x.shape == (784,) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == pytest.approx(1.0, abs=0.02)
    assert max(ink_box(x, 0.1)) in (BOX, BOX + 1)  # the taller side fills the box (+1: resampling blur)
    row, col = centre_of_mass(x)
    assert abs(row - CENTRE) <= 0.5 and abs(col - CENTRE) <= 0.5


def test_dark_on_light_and_light_on_dark_give_the_same_input():
    dark_on_light = np.asarray(drawn_seven().convert("L"))
    light_on_dark = 255 - dark_on_light
    a = js.preprocess_image(dark_on_light)
    b = js.preprocess_image(light_on_dark)
    np.testing.assert_allclose(a, b, atol=1e-5)
    # Forcing the wrong polarity finds no digit: the whole paper would be ink.
    with pytest.raises(ValueError, match="no digit"):
        js.preprocess_image(light_on_dark, invert=True)


def test_colour_grey_file_and_array_inputs_agree(tmp_path):
    image = drawn_seven(ink=(200, 30, 30), paper=(255, 255, 255))
    image.save(tmp_path / "seven.png")
    image.save(tmp_path / "seven.jpg", quality=90)
    from_pil = js.preprocess_image(image)
    np.testing.assert_array_equal(js.preprocess_image(tmp_path / "seven.png"), from_pil)
    np.testing.assert_allclose(js.preprocess_image(np.asarray(image)), from_pil, atol=1e-5)
    np.testing.assert_allclose(js.preprocess_image(np.asarray(image.convert("L"))), from_pil, atol=0.02)
    # JPEG compression noise changes little once stretched and floored.
    assert np.abs(js.preprocess_image(str(tmp_path / "seven.jpg")) - from_pil).mean() < 0.02


def test_size_and_position_do_not_matter():
    small = drawn_seven(size=(140, 240), offset=(10, 5))
    large = drawn_seven(size=(1200, 1000), offset=(700, 300), scale=3)  # 3 times larger, elsewhere
    a, b = js.preprocess_image(small), js.preprocess_image(large)
    assert np.abs(a - b).mean() < 0.02
    assert np.corrcoef(a, b)[0, 1] > 0.97


def test_transparent_canvas_with_dark_or_light_strokes():
    rgba = np.zeros((100, 80, 4), np.uint8)
    rgba[10:90, 30:42] = (0, 0, 0, 255)  # a black bar on a transparent canvas
    dark = js.preprocess_image(rgba)
    rgba[10:90, 30:42, :3] = 255  # the same bar, white
    light = js.preprocess_image(rgba)
    np.testing.assert_array_equal(dark, light)
    assert ink_box(dark, 0.5) == (20, 3)  # 80x12 scaled to fit 20x20 keeping aspect: 20x3


def test_mnist_digit_passes_through_almost_unchanged(mnist):
    # MNIST digits are already in the target form: cropped, boxed, centred.
    x = mnist.test.x[:50]
    out = np.stack([js.preprocess_image(row.reshape(28, 28)) for row in x])
    assert np.abs(out - x).mean() < 0.02


@pytest.mark.parametrize(
    "image, error, message",
    [
        (np.zeros((20, 20)), ValueError, "no digit"),
        (np.full((20, 20), 200, np.uint8), ValueError, "no digit"),
        (np.zeros((4, 4, 2)), ValueError, r"must be \[h, w\], \[h, w, 3\] or \[h, w, 4\]"),
        (np.array([[np.nan, 1.0]]), ValueError, "finite"),
        (np.array([["a"]]), TypeError, "numeric array"),
        ([[0, 1]], TypeError, "path, a PIL image or a numpy array"),
    ],
)
def test_bad_images_are_refused(image, error, message):
    with pytest.raises(error, match=message):
        js.preprocess_image(image)


def test_unreadable_files_are_refused(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match="notes.png: not an image that can be read"):
        js.preprocess_image(tmp_path / "notes.png")
    with pytest.raises(ValueError, match="absent.png: no such file"):
        js.preprocess_image(tmp_path / "absent.png")
    with pytest.raises(TypeError, match="invert must be 'auto', True or False"):
        js.preprocess_image(np.eye(5), invert="yes")


def test_npy_inputs(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "one.npy", rng.random(784).astype(np.float32))
    np.save(tmp_path / "many.npy", rng.random((3, 784)))
    assert load_inputs(tmp_path / "one.npy").shape == (1, 784)
    many = load_inputs(tmp_path / "many.npy")
    assert many.shape == (3, 784) and many.dtype == np.float32
    drawn_seven().save(tmp_path / "seven.png")
    names, x = load_many([tmp_path / "many.npy", tmp_path / "seven.png"])
    assert names == [f"{tmp_path / 'many.npy'}[{i}]" for i in range(3)] + [str(tmp_path / "seven.png")]
    assert x.shape == (4, 784)
    assert input_names("a.npy", 1) == ["a.npy[0]"]

    np.save(tmp_path / "wide.npy", np.zeros((2, 785)))
    np.save(tmp_path / "raw.npy", np.full(784, 255.0))
    np.save(tmp_path / "objects.npy", np.array([{}], dtype=object), allow_pickle=True)
    for name, message in [
        ("wide.npy", r"expected shape \[784\] or \[n, 784\], got \(2, 785\)"),
        ("raw.npy", r"values must be in \[0, 1\] \(pixels / 255\), got \[255, 255\]"),
        ("objects.npy", "not a readable .npy array"),
    ]:
        with pytest.raises(ValueError, match=message):
            load_inputs(tmp_path / name)
    with pytest.raises(ValueError, match="images become 784 pixels but the model takes 5 features"):
        load_inputs(tmp_path / "seven.png", num_features=5)


@pytest.fixture(scope="module")
def mnist_params(mnist):
    params, _ = js.fit(mnist.train, epochs=2, seed=0)
    return params


@pytest.mark.parametrize("variant", ["white on black", "black on white", "200x200"])
def test_mnist_digits_saved_as_png_are_classified_as_in_memory(mnist, mnist_params, tmp_path, variant):
    x = mnist.test.x[:100]
    in_memory = np.asarray(js.predict(mnist_params, x))
    paths = []
    for i, row in enumerate(x):
        pixels = np.round(row.reshape(28, 28) * 255).astype(np.uint8)
        if variant == "black on white":
            pixels = 255 - pixels
        image = Image.fromarray(pixels)
        if variant == "200x200":
            image = image.resize((200, 200), Image.Resampling.BICUBIC)
        image.save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    _, from_files = load_many(paths)
    agreement = np.mean(np.asarray(js.predict(mnist_params, from_files)) == in_memory)
    print(f"{variant}: predictions from PNG files agree on {100 * agreement:.0f}% of 100 digits")
    assert agreement >= 0.95
