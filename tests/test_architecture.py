"""The layering of ARCHITECTURE.md holds: import-linter's contracts, no import circle, no private name imported
from another module. Imports inside functions count everywhere (grimp reads them too)."""

from __future__ import annotations

import ast
import pathlib

import grimp
from importlinter.cli import lint_imports

SOURCE = pathlib.Path(__file__).resolve().parents[1] / "src" / "imagefit"


def test_the_import_contracts_of_architecture_md_are_kept(capsys):
    kept = lint_imports(config_filename=str(SOURCE.parents[1] / "pyproject.toml"), no_cache=True, no_logo=True)
    printed = capsys.readouterr().out
    assert kept == 0, printed[-3000:]
    assert "5 kept, 0 broken" in printed


def _circles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    modules = sorted(m for m in graph.modules if m.startswith("imagefit"))
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph.find_modules_directly_imported_by(module):
            if not target.startswith("imagefit"):
                continue
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in modules:
        if module not in index:
            visit(module)
    return found


def test_no_module_takes_part_in_an_import_circle():
    graph = grimp.build_graph("imagefit")
    assert _circles(graph) == []


def test_the_circle_finder_finds_a_circle(tmp_path, monkeypatch):
    package = tmp_path / "circled"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from circled import b\n")
    (package / "b.py").write_text("from circled import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("circled")
    assert [sorted(c) for c in _circles_of(graph, "circled")] == [["circled.a", "circled.b"]]


def _circles_of(graph, root: str) -> list[list[str]]:
    renamed = _Renamed(graph, root)
    return [[name.replace("imagefit", root, 1) for name in c] for c in _circles(renamed)]


class _Renamed:
    """A grimp graph of another package seen under the name `imagefit`, to test the circle finder."""

    def __init__(self, graph, root: str):
        self.graph, self.root = graph, root

    @property
    def modules(self):
        return {m.replace(self.root, "imagefit", 1) for m in self.graph.modules}

    def find_modules_directly_imported_by(self, module: str):
        original = module.replace("imagefit", self.root, 1)
        return {m.replace(self.root, "imagefit", 1) for m in self.graph.find_modules_directly_imported_by(original)}


def test_no_private_name_is_imported_from_another_module():
    private = []
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("imagefit"):
                private += [
                    f"{path.relative_to(SOURCE)}:{node.lineno} {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    assert private == []
