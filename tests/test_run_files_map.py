"""EXtra-data's run files map (karabo_data_map.json): format, trust rules, writing."""
import json
import os
import os.path as osp
import shutil
import stat

import h5py
import numpy as np
import pytest

from xfeldata import _tiers, run_files_map
from xfeldata.file_access import FileAccess
from xfeldata.run_files_map import RunFilesMap

EXPECTED_ENTRY_KEYS = {'filename', 'mtime', 'size', 'train_ids', 'control_sources',
                       'instrument_sources', 'legacy_sources', 'suspect_train_indices'}


def make_file(path, tids, *, flag=None, control=('SA1_XTD2_XGM/DOOCS/MAIN',),
              instrument=('SA1_XTD2_XGM/DOOCS/MAIN:output',), legacy=None):
    """A minimal EuXFEL 1.0 file; ``legacy`` maps old instrument names to new ones."""
    tids = np.asarray(tids, np.uint64)
    n = len(tids)
    legacy = legacy or {}
    with h5py.File(path, 'w') as f:
        f['METADATA/dataFormatVersion'] = [b'1.0']
        ids = [f'CONTROL/{s}' for s in control]
        ids += [f'INSTRUMENT/{s}/data' for s in list(instrument) + list(legacy)]
        f['METADATA/dataSources/dataSourceId'] = np.array([i.encode() for i in ids])
        f['INDEX/trainId'] = tids
        f['INDEX/flag'] = np.ones(n, np.int32) if flag is None else np.asarray(flag, np.int32)
        for s in control:
            f[f'INDEX/{s}/first'] = np.arange(n, dtype=np.uint64)
            f[f'INDEX/{s}/count'] = np.ones(n, np.uint64)
            f[f'CONTROL/{s}/beamPosition/value'] = np.arange(n, dtype=np.float32)
        for s in instrument:
            f[f'INDEX/{s}/data/first'] = np.arange(n, dtype=np.uint64)
            f[f'INDEX/{s}/data/count'] = np.ones(n, np.uint64)
            f[f'INSTRUMENT/{s}/data/intensity'] = np.zeros((n, 4), np.float32)
        for old, new in legacy.items():
            f[f'INSTRUMENT/{old}'] = h5py.SoftLink(f'/INSTRUMENT/{new}')
            f[f'INDEX/{old}'] = h5py.SoftLink(f'/INDEX/{new}')
    return path


@pytest.fixture(autouse=True)
def _fresh_memo(monkeypatch):
    # The session conftest forbids map writing; these tests write into tmp_path only.
    monkeypatch.delenv('XFELDATA_NO_RUN_MAP_WRITE', raising=False)
    monkeypatch.setattr(run_files_map, 'WRITE_ENABLED', True)
    _tiers.MEMO.clear()
    yield
    _tiers.MEMO.clear()


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / 'r0001'
    d.mkdir()
    make_file(d / 'RAW-R0001-DA01-S00000.h5', [10000, 10001, 10002, 10003],
              flag=[1, 1, 0, 1])
    make_file(d / 'RAW-R0001-AGIPD00-S00000.h5', [10000, 10001, 10002],
              control=(), instrument=('SPB_DET_AGIPD1M-1/CORR/0CH0:output',),
              legacy={'SPB_DET_AGIPD1M-1/DET/0CH0:xtdf': 'SPB_DET_AGIPD1M-1/CORR/0CH0:output'})
    return d


def scan(d):
    return [_tiers.file_index(str(p)) for p in sorted(d.glob('*.h5'))]


def write_map(d):
    RunFilesMap(d).save(scan(d))
    return d / 'karabo_data_map.json'


def test_written_json_matches_schema(run_dir):
    fis = scan(run_dir)
    m = RunFilesMap(run_dir)
    assert m.files_data == {} and m.cache_file is None
    m.save(fis)

    path = run_dir / 'karabo_data_map.json'
    text = path.read_text()
    data = json.loads(text)
    # Exactly EXtra-data's layout: a list sorted by file name, indent 2.
    assert text == json.dumps(data, indent=2)
    assert [e['filename'] for e in data] == ['RAW-R0001-AGIPD00-S00000.h5',
                                             'RAW-R0001-DA01-S00000.h5']
    for e in data:
        assert set(e) == EXPECTED_ENTRY_KEYS
        st = os.stat(run_dir / e['filename'])
        assert type(e['mtime']) is float and e['mtime'] == st.st_mtime
        assert type(e['size']) is int and e['size'] == st.st_size
    agipd, da = data
    assert da['train_ids'] == [10000, 10001, 10002, 10003]
    assert da['suspect_train_indices'] == [2]
    assert da['control_sources'] == ['SA1_XTD2_XGM/DOOCS/MAIN']
    assert da['instrument_sources'] == ['SA1_XTD2_XGM/DOOCS/MAIN:output']
    assert da['legacy_sources'] == {}
    # Legacy names are listed among the instrument sources, and mapped.
    assert agipd['instrument_sources'] == ['SPB_DET_AGIPD1M-1/CORR/0CH0:output',
                                           'SPB_DET_AGIPD1M-1/DET/0CH0:xtdf']
    assert agipd['legacy_sources'] == {
        'SPB_DET_AGIPD1M-1/DET/0CH0:xtdf': 'SPB_DET_AGIPD1M-1/CORR/0CH0:output'}
    assert agipd['control_sources'] == [] and agipd['suspect_train_indices'] == []


