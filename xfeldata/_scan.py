"""Effects: read the tiers of a file's index from an open h5py.File.

Each ``scan_*`` function takes an open ``h5py.File`` and returns one frozen
record (see :mod:`xfeldata.core.records`); :func:`scan_file_index_at`, used
when opening runs, takes a path and reads tier 0 through h5py's low-level API
first. They read only what their tier needs, and turn every HDF5 problem into
an xfeldata exception naming the file: a user never sees HDF5's error stack
for a broken file.
"""
from __future__ import annotations

import os
import warnings

import h5py
import numpy as np

from .core.records import (FileIndex, FileMeta, KeyInfo, SourceFileIndex,
                           SourceKeys)
from .core.validity import (aux_source_name, guess_validity, parse_source_list,
                            validity_from_flag)
from .exceptions import FileOpenError, FileStructureError

__all__ = ['open_h5', 'scan_file_index', 'scan_file_index_at', 'scan_file_meta', 'scan_source_index',
           'scan_source_keys', 'scan_key_info', 'read_format_version']

AUX_SECTIONS = ('REDUCTION', 'ERRATA')


def open_h5(path) -> h5py.File:
    """Open an HDF5 file read-only, with a clear error of ours on failure."""
    try:
        return h5py.File(path, 'r')
    except FileNotFoundError:
        raise
    except PermissionError:
        raise
    except OSError as e:
        if not os.path.exists(path):
            raise FileNotFoundError(2, 'No such file', str(path)) from None
        raise FileOpenError(str(path), _h5_problem(e)) from None


def _h5_problem(e) -> str:
    msg = str(e)
    if 'file signature not found' in msg:
        try:
            size = os.stat(e.filename).st_size if getattr(e, 'filename', None) else None
        except OSError:
            size = None
        return 'not an HDF5 file (empty or truncated?)' if size == 0 else \
            'not an HDF5 file, or truncated / damaged (file signature not found)'
    if 'truncated' in msg:
        return 'file is truncated'
    return msg.split('(', 1)[-1].rstrip(')') if '(' in msg else msg


def _decode(v):
    if isinstance(v, bytes):
        return v.decode('utf-8', 'surrogateescape')
    if isinstance(v, np.bytes_):
        return bytes(v).decode('utf-8', 'surrogateescape')
    return v


def read_format_version(f: h5py.File) -> str:
    try:
        ds = f['METADATA/dataFormatVersion']
    except KeyError:
        return '0.5'
    if not isinstance(ds, h5py.Dataset):
        return '0.5'
    try:
        v = _decode(ds[0])
    except Exception:
        raise FileStructureError("unreadable METADATA/dataFormatVersion", f.filename)
    return str(v)


def _read_1d(f, path, what=None):
    """Read a 1-D dataset, raising FileStructureError (not an HDF5 error)."""
    try:
        ds = f[path]
    except KeyError:
        raise FileStructureError(f"missing dataset {path}", f.filename) from None
    except Exception as e:
        raise FileStructureError(f"cannot open {path}: {e}", f.filename) from None
    if not isinstance(ds, h5py.Dataset):
        raise FileStructureError(f"{path} is not a dataset", f.filename)
    if ds.ndim != 1:
        raise FileStructureError(f"{path} has {ds.ndim} dimensions, expected 1", f.filename)
    try:
        return ds[()]
    except Exception as e:
        raise FileStructureError(f"cannot read {path}: {e}", f.filename) from None


def _n_trains_and_ids(f):
    raw = _read_1d(f, 'INDEX/trainId')
    if raw.dtype.kind not in 'ui':
        raise FileStructureError(f"INDEX/trainId has dtype {raw.dtype}, expected integers",
                                 f.filename)
    raw = raw.astype(np.uint64, copy=False)
    nonzero = raw != 0
    return int(nonzero.sum()), raw[nonzero]


