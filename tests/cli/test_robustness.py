"""Bad input: the library's argument checks, the IDX reader under fuzzing, the command line."""

import concurrent.futures
import gzip
import math
import os
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from idx_files import idx_bytes, write_idx, write_mnist_like
from jax.test_util import check_grads

import jax_softmax as js
from jax_softmax import _validation as validation
from jax_softmax import model
from jax_softmax.data import read_idx, read_mnist_dir
from jax_softmax.runs.checkpoint import save_params

# ---------------------------------------------------------------------------
# The public functions check their arguments at the boundary.

PARAMS = js.Params(w=jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32), b=jnp.zeros(3))
X = np.linspace(0, 1, 8, dtype=np.float32).reshape(2, 4)
Y = np.array([0, 2])
GOOD = {"params": PARAMS, "x": X, "y": Y, "l2": 0.0, "lr": 0.1}

_sgd_step = js.make_update("manual")
_adam = optax.adam(0.1)
_adam_step = js.make_update("autodiff", _adam)

FUNCTIONS = {
    "logits": lambda a: js.logits(a["params"], a["x"]),
    "predict": lambda a: js.predict(a["params"], a["x"]),
    "accuracy": lambda a: js.accuracy(a["params"], a["x"], a["y"]),
    "loss": lambda a: js.loss(a["params"], a["x"], a["y"], a["l2"]),
    "manual_grad": lambda a: js.manual_grad(a["params"], a["x"], a["y"], a["l2"]),
    "autodiff_grad": lambda a: js.autodiff_grad(a["params"], a["x"], a["y"], a["l2"]),
    "sgd_step": lambda a: _sgd_step(a["params"], a["x"], a["y"], a["lr"]),
    "optax_step": lambda a: _adam_step(a["params"], _adam.init(PARAMS), a["x"], a["y"]),
}
TAKES = {
    "y": {"accuracy", "loss", "manual_grad", "autodiff_grad", "sgd_step", "optax_step"},
    "l2": {"loss", "manual_grad", "autodiff_grad"},
    "lr": {"sgd_step"},
}

NAN_X = X.copy()
NAN_X[0, 1] = np.nan
NAN_X[1, 3] = -np.inf