def test_map_read_back(run_dir):
    fis = scan(run_dir)
    write_map(run_dir)
    _tiers.MEMO.clear()
    m = RunFilesMap(run_dir)
    assert m.cache_file == str(run_dir / 'karabo_data_map.json')
    assert len(m.files_data) == 2

    da = str(run_dir / 'RAW-R0001-DA01-S00000.h5')
    got = m.get(da)
    assert got['train_ids'].dtype == np.uint64
    np.testing.assert_array_equal(got['train_ids'], [10000, 10001, 10002, 10003])
    np.testing.assert_array_equal(got['flag'], [True, True, False, True])
    assert got['control_sources'] == frozenset({'SA1_XTD2_XGM/DOOCS/MAIN'})
    assert isinstance(got['instrument_sources'], frozenset)
    assert got['legacy_sources'] == {}
    assert got['mtime'] == os.stat(da).st_mtime

    # The tier-0 record from the map equals the one scanned from the file.
    by_path = {fi.path: fi for fi in fis}
    for path in by_path:
        fi = m.file_index(path)
        assert fi == by_path[path]
        assert fi.legacy_sources == by_path[path].legacy_sources
        assert _tiers.MEMO.index[path] is fi
    assert m.get(str(run_dir / 'RAW-R0001-DA02-S00000.h5')) is None


def test_save_accepts_file_access(run_dir):
    files = [FileAccess(p) for p in sorted(run_dir.glob('*.h5'))]
    RunFilesMap(run_dir).save(files)
    data = json.loads((run_dir / 'karabo_data_map.json').read_text())
    assert len(data) == 2


