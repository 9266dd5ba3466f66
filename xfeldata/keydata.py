"""KeyData: one key of one source, over the selected trains.

A KeyData is a frozen record: the records of the files holding its source
(tier 0 + that source's INDEX + the key's catalogue entry) and the selected
train IDs. Its properties answer from those records; reading is a method that
builds a :class:`~xfeldata.core.plan.ReadPlan` and executes it.
"""
from __future__ import annotations

import attrs
import numpy as np

from ._sections import SectionTests
from .core import plan as _plan
from .core.records import readonly
from .core.selection import files_in_use
from .core.trains import select_train_ids, split_trains as _split_slices
from .exceptions import NoDataError

__all__ = ['KeyData']


@attrs.frozen(eq=False)
class KeyData(SectionTests):
    """Data for one key of one source (EXtra-data's ``KeyData``)."""
    source: str
    key: str
    section: str
    _files: tuple = attrs.field(repr=False)       # FileIndex records holding the source
    _sindex: tuple = attrs.field(repr=False)      # SourceFileIndex per file (same order)
    _info: object = attrs.field(repr=False)       # KeyInfo from the first file
    _train_ids: np.ndarray = attrs.field(repr=False)
    inc_suspect_trains: bool = True
    is_single_run: bool = False

    # -- identity ------------------------------------------------------------
    def _ident(self):
        # As SourceData: the files holding selected data, not a kept fallback.
        held = files_in_use(self._files, None, self._train_ids, self.inc_suspect_trains,
                            fallback=False)
        return (self.source, self.key, self.section, held,
                self._train_ids.tobytes(), self.inc_suspect_trains)

    def __eq__(self, other):
        return isinstance(other, KeyData) and self._ident() == other._ident()

    def __hash__(self):
        return hash(self._ident())

    def __repr__(self):
        sect = f" [section={self.section}]" if self.section not in ('CONTROL', 'INSTRUMENT') else ''
        return (f"<xfeldata.KeyData{sect} source={self.source!r} key={self.key!r} "
                f"for {len(self._train_ids)} trains>")

    __iter__ = None

    def _evolve_trains(self, tids):
        tids = readonly(tids, np.uint64)
        keep = files_in_use(self._files, None, tids, self.inc_suspect_trains)
        if len(keep) != len(self._files):
            kept = {fi.path for fi in keep}
            pairs = [(fi, si) for fi, si in zip(self._files, self._sindex) if fi.path in kept]
            return attrs.evolve(self, files=tuple(p[0] for p in pairs),
                                sindex=tuple(p[1] for p in pairs), train_ids=tids)
        return attrs.evolve(self, train_ids=tids)

    # -- properties (answer from records, no I/O) -------------------------------
    @property
    def train_ids(self) -> list:
        return list(self._train_ids)

    @property
    def files(self) -> list:
        from .file_access import FileAccess
        return [FileAccess(fi.path, _cache_info=fi) for fi in self._files]

    @property
    def dtype(self) -> np.dtype:
        return self._info.dtype

    @property
    def entry_shape(self) -> tuple:
        return self._info.entry_shape

    @property
    def ndim(self) -> int:
        return len(self.entry_shape) + 1

    @property
    def index_group(self) -> str:
        return '' if self.section == 'CONTROL' else self.key.partition('.')[0]

    @property
    def hdf5_data_path(self) -> str:
        return f"/{self.section}/{self.source}/{self.key.replace('.', '/')}"

    def _file_key_indexes(self):
        g = self.index_group
        out = []
        for fi, si in zip(self._files, self._sindex):
            if g not in si.groups:
                continue
            firsts, counts = si.group(g)
            out.append(_plan.FileKeyIndex(fi.path, fi.train_ids, fi.valid, firsts, counts))
        return out

    def _counts_by_file(self) -> list:
        """Entries each file contributes to the selection (same order as _files)."""
        g = self.index_group
        out = []
        for fi, si in zip(self._files, self._sindex):
            if g not in si.groups:
                out.append(0)
                continue
            firsts, counts = si.group(g)
            fki = _plan.FileKeyIndex(fi.path, fi.train_ids, fi.valid, firsts, counts)
            out.append(int(_plan.counts_for_trains([fki], self._train_ids,
                                                   self.inc_suspect_trains).sum()))
        return out

    def _counts(self) -> np.ndarray:
        return _plan.counts_for_trains(self._file_key_indexes(), self._train_ids,
                                       self.inc_suspect_trains)

    @property
    def shape(self) -> tuple:
        return (int(self._counts().sum()),) + tuple(self.entry_shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def size_mb(self) -> float:
        return self.nbytes / 1e6

    @property
    def size_gb(self) -> float:
        return self.nbytes / 1e9

    @property
    def units(self):
        u = self._info.units_map
        sym = u.get('unitSymbol')
        if sym is None:
            return None
        prefix = u.get('metricPrefixSymbol', '')
        if prefix == 'u':
            prefix = 'μ'
        return prefix + sym

    @property
    def units_name(self):
        u = self._info.units_map
        name = u.get('unitName')
        if name is None:
            return None
        return u.get('metricPrefixName', '') + name

    @property
    def source_file_paths(self) -> list:
        """Paths of the real files holding the selected data.

        Answered from the index records for ordinary files; for a virtual
        overview file, the files its datasets map to (read once, memoised).
        """
        from pathlib import Path
        counts_by_file = self._counts_by_file()
        paths = [fi.path for fi, n in zip(self._files, counts_by_file) if n > 0]
        if self._info.is_virtual:
            from ._vds import virtual_source_files
            real = []
            for p in paths:
                real.extend(virtual_source_files(p, self.hdf5_data_path))
            paths = list(dict.fromkeys(real)) or paths
        return [Path(p) for p in paths]

    # -- counts and coordinates ------------------------------------------------
    def data_counts(self, labelled=True):
        """Entries per selected train (pandas Series by train ID, or a uint64 array)."""
        counts = self._counts()
        if not labelled:
            return counts
        import pandas as pd
        return pd.Series(counts.astype(np.int64),
                         index=pd.Index(self._train_ids, name='trainId'))

    def train_index_bounds(self, labelled=False):
        """(start, stop) of each selected train's entries in ``ndarray()`` output."""
        counts = self._counts().astype(np.int64)
        stop = np.cumsum(counts)
        start = stop - counts
        if not labelled:
            return start, stop
        import pandas as pd
        return pd.DataFrame({'start': start, 'stop': stop},
                            index=pd.Index(self._train_ids, name='trainId'))

    def attributes(self) -> dict:
        """The HDF5 attributes of this key (for control keys, the parent group's too)."""
        from ._tiers import h5file
        f = h5file(self._files[0])
        ds = f[self.hdf5_data_path]
        out = {}
        if self.section == 'CONTROL' and self.key.endswith('.value'):
            out.update(_decode_attrs(ds.parent.attrs))
        out.update(_decode_attrs(ds.attrs))
        return out

    def run_value(self, allow_multi_run=False):
        """The value of this key in the RUN section (control keys only)."""
        from .sourcedata import SourceData
        sd = SourceData(self.source, self.section, self._files, None, self._train_ids,
                        self.source, self.is_single_run, self.inc_suspect_trains)
        return sd.run_value(self.key, allow_multi_run=allow_multi_run)

    def train_id_coordinates(self) -> np.ndarray:
        return _plan.entry_train_ids(self._file_key_indexes(), self._train_ids,
                                     self.inc_suspect_trains)

    # -- plans and reading -----------------------------------------------------
    def plan(self, roi=()) -> _plan.ReadPlan:
        """The read plan for ``ndarray(roi=roi)`` (nothing is read)."""
        from .core.trains import roi_shape
        if not isinstance(roi, tuple):
            roi = (roi,)
        rshape = roi_shape(self.entry_shape, roi) if roi != () else None
        return _plan.plan_key(self._file_key_indexes(), self.hdf5_data_path, self.dtype,
                              self.entry_shape, self._train_ids, self.inc_suspect_trains,
                              roi=roi, roi_shape=rshape,
                              label=f"{self.source} {self.key}")

    def ndarray(self, roi=(), out=None, *, read_path=None) -> np.ndarray:
        """Load the selected data as a numpy array (``execute(self.plan(roi))``).

        ``read_path``: ``'auto'`` (default: compressed chunks decoded in
        threads where that gives exactly h5py's result), ``'h5py'`` or
        ``'direct'``; see :func:`xfeldata._execute.execute`.
        """
        from ._execute import execute
        return execute(self.plan(roi), out=out, read_path=read_path)

    def series(self):
        """The data as a pandas Series indexed by ``trainId`` (1-D data only).

        Named ``"<source>/<key>"`` (control ``.value`` stripped); a train with
        several entries appears several times in the index.

        Raises
        ------
        TypeError
            The entries are not single values (``ndim > 1``).
        """
        from ._outputs import keydata_series
        return keydata_series(self)

    def xarray(self, extra_dims=None, roi=(), name=None, extra_coords=None):
        """The data as an ``xarray.DataArray`` with a ``trainId`` coordinate.

        Dims ``('trainId', 'dim_0', ...)``; ``extra_dims`` renames the inner
        dims and, like ``extra_coords=True``, adds integer coordinates that
        follow ``roi`` (a dict ``extra_coords`` is merged in). Default name
        ``"<source>.<key>"`` (control ``.value`` stripped); ``attrs['units']``
        when known. A structured dtype gives an ``xarray.Dataset`` with one
        variable per field. See :func:`xfeldata._outputs.keydata_xarray`.
        """
        from ._outputs import keydata_xarray
        return keydata_xarray(self, extra_dims=extra_dims, roi=roi, name=name,
                              extra_coords=extra_coords)

    def dask_array(self, labelled=False):
        """The data as a lazy dask array built from this key's read plan.

        One task per bounded piece of the plan (dask's ``array.chunk-size``);
        tasks pickle small and reopen files through xfeldata's handle cache.
        ``labelled=True`` wraps it in a DataArray (``trainId``, ``dim_N``).
        Needs the ``dask`` extra (``pip install 'xfeldata[dask]'``).
        """
        from ._outputs import keydata_dask
        return keydata_dask(self, labelled=labelled)

    def _repr_html_(self):
        from ._outputs import keydata_html
        return keydata_html(self)

    # -- selection ---------------------------------------------------------------
    def select_trains(self, trains) -> 'KeyData':
        return self._evolve_trains(select_train_ids(self._train_ids, trains))

    def __getitem__(self, item):
        return self.select_trains(item)

    def split_trains(self, parts=None, trains_per_part=None):
        for s in _split_slices(len(self._train_ids), parts, trains_per_part):
            yield self._evolve_trains(self._train_ids[s])

    def drop_empty_trains(self) -> 'KeyData':
        return self._evolve_trains(self._train_ids[self._counts() > 0])

    # -- single trains -------------------------------------------------------------
    def train_from_id(self, train_id, keep_dims=False):
        """``(train ID, value)``: the entry if there is one (unless keep_dims), else a slice."""
        from ._iterate import key_train
        return key_train(self, train_id, keep_dims=keep_dims)

    def trains(self, keep_dims=False, include_empty=False):
        """Iterate ``(numpy.uint64 train ID, value)`` over the trains files hold.

        A count of 1 gives the entry (unless ``keep_dims``); more, or
        ``keep_dims``, a slice; a count of 0 is skipped unless
        ``include_empty`` (value None). Read in bulk, a batch of trains at a
        time (:mod:`xfeldata._iterate`).
        """
        from ._iterate import iterate_key_trains
        return iterate_key_trains(self, keep_dims=keep_dims, include_empty=include_empty)

    def train_from_index(self, i, keep_dims=False):
        tid = self._train_ids[i]
        return self.train_from_id(tid, keep_dims=keep_dims)

    def as_single_value(self, rtol=1e-5, atol=0.0, reduce_by=None):
        """The one value this key has over the selection, checked to be constant."""
        arr = self.ndarray()
        if len(arr) == 0:
            raise NoDataError(self.source, self.key)
        if arr.dtype.kind not in 'biufc':
            if reduce_by not in (None, 'median', 'first'):
                raise TypeError("reduce_by is only supported for numeric data")
            first = arr[0]
            if not all(_same(first, v) for v in arr[1:]):
                raise ValueError(f"{self.source} {self.key}: values are not all identical")
            return first
        if reduce_by is None or reduce_by == 'median':
            value = np.median(arr, axis=0)
        elif reduce_by == 'first':
            value = arr[0]
        elif callable(reduce_by):
            value = reduce_by(arr)
        elif isinstance(reduce_by, str) and hasattr(np, reduce_by):
            value = getattr(np, reduce_by)(arr, axis=0)
        else:
            raise ValueError(f"Unknown reduce_by method {reduce_by!r}")
        if not np.allclose(arr, value, rtol=rtol, atol=atol):
            adev = np.max(np.abs(arr - value))
            with np.errstate(divide='ignore', invalid='ignore'):
                rdev = np.max(np.abs((arr - value) / value))
            raise ValueError(f"{self.source} {self.key}: values are not constant within "
                             f"rtol={rtol}, atol={atol} (max absolute deviation {adev}, "
                             f"max relative deviation {rdev} from {value})")
        return value


def _decode_attrs(attrs) -> dict:
    out = {}
    for k, v in attrs.items():
        if isinstance(v, bytes):
            v = v.decode('utf-8', 'surrogateescape')
        out[k] = v
    return out


def _same(a, b):
    try:
        return bool(np.all(a == b))
    except Exception:
        return a is b
