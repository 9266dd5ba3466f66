"""Bad input gets a clear xfeldata error (or a documented skip-with-warning),
never a raw h5py traceback, and no input file's bytes change."""
import hashlib
import os
import shutil

import h5py
import numpy as np
import pytest

import xfeldata
from xfeldata.exceptions import FileOpenError, FileStructureError, NoUsableFilesError


def write_good(path, train_ids=range(10000, 10010), source='SA1_XTD2_XGM/DOOCS/MAIN',
               run=1, seq=0):
    tids = np.asarray(list(train_ids), dtype=np.uint64)
    n = len(tids)
    with h5py.File(path, 'w') as f:
        f['METADATA/dataFormatVersion'] = [b'1.0']
        f['METADATA/dataSources/dataSourceId'] = [
            f'CONTROL/{source}'.encode(), f'INSTRUMENT/{source}:output/data'.encode()]
        f['METADATA/dataSources/root'] = [b'CONTROL', b'INSTRUMENT']
        f['METADATA/dataSources/deviceId'] = [source.encode(), f'{source}:output/data'.encode()]
        f['METADATA/runNumber'] = np.array([run], np.uint32)
        f['METADATA/proposalNumber'] = np.array([700000], np.uint32)
        f['METADATA/sequenceNumber'] = np.array([seq], np.uint32)
        f['INDEX/trainId'] = tids
        f['INDEX/flag'] = np.ones(n, np.int32)
        f['INDEX/timestamp'] = np.arange(n, dtype=np.uint64) * 100_000_000
        f[f'INDEX/{source}/first'] = np.arange(n, dtype=np.uint64)
        f[f'INDEX/{source}/count'] = np.ones(n, np.uint64)
        f[f'INDEX/{source}:output/data/first'] = np.arange(n, dtype=np.uint64) * 2
        f[f'INDEX/{source}:output/data/count'] = np.full(n, 2, np.uint64)
        f[f'CONTROL/{source}/pulseEnergy/value'] = np.arange(n, dtype=np.float32)
        f[f'CONTROL/{source}/pulseEnergy/timestamp'] = np.arange(n, dtype=np.uint64) + 1
        f[f'RUN/{source}/pulseEnergy/value'] = np.array([1.5], np.float32)
        f[f'RUN/{source}/pulseEnergy/timestamp'] = np.array([1], np.uint64)
        f[f'INSTRUMENT/{source}:output/data/intensity'] = np.arange(2 * n * 4, dtype=np.float32
                                                                   ).reshape(2 * n, 4)