def _source_list(f, fmt):
    base = 'METADATA/' if fmt == '0.5' else 'METADATA/dataSources/'
    # Some 0.5-era files already used the dataSources group and vice versa.
    alt = 'METADATA/dataSources/' if fmt == '0.5' else 'METADATA/'
    entries = None
    for b in (base, alt):
        try:
            ds = f[b + 'dataSourceId']
        except KeyError:
            continue
        if isinstance(ds, h5py.Dataset) and ds.ndim == 1:
            try:
                entries = ds[()]
            except Exception as e:
                raise FileStructureError(f"cannot read {b}dataSourceId: {e}",
                                         f.filename) from None
            break
    if entries is None:
        raise FileStructureError("no source list (METADATA/dataSources/dataSourceId)",
                                 f.filename)
    try:
        return parse_source_list(entries, f.filename)
    except ValueError as e:
        raise FileStructureError(str(e), f.filename) from None


def _legacy_sources(f, instrument_sources):
    legacy = {}
    try:
        inst = f['INSTRUMENT']
    except KeyError:
        return legacy
    for src in instrument_sources:
        try:
            link = inst.get(src, getlink=True)
        except Exception:
            link = None
        if isinstance(link, h5py.SoftLink):
            target = link.path
            if target.startswith('/INSTRUMENT/'):
                legacy[src] = target[len('/INSTRUMENT/'):]
    return legacy


def _fast_1d(f, path):
    """Read a small 1-D dataset with as few h5py calls as possible (opening path).

    Returns None if it does not exist; anything unusual goes through the
    careful reader, which raises FileStructureError.
    """
    try:
        dsid = h5py.h5d.open(f.id, path.encode())
    except KeyError:
        return None
    except Exception:
        return _read_1d(f, path)
    space = dsid.get_space()
    if space.get_simple_extent_ndims() != 1:
        return _read_1d(f, path)
    (n,) = space.get_simple_extent_dims()
    dt = dsid.dtype
    if dt.kind not in 'uif':
        return _read_1d(f, path)
    out = np.empty(n, dtype=dt)
    if n:
        try:
            dsid.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
        except Exception as e:
            raise FileStructureError(f"cannot read {path}: {e}", f.filename) from None
    return out


# -- tier 0, fast path ---------------------------------------------------------
#
# Opening a run reads tier 0 of every file: on a cluster filesystem with
# thousands of files this is what users wait for. The high-level h5py objects
# (File, Group, Dataset) cost more Python work per call than the HDF5 reads
# themselves for these small datasets, so the fast path below uses h5py's
# low-level identifiers only. It handles the usual file layout and gives up
# (returns None) on anything else; the careful path then reads the file again
# and produces the record or the exact error of ours. Both paths give equal
# records for every file the fast one accepts (tests/test_open_scan.py).

_FAPL = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
# As h5py.File: HDF5 refuses to open a file twice with different close degrees,
# and the file may be open through a FileAccess at the same time.
_FAPL.set_fclose_degree(h5py.h5f.CLOSE_WEAK)


class _GiveUp(Exception):
    """The fast path met something it does not handle: use the careful path."""


def _ll_open_dataset(fid, name: bytes):
    """A dataset identifier, or None where ``f[name]`` has no dataset (KeyError).

    h5py raises KeyError both for a missing path and for one naming a group;
    the careful path treats both the same way (missing).
    """
    try:
        return h5py.h5d.open(fid, name)
    except KeyError:
        return None


def _ll_read_1d(dsid, kinds: str) -> np.ndarray:
    """All of a 1-D dataset whose dtype kind is in ``kinds``."""
    space = dsid.get_space()
    if space.get_simple_extent_ndims() != 1:
        raise _GiveUp
    (n,) = space.get_simple_extent_dims()
    dt = dsid.dtype
    if dt.kind not in kinds:
        raise _GiveUp
    if dt.kind == 'O' and h5py.check_string_dtype(dt) is None:
        raise _GiveUp   # vlen sequences, references: not a string list
    out = np.empty(n, dtype=dt)
    if n:
        dsid.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
    return out


def _ll_format_version(fid) -> str:
    dsid = _ll_open_dataset(fid, b'METADATA/dataFormatVersion')
    if dsid is None:
        return '0.5'
    v = _ll_read_1d(dsid, 'OS')
    if not len(v):
        raise _GiveUp
    v = _decode(v[0])
    if not isinstance(v, str):
        raise _GiveUp
    return v


