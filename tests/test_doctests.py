"""The examples in the pure core's docstrings run (so they cannot rot)."""
import doctest
import importlib
import pkgutil

import pytest

import xfeldata.core

MODULES = sorted(m.name for m in pkgutil.iter_modules(xfeldata.core.__path__,
                                                      'xfeldata.core.'))


@pytest.mark.parametrize('name', MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring examples failed in {name}"
