"""Every public name of every package imports, and every docstring example runs."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import genlab

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(genlab.__path__, "genlab.") if m.name != "genlab.__main__"
)


@pytest.mark.parametrize("name", MODULES)
def test_public_names_import(name: str) -> None:
    module = importlib.import_module(name)
    for public in getattr(module, "__all__", []):
        assert getattr(module, public) is not None, f"{name}.{public}"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name, globs=dict(vars(module))):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