def _ll_source_list(fid, fmt):
    names = (b'METADATA/dataSourceId', b'METADATA/dataSources/dataSourceId')
    for name in (names if fmt == '0.5' else names[::-1]):
        dsid = _ll_open_dataset(fid, name)
        if dsid is not None:
            return parse_source_list(_ll_read_1d(dsid, 'OS'))
    raise _GiveUp


def _ll_legacy_sources(fid, instrument_sources) -> dict:
    legacy = {}
    for src in instrument_sources:
        name = b'INSTRUMENT/' + src.encode('utf-8')
        try:
            kind = fid.links.get_info(name).type
        except KeyError:
            continue
        # ``in``, as Group.get(getlink=True) checks it before reading the link.
        if kind == h5py.h5l.TYPE_SOFT and name in fid:
            target = fid.links.get_val(name).decode('utf-8')
            if target.startswith('/INSTRUMENT/'):
                legacy[src] = target[len('/INSTRUMENT/'):]
    return legacy


def _ll_file_index(fid, path, stat) -> FileIndex:
    fmt = _ll_format_version(fid)
    if fmt == '1.1':
        raise _GiveUp   # rare; the careful path issues its warning
    dsid = _ll_open_dataset(fid, b'INDEX/trainId')
    if dsid is None:
        raise _GiveUp
    raw = _ll_read_1d(dsid, 'ui').astype(np.uint64, copy=False)
    tids = raw[raw != 0]
    dsid = None if fmt == '0.5' else _ll_open_dataset(fid, b'INDEX/flag')
    if dsid is None:
        valid = guess_validity(tids)
    else:
        flag = _ll_read_1d(dsid, 'uif')[:len(tids)]
        if len(flag) < len(tids):
            raise _GiveUp
        valid = validity_from_flag(flag, fmt)
    control, instrument = _ll_source_list(fid, fmt)
    legacy = _ll_legacy_sources(fid, instrument) if instrument else {}
    return FileIndex.build(path, stat.st_size, stat.st_mtime, tids, valid,
                           control, instrument.keys(), legacy)


def open_fid(path):
    """A low-level read-only h5py FileID for ``path``, or None if HDF5 cannot open it."""
    try:
        return h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY, _FAPL)
    except Exception:
        return None


def scan_file_index_at(path, stat) -> FileIndex:
    """Tier 0 of the file at ``path`` (absolute), whose ``os.stat`` is ``stat``.

    Tries the low-level fast path first; on anything unusual, reads the file
    with :func:`scan_file_index`, which raises our exceptions for bad files.
    """
    fid = open_fid(path)
    if fid is not None:
        try:
            return _ll_file_index(fid, path, stat)
        except Exception:
            pass   # _GiveUp, or an HDF5 error the careful path reports properly
        finally:
            fid.close()
    f = open_h5(path)
    try:
        return scan_file_index(f, path, stat)
    finally:
        f.close()


def scan_file_index(f: h5py.File, path=None, stat=None) -> FileIndex:
    """Tier 0: train IDs, validity, source names and legacy names."""
    path = os.path.abspath(path or f.filename)
    if stat is None:
        stat = os.stat(path)
    fmt = read_format_version(f)
    raw = _fast_1d(f, 'INDEX/trainId')
    if raw is None:
        raise FileStructureError("missing dataset INDEX/trainId", path)
    if raw.dtype.kind not in 'ui':
        raise FileStructureError(f"INDEX/trainId has dtype {raw.dtype}, expected integers",
                                 path)
    raw = raw.astype(np.uint64, copy=False)
    tids = raw[raw != 0]
    ntrains = len(tids)
    flag = None if fmt == '0.5' else _fast_1d(f, 'INDEX/flag')
    if flag is None:
        valid = guess_validity(tids)
    else:
        flag = flag[:ntrains]
        if len(flag) < ntrains:
            raise FileStructureError(
                f"INDEX/flag has {len(flag)} entries for {ntrains} trains", path)
        if fmt == '1.1':
            warnings.warn(f"{os.path.basename(path)}: format 1.1 flags are inverted; "
                          "validation of 1.1 files is only partly supported", stacklevel=3)
        valid = validity_from_flag(flag, fmt)
    # Zero train IDs in the middle shift the per-train arrays (FORMAT.md 2.3):
    # the flag was truncated to ntrains above, which equals len(tids).
    control, instrument = _source_list(f, fmt)
    legacy = _legacy_sources(f, instrument) if instrument else {}
    return FileIndex.build(path, stat.st_size, stat.st_mtime, tids, valid,
                           control, instrument.keys(), legacy)