def digests(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        p = os.path.join(folder, name)
        if os.path.isfile(p):
            with open(p, 'rb') as f:
                out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / 'r0001'
    d.mkdir()
    write_good(d / 'RAW-R0001-DA01-S00000.h5')
    return d


def _no_h5py_frames(excinfo):
    """The error raised is ours or a builtin, not h5py's internals."""
    return not type(excinfo.value).__module__.startswith('h5py')


def test_non_hdf5_file_in_run_is_skipped(run_dir):
    (run_dir / 'RAW-R0001-DA02-S00000.h5').write_text('not hdf5 at all')
    before = digests(run_dir)
    with pytest.warns(UserWarning, match='DA02.*not an HDF5 file'):
        run = xfeldata.RunDirectory(run_dir)
    assert len(run.files) == 1
    assert run.train_ids == list(range(10000, 10010))
    assert digests(run_dir) == before


def test_empty_file(tmp_path):
    p = tmp_path / 'RAW-R0001-DA01-S00000.h5'
    p.write_bytes(b'')
    with pytest.raises(FileOpenError, match='RAW-R0001-DA01-S00000.h5') as ei:
        xfeldata.H5File(p)
    assert isinstance(ei.value, OSError) and _no_h5py_frames(ei)
    assert p.read_bytes() == b''


def test_truncated_file(tmp_path):
    good = tmp_path / 'good.h5'
    write_good(good)
    data = good.read_bytes()
    p = tmp_path / 'RAW-R0001-DA01-S00000.h5'
    p.write_bytes(data[:len(data) // 2])
    before = p.read_bytes()
    with pytest.raises((FileOpenError, FileStructureError), match='RAW-R0001-DA01') as ei:
        dc = xfeldata.H5File(p)
        dc['SA1_XTD2_XGM/DOOCS/MAIN:output', 'data.intensity'].ndarray()
    assert _no_h5py_frames(ei)
    assert p.read_bytes() == before


@pytest.mark.parametrize('missing', ['METADATA', 'INDEX', 'INDEX/trainId',
                                     'METADATA/dataSources'])
def test_missing_structure(tmp_path, missing):
    p = tmp_path / 'RAW-R0001-DA01-S00000.h5'
    write_good(p)
    with h5py.File(p, 'a') as f:
        del f[missing]
    before = digests(tmp_path)
    with pytest.raises(FileStructureError, match=str(p.name)):
        xfeldata.H5File(p)
    assert digests(tmp_path) == before


def test_folder_with_only_bad_files(tmp_path):
    (tmp_path / 'a.h5').write_text('x')
    (tmp_path / 'b.h5').write_bytes(b'')
    with pytest.warns(UserWarning, match='Skipping file'):
        with pytest.raises(NoUsableFilesError, match='unusable') as ei:
            xfeldata.RunDirectory(tmp_path)
    assert len(ei.value.skipped) == 2


def test_first_count_past_end(tmp_path):
    p = tmp_path / 'RAW-R0001-DA01-S00000.h5'
    write_good(p)
    with h5py.File(p, 'a') as f:
        f['INDEX/SA1_XTD2_XGM/DOOCS/MAIN:output/data/first'][5] = 999
    before = digests(tmp_path)
    dc = xfeldata.H5File(p)
    kd = dc['SA1_XTD2_XGM/DOOCS/MAIN:output', 'data.intensity']
    # A run of trains reads first[a] : first[a] + sum(count) (FORMAT.md 3.1),
    # so the whole key still reads, as in EXtra-data ...
    assert kd.ndarray().shape[0] == kd.shape[0]
    # ... but the damaged train alone points past the end: a clear error.
    with pytest.raises(TypeError, match='past the end') as ei:
        kd[5].ndarray()
    assert p.name in str(ei.value)
    # Keys of other sources still read fine.
    assert dc['SA1_XTD2_XGM/DOOCS/MAIN', 'pulseEnergy'].ndarray().shape == (10,)
    assert digests(tmp_path) == before


def test_conflicting_sequences(tmp_path):
    write_good(tmp_path / 'RAW-R0001-DA01-S00000.h5', range(10000, 10010))
    write_good(tmp_path / 'RAW-R0001-DA01-S00001.h5', range(10005, 10015), seq=1)
    before = digests(tmp_path)
    with pytest.raises(ValueError, match='conflicting data') as ei:
        xfeldata.RunDirectory(tmp_path)
    assert {c[0] for c in ei.value.conflicts} == {
        'SA1_XTD2_XGM/DOOCS/MAIN', 'SA1_XTD2_XGM/DOOCS/MAIN:output'}
    src, tid, paths = ei.value.conflicts[0]
    assert tid == 10005 and len(paths) == 2
    assert 'S00000' in str(ei.value) and 'S00001' in str(ei.value)
    assert digests(tmp_path) == before


def test_unreadable_entries_are_skipped(run_dir):
    # A directory and a dangling link named like data files: both unreadable.
    (run_dir / 'RAW-R0001-DA03-S00000.h5').mkdir()
    os.symlink(run_dir / 'nowhere.h5', run_dir / 'RAW-R0001-DA04-S00000.h5')
    with pytest.warns(UserWarning, match='Skipping file'):
        run = xfeldata.RunDirectory(run_dir)
    assert [os.path.basename(f.filename) for f in run.files] == ['RAW-R0001-DA01-S00000.h5']


def test_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError):
        xfeldata.H5File(tmp_path / 'nope.h5')
    with pytest.raises(FileNotFoundError):
        xfeldata.RunDirectory(tmp_path / 'nope')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='No HDF5 files'):
        xfeldata.RunDirectory(tmp_path / 'empty')


def test_bad_source_category(tmp_path):
    p = tmp_path / 'RAW-R0001-DA01-S00000.h5'
    write_good(p)
    with h5py.File(p, 'a') as f:
        del f['METADATA/dataSources/dataSourceId']
        f['METADATA/dataSources/dataSourceId'] = [b'BOGUS/X/Y/Z']
    with pytest.raises(FileStructureError, match="Unknown data category 'BOGUS'"):
        xfeldata.H5File(p)


def test_file_changed_after_open_is_refused(tmp_path):
    p = tmp_path / 'RAW-R0001-DA01-S00000.h5'
    write_good(p)
    dc = xfeldata.H5File(p)
    fi = dc._index.files[0]
    shutil.copy(p, tmp_path / 'copy.h5')
    write_good(p, range(20000, 20020))
    os.utime(p, ns=(1, 1))
    from xfeldata import _tiers
    _tiers.MEMO.clear()
    with pytest.raises(FileStructureError, match='changed on disk'):
        _tiers.source_index(fi, 'SA1_XTD2_XGM/DOOCS/MAIN', 'CONTROL')
    # Opening again sees the new contents.
    assert xfeldata.H5File(p).train_ids[0] == 20000
