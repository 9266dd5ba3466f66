"""Opening a run whose files the index cache knows: only the work that is needed.

A warm open lists and stats the files, reads xfeldata's index cache and builds
the collection: it does not parse EXtra-data's run files map, write it, make
FileAccess objects or decode tiers nobody asked for. These tests pin that
down, and that what is skipped is still there when needed.
"""
import os

import h5py
import numpy as np
import pytest

import xfeldata
from xfeldata import _scan, _tiers, index_cache, run_files_map
from xfeldata.file_access import FileAccess

CTRL = 'SA1_XTD2_XGM/DOOCS/MAIN'
NAMES = ['RAW-R0001-DA01-S00000.h5', 'RAW-R0001-DA01-S00001.h5']


def make_file(path, tids):
    tids = np.asarray(tids, np.uint64)
    n = len(tids)
    with h5py.File(path, 'w') as f:
        f['METADATA/dataFormatVersion'] = [b'1.0']
        f['METADATA/dataSources/dataSourceId'] = [f'CONTROL/{CTRL}'.encode()]
        f['INDEX/trainId'] = tids
        f['INDEX/flag'] = np.ones(n, np.int32)
        f[f'INDEX/{CTRL}/first'] = np.arange(n, dtype=np.uint64)
        f[f'INDEX/{CTRL}/count'] = np.ones(n, np.uint64)
        f[f'CONTROL/{CTRL}/beamPosition/value'] = np.arange(n, dtype=np.float32)
        f[f'CONTROL/{CTRL}/beamPosition/timestamp'] = np.arange(n, dtype=np.uint64)


@pytest.fixture(autouse=True)
def _isolated(isolated_cache):
    """Every test here starts with an empty per-test cache and memo (tests/conftest.py)."""


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / 'r0001'
    d.mkdir()
    for i, name in enumerate(NAMES):
        make_file(d / name, np.arange(5) + 10000 + 5 * i)
    return d


def new_process():
    """Forget what this process knows, as a new process would."""
    _tiers.MEMO.clear()
    index_cache.forget_runs()


def forbid(monkeypatch, obj, name):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{name} called")
    monkeypatch.setattr(obj, name, refuse)


def learn_tiers(run):
    """Load tiers above 0 (keys of the first file, INDEX of every file) and save them."""
    run[CTRL, 'beamPosition.value']
    index_cache.save_dirty()


def test_warm_open_reads_nothing_else(run_dir, monkeypatch):
    learn_tiers(xfeldata.RunDirectory(run_dir))
    new_process()
    forbid(monkeypatch, run_files_map, 'RunFilesMap')
    forbid(monkeypatch, _scan, 'open_h5')
    forbid(monkeypatch, _scan, 'open_fid')
    forbid(monkeypatch, FileAccess, '_init')
    run = xfeldata.RunDirectory(run_dir)
    assert run.train_ids == list(range(10000, 10010))
    # Tiers above 0 are still packed; asking for one decodes them, from the cache.
    assert set(_tiers.MEMO.pending) == {fi.key for fi in run._index.files}
    monkeypatch.undo()
    forbid(monkeypatch, _scan, 'open_h5')
    forbid(monkeypatch, _scan, 'open_fid')
    assert run[CTRL].keys() == {'beamPosition.value', 'beamPosition.timestamp'}


def test_partly_cached_run_uses_the_map(run_dir, monkeypatch):
    monkeypatch.setattr(run_files_map, 'WRITE_ENABLED', True)
    monkeypatch.delenv('XFELDATA_NO_RUN_MAP_WRITE', raising=False)
    xfeldata.RunDirectory(run_dir)
    assert (run_dir / 'karabo_data_map.json').is_file()
    new_process()
    # A third file, in neither cache: the map is read (and written) again.
    make_file(run_dir / 'RAW-R0001-DA01-S00002.h5', np.arange(5) + 10010)
    made = []

    class Spy(run_files_map.RunFilesMap):
        def load(self):
            made.append(self)
            super().load()
    monkeypatch.setattr(run_files_map, 'RunFilesMap', Spy)
    run = xfeldata.RunDirectory(run_dir)
    assert len(run.train_ids) == 15 and len(made) == 1
    assert len(run_files_map.RunFilesMap(run_dir).files_data) == 3


