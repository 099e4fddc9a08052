"""Each command imports only what it uses: no optax, matplotlib, Pillow, tqdm or tensorflow-datasets
where they are not needed."""

import importlib
import json
import subprocess
import sys
import textwrap

import pytest

import jax_softmax as js

OPTIONAL = ["optax", "matplotlib", "PIL", "tqdm", "tensorflow_datasets"]

# Runs the command line in a fresh process; prints which of the libraries it imported.
CHILD = textwrap.dedent(
    """
    import json, sys
    from jax_softmax.cli import main
    try:
        main(sys.argv[2:])
    except SystemExit:
        pass
    print(json.dumps(sorted(name for name in json.loads(sys.argv[1]) if name in sys.modules)))
    """
)


def imported_by(*argv: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(OPTIONAL), *argv],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_package_exports_every_public_name_on_first_use():
    assert sorted(js.__all__) == sorted(js._EXPORTS)
    for name in js.__all__:
        assert getattr(js, name) is not None
    # A submodule of the same name, once imported, does not shadow the function.
    importlib.import_module("jax_softmax.sweep")
    assert callable(js.sweep) and js.sweep.__module__ == "jax_softmax.sweep"
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        js.no_such_name  # noqa: B018


def test_help_imports_none_of_the_optional_libraries():
    assert imported_by("train", "--help") == []


@pytest.mark.slow
def test_plain_sgd_training_imports_none_of_them(mnist_dir):
    argv = ["train", "--data-dir", str(mnist_dir), "--epochs", "1", "--json", "--no-cache"]
    assert imported_by(*argv) == []
    assert imported_by(*argv, "--optimizer", "adam") == ["optax"]