def scan_file_meta(f: h5py.File) -> FileMeta:
    """Tier 1: format version, run metadata, timestamps, auxiliary and RUN sources."""
    fmt = read_format_version(f)
    ntrains, _ = _n_trains_and_ids(f)
    if fmt == '0.5':
        metadata = {'dataFormatVersion': '0.5'}
    else:
        metadata = {}
        md = f.get('METADATA')
        if md is not None:
            for name, obj in md.items():
                if isinstance(obj, h5py.Dataset):
                    try:
                        v = obj[0] if obj.shape and obj.shape[0] else None
                    except Exception:
                        continue
                    v = _decode(v)
                    if isinstance(v, np.generic):
                        v = v.item()
                    metadata[name] = v
    timestamps = None
    if 'INDEX/timestamp' in f:
        try:
            ts = f['INDEX/timestamp'][:ntrains]
            if len(ts) == ntrains:
                timestamps = ts.astype(np.uint64, copy=False)
        except Exception:
            timestamps = None
    aux = {}
    for sect in AUX_SECTIONS:
        ds = f.get(f'METADATA/auxiliarySources/{sect}')
        names = set()
        if isinstance(ds, h5py.Dataset) and ds.ndim == 1:
            for entry in ds[()]:
                entry = _decode(entry)
                if entry:
                    names.add(aux_source_name(entry, sect))
        aux[sect] = names
    run_sources = set()
    if 'RUN' in f:
        run_grp = f['RUN']
        ctrl, _ = _source_list(f, fmt)
        for src in ctrl:
            if src in run_grp:
                run_sources.add(src)
    return FileMeta.build(fmt, metadata, timestamps, aux['REDUCTION'], aux['ERRATA'],
                          run_sources, is_voview='.source_files' in f)


def _index_arrays(f, grp_path, ntrains):
    """(first, count) of one INDEX group, new or old (first/last/status) style."""
    first, count = read_index_group(f, grp_path)
    # An index shorter than the train list is kept as it is (not padded, not
    # an error at open): reading the key then raises a ValueError naming the
    # file, as EXtra-data does, while the other sources stay readable.
    n = min(len(first), len(count), ntrains)
    return first[:n].astype(np.uint64, copy=False), count[:n].astype(np.uint64, copy=False)


def read_index_group(f, grp_path):
    """Untruncated (first, count) of one INDEX group, as stored.

    Old-style groups (``first/last/status``) give ``count = (last - first + 1)
    * (status != 0)``. The reader truncates these arrays to the file's train
    count (:func:`_index_arrays`); the validator checks them whole.
    """
    grp = f.get(grp_path)
    if grp is None or not isinstance(grp, h5py.Group):
        raise FileStructureError(f"missing index group {grp_path}", f.filename)
    if 'count' in grp:
        first = _read_1d(f, grp_path + '/first')
        count = _read_1d(f, grp_path + '/count')
    elif 'last' in grp and 'status' in grp:
        first = _read_1d(f, grp_path + '/first')
        last = _read_1d(f, grp_path + '/last')
        status = _read_1d(f, grp_path + '/status')
        if first.dtype.kind not in 'ui' or last.dtype.kind not in 'ui' \
                or status.dtype.kind not in 'uib':
            raise FileStructureError(f"index group {grp_path} has first/last/status of "
                                     f"non-integer dtypes", f.filename)
        last, status = last.astype(np.int64), status.astype(np.int64)
        n = min(len(first), len(last), len(status))
        count = np.maximum((last[:n] - first[:n].astype(np.int64) + 1) * (status[:n] != 0), 0)
    else:
        raise FileStructureError(f"index group {grp_path} has no first/count datasets",
                                 f.filename)
    for name, arr in (('first', first), ('count', count)):
        if arr.dtype.kind not in 'ui':
            raise FileStructureError(f"{grp_path}/{name} has dtype {arr.dtype}, expected "
                                     "integers", f.filename)
    return first, count


