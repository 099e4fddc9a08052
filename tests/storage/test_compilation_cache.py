"""The persistent compilation cache: on for the command line, where it is asked for, and reused."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from jax_softmax.cli import build_parser
from jax_softmax.storage.cache import CACHE_DIR_ENV, default_cache_dir

# Compiles one small jitted function; reports its value, the programs JAX asked the
# cache for and those it found there.
CHILD = textwrap.dedent(
    """
    import collections, sys, jax, jax.numpy as jnp
    from jax_softmax.storage.cache import enable_compilation_cache
    events = collections.Counter()
    jax.monitoring.register_event_listener(lambda name, **kwargs: events.update([name]))
    enable_compilation_cache(sys.argv[1])
    value = float(jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((3, 3))).sum())
    requests = events["/jax/compilation_cache/compile_requests_use_cache"]
    print(value, requests, events["/jax/compilation_cache/cache_hits"])
    """
)


def run_child(cache_dir):
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(cache_dir)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    value, requests, hits = result.stdout.split()
    return float(value), int(requests), int(hits)


@pytest.mark.slow
def test_second_process_loads_from_the_cache(tmp_path):
    cache = tmp_path / "nested" / "cache"
    value, requests, hits = run_child(cache)
    assert requests >= 1 and hits == 0
    assert any(cache.iterdir()), "nothing was written to the cache"
    assert run_child(cache) == (value, requests, requests)


def test_cache_flags(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "jax-softmax"
    args = build_parser().parse_args(["train"])
    assert args.cache_dir == str(tmp_path / "xdg" / "jax-softmax") and not args.no_cache
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "env"))
    assert build_parser().parse_args(["train"]).cache_dir == str(tmp_path / "env")
    args = build_parser().parse_args(["train", "--cache-dir", "x", "--no-cache"])
    assert args.cache_dir == "x" and args.no_cache


@pytest.mark.slow
def test_train_fills_the_cache_and_reuses_it(mnist_dir, tmp_path):
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "jax_softmax", "train", "--data-dir", str(mnist_dir), "--epochs", "1"]
    command += ["--json", "--cache-dir", str(cache)]
    env = {**os.environ, CACHE_DIR_ENV: ""}
    results, entries = [], []
    for _ in range(2):
        run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        assert run.returncode == 0, run.stderr
        results.append(json.loads(run.stdout))
        entries.append(sorted(path.name for path in cache.iterdir()))
    assert len(entries[0]) >= 2
    # The second run found every program in the cache: it compiled, and so wrote, nothing new.
    assert entries[1] == entries[0]
    assert results[1]["test_accuracy"] == results[0]["test_accuracy"]
