"""Effects: labelled outputs built from read plans (xarray, pandas, dask, VDS, HTML).

Every builder here starts from a :class:`~xfeldata.core.plan.ReadPlan` (or a
KeyData, which makes one) and adds labels: train ID coordinates, dimension
names, units, column names. Nothing here decides *what* to read; that is the
plan's job. The face methods (``KeyData.xarray``, ``DataCollection.get_dataframe``,
...) are one-line delegations to the functions below.

pandas and xarray are core dependencies but are imported inside the functions,
so ``import xfeldata`` stays fast; dask is optional (the ``dask`` extra) and is
imported only when a dask array is asked for.
"""
from __future__ import annotations

import hashlib
import html
import os
import tempfile
import warnings
from itertools import chain

import numpy as np

from .core.selection import strip_value
from .core.plan import ReadPlan, ReadStep, partition  # noqa: F401 - ReadStep: doctests

__all__ = ['keydata_xarray', 'keydata_series', 'keydata_dask', 'dask_from_plan',
           'partition_plan', 'dataframe', 'virtual_dataset', 'roi_axes', 'fill_gaps',
           'gap_dtype', 'collection_html', 'keydata_html', 'plan_html', 'require_dask']

#: Bytes per dask chunk when dask's ``array.chunk-size`` setting cannot be read.
DEFAULT_DASK_CHUNK_BYTES = 128 << 20


# -- names ---------------------------------------------------------------------------------

def _units(kd):
    # Units are only a label: a problem reading them must not lose the data.
    try:
        return kd.units
    except Exception as e:  # noqa: BLE001 - any failure is reported, none is fatal
        warnings.warn(f"Could not read the units of {kd.source} {kd.key}: {e}", stacklevel=4)
        return None


def _unwrap_roi(roi) -> tuple:
    from .core.trains import by_index
    if isinstance(roi, by_index):
        roi = roi.value
    return roi if isinstance(roi, tuple) else (roi,)


# -- the region of interest as coordinates -------------------------------------------------

def _is_int(r) -> bool:
    return isinstance(r, (int, np.integer)) and not isinstance(r, (bool, np.bool_))


def roi_axes(entry_shape, roi):
    """Which entry axis each output axis comes from, and its integer coordinates.

    Returns a list with one ``(entry axis, coordinate array)`` per axis of the
    entry after ``roi``, or None when the roi does not act axis by axis (a new
    axis, several index arrays, multi-dimensional arrays, or an array and an
    integer apart from each other, which numpy moves to the front).

    Examples
    --------
    >>> [(ax, c.tolist()) for ax, c in roi_axes((4, 6), np.s_[1, 2:5])]
    [(1, [2, 3, 4])]
    >>> [(ax, c.tolist()) for ax, c in roi_axes((4, 6), (..., [5, -1]))]
    [(0, [0, 1, 2, 3]), (1, [5, 5])]
    >>> roi_axes((4, 6), np.s_[None, :]) is None
    True
    """
    roi = tuple(roi)
    if any(r is None for r in roi) or sum(r is Ellipsis for r in roi) > 1:
        return None
    if Ellipsis in roi:
        k = roi.index(Ellipsis)
        roi = roi[:k] + (slice(None),) * (len(entry_shape) - len(roi) + 1) + roi[k + 1:]
    if len(roi) > len(entry_shape):
        return None
    roi = roi + (slice(None),) * (len(entry_shape) - len(roi))
    out, advanced, n_arrays = [], [], 0
    for axis, (r, n) in enumerate(zip(roi, entry_shape)):
        if isinstance(r, slice):
            out.append((axis, np.arange(n)[r]))
            continue
        if _is_int(r):
            advanced.append(axis)    # the axis is dropped
            continue
        a = np.asarray(r)
        if a.ndim == 0 and a.dtype.kind in 'iu':
            advanced.append(axis)
            continue
        if a.ndim != 1 or a.dtype.kind not in 'iub':
            return None
        if a.dtype.kind == 'b':
            if len(a) != n:
                return None
            a = np.flatnonzero(a)
        n_arrays += 1
        advanced.append(axis)
        out.append((axis, np.arange(n)[a]))
    if n_arrays > 1:
        return None
    if n_arrays and advanced != list(range(advanced[0], advanced[-1] + 1)):
        return None
    return out


