"""Every Python block in the README and in docs/ runs on its own, in a fresh process."""

import importlib
import re
import subprocess
import sys

import pytest
from helpers import REPO, source_env

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks() -> list[tuple[str, str]]:
    blocks = []
    for page in PAGES:
        text = page.read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            blocks.append((f"{page.relative_to(REPO)}:{line}", match.group(1)))
    return blocks


BLOCKS = python_blocks()


def test_the_pages_have_python_blocks():
    assert len(BLOCKS) >= 3


@pytest.mark.slow
@pytest.mark.parametrize("where, code", BLOCKS, ids=[where for where, _ in BLOCKS])
def test_block_runs_on_its_own(where, code, mnist_dir, tmp_path):
    env = {**source_env(), "JAX_SOFTMAX_DATA_DIR": str(mnist_dir), "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{where} failed:\n{done.stderr[-3000:]}"


def test_links_to_docs_resolve():
    for page in PAGES:
        for target in re.findall(r"\]\(((?:docs/)?[\w./-]+\.(?:md|png))\)", page.read_text()):
            assert (page.parent / target).is_file() or (REPO / target).is_file(), (
                f"{page.name} links {target}"
            )


def test_files_the_pages_name_exist():
    """A path such as ``tests/runs/test_run_faults.py`` in a page is a file of the repository."""
    named = re.compile(r"\b((?:jax_softmax|tests|scripts|docs)/[\w/]+\.(?:py|md|png))")
    missing = [
        f"{page.name}: {path}"
        for page in PAGES
        for path in named.findall(page.read_text())
        if not (REPO / path).is_file()
    ]
    assert not missing, missing


def test_names_the_pages_give_in_the_package_exist():
    """Every ``jax_softmax.a.b`` in a page is a module or an attribute reached from one."""
    missing = []
    for page in PAGES:
        for name in set(re.findall(r"\bjax_softmax(?:\.[A-Za-z_]\w*)+", page.read_text())):
            parts = name.split(".")
            for i in range(len(parts), 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:i]))
                    break
                except ImportError:
                    continue
            for attribute in parts[i:]:
                obj = getattr(obj, attribute, None)
            if obj is None:
                missing.append(f"{page.name}: {name}")
    assert not missing, missing
