"""The on-disk chunk tables of the direct-chunk path (xfeldata._chunk_cache)."""
import os
import time

import h5py
import msgpack
import numpy as np
import pytest

from xfeldata import _chunk_cache, _direct
from xfeldata._execute import execute
from xfeldata.core.plan import ReadPlan, ReadStep


class Recorder:
    """A dataset id that counts chunk_iter calls (HDF5's chunk index walk)."""

    def __init__(self, dsid):
        self._dsid, self.walks = dsid, 0

    def __getattr__(self, name):
        return getattr(self._dsid, name)

    def chunk_iter(self, callback):
        self.walks += 1
        return self._dsid.chunk_iter(callback)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv('XFELDATA_CACHE', str(tmp_path / 'cache'))
    monkeypatch.setattr(_direct, '_memo', {})
    monkeypatch.setattr(_direct, 'MIN_CHUNK_BYTES', 0)
    monkeypatch.setattr(_chunk_cache, 'MIN_CHUNKS', 8)
    return tmp_path / 'cache'


def _write(path, n=40, value=0):
    data = (np.arange(n * 30, dtype='<u4').reshape(n, 30) + value)
    with h5py.File(path, 'w') as f:
        f.create_dataset('a', data=data, chunks=(1, 30), compression='gzip')
        f.create_dataset('b', data=data[:, :10], chunks=(2, 10), compression='gzip',
                         shuffle=True)
        f.create_dataset('few', data=data[:4], chunks=(1, 30), compression='gzip')
        f['INDEX/trainId'] = np.array([10000], np.uint64)
        for k in ('dataSourceId', 'root', 'deviceId'):
            f[f'METADATA/dataSources/{k}'] = np.array([], dtype=h5py.string_dtype())
    return data


def _table(path, name, new_process=True):
    """storage_chunks as a new process would get it: ``(table, chunk_iter calls)``."""
    if new_process:
        _direct._memo.clear()
    with h5py.File(path, 'r') as f:
        rec = Recorder(f[name].id)
        return _direct.storage_chunks(rec, str(path), '/' + name), rec.walks


def _read(path, name, data):
    n = data.shape[0]
    plan = ReadPlan(data.dtype, data.shape, (ReadStep(str(path), '/' + name, 0, n, 0, n),))
    return execute(plan, read_path='direct')


def _same(t1, t2):
    return (t1.shape, t1.chunk_shape, t1.dtype, t1.filters) == (
        t2.shape, t2.chunk_shape, t2.dtype, t2.filters) and all(
        np.array_equal(getattr(t1, k), getattr(t2, k))
        for k in ('offsets', 'addresses', 'sizes', 'masks'))


def test_round_trip_spares_the_chunk_index_walk(cache, tmp_path):
    path = tmp_path / 'f.h5'
    data = _write(path)
    first, walks = _table(path, 'a')
    assert walks == 1 and first.n_chunks == 40
    cfile = _chunk_cache.cache_file(path)
    assert cfile.startswith(str(cache)) and os.path.exists(cfile)
    again, walks = _table(path, 'a')
    assert walks == 0 and _same(again, first)
    np.testing.assert_array_equal(_read(path, 'a', data), data)
    # A second dataset of the file joins the same cache file; small tables stay out.
    b, _ = _table(path, 'b')
    _table(path, 'few')
    with open(cfile, 'rb') as f:
        assert sorted(msgpack.unpackb(f.read())['tables']) == ['/a', '/b']
    assert _same(_table(path, 'a')[0], first) and _same(_table(path, 'b')[0], b)
    assert _table(path, 'few')[1] == 1


def test_changed_file_is_read_again(cache, tmp_path):
    path = tmp_path / 'f.h5'
    _write(path)
    old, _ = _table(path, 'a')
    time.sleep(0.01)
    data = _write(path, n=48, value=7)       # rewritten: new size, mtime, chunks
    new, walks = _table(path, 'a')
    assert walks == 1 and new.n_chunks == 48 and not _same(new, old)
    np.testing.assert_array_equal(_read(path, 'a', data), data)
    assert _table(path, 'a')[1] == 0         # the new table was cached in turn


def test_same_bytes_other_mtime_is_a_miss(cache, tmp_path):
    path = tmp_path / 'f.h5'
    _write(path)
    _table(path, 'a')
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    assert _table(path, 'a')[1] == 1


