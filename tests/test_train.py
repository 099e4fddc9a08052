"""fit: one compiled scan per epoch, reproducible, and accurate on real MNIST."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import blobs, count_compiles, x64

import jax_softmax as js
from jax_softmax.gradients import train_step


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_fit_learns_separable_data(grad):
    x, y = blobs()
    params, history = js.fit(
        (x[:500], y[:500]), (x[500:], y[500:]), epochs=5, batch_size=50, lr=0.1, grad=grad, num_classes=3
    )
    assert [m.epoch for m in history.epochs] == [1, 2, 3, 4, 5]
    assert history.epochs[-1].train_loss < history.epochs[0].train_loss
    assert history.epochs[-1].val_accuracy > 0.9
    assert history.compile_seconds > 0
    assert params.w.shape == (8, 3)


@pytest.mark.slow
def test_fit_is_reproducible_and_seed_dependent():
    x, y = blobs()
    a, _ = js.fit((x, y), epochs=2, batch_size=32, num_classes=3, seed=1)
    b, _ = js.fit((x, y), epochs=2, batch_size=32, num_classes=3, seed=1)
    c, _ = js.fit((x, y), epochs=2, batch_size=32, num_classes=3, seed=2)
    np.testing.assert_array_equal(a.w, b.w)
    assert not np.array_equal(a.w, c.w)


@pytest.mark.slow
def test_fit_matches_the_update_step_batch_by_batch():
    # The scan must do exactly what make_update does on the same batches in order.
    x, y = blobs(n=100)
    params, _ = js.fit((x, y), epochs=1, batch_size=20, lr=0.3, num_classes=3, seed=5, grad="manual")
    key = jax.random.key(5)
    init_key, shuffle_key = jax.random.split(key)
    _, epoch_key = jax.random.split(shuffle_key)
    expected = js.init_params(init_key, 8, 3, scale=0.01)
    order = np.asarray(jax.random.permutation(epoch_key, 100))
    step = js.make_update("manual")
    for batch in order.reshape(5, 20):
        expected = step(expected, x[batch], y[batch], 0.3)
    np.testing.assert_allclose(params.w, expected.w, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_epochs_do_not_recompile():
    x, y = blobs()
    with count_compiles() as compiles:
        js.fit((x, y), epochs=1, batch_size=50, num_classes=3)
    first = compiles[0]
    with count_compiles() as compiles:
        js.fit((x, y), epochs=4, batch_size=50, num_classes=3)
    assert compiles[0] == first


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
@pytest.mark.slow
def test_fit_with_optax_optimizers(optimizer):
    x, y = blobs()
    _, history = js.fit((x, y), (x, y), epochs=3, batch_size=50, lr=0.01, optimizer=optimizer, num_classes=3)
    assert history.epochs[-1].val_accuracy > 0.9
    _, history = js.fit((x, y), (x, y), epochs=3, batch_size=50, optimizer=optax.adam(0.01), num_classes=3)
    assert history.epochs[-1].val_accuracy > 0.9


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"l2": -1.0}, "l2"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 601}, "batch_size"),
        ({"grad": "numeric"}, "grad"),
        ({"dtype": jnp.float64}, "float64"),
    ],
)
def test_fit_rejects_bad_hyperparameters(kwargs, message):
    x, y = blobs()
    with pytest.raises(ValueError, match=message):
        js.fit((x, y), num_classes=3, **kwargs)


def test_fit_rejects_bad_data():
    x, y = blobs()
    with pytest.raises(ValueError, match="train y must have shape"):
        js.fit((x, y[:-1]))
    with pytest.raises(TypeError, match="integer labels"):
        js.fit((x, y.astype(np.float32)))
    with pytest.raises(ValueError, match="validation x has 7 features"):
        js.fit((x, y), (x[:, :7], y))


def test_fit_rejects_non_finite_pixels_and_out_of_range_labels():
    x, y = blobs()
    x[7, 2] = np.nan
    x[9, 0] = np.inf
    with pytest.raises(ValueError, match=r"train x must be finite, got 2 .*index \[7, 2\]"):
        js.fit((x, y), num_classes=3)
    x, y = blobs()
    with pytest.raises(ValueError, match="validation y must hold class labels in"):
        js.fit((x, y), (x, y + 1), num_classes=3)


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_the_transposed_layout_is_the_same_sgd_step(grad):
    """The same step to float rounding: the products with ``w`` and ``w^T`` hold the same
    sums, which XLA's CPU kernels may add in another order (on some processors, the
    loss, the weights and the biases each come out one rounding apart)."""
    x, y = blobs(n=40)
    params = js.init_params(jax.random.key(3), 8, 3, scale=0.5)
    plain, _, plain_loss = jax.jit(partial(train_step, grad=grad, l2=1e-3))(params, (), x, y, 0.3)
    flipped_step = jax.jit(partial(train_step, grad=grad, l2=1e-3, weights_transposed=True))
    flipped, _, flipped_loss = flipped_step(js.Params(params.w.T, params.b), (), x, y, 0.3)
    np.testing.assert_allclose(flipped.w.T, plain.w, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(flipped.b, plain.b, rtol=1e-6, atol=1e-7)
    assert float(flipped_loss) == pytest.approx(float(plain_loss), rel=1e-6)
    assert not np.allclose(flipped.w.T, params.w, rtol=1e-3)  # a step was taken


def test_make_update_compiles_train_step():
    x, y = blobs(n=40)
    params = js.init_params(jax.random.key(3), 8, 3, scale=0.5)
    sgd = js.make_update("manual")
    expected, _, _ = jax.jit(partial(train_step, grad="manual"))(params, (), x, y, 0.3)
    np.testing.assert_array_equal(sgd(params, x, y, 0.3).w, expected.w)
    adam = optax.adam(0.01)
    state = adam.init(params)
    new, new_state = js.make_update("autodiff", adam)(params, state, x, y)
    expected, expected_state, _ = jax.jit(partial(train_step, optimizer=adam))(params, state, x, y, None)
    np.testing.assert_array_equal(new.w, expected.w)
    assert jax.tree.structure(new_state) == jax.tree.structure(expected_state)
    with pytest.raises(ValueError, match="plain SGD only"):
        train_step(params, state, x, y, None, optimizer=adam, weights_transposed=True)


def test_pixel_features_are_the_host_features_bit_for_bit():
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    host = js.data.to_features(pixels)
    assert host.tobytes() == (pixels.astype(np.float32) / np.float32(255)).tobytes()
    device = jax.jit(js.data.pixel_features)(pixels)
    assert device.dtype == jnp.float32 and np.asarray(device).tobytes() == host.tobytes()
    with x64():
        wide = jax.jit(js.data.pixel_features, static_argnums=1)(pixels, jnp.float64)
        assert wide.dtype == jnp.float64
        assert np.asarray(wide).tobytes() == host.astype(np.float64).tobytes()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.slow
def test_fit_on_uint8_pixels_equals_fit_on_their_features(optimizer):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (300, 40), dtype=np.uint8)
    y = (pixels[:, :3].argmax(axis=1)).astype(np.int32)
    features = js.data.to_features(pixels)
    settings = {"epochs": 2, "batch_size": 25, "num_classes": 3, "optimizer": optimizer, "lr": 0.05}
    a, history_a = js.fit((features[:250], y[:250]), (features[250:], y[250:]), **settings)
    b, history_b = js.fit((pixels[:250], y[:250]), (pixels[250:], y[250:]), **settings, uint8_pixels=True)
    assert np.asarray(a.w).tobytes() == np.asarray(b.w).tobytes()
    assert np.asarray(a.b).tobytes() == np.asarray(b.b).tobytes()
    assert [(m.train_loss, m.val_loss) for m in history_a.epochs] == [
        (m.train_loss, m.val_loss) for m in history_b.epochs
    ]
    assert [float(v) for v in js.evaluate(a, features, y)] == [
        float(v) for v in js.evaluation.evaluate_pixels(a, pixels, y)
    ]
    # Evaluation in chunks of rows, with a remainder, gives the bits of the whole.
    rows = js.evaluation.EVALUATION_CHUNK + 37
    big = rng.integers(0, 256, (rows, 40), dtype=np.uint8)
    labels = rng.integers(0, 3, rows).astype(np.int32)
    assert [np.asarray(v).tobytes() for v in js.evaluate(a, js.data.to_features(big), labels)] == [
        np.asarray(v).tobytes() for v in js.evaluation.evaluate_pixels(a, big, labels)
    ]
    with pytest.raises(TypeError, match="uint8_pixels=True needs uint8 train x, got dtype float32"):
        js.fit((features, y), uint8_pixels=True, num_classes=3)
