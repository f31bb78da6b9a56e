"""The house rules of ``../shared/design.md``, checked on the source: layers only import downwards, no two modules
import each other (directly or around a loop), only the tracking package imports mlflow, methods never import each
other, and every module says in a docstring what it is for.

Imports are read with ``ast`` (lazy imports inside functions count too: they are dependencies all the same). The one
exception is a module's ``if __name__ == "__main__":`` block: it runs only when the module is the program
(``python -m ...``), never on import, so it is an entry point like the command line and may hand over to it.
"""

from __future__ import annotations

import ast
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from helpers import LAYER_OF, REPO


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[0] == "methods":  # installed as mtp_bench.methods
        parts = ["mtp_bench", "methods", *parts[1:]]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = {_module_name(p): p for folder in ("mtp_bench", "methods") for p in sorted((REPO / folder).rglob("*.py"))}


def _resolve(name: str) -> str:
    """The module an imported name lives in: ``mtp_bench.a.b.func`` -> ``mtp_bench.a.b``."""
    while name and name not in SOURCES:
        name = name.rpartition(".")[0]
    return name


def _is_main_guard(node: ast.AST) -> bool:
    """``if __name__ == "__main__":``"""
    test = getattr(node, "test", None)
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__" and len(test.comparators) == 1
            and isinstance(test.comparators[0], ast.Constant) and test.comparators[0].value == "__main__")


def _import_nodes(tree: ast.AST) -> list[ast.AST]:
    """The import statements anywhere in ``tree`` except under a ``__main__`` guard."""
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        todo += [child for child in ast.iter_child_nodes(node) if not _is_main_guard(child)]
    return found


def _imports(module: str) -> tuple[set[str], set[str]]:
    """(our modules, third-party top-level packages) that ``module`` imports anywhere in its body."""
    path = SOURCES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    ours: set[str] = set()
    theirs: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in SOURCES else base for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "mtp_bench":
                ours.add(_resolve(name))
            else:
                theirs.add(name.split(".")[0])
    ours.discard(module)
    return ours, theirs


GRAPH = {module: _imports(module) for module in SOURCES}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_part_has_a_layer():
    unplaced = sorted({_part(m) for m in SOURCES} - set(LAYER_OF) - {"__init__"})
    assert not unplaced, f"add these parts to LAYERS in tests/helpers.py: {unplaced}"


def test_layers_only_import_downwards():
    wrong = []
    for module, (ours, _) in GRAPH.items():
        here = _part(module)
        if here == "__init__":
            continue
        for target in ours:
            there = _part(target)
            if there != here and there != "__init__" and LAYER_OF[there] >= LAYER_OF[here]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports that run sideways or upwards:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    """Tarjan's strongly connected components over the module graph: any component of two or more is a loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    loops: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in GRAPH[node][0]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert not loops, f"modules that import each other: {loops}"


@pytest.mark.parametrize("forbidden", ["mlflow"])
def test_only_tracking_imports_mlflow(forbidden):
    outside = [m for m, (_, theirs) in GRAPH.items() if forbidden in theirs and _part(m) != "tracking"]
    assert not outside, f"{forbidden} imported outside mtp_bench/tracking/: {outside}"


def _method_plugins() -> set[str]:
    """Modules that the ``mtp_bench.methods`` entry-point group names (helpers beside them, such as shared params
    or a layout module, are not methods)."""
    return {entry.value.split(":")[0] for entry in entry_points(group="mtp_bench.methods")}


def test_methods_never_import_each_other_nor_the_runtime():
    plugins = _method_plugins()
    wrong = []
    for module, (ours, theirs) in GRAPH.items():
        if _part(module) != "methods":
            continue
        wrong += [f"{module} -> {t}" for t in ours if t in plugins]
        wrong += [f"{module} -> {t}" for t in theirs if t in ("ray", "mlflow")]
    assert not wrong, "\n".join(wrong)


def test_every_module_says_what_it_is_for():
    missing = [m for m, path in SOURCES.items() if not ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))]
    assert not missing, f"modules without a docstring: {missing}"


def test_main_guards_only_hand_over_to_the_command_line():
    """What a ``__main__`` block may import (it is not checked with the layers): the command line, nothing else of
    ours, so the work itself stays in modules the layer rules see."""
    wrong = []
    for module, path in SOURCES.items():
        for guard in [n for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if _is_main_guard(n)]:
            names = [node.module or "" for node in ast.walk(guard) if isinstance(node, ast.ImportFrom)]
            wrong += [f"{module}: {name}" for name in names
                      if name.startswith("mtp_bench") and name.split(".")[:2] != ["mtp_bench", "cli"]]
    assert not wrong, "\n".join(wrong)
