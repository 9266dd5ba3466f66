"""Encoding of the tier records for xfeldata's index cache (msgpack, no pickle).

Records are positional lists (the layout fingerprint guards their order);
numpy arrays are ``(dtype, shape, raw bytes)``, or an arithmetic progression
or a single value for the usual train IDs, firsts and counts. Split from
:mod:`xfeldata.index_cache`, which handles where the cache lives and when it
is trusted.
"""
from __future__ import annotations

import hashlib

import attrs
import h5py
import msgpack
import numpy as np

from .core.records import (_SET_CONTROL, _SET_DIGEST, _SET_INSTRUMENT, _SET_LEGACY,
                           _SET_MTIME, _SET_PATH, _SET_SIZE, FileIndex, FileMeta, KeyInfo,
                           SourceFileIndex, SourceKeys, _object_new)

_MAGIC = 'xfeldata-index-cache'
# Paths from the filesystem may hold lone surrogates (non-UTF-8 names decoded
# with surrogateescape); 'surrogatepass' round-trips every Python str exactly.
_UNICODE_ERRORS = 'surrogatepass'
_OFF = ('off', '0', 'none', 'false', 'no')


def _layout_fingerprint() -> str:
    """A digest of the record layouts: caches of another layout are not read.

    Records are stored as positional lists; if a field is added or reordered
    in :mod:`xfeldata.core.records`, old caches must be ignored, not misread.
    Stored digests are reused, not recomputed, so the digests of sample
    records are part of the fingerprint too: a new digest algorithm retires
    old caches instead of making cached records unequal to scanned ones.
    """
    parts = [f'{c.__name__}:{",".join(a.name for a in attrs.fields(c))}'
             for c in (FileIndex, FileMeta, SourceFileIndex, SourceKeys, KeyInfo)]
    tids = np.array([10, 11, 13], np.uint64)
    parts += [
        FileIndex.build('/r/f.h5', 1, 2.5, tids, [True, False, True], ['c'], ['i', 'l'],
                        {'l': 'i'}).digest,
        FileMeta.build('1.0', {'a': 1, 'b': 'x'}, tids, ['r'], ['e'], ['c'], True).digest,
        SourceFileIndex.build('i', 'INSTRUMENT', {'g': (tids, tids)}).digest,
    ]
    return hashlib.blake2b(';'.join(parts).encode(), digest_size=8).hexdigest()


_LAYOUT = _layout_fingerprint()



# -- encoding: records <-> msgpack-ready values -----------------------------------
#
# Records are positional lists (the layout fingerprint guards their order).
# Values of open-ended fields (run metadata, chunks, filters, units) go through
# a small tagged encoding so that types survive exactly: a tuple stays a tuple,
# a numpy scalar stays that scalar (digests use repr, which sees the difference).
# Plain None/bool/int/float/str/bytes stand for themselves; anything else is a
# list whose first item is a tag.

_REF_TYPES = {'Reference': h5py.Reference, 'RegionReference': h5py.RegionReference}


def _enc_dtype(dt: np.dtype):
    """A dtype as msgpack-ready values, keeping fields, subarrays and h5py metadata."""
    if dt.names is not None:
        fields = [dt.fields[n] for n in dt.names]
        core = ['struct', list(dt.names), [_enc_dtype(f[0]) for f in fields],
                [f[1] for f in fields],
                [_enc_value(f[2]) if len(f) > 2 else None for f in fields],
                dt.itemsize, bool(dt.isalignedstruct)]
    elif dt.subdtype is not None:
        base, shape = dt.subdtype
        core = ['sub', _enc_dtype(base), list(shape)]
    else:
        core = dt.str
    if dt.metadata:
        # h5py keeps what numpy cannot say in dtype metadata: vlen str/bytes
        # (string_dtype), fixed-length string encodings, enums, references.
        return ['meta', core, [[k, _enc_dtype_meta(k, v)] for k, v in dt.metadata.items()]]
    return core


def _enc_dtype_meta(key, v):
    if key == 'vlen':
        if v is str or v is bytes:
            # h5py.string_dtype: vlen str is UTF-8, vlen bytes is ASCII.
            return ['vstr', 'utf-8' if v is str else 'ascii']
        if isinstance(v, np.dtype):
            return ['vdtype', _enc_dtype(v)]
        if isinstance(v, type) and issubclass(v, np.generic):
            return ['vtype', np.dtype(v).str]
    if key == 'ref':
        for name, cls in _REF_TYPES.items():
            if v is cls:
                return ['ref', name]
    return ['v', _enc_value(v)]