# (what is wrong, the arguments that differ from GOOD, error type, message pattern)
BAD_ARGUMENTS = [
    (
        "params-tuple",
        {"params": (PARAMS.w, PARAMS.b)},
        TypeError,
        r"params must be a jax_softmax.Params\(w, b\), got tuple",
    ),
    (
        "params-int-w",
        {"params": PARAMS._replace(w=PARAMS.w.astype(jnp.int32))},
        TypeError,
        "params.w must have a floating dtype, got int32",
    ),
    (
        "params-list-b",
        {"params": PARAMS._replace(b=[0.0, 0.0, 0.0])},
        TypeError,
        "params.b must be an array, got list",
    ),
    (
        "params-1d-w",
        {"params": PARAMS._replace(w=PARAMS.w[:, 0])},
        ValueError,
        r"params.w must be \[num_features, num_classes\], got shape \(4,\)",
    ),
    (
        "params-b-shape",
        {"params": PARAMS._replace(b=jnp.zeros(4))},
        ValueError,
        r"params.b must have shape \(3,\) to match params.w \(4, 3\), got \(4,\)",
    ),
    ("x-1d", {"x": X[0]}, ValueError, r"x must be \[batch, num_features\], got shape \(4,\)"),
    ("x-3d", {"x": X[None]}, ValueError, r"x must be \[batch, num_features\], got shape \(1, 2, 4\)"),
    (
        "x-features",
        {"x": X[:, :3]},
        ValueError,
        r"x must have 4 features per example, as many as params.w has rows, got shape \(2, 3\)",
    ),
    (
        "x-empty",
        {"x": X[:0], "y": Y[:0]},
        ValueError,
        r"x must hold at least one example \(batch >= 1\), got shape \(0, 4\)",
    ),
    (
        "x-bool",
        {"x": X > 0.5},
        TypeError,
        r"x must hold real numbers \(a floating or integer dtype\), got bool",
    ),
    ("x-complex", {"x": X.astype(np.complex64)}, TypeError, "x must hold real numbers .* got complex64"),
    ("x-text", {"x": "pixels"}, TypeError, "x must hold real numbers .* got <U6"),
    (
        "x-nan",
        {"x": NAN_X},
        ValueError,
        r"x must be finite, got 2 NaN or infinite values, the first \(nan\) at index \[0, 1\]",
    ),
    (
        "x-inf-device",
        {"x": jnp.asarray(X).at[1, 2].set(jnp.inf)},
        ValueError,
        r"x must be finite, got 1 NaN or infinite value, the first \(inf\) at index \[1, 2\]",
    ),
    (
        "y-float",
        {"y": Y.astype(np.float32)},
        TypeError,
        "y must hold integer class labels, got dtype float32",
    ),
    ("y-bool", {"y": Y > 0}, TypeError, "y must hold integer class labels, got dtype bool"),
    (
        "y-column",
        {"y": Y[:, None]},
        ValueError,
        r"y must have shape \(2,\), one label per example of x, got \(2, 1\)",
    ),
    (
        "y-length",
        {"y": Y[:1]},
        ValueError,
        r"y must have shape \(2,\), one label per example of x, got \(1,\)",
    ),
    (
        "y-too-large",
        {"y": np.array([0, 3])},
        ValueError,
        r"y must hold class labels in \[0, 3\), got 1 label outside it, the first 3 at index 1",
    ),
    (
        "y-negative-device",
        {"y": jnp.array([-1, -2])},
        ValueError,
        r"y must hold class labels in \[0, 3\), got 2 labels outside it, the first -1 at index 0",
    ),
    ("l2-negative", {"l2": -0.5}, ValueError, "l2 must be a finite number >= 0, got -0.5"),
    ("l2-nan", {"l2": float("nan")}, ValueError, "l2 must be a finite number >= 0, got nan"),
    ("l2-vector", {"l2": np.array([0.1, 0.2])}, ValueError, r"l2 must be a scalar, got shape \(2,\)"),
    ("l2-text", {"l2": "0.1"}, TypeError, "l2 must be a real number, got str"),
    ("lr-zero", {"lr": 0.0}, ValueError, "lr must be a finite number > 0, got 0.0"),
    ("lr-negative", {"lr": -0.1}, ValueError, "lr must be a finite number > 0, got -0.1"),
    ("lr-inf", {"lr": jnp.inf}, ValueError, "lr must be a finite number > 0, got inf"),
    ("lr-nan-array", {"lr": jnp.asarray(jnp.nan)}, ValueError, "lr must be a finite number > 0, got nan"),
    ("lr-vector", {"lr": jnp.array([0.1, 0.2])}, ValueError, r"lr must be a scalar, got shape \(2,\)"),
    ("lr-bool", {"lr": True}, TypeError, "lr must be a real number, got bool"),
]


def _cases():
    for case, changed, error, pattern in BAD_ARGUMENTS:
        needs = {k for k in changed if k in TAKES}
        for name, call in FUNCTIONS.items():
            if all(name in TAKES[k] for k in needs):
                yield pytest.param(call, {**GOOD, **changed}, error, pattern, id=f"{name}-{case}")


@pytest.mark.parametrize("call, arguments, error, pattern", list(_cases()))
def test_bad_arguments_are_named_with_expected_and_actual(call, arguments, error, pattern):
    with pytest.raises(error, match=pattern):
        call(arguments)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.slow
