"""xfeldata's own index cache: location, round trip, trust rules, concurrent savers."""
import multiprocessing as mp
import os
import os.path as osp
import stat
import subprocess
import sys
import time

import h5py
import msgpack
import numpy as np
import pytest

from xfeldata import _scan, _tiers, index_cache
from xfeldata.core.records import FileMeta

RUN_FILES = ['RAW-R0001-DA01-S00000.h5', 'RAW-R0001-DA01-S00001.h5',
             'RAW-R0001-DA02-S00000.h5', 'RAW-R0001-DA03-S00000.h5']
CTRL = 'SA1_XTD2_XGM/DOOCS/MAIN'
INST = 'SA1_XTD2_XGM/DOOCS/MAIN:output'


def make_file(path, tids):
    """A minimal EuXFEL 1.0 file with one control and one instrument source."""
    tids = np.asarray(tids, np.uint64)
    n = len(tids)
    with h5py.File(path, 'w') as f:
        f['METADATA/dataFormatVersion'] = [b'1.0']
        f['METADATA/dataSources/dataSourceId'] = np.array(
            [f'CONTROL/{CTRL}'.encode(), f'INSTRUMENT/{INST}/data'.encode()])
        f['INDEX/trainId'] = tids
        f['INDEX/flag'] = np.array([i != 1 for i in range(n)], np.int32)
        f['INDEX/timestamp'] = np.arange(n, dtype=np.uint64) * 100
        f[f'INDEX/{CTRL}/first'] = np.arange(n, dtype=np.uint64)
        f[f'INDEX/{CTRL}/count'] = np.ones(n, np.uint64)
        f[f'CONTROL/{CTRL}/beamPosition/value'] = np.arange(n, dtype=np.float32)
        f[f'CONTROL/{CTRL}/beamPosition/value'].attrs['unitSymbol'] = 'm'
        f.create_dataset(f'CONTROL/{CTRL}/state/value', data=['ON'] * n,
                         dtype=h5py.string_dtype())
        f[f'INDEX/{INST}/data/first'] = np.arange(n, dtype=np.uint64) * 2
        f[f'INDEX/{INST}/data/count'] = np.full(n, 2, np.uint64)
        f.create_dataset(f'INSTRUMENT/{INST}/data/intensity', data=np.zeros((2 * n, 4), 'f4'),
                         chunks=(2, 4), compression='gzip')
    return path


@pytest.fixture(autouse=True)
def _isolated(isolated_cache):
    """Every test here starts with an empty per-test cache and memo (tests/conftest.py)."""


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / 'r0001'
    d.mkdir()
    for i, name in enumerate(RUN_FILES):
        make_file(d / name, np.arange(5) + 10000 + 5 * i)
    return d


def stats_of(d):
    return {str(p): os.stat(p) for p in sorted(d.glob('*.h5'))}


def scan_all_tiers(d):
    """Scan every file with all its tiers into the memo; returns the FileIndexes."""
    fis = []
    for p in sorted(d.glob('*.h5')):
        fi = _tiers.file_index(str(p))
        _tiers.file_meta(fi)
        _tiers.source_index(fi, CTRL, 'CONTROL')
        _tiers.source_index(fi, INST, 'INSTRUMENT')
        _tiers.source_keys(fi, CTRL, 'CONTROL')
        _tiers.key_info(fi, CTRL, 'CONTROL', 'beamPosition.value')
        _tiers.key_info(fi, CTRL, 'CONTROL', 'state.value')
        _tiers.key_info(fi, INST, 'INSTRUMENT', 'data.intensity')
        fis.append(fi)
    return fis


def memo_snapshot():
    m = _tiers.MEMO
    return (dict(m.index), dict(m.meta), dict(m.sources), dict(m.keys), dict(m.key_info))


def unpack_all():
    """Decode every packed tier the index cache left in the memo."""
    for fkey in list(_tiers.MEMO.pending):
        _tiers.MEMO.unpack_pending(fkey)