def _dec_dtype_meta(obj):
    tag, arg = obj
    if tag == 'vstr':
        return h5py.string_dtype(arg).metadata['vlen']
    if tag == 'vdtype':
        return _dec_dtype(arg)
    if tag == 'vtype':
        return np.dtype(arg).type
    if tag == 'ref':
        return _REF_TYPES[arg]
    if tag == 'v':
        return _dec_value(arg)
    raise ValueError(f"unknown dtype metadata tag {tag!r}")


_SIMPLE_DTYPES: dict = {}   # dtype string -> np.dtype: np.dtype(str) costs a parse


def _dec_dtype(obj) -> np.dtype:
    if isinstance(obj, str):
        dt = _SIMPLE_DTYPES.get(obj)
        if dt is None:
            dt = _SIMPLE_DTYPES[obj] = np.dtype(obj)
        return dt
    tag = obj[0]
    if tag == 'struct':
        _, names, formats, offsets, titles, itemsize, aligned = obj
        spec = {'names': names, 'formats': [_dec_dtype(f) for f in formats],
                'offsets': offsets, 'itemsize': itemsize}
        if any(t is not None for t in titles):
            spec['titles'] = [_dec_value(t) for t in titles]
        return np.dtype(spec, align=aligned)
    if tag == 'sub':
        return np.dtype((_dec_dtype(obj[1]), tuple(obj[2])))
    if tag == 'meta':
        return np.dtype(_dec_dtype(obj[1]), metadata={k: _dec_dtype_meta(v) for k, v in obj[2]})
    raise ValueError(f"unknown dtype tag {tag!r}")


def _progression(dt: np.dtype, n: int, start: int, step: int) -> np.ndarray:
    """``start, start + step, ...`` in ``dt``, wrapping as numpy does (encode and decode
    both build it this way, so the bytes agree even where it wraps)."""
    nd = dt if dt.isnative else dt.newbyteorder('=')
    stop = start + step * n
    if nd.itemsize == 8 and nd.kind in 'ui' and 0 <= start and 0 < step and stop < 2**53:
        # One call instead of three (decoding a cache makes many of these):
        # exact, as numpy computes the length in double precision, exact
        # below 2**53, and the values in the integer type.
        arr = np.arange(start, stop, step, dtype=nd)
        return arr if nd is dt else arr.astype(dt)
    arr = np.arange(n, dtype=nd)
    if step != 1:
        arr *= nd.type(step)
    arr += nd.type(start)
    return arr if nd is dt else arr.astype(dt)


def _enc_array(a: np.ndarray) -> list:
    """An array as (tag, dtype, shape, data).

    Train IDs, firsts and counts are nearly always arithmetic progressions or
    constant: storing those as (start, step) or one value makes a 20,000-file
    cache some 30 times smaller, so it loads fast also from a network home
    folder. Only integer and bool kinds take these forms, where ``==`` is
    equality of bytes (not so for floats: -0.0 == 0.0).
    """
    dt = a.dtype
    if dt.hasobject:
        return ['ao', _enc_dtype(dt), list(a.shape), [_enc_value(x) for x in a.flat]]
    kind, n = dt.kind, a.size
    if kind in 'ui' and a.ndim == 1 and n >= 3:
        start = int(a[0])
        step = int(a[1]) - start
        if (0 <= step <= np.iinfo(dt).max and n - 1 <= np.iinfo(dt).max
                and int(a[-1]) == start + step * (n - 1)
                and np.array_equal(_progression(dt, n, start, step), a)):
            return ['ar', _enc_dtype(dt), [n], [start, step]]
    elif kind in 'uib' and n >= 2:
        first = a.flat[0]
        if (a == first).all():
            return ['af', _enc_dtype(dt), list(a.shape), first.item()]
    return ['a', _enc_dtype(dt), list(a.shape), np.ascontiguousarray(a).tobytes()]


