"""The run folder has one owner: what a tiny run writes is what `RunFiles` names and what the README's run-folder
table lists, no more and no less."""

from __future__ import annotations

import re
from pathlib import Path

from imagefit.runs import RunFiles

README = Path(__file__).resolve().parents[1] / "README.md"
PREDICTIONS = "predictions-<split>.csv"


def _readme_names() -> set[str]:
    """The file names in the first column of the README's run-folder table."""
    text = README.read_text(encoding="utf-8")
    table = text[text.index("## The run folder") :].split("\n\n")[2]
    names = set()
    for line in table.splitlines()[2:]:
        names |= {name.rstrip("/") for name in re.findall(r"`([^`]+)`", line.split("|")[1])}
    return names


def _runfiles_names() -> set[str]:
    """Every top-level entry `RunFiles` names (a predictions file as its pattern)."""
    files = RunFiles(Path("run"))
    names = {PREDICTIONS}
    for name in dir(RunFiles):
        if isinstance(getattr(RunFiles, name), property):
            names.add(getattr(files, name).relative_to(files.root).parts[0])
    return names


def _written_names(folder: Path) -> set[str]:
    return {PREDICTIONS if re.fullmatch(r"predictions-.+\.csv", p.name) else p.name for p in folder.iterdir()}


def test_the_readme_table_and_runfiles_name_the_same_files():
    assert _readme_names() == _runfiles_names()


def test_a_tiny_run_writes_only_files_runfiles_names(tiny_run):
    written = _written_names(tiny_run)
    assert written <= _runfiles_names(), written - _runfiles_names()
    for expected in ("model.safetensors", "config.json", "split.csv", "history.csv", "metrics.json", PREDICTIONS):
        assert expected in written
    assert not list(tiny_run.rglob("*.tmp")), "an atomic write left its temporary file"


def test_the_run_folder_checks_find_a_stray_file(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "predictions-val.csv").write_text("")
    (tmp_path / "stray.txt").write_text("")
    assert _written_names(tmp_path) - _runfiles_names() == {"stray.txt"}