def forbid_opening(monkeypatch):
    def refuse(path, *args):
        raise AssertionError(f"opened {path}")
    monkeypatch.setattr(_scan, 'open_h5', refuse)
    monkeypatch.setattr(_scan, 'open_fid', refuse)


# -- locations -----------------------------------------------------------------

def test_cache_path_locations(tmp_path, monkeypatch, run_dir):
    p = index_cache.cache_path(run_dir)
    assert p.parent == tmp_path / 'cache' / f'index-v{index_cache.CACHE_VERSION}'
    assert p.suffix == '.msgpack'
    # Named by the resolved path: a symlink to the run shares its cache file.
    link = tmp_path / 'link'
    link.symlink_to(run_dir)
    assert index_cache.cache_path(link) == p
    assert index_cache.cache_path(tmp_path) != p

    monkeypatch.delenv('XFELDATA_CACHE')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    assert index_cache.cache_path(run_dir).parent.parent == tmp_path / 'xdg' / 'xfeldata'
    monkeypatch.delenv('XDG_CACHE_HOME')
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    assert index_cache.cache_root() == tmp_path / 'home' / '.cache' / 'xfeldata'


@pytest.mark.parametrize('value', ['off', 'OFF', '0', 'none'])
def test_disabled(run_dir, monkeypatch, tmp_path, value):
    fis = scan_all_tiers(run_dir)
    monkeypatch.setenv('XFELDATA_CACHE', value)
    assert index_cache.cache_path(run_dir) is None
    assert index_cache.save(run_dir, fis) is False
    assert index_cache.load(run_dir, stats_of(run_dir)) == {}
    assert not (tmp_path / 'cache').exists() and not (run_dir.parent / value).exists()


# -- round trip ----------------------------------------------------------------

def test_round_trip(run_dir, monkeypatch):
    before = sorted(os.listdir(run_dir))
    fis = scan_all_tiers(run_dir)
    snap = memo_snapshot()
    assert index_cache.save(run_dir, fis) is True
    assert _tiers.MEMO.dirty == set()
    assert sorted(os.listdir(run_dir)) == before   # never written into the run folder
    assert index_cache.cache_path(run_dir).is_file()

    _tiers.MEMO.clear()
    forbid_opening(monkeypatch)
    found = index_cache.load(run_dir, stats_of(run_dir))
    assert found == {fi.path: fi for fi in fis}
    # Tier 0 is decoded at once; the other tiers wait, packed, until asked for.
    assert memo_snapshot() == (snap[0], {}, {}, {}, {})
    assert set(_tiers.MEMO.pending) == {fi.key for fi in fis}
    unpack_all()
    after = memo_snapshot()
    assert after == snap
    assert all(len(table) >= len(RUN_FILES) for table in after)   # every tier was there
    assert _tiers.MEMO.dirty == set()   # loaded records are not "new"

    # Every tier is now answered without opening a file.
    fi = found[str(run_dir / RUN_FILES[0])]
    assert _tiers.file_index(fi.path) is fi
    assert _tiers.file_meta(fi).timestamps.tolist() == [0, 100, 200, 300, 400]
    first, count = _tiers.source_index(fi, INST, 'INSTRUMENT').group('data')
    assert count.tolist() == [2] * 5 and not count.flags.writeable
    ki = _tiers.key_info(fi, CTRL, 'CONTROL', 'state.value')
    assert h5py.check_string_dtype(ki.dtype).encoding == 'utf-8'
    ki = _tiers.key_info(fi, INST, 'INSTRUMENT', 'data.intensity')
    assert ki.chunks == (2, 4) and ki.filters and ki.filters[0][0] == 1   # gzip
    assert _tiers.key_info(fi, CTRL, 'CONTROL', 'beamPosition.value').units_map == {
        'unitSymbol': 'm'}
    assert fi.valid.tolist() == [True, False, True, True, True]