def _dec_array(obj) -> np.ndarray:
    tag, dt, shape, data = obj
    if tag == 'a' and len(shape) == 1 and type(data) is bytes:
        # The common case (a train-ID array of a file of its own), in a few
        # calls: a read-only view on the immutable bytes, no reshape.
        simple = _SIMPLE_DTYPES.get(dt) if type(dt) is str else None
        if simple is not None and simple.itemsize:
            arr = np.frombuffer(data, dtype=simple)
            if len(arr) != shape[0]:
                raise ValueError("array data does not match its shape")
            return arr
    dt, shape = _dec_dtype(dt), tuple(shape)
    if tag == 'a':
        if dt.itemsize == 0:
            arr = np.zeros(shape, dtype=dt)
        else:
            # A view on the (immutable) bytes: no copy, and already read-only.
            arr = np.frombuffer(data, dtype=dt).reshape(shape)
    elif tag == 'ar':
        arr = _progression(dt, shape[0], data[0], data[1])
    elif tag == 'af':
        arr = np.full(shape, data, dtype=dt)
    elif tag == 'ao':
        flat = np.empty(len(data), dtype=dt)
        for i, v in enumerate(data):
            flat[i] = _dec_value(v)
        arr = flat.reshape(shape)
    else:
        raise ValueError(f"unknown array tag {tag!r}")
    arr.flags.writeable = False
    return arr


def _sorted_any(items):
    try:
        return sorted(items)
    except TypeError:   # mixed types: order does not matter for a set
        return list(items)


def _enc_value(v):
    """A value as msgpack-ready data that decodes to an equal value of the same type."""
    t = type(v)
    if v is None or t is bool or t is str or t is bytes or t is float:
        return v
    if t is int:
        return v if -2**63 <= v < 2**64 else ['bigint', str(v)]
    if t is tuple:
        # Shapes and chunks: tuples of small ints, decoded without recursion.
        if all(type(x) is int and -2**63 <= x < 2**63 for x in v):
            return ['ti', list(v)]
        return ['t', [_enc_value(x) for x in v]]
    if t is list:
        return ['l', [_enc_value(x) for x in v]]
    if t is frozenset or t is set:
        return ['fs' if t is frozenset else 's', [_enc_value(x) for x in _sorted_any(v)]]
    if t is dict:
        return ['d', [[_enc_value(k), _enc_value(x)] for k, x in v.items()]]
    if isinstance(v, np.ndarray):
        return _enc_array(v)
    if isinstance(v, np.generic) and not v.dtype.hasobject:
        return ['g', _enc_dtype(v.dtype), v.tobytes()]
    if isinstance(v, np.dtype):
        return ['dtype', _enc_dtype(v)]
    raise TypeError(f"cannot cache a value of type {t.__name__}")


def _dec_value(obj):
    if not isinstance(obj, list):
        return obj
    tag = obj[0]
    if tag == 'ti':
        return tuple(obj[1])
    if tag == 't':
        return tuple([_dec_value(x) for x in obj[1]])
    if tag == 'l':
        return [_dec_value(x) for x in obj[1]]
    if tag == 'fs':
        return frozenset(_dec_value(x) for x in obj[1])
    if tag == 's':
        return {_dec_value(x) for x in obj[1]}
    if tag == 'd':
        return {_dec_value(k): _dec_value(x) for k, x in obj[1]}
    if tag in ('a', 'ar', 'af', 'ao'):
        return _dec_array(obj)
    if tag == 'g':
        dt = _dec_dtype(obj[1])
        if dt.itemsize == 0:   # np.str_(''), np.bytes_(b''): frombuffer refuses these
            return np.zeros(1, dtype=dt)[0]
        return np.frombuffer(obj[2], dtype=dt)[0]
    if tag == 'dtype':
        return _dec_dtype(obj[1])
    if tag == 'bigint':
        return int(obj[1])
    raise ValueError(f"unknown value tag {tag!r}")


def encode_file_index(fi: FileIndex) -> list:
    return [fi.path, fi.size, fi.mtime, _enc_array(fi.train_ids), _enc_array(fi.valid),
            sorted(fi.control_sources), sorted(fi.instrument_sources),
            _enc_value(fi.legacy_pairs), fi.digest]


# Decoders call the record constructors with the stored digest, as ``build``
# would have made them: recomputing 20,000 digests doubled the load time. The
# stored digests stay right because the layout fingerprint includes sample
# digests, so a change of the digest algorithm retires old caches.