def _inner_dims(extra_dims, entry_shape, axes, n_inner) -> list:
    if extra_dims is None:
        return [f'dim_{i}' for i in range(n_inner)]
    extra_dims = list(extra_dims)
    if len(extra_dims) == n_inner:
        return extra_dims
    # Names given for the entry's axes: the axes an integer roi removed go too.
    if axes is not None and len(extra_dims) == len(entry_shape):
        return [extra_dims[axis] for axis, _ in axes]
    raise ValueError(f"extra_dims has {len(extra_dims)} names; expected {n_inner} (one per "
                     f"dimension of an entry after the roi) or {len(entry_shape)} (one per "
                     "dimension of a stored entry)")


# -- xarray and pandas ---------------------------------------------------------------------

def keydata_xarray(kd, extra_dims=None, roi=(), name=None, extra_coords=None):
    """``KeyData.xarray``: a DataArray (or a Dataset for structured data) on trainId.

    Parameters
    ----------
    kd : KeyData
    extra_dims : sequence of str, optional
        Names of the inner dimensions (default ``dim_0``, ``dim_1``, ...): one
        per dimension of an entry after ``roi``, or one per dimension of the
        stored entry (those an integer in ``roi`` removes are dropped). Giving
        names also adds integer coordinates, as ``extra_coords=True`` does.
    roi : index expression or by_index, optional
        Per-entry region of interest.
    name : str, optional
        Default ``"<source>.<key>"`` (control ``.value`` stripped).
    extra_coords : bool or dict, optional
        True: integer coordinates of the inner dimensions, following ``roi``.
        A dict: coordinates merged over those.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        A Dataset with one variable per field for a structured dtype (``name``
        is then not used; a field's own sub-array dimensions are named
        ``<field>_dim_<n>``).
    """
    import xarray as xr
    roi = _unwrap_roi(roi)
    arr = kd.ndarray(roi=roi)
    n_inner = arr.ndim - 1
    axes = roi_axes(kd.entry_shape, roi)
    if axes is not None and (len(axes) != n_inner or any(
            len(c) != n for (_, c), n in zip(axes, arr.shape[1:]))):
        axes = None
    dims = _inner_dims(extra_dims, kd.entry_shape, axes, n_inner)
    coords = {'trainId': kd.train_id_coordinates()}
    if extra_dims is not None or extra_coords:
        if axes is not None:
            coords.update({d: c for d, (_, c) in zip(dims, axes)})
        if isinstance(extra_coords, dict):
            coords.update(extra_coords)
    attrs_ = {}
    units = _units(kd)
    if units:
        attrs_['units'] = units
    if arr.dtype.names:
        data_vars = {}
        for field in arr.dtype.names:
            values = arr[field]
            sub = [f'{field}_dim_{i}' for i in range(values.ndim - arr.ndim)]
            data_vars[field] = (['trainId'] + dims + sub, values)
        return xr.Dataset(data_vars, coords=coords, attrs=attrs_)
    if name is None:
        name = f"{kd.source}.{strip_value(kd.key, kd.section)}"
    return xr.DataArray(arr, dims=['trainId'] + dims, coords=coords, name=name, attrs=attrs_)


def keydata_series(kd):
    """``KeyData.series``: a pandas Series indexed by trainId, named ``source/key``."""
    import pandas as pd
    if kd.ndim > 1:
        raise TypeError(f"series() only works for 1-D data (one value per entry); "
                        f"{kd.source} {kd.key} has entry shape {kd.entry_shape}")
    name = kd.source + '/' + strip_value(kd.key, kd.section)
    index = pd.Index(kd.train_id_coordinates(), name='trainId')
    return pd.Series(kd.ndarray(), index=index, name=name)


def gap_dtype(dtype) -> np.dtype:
    """The dtype of a column once missing trains are filled in (as pandas does).

    Examples
    --------
    >>> gap_dtype(np.dtype('u4')), gap_dtype(np.dtype('f4')), gap_dtype(np.dtype(bool))
    (dtype('float64'), dtype('float32'), dtype('O'))
    """
    dtype = np.dtype(dtype)
    if dtype.kind in 'iu':
        return np.dtype(np.float64)
    if dtype.kind in 'fcmM':
        return dtype
    return np.dtype(object)


