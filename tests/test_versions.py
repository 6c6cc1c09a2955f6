"""The lower bounds declared in pyproject.toml are versions this suite runs on (issue 11)."""

from importlib.metadata import version
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_every_declared_bound_is_met_by_the_versions_this_suite_runs_on():
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    for line in declared:
        requirement = Requirement(line)
        installed = Version(version(requirement.name))
        assert installed in requirement.specifier, f"{requirement} is not met by the tested {installed}"
        assert any(s.operator == ">=" for s in requirement.specifier), f"{requirement.name} needs a lower bound"