def decode_file_index(obj) -> FileIndex:
    path, size, mtime, tids, valid, ctrl, inst, legacy, digest = obj
    tids, valid = _dec_array(tids), _dec_array(valid)
    if tids.dtype != np.uint64 or valid.dtype != np.bool_ or tids.shape != valid.shape:
        raise ValueError("malformed FileIndex entry")
    # frozenset(x) of a frozenset is x itself: shared source sets stay shared.
    return FileIndex(str(path), int(size), float(mtime), tids, valid, frozenset(ctrl),
                     frozenset(inst), _dec_value(legacy), str(digest))


def encode_file_meta(m: FileMeta) -> list:
    return [m.format_version, _enc_value(m.metadata_pairs),
            None if m.timestamps is None else _enc_array(m.timestamps),
            _enc_value(m.reduction_sources), _enc_value(m.errata_sources),
            _enc_value(m.run_sources), m.is_voview, m.digest]


def decode_file_meta(obj) -> FileMeta:
    fmt, md, ts, red, err, runs, voview, digest = obj
    md = _dec_value(md)
    if type(md) is not tuple:
        raise ValueError("malformed FileMeta entry")
    return FileMeta(str(fmt), md, None if ts is None else _dec_array(ts),
                    frozenset(_dec_value(red)), frozenset(_dec_value(err)),
                    frozenset(_dec_value(runs)), bool(voview), str(digest))


def encode_source_index(si: SourceFileIndex) -> list:
    return [si.source, si.section, list(si.groups), [_enc_array(a) for a in si.firsts],
            [_enc_array(a) for a in si.counts], si.digest]


def decode_source_index(obj) -> SourceFileIndex:
    source, section, groups, firsts, counts, digest = obj
    if not len(groups) == len(firsts) == len(counts):
        raise ValueError("malformed SourceFileIndex entry")
    return SourceFileIndex(source, section, tuple(groups),
                           tuple(_dec_array(a) for a in firsts),
                           tuple(_dec_array(a) for a in counts), str(digest))


def encode_key_info(ki: KeyInfo) -> list:
    return [ki.key, _enc_dtype(ki.dtype), _enc_value(ki.entry_shape), ki.length,
            _enc_value(ki.chunks), _enc_value(ki.filters), ki.is_virtual, _enc_value(ki.units)]


def decode_key_info(obj) -> KeyInfo:
    key, dt, shape, length, chunks, filters, virtual, units = obj
    return KeyInfo(key, _dec_dtype(dt), _dec_value(shape), length, _dec_value(chunks),
                   _dec_value(filters), virtual, _dec_value(units))


def encode_source_keys(sk: SourceKeys) -> list:
    return [sk.source, sk.section, _enc_value(sk.keys)]


def decode_source_keys(obj) -> SourceKeys:
    source, section, keys = obj
    return SourceKeys(source, section, _dec_value(keys))


_CODECS = {
    FileIndex: ('FileIndex', encode_file_index),
    FileMeta: ('FileMeta', encode_file_meta),
    SourceFileIndex: ('SourceFileIndex', encode_source_index),
    KeyInfo: ('KeyInfo', encode_key_info),
    SourceKeys: ('SourceKeys', encode_source_keys),
}
_DECODERS = {
    'FileIndex': decode_file_index, 'FileMeta': decode_file_meta,
    'SourceFileIndex': decode_source_index, 'KeyInfo': decode_key_info,
    'SourceKeys': decode_source_keys,
}


def pack_record(rec) -> bytes:
    """Encode one tier record as msgpack bytes (as stored in the cache).

    >>> from xfeldata.core.records import KeyInfo
    >>> ki = KeyInfo('data.adc', np.dtype('<u2'), (16,), 100, (10, 16))
    >>> unpack_record(pack_record(ki)) == ki
    True
    """
    name, enc = _CODECS[type(rec)]
    return msgpack.packb([name, enc(rec)], use_bin_type=True, unicode_errors=_UNICODE_ERRORS)


def unpack_record(data: bytes):
    """Decode bytes from :func:`pack_record` back into an equal record."""
    name, obj = msgpack.unpackb(data, raw=False, unicode_errors=_UNICODE_ERRORS)
    return _DECODERS[name](obj)


