"""The examples in docstrings run (doctest), so none goes stale."""

import doctest
import importlib
import pkgutil

import imagefit


def test_every_docstring_example_runs():
    attempted = 0
    names = ["imagefit", *(info.name for info in pkgutil.walk_packages(imagefit.__path__, "imagefit."))]
    for name in names:
        module = importlib.import_module(name)
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, f"a docstring example of {name} fails"
        attempted += result.attempted
    assert attempted >= 1, "imagefit's own example must be found and run"
