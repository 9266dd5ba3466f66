"""xfeldata: European XFEL run data as immutable selections and inspectable read plans.

A drop-in for EXtra-data's public API (``import xfeldata as extra_data``-style
compatibility: same names, same module paths)::

    from xfeldata import open_run, RunDirectory, H5File, by_id, by_index
"""
from ._version import __version__
from .core.trains import by_id, by_index
from .exceptions import (AliasError, MultiRunError, PropertyNameError,
                         SourceNameError, TrainIDError)
from .file_access import FileAccess
from .keydata import KeyData
from .reader import DataCollection, H5File, RunDirectory, open_run
from .sourcedata import SourceData
from . import (aliases, exceptions, file_access, keydata, locality, read_machinery,
               reader, recipes, run_files_map, sourcedata, utils)

# Imported on first use: ``xfeldata.voview`` still works as an attribute, but
# ``python -m xfeldata.voview`` does not find the module imported already
# (runpy would warn), and ``import xfeldata`` does not load the writers.
_LAZY_SUBMODULES = frozenset({'voview'})


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        import importlib
        return importlib.import_module(f'{__name__}.{name}')
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    'H5File', 'RunDirectory', 'open_run', 'FileAccess', 'DataCollection',
    'by_id', 'by_index', 'SourceNameError', 'PropertyNameError',
    'SourceData', 'KeyData',
]

try:  # stacking arrives with the detectors issue
    from .stacking import stack_data, stack_detector_data  # noqa: F401
    __all__ += ['stack_data', 'stack_detector_data']
except ImportError:
    pass