def fill_gaps(values, positions, n) -> np.ndarray:
    """``values`` placed at ``positions`` of a new length-``n`` array, missing elsewhere.

    Missing is NaN (NaT for times); integer data becomes float64 and booleans
    objects, the same dtypes a pandas reindex gives.

    Examples
    --------
    >>> fill_gaps(np.array([1, 2], np.int32), np.array([0, 2]), 3).tolist()
    [1.0, nan, 2.0]
    """
    values = np.asarray(values)
    dtype = gap_dtype(values.dtype)
    out = np.empty((n,) + values.shape[1:], dtype)
    out[...] = np.datetime64('NaT') if dtype.kind == 'M' else (
        np.timedelta64('NaT') if dtype.kind == 'm' else np.nan)
    out[positions] = values
    return out


def dataframe(dc, fields=None, *, timestamps=False):
    """``DataCollection.get_dataframe``: one column per selected 1-D key, rows by trainId.

    Columns are named ``source/key`` (control ``.value`` stripped; control
    ``.timestamp`` keys only with ``timestamps=True``). Keys are joined on
    their train IDs (an outer join): trains where a key has no entry are NaN.
    A legacy source name is skipped when its canonical name is selected too,
    so the data are not there twice.

    Raises
    ------
    TypeError
        A selected key has more than one value per entry.
    ValueError
        No key is selected (e.g. a source that only has RUN values), or keys
        with several entries per train would have to be joined with others.
    """
    import pandas as pd
    if fields is not None:
        dc = dc.select(fields)
    legacy = dc._index.legacy_sources
    columns = []     # (column name, KeyData, group)
    for src in sorted(dc.all_sources):
        if src in legacy and legacy[src] in dc.all_sources:
            continue
        sd = dc._source_data(src, warn=False)
        for key in sorted(sd.keys()):
            if sd.section == 'CONTROL' and key.endswith('.timestamp') and not timestamps:
                continue
            kd = sd[key]
            if kd.ndim != 1:
                raise TypeError(
                    f"get_dataframe needs one value per entry, but {src} {key} has entries "
                    f"of shape {kd.entry_shape}: deselect it, or use get_array() for it")
            columns.append((f"{src}/{strip_value(key, sd.section)}", kd, (src, kd.index_group)))
    if not columns:
        raise ValueError("get_dataframe: no keys selected to make columns from (sources with "
                         "only RUN values have none)")
    # Keys of one source and index group share their train ID coordinates.
    coords = {}
    for _, kd, group in columns:
        if group not in coords:
            coords[group] = kd.train_id_coordinates()
    first = next(iter(coords.values()))
    if all(len(c) == len(first) and np.array_equal(c, first) for c in coords.values()):
        index, positions = first, {}
    else:
        index, positions = _join_index(coords)
    data = {}
    for col, kd, group in columns:
        values = kd.ndarray()
        pos = positions.get(group)
        if pos is not None and len(pos) != len(index):
            values = fill_gaps(values, pos, len(index))
        data[col] = values
    return pd.DataFrame(data, index=pd.Index(index, name='trainId'))


def _join_index(coords):
    """Sorted union of unique train IDs and where each group's entries go in it."""
    for (src, group), c in coords.items():
        if len(np.unique(c)) != len(c):
            where = src if group == '' else f"{src} (index group {group!r})"
            raise ValueError(
                f"get_dataframe: {where} has several entries in some trains, so its keys "
                "cannot be joined on trainId with keys that have other trains; select "
                "them on their own")
    index = np.unique(np.concatenate(list(coords.values()))).astype(np.uint64)
    return index, {g: np.searchsorted(index, c) for g, c in coords.items()}


# -- dask ----------------------------------------------------------------------------------

#: Largest number of tasks a dask array is cut into (chunks grow beyond the setting instead).
MAX_DASK_TASKS = 10_000


def require_dask():
    """``dask.array``, or an ImportError saying how to install it."""
    try:
        import dask.array as da
    except ImportError as e:
        raise ImportError("dask arrays need dask, an optional dependency of xfeldata: "
                          "pip install 'xfeldata[dask]' (or pip install 'dask[array]')"
                          ) from e
    return da


