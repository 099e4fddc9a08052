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


def imported_by(*argv: str, libraries: list[str] = OPTIONAL) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(libraries), *argv],
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
    importlib.import_module("jax_softmax.sweeps")
    assert callable(js.sweep) and js.sweep.__module__ == "jax_softmax.sweeps"
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        js.no_such_name  # noqa: B018


def test_help_imports_none_of_the_optional_libraries():
    assert imported_by("train", "--help") == []


@pytest.mark.parametrize(
    "argv", [["--help"], ["train", "--help"], ["diagnose", "--epochs", "0"], ["--version"]]
)
def test_help_and_bad_flags_import_no_jax(argv):
    """The parser, every command's included, is built without JAX: ``train`` imports it
    while MNIST is read beside it, and ``--help`` answers at once."""
    assert imported_by(*argv, libraries=["jax"]) == []


@pytest.mark.slow
def test_plain_sgd_training_imports_none_of_them(mnist_dir):
    argv = ["train", "--data-dir", str(mnist_dir), "--epochs", "1", "--json", "--no-cache"]
    assert imported_by(*argv) == []
    assert imported_by(*argv, "--optimizer", "adam") == ["optax"]


# The command line as a process starts: the package imported under the command's name.
COLLECTOR = textwrap.dedent(
    """
    import gc, sys
    sys.argv = ["jax-softmax"]
    import jax_softmax
    from jax_softmax import _process
    paused = not gc.isenabled()
    _process.freeze_imports()
    print(paused, gc.isenabled(), "jax" in sys.modules, gc.get_freeze_count())
    """
)


@pytest.mark.slow
def test_the_command_line_imports_with_the_collector_paused_then_freezes_them():
    result = subprocess.run([sys.executable, "-c", COLLECTOR], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    paused, enabled, jax_imported, frozen = result.stdout.split()
    assert (paused, enabled, jax_imported) == ("True", "True", "True")
    assert int(frozen) > 50_000


def test_the_collector_is_left_alone_in_a_program_that_imports_the_package():
    import gc

    from jax_softmax._process import freeze_imports

    before = gc.get_freeze_count()
    freeze_imports()
    assert gc.isenabled() and gc.get_freeze_count() == before


def test_another_package_run_with_dash_m_leaves_the_collector_alone(tmp_path):
    package = tmp_path / "other_tool"
    package.mkdir()
    (package / "__init__.py").write_text("import gc\nimport jax_softmax\nENABLED = gc.isenabled()\n")
    (package / "__main__.py").write_text("from other_tool import ENABLED\nprint(ENABLED)\n")
    result = subprocess.run(
        [sys.executable, "-m", "other_tool"], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True"]
