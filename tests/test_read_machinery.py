"""read_machinery (API.md section 5): every listed name, DataChunk, trains_files_index, same_run."""
import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

import xfeldata
from xfeldata import read_machinery as rm
from xfeldata.core.records import FileIndex
from xfeldata.file_access import FileAccess
from xfeldata.testing import make_demo_run

XGM = 'SA1_XTD2_XGM/DOOCS/MAIN'
CAM = 'SPB_IRU_CAM/CAM/SIDEMIC:daqOutput'

SECTION_5 = ['split_trains', 'DataChunk', 'roi_shape', 'find_proposal', 'data_root_dir',
             'DATA_ROOT_DIR', 'sw_root_dir', 'same_run', 'is_int_like', 'glob_wildcards_re',
             'DETECTOR_NAMES', 'DETECTOR_SOURCE_RE', 'FilenameInfo', 'trains_files_index',
             'select_train_ids', 'by_id', 'by_index']


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp('demo')
    m = make_demo_run(d)
    return xfeldata.RunDirectory(d), m


def record(path, tids, valid=None):
    tids = np.asarray(tids, np.uint64)
    return FileIndex.build(str(path), 0, 0.0, tids,
                           np.ones(len(tids), bool) if valid is None else valid, (), ())


# -- the names -------------------------------------------------------------------------------

@pytest.mark.parametrize('name', SECTION_5)
def test_section_5_name_exists(name):
    assert name in rm.__all__
    assert getattr(rm, name) is not None


def test_every_name_in_all_resolves():
    for name in rm.__all__:
        getattr(rm, name)
    with pytest.raises(AttributeError, match='no attribute'):
        rm.not_a_name


def test_section_5_behaviours():
    assert rm.split_trains(11, trains_per_part=8) == [slice(0, 5), slice(5, 11)]
    assert rm.split_trains(10, parts=3, trains_per_part=8) == [slice(0, 3), slice(3, 6),
                                                               slice(6, 10)]
    with pytest.raises(ValueError, match='Either parts or trains_per_part must be specified'):
        rm.split_trains(5)
    assert rm.roi_shape((16, 512, 128), (..., [1, 2])) == (16, 512, 2)
    info = rm.FilenameInfo('/d/RAW-R0001-AGIPD07-S00002.h5')
    assert (info.is_detector, info.detector_name, info.detector_moduleno) == (True, 'AGIPD', 7)
    assert rm.DETECTOR_NAMES == {'AGIPD', 'DSSC', 'LPD'}


def test_same_run_is_the_readers(demo):
    from xfeldata.reader import same_run
    run, _ = demo
    assert rm.same_run is same_run
    assert rm.same_run(run, run.select_trains(np.s_[:10]))


def test_same_run_false_for_another_run(demo, tmp_path):
    run, _ = demo
    make_demo_run(tmp_path, run=2, n_trains=10, n_modules=1)
    other = xfeldata.RunDirectory(tmp_path)
    assert not rm.same_run(run, other)


def test_contiguous_regions_of_a_mask():
    assert rm.contiguous_regions([True, True, False, True]).tolist() == [[0, 2], [3, 4]]
    assert rm.contiguous_regions([False, False]).shape == (0, 2)
    assert rm.contiguous_regions(np.ones(3, bool)).tolist() == [[0, 3]]


# -- DataChunk ----------------------------------------------------------------------------

def test_datachunk_values():
    fi = record('/r/RAW-R0001-DA01-S00000.h5', [5, 6, 7])
    c = rm.DataChunk(fi, '/CONTROL/A/x/value', 10, [5, 6, 7], [1, 0, 2])
    assert isinstance(c.file, FileAccess) and c.file.filename == fi.path
    assert (c.total_count, c.slice, c.first, c.dataset_path) == (3, slice(10, 13), 10,
                                                                 '/CONTROL/A/x/value')
    assert c.train_ids.dtype == np.uint64 and not c.train_ids.flags.writeable
    assert c.counts.tolist() == [1, 0, 2]
    same = rm.DataChunk(fi, '/CONTROL/A/x/value', 10, np.array([5, 6, 7]), [1, 0, 2])
    assert c == same and hash(c) == hash(same)
    assert c != rm.DataChunk(fi, '/CONTROL/A/x/value', 10, [5, 6, 7], [1, 1, 2])
    with pytest.raises(AttributeError):
        c.first = 0
    with pytest.raises(ValueError, match='3 train IDs but 2 counts'):
        rm.DataChunk(fi, '/x', 0, [1, 2, 3], [1, 1])
    assert 'RAW-R0001-DA01-S00000.h5:/CONTROL/A/x/value[10:13] trains 5..7' in repr(c)


