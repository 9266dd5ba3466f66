"""The examples in docstrings run (so they cannot rot).

The pure core's modules, every one of them; and the public modules outside
the core whose docstrings have examples and are not run elsewhere
(``xfeldata.recipes`` runs in tests/test_recipes.py, ``xfeldata.aliases`` in
tests/test_aliases.py, ``xfeldata._outputs`` and ``xfeldata.xarray_backend``
in tests/test_outputs.py). The examples in docs/*.md run in tests/test_docs.py.
"""
import doctest
import importlib
import pkgutil
import warnings

import pytest

import xfeldata.core

MODULES = sorted(m.name for m in pkgutil.iter_modules(xfeldata.core.__path__,
                                                      'xfeldata.core.'))

FACE_MODULES = ['xfeldata.h5index', 'xfeldata.read_machinery', 'xfeldata.run_files_map',
                'xfeldata.utils', 'xfeldata.index_cache', 'xfeldata.testing',
                'xfeldata._execute', 'xfeldata._iterate', 'xfeldata.write_cxi']

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize('name', MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=FLAGS)
    assert result.failed == 0, f"{result.failed} docstring examples failed in {name}"


@pytest.mark.parametrize('name', FACE_MODULES)
def test_face_docstring_examples(name, isolated_cache):
    mod = importlib.import_module(name)
    with warnings.catch_warnings():
        result = doctest.testmod(mod, optionflags=FLAGS)
    assert result.attempted > 0, f"{name} has no docstring examples: drop it from the list"
    assert result.failed == 0, f"{result.failed} docstring examples failed in {name}"
