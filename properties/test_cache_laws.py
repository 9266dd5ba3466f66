"""Round-trip laws of the index cache encoding: decode(encode(record)) == record.

Equality of FileIndex, FileMeta and SourceFileIndex goes through their digest,
so these laws also check that a decoded record hashes and compares like the
original; dtypes are compared including h5py's metadata (vlen strings, enums,
references), which numpy's ``==`` ignores.
"""
import attrs
import h5py
import pytest
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from xfeldata import _cache_codec, index_cache
from xfeldata.core.records import FileIndex, FileMeta, KeyInfo, SourceFileIndex, SourceKeys

# Names include every code point, also lone surrogates (undecodable file names).
names = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
small_ints = st.integers(0, 2**16)


def uint64_arrays(n):
    return hnp.arrays(np.uint64, n, elements=st.integers(0, 2**64 - 1))


# -- dtypes ----------------------------------------------------------------------

h5py_dtypes = st.sampled_from([
    h5py.string_dtype('utf-8'), h5py.string_dtype('ascii'), h5py.string_dtype('utf-8', 16),
    h5py.string_dtype('ascii', 3), h5py.enum_dtype({'OFF': 0, 'ON': 1}, np.uint8),
    h5py.vlen_dtype(np.float32), h5py.vlen_dtype(np.dtype('>i4')),
    h5py.ref_dtype, h5py.regionref_dtype,
])
plain_dtypes = hnp.scalar_dtypes() | hnp.byte_string_dtypes() | hnp.unicode_string_dtypes()


def _struct(fields):
    return np.dtype([(f'f{i}', dt) for i, dt in enumerate(fields)])


dtypes = st.recursive(
    plain_dtypes | h5py_dtypes,
    lambda inner: (st.lists(inner, min_size=1, max_size=4).map(_struct)
                   | st.tuples(inner, st.tuples(st.integers(1, 3), st.integers(1, 3)))
                   .map(np.dtype)),
    max_leaves=6,
) | hnp.nested_dtypes()


def same_dtype(a: np.dtype, b: np.dtype) -> bool:
    """Equal, including byte order, field layout, titles and h5py metadata."""
    if a != b or a.str != b.str or a.itemsize != b.itemsize:
        return False
    if (a.metadata or {}) != (b.metadata or {}):
        return False
    if (a.names is None) != (b.names is None) or (a.subdtype is None) != (b.subdtype is None):
        return False
    if a.names is not None:
        if a.names != b.names or a.isalignedstruct != b.isalignedstruct:
            return False
        for n in a.names:
            fa, fb = a.fields[n], b.fields[n]
            if fa[1:] != fb[1:] or not same_dtype(fa[0], fb[0]):
                return False
    if a.subdtype is not None:
        return a.subdtype[1] == b.subdtype[1] and same_dtype(a.subdtype[0], b.subdtype[0])
    return True


def via_msgpack(value):
    """Encode a dtype as the cache does, through real msgpack bytes, and decode."""
    import msgpack
    data = msgpack.packb(_cache_codec._enc_dtype(value), use_bin_type=True)
    return _cache_codec._dec_dtype(msgpack.unpackb(data, raw=False))


@given(dtypes)
def test_dtype_round_trip(dt):
    back = via_msgpack(dt)
    assert same_dtype(back, dt), (dt, back)
    assert h5py.check_string_dtype(back) == h5py.check_string_dtype(dt)
    assert h5py.check_vlen_dtype(back) == h5py.check_vlen_dtype(dt)
    assert h5py.check_enum_dtype(back) == h5py.check_enum_dtype(dt)


# -- records ---------------------------------------------------------------------

@st.composite
def file_indexes(draw):
    n = draw(st.integers(0, 40))
    return FileIndex.build(
        draw(names), draw(st.integers(0, 2**63 - 1)),
        draw(st.floats(allow_nan=False, allow_infinity=False)),
        draw(uint64_arrays(n)), draw(hnp.arrays(np.bool_, n)),
        draw(st.frozensets(names, max_size=5)), draw(st.frozensets(names, max_size=5)),
        draw(st.dictionaries(names, names, max_size=3)))


# Values of METADATA datasets and other open-ended fields. Sets are left out:
# a digest uses repr, and a set's repr depends on its insertion history.
scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | names
           | st.binary(max_size=8)
           | hnp.from_dtype(np.dtype('f8')) | hnp.from_dtype(np.dtype('<i4'))
           | hnp.from_dtype(np.dtype('U4')) | hnp.from_dtype(np.dtype('S4'))
           | hnp.from_dtype(np.dtype('>u2')))