def _chunk_bytes() -> int:
    try:
        import dask.config
        from dask.utils import parse_bytes
        value = dask.config.get('array.chunk-size')
        return int(parse_bytes(value) if isinstance(value, str) else value)
    except Exception:  # noqa: BLE001 - a missing or odd setting falls back to the default
        return DEFAULT_DASK_CHUNK_BYTES


#: The old private name of :func:`xfeldata.core.plan.partition` (the writer uses it).
partition_plan = partition


def _read_piece(plan, records=()):
    """Dask task: read one piece of a plan (in any process).

    ``records`` are the pieces' files' index records: registering them first
    lets a fresh worker open the files through xfeldata's handle cache
    without scanning their indexes again.
    """
    from ._execute import execute
    from ._tiers import h5file
    for fi in records:
        h5file(fi)
    return execute(plan)


def _plan_token(plan: ReadPlan, records) -> str:
    """A digest naming the plan's dask graph: equal plans of unchanged files, equal names.

    dask's ``tokenize`` walks every step as a Python tuple (about 0.2 s for
    25,000 steps); hashing the row numbers as one array takes milliseconds.
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((plan.dtype.str, plan.shape, plan.roi,
                   sorted((fi.path, fi.size, fi.mtime) for fi in records))).encode())
    names = {}
    where = np.fromiter((names.setdefault((s.path, s.dataset), len(names)) for s in plan.steps),
                        np.int64, len(plan.steps))
    rows = np.fromiter(chain.from_iterable(s[2:6] for s in plan.steps), np.int64,
                       4 * len(plan.steps))
    h.update(repr(list(names)).encode())
    h.update(where.tobytes())
    h.update(rows.tobytes())
    return h.hexdigest()


def dask_from_plan(plan: ReadPlan, records=(), chunk_bytes=None):
    """A dask array that executes ``plan`` lazily, one task per bounded piece.

    Parameters
    ----------
    plan : ReadPlan
    records : sequence of FileIndex, optional
        Index records of the plan's files, sent with the tasks that read them.
    chunk_bytes : int, optional
        Bytes per chunk; default dask's ``array.chunk-size`` setting.

    Returns
    -------
    dask.array.Array
        Zeros of shape ``(0,) + entry shape`` when the plan reads nothing.
        Tasks are picklable (a module function, a ReadPlan, records).
    """
    da = require_dask()
    if not plan.steps or plan.shape[0] == 0:
        # One (empty) chunk: dask cannot size chunks automatically for object data.
        return da.zeros(plan.shape, dtype=plan.dtype, chunks=-1)
    from dask.highlevelgraph import HighLevelGraph
    # At most about MAX_DASK_TASKS pieces, however large the key (dask's advice).
    size = max(chunk_bytes or _chunk_bytes(), -(-plan.nbytes // MAX_DASK_TASKS))
    pieces = partition(plan, size)
    by_path = {fi.path: fi for fi in records}
    name = 'xfeldata-read-' + _plan_token(plan, records)
    inner = (0,) * (len(plan.shape) - 1)
    dsk = {}
    for i, piece in enumerate(pieces):
        recs = tuple(by_path[p] for p in dict.fromkeys(s.path for s in piece.steps)
                     if p in by_path)
        dsk[(name, i) + inner] = (_read_piece, piece, recs)
    chunks = (tuple(p.shape[0] for p in pieces),) + tuple((n,) for n in plan.shape[1:])
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    meta = np.empty((0,) * len(plan.shape), dtype=plan.dtype)
    return da.Array(graph, name, chunks, meta=meta)


def keydata_dask(kd, labelled=False):
    """``KeyData.dask_array``: the key's data as a lazy dask array (or DataArray)."""
    arr = dask_from_plan(kd.plan(), records=kd._files)
    if not labelled:
        return arr
    import xarray as xr
    dims = ['trainId'] + [f'dim_{i}' for i in range(arr.ndim - 1)]
    attrs_ = {}
    units = _units(kd)
    if units:
        attrs_['units'] = units
    return xr.DataArray(arr, dims=dims, coords={'trainId': kd.train_id_coordinates()},
                        name=f"{kd.source}.{strip_value(kd.key, kd.section)}", attrs=attrs_)


# -- virtual datasets ----------------------------------------------------------------------