def test_nothing_new_is_not_rewritten(run_dir):
    fis = scan_all_tiers(run_dir)
    assert index_cache.save(run_dir, fis)
    path = index_cache.cache_path(run_dir)
    ino = os.stat(path).st_ino   # os.replace gives a new inode
    assert index_cache.save(run_dir, fis) is False
    _tiers.MEMO.clear()
    index_cache.forget_runs()
    found = index_cache.load(run_dir, stats_of(run_dir))
    assert index_cache.save(run_dir, found.values()) is False
    assert os.stat(path).st_ino == ino
    # One new tier for one file: written again.
    _tiers.source_keys(found[fis[0].path], INST, 'INSTRUMENT')
    assert index_cache.save(run_dir, found.values()) is True
    assert os.stat(path).st_ino != ino


def test_load_keeps_records_already_in_memo(run_dir):
    fis = scan_all_tiers(run_dir)
    index_cache.save(run_dir, fis)
    snap = memo_snapshot()
    found = index_cache.load(run_dir, stats_of(run_dir))
    for fi in fis:
        assert found[fi.path] is fi
    unpack_all()
    after = memo_snapshot()
    for table_before, table_after in zip(snap, after):
        assert all(table_after[k] is v for k, v in table_before.items())


def test_load_through_symlink(run_dir, tmp_path):
    index_cache.save(run_dir, scan_all_tiers(run_dir))
    _tiers.MEMO.clear()
    link = tmp_path / 'link'
    link.symlink_to(run_dir)
    found = index_cache.load(link, stats_of(link))
    assert len(found) == len(RUN_FILES)
    for path, fi in found.items():
        assert fi.path == path and path.startswith(str(link))


def test_non_utf8_file_names(tmp_path):
    # Linux names are bytes; Python shows undecodable ones with surrogates.
    d = tmp_path / os.fsdecode(b'r\xff0001')
    d.mkdir()
    make_file(d / os.fsdecode(b'RAW-\xfe.h5'), [1, 2, 3])
    fis = scan_all_tiers(d)
    assert index_cache.save(d, fis)
    _tiers.MEMO.clear()
    assert index_cache.load(d, stats_of(d)) == {fi.path: fi for fi in fis}


def test_only_requested_files_loaded(run_dir):
    index_cache.save(run_dir, scan_all_tiers(run_dir))
    _tiers.MEMO.clear()
    one = str(run_dir / RUN_FILES[2])
    found = index_cache.load(run_dir, {one: os.stat(one)})
    assert list(found) == [one] and list(_tiers.MEMO.index) == [one]


# -- trust rules ---------------------------------------------------------------

def test_stale_entries_ignored(run_dir):
    index_cache.save(run_dir, scan_all_tiers(run_dir))
    _tiers.MEMO.clear()
    changed = run_dir / RUN_FILES[1]
    st = os.stat(changed)
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    stats = stats_of(run_dir)
    found = index_cache.load(run_dir, stats)
    assert str(changed) not in found and len(found) == len(RUN_FILES) - 1
    assert all(k[0] != str(changed) for k in _tiers.MEMO.meta)

    # A different size is stale too.
    stats[str(run_dir / RUN_FILES[0])] = os.stat_result(
        tuple(st[:6]) + (st.st_size + 1,) + tuple(st[7:10]))
    _tiers.MEMO.clear()
    assert str(run_dir / RUN_FILES[0]) not in index_cache.load(run_dir, stats)


