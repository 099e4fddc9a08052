"""Whole compiled programs kept between runs: loaded without tracing, keyed on all they depend on."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import optax
import pytest
from helpers import assert_trees_equal, blobs, run_cli

import jax_softmax as js
from jax_softmax.storage import _programs as _program_store
from jax_softmax.storage.cache import CACHE_DIR_ENV

X, Y = blobs(n=400)
TRAIN, VALIDATION = (X[:300], Y[:300]), (X[300:], Y[300:])
SETTINGS = {"epochs": 2, "batch_size": 50, "num_classes": 3, "lr": 0.1}


@pytest.fixture
def store(tmp_path):
    _program_store.set_directory(tmp_path / "programs")
    yield tmp_path / "programs"
    _program_store.set_directory(None)


def programs(directory) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.glob("*.program"))}


class Events:
    """Counts the tracings and XLA compilations inside the block."""

    def __enter__(self):
        self.traced = self.compiled = 0
        jax.monitoring.register_event_duration_secs_listener(self.listen)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self.listen)

    def listen(self, name, duration, **kwargs):
        self.traced += name == "/jax/core/compile/jaxpr_trace_duration"
        self.compiled += name == "/jax/core/compile/backend_compile_duration"


@pytest.mark.slow
def test_a_later_fit_loads_every_program_without_tracing_and_trains_the_same(store):
    _program_store.set_directory(None)
    expected, expected_history = js.fit(TRAIN, VALIDATION, **SETTINGS)
    _program_store.set_directory(store)
    with Events() as first:
        params, history = js.fit(TRAIN, VALIDATION, **SETTINGS)
    kept = programs(store)
    assert sorted(name.split("-")[0] for name in kept) == ["epoch", "start"]
    assert first.traced >= len(kept) and first.compiled >= len(kept)
    with Events() as second:
        loaded, loaded_history = js.fit(TRAIN, VALIDATION, **SETTINGS)
    assert (second.traced, second.compiled) == (0, 0)
    assert programs(store) == kept
    for result in (params, loaded):
        assert_trees_equal(result, expected)
    for h in (history, loaded_history):
        assert [(m.train_loss, m.val_loss) for m in h.epochs] == [
            (m.train_loss, m.val_loss) for m in expected_history.epochs
        ]


@pytest.mark.slow
def test_settings_that_change_the_program_change_its_key(store):
    js.fit(TRAIN, **SETTINGS)
    kept = set(programs(store))
    js.fit(TRAIN, **{**SETTINGS, "lr": 0.3, "seed": 0})  # plain SGD's rate is an argument: no new program
    assert set(programs(store)) == kept
    js.fit(TRAIN, **{**SETTINGS, "batch_size": 25})
    new = set(programs(store)) - kept
    assert [name.split("-")[0] for name in new] == ["epoch"]
    js.fit(TRAIN, **{**SETTINGS, "optimizer": "adam"})
    js.fit(TRAIN, **{**SETTINGS, "optimizer": "adam", "lr": 0.01})  # optax holds its rate: a new program
    epochs = [name for name in programs(store) if name.startswith("epoch-")]
    assert len(epochs) == 4
    js.fit(TRAIN, **{**SETTINGS, "seed": 3})  # a new set-up program: the seed is static there
    assert len([name for name in programs(store) if name.startswith("start-")]) == 2


@pytest.mark.slow
def test_an_optimizer_object_is_not_kept(store):
    params, _ = js.fit(TRAIN, **{**SETTINGS, "optimizer": optax.adam(0.1)})
    assert not any(name.startswith("epoch-") for name in programs(store))
    expected, _ = js.fit(TRAIN, **{**SETTINGS, "optimizer": "adam"})
    assert_trees_equal(params, expected)


def test_a_change_to_the_code_or_the_libraries_changes_every_key(monkeypatch):
    args, settings = (jax.numpy.zeros(3),), {"batch_size": 50}
    key = _program_store._key("epoch", args, settings)
    assert _program_store._key("epoch", args, settings) == key
    assert _program_store._key("epoch", (jax.numpy.zeros(4),), settings) != key
    assert _program_store._key("epoch", (jax.numpy.zeros(3, "int32"),), settings) != key
    assert _program_store._key("epoch", args, {"batch_size": 25}) != key
    environment = _program_store._static_environment()
    for name in ("source", "python", "numpy", "jax", "jaxlib", "xla_flags", "platform", "devices", "host"):
        assert name in environment
        changed = {**environment, name: "something else"}
        monkeypatch.setattr(_program_store, "_static_environment", lambda changed=changed: changed)
        assert _program_store._key("epoch", args, settings) != key, name
    monkeypatch.undo()
    jax.config.update("jax_debug_nans", True)
    try:
        assert _program_store._key("epoch", args, settings) != key
    finally:
        jax.config.update("jax_debug_nans", False)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "garbage"])
@pytest.mark.slow
def test_a_damaged_program_is_compiled_again(store, damage):
    expected, _ = js.fit(TRAIN, VALIDATION, **SETTINGS)
    kept = programs(store)
    for name, data in kept.items():
        path = store / name
        if damage == "flip":
            path.write_bytes(data[:-100] + bytes([data[-100] ^ 1]) + data[-99:])
        elif damage == "truncate":
            path.write_bytes(data[: len(data) // 2])
        elif damage == "empty":
            path.write_bytes(b"")
        else:
            path.write_bytes(b"jax-softmax program 1\n" + bytes(32) + b"not a pickle")
    with Events() as events:
        params, _ = js.fit(TRAIN, VALIDATION, **SETTINGS)
    assert events.compiled >= len(kept)
    assert_trees_equal(params, expected)
    assert programs(store).keys() == kept.keys()
    with Events() as events:
        params, _ = js.fit(TRAIN, VALIDATION, **SETTINGS)
    assert events.compiled == 0  # rewritten whole
    assert_trees_equal(params, expected)


@pytest.mark.slow
def test_the_oldest_programs_go_beyond_the_limit(store, monkeypatch):
    monkeypatch.setattr(_program_store, "MAX_ENTRIES", 2)
    js.fit(TRAIN, **SETTINGS)  # a set-up and an epoch
    first = set(programs(store))
    assert len(first) == 2
    js.fit(TRAIN, **{**SETTINGS, "batch_size": 25})  # the same set-up, a new epoch
    assert len(programs(store)) == 2
    assert [name.split("-")[0] for name in set(programs(store)) - first] == ["epoch"]  # the newest stays


@pytest.mark.slow
def test_a_program_jax_had_already_cached_is_kept_runnable(mnist_dir, tmp_path):
    # jaxlib 0.10 serializes an executable that JAX loaded from its persistent cache into
    # one that fails when run ("Function ... not found"). The store compiles such a program
    # afresh; every later run loads it and trains the same.
    cache = tmp_path / "cache"
    command = ["train", "--data-dir", str(mnist_dir), "--epochs", "1"]
    command += ["--json", "--cache-dir", str(cache)]

    def train() -> dict:
        run = run_cli(*command, env={CACHE_DIR_ENV: ""})
        assert run.returncode == 0, run.stderr
        result = json.loads(run.stdout)
        return {key: result[key] for key in ("test_accuracy", "test_loss", "val_loss")}

    expected = train()
    kept = sorted(path.name for path in (cache / "programs").iterdir())
    assert sorted(name.split("-")[0] for name in kept) == ["epoch", "evaluate_pixels", "start"]
    for path in (cache / "programs").iterdir():
        path.unlink()
    assert train() == expected  # JAX's cache has every program; the store has none
    assert sorted(path.name for path in (cache / "programs").iterdir()) == kept
    assert train() == expected
    assert train() == expected


@pytest.mark.slow
def test_fit_from_host_parameters_keeps_and_loads_its_programs(store):
    params, _ = js.fit(TRAIN, **SETTINGS)
    host = jax.tree.map(np.asarray, params)  # NumPy arrays, as from np.load
    first, _ = js.fit(TRAIN, params=host, **SETTINGS)
    kept = programs(store)
    assert any(name.startswith("epoch-") for name in kept)
    with Events() as events:
        second, _ = js.fit(TRAIN, params=host, **SETTINGS)
    assert (events.traced, events.compiled) == (0, 0)
    assert programs(store) == kept
    _program_store.set_directory(None)
    expected, _ = js.fit(TRAIN, params=host, **SETTINGS)
    assert_trees_equal(first, expected)
    assert_trees_equal(second, expected)


def test_an_edit_to_a_module_of_a_sub_package_compiles_afresh(store, tmp_path, monkeypatch):
    js.fit(TRAIN, **SETTINGS)
    kept = programs(store)
    copy = tmp_path / "jax_softmax"
    shutil.copytree(_program_store.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    edited = copy / "train" / "_epoch.py"
    edited.write_text(edited.read_text() + "\n# an edit\n")
    monkeypatch.setattr(_program_store, "PACKAGE_DIR", copy)
    _program_store._static_environment.cache_clear()
    try:
        with Events() as events:
            js.fit(TRAIN, **SETTINGS)
    finally:
        _program_store._static_environment.cache_clear()
    assert events.compiled >= 1
    new = set(programs(store)) - set(kept)
    assert sorted(name.split("-")[0] for name in new) == ["epoch", "start"]


@pytest.mark.slow
def test_optax_s_version_is_part_of_an_optax_program_s_key(store, monkeypatch):
    from jax_softmax.train import _fit as train

    js.fit(TRAIN, **{**SETTINGS, "optimizer": "adam"})
    kept = set(programs(store))
    monkeypatch.setattr(train, "_optax_version", lambda: "0.0.0")
    js.fit(TRAIN, **{**SETTINGS, "optimizer": "adam"})
    assert [name.split("-")[0] for name in set(programs(store)) - kept] == ["epoch"]
