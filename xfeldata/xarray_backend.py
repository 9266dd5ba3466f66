"""An xarray backend: ``xr.open_dataset(run_dir, engine="xfeldata", source=...)``.

Opens one source of a run (a run folder, one EuXFEL HDF5 file, or an open
DataCollection) as an :class:`xarray.Dataset` on a ``trainId`` dimension: one
variable per key holding a single value per entry (control keys without
``.value``; ``.timestamp`` keys with ``timestamps=True``). The ``trainId``
coordinate is the union of the train IDs where those keys have data; a key
without data in some of them is NaN there (integers become float64), as in
``DataCollection.get_dataframe``.

Loading is lazy. Opening reads only the index; each variable is read when
its values are used, and indexing a variable first (``ds.x[:10]``) reads just
those trains. Keys that cannot be put on ``trainId`` (entries with more than
one value, structured dtypes, or several entries in a train) are left out and
listed in ``ds.attrs['skipped_keys']``.

Registered under the ``xarray.backends`` entry point ``xfeldata``
(pyproject.toml). ``guess_can_open`` always answers False: a run folder is
opened with this backend only when asked for by name.
"""
from __future__ import annotations

import fnmatch
import os
import warnings

import numpy as np
from xarray.backends import BackendArray, BackendEntrypoint
from xarray.core import indexing

__all__ = ['XfeldataBackendEntrypoint', 'open_source_dataset']


class _KeyArray(BackendArray):
    """One key laid out on the dataset's trainId axis; reads only the trains asked for."""

    def __init__(self, kd, train_ids, positions, dtype):
        self.kd = kd                        # picklable: records, no open files
        self.train_ids = train_ids          # the dataset's trainId coordinate
        self.positions = positions          # where each of the key's entries goes in it
        self.shape = (len(train_ids),)
        self.dtype = np.dtype(dtype)

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self._raw_getitem)

    def _raw_getitem(self, key):
        (k,) = key
        wanted = np.arange(self.shape[0])[k]
        flat = np.atleast_1d(wanted)
        from ._outputs import fill_gaps
        complete = len(self.positions) == len(self.train_ids)
        if complete and len(flat) == len(self.train_ids):
            # Every train has an entry and all are wanted: one plain read.
            values = self.kd.ndarray()
            if not np.array_equal(self.positions, np.arange(len(self.positions))):
                entry_of = np.empty(len(self.positions), np.int64)
                entry_of[self.positions] = np.arange(len(self.positions))
                values = values[entry_of]
            return values[k]
        entry_of = np.full(len(self.train_ids), -1, np.int64)
        entry_of[self.positions] = np.arange(len(self.positions))
        have = entry_of[flat] >= 0
        out = (np.empty(len(flat), self.dtype) if complete else
               fill_gaps(np.zeros(0, self.kd.dtype), np.zeros(0, np.int64), len(flat)))
        if have.any():
            from .core.trains import by_id
            tids = self.train_ids[flat[have]]
            sub = self.kd.select_trains(by_id[np.unique(tids)])
            values = sub.ndarray()
            got = sub.train_id_coordinates()
            order = np.argsort(got, kind='stable')
            out[have] = values[order[np.searchsorted(got[order], tids)]]
        return out.reshape(np.shape(wanted))


def _open_collection(obj, inc_suspect_trains):
    from .reader import DataCollection, H5File, RunDirectory
    if isinstance(obj, DataCollection):
        return obj
    path = os.fspath(obj)
    if os.path.isdir(path):
        return RunDirectory(path, inc_suspect_trains=inc_suspect_trains)
    return H5File(path, inc_suspect_trains=inc_suspect_trains)