# -- the body of a cache file ------------------------------------------------------
#
# Opening a cached run decodes tier 0 of every file, so its layout is made for
# that: columns (one list per FileIndex field) rather than a map per file, and
# each distinct source list and each distinct train-ID or validity array
# stored once and referred to by number. The files of a sequence share their
# train IDs and nearly all validity arrays are "all valid": a 20,000-file run
# has a few hundred distinct arrays, each decoded once into a read-only array
# that the records share.
#
#     body = [source lists, arrays, columns]
#     columns = [names, sizes, mtimes, paths, train-ID refs, validity refs,
#                control refs, instrument refs, legacy (None = none), digests,
#                tiers (packed tiers above 0, or None)]
#
# Elsewhere (merging, tests) a file's entry is the map
# ``{'size', 'mtime', 'index': encode_file_index(...) with frozensets for the
# source lists, 'tiers'}``; pack_body / CacheContents.entries convert.

_N_COLUMNS = 11


def pack_body(files: dict) -> bytes:
    """The body bytes for ``{file name: entry}``."""
    sources, source_refs = [], {}
    arrays, array_refs = [], {}

    def ref_sources(names):
        names = tuple(sorted(names))
        if names not in source_refs:
            source_refs[names] = len(sources)
            sources.append(names)
        return source_refs[names]

    def ref_array(enc):
        key = msgpack.packb(enc, use_bin_type=True)   # exact: equal bytes, equal array
        if key not in array_refs:
            array_refs[key] = len(arrays)
            arrays.append(enc)
        return array_refs[key]

    columns = [[] for _ in range(_N_COLUMNS)]
    (names, sizes, mtimes, paths, tids, valid, ctrl, inst, legacy, digests,
     tiers) = columns
    for name, entry in files.items():
        path, size, mtime, t, v, c, i, lg, digest = entry['index']
        names.append(name)
        sizes.append(entry['size'])
        mtimes.append(entry['mtime'])
        paths.append(path)
        tids.append(ref_array(t))
        valid.append(ref_array(v))
        ctrl.append(ref_sources(c))
        inst.append(ref_sources(i))
        legacy.append(None if lg == ['ti', []] else lg)
        digests.append(digest)
        tiers.append(entry['tiers'])
    return msgpack.packb([sources, arrays, columns], use_bin_type=True,
                         unicode_errors=_UNICODE_ERRORS)


