"""The package's shape: a small public API, private internals kept private, no import cycle."""

import ast
from pathlib import Path

from helpers import REPO

import jax_softmax as js

PACKAGE = REPO / "jax_softmax"


def package_imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` for each ``from jax_softmax[.module] import names`` in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jax_softmax"):
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def test_the_public_api_is_small():
    assert len(js.__all__) <= 30
    assert len(set(js.__all__)) == len(js.__all__)


def test_no_private_name_is_imported_across_modules():
    for path in PACKAGE.rglob("*.py"):
        for module, names in package_imports(path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            # a private module may be imported whole (from jax_softmax import _process)
            package = REPO.joinpath(*module.split("."))
            private = [n for n in private if not (package / f"{n}.py").is_file()]
            assert not private, f"{path.relative_to(PACKAGE)} imports {private} from {module}"


def test_a_sub_packages_private_modules_are_its_own():
    """``jax_softmax.solvers._solve`` is reached through ``jax_softmax.solvers`` from outside it."""
    for path in PACKAGE.rglob("*.py"):
        for module, _ in package_imports(path):
            parts = module.split(".")
            inside = path.parent == REPO.joinpath(*parts[:-1])
            private = len(parts) > 2 and parts[-1].startswith("_")
            assert inside or not private, f"{path.relative_to(PACKAGE)} imports from the private {module}"


def test_no_import_cycle_at_module_level():
    graph = {}
    for path in PACKAGE.glob("*.py"):
        if path.name == "__init__.py":
            continue
        deps = set()
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: imports inside functions run later
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jax_softmax"):
                if node.module == "jax_softmax":
                    deps.update(alias.name for alias in node.names)
                else:
                    deps.add(node.module.split(".", 1)[1])
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".", 1)[1] for a in node.names if a.name.startswith("jax_softmax."))
        graph[path.stem] = {d for d in deps if (PACKAGE / f"{d}.py").is_file()}

    def visit(node, stack):
        assert node not in stack, f"import cycle: {' -> '.join([*stack, node])}"
        for dep in graph.get(node, ()):
            visit(dep, [*stack, node])

    for module in graph:
        visit(module, [])


def test_functions_are_short():
    # Body length of every function, its docstring left out: at most 60 lines.
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                if isinstance(body[0], ast.Expr) and isinstance(
                    getattr(body[0], "value", None), ast.Constant
                ):
                    body = body[1:] or body
                length = body[-1].end_lineno - body[0].lineno + 1
                assert length <= 60, f"{path.name}:{node.name} has {length} lines"