def scan_source_index(f: h5py.File, source: str, section: str) -> SourceFileIndex:
    """Tier 1: INDEX first/count for every index group of one source."""
    ntrains, _ = _n_trains_and_ids(f)
    base = f'INDEX/{source}'
    if section == 'CONTROL':
        groups = {'': _index_arrays(f, base, ntrains)}
    else:
        grp = f.get(base)
        if grp is None:
            raise FileStructureError(f"no INDEX entry for source {source}", f.filename)
        groups = {}
        for name, obj in grp.items():
            if isinstance(obj, h5py.Group):
                groups[name] = _index_arrays(f, f'{base}/{name}', ntrains)
    return SourceFileIndex.build(source, section, groups)


def scan_source_keys(f: h5py.File, source: str, section: str) -> SourceKeys:
    """Tier 2a: the names of a source's keys (datasets below its group)."""
    try:
        oid = h5py.h5o.open(f.id, f'{section}/{source}'.encode('utf-8'))
    except KeyError:   # as f.get(path) is None
        return SourceKeys(source, section, frozenset())
    names = []
    append = names.append

    def visitor(name, info, _dataset=h5py.h5o.TYPE_DATASET):
        if info.type == _dataset:
            append(name)

    # h5o.visit with info avoids creating a Python object per member, which is
    # what makes visititems slow on sources with many keys. The callback runs
    # once per object below the source: it only collects; names are decoded
    # once, together, afterwards.
    try:
        h5py.h5o.visit(oid, visitor, info=True)
    except Exception as e:   # a damaged object header below the source
        raise FileStructureError(f"cannot list the keys of {section}/{source}: {e}",
                                 f.filename) from None
    if names and all(type(n) is bytes for n in names):
        names = b'\0'.join(names).decode().split('\0')   # no NUL in HDF5 names
    else:
        names = [n.decode() if isinstance(n, bytes) else n for n in names]
    keys = frozenset([n.replace('/', '.') for n in names])
    return SourceKeys(source, section, keys)


_UNIT_ATTRS = ('unitSymbol', 'unitName', 'metricPrefixSymbol', 'metricPrefixName')


def _unit_attrs(obj):
    out = {}
    for a in _UNIT_ATTRS:
        try:
            if a in obj.attrs:
                v = obj.attrs[a]
                if isinstance(v, np.ndarray):
                    v = v.flat[0] if v.size else None
                v = _decode(v)
                if v is not None:
                    out[a] = str(v)
        except Exception:
            pass
    return out


def scan_key_info(f: h5py.File, source: str, section: str, key: str) -> KeyInfo:
    """Tier 2b: dtype, shape, chunking, filters and units of one key."""
    path = f"{section}/{source}/{key.replace('.', '/')}"
    ds = f.get(path)
    if not isinstance(ds, h5py.Dataset):
        # KeyError as in EXtra-data (e.g. a dangling link listed as a key);
        # the message names the file and the dataset.
        raise KeyError(f"{f.filename}: no dataset {path}")
    filters = ()
    try:
        dcpl = ds.id.get_create_plist()
        nf = dcpl.get_nfilters()
        filters = tuple((int(dcpl.get_filter(i)[0]), tuple(int(x) for x in dcpl.get_filter(i)[2]))
                        for i in range(nf))
        is_virtual = dcpl.get_layout() == h5py.h5d.VIRTUAL
    except Exception:
        is_virtual = False
    units = {}
    if section == 'CONTROL' and key.endswith('.value'):
        parent = ds.parent
        units.update(_unit_attrs(ds))
        units.update(_unit_attrs(parent))  # the group's attributes win
    else:
        units.update(_unit_attrs(ds))
    shape = ds.shape
    if not shape:
        raise FileStructureError(f"{path} is a scalar dataset", f.filename)
    return KeyInfo(key, ds.dtype, tuple(shape[1:]), int(shape[0]), ds.chunks, filters,
                   is_virtual, tuple(sorted(units.items())))