def test_map_not_written_when_disabled(run_dir, monkeypatch):
    monkeypatch.setenv('XFELDATA_NO_RUN_MAP_WRITE', '1')
    forbid(monkeypatch, run_files_map.RunFilesMap, '_entry_for')
    xfeldata.RunDirectory(run_dir)
    assert not (run_dir / 'karabo_data_map.json').exists()


def test_files_made_on_demand(run_dir):
    run = xfeldata.RunDirectory(run_dir)
    files = run.files
    assert [fa.filename for fa in files] == [str(run_dir / n) for n in NAMES]
    assert all(fa.index is fi for fa, fi in zip(files, run._index.files))
    assert run.files[0] is files[0]   # one FileAccess per path, while it lives


def test_file_access_follows_a_changed_file(run_dir):
    path = str(run_dir / NAMES[0])
    old = _tiers.file_index(path)
    fa = FileAccess(path, _cache_info=old)
    fa.file   # open
    make_file(path + '.new', np.arange(3) + 20000)
    os.replace(path + '.new', path)
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 10_000_000))
    new = _tiers.file_index(path)
    assert new.key != old.key
    fa2 = FileAccess(path, _cache_info=new)
    assert fa2 is not fa and fa2.index is new and not fa.valid
    assert fa2.train_ids.tolist() == [20000, 20001, 20002]
    assert FileAccess(path, _cache_info=new) is fa2


def test_save_keeps_packed_tiers_of_files_not_touched(run_dir, monkeypatch):
    learn_tiers(xfeldata.RunDirectory(run_dir))
    new_process()
    make_file(run_dir / 'RAW-R0001-DA01-S00002.h5', np.arange(5) + 10010)
    run = xfeldata.RunDirectory(run_dir)   # scans the new file and saves the cache
    assert len(run._index.files) == 3
    files = index_cache._read_cache_file(index_cache.cache_path(run_dir))
    for name in NAMES:
        assert CTRL in index_cache._expand(files[name])['sources']
    assert CTRL in index_cache._expand(files[NAMES[0]])['keys']
    new_process()
    forbid(monkeypatch, _scan, 'open_h5')
    forbid(monkeypatch, _scan, 'open_fid')
    run = xfeldata.RunDirectory(run_dir)
    assert run.select(CTRL, 'beamPosition.value').train_ids[:5] == list(range(10000, 10005))


def test_run_through_a_symlink(run_dir, tmp_path):
    xfeldata.RunDirectory(run_dir)
    new_process()
    link = tmp_path / 'link'
    link.symlink_to(run_dir)
    run = xfeldata.RunDirectory(link)
    assert [fi.path for fi in run._index.files] == [str(link / n) for n in NAMES]
    assert run.train_ids == list(range(10000, 10010))


def test_filter_keeping_nothing(run_dir):
    xfeldata.RunDirectory(run_dir)   # cached
    new_process()
    with pytest.raises(xfeldata.exceptions.NoUsableFilesError):
        xfeldata.RunDirectory(run_dir, file_filter=lambda files: [])


def test_filter_with_relative_paths(run_dir, monkeypatch):
    xfeldata.RunDirectory(run_dir)
    new_process()
    monkeypatch.chdir(run_dir)
    run = xfeldata.RunDirectory(run_dir, file_filter=lambda files: [os.path.basename(f)
                                                                    for f in files][:1])
    assert [fi.path for fi in run._index.files] == [str(run_dir / NAMES[0])]


# -- the conflict verdict ------------------------------------------------------------

def _head(run_dir):
    import msgpack
    with open(index_cache.cache_path(run_dir), 'rb') as f:
        return msgpack.unpackb(f.read(), raw=False)