def open_source_dataset(obj, source=None, keys='*', *, timestamps=False,
                        inc_suspect_trains=True, drop_variables=None):
    """One source as a lazily loaded ``xarray.Dataset`` on ``trainId``.

    Parameters
    ----------
    obj : str, os.PathLike or DataCollection
        A run folder, an EuXFEL HDF5 file or an open collection.
    source : str, optional
        The source; may be left out when the data has exactly one.
    keys : str, optional
        A glob for the keys to consider (default all).
    timestamps : bool
        Include control ``.timestamp`` keys (as ``<key>.timestamp``).
    inc_suspect_trains : bool
        Passed on when opening a path.
    drop_variables : str or iterable of str, optional
        Variable names to leave out.

    Returns
    -------
    xarray.Dataset

    Examples
    --------
    >>> import tempfile, xarray as xr
    >>> from xfeldata.testing import make_demo_run
    >>> d = tempfile.mkdtemp(); _ = make_demo_run(d)
    >>> ds = open_source_dataset(d, 'SPB_IRU_MOTORS/MOTOR/X')
    >>> ds['actualPosition'].dims, ds.sizes['trainId']
    (('trainId',), 100)
    """
    import xarray as xr
    from ._outputs import gap_dtype, strip_value
    dc = _open_collection(obj, inc_suspect_trains)
    if source is None:
        if len(dc.all_sources) != 1:
            raise ValueError("open_dataset(engine='xfeldata') needs source=...; the data has "
                             f"{len(dc.all_sources)} sources")
        source = next(iter(dc.all_sources))
    sd = dc[source]
    if isinstance(drop_variables, str):
        drop_variables = [drop_variables]
    drop = set(drop_variables or ())
    chosen, skipped = [], []
    for key in sorted(sd.keys()):
        name = strip_value(key, sd.section)
        if not fnmatch.fnmatchcase(key, keys) and not fnmatch.fnmatchcase(name, keys):
            continue
        if sd.section == 'CONTROL' and key.endswith('.timestamp') and not timestamps:
            continue
        if name in drop:
            continue
        kd = sd[key]
        if kd.entry_shape != () or kd.dtype.names or kd.data_counts(labelled=False).max(
                initial=0) > 1:
            skipped.append(key)
            continue
        chosen.append((name, kd))
    coords = {}
    for _, kd in chosen:
        if kd.index_group not in coords:
            coords[kd.index_group] = kd.train_id_coordinates()
    union = (np.unique(np.concatenate(list(coords.values()))).astype(np.uint64)
             if coords else np.zeros(0, np.uint64))
    variables = {}
    for name, kd in chosen:
        c = coords[kd.index_group]
        dtype = kd.dtype if len(c) == len(union) else gap_dtype(kd.dtype)
        lazy = indexing.LazilyIndexedArray(
            _KeyArray(kd, union, np.searchsorted(union, c), dtype))
        attrs = {}
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            units = kd.units
        if units:
            attrs['units'] = units
        variables[name] = xr.Variable(('trainId',), lazy, attrs=attrs)
    ds = xr.Dataset(variables, coords={'trainId': union},
                    attrs={'source': source, 'skipped_keys': skipped})
    ds.set_close(None)      # handles belong to xfeldata's shared cache
    return ds


class XfeldataBackendEntrypoint(BackendEntrypoint):
    """``engine="xfeldata"``: one source of a European XFEL run as a Dataset on trainId."""

    description = "One source of a European XFEL run (xfeldata) as a Dataset on trainId"
    open_dataset_parameters = ('filename_or_obj', 'drop_variables', 'source', 'keys',
                               'timestamps', 'inc_suspect_trains')

    def open_dataset(self, filename_or_obj, *, drop_variables=None, source=None, keys='*',
                     timestamps=False, inc_suspect_trains=True):
        return open_source_dataset(filename_or_obj, source, keys, timestamps=timestamps,
                                   inc_suspect_trains=inc_suspect_trains,
                                   drop_variables=drop_variables)

    def guess_can_open(self, filename_or_obj):
        # Run folders hold ordinary HDF5 files other engines also claim; only
        # an explicit engine="xfeldata" should pick this one.
        return False
