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


def _circles(graph, root: str = "imagefit") -> list[tuple[str, str]]:
    """Every direct import (a, b) within ROOT from which a chain of imports leads back to a."""
    found = []
    for module in sorted(m for m in graph.modules if m.startswith(root)):
        for target in sorted(graph.find_modules_directly_imported_by(module)):
            if target.startswith(root) and graph.chain_exists(importer=target, imported=module):
                found.append((module, target))
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
    (package / "c.py").write_text("from circled import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("circled", cache_dir=None)
    assert _circles(graph, "circled") == [("circled.a", "circled.b"), ("circled.b", "circled.a")]


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


TASK_NAMES = {"single-label", "multi-label"}


def _task_tests(source: str) -> list[int]:
    """Lines that compare something with a task's name ('multi-label', MULTI, ...): asking which task it is."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            named = any(isinstance(s, ast.Constant) and s.value in TASK_NAMES for s in sides)
            named |= any(isinstance(s, ast.Name) and s.id in ("SINGLE", "MULTI") for s in sides)
            lines += [node.lineno] if named else []
    return lines


def test_only_the_task_objects_decide_between_single_and_multi_label():
    asking = [
        f"{path.relative_to(SOURCE)}:{line}"
        for path in sorted(SOURCE.rglob("*.py"))
        if "tasks" not in path.relative_to(SOURCE).parts
        for line in _task_tests(path.read_text(encoding="utf-8"))
    ]
    assert asking == []


def test_the_task_test_finder_finds_a_branch_on_the_task():
    assert _task_tests('if run.task == "multi-label":\n    pass\nx = task != MULTI\ny = "a" == "b"\n') == [1, 3]