def test_warm_open_skips_a_conflict_check_the_cache_has_passed(run_dir, monkeypatch):
    from xfeldata.core.runindex import RunIndex
    xfeldata.RunDirectory(run_dir)
    assert _head(run_dir).get('conflict_free') is True
    new_process()
    forbid(monkeypatch, RunIndex, 'check_conflicts')
    run = xfeldata.RunDirectory(run_dir)
    assert run.train_ids == list(range(10000, 10010))
    # Only for exactly the records checked: one file left out is checked again.
    monkeypatch.undo()
    calls = []
    orig = RunIndex.check_conflicts
    monkeypatch.setattr(RunIndex, 'check_conflicts', lambda self: calls.append(1) or orig(self))
    xfeldata.RunDirectory(run_dir, include='*S00000*')
    assert calls == [1]


def test_a_conflict_is_found_warm_and_after_a_file_changes(run_dir):
    xfeldata.RunDirectory(run_dir)          # verdict: no conflict
    new_process()
    # The second sequence now repeats the first one's trains: its size and
    # mtime change, so its entry and the verdict no longer apply.
    make_file(run_dir / NAMES[1], np.arange(3) + 10003)
    os.utime(run_dir / NAMES[1], ns=(1, 1))
    with pytest.raises(ValueError, match='conflicting data'):
        xfeldata.RunDirectory(run_dir)
    assert 'conflict_free' not in _head(run_dir)
    new_process()
    with pytest.raises(ValueError, match='conflicting data'):   # warm, from a cache without a verdict
        xfeldata.RunDirectory(run_dir)
    # Excluding suspect trains does not make the verdict stick either.
    with pytest.raises(ValueError, match='conflicting data'):
        xfeldata.RunDirectory(run_dir, inc_suspect_trains=False)


# -- the run summary beside the verdict ------------------------------------------------

def _fresh_tables(run):
    """The RunIndex tables of ``run``'s files, derived from the records alone."""
    from xfeldata.core.runindex import RunIndex
    ri = RunIndex(run._index.files, run._index.inc_suspect_trains)
    return list(ri.train_ids), ri.control_sources, ri.instrument_sources


def test_warm_open_takes_train_ids_and_sources_from_the_cache(run_dir):
    xfeldata.RunDirectory(run_dir)
    head = _head(run_dir)
    assert np.frombuffer(head['summary'], '<u8').tolist() == list(range(10000, 10010))
    new_process()
    run = xfeldata.RunDirectory(run_dir)
    # Seeded, not derived: the union of the files' train IDs was never made.
    assert '_usable' not in run._index.__dict__
    assert (list(run._index.train_ids), run._index.control_sources,
            run._index.instrument_sources) == _fresh_tables(run)
    assert run.train_ids == list(range(10000, 10010))
    assert run.all_sources == {CTRL}


def test_a_damaged_summary_is_not_used(run_dir):
    import msgpack
    xfeldata.RunDirectory(run_dir)
    path = index_cache.cache_path(run_dir)
    head = _head(run_dir)
    head['summary'] = np.arange(3, dtype='<u8').tobytes()   # the CRC no longer matches
    path.write_bytes(msgpack.packb(head, use_bin_type=True))
    new_process()
    run = xfeldata.RunDirectory(run_dir)
    assert run.train_ids == list(range(10000, 10010))
    assert '_usable' in run._index.__dict__   # derived from the records


def test_summary_is_not_used_without_suspect_trains(run_dir):
    # One suspect train (flag 0) in the second file.
    with h5py.File(run_dir / NAMES[1], 'r+') as f:
        f['INDEX/flag'][2] = 0
    xfeldata.RunDirectory(run_dir)
    assert _head(run_dir).get('summary') is not None
    new_process()
    run = xfeldata.RunDirectory(run_dir, inc_suspect_trains=False)
    assert run.train_ids == [t for t in range(10000, 10010) if t != 10007]
    new_process()
    assert xfeldata.RunDirectory(run_dir).train_ids == list(range(10000, 10010))


def test_the_garbage_collector_is_on_again_after_opening(run_dir):
    import gc
    xfeldata.RunDirectory(run_dir)
    new_process()
    assert gc.isenabled()
    xfeldata.RunDirectory(run_dir)   # a warm open pauses it while decoding
    assert gc.isenabled()
    gc.disable()
    try:   # and leaves it off if it was off
        new_process()
        xfeldata.RunDirectory(run_dir)
        assert not gc.isenabled()
    finally:
        gc.enable()