def test_key_data_chunks_read_like_the_key(demo):
    run, m = demo
    kd = run[CAM, 'data.image.pixels'].select_trains(np.s_[5:75:7])
    chunks = rm.key_data_chunks(kd)
    # Every selected train is in exactly one chunk, in order.
    assert np.concatenate([c.train_ids for c in chunks]).tolist() == kd.train_ids
    nonempty = rm.key_data_chunks(kd, nonempty=True)
    assert [c.slice for c in nonempty] == [slice(s.src_start, s.src_stop)
                                           for s in kd.plan().steps]
    assert all(c.total_count for c in nonempty) and len(nonempty) < len(chunks)
    data = np.concatenate([c.dataset[c.slice] for c in nonempty])
    assert np.array_equal(data, kd.ndarray())
    assert nonempty[0].source_file_paths == [Path(nonempty[0].file.filename)]
    c = pickle.loads(pickle.dumps(nonempty[0]))
    assert c == nonempty[0] and c.file is nonempty[0].file


def test_datachunk_source_files_of_a_virtual_dataset(tmp_path):
    for name, base in (('a.h5', 0), ('b.h5', 10)):
        with h5py.File(tmp_path / name, 'w') as f:
            f['x'] = np.arange(base, base + 10)
    layout = h5py.VirtualLayout(shape=(20,), dtype='i8')
    layout[0:10] = h5py.VirtualSource('a.h5', 'x', shape=(10,))
    layout[10:20] = h5py.VirtualSource('b.h5', 'x', shape=(10,))
    vpath = tmp_path / 'v.h5'
    with h5py.File(vpath, 'w') as f:
        f.create_virtual_dataset('x', layout)
    st = os.stat(vpath)
    fi = FileIndex.build(str(vpath), st.st_size, st.st_mtime, np.arange(1, 4, dtype=np.uint64),
                         np.ones(3, bool), (), ())
    a, b = tmp_path / 'a.h5', tmp_path / 'b.h5'
    assert rm.DataChunk(fi, '/x', 8, [1, 2, 3], [1, 1, 1]).source_file_paths == [a, b]
    assert rm.DataChunk(fi, '/x', 0, [1], [5]).source_file_paths == [a]
    assert rm.DataChunk(fi, '/x', 12, [1], [5]).source_file_paths == [b]
    assert rm.DataChunk(fi, '/x', 8, [1, 2, 3], [1, 1, 1]).dataset[8:11].tolist() == [8, 9, 10]


# -- trains_files_index ------------------------------------------------------------------------

def test_trains_files_index_first_file_wins():
    a = record('/r/a.h5', [1, 2, 3], valid=np.array([True, False, True]))
    b = record('/r/b.h5', [2, 4])
    got = rm.trains_files_index(np.array([4, 1, 2, 5], np.uint64), [a, b])
    assert got.tolist() == [1, 0, 0, -1] and got.dtype == np.int64
    got = rm.trains_files_index([4, 1, 2, 5], [a, b], inc_suspect_trains=False)
    assert got.tolist() == [1, 0, 1, -1]
    assert rm.trains_files_index([], [a]).tolist() == []
    assert rm.trains_files_index([1], []).tolist() == [-1]


def test_trains_files_index_on_a_run(demo):
    run, _ = demo
    sd = run[CAM]
    files = sd.files
    tids = np.asarray(run.train_ids, np.uint64)
    got = rm.trains_files_index(tids, files)
    assert (got >= 0).all()
    for fno, tid in zip(got.tolist(), tids.tolist()):
        assert tid in files[fno].train_ids
    assert rm.trains_files_index([1], files).tolist() == [-1]