@pytest.mark.parametrize('damage', [
    lambda b: b'not msgpack at all',
    lambda b: b[:len(b) // 2],                       # truncated
    lambda b: b'',
    lambda b: msgpack.packb([1, 2, 3]),              # valid msgpack, wrong structure
    lambda b: msgpack.packb({**msgpack.unpackb(b), 'version': 999}),
    lambda b: msgpack.packb({**msgpack.unpackb(b), 'layout': 'other'}),
])
def test_corrupt_cache_ignored(run_dir, damage):
    fis = scan_all_tiers(run_dir)
    index_cache.save(run_dir, fis)
    path = index_cache.cache_path(run_dir)
    path.write_bytes(damage(path.read_bytes()))
    _tiers.MEMO.clear()
    assert index_cache.load(run_dir, stats_of(run_dir)) == {}
    assert not _tiers.MEMO.index
    # The next save replaces it with a valid cache.
    fis = scan_all_tiers(run_dir)
    assert index_cache.save(run_dir, fis)
    _tiers.MEMO.clear()
    assert len(index_cache.load(run_dir, stats_of(run_dir))) == len(RUN_FILES)


def test_changed_byte_ignored(run_dir):
    # msgpack would not notice a changed byte inside an array; the checksum does.
    index_cache.save(run_dir, scan_all_tiers(run_dir))
    path = index_cache.cache_path(run_dir)
    data = path.read_bytes()
    # Still valid msgpack, with a key name changed: only the checksum can tell.
    assert b'beamPosition.value' in data
    path.write_bytes(data.replace(b'beamPosition.value', b'beamPosiTion.value', 1))
    _tiers.MEMO.clear()
    assert index_cache.load(run_dir, stats_of(run_dir)) == {}


def rewrite_cache(path, change):
    """Change the decoded entries (tiers unpacked) and write them back as a valid cache."""
    files = {n: index_cache._expand(e) for n, e in index_cache._read_cache_file(path).items()}
    change(files)
    files = {n: index_cache._pack_tiers(e) for n, e in files.items()}
    path.write_bytes(index_cache._pack_cache(str(path), files))


def test_damaged_entry_is_a_miss(run_dir):
    fis = scan_all_tiers(run_dir)
    index_cache.save(run_dir, fis)
    path = index_cache.cache_path(run_dir)

    def damage(files):
        files[RUN_FILES[0]]['index'][3] = ['a', '<u8', [3], b'short']
        files[RUN_FILES[1]]['meta'] = ['1.0']
        files[RUN_FILES[2]]['key_info'][CTRL]['state.value'][1] = ['no such dtype tag']
    rewrite_cache(path, damage)
    _tiers.MEMO.clear()
    found = index_cache.load(run_dir, stats_of(run_dir))
    # Tier 0 is decoded when loading: a damaged one is a miss.
    assert sorted(osp.basename(p) for p in found) == RUN_FILES[1:]
    # The other tiers are decoded on first use: damaged ones install nothing,
    # not even their undamaged records, and are read from the file instead.
    unpack_all()
    assert {k[0][0] for k in _tiers.MEMO.sources} == {str(run_dir / RUN_FILES[3])}
    assert not _tiers.MEMO.pending
    fi = found[str(run_dir / RUN_FILES[2])]
    assert _tiers.key_info(fi, CTRL, 'CONTROL', 'state.value') == \
        _tiers.MEMO.key_info[fis[2].key, CTRL, 'state.value']
    assert _tiers.file_meta(found[str(run_dir / RUN_FILES[1])]).format_version == '1.0'


def test_unreadable_cache_ignored(run_dir, monkeypatch):
    index_cache.save(run_dir, scan_all_tiers(run_dir))
    path = index_cache.cache_path(run_dir)
    real_open = open

    def fake_open(file, *args, **kwargs):
        if os.fspath(file) == str(path):
            raise PermissionError(13, 'Permission denied', str(file))
        return real_open(file, *args, **kwargs)
    monkeypatch.setattr('builtins.open', fake_open)
    _tiers.MEMO.clear()
    assert index_cache.load(run_dir, stats_of(run_dir)) == {}


def test_unwritable_cache_is_silent(run_dir, tmp_path, monkeypatch):
    # A file where the cache folder should be: saving fails quietly.
    (tmp_path / 'blocked').write_text('')
    monkeypatch.setenv('XFELDATA_CACHE', str(tmp_path / 'blocked'))
    fis = scan_all_tiers(run_dir)
    assert index_cache.save(run_dir, fis) is False
    assert {fi.key for fi in fis} <= _tiers.MEMO.dirty   # still to be saved


# -- merging -------------------------------------------------------------------

def cached_files(run_dir):
    """The entries of the run's cache file, with their tiers unpacked."""
    files = index_cache._read_cache_file(index_cache.cache_path(run_dir))
    return {n: index_cache._expand(e) for n, e in files.items()}


def test_save_merges_other_files_and_drops_gone_ones(run_dir):
    fis = scan_all_tiers(run_dir)
    index_cache.save(run_dir, fis[:2])
    index_cache.save(run_dir, fis[2:])
    assert sorted(cached_files(run_dir)) == RUN_FILES

    os.remove(run_dir / RUN_FILES[3])
    changed = run_dir / RUN_FILES[2]
    os.utime(changed, (1000, 1000))
    _tiers.source_keys(fis[0], INST, 'INSTRUMENT')   # something new to write
    assert index_cache.save(run_dir, fis[:1])
    assert sorted(cached_files(run_dir)) == RUN_FILES[:2]


def test_save_merges_tiers_of_the_same_file(run_dir):
    fis = scan_all_tiers(run_dir)
    index_cache.save(run_dir, fis)
    # A new session that knows only tier 0 (plus a new key) must not lose the rest.
    _tiers.MEMO.clear()
    fi = _tiers.file_index(str(run_dir / RUN_FILES[0]))
    _tiers.source_keys(fi, INST, 'INSTRUMENT')
    index_cache.save(run_dir, [fi])
    entry = cached_files(run_dir)[RUN_FILES[0]]
    assert set(entry['keys']) == {CTRL, INST}
    assert set(entry['sources']) == {CTRL, INST}
    assert set(entry['key_info'][CTRL]) == {'beamPosition.value', 'state.value'}


def test_save_dirty_saves_tiers_learnt_later(run_dir, monkeypatch):
    fis = [_tiers.file_index(str(p)) for p in sorted(run_dir.glob('*.h5'))]
    index_cache.save(run_dir, fis)
    assert _tiers.MEMO.dirty == set()
    assert index_cache.save_dirty() == 0   # nothing new

    _tiers.key_info(fis[1], INST, 'INSTRUMENT', 'data.intensity')
    assert _tiers.MEMO.dirty == {fis[1].key}
    assert index_cache.save_dirty() == 1
    assert _tiers.MEMO.dirty == set()

    _tiers.MEMO.clear()
    index_cache.load(run_dir, stats_of(run_dir))
    forbid_opening(monkeypatch)
    ki = _tiers.key_info(fis[1], INST, 'INSTRUMENT', 'data.intensity')
    assert ki.entry_shape == (4,) and ki.length == 10


def test_save_dirty_after_load(run_dir):
    index_cache.save(run_dir, [_tiers.file_index(str(p)) for p in sorted(run_dir.glob('*.h5'))])
    _tiers.MEMO.clear()
    index_cache.forget_runs()
    found = index_cache.load(run_dir, stats_of(run_dir))
    fi = found[str(run_dir / RUN_FILES[0])]
    _tiers.source_keys(fi, CTRL, 'CONTROL')
    assert index_cache.save_dirty() == 1
    assert CTRL in cached_files(run_dir)[RUN_FILES[0]]['keys']


def test_save_dirty_runs_at_exit(run_dir, tmp_path):
    # atexit handlers do not run in multiprocessing children: a real interpreter.
    code = f"""if True:
        import os, sys
        sys.path.insert(0, {osp.dirname(osp.dirname(index_cache.__file__))!r})
        os.environ['XFELDATA_CACHE'] = {str(tmp_path / 'cache')!r}
        from xfeldata import _tiers, index_cache
        path = {str(run_dir / RUN_FILES[0])!r}
        fi = _tiers.file_index(path)
        index_cache.save({str(run_dir)!r}, [fi])
        _tiers.source_keys(fi, {INST!r}, 'INSTRUMENT')   # learnt after saving
    """
    subprocess.run([sys.executable, '-c', code], check=True, timeout=60)
    assert INST in cached_files(run_dir)[RUN_FILES[0]]['keys']


def test_uncacheable_record_left_out(run_dir):
    fis = scan_all_tiers(run_dir)
    odd = FileMeta.build('1.0', {'odd': object()})   # not storable without pickle
    _tiers.MEMO.meta[fis[0].key] = odd
    assert index_cache.save(run_dir, fis)
    _tiers.MEMO.clear()
    found = index_cache.load(run_dir, stats_of(run_dir))
    assert len(found) == len(RUN_FILES)
    unpack_all()
    assert fis[0].key not in _tiers.MEMO.meta and fis[1].key in _tiers.MEMO.meta
    assert (fis[0].key, CTRL) in _tiers.MEMO.sources


def test_cache_file_mode(run_dir):
    old = os.umask(0o022)
    try:
        index_cache.save(run_dir, scan_all_tiers(run_dir))
    finally:
        os.umask(old)
    path = index_cache.cache_path(run_dir)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert not [p for p in path.parent.iterdir() if p.name.endswith('.tmp')]


# -- concurrency -----------------------------------------------------------------

def _saver(cache_dir, run_dir, names):
    """Child process: scan files one by one, saving each to the cache as it comes."""
    os.environ['XFELDATA_CACHE'] = cache_dir
    for n in names:
        fi = _tiers.file_index(osp.join(run_dir, n))
        _tiers.source_index(fi, CTRL, 'CONTROL')
        assert index_cache.save(run_dir, [fi])


def test_concurrent_savers_leave_valid_cache(tmp_path):
    run_dir = tmp_path / 'r0002'
    run_dir.mkdir()
    names = [f'RAW-R0002-DA{i:02}-S00000.h5' for i in range(40)]
    for i, n in enumerate(names):
        make_file(run_dir / n, [10000 + i])
    cache_dir = str(tmp_path / 'cache')
    ctx = mp.get_context('spawn')
    procs = [ctx.Process(target=_saver, args=(cache_dir, str(run_dir), part))
             for part in (names[0::2], names[1::2])]
    for p in procs:
        p.start()
    path = index_cache.cache_path(run_dir)
    reads = corrupt = 0
    # Read while they write: every read sees a complete, valid cache or none.
    while any(p.is_alive() for p in procs):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            time.sleep(0.001)
            continue
        reads += 1
        corrupt += index_cache._parse_cache(data) is None
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert reads > 0 and corrupt == 0
    # Each file was saved once, by one process: with read-merge-write
    # serialised by the lock, none of them was lost.
    assert sorted(cached_files(run_dir)) == names
    found = index_cache.load(run_dir, stats_of(run_dir))
    assert len(found) == len(names)
    unpack_all()
    assert all((fi.key, CTRL) in _tiers.MEMO.sources for fi in found.values())


@pytest.mark.parametrize('arr', [
    np.array([10001, 10007], np.uint64), np.array([5], '>i4'), np.array([1.5, -0.0], np.float32),
    np.zeros((2, 3), np.uint16), np.array([], np.uint64), np.array([True, False])])
def test_array_codec_round_trip_read_only(arr):
    from xfeldata._cache_codec import _dec_array, _enc_array
    back = _dec_array(_enc_array(arr))
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert back.tobytes() == arr.tobytes() and not back.flags.writeable


def test_array_codec_rejects_data_of_the_wrong_length():
    from xfeldata._cache_codec import _dec_array, _enc_array
    enc = _enc_array(np.array([10001, 10007], np.uint64))
    for data in (enc[3][:8], enc[3] + bytes(8), enc[3][:5]):
        with pytest.raises(ValueError):
            _dec_array([enc[0], enc[1], enc[2], data])
