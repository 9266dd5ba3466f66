"""File handles: the open-files limiter and the open datasets kept with their files.

A run can have more files than a process may keep open: the limiter closes
the least recently used files beyond its limit, and a FileAccess reopens its
file when next used. Datasets opened for reads stay open while their file
is, for a bounded number of them.
"""
import pickle

import h5py
import numpy as np
import pytest

import xfeldata
from xfeldata import file_access
from xfeldata.file_access import FileAccess, open_files_limiter
from xfeldata.testing import make_benchmark_run

SRC = 'BENCH_CTRL_00/DEV/D000'
KEY = 'value.value'
DATASET = f'/CONTROL/{SRC}/value/value'   # as read plans name it


@pytest.fixture
def run(tmp_path):
    # 8 sequence files of 5 trains for each aggregator: more files than the limit below.
    make_benchmark_run(tmp_path / 'r0001', n_trains=40, n_sequences=8, n_modules=1,
                       n_control_sources=3, n_control_aggregators=1, frame_shape=(4, 4))
    return xfeldata.RunDirectory(tmp_path / 'r0001', _use_voview=False)


@pytest.fixture
def few_files(monkeypatch):
    """The process's limiter allows 3 open files for the test."""
    monkeypatch.setattr(open_files_limiter, '_maxfiles', 3)
    open_files_limiter.close_old_files()
    yield 3
    monkeypatch.undo()


def _hdf5_open_files(paths) -> int:
    """How many of ``paths`` the HDF5 library has open."""
    names = {i.name for i in h5py.h5f.get_obj_ids(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE)}
    return len(names & {p.encode() for p in paths})


def _reference(run, source, key):
    """The key read file by file with plain h5py, as one array."""
    parts = []
    for fi in run._index.files_for_source(source):
        with h5py.File(fi.path, 'r') as f:
            first = f[f'INDEX/{source}/first'][()]
            count = f[f'INDEX/{source}/count'][()]
            data = f[f'CONTROL/{source}/{key.replace(".", "/")}']
            parts += [data[a:a + n] for a, n in zip(first, count) if n]
    return np.concatenate(parts)


def test_never_more_files_open_than_the_limit(run, few_files):
    files = run._index.files_for_source(SRC)
    paths = [fi.path for fi in files]
    assert len(files) > few_files
    peak = 0
    for fi in files:   # one small read from each file in turn
        run.select_trains(xfeldata.by_id[fi.train_ids[:1]])[SRC, KEY].ndarray()
        assert open_files_limiter.n_open_files() <= few_files
        peak = max(peak, _hdf5_open_files(paths))
    assert peak == few_files
    # Reading everything again reopens the closed files: the data are right.
    np.testing.assert_array_equal(run[SRC, KEY].ndarray(), _reference(run, SRC, KEY))
    assert open_files_limiter.n_open_files() <= few_files


def test_one_file_access_per_path(run):
    fi = run._index.files[0]
    fa = FileAccess(fi.path)
    assert FileAccess(fi.path) is fa
    assert pickle.loads(pickle.dumps(fa)) is fa
    fa.close()
    assert not fa.valid
    assert fa.file and fa.valid   # reopened on use


# -- datasets kept open with their files --------------------------------------------

def _open_for(filename):
    return {name for (fname, name) in file_access.open_datasets._lru if fname == filename}


def test_datasets_stay_open_with_their_file_and_close_with_it(run):
    sel = run.select_trains(xfeldata.by_index[:3])
    want = sel[SRC, KEY].ndarray()
    fi = run._index.files_for_source(SRC)[0]
    path = fi.path
    assert DATASET in _open_for(path)
    dsid, shape = FileAccess(path).dataset(DATASET)
    assert dsid.valid and shape == (len(fi.train_ids),)   # a control entry per train
    FileAccess(path).close()
    assert _open_for(path) == set() and not dsid.valid
    np.testing.assert_array_equal(sel[SRC, KEY].ndarray(), want)   # opened again


def test_a_dataset_closed_behind_our_back_is_opened_again(run):
    sel = run.select_trains(xfeldata.by_index[:3])
    want = sel[SRC, KEY].ndarray()
    path = run._index.files_for_source(SRC)[0].path
    FileAccess(path).file.close()   # h5py closes every object of the file
    np.testing.assert_array_equal(sel[SRC, KEY].ndarray(), want)


def test_the_number_of_open_datasets_is_bounded(run, monkeypatch):
    monkeypatch.setattr(file_access.open_datasets, 'max_open', 4)
    keys = sorted(run[SRC].keys())
    assert len(keys) > 4
    for key in keys:
        np.testing.assert_array_equal(run[SRC, key].ndarray(), _reference(run, SRC, key))
    assert len(file_access.open_datasets._lru) <= 4
    assert sum(map(len, file_access.open_datasets._by_file.values())) == len(
        file_access.open_datasets._lru)


def test_a_missing_dataset_is_a_key_error_naming_the_file(run):
    fa = FileAccess(run._index.files[0].path)
    with pytest.raises(KeyError):
        fa.dataset('CONTROL/no/such/dataset')
