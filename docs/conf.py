"""Sphinx configuration for the xfeldata documentation.

Build (no network needed, warnings are errors, broken references fail)::

    python -m sphinx -W --keep-going -n -b html docs docs/_build/html

Why Sphinx (and not MkDocs): see docs/docs-tooling.md.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '_ext'))

import xfeldata  # noqa: E402

project = 'xfeldata'
author = 'xfeldata developers'
copyright = '2026, xfeldata developers'
version = release = xfeldata.__version__

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'numpydoc',
]

# Markdown pages (MyST) beside reStructuredText.
source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build', '_ext', 'Thumbs.db', '.DS_Store']

# MyST: heading anchors so that [text](page.md#section) links resolve and are checked.
# GitHub's slugs, so the same links work when the pages are read on a forge.
myst_heading_anchors = 3

myst_heading_slug_func = 'xfeldata_docs.github_slug'
myst_enable_extensions = ['colon_fence']

# No network: no intersphinx, no remote images, no linkcheck in the normal build.
intersphinx_mapping = {}

# Broken cross-references fail (-n); names of other projects that we cannot
# resolve without intersphinx are listed here instead of being silenced globally.
nitpicky = True
nitpick_ignore_regex = [
    # Types of other libraries (numpy, h5py, pandas, xarray, dask, toolz, attrs,
    # Python's standard library): no inventories without the network.
    (r'py:(class|obj|exc|func|meth|mod|data|attr)',
     r'(np|numpy|h5py|pd|pandas|xr|xarray|dask|distributed|toolz|attrs|attr|os|pathlib|'
     r'typing|collections|zmq|msgpack|io|datetime|zoneinfo|warnings|json|atexit|'
     r'hypothesis|matplotlib|tempfile|csv|argparse)(\..*)?'),
    # Private modules and names (a dotted part starting with "_"): docstrings may
    # point maintainers at them, but they are not part of the published reference.
    (r'py:(class|obj|exc|func|meth|mod|data|attr)', r'(.*\.)?_[A-Za-z][^.]*(\..*)?'),
    # Builtin types and the words numpydoc turns into references in type fields.
    (r'py:(class|obj|exc)',
     r'(int|float|str|bytes|bool|dict|list|tuple|set|frozenset|object|callable|'
     r'iterable|iterator|generator|sequence|mapping|array|array-like|array_like|'
     r'ndarray|optional|None|True|False|default|Path|PathLike|slice|type|'
     r'Exception|KeyError|ValueError|TypeError|IndexError|OSError|RuntimeError|'
     r'FileNotFoundError|PermissionError|NotImplementedError|AttributeError|'
     r'UserWarning|DeprecationWarning|Warning|BaseException|AssertionError|'
     r'StopIteration|Ellipsis|NamedTuple|Any|Iterable|Iterator|Sequence|Mapping|'
     r'Callable|Union|Optional|or|of|and|a|an|the|shape|dtype|file|path|'
     r'datetime64|uint64|int64|float64|bool_|DataFrame|Series|DataArray|Dataset|'
     r'Array|Delayed|Client|Future|Interval|Timestamp)'),
]

# numpydoc: no autosummary tables of every member (autodoc lists them).
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()

autodoc_default_options = {
    'members': True,
    'undoc-members': False,
    'show-inheritance': True,
    'member-order': 'bysource',
}
autodoc_typehints = 'none'
autodoc_inherit_docstrings = False

html_theme = 'alabaster'
html_static_path = []
html_title = f'xfeldata {release}'
html_show_sourcelink = False
