"""List every dataset of an HDF5 file (deprecated; use ``xfeldata ls --detail``).

EXtra-data had this module until 1.9 (deprecated in 1.7). xfeldata keeps a
small version so old scripts and notebooks still run; every call warns with a
:class:`DeprecationWarning`. To look at the data of a run or file, use
``xfeldata ls --detail PATTERN PATH``, or :meth:`xfeldata.reader.DataCollection.info`
and :meth:`xfeldata.sourcedata.SourceData.keys` in Python.

A dataset is listed once under the name through which HDF5's object visit
first reaches it: soft and external links are not followed (so EuXFEL's
legacy source names, which are soft links, do not appear twice), and a
dataset with several hard links appears once. This is exactly what
``h5py.Group.visititems`` visits.

Examples
--------
>>> import tempfile, os, warnings, h5py
>>> path = os.path.join(tempfile.mkdtemp(), 'f.h5')
>>> with h5py.File(path, 'w') as f:
...     _ = f.create_dataset('INDEX/trainId', data=[1, 2, 3], dtype='u8')
...     _ = f.create_dataset('METADATA/runNumber', data=7, dtype='u4')
>>> with warnings.catch_warnings():
...     warnings.simplefilter('ignore', DeprecationWarning)
...     h5index(path)
[('/INDEX/trainId', (3,), dtype('uint64')), ('/METADATA/runNumber', (), dtype('uint32'))]
"""
from __future__ import annotations

import argparse
import csv
import sys
import warnings

import h5py
import numpy as np

from ._scan import open_h5
from .exceptions import FileOpenError

__all__ = ['h5index', 'main']

_DEPRECATION = ("xfeldata.h5index is deprecated (EXtra-data removed it in 1.9); "
                "use `xfeldata ls --detail PATTERN PATH` to list the keys, shapes and "
                "dtypes of a run or file")


def _warn(stacklevel=3):
    warnings.warn(_DEPRECATION, DeprecationWarning, stacklevel=stacklevel)


def _datasets(f: h5py.File) -> list:
    """(path, shape, dtype) of every dataset, by HDF5's object visit (low level)."""
    found = []

    def visit(name, info):
        if info.type == h5py.h5o.TYPE_DATASET:
            ds = h5py.h5d.open(f.id, name)
            space = ds.get_space()
            shape = (None if space.get_simple_extent_type() == h5py.h5s.NULL
                     else tuple(int(n) for n in space.shape))
            found.append(('/' + name.decode('utf-8', 'surrogateescape'), shape, ds.dtype))

    # h5o.visit calls back once per object (not per link) and does not follow
    # soft or external links; the root itself is reported as b'.'.
    h5py.h5o.visit(f.id, visit, info=True)
    found.sort(key=lambda t: t[0])
    return found


def h5index(path) -> list:
    """List the datasets of an HDF5 file (deprecated).

    Parameters
    ----------
    path : str or os.PathLike
        An HDF5 file, opened read-only.

    Returns
    -------
    list of tuple
        ``(path, shape, dtype)`` per dataset, sorted by path: the absolute
        HDF5 path (``str``), the shape (``tuple`` of ``int``; ``()`` for a
        scalar, ``None`` for a dataset with a null dataspace) and the
        :class:`numpy.dtype`.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    xfeldata.exceptions.FileOpenError
        The file is not HDF5, or is truncated or damaged.

    Warns
    -----
    DeprecationWarning
        Always: use ``xfeldata ls --detail`` instead.
    """
    _warn()
    with open_h5(path) as f:
        return _datasets(f)


def _shape_text(shape) -> str:
    return 'null' if shape is None else 'x'.join(str(n) for n in shape)


def main(argv=None) -> int:
    """Print ``path,shape,dtype`` CSV rows for every dataset of a file (deprecated).

    The shape is written as the lengths joined by ``x`` (``100x1000``; empty
    for a scalar, ``null`` for a null dataspace); the dtype as numpy's
    ``dtype.str`` for simple types (``<u8``), ``vlen str`` / ``vlen bytes``
    for variable-length strings and the ``repr`` form otherwise.
    Returns 0, or 1 (with a message on stderr) when the file cannot be read.
    """
    ap = argparse.ArgumentParser(
        prog='python -m xfeldata.h5index',
        description='List every dataset of an HDF5 file as CSV (path,shape,dtype). '
                    'Deprecated: use `xfeldata ls --detail` instead.')
    ap.add_argument('path', help='an HDF5 file')
    args = ap.parse_args(argv)
    _warn(stacklevel=2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            rows = h5index(args.path)
    except FileNotFoundError:
        print(f"h5index: no such file: {args.path}", file=sys.stderr)
        return 1
    except (FileOpenError, PermissionError) as e:
        print(f"h5index: {e}", file=sys.stderr)
        return 1
    w = csv.writer(sys.stdout, lineterminator='\n')
    w.writerow(['path', 'shape', 'dtype'])
    for name, shape, dtype in rows:
        w.writerow([name, _shape_text(shape), _dtype_text(dtype)])
    return 0


def _dtype_text(dtype: np.dtype) -> str:
    vlen = h5py.check_vlen_dtype(dtype)
    if vlen is not None:
        return f"vlen {vlen.__name__ if isinstance(vlen, type) else vlen}"
    if dtype.fields is None and dtype.subdtype is None and dtype.metadata is None:
        return dtype.str
    return repr(dtype)


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
