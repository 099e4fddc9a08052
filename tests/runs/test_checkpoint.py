"""Checkpoints: exact round trip, refusal of anything malformed, and saves that cannot tear."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import REPO, x64

import jax_softmax as js
from jax_softmax.runs.checkpoint import CheckpointError


def random_params(num_features=784, num_classes=10, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return js.Params(
        w=jnp.asarray(rng.normal(size=(num_features, num_classes)).astype(dtype)),
        b=jnp.asarray(rng.normal(size=num_classes).astype(dtype)),
    )


def test_round_trip_is_exact_and_keeps_metadata(tmp_path):
    params = random_params()
    metadata = {"data_set": "MNIST", "training": {"lr": 0.5, "grad": "manual"}, "epoch": 3}
    path = js.save_params(tmp_path / "params.npz", params, metadata)
    loaded, meta = js.load_params(path)
    assert loaded.w.dtype == jnp.float32 and loaded.b.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(loaded.w), np.asarray(params.w))
    np.testing.assert_array_equal(np.asarray(loaded.b), np.asarray(params.b))
    assert meta["training"] == {"lr": 0.5, "grad": "manual"} and meta["epoch"] == 3
    assert meta["num_features"] == 784 and meta["num_classes"] == 10 and meta["dtype"] == "float32"
    assert meta["jax_softmax_version"] == js.__version__
    assert meta["format"] == "jax-softmax-params/1"
    assert sorted(os.listdir(tmp_path)) == ["params.npz"]  # no temporary file left behind


def test_float64_round_trip_is_exact(tmp_path):
    with x64():
        params = random_params(5, 3, np.float64)
        js.save_params(tmp_path / "p.npz", params)
        loaded = js.load_params(tmp_path / "p.npz").params
        assert loaded.w.dtype == jnp.float64
        np.testing.assert_array_equal(np.asarray(loaded.w), np.asarray(params.w))
        np.testing.assert_array_equal(np.asarray(loaded.b), np.asarray(params.b))
    if not jax.config.jax_enable_x64:
        with pytest.raises(CheckpointError, match="float64 parameters; enable 64-bit JAX"):
            js.load_params(tmp_path / "p.npz")


def test_checkpoint_holds_no_pickle(tmp_path):
    js.save_params(tmp_path / "p.npz", random_params(4, 2), {"note": "x"})
    with zipfile.ZipFile(tmp_path / "p.npz") as archive:
        assert sorted(archive.namelist()) == ["b.npy", "metadata.npy", "w.npy"]
    with np.load(tmp_path / "p.npz", allow_pickle=False) as f:
        assert json.loads(str(f["metadata"]))["note"] == "x"


def write_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def good_arrays(num_features=4, num_classes=3):
    rng = np.random.default_rng(1)
    return {
        "w": rng.normal(size=(num_features, num_classes)).astype(np.float32),
        "b": np.zeros(num_classes, np.float32),
        "metadata": np.array(json.dumps({"num_features": num_features, "num_classes": num_classes})),
    }


@pytest.mark.parametrize(
    "change, message",
    [
        ({"w": np.zeros(12, np.float32)}, r"w must be \[num_features, num_classes\], got shape \(12,\)"),
        ({"b": np.zeros(4, np.float32)}, r"b must have shape \(3,\) to match w, got \(4,\)"),
        ({"w": np.full((4, 3), np.nan, np.float32)}, "w holds 12 non-finite values"),
        ({"b": np.array([0, np.inf, 0], np.float32)}, "b holds 1 non-finite values"),
        ({"w": np.zeros((4, 3), np.int32)}, "w must be a floating array, got dtype int32"),
        ({"b": np.zeros(3, np.float64)}, "w is float32 but b is float64"),
        ({"w": np.array([[{"x": 1}]], dtype=object)}, "pickled object array; refused"),
        ({"metadata": np.array(["a", "b"])}, "metadata must be a JSON string"),
        ({"metadata": np.array("not json")}, "metadata is not valid JSON"),
        ({"metadata": np.array("[1, 2]")}, "metadata must be a JSON object, got list"),
        ({"metadata": np.array('{"num_classes": 7}')}, "metadata says num_classes 7 but the arrays give 3"),
        ({"extra": np.zeros(1)}, r"expected the arrays \['b', 'metadata', 'w'\], found"),
    ],
)
def test_load_refuses_malformed_checkpoints(tmp_path, change, message):
    path = write_npz(tmp_path / "bad.npz", **{**good_arrays(), **change})
    with pytest.raises(CheckpointError, match=message) as info:
        js.load_params(path)
    assert str(path) in str(info.value)


def test_load_refuses_missing_foreign_and_truncated_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        js.load_params(tmp_path / "absent.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(CheckpointError, match="not an .npz checkpoint"):
        js.load_params(tmp_path / "text.npz")
    good = write_npz(tmp_path / "good.npz", **good_arrays(50, 10))
    data = good.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        js.load_params(tmp_path / "cut.npz")
    with pytest.raises(CheckpointError, match="is a directory"):
        js.load_params(tmp_path)


def test_save_refuses_what_load_would_refuse(tmp_path):
    params = random_params(4, 3)
    with pytest.raises(CheckpointError, match="w holds 1 non-finite"):
        js.save_params(tmp_path / "p.npz", params._replace(w=params.w.at[0, 0].set(jnp.nan)))
    with pytest.raises(ValueError, match=r"metadata\['num_classes'\] is 10 but the parameters give 3"):
        js.save_params(tmp_path / "p.npz", params, {"num_classes": 10})
    with pytest.raises(ValueError, match="metadata must be a JSON object of plain values"):
        js.save_params(tmp_path / "p.npz", params, {"lr": float("nan")})
    with pytest.raises(TypeError, match="params must be a Params"):
        js.save_params(tmp_path / "p.npz", (params.w, params.b))
    assert not os.listdir(tmp_path)


def test_a_save_that_fails_midway_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "params.npz"
    old = random_params(4, 3, seed=1)
    js.save_params(path, old)

    def fail_midway(file, **arrays):
        file.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        js.save_params(path, random_params(4, 3, seed=2))
    np.testing.assert_array_equal(np.asarray(js.load_params(path).params.w), np.asarray(old.w))
    assert os.listdir(tmp_path) == ["params.npz"]


# The child saves a first checkpoint, then starts a second save whose writer stops
# after half the archive's bytes, reports, and waits to be killed.
KILLED_SAVE = textwrap.dedent(
    """
    import io, sys, time
    import numpy as np
    import jax.numpy as jnp
    import jax_softmax as js

    path = sys.argv[1]
    js.save_params(path, js.Params(w=jnp.ones((784, 10)), b=jnp.zeros(10)), {"epoch": 1})
    real_savez = np.savez

    def half_then_hang(file, **arrays):
        buffer = io.BytesIO()
        real_savez(buffer, **arrays)
        data = buffer.getvalue()
        file.write(data[: len(data) // 2])
        file.flush()
        print("writing", flush=True)
        time.sleep(60)

    np.savez = half_then_hang
    js.save_params(path, js.Params(w=jnp.full((784, 10), 2.0), b=jnp.ones(10)), {"epoch": 2})
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
@pytest.mark.slow
def test_a_save_killed_midway_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "params.npz"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_SAVE, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert child.stdout.readline().strip() == "writing"
        # The half-written archive exists, under a temporary name.
        partial = [p for p in tmp_path.iterdir() if p.name != "params.npz"]
        assert len(partial) == 1 and partial[0].stat().st_size > 0
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    params, metadata = js.load_params(path)
    assert metadata["epoch"] == 1
    np.testing.assert_array_equal(np.asarray(params.w), np.ones((784, 10), np.float32))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        js.load_params(partial[0])