def virtual_dataset(kd, filename=None):
    """``DataCollection.get_virtual_dataset``: a VDS of the key's selected rows.

    The virtual dataset has the path of the key in its source files and maps
    the rows of each read step to them (absolute file names). Without
    ``filename`` a temporary file ``*-karabo-data-vds.h5`` is made and left in
    place (the returned dataset reads through it).

    Returns
    -------
    h5py.Dataset
        Opened read-only.
    """
    import h5py
    from ._execute import _check_length, _missing
    from ._tiers import h5file
    plan = kd.plan()
    first = h5file(kd._files[0]).get(kd.hdf5_data_path)
    # The stored dtype keeps h5py's metadata (variable-length strings), which
    # the decoded dtype of plans (object) does not.
    dtype = first.dtype if isinstance(first, h5py.Dataset) else plan.dtype
    layout = h5py.VirtualLayout(shape=plan.shape, dtype=dtype)
    sources = {}
    for s in plan.steps:
        vs = sources.get(s.path)
        if vs is None:
            ds = h5file(s.path).get(s.dataset)
            if not isinstance(ds, h5py.Dataset):
                raise _missing(s.path, s.dataset)
            vs = sources[s.path] = (h5py.VirtualSource(ds), ds)
        _check_length(vs[1].shape, s, [s], s.path)
        layout[s.dst_start:s.dst_stop] = vs[0][s.src_start:s.src_stop]
    if filename is None:
        fd, filename = tempfile.mkstemp(suffix='-karabo-data-vds.h5')
        os.close(fd)
    with h5py.File(filename, 'w') as f:
        f.create_virtual_dataset(kd.hdf5_data_path, layout)
    return h5py.File(filename, 'r')[kd.hdf5_data_path]


# -- HTML reprs (Jupyter) ------------------------------------------------------------------

def _e(x) -> str:
    return html.escape(str(x))


def _rows(pairs) -> str:
    return ''.join(f"<tr><th style='text-align:left'>{_e(k)}</th><td style='text-align:left'>"
                   f"{_e(v)}</td></tr>" for k, v in pairs)


def _train_range(tids) -> str:
    return f"{int(tids[0])} – {int(tids[-1])}" if len(tids) else '–'


def collection_html(dc, max_sources: int = 12) -> str:
    """Short HTML summary of a DataCollection (no I/O: answered from its selection)."""
    tids = dc._selection.train_ids
    ctrl, inst = sorted(dc.control_sources), sorted(dc.instrument_sources)
    lines = []
    for label, names in (('instrument', inst), ('control', ctrl)):
        shown = ''.join(f"<li>{_e(s)}</li>" for s in names[:max_sources])
        more = (f"<li>… and {len(names) - max_sources} more</li>"
                if len(names) > max_sources else '')
        lines.append(f"<details><summary>{len(names)} {label} sources</summary>"
                     f"<ul>{shown}{more}</ul></details>")
    table = _rows([('trains', len(tids)), ('train IDs', _train_range(tids)),
                   ('files', len(dc._index.files))])
    return (f"<div><b>xfeldata.DataCollection</b><table>{table}</table>"
            f"{''.join(lines)}</div>")


def keydata_html(kd) -> str:
    """Short HTML summary of a KeyData (no I/O: answered from its records)."""
    units = _units(kd)
    pairs = [('source', kd.source), ('key', kd.key), ('section', kd.section),
             ('dtype', kd.dtype), ('entry shape', kd.entry_shape), ('shape', kd.shape),
             ('trains', len(kd._train_ids)), ('train IDs', _train_range(kd._train_ids))]
    if units:
        pairs.append(('units', units))
    return f"<div><b>xfeldata.KeyData</b><table>{_rows(pairs)}</table></div>"


def plan_html(plan: ReadPlan, max_steps: int = 10) -> str:
    """HTML form of ``plan.explain()`` (at most ``max_steps`` steps listed).

    Examples
    --------
    >>> p = ReadPlan(np.dtype('f8'), (5,), (ReadStep('/r/A<1>.h5', '/x', 0, 5, 0, 5),))
    >>> '&lt;1&gt;' in plan_html(p)
    True
    """
    return f"<pre>{_e(plan.explain(max_steps=max_steps))}</pre>"