class CacheContents:
    """The decoded body of a cache file, decoding tier-0 records on request.

    Raises ValueError (or another exception, for msgpack garbage) when the
    body is malformed as a whole; a malformed entry is found when it is used.
    """
    __slots__ = ('sources', 'arrays', 'columns', 'positions', 'table',
                 'conflict_free', 'summary')

    def __init__(self, body: bytes):
        sources, arrays, columns = msgpack.unpackb(
            body, raw=False, strict_map_key=True, unicode_errors=_UNICODE_ERRORS)
        if len(columns) != _N_COLUMNS or len({len(c) for c in columns}) != 1:
            raise ValueError("malformed cache body")
        # Types checked once per column (in C), not once per file decoded.
        (names, sizes, mtimes, paths, _, _, _, _, _, digests, _) = columns
        for col, types in ((names, {str}), (sizes, {int}), (mtimes, {float}),
                           (paths, {str}), (digests, {str})):
            if not set(map(type, col)) <= types:
                raise ValueError("malformed cache body")
        self.sources = [frozenset(s) for s in sources]
        self.arrays = arrays
        self.columns = columns
        self.positions = dict(zip(columns[0], range(len(columns[0]))))
        self.table = _ArrayTable(arrays)
        #: Set from the file's header: the tier-0 records of all its entries,
        #: together, have no source conflict (suspect trains included).
        self.conflict_free = False
        #: Set from the header with the verdict: the train IDs of the
        #: RunSummary of those records (index_cache._unpack_summary), or None.
        self.summary = None

    def source_unions(self) -> tuple:
        """(control, instrument) source names of all entries, as frozensets."""
        sources = self.sources
        _, _, _, _, _, _, ctrl, inst, _, _, _ = self.columns
        return tuple(frozenset().union(*[sources[i] for i in set(refs)])
                     for refs in (ctrl, inst))

    def file_indexes(self, requests, log=None) -> tuple:
        """Tier 0 of the requested files that the cache holds, as they are now.

        ``requests`` yields ``(path, name, os.stat_result)``: the file's
        absolute path, its name (the cache's key) and its stat now. Returns
        ``({path: FileIndex}, {FileIndex.key: packed tiers})`` for the files
        whose entry has their size and mtime; a damaged entry is a miss (and
        is logged with ``log``, a logging function).

        One loop with everything bound to locals: it runs once per file of
        the run on every warm open. The records' arrays are checked here but
        decoded on first use (:class:`_CachedFileIndex`): opening a run whose
        cache has a run summary reads none of them.
        """
        (_, sizes, mtimes, paths, tids, valid, ctrl, inst, legacy, digests,
         tiers) = self.columns
        positions, sources, table = self.positions, self.sources, self.table
        length, build = table.length, FileIndex.build
        checked = set()   # (train-ID ref, validity ref) pairs of equal lengths
        # Records made here, slot by slot (as FileIndex._from_fields does):
        # a function call per file would cost as much again in a new process.
        new, cls = _object_new, _CachedFileIndex
        set_path, set_size, set_mtime, set_table, set_t, set_v = (
            _SET_PATH, _SET_SIZE, _SET_MTIME, _SET_TABLE, _SET_T_REF, _SET_V_REF)
        set_ctrl, set_inst, set_legacy, set_digest = (
            _SET_CONTROL, _SET_INSTRUMENT, _SET_LEGACY, _SET_DIGEST)
        found, pending = {}, {}
        for path, name, st in requests:
            pos = positions.get(name)
            if pos is None:
                continue
            try:
                size, mtime = sizes[pos], mtimes[pos]
                if size != st.st_size or mtime != st.st_mtime:
                    continue
                t, v = tids[pos], valid[pos]
                if (t, v) not in checked:
                    if length(t, _UINT64_STR) != length(v, _BOOL_STR):
                        raise ValueError("malformed FileIndex entry")
                    checked.add((t, v))
                lg = legacy[pos]
                lg = () if lg is None else _dec_value(lg)
                if type(lg) is not tuple:
                    raise ValueError("malformed FileIndex entry")
                if paths[pos] == path:
                    # The stored digest is reused (see the decoders above):
                    # the CRC guards it.
                    fi = new(cls)
                    set_path(fi, path)
                    set_size(fi, size)
                    set_mtime(fi, mtime)
                    set_table(fi, table)
                    set_t(fi, t)
                    set_v(fi, v)
                    set_ctrl(fi, sources[ctrl[pos]])
                    set_inst(fi, sources[inst[pos]])
                    set_legacy(fi, lg)
                    set_digest(fi, digests[pos])
                else:   # same run through another path: the path is in the digest
                    fi = build(path, size, mtime, table.array(t), table.array(v),
                               sources[ctrl[pos]], sources[inst[pos]], lg)
            except Exception as e:   # a damaged entry is a miss, whatever its damage
                if log is not None:
                    log("Ignoring damaged index cache entry for %s: %s", path, e)
                continue
            found[path] = fi
            if tiers[pos] is not None:
                pending[path, size, mtime] = tiers[pos]   # fi.key
        return found, pending

    def entries(self) -> dict:
        """``{file name: entry}`` of every file (for merging and tests)."""
        (names, sizes, mtimes, paths, tids, valid, ctrl, inst, legacy, digests,
         tiers) = self.columns
        out = {}
        for pos, name in enumerate(names):
            lg = ['ti', []] if legacy[pos] is None else legacy[pos]
            out[name] = {'size': sizes[pos], 'mtime': mtimes[pos], 'tiers': tiers[pos],
                         'index': [paths[pos], sizes[pos], mtimes[pos],
                                   self.arrays[tids[pos]], self.arrays[valid[pos]],
                                   self.sources[ctrl[pos]], self.sources[inst[pos]], lg,
                                   digests[pos]]}
        return out


_UINT64 = np.dtype(np.uint64)
_BOOL = np.dtype(np.bool_)
# How the encoder writes these dtypes (_enc_dtype): entries of another byte
# order decode to arrays of another dtype, which a FileIndex cannot hold.
_UINT64_STR = _UINT64.str
_BOOL_STR = _BOOL.str