values = st.recursive(
    scalars | hnp.arrays(hnp.scalar_dtypes(), hnp.array_shapes(min_dims=0, max_side=3)),
    lambda inner: st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(names, inner, max_size=3),
    max_leaves=8)


@st.composite
def file_metas(draw):
    n = draw(st.integers(0, 20))
    return FileMeta.build(
        draw(names), draw(st.dictionaries(names, values, max_size=4)),
        draw(st.none() | uint64_arrays(n)),
        draw(st.frozensets(names, max_size=3)), draw(st.frozensets(names, max_size=3)),
        draw(st.frozensets(names, max_size=3)), draw(st.booleans()))


@st.composite
def source_indexes(draw):
    n = draw(st.integers(0, 20))
    groups = draw(st.dictionaries(names, st.tuples(uint64_arrays(n), uint64_arrays(n)),
                                  max_size=4))
    return SourceFileIndex.build(draw(names), draw(st.sampled_from(
        ['CONTROL', 'INSTRUMENT', 'REDUCTION', 'ERRATA'])), groups)


shapes = st.lists(small_ints, max_size=4).map(tuple)
key_infos = st.builds(
    KeyInfo, names, dtypes, shapes, st.integers(0, 2**40),
    st.none() | st.lists(st.integers(1, 2**16), min_size=1, max_size=4).map(tuple),
    st.lists(st.tuples(small_ints, st.lists(st.integers(0, 2**32 - 1), max_size=4)
                       .map(tuple)), max_size=3).map(tuple),
    st.booleans(),
    st.lists(st.tuples(names, names), max_size=4).map(tuple))

source_keys = st.builds(SourceKeys, names, st.sampled_from(['CONTROL', 'INSTRUMENT']),
                        st.frozensets(names, max_size=6))


