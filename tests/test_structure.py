"""The package's shape: a small public API and top level, private internals kept private, imports
one way, no import cycle, one file renamer and one owner of signal handlers."""

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


# Each part of the package and the parts it may import from: imports point one way.
LAYERS = {
    "cli": {"cli", "runs", "diagnose", "solvers", "core", "data", "storage"},
    "runs": {"runs", "core", "data", "storage"},
    "diagnose": {"diagnose", "core", "data", "storage"},
    "solvers": {"solvers", "core", "data", "storage"},
    "core": {"core", "data", "storage"},  # the modules at the top and train/
    "data": {"data", "storage"},
    "storage": {"storage"},
}


def part_of(module: str) -> str | None:
    """``jax_softmax.runs._resume`` -> ``runs``; the top-level modules and ``train`` -> ``core``."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("__init__", "__main__", "__version__"):
        return None  # the package's table of contents and entry point reach everything
    if (PACKAGE / parts[1]).is_dir():
        return "core" if parts[1] == "train" else parts[1]
    return "core"


def runtime_imports(path: Path) -> list[str]:
    """Every ``jax_softmax`` module ``path`` imports when it runs: in functions too, not for type checks."""
    found = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jax_softmax"):
            if node.module == "jax_softmax":
                found.extend(f"jax_softmax.{alias.name}" for alias in node.names)
            else:
                found.append(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def test_imports_point_one_way():
    """cli -> runs, diagnose, solvers -> the core -> data -> storage, as docs/architecture.md draws it."""
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        here = part_of(module.removesuffix(".__init__"))
        if here is None:
            continue
        for target in runtime_imports(path):
            there = part_of(target)
            assert there is None or there in LAYERS[here], (
                f"{path.relative_to(PACKAGE)} ({here}) imports {target}"
            )


def test_the_top_level_is_small_and_every_module_short():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    subpackages = [p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()]
    assert len(top) <= 12, top
    assert len(subpackages) >= 3
    for path in PACKAGE.rglob("*.py"):
        lines = path.read_text().count("\n")
        assert lines <= 400, f"{path.relative_to(PACKAGE)} has {lines} lines"


def calls_to(attribute: str, owner: str) -> list[str]:
    """``module:function`` of every call of ``owner.attribute(...)`` in the package (innermost function)."""
    found = []

    def visit(node: ast.AST, where: str, path: Path) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            where = node.name
        func = getattr(node, "func", None) if isinstance(node, ast.Call) else None
        if (
            isinstance(func, ast.Attribute)
            and func.attr == attribute
            and getattr(func.value, "id", None) == owner
        ):
            found.append(f"{path.relative_to(PACKAGE)}:{where}")
        for child in ast.iter_child_nodes(node):
            visit(child, where, path)

    for path in PACKAGE.rglob("*.py"):
        visit(ast.parse(path.read_text()), "<module>", path)
    return found


def test_one_function_renames_files_and_one_module_sets_signal_handlers():
    assert set(calls_to("replace", "os")) == {"storage/files.py:write_atomically"}
    assert {where.split(":")[0] for where in calls_to("signal", "_signal")} == {"_process.py"}
    assert not calls_to("signal", "signal")