class _ArrayTable:
    """The arrays of one cache body, decoded on first use, each once.

    :meth:`length` checks an entry without decoding it, so thoroughly that
    decoding it later cannot fail: records made from checked entries
    decode their arrays when first asked (:class:`_CachedFileIndex`).
    """
    __slots__ = ('arrays', 'decoded', 'lengths')

    def __init__(self, arrays):
        self.arrays = arrays
        self.decoded = [None] * len(arrays)
        self.lengths = {}   # (ref, dtype string) -> length, for checked entries

    def length(self, ref, dt_str) -> int:
        """The length of 1-D array entry ``ref`` of dtype ``dt_str``; ValueError if malformed."""
        n = self.lengths.get((ref, dt_str))
        if n is None:
            n = self.lengths[ref, dt_str] = _checked_length(self.arrays[ref], dt_str)
        return n

    def array(self, ref) -> np.ndarray:
        """Array entry ``ref``, decoded (call :meth:`length` first)."""
        a = self.decoded[ref]
        if a is None:
            a = self.decoded[ref] = _dec_array(self.arrays[ref])
        return a


def _checked_length(obj, dt_str) -> int:
    """The length of a 1-D array entry of dtype ``dt_str``, if it decodes; else ValueError."""
    tag, dt, shape, data = obj
    if dt != dt_str or type(shape) is not list or len(shape) != 1:
        raise ValueError("malformed FileIndex entry")
    n = shape[0]
    if type(n) is not int or n < 0:
        raise ValueError("malformed FileIndex entry")
    if tag == 'a':
        ok = type(data) is bytes and len(data) == n * _SIMPLE_DTYPES_SIZE[dt_str]
    elif tag == 'ar':   # as _enc_array writes them: start and step within the dtype
        ok = (dt_str == _UINT64_STR and type(data) is list and len(data) == 2
              and all(type(x) is int and 0 <= x < 2**64 for x in data))
    elif tag == 'af':
        ok = (type(data) is bool) if dt_str == _BOOL_STR else (
            type(data) is int and 0 <= data < 2**64)
    else:
        ok = False
    if not ok:
        raise ValueError("malformed FileIndex entry")
    return n


_SIMPLE_DTYPES_SIZE = {_UINT64_STR: 8, _BOOL_STR: 1}

# FileIndex's slots for its arrays (a subclass's properties hide them).
_TRAIN_IDS_SLOT = FileIndex.__dict__['train_ids']
_VALID_SLOT = FileIndex.__dict__['valid']


def _lazy_array(slot) -> property:
    """A property reading ``slot``, decoding the record's arrays first if it is unset."""
    def get(self) -> np.ndarray:
        try:
            return slot.__get__(self)
        except AttributeError:
            self._decode()
            return slot.__get__(self)
    return property(get, slot.__set__)


class _CachedFileIndex(FileIndex):
    """A :class:`FileIndex` from the index cache, its arrays decoded when first used.

    Opening a run from a cache with a run summary needs none of its files'
    train IDs: this saves decoding them (an array or two per aggregator and
    sequence). In all else it is a FileIndex: equal (by digest) to the same
    record scanned from the file, and pickled (or copied) as a plain one.
    """
    __slots__ = ('_table', '_t_ref', '_v_ref')

    def _decode(self):
        # Checked when made (_ArrayTable.length): this cannot fail. Two
        # threads may both decode; they set equal arrays.
        table = self._table
        _TRAIN_IDS_SLOT.__set__(self, table.array(self._t_ref))
        _VALID_SLOT.__set__(self, table.array(self._v_ref))

    # Each reads FileIndex's slot, decoding first if unset. The setter is
    # for attrs' __init__ (attrs.evolve), which sets fields with
    # object.__setattr__; users still meet a frozen class.
    train_ids = _lazy_array(_TRAIN_IDS_SLOT)
    valid = _lazy_array(_VALID_SLOT)

    def __repr__(self):
        return 'FileIndex' + FileIndex.__repr__(self)[len('_CachedFileIndex'):]

    def __reduce__(self):
        return (FileIndex._from_fields,
                (self.path, self.size, self.mtime, self.train_ids, self.valid,
                 self.control_sources, self.instrument_sources, self.legacy_pairs,
                 self.digest))


_SET_TABLE = _CachedFileIndex._table.__set__
_SET_T_REF = _CachedFileIndex._t_ref.__set__
_SET_V_REF = _CachedFileIndex._v_ref.__set__
