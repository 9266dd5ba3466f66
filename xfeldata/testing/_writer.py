"""Write a :class:`FileSpec` as an EuXFEL HDF5 file (the only code doing I/O).

Layout follows FORMAT.md §2 for every format version. Datasets are created
through h5py's low-level API: a synthetic run has thousands of tiny datasets
and ``Group.create_dataset`` costs about four times more per dataset.
"""

from __future__ import annotations

import os
from typing import Any

import h5py
import numpy as np
from h5py import h5d, h5p, h5s, h5t

from ._manifest import FileManifest, describe_file, run_value
from ._records import ControlSource, FileSpec, InstrumentSource, Key
from ._values import (
    EPOCH_NS,
    control_timestamps,
    is_string_dtype,
    rows_of_trains,
    string_encoding,
    values_for_rows,
)

try:  # h5py's chunk-shape heuristic, so chunks look like the mock files'
    from h5py._hl.filters import guess_chunk as _guess_chunk
except ImportError:  # pragma: no cover - private API moved
    def _guess_chunk(shape, maxshape, typesize):
        row = max(1, int(np.prod(shape[1:], dtype=np.int64)) * typesize)
        return (max(1, min(max(shape[0], 1), (64 * 1024) // row)),) + tuple(shape[1:])

__all__ = ["write_file"]

# Generate big datasets in blocks of about this many values so memory stays
# bounded for large detector files.
_BLOCK_VALUES = 4 * 1024 * 1024
_ASCII = h5py.string_dtype("ascii")

# Link creation: make intermediate groups (no require_group round trips).
_LCPL = h5p.create(h5p.LINK_CREATE)
_LCPL.set_create_intermediate_group(True)
_LCPL.set_char_encoding(h5t.CSET_UTF8)


def _h5_dtype(dt: np.dtype):
    if is_string_dtype(dt):
        return h5py.string_dtype(string_encoding(dt))
    return dt


def _ascii_array(strings) -> np.ndarray:
    return np.array([s.encode("ascii") for s in strings], dtype=object)


def _create(parent, path: str, data=None, *, shape=None, dtype=None,
            key: Key | None = None, resizable: bool | None = None, chunks=None):
    """Create (and fill) a dataset; returns an ``h5py.Dataset``.

    Raw DAQ style by default: ``maxshape=(None,)+entry``, chunked. With
    ``key.resizable`` False the dataset has a fixed size and is contiguous
    unless chunks or compression are asked for.
    """
    if data is not None:
        shape = data.shape
        dtype = data.dtype if dtype is None else dtype
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    if key is not None:
        resizable = key.resizable if resizable is None else resizable
        chunks = key.chunks if chunks is None else chunks
    resizable = True if resizable is None else resizable
    filtered = key is not None and (key.compression is not None or key.shuffle)
    if not resizable and shape[0] == 0 and (chunks is not None or filtered):
        resizable = True  # an empty fixed-size dataset cannot hold a (1, ...) chunk
    maxshape = ((None,) + shape[1:]) if resizable else shape
    dcpl = h5p.create(h5p.DATASET_CREATE)
    if resizable or chunks is not None or filtered:
        if chunks is None:
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            # h5py's guess keeps datasets under 8 KiB in one chunk: skip the
            # (comparatively slow) heuristic for the many tiny ones.
            if 0 < nbytes <= 8192:
                chunks = shape
            else:
                chunks = _guess_chunk(shape, maxshape, dtype.itemsize)
        dcpl.set_chunk(tuple(chunks))
    if filtered:
        if key.shuffle:
            dcpl.set_shuffle()
        if key.compression == "gzip":
            dcpl.set_deflate(4 if key.compression_opts is None else int(key.compression_opts))
    space = h5s.create_simple(shape, tuple(h5s.UNLIMITED if m is None else m for m in maxshape))
    tid = h5t.py_create(dtype, logical=True)
    dsid = h5d.create(parent.id, path.encode(), tid, space, dcpl=dcpl, lcpl=_LCPL)
    if data is not None and data.size:
        dsid.write(h5s.ALL, h5s.ALL, np.ascontiguousarray(data, dtype=dtype))
    return h5py.Dataset(dsid)


def _write_string_list(group, name: str, strings, multiple: int):
    n = len(strings)
    size = -(-n // multiple) * multiple if multiple else n
    data = _ascii_array(list(strings) + [""] * (size - n))
    _create(group, name, data, dtype=_ASCII, chunks=(max(size, multiple, 1),))


# -- METADATA -----------------------------------------------------------------

def _source_list(spec: FileSpec) -> list[tuple[str, str]]:
    """(root, deviceId) rows of the source list, in spec order."""
    rows = []
    if spec.format_version == "1.1":
        rows.append(("", "Karabo_TimerServer"))
    for src in spec.sources:
        if isinstance(src, ControlSource):
            rows.append(("CONTROL", src.name))
        elif src.section == "INSTRUMENT":
            for name in (src.name,) + tuple(src.legacy_names):
                for g in src.index_groups:
                    rows.append(("INSTRUMENT", f"{name}/{g}"))
    return rows


def _write_metadata(f: h5py.File, spec: FileSpec):
    meta = f.create_group("METADATA")
    rows = _source_list(spec)
    ids = ["Karabo_TimerServer" if root == "" else f"{root}/{dev}" for root, dev in rows]
    if spec.format_version == "0.5":
        lists = meta
    else:
        lists = meta.create_group("dataSources")
        strings = {
            "dataFormatVersion": spec.format_version,
            "creationDate": spec.creation_date,
            "updateDate": spec.update_date,
            "daqLibrary": spec.daq_library,
            "karaboFramework": spec.karabo_framework,
        }
        if spec.format_version not in ("1.0", "1.1"):
            strings["runType"] = spec.run_type
            strings["sample"] = spec.sample
        # Run metadata: (1,)-shaped, contiguous, no maxshape, as the DAQ writes it.
        for name, value in strings.items():
            _create(meta, name, _ascii_array([value]), dtype=_ASCII, resizable=False)
        for name, value in (("proposalNumber", spec.proposal), ("runNumber", spec.run),
                            ("sequenceNumber", spec.sequence)):
            _create(meta, name, np.array([value], dtype=np.uint32), resizable=False)
    m = spec.source_list_multiple
    _write_string_list(lists, "dataSourceId", ids, m)
    _write_string_list(lists, "root", [r for r, _ in rows], m)
    _write_string_list(lists, "deviceId", [d for _, d in rows], m)

    aux: dict[str, list[str]] = {"REDUCTION": [], "ERRATA": []}
    for src in spec.sources:
        if src.section in aux:
            for g in src.index_groups:
                aux[src.section].append(f"{src.section}/{src.name}/{g}")
    write_aux = spec.aux_list if spec.aux_list is not None else any(aux.values())
    if write_aux:
        for section, entries in aux.items():
            _create(meta, f"auxiliarySources/{section}", _ascii_array(entries), dtype=_ASCII,
                    chunks=(max(len(entries), 1),))


# -- INDEX ----------------------------------------------------------------------

def _padded(arr: np.ndarray, length: int, fill=0) -> np.ndarray:
    if length == len(arr):
        return arr
    out = np.full(length, fill, dtype=arr.dtype)
    out[: len(arr)] = arr
    return out


def _write_source_index(f, path: str, counts: np.ndarray, spec: FileSpec):
    counts = np.asarray(counts, dtype=np.uint64)
    first = (np.cumsum(counts) - counts).astype(np.uint64)
    n_index = len(counts)
    if spec.pad_source_index and spec.pad_trainids_to:
        n_index = spec.pad_trainids_to
    if spec.old_index:
        # count = (last - first + 1) * status; an empty train has status 0
        # and last = first (last = first - 1 would underflow at first = 0).
        status = (counts > 0).astype(np.uint32)
        last = np.where(counts > 0, first + counts - 1, first).astype(np.uint64)
        arrays = {"first": first, "last": last, "status": status}
    else:
        arrays = {"first": first, "count": counts}
    for name, arr in arrays.items():
        _create(f, f"INDEX/{path}/{name}", _padded(arr, n_index))


def _write_index(f: h5py.File, spec: FileSpec, manifest: FileManifest):
    n_rows = spec.pad_trainids_to or spec.n_trains
    _create(f, "INDEX/trainId", _padded(np.asarray(spec.train_ids, np.uint64), n_rows))
    if spec.format_version != "0.5":
        _create(f, "INDEX/timestamp", _padded(manifest.timestamps, n_rows))
        _create(f, "INDEX/flag", _padded(manifest.flag, n_rows))
        if spec.format_version not in ("1.0", "1.1"):
            _create(f, "INDEX/origin", np.full(n_rows, -1, dtype=np.int32))
    for src in spec.sources:
        for g in src.index_groups:
            path = src.name if g == "" else f"{src.name}/{g}"
            _write_source_index(f, path, manifest.counts[(src.name, g)], spec)
    for name in spec.unlisted_index:
        _write_source_index(f, name, np.ones(spec.n_trains, np.uint64), spec)


# -- CONTROL & RUN --------------------------------------------------------------

def _set_attrs(obj, attributes):
    for k, v in attributes.items():
        obj.attrs[k] = v


def _run_literal(value) -> tuple[np.ndarray, Any]:
    """RUN value array of shape (1,)+dims; strings become vlen ASCII."""
    if isinstance(value, (str, bytes)):
        v = value.encode() if isinstance(value, str) else value
        return np.array([v], dtype=object), _ASCII
    arr = np.asarray(value)
    return arr.reshape((1,) + arr.shape), arr.dtype


def _property_parent(f, section: str, src_name: str, prop: str, key: Key):
    """Where ``value``/``timestamp`` go; creates the group only to hold attrs."""
    path = f"{section}/{src_name}/{prop.replace('.', '/')}"
    if key.attrs:
        grp = f.create_group(path)
        _set_attrs(grp, key.attrs)
    return path


def _write_control(f: h5py.File, src: ControlSource, spec: FileSpec, manifest: FileManifest):
    # Both groups exist even when empty (RUN-only sources, no keys).
    f.create_group(f"CONTROL/{src.name}")
    f.create_group(f"RUN/{src.name}")
    counts = manifest.counts[(src.name, "")]
    rows = np.asarray(spec.train_ids)[counts > 0]
    ts = control_timestamps(spec.train_ids, manifest.timestamp_origin)[counts > 0]
    run_ts = np.array([EPOCH_NS], dtype=np.uint64)
    for prop, key in src.keys.items():
        if not src.run_only:
            path = _property_parent(f, "CONTROL", src.name, prop, key)
            n = len(rows)
            values = values_for_rows(
                src.name, prop + ".value", key.dtype, key.shape, key.fill,
                rows, np.zeros(n, np.int64), np.ones(n, np.int64),
            )
            ds = _create(f, path + "/value", values, dtype=_h5_dtype(key.dtype), key=key)
            _set_attrs(ds, key.value_attrs)
            _create(f, path + "/timestamp", ts)
        # RUN holds the value at run start; strings are vlen ASCII there.
        path = _property_parent(f, "RUN", src.name, prop, key)
        value = run_value(src, prop)
        if is_string_dtype(key.dtype):
            data, dt = _run_literal(str(value))
        else:
            value = np.asarray(value, dtype=key.dtype)
            data, dt = value.reshape((1,) + value.shape), key.dtype
        _create(f, path + "/value", data, dtype=dt)
        _create(f, path + "/timestamp", run_ts)
    extra = dict(src.run_keys)
    if src.device_class is not None:
        extra.setdefault("classId", src.device_class)
    for prop, value in extra.items():
        path = f"RUN/{src.name}/{prop.replace('.', '/')}"
        data, dt = _run_literal(value)
        _create(f, path + "/value", data, dtype=dt)
        _create(f, path + "/timestamp", run_ts)


# -- INSTRUMENT / REDUCTION / ERRATA --------------------------------------------

def _write_key(f, path: str, source: str, key_name: str, key: Key,
               rows: tuple, row_other, total: int):
    """Write one key's rows (in blocks for big data); rows beyond them up to
    ``total`` keep the HDF5 fill value (zeros / empty strings)."""
    row_tids, row_entry, row_count = rows
    n = len(row_tids)
    dt = _h5_dtype(key.dtype)
    size = max(int(np.prod(key.shape, dtype=np.int64)), 1)
    step = max(1, _BLOCK_VALUES // size)

    def block(a, b):
        return values_for_rows(
            source, key_name, key.dtype, key.shape, key.fill, row_tids[a:b],
            row_entry[a:b], row_count[a:b], None if row_other is None else row_other[a:b],
        )

    if n <= step and total == n:
        return _create(f, path, block(0, n), dtype=dt, key=key)
    ds = _create(f, path, shape=(total,) + key.shape, dtype=dt, key=key)
    for a in range(0, n, step):
        b = min(a + step, n)
        ds.id.write(
            h5s.create_simple((b - a,) + key.shape),
            _hyperslab(ds.id, a, b),
            np.ascontiguousarray(block(a, b)),
        )
    return ds


def _hyperslab(dsid, a: int, b: int):
    space = dsid.get_space()
    shape = space.shape
    space.select_hyperslab((a,) + (0,) * (len(shape) - 1), (b - a,) + shape[1:])
    return space


def _write_instrument(f: h5py.File, src: InstrumentSource, spec: FileSpec,
                      manifest: FileManifest):
    keys = src.all_keys()
    tids = np.asarray(spec.train_ids, np.uint64)
    base = f"{src.section}/{src.name}"
    for g in src.index_groups:
        counts = manifest.counts[(src.name, g)].astype(np.int64)
        rows = rows_of_trains(tids, counts)
        total = len(rows[0]) + src.extra_rows
        group_keys = [k for k in keys if k.split(".", 1)[0] == g]
        if not group_keys:
            f.create_group(f"{base}/{g}")  # an index group without datasets
        for key_name in group_keys:
            key = keys[key_name]
            row_other = None
            if isinstance(key.fill, str) and key.fill.startswith("count:"):
                other = manifest.counts[(src.name, key.fill[6:])].astype(np.int64)
                row_other = np.repeat(other, counts)
            ds = _write_key(f, f"{base}/{key_name.replace('.', '/')}", src.name, key_name,
                            key, rows, row_other, total)
            _set_attrs(ds, key.attrs)
    if src.section == "INSTRUMENT":
        for leg in src.legacy_names:
            # Old names stay reachable as soft links (FORMAT.md §3.4).
            f[f"INSTRUMENT/{leg}"] = h5py.SoftLink(f"/INSTRUMENT/{src.name}")
            f[f"INDEX/{leg}"] = h5py.SoftLink(f"/INDEX/{src.name}")


# -- entry point ----------------------------------------------------------------

def write_file(path, spec: FileSpec) -> FileManifest:
    """Write ``spec`` as an HDF5 file and return its manifest.

    Parameters
    ----------
    path : str or os.PathLike
        File to create (overwritten), or an existing directory: the file is
        then created inside it under ``spec.filename``.
    spec : FileSpec

    Returns
    -------
    FileManifest
        Describes exactly what was written (``manifest.path`` is set).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from xfeldata.testing import FileSpec, ControlSource, write_file
    >>> spec = FileSpec(np.arange(10000, 10005), [ControlSource('A/B/C', {'x': 'f4'})],
    ...                 format_version='1.0')
    >>> m = write_file(tempfile.mkdtemp(), spec)
    >>> m.filename, m.control_sources
    ('RAW-R0001-DA01-S00000.h5', ('A/B/C',))
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, spec.filename)
    manifest = describe_file(spec, path=path)
    with h5py.File(path, "w") as f:
        _write_metadata(f, spec)
        for section in ("INDEX", "CONTROL", "RUN", "INSTRUMENT"):
            f.create_group(section)
        _write_index(f, spec, manifest)
        for src in spec.sources:
            if isinstance(src, ControlSource):
                _write_control(f, src, spec, manifest)
            else:
                _write_instrument(f, src, spec, manifest)
    return manifest