def assert_arrays_identical(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    assert not b.flags.writeable


@given(file_indexes())
def test_file_index_round_trip(fi):
    back = index_cache.unpack_record(index_cache.pack_record(fi))
    assert back == fi and hash(back) == hash(fi) and back.digest == fi.digest
    assert (back.path, back.size, back.mtime) == (fi.path, fi.size, fi.mtime)
    assert type(back.size) is int and type(back.mtime) is float
    assert_arrays_identical(back.train_ids, fi.train_ids)
    assert_arrays_identical(back.valid, fi.valid)
    assert back.legacy_pairs == fi.legacy_pairs
    assert back.control_sources == fi.control_sources
    assert back.instrument_sources == fi.instrument_sources


@given(file_metas())
def test_file_meta_round_trip(meta):
    back = index_cache.unpack_record(index_cache.pack_record(meta))
    assert back == meta and back.digest == meta.digest
    assert back.format_version == meta.format_version
    assert (back.timestamps is None) == (meta.timestamps is None)
    if meta.timestamps is not None:
        assert_arrays_identical(back.timestamps, meta.timestamps)
    assert [type(v) for _, v in back.metadata_pairs] == [type(v) for _, v in meta.metadata_pairs]
    assert (back.reduction_sources, back.errata_sources, back.run_sources, back.is_voview) == \
        (meta.reduction_sources, meta.errata_sources, meta.run_sources, meta.is_voview)


@given(source_indexes())
def test_source_index_round_trip(si):
    back = index_cache.unpack_record(index_cache.pack_record(si))
    assert back == si and back.digest == si.digest
    assert (back.source, back.section, back.groups) == (si.source, si.section, si.groups)
    for a, b in zip(back.firsts + back.counts, si.firsts + si.counts):
        assert_arrays_identical(a, b)


@given(key_infos)
def test_key_info_round_trip(ki):
    back = index_cache.unpack_record(index_cache.pack_record(ki))
    assert back == ki and hash(back) == hash(ki)
    assert same_dtype(back.dtype, ki.dtype)
    assert type(back.entry_shape) is tuple and type(back.filters) is tuple


@given(source_keys)
def test_source_keys_round_trip(sk):
    back = index_cache.unpack_record(index_cache.pack_record(sk))
    assert back == sk and type(back.keys) is frozenset


@given(values)
def test_value_round_trip(v):
    # The tagged value encoding keeps types: what digests (repr) see stays the same.
    import msgpack
    data = msgpack.packb(_cache_codec._enc_value(v), use_bin_type=True,
                         unicode_errors='surrogatepass')
    back = _cache_codec._dec_value(msgpack.unpackb(data, raw=False,
                                                  unicode_errors='surrogatepass'))
    assert repr(back) == repr(v)


# Layouts the random strategies rarely reach: titles, alignment, h5py fields.
_tricky = [
    np.dtype({'names': ['a', 'b'], 'formats': [h5py.string_dtype(), '<f4'],
              'offsets': [0, 8], 'itemsize': 16, 'titles': [None, 'the b']}),
    np.dtype([('x', '<i2'), ('y', '>f8')], align=True),
    np.dtype([('s', h5py.string_dtype('ascii', 5)), ('e', h5py.enum_dtype({'A': 1}, 'i2'))]),
    np.dtype(('>u2', (2, 3))),
    np.dtype((h5py.vlen_dtype(np.uint8), (2,))),
    np.dtype(np.dtype('<u8'), metadata={'note': 'kept'}),
    np.dtype('<M8[ns]'), np.dtype('<U0'), np.dtype('V0'),
]


@pytest.mark.parametrize('dt', _tricky, ids=range(len(_tricky)))
def test_tricky_dtypes_round_trip(dt):
    assert same_dtype(via_msgpack(dt), dt)


int_dtypes = hnp.integer_dtypes(endianness='?') | hnp.unsigned_integer_dtypes(endianness='?')


@st.composite
def progressions(draw, dtypes=int_dtypes):
    """Arithmetic progressions and constant arrays (stored compactly), wrapping too."""
    dt = draw(dtypes)
    info = np.iinfo(dt)
    n = draw(st.integers(0, 300))
    start = draw(st.integers(int(info.min), int(info.max)))
    step = draw(st.sampled_from([0, 1]) | st.integers(0, int(info.max)))
    vals = (start + step * np.arange(n, dtype=object)) % (1 << (8 * dt.itemsize))
    arr = np.array([int(v) for v in vals], dtype=np.uint64).astype(dt.newbyteorder('='))
    return arr.astype(dt)


arrays = (progressions()
          | hnp.arrays(int_dtypes | hnp.boolean_dtypes() | hnp.floating_dtypes(endianness='?'),
                       hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
          | hnp.arrays(np.bool_, st.integers(0, 50), elements=st.just(True)))


@given(arrays)
def test_array_round_trip(a):
    back = _cache_codec._dec_value(_cache_codec._enc_value(a))
    assert back.dtype == a.dtype and back.dtype.str == a.dtype.str
    assert back.shape == a.shape and back.tobytes() == a.tobytes()
    assert not back.flags.writeable


# -- the cache body: tier 0 of many files in columns ----------------------------------

@st.composite
def cached_runs(draw):
    """FileIndex records of files with distinct names, some sharing array objects."""
    records = draw(st.lists(file_indexes(), max_size=6))
    out = {}
    for i, fi in enumerate(records):
        name = f'f{i}\udcff.h5'
        tids, valid = fi.train_ids, fi.valid
        if out and draw(st.booleans()):   # share another record's arrays, as sequences do
            other = draw(st.sampled_from(list(out.values())))
            tids, valid = other.train_ids, other.valid
        out[name] = FileIndex.build(f'/run/{name}', fi.size, fi.mtime, tids, valid,
                                    fi.control_sources, fi.instrument_sources,
                                    fi.legacy_pairs)
    return out


@given(cached_runs(), st.booleans())
def test_cache_body_round_trip(run, same_path):
    import os
    entries = {name: {'size': fi.size, 'mtime': fi.mtime, 'tiers': None,
                      'index': _cache_codec.encode_file_index(fi)}
               for name, fi in run.items()}
    for entry in entries.values():   # as _parse_cache gives them: frozensets
        entry['index'][5:7] = [frozenset(entry['index'][5]), frozenset(entry['index'][6])]
    contents = _cache_codec.CacheContents(_cache_codec.pack_body(entries))
    back = contents.entries()
    assert back.keys() == entries.keys()
    for name, entry in entries.items():
        assert back[name]['index'][5:7] == entry['index'][5:7]
        assert _cache_codec.decode_file_index(back[name]['index']) == run[name]

    def stat(fi, size_delta=0):
        return os.stat_result((0, 0, 0, 0, 0, 0, fi.size + size_delta, 0, fi.mtime, 0))

    requests = [((fi.path if same_path else f'/elsewhere/{name}'), name, stat(fi))
                for name, fi in run.items()]
    found, pending = contents.file_indexes(requests)
    assert len(found) == len(run) and not pending
    for (path, name, _), fi in zip(requests, run.values()):
        got = found[path]
        if same_path:
            assert got == fi and got.digest == fi.digest
        else:
            assert got == FileIndex.build(path, fi.size, fi.mtime, fi.train_ids, fi.valid,
                                          fi.control_sources, fi.instrument_sources,
                                          fi.legacy_pairs)
        assert_arrays_identical(got.train_ids, fi.train_ids)
        assert_arrays_identical(got.valid, fi.valid)
        assert type(got.size) is int and type(got.mtime) is float
    # A changed size is a miss.
    stale = [(p, n, stat(fi, 1)) for (p, n, _), fi in zip(requests, run.values())]
    assert contents.file_indexes(stale) == ({}, {})


# -- lazily decoded records: what passes the check decodes ----------------------------

_tier0_arrays = (progressions(st.just(np.dtype(np.uint64)))
                 | hnp.arrays(np.uint64, st.integers(0, 20))
                 | hnp.arrays(np.bool_, st.integers(0, 20)))
# Damage an entry could have, field by field: another tag, dtype, shape or payload.
_damage = [
    st.sampled_from(['a', 'ar', 'af', 'ao', 'x', None]),
    st.sampled_from(['<u8', '|b1', '<i8', '>u8', '<f8', 8, None]),
    st.one_of(st.lists(st.integers(-1, 30), max_size=2), st.integers(0, 5), st.none()),
    st.one_of(st.binary(max_size=40),
              st.lists(st.integers(-2**65, 2**65), min_size=2, max_size=2),   # (start, step)
              st.lists(st.integers(-2**65, 2**65), max_size=3),
              st.booleans(), st.integers(-1, 2**65), st.floats(), st.none()),
]


@settings(max_examples=400)
@given(_tier0_arrays, st.sampled_from([-1, 0, 1, 2, 3, 3, 3]), st.data())
def test_a_checked_array_entry_decodes(a, field, data):
    """_ArrayTable.length accepts an entry only if decoding it gives that many elements.

    Records made from the cache decode their arrays on first use, when a
    failure could no longer be a cache miss: the check must be exact.
    ``field`` -1: the entry as encoded; else that field is damaged.
    """
    entry = list(_cache_codec._enc_array(a))
    if field >= 0:
        entry[field] = data.draw(_damage[field])
    dt_str = np.dtype(a.dtype).str
    try:
        n = _cache_codec._checked_length(entry, dt_str)
    except (ValueError, TypeError):
        assert field >= 0   # an undamaged entry always passes
        return
    back = _cache_codec._dec_array(entry)
    assert back.dtype.str == dt_str and back.shape == (n,)
    if field < 0:
        assert back.tobytes() == a.tobytes()


def test_records_from_the_cache_decode_no_array_until_asked(tmp_path):
    """A warm open with a run summary decodes no train-ID array; asking for one does."""
    import os
    import pickle

    import xfeldata
    from xfeldata import _tiers
    from xfeldata.testing import make_demo_run
    os.environ['XFELDATA_CACHE'] = str(tmp_path / 'cache')
    try:
        make_demo_run(tmp_path / 'r0001', n_trains=6, n_modules=2)
        cold = xfeldata.RunDirectory(tmp_path / 'r0001')
        _tiers.MEMO.clear()
        index_cache.forget_runs()
        warm = xfeldata.RunDirectory(tmp_path / 'r0001')
        assert warm.train_ids == cold.train_ids and warm.all_sources == cold.all_sources
        fis = warm._index.files
        assert all(type(fi) is _cache_codec._CachedFileIndex for fi in fis)
        assert fis[0]._table.decoded == [None] * len(fis[0]._table.decoded)
        for fi, ref in zip(fis, cold._index.files):
            assert fi == ref and hash(fi) == hash(ref)
            assert_arrays_identical(fi.train_ids, ref.train_ids)
            assert_arrays_identical(fi.valid, ref.valid)
            back = pickle.loads(pickle.dumps(fi))
            assert type(back) is FileIndex and back == fi
            assert repr(fi).startswith('FileIndex(path=') and fi.path in repr(fi)
            with pytest.raises(attrs.exceptions.FrozenInstanceError):
                fi.train_ids = ref.train_ids
            moved = attrs.evolve(fi, path='/elsewhere')
            assert moved.path == '/elsewhere' and moved.train_ids is fi.train_ids
    finally:
        del os.environ['XFELDATA_CACHE']
