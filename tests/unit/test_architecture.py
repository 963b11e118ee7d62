"""The package's architecture holds (docs/architecture.md): no circle, no hidden import, one
importer of ``orthanc``. The layer rules themselves are import-linter's contracts
(``[tool.importlinter]`` in ``pyproject.toml``, run by ``make lint``)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import grimp
from support import ROOT

PACKAGE = ROOT / "plugin" / "scintiseg"
#: the training package imports the plugin's modules too (cards, preprocessing, runtime)
TRAINING = ROOT / "training" / "scintiseg_training"
ENTRY_SCRIPT = ROOT / "plugin" / "scintiseg_plugin.py"


def modules(folder: Path = PACKAGE) -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(folder.rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def imported_names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module]
    return []


def is_package_module(name: str) -> bool:
    return name == "scintiseg" or name.startswith("scintiseg.")


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's components of more than one module (a module importing itself counts too)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_strongly_connected_finds_a_circle_and_only_circles() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_module_of_the_package_is_in_an_import_circle() -> None:
    graph = grimp.build_graph("scintiseg")
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert len(edges) > 50  # the whole package was read
    assert strongly_connected(edges) == []


def test_no_function_imports_a_module_of_the_package() -> None:
    """An import inside a function hides a dependency (and, before, dodged circles)."""
    hidden = []
    for path, tree in [*modules(PACKAGE), *modules(TRAINING)]:
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(func):
                hidden += [
                    f"{path.relative_to(ROOT)}:{node.lineno}: {name}"
                    for name in imported_names(node) if is_package_module(name)
                ]
    assert hidden == []


def test_only_the_entry_script_imports_orthanc() -> None:
    importers = [
        str(path.relative_to(ROOT))
        for path, tree in modules()
        for node in ast.walk(tree)
        if any(name == "orthanc" or name.startswith("orthanc.") for name in imported_names(node))
    ]
    assert importers == []
    entry = ast.parse(ENTRY_SCRIPT.read_text())
    assert any("orthanc" in imported_names(node) for node in entry.body)