def test_stale_mtime_ignored(run_dir):
    write_map(run_dir)
    da = run_dir / 'RAW-R0001-DA01-S00000.h5'
    st = os.stat(da)
    os.utime(da, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    m = RunFilesMap(run_dir)
    assert m.get(da) is None
    assert m.get(run_dir / 'RAW-R0001-AGIPD00-S00000.h5') is not None


def test_stale_size_ignored(run_dir):
    path = write_map(run_dir)
    data = json.loads(path.read_text())
    data[1]['size'] += 1
    path.write_text(json.dumps(data, indent=2))
    m = RunFilesMap(run_dir)
    assert m.get(run_dir / data[1]['filename']) is None
    assert m.get(run_dir / data[0]['filename']) is not None


@pytest.mark.parametrize('missing', sorted(RunFilesMap.expected_cache_keys))
def test_incomplete_entry_ignored(run_dir, missing):
    path = write_map(run_dir)
    data = json.loads(path.read_text())
    del data[1][missing]
    path.write_text(json.dumps(data))
    m = RunFilesMap(run_dir)
    assert m.get(run_dir / data[1]['filename']) is None
    assert m.file_index(run_dir / data[1]['filename']) is None
    assert m.get(run_dir / data[0]['filename']) is not None


@pytest.mark.parametrize('damage', [
    lambda e: e.update(train_ids=['10000']),
    lambda e: e.update(train_ids=[float(t) for t in e['train_ids']]),
    lambda e: e.update(train_ids=[True] * len(e['train_ids'])),
    lambda e: e.update(train_ids=[-1] + e['train_ids'][1:]),
    lambda e: e.update(suspect_train_indices=[99]),
    lambda e: e.update(control_sources='SA1_XTD2_XGM/DOOCS/MAIN'),
    lambda e: e.update(legacy_sources=[]),
    lambda e: e.update(size=str(e['size'])),
])
def test_malformed_entry_ignored(run_dir, damage):
    path = write_map(run_dir)
    data = json.loads(path.read_text())
    damage(data[1])
    path.write_text(json.dumps(data))
    m = RunFilesMap(run_dir)
    assert m.get(run_dir / data[1]['filename']) is None
    assert m.get(run_dir / data[0]['filename']) is not None


@pytest.mark.parametrize('content', [b'[{"filename": ', b'\xff\xfe\x00garbage', b'',
                                     b'{"filename": "x"}', b'"a string"'])
def test_corrupt_map_ignored(run_dir, content):
    path = run_dir / 'karabo_data_map.json'
    path.write_bytes(content)
    m = RunFilesMap(run_dir)
    assert m.files_data == {} and m.cache_file is None
    # ... and replaced by a valid map at the next save.
    m.save(scan(run_dir))
    assert len(json.loads(path.read_text())) == 2


def test_entries_only_for_this_directory(run_dir, tmp_path):
    write_map(run_dir)
    other = tmp_path / 'copy'
    other.mkdir()
    # Same name, size and mtime, other folder: not described by this map.
    shutil.copy2(run_dir / 'RAW-R0001-DA01-S00000.h5', other)
    m = RunFilesMap(run_dir)
    assert m.get(other / 'RAW-R0001-DA01-S00000.h5') is None
    assert m.get(run_dir / 'RAW-R0001-DA01-S00000.h5') is not None
    # The same folder reached through a symlink is the same directory.
    link = tmp_path / 'link'
    link.symlink_to(run_dir)
    assert m.get(link / 'RAW-R0001-DA01-S00000.h5') is not None
    assert RunFilesMap(link).get(run_dir / 'RAW-R0001-DA01-S00000.h5') is not None


def test_save_keeps_old_entries_and_skips_if_nothing_new(run_dir):
    fis = scan(run_dir)
    RunFilesMap(run_dir).save(fis[:1])
    path = run_dir / 'karabo_data_map.json'
    assert len(json.loads(path.read_text())) == 1

    RunFilesMap(run_dir).save(fis[1:])
    data = json.loads(path.read_text())
    assert sorted(e['filename'] for e in data) == sorted(osp.basename(f.path) for f in fis)

    # Every file has a valid entry: the map is not rewritten (os.replace
    # would give it a new inode).
    ino = os.stat(path).st_ino
    RunFilesMap(run_dir).save(fis)
    assert os.stat(path).st_ino == ino


def test_written_file_readable_by_others(run_dir):
    old = os.umask(0o022)
    try:
        path = write_map(run_dir)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    # No temporary files left behind.
    assert sorted(p.name for p in run_dir.iterdir()) == [
        'RAW-R0001-AGIPD00-S00000.h5', 'RAW-R0001-DA01-S00000.h5', 'karabo_data_map.json']


def test_write_disabled_by_env(run_dir, monkeypatch):
    monkeypatch.setenv('XFELDATA_NO_RUN_MAP_WRITE', '1')
    RunFilesMap(run_dir).save(scan(run_dir))
    assert not (run_dir / 'karabo_data_map.json').exists()


def test_write_disabled_by_switch(run_dir, monkeypatch):
    monkeypatch.setattr(run_files_map, 'WRITE_ENABLED', False)
    RunFilesMap(run_dir).save(scan(run_dir))
    assert not (run_dir / 'karabo_data_map.json').exists()


# -- locations -----------------------------------------------------------------

@pytest.fixture
def proposal(tmp_path, monkeypatch):
    """A Maxwell-style proposal folder and its scratch folder under a fake root."""
    scratch_root = tmp_path / 'exp'
    scratch = scratch_root / 'SPB' / '201901' / 'p002000' / 'scratch'
    scratch.mkdir(parents=True)
    monkeypatch.setenv('XFELDATA_SCRATCH_ROOT', str(scratch_root))
    run = tmp_path / 'data' / 'raw' / 'SPB' / '201901' / 'p002000' / 'r0450'
    run.mkdir(parents=True)
    make_file(run / 'RAW-R0450-DA01-S00000.h5', [1, 2, 3])
    make_file(run / 'RAW-R0450-DA02-S00000.h5', [1, 2, 3], control=('B/C/D',), instrument=())
    return run, scratch / '.karabo_data_maps' / 'raw_r0450.json'


def test_candidate_paths(proposal, tmp_path, monkeypatch):
    run, scratch_map = proposal
    assert RunFilesMap(run).candidate_paths == [str(run / 'karabo_data_map.json'),
                                                str(scratch_map)]
    # Online layout: .../INSTR/CYCLE/pNNNNNN/(raw|proc)/rNNNN
    online = tmp_path / 'online' / 'SPB' / '201901' / 'p002000' / 'proc' / 'r0007'
    online.mkdir(parents=True)
    assert RunFilesMap(online).candidate_paths[1].endswith(
        'SPB/201901/p002000/scratch/.karabo_data_maps/proc_r0007.json')
    # The scratch location is derived from the resolved path.
    link = tmp_path / 'runlink'
    link.symlink_to(run)
    assert RunFilesMap(link).candidate_paths[1] == str(scratch_map)
    # Not a proposal path, or no scratch folder: only the run folder.
    assert len(RunFilesMap(tmp_path).candidate_paths) == 1
    monkeypatch.setenv('XFELDATA_SCRATCH_ROOT', str(tmp_path / 'nowhere'))
    assert RunFilesMap(run).candidate_paths == [str(run / 'karabo_data_map.json')]


def test_default_scratch_root(monkeypatch):
    monkeypatch.delenv('XFELDATA_SCRATCH_ROOT', raising=False)
    assert run_files_map.SCRATCH_ROOT_DIR == '/gpfs/exfel/exp/'
    assert run_files_map.scratch_root() == '/gpfs/exfel/exp/'


def _map_of(run, names):
    """A map listing only ``names`` of the run's files (as EXtra-data would write it)."""
    fis = [_tiers.file_index(str(run / n)) for n in names]
    return [RunFilesMap._entry_for(fi) for fi in fis]


def test_candidates_newest_first(proposal):
    run, scratch_map = proposal
    in_run = run / 'karabo_data_map.json'
    scratch_map.parent.mkdir()
    da1, da2 = 'RAW-R0450-DA01-S00000.h5', 'RAW-R0450-DA02-S00000.h5'
    in_run.write_text(json.dumps(_map_of(run, [da1])))
    scratch_map.write_text(json.dumps(_map_of(run, [da2])))

    os.utime(in_run, (1000, 1000))
    os.utime(scratch_map, (2000, 2000))
    m = RunFilesMap(run)
    assert m.cache_file == str(scratch_map)
    assert set(m.files_data) == {da2}

    os.utime(in_run, (3000, 3000))
    m = RunFilesMap(run)
    assert m.cache_file == str(in_run)
    assert set(m.files_data) == {da1}

    # The newest one unreadable: fall back to the older one.
    in_run.write_text('[{"broken')
    os.utime(in_run, (3000, 3000))
    m = RunFilesMap(run)
    assert m.cache_file == str(scratch_map)
    assert set(m.files_data) == {da2}


def _deny_writes_in(monkeypatch, folder):
    """Make creating files in ``folder`` fail with PermissionError (works as root too)."""
    real_open = os.open
    folder = str(folder)

    def fake_open(path, flags, *args, **kwargs):
        if osp.dirname(osp.abspath(path)) == folder and flags & os.O_CREAT:
            raise PermissionError(13, 'Permission denied', path)
        return real_open(path, flags, *args, **kwargs)
    monkeypatch.setattr(os, 'open', fake_open)


def test_read_only_run_dir_uses_scratch(proposal, monkeypatch):
    run, scratch_map = proposal
    _deny_writes_in(monkeypatch, run)
    RunFilesMap(run).save(scan(run))
    assert not (run / 'karabo_data_map.json').exists()
    data = json.loads(scratch_map.read_text())
    assert [e['filename'] for e in data] == ['RAW-R0450-DA01-S00000.h5',
                                             'RAW-R0450-DA02-S00000.h5']
    assert RunFilesMap(run).cache_file == str(scratch_map)


def test_read_only_everywhere_is_silent(run_dir, monkeypatch):
    _deny_writes_in(monkeypatch, run_dir)
    m = RunFilesMap(run_dir)
    m.save(scan(run_dir))   # must not raise
    assert not (run_dir / 'karabo_data_map.json').exists()
    assert m.cache_file is None


@pytest.mark.skipif(os.name != 'posix' or os.geteuid() == 0,
                    reason="needs POSIX permissions that apply (not root)")
def test_read_only_run_dir_chmod(run_dir):
    fis = scan(run_dir)
    os.chmod(run_dir, 0o555)
    try:
        RunFilesMap(run_dir).save(fis)
        assert not (run_dir / 'karabo_data_map.json').exists()
    finally:
        os.chmod(run_dir, 0o755)


def test_unreadable_map_ignored(run_dir, monkeypatch):
    path = write_map(run_dir)
    real_open = open

    def fake_open(file, *args, **kwargs):
        if os.fspath(file) == str(path):
            raise PermissionError(13, 'Permission denied', str(file))
        return real_open(file, *args, **kwargs)
    monkeypatch.setattr('builtins.open', fake_open)
    m = RunFilesMap(run_dir)
    assert m.files_data == {} and m.cache_file is None


def test_atomic_dump(tmp_path):
    target = tmp_path / 'x.json'
    run_files_map.atomic_dump({'a': [1, 2]}, target, indent=2)
    assert json.loads(target.read_text()) == {'a': [1, 2]}
    with pytest.raises(TypeError):   # not JSON-serialisable: old file untouched
        run_files_map.atomic_dump({'a': object()}, target)
    assert json.loads(target.read_text()) == {'a': [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ['x.json']