@pytest.mark.parametrize('damage', ['garbage', 'truncated', 'table', 'outside', 'version'])
def test_damaged_cache_is_ignored(cache, tmp_path, damage):
    path = tmp_path / 'f.h5'
    data = _write(path)
    first, _ = _table(path, 'a')
    cfile = _chunk_cache.cache_file(path)
    with open(cfile, 'rb') as f:
        raw = f.read()
    head = msgpack.unpackb(raw)
    if damage == 'garbage':
        raw = b'\x93not msgpack at all'
    elif damage == 'truncated':
        raw = raw[:len(raw) // 2]
    elif damage == 'version':
        head['version'] = 99
        raw = msgpack.packb(head)
    else:
        blob = bytearray(head['tables']['/a'])
        if damage == 'table':
            blob[len(blob) // 2] ^= 0xFF          # zlib's checksum notices
        else:                                     # valid, but pointing past the file
            import zlib
            fields = msgpack.unpackb(zlib.decompress(bytes(blob)))
            fields[6] = (np.frombuffer(fields[6], '<u8') + (1 << 40)).tobytes()
            blob = zlib.compress(msgpack.packb(fields))
        head['tables']['/a'] = bytes(blob)
        raw = msgpack.packb(head)
    with open(cfile, 'wb') as f:
        f.write(raw)
    table, walks = _table(path, 'a')
    assert walks == 1 and _same(table, first)
    np.testing.assert_array_equal(_read(path, 'a', data), data)


def test_cache_off_writes_nothing(cache, tmp_path, monkeypatch):
    monkeypatch.setenv('XFELDATA_CACHE', 'off')
    path = tmp_path / 'f.h5'
    data = _write(path)
    assert _chunk_cache.cache_file(path) is None
    assert _table(path, 'a')[1] == 1 and _table(path, 'a')[1] == 1
    np.testing.assert_array_equal(_read(path, 'a', data), data)
    assert not cache.exists()
    assert sorted(os.listdir(tmp_path)) == ['f.h5']


def test_unwritable_cache_folder_is_harmless(cache, tmp_path):
    cache.mkdir()
    (cache / f'chunks-v{_chunk_cache.CACHE_VERSION}').write_text('a file, not a folder')
    path = tmp_path / 'f.h5'
    data = _write(path)
    assert _table(path, 'a')[1] == 1
    np.testing.assert_array_equal(_read(path, 'a', data), data)


# -- the folder's size cap ------------------------------------------------------------

@pytest.mark.parametrize('env, expected', [
    (None, _chunk_cache.DEFAULT_MAX_MB * 2**20), ('0.5', 2**19), ('0', 0),
    ('lots', _chunk_cache.DEFAULT_MAX_MB * 2**20), ('nan', _chunk_cache.DEFAULT_MAX_MB * 2**20),
    ('inf', _chunk_cache.DEFAULT_MAX_MB * 2**20), ('-3', 0),
])
def test_size_cap_from_the_environment(monkeypatch, env, expected):
    if env is None:
        monkeypatch.delenv('XFELDATA_CHUNK_CACHE_MAX_MB', raising=False)
    else:
        monkeypatch.setenv('XFELDATA_CHUNK_CACHE_MAX_MB', env)
    assert _chunk_cache.max_bytes() == expected


def test_the_least_recently_used_tables_go_first(cache, tmp_path, monkeypatch):
    paths = []
    for i in range(4):
        p = tmp_path / f'f{i}.h5'
        _write(p, value=i)
        paths.append(p)
    folder = cache / f'chunks-v{_chunk_cache.CACHE_VERSION}'
    t0 = time.time() - 1000
    for i, p in enumerate(paths[:3]):   # f0, f1, f2 cached, in that order of use
        _table(p, 'a')
        os.utime(_chunk_cache.cache_file(p), (t0 + i, t0 + i))
    sizes = {p: os.path.getsize(_chunk_cache.cache_file(p)) for p in paths[:3]}
    assert _table(paths[0], 'a')[1] == 0   # a load: f0 is now the most recently used
    # Room for about two files: caching f3 removes f1, then f2; f0 and f3 stay.
    limit = int((max(sizes.values()) * 2 + 50) / 0.8) + 1
    monkeypatch.setenv('XFELDATA_CHUNK_CACHE_MAX_MB', str(limit / 2**20))
    _table(paths[3], 'a')
    left = {n for n in os.listdir(folder) if n.endswith('.msgpack')}
    assert left == {os.path.basename(_chunk_cache.cache_file(p)) for p in (paths[0], paths[3])}
    assert sum(os.path.getsize(folder / n) for n in left) <= limit
    assert _table(paths[1], 'a')[1] == 1   # removed: read from the file again


def test_a_zero_cap_writes_nothing(cache, tmp_path, monkeypatch):
    monkeypatch.setenv('XFELDATA_CHUNK_CACHE_MAX_MB', '0')
    _write(tmp_path / 'f.h5')
    assert _table(tmp_path / 'f.h5', 'a')[1] == 1
    assert _table(tmp_path / 'f.h5', 'a')[1] == 1
    assert not (cache / f'chunks-v{_chunk_cache.CACHE_VERSION}').exists()