def test_good_arguments_pass_in_every_accepted_form(name):
    call = FUNCTIONS[name]
    reference = call(GOOD)
    variants = [
        {"x": jnp.asarray(X), "y": jnp.asarray(Y)},  # on the device
        {"x": X.tolist(), "y": Y.tolist()},  # nested lists
        {"x": X.astype(np.float64), "y": Y.astype(np.uint8)},  # other float and integer dtypes
        {"l2": 0, "lr": np.float32(0.1)},  # Python int, NumPy scalar
    ]
    for changed in variants:
        result = call({**GOOD, **changed})
        for got, expected in zip(jax.tree.leaves(result), jax.tree.leaves(reference), strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_integer_pixels_are_converted_like_floats():
    pixels = np.array([[0, 255, 17, 3], [9, 9, 200, 1]], np.uint8)
    np.testing.assert_array_equal(js.logits(PARAMS, pixels), js.logits(PARAMS, pixels.astype(np.float32)))


@pytest.mark.slow
def test_accelerator_path_reduces_on_the_device(monkeypatch):
    # Arrays on a GPU or TPU are checked with jax.numpy where they live; force that path here.
    monkeypatch.setattr(validation, "_on_host", lambda value: False)
    x = jnp.asarray(NAN_X)
    with pytest.raises(
        ValueError, match=r"got 2 NaN or infinite values, the first \(nan\) at index \[0, 1\]"
    ):
        js.loss(PARAMS, x, Y)
    with pytest.raises(ValueError, match=r"got 1 label outside it, the first 7 at index 0"):
        js.loss(PARAMS, X, jnp.array([7, 1]))
    assert float(js.loss(PARAMS, jnp.asarray(X), jnp.asarray(Y))) == float(model.unchecked_loss(PARAMS, X, Y))


def test_make_update_checks_its_own_arguments():
    with pytest.raises(ValueError, match="l2 must be a finite number >= 0, got -1.0"):
        js.make_update("manual", l2=-1.0)
    with pytest.raises(TypeError, match="optimizer must be an optax GradientTransformation or None, got str"):
        js.make_update("manual", "adam")


def test_checks_change_no_result():
    l2 = 1e-3
    assert float(js.loss(PARAMS, X, Y, l2)) == float(model.unchecked_loss(PARAMS, X, Y, l2))
    np.testing.assert_array_equal(js.logits(PARAMS, X), model.unchecked_logits(PARAMS, X))
    checked = _sgd_step(PARAMS, X, Y, 0.1)
    unchecked = _sgd_step.__wrapped__(PARAMS, X, Y, 0.1)
    for got, expected in zip(checked, unchecked, strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.slow
def test_checks_work_under_every_transformation():
    y_bad = jnp.array([0, 5])  # out of range: only a concrete value can show it
    # Static checks run on tracers too, with the same message...
    with pytest.raises(ValueError, match="x must have 4 features per example"):
        jax.jit(js.loss)(PARAMS, X[:, :3], Y)
    with pytest.raises(TypeError, match="y must hold integer class labels"):
        jax.jit(js.accuracy)(PARAMS, X, Y.astype(np.float32))
    # ...value checks do not: a traced label or learning rate is not inspected.
    jax.block_until_ready(jax.jit(js.loss)(PARAMS, X, y_bad))
    jax.block_until_ready(jax.jit(_sgd_step)(PARAMS, X, Y, -1.0))
    # grad, vmap and scan see the same values as a direct call.
    grads = jax.grad(js.loss)(PARAMS, X, Y, 1e-3)
    for got, expected in zip(grads, js.autodiff_grad(PARAMS, X, Y, 1e-3), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    grad_x = jax.grad(js.loss, argnums=1)(PARAMS, jnp.asarray(X), Y)
    assert grad_x.shape == X.shape
    l2s = jnp.array([0.0, 0.1, 1.0])
    np.testing.assert_allclose(
        jax.vmap(js.loss, in_axes=(None, None, None, 0))(PARAMS, X, Y, l2s),
        [float(js.loss(PARAMS, X, Y, float(l2))) for l2 in l2s],
        rtol=1e-6,
    )
    stacked = jax.tree.map(lambda leaf: jnp.stack([leaf, 2 * leaf]), PARAMS)
    np.testing.assert_array_equal(
        jax.vmap(js.predict, in_axes=(0, None))(stacked, X)[0], js.predict(PARAMS, X)
    )

    def body(params, _):
        return _sgd_step(params, X, Y, 0.1), js.loss(params, X, Y)

    scanned, losses = jax.lax.scan(body, PARAMS, None, length=3)
    expected = PARAMS
    for _ in range(3):
        expected = _sgd_step(expected, X, Y, 0.1)
    np.testing.assert_allclose(scanned.w, expected.w, rtol=1e-6)
    assert losses.shape == (3,)


def test_check_grads_through_the_checked_functions():
    # tests/test_gradients.py checks the gradient in the parameters; here, in the inputs.
    check_grads(lambda x: js.loss(PARAMS, x, Y, 0.01), (jnp.asarray(X),), order=1, modes=("rev",), atol=1e-2)


def test_a_diverged_model_is_still_accepted():
    # Non-finite parameters are what a diverged run has; diagnosing it needs the loss.
    nan_params = PARAMS._replace(b=jnp.array([jnp.nan, 0.0, jnp.inf]))
    assert not bool(jnp.isfinite(js.loss(nan_params, X, Y)))


# ---------------------------------------------------------------------------
# The IDX reader: one error type, never partial data, never a hang.

EXAMPLES = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
FUZZ = settings(max_examples=150, deadline=2000, database=None, suppress_health_check=[HealthCheck.too_slow])


def write_bytes(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _read(content: bytes) -> np.ndarray | None:
    """read_idx on a file holding ``content``: the array, or None after an IdxError naming the file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzzed-idx"
        path.write_bytes(content)
        try:
            array = read_idx(path)
        except js.IdxError as e:
            assert str(path) in str(e)
            return None
    # Whatever was returned is exactly what the (decompressed) file encodes.
    data = gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content
    assert idx_bytes(array, type_code=data[2]) == data
    return array


@st.composite
def idx_files(draw) -> bytes:
    """A valid IDX file of a random element type and shape, raw or gzip-compressed."""
    code, dtype = draw(st.sampled_from(sorted(js.data.IDX_DTYPES.items())))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=1, max_size=3)))
    size = int(np.prod(shape)) * dtype.itemsize
    array = np.frombuffer(draw(st.binary(min_size=size, max_size=size)), dtype).reshape(shape)
    data = idx_bytes(array, code)
    return gzip.compress(data) if draw(st.booleans()) else data


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes(content):
    _read(content)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_gzip_compressed(content):
    _read(gzip.compress(content))


@st.composite
def idx_headers(draw) -> bytes:
    """An IDX header, often with as many dimensions as it declares, and a body that often fits it.

    Dimension counts go up to 255, and the shapes include sizes of 0, sizes that wrap
    around to 0 in 64-bit arithmetic (65536**4 bytes) and sizes too large to allocate.
    """
    type_code = draw(st.sampled_from(sorted(js.data.IDX_DTYPES)))
    ndim = draw(st.integers(0, 4) | st.integers(0, 255))
    dim = st.sampled_from([0, 1, 2, 3, 65536, 2**31, 2**32 - 1]) | st.integers(0, 2**32 - 1)
    dims = draw(st.lists(dim, min_size=ndim, max_size=ndim) | st.lists(dim, max_size=8))
    size = math.prod(dims) * js.data.IDX_DTYPES[type_code].itemsize
    body_size = draw(st.sampled_from([size, size - 1, size + 1]) if size < 300 else st.integers(0, 300))
    header = bytes([0, 0, type_code, ndim]) + np.asarray(dims, ">u4").tobytes()
    return header + draw(st.binary(min_size=max(body_size, 0), max_size=max(body_size, 0)))


@FUZZ
@given(idx_headers(), st.booleans())
def test_random_headers(data, compress):
    _read(gzip.compress(data) if compress else data)


@FUZZ
@given(idx_files(), st.data())
def test_truncated_files_are_rejected(content, data):
    assert _read(content) is not None
    cut = data.draw(st.integers(0, len(content) - 1))
    assert _read(content[:cut]) is None


@FUZZ
@given(idx_files(), st.data())
def test_bit_flips(content, data):
    flips = data.draw(st.lists(st.integers(0, 8 * len(content) - 1), min_size=1, max_size=4))
    flipped = bytearray(content)
    for bit in flips:
        flipped[bit // 8] ^= 1 << bit % 8
    _read(bytes(flipped))


@FUZZ
@given(idx_files(), st.binary(min_size=1, max_size=20))
def test_trailing_bytes_are_rejected(content, extra):
    data = gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content
    assert _read(data + extra) is None


def test_huge_declared_shapes_fail_without_allocating_them(tmp_path):
    header = bytes([0, 0, 0x0E, 4]) + np.full(4, 0xFFFFFFFF, ">u4").tobytes()  # 2**128 float64s
    raw = write_bytes(tmp_path / "huge", header + bytes(64))
    compressed = write_bytes(tmp_path / "huge.gz", gzip.compress(header + bytes(64)))
    # 2**64 bytes: a size that wraps around to 0 in 64-bit arithmetic.
    wraps = write_bytes(tmp_path / "wraps", bytes([0, 0, 0x08, 4]) + np.full(4, 65536, ">u4").tobytes())
    for path in (raw, compressed, wraps):
        with pytest.raises(js.IdxError, match="truncated: header declares shape"):
            read_idx(path)
    # Empty, yet NumPy refuses the shape: its other dimensions multiply past 2**63.
    empty = write_bytes(
        tmp_path / "empty", bytes([0, 0, 0x08, 3]) + np.array([0, 2**32 - 1, 2**32 - 1], ">u4").tobytes()
    )
    with pytest.raises(js.IdxError, match=r"shape \(0, 4294967295, 4294967295\) cannot be an array"):
        read_idx(empty)
    many = write_bytes(tmp_path / "many", bytes([0, 0, 0x08, 70]) + bytes(4 * 70))  # 70 zero dimensions
    with pytest.raises(js.IdxError, match="declares 70 dimensions, more than 32"):
        read_idx(many)


def test_large_files_of_the_wrong_kind(tmp_path):
    png = write_bytes(tmp_path / "image.png", b"\x89PNG\r\n\x1a\n" + bytes(20_000_000))
    with pytest.raises(js.IdxError, match="bad magic number 0x89504e47"):
        read_idx(png)
    padded = gzip.compress(idx_bytes(EXAMPLES) + bytes(20_000_000), compresslevel=1)
    with pytest.raises(js.IdxError, match="has trailing bytes"):
        read_idx(write_bytes(tmp_path / "padded.gz", padded))


def test_a_corrupt_gzip_body_is_caught_by_its_checksum(tmp_path):
    content = bytearray(gzip.compress(idx_bytes(EXAMPLES)))
    content[-8] ^= 0xFF  # the CRC-32 of the decompressed data
    with pytest.raises(js.IdxError, match="corrupt gzip stream"):
        read_idx(write_bytes(tmp_path / "crc.gz", bytes(content)))


def test_unreadable_paths_raise_idx_errors(tmp_path):
    with pytest.raises(js.IdxError, match="is a directory"):
        read_idx(tmp_path)
    if os.geteuid() != 0:  # root reads anything
        path = write_idx(tmp_path / "locked", EXAMPLES, compress=False)
        path.chmod(0)
        with pytest.raises(js.IdxError, match="cannot be read"):
            read_idx(path)


@pytest.mark.parametrize(
    "stem, array, message",
    [
        ("train-images-idx3-ubyte", np.zeros((20, 28), np.uint8), r"images must be uint8 \[n, 28, 28\]"),
        ("train-images-idx3-ubyte", np.zeros(20, np.uint8), r"images must be uint8 \[n, 28, 28\]"),
        ("train-labels-idx1-ubyte", np.zeros((20, 28, 28), np.uint8), r"labels must be uint8 \[n\]"),
        ("t10k-labels-idx1-ubyte", np.zeros(4, np.uint8), "5 images but 4 labels"),
        (
            "t10k-labels-idx1-ubyte",
            np.array([1, 10, 2, 3, 255], np.uint8),
            r"label 10 at index 1 is outside 0-9 \(2 of the 5 labels are\)",
        ),
    ],
    ids=["images-2d", "images-1d", "labels-3d", "lengths", "labels-out-of-range"],
)
def test_mnist_files_of_the_wrong_kind(tmp_path, stem, array, message):
    write_mnist_like(tmp_path, n_train=20, n_test=5)
    write_idx(tmp_path / f"{stem}.gz", array, compress=True)
    with pytest.raises(js.IdxError, match=message) as info:
        read_mnist_dir(tmp_path, verify=False)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(js.IdxError, match="shape|SHA-256"):
        read_mnist_dir(tmp_path, verify=True)


# ---------------------------------------------------------------------------
# The command line: one line on stderr, exit status 2, no traceback.


# name -> (arguments, what stderr must say); {tmp} is a directory holding the files
# made by _cli_files, {missing} a path that does not exist.
CLI_CASES = {
    "unknown-command": (["fit"], "invalid choice: 'fit'"),
    "no-command": ([], "the following arguments are required: command"),
    "lr-negative": (["train", "--lr", "-0.1"], "--lr: must be a finite number > 0, got -0.1"),
    "lr-inf": (["train", "--lr", "inf"], "--lr: must be a finite number > 0, got inf"),
    "batch-size-zero": (["train", "--batch-size", "0"], "--batch-size: must be an integer >= 1, got 0"),
    "batch-size-negative": (["train", "--batch-size", "-5"], "--batch-size: must be an integer >= 1, got -5"),
    "epochs-negative": (["train", "--epochs", "-3"], "--epochs: must be an integer >= 1, got -3"),
    "l2-negative": (["train", "--l2", "-1"], "--l2: must be a finite number >= 0, got -1"),
    "data-dir-missing": (
        ["train", "--data-dir", "{missing}"],
        "{missing}: not a directory (expected a directory holding the four MNIST IDX files",
    ),
    "data-dir-empty": (
        ["train", "--data-dir", "{tmp}/empty"],
        "neither train-images-idx3-ubyte.gz nor train-images-idx3-ubyte is there (expected",
    ),
    "data-dir-corrupt": (
        ["train", "--data-dir", "{tmp}/corrupt"],
        "train-images-idx3-ubyte.gz: corrupt gzip stream",
    ),
    "evaluate-no-params": (["evaluate"], "the following arguments are required: --params"),
    "evaluate-params-missing": (
        ["evaluate", "--params", "{missing}"],
        "--params {missing}: no such file; pass the checkpoint params.npz",
    ),
    "evaluate-params-not-a-checkpoint": (
        ["evaluate", "--params", "{tmp}/file.txt"],
        "file.txt: not an .npz checkpoint",
    ),
    "evaluate-data-dir-missing": (
        ["evaluate", "--params", "{tmp}/params.npz", "--data-dir", "{missing}"],
        "{missing}: not a directory (expected a directory holding the four MNIST IDX files",
    ),
    "predict-image-missing": (
        ["predict", "--params", "{tmp}/params.npz", "{missing}.png"],
        "{missing}.png: no such file",
    ),
    "predict-params-missing": (
        ["predict", "--params", "{missing}", "digit.png"],
        "--params {missing}: no such file; pass the checkpoint",
    ),
    "diagnose-lr-zero": (["diagnose", "--lr", "0"], "--lr: must be a finite number > 0"),
    "diagnose-data-dir-missing": (
        ["diagnose", "--data-dir", "{missing}"],
        "{missing}: not a directory (expected",
    ),
    "diagnose-unknown-flag": (["diagnose", "--bogus"], "unrecognized arguments: --bogus"),
}


def _cli_files(tmp: Path) -> None:
    (tmp / "empty").mkdir()
    (tmp / "file.txt").write_text("neither a directory nor a checkpoint")
    write_mnist_like(tmp / "corrupt", n_train=20, n_test=5)
    (tmp / "corrupt" / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    save_params(tmp / "params.npz", js.init_params(jax.random.key(0)))


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    """Runs every case at once: each is a fresh interpreter that spends seconds importing JAX."""
    tmp = tmp_path_factory.mktemp("cli")
    _cli_files(tmp)
    fill = {"tmp": str(tmp), "missing": str(tmp / "missing")}
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {
            name: pool.submit(run_cli, *[arg.format(**fill) for arg in args], timeout=120)
            for name, (args, _) in CLI_CASES.items()
        }
        return {
            name: (future.result(), CLI_CASES[name][1].format(**fill)) for name, future in futures.items()
        }


@pytest.mark.parametrize("case", CLI_CASES)
@pytest.mark.slow
def test_bad_command_lines_print_one_line_and_exit_2(cli_results, case):
    result, message = cli_results[case]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert result.stdout == ""
