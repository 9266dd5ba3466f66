"""Read plans (xfeldata.core.plan) and their executor (xfeldata._execute).

The explain() texts are compared exactly: they are part of the interface.
"""
import pickle

import h5py
import numpy as np
import pytest

import xfeldata
from xfeldata import _execute, _tiers, by_id
from xfeldata.core import plan as P
from xfeldata.exceptions import FileStructureError
from xfeldata.testing import (Aggregator, ControlSource, InstrumentSource, Key, RunSpec,
                              make_demo_run, write_run)

XGM = 'SA1_XTD2_XGM/DOOCS/MAIN'
AGIPD0 = 'SPB_DET_AGIPD1M-1/DET/0CH0:xtdf'
CAM = 'SPB_IRU_CAM/CAM/SIDEMIC:daqOutput'


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp('demo')
    m = make_demo_run(d)
    return xfeldata.RunDirectory(d), m


def fki(path, tids, firsts, counts, valid=None):
    tids = np.asarray(tids, np.uint64)
    valid = np.ones(len(tids), bool) if valid is None else np.asarray(valid, bool)
    return P.FileKeyIndex(path, tids, valid, np.asarray(firsts, np.uint64),
                          np.asarray(counts, np.uint64))


def rows(plan):
    return [(s.path, s.src_start, s.src_stop, s.dst_start, s.dst_stop) for s in plan.steps]


# -- explain() ----------------------------------------------------------------------------

def test_explain_control_key(demo):
    run, _ = demo
    assert run[XGM, 'beamPosition.ixPos'].plan().explain() == (
        "ReadPlan SA1_XTD2_XGM/DOOCS/MAIN beamPosition.ixPos.value: (100,) float32, "
        "400 bytes in 2 reads from 2 files\n") + """\
  dataset /CONTROL/SA1_XTD2_XGM/DOOCS/MAIN/beamPosition/ixPos/value
  RAW-R0001-DA01-S00000.h5 rows 0:50 -> out[0:50], 50 trains 10000..10049
  RAW-R0001-DA01-S00001.h5 rows 0:50 -> out[50:100], 50 trains 10050..10099"""


def test_explain_detector_selection_and_roi(demo):
    run, _ = demo
    kd = run[AGIPD0, 'image.data'].select_trains(by_id[10038:10044:2])
    assert kd.plan(roi=np.s_[0, 10:20, ::4]).explain() == (
        "ReadPlan SPB_DET_AGIPD1M-1/DET/0CH0:xtdf image.data: (24, 10, 8) uint16, "
        "3840 bytes in 3 reads from 2 files\n") + """\
  dataset /INSTRUMENT/SPB_DET_AGIPD1M-1/DET/0CH0:xtdf/image/data
  roi per entry: [0, 10:20, ::4]
  RAW-R0001-AGIPD00-S00000.h5 rows 304:312 -> out[0:8], 1 train 10038
  RAW-R0001-AGIPD00-S00001.h5 rows 0:8 -> out[8:16], 1 train 10040
  RAW-R0001-AGIPD00-S00001.h5 rows 16:24 -> out[16:24], 1 train 10042"""


def test_explain_sparse_data_array_roi(demo):
    # The camera misses train 10009: the chunk spans it, 6 trains have data.
    run, _ = demo
    kd = run[CAM, 'data.image.pixels'].select_trains(by_id[10005:10012])
    assert kd.plan(roi=(np.array([[1, 2], [3, 0]]), None)).explain() == (
        "ReadPlan SPB_IRU_CAM/CAM/SIDEMIC:daqOutput data.image.pixels: (6, 2, 2, 1, 48) "
        "uint16, 2304 bytes in 1 read from 1 file\n") + """\
  dataset /INSTRUMENT/SPB_IRU_CAM/CAM/SIDEMIC:daqOutput/data/image/pixels
  roi per entry: [[[1, 2], [3, 0]], None]
  RAW-R0001-DA02-S00000.h5 rows 5:11 -> out[0:6], 6 trains 10005..10011"""


def test_explain_empty_and_truncated(demo):
    run, _ = demo
    cam = run[CAM, 'data.image.pixels']
    assert cam.select_trains(by_id[[10009, 10019]]).plan().explain() == (
        "ReadPlan SPB_IRU_CAM/CAM/SIDEMIC:daqOutput data.image.pixels: (0, 32, 48) uint16, "
        "0 bytes in 0 reads from 0 files")
    assert cam.select_trains(np.s_[::10]).plan().explain(max_steps=2) == (
        "ReadPlan SPB_IRU_CAM/CAM/SIDEMIC:daqOutput data.image.pixels: (10, 32, 48) uint16, "
        "30720 bytes in 10 reads from 2 files\n") + """\
  dataset /INSTRUMENT/SPB_IRU_CAM/CAM/SIDEMIC:daqOutput/data/image/pixels
  RAW-R0001-DA02-S00000.h5 rows 0:1 -> out[0:1], 1 train 10000
  RAW-R0001-DA02-S00000.h5 rows 9:10 -> out[1:2], 1 train 10010
  ... 8 more reads"""


def test_explain_steps_of_several_datasets():
    steps = (P.ReadStep('/r/a.h5', '/A/x', 0, 2, 0, 2), P.ReadStep('/r/b.h5', '/B/x', 5, 6, 2, 3))
    assert P.ReadPlan(np.dtype('i4'), (3,), steps).explain() == """\
ReadPlan (unnamed): (3,) int32, 12 bytes in 2 reads from 2 files
  a.h5:/A/x rows 0:2 -> out[0:2]
  b.h5:/B/x rows 5:6 -> out[2:3]"""


# -- planning rules -------------------------------------------------------------------------

def test_chunks_span_empty_trains_and_break_at_gaps():
    f = fki('/r/a.h5', [1, 2, 3, 4, 5, 6], [0, 1, 2, 2, 3, 4], [1, 1, 0, 1, 1, 1])
    p = P.plan_key([f], '/x', 'f8', (), [1, 2, 3, 4, 6])
    assert rows(p) == [('/r/a.h5', 0, 3, 0, 3), ('/r/a.h5', 4, 5, 3, 4)]
    assert [(s.first_train, s.last_train, s.n_trains) for s in p.steps] == [(1, 4, 3), (6, 6, 1)]
    t = P.chunk_table([f], [1, 2, 3, 4, 6])
    assert t.bounds.tolist() == [0, 4, 5] and t.train_ids.tolist() == [1, 2, 3, 4, 6]


def test_noncontiguous_index_is_read_by_the_format_rule():
    # FORMAT.md 3.1: a run of consecutive positions [a, b) reads
    # first[a] : first[a] + sum(count[a:b]), whatever the later firsts say
    # (as EXtra-data does; the validator reports such files).
    f = fki('/r/a.h5', [1, 2, 3, 4], [6, 0, 2, 99], [2, 2, 4, 0])
    p = P.plan_key([f], '/x', 'f8', (), [1, 2, 3, 4])
    assert rows(p) == [('/r/a.h5', 6, 14, 0, 8)]
    assert P.entry_train_ids([f], [1, 2, 3, 4]).tolist() == [1, 1, 2, 2, 3, 3, 3, 3]
    # Trains at non-consecutive positions still start new steps.
    p = P.plan_key([f], '/x', 'f8', (), [1, 3])
    assert rows(p) == [('/r/a.h5', 6, 8, 0, 2), ('/r/a.h5', 2, 6, 2, 6)]


def test_suspect_trains_excluded_per_file():
    a = fki('/r/a.h5', [1, 2, 3], [0, 1, 2], [1, 1, 1], valid=[True, False, True])
    b = fki('/r/b.h5', [2], [0], [1])
    p = P.plan_key([a, b], '/x', 'f8', (), [1, 2, 3], inc_suspect_trains=False)
    assert rows(p) == [('/r/a.h5', 0, 1, 0, 1), ('/r/b.h5', 0, 1, 1, 2), ('/r/a.h5', 2, 3, 2, 3)]
    counts = P.counts_for_trains([a, b], [1, 2, 3], inc_suspect_trains=False)
    assert counts.tolist() == [1, 1, 1] and counts.dtype == np.uint64
    # The same with part of file a selected.
    p = P.plan_key([a, b], '/x', 'f8', (), [2, 3], inc_suspect_trains=False)
    assert rows(p) == [('/r/b.h5', 0, 1, 0, 1), ('/r/a.h5', 2, 3, 1, 2)]
    assert P.counts_for_trains([a], [2, 3], inc_suspect_trains=False).tolist() == [0, 1]
    assert P.counts_for_trains([a], [2, 3]).tolist() == [1, 1]


def test_steps_ordered_by_first_train_then_path():
    late = fki('/r/a.h5', [10, 11], [0, 1], [1, 1])
    early = fki('/r/z.h5', [1, 2], [0, 3], [3, 1])
    same = fki('/r/b.h5', [10], [0], [2])
    p = P.plan_key([late, early, same], '/x', 'f8', (), [1, 2, 10, 11])
    assert [s.path for s in p.steps] == ['/r/z.h5', '/r/a.h5', '/r/b.h5']
    assert P.entry_train_ids([late, early, same], [1, 2, 10, 11]).tolist() == \
        [1, 1, 1, 2, 10, 11, 10, 10]


def test_counts_align_with_unsorted_request():
    f = fki('/r/a.h5', [5, 6, 7], [0, 2, 2], [2, 0, 3])
    assert P.counts_for_trains([f], np.array([7, 4, 5], np.uint64)).tolist() == [3, 0, 2]


def test_plan_shape_nbytes_and_pickle():
    f = fki('/r/a.h5', [1, 2, 3], [0, 3, 4], [3, 1, 2])
    p = P.plan_key([f], '/x', 'u2', (4, 5), [1, 3], roi=np.s_[1:3], roi_shape=(2, 5), label='k')
    assert p.shape == (5, 2, 5) and p.nbytes == 5 * 2 * 5 * 2 and p.entry_nbytes == 20
    assert p.n_reads == 2 and p.n_files == 1
    assert pickle.loads(pickle.dumps(p)) == p and hash(p) == hash(P.plan_key(
        [f], '/x', 'u2', (4, 5), [1, 3], roi=np.s_[1:3], roi_shape=(2, 5), label='k'))


@pytest.mark.parametrize('roi', [
    np.s_[0, 1:5], np.s_[..., -1], np.s_[::-2], (None, 2),
    (np.array([[1, 0], [2, 2]]),), (np.array([True, False, True]),), ([2, 0],),
])
def test_roi_key_round_trips(roi):
    back = P.roi_from_key(P.roi_key(roi))
    a = np.arange(3 * 4 * 5).reshape(3, 4, 5)
    assert np.array_equal(a[back], a[roi])
    hash(P.roi_key(roi))


def test_read_blocks_rules():
    S = P.ReadStep
    steps = [S('/a', '/x', 0, 2, 0, 2), S('/a', '/x', 3, 4, 2, 3),      # small gap: gather
             S('/a', '/x', 100, 101, 3, 4),                             # large gap: new block
             S('/a', '/x', 200, 201, 4, 5),                             # union with previous
             S('/b', '/x', 201, 202, 5, 6),                             # other file
             S('/b', '/x', 0, 1, 6, 7)]                                 # rows go back
    got = [(b.step_start, b.step_stop, b.src_start, b.src_stop, b.gather)
           for b in P.read_blocks(steps, entry_nbytes=8, max_gap_bytes=64)]
    assert got == [(0, 2, 0, 4, True), (2, 4, 100, 201, False), (4, 5, 201, 202, False),
                   (5, 6, 0, 1, False)]
    assert len(P.read_blocks(steps[2:4] * 1, 8, max_gap_bytes=0, max_hyperslabs=1)) == 2
    # Scratch limit: a gap-read block never covers more than max_scratch_bytes.
    many = [S('/a', '/x', 2 * i, 2 * i + 1, i, i + 1) for i in range(10)]
    blocks = P.read_blocks(many, 8, max_gap_bytes=8, max_scratch_bytes=40)
    assert all((b.src_stop - b.src_start) * 8 <= 40 for b in blocks)
    assert [b.step_start for b in blocks] == [0, 3, 6, 9]


def test_core_plan_is_pure():
    import xfeldata.core.plan as mod
    src = open(mod.__file__).read()
    assert 'import h5py' not in src and 'import os' not in src


# -- the executor -----------------------------------------------------------------------------

@pytest.mark.parametrize('options', [
    {}, {'max_gap_bytes': 0}, {'max_gap_bytes': 0, 'max_hyperslabs': 1},
    {'max_gap_bytes': 1 << 30, 'max_scratch_bytes': 1 << 30},
])
@pytest.mark.parametrize('roi', [(), np.s_[1, 2:30:3], np.s_[..., ::-5], ([3, 1, 3], None)])
def test_execute_equals_manifest_whatever_the_grouping(demo, options, roi):
    run, m = demo
    kd = run[CAM, 'data.image.pixels'].select_trains(np.s_[1::3])
    want = m.expected(CAM, 'data.image.pixels', np.asarray(kd.train_ids, np.uint64))
    got = _execute.execute(kd.plan(roi=roi), **options)
    assert np.array_equal(got, want[(slice(None),) + roi])


def test_execute_into_out(demo):
    run, m = demo
    kd = run[XGM, 'beamPosition.ixPos'].select_trains(np.s_[::2])
    want = kd.ndarray()
    out = np.zeros(kd.shape, np.float64)                    # another dtype: HDF5 converts
    assert kd.ndarray(out=out) is out and np.array_equal(out, want)
    big = np.zeros((kd.shape[0], 2), np.float32)
    assert np.array_equal(kd.ndarray(out=big[:, 1]), want)  # a strided view
    assert np.array_equal(big[:, 1], want) and not big[:, 0].any()
    with pytest.raises(ValueError, match=r'requires output array of shape \(50,\)'):
        kd.ndarray(out=np.zeros(49, np.float32))


def test_execute_decodes_strings(demo):
    run, m = demo
    kd = run[XGM, 'state'].select_trains(np.s_[45:55])
    got = kd.ndarray()
    assert got.dtype == object and all(isinstance(v, str) for v in got)
    assert got.tolist() == [v.decode() if isinstance(v, bytes) else v
                            for v in m.expected(XGM, 'state.value', np.arange(10045, 10055))]


def one_key_run(directory, key, counts):
    """A one-file run of source A/B/C:out with key data.x; (manifest, file path)."""
    src = InstrumentSource('A/B/C:out', {'data.x': key}, groups={'data': counts})
    m = write_run(directory, RunSpec(np.arange(1, len(counts) + 1), [Aggregator('DA01', [src])]))
    return m, m.files[0].path


def reopen(directory):
    _tiers.MEMO.clear()
    return xfeldata.RunDirectory(directory)['A/B/C:out', 'data.x']


def test_index_past_end_and_missing_dataset(tmp_path):
    m, path = one_key_run(tmp_path, np.int32, [1, 2, 1])
    with h5py.File(path, 'r+') as f:
        f['INDEX/A/B/C:out/data/count'][2] = 5      # the last train points past the end
    kd = reopen(tmp_path)
    # TypeError, as EXtra-data raises; the message names the file and rows.
    with pytest.raises(TypeError, match='INDEX points past the end') as e:
        kd.ndarray()
    assert path in str(e.value) and 'rows 0:8 of 4' in str(e.value)
    # Trains whose rows exist still read.
    assert np.array_equal(kd[:2].ndarray(), m.expected('A/B/C:out', 'data.x', [1, 2]))
    bad = P.ReadPlan(kd.dtype, (1,), (P.ReadStep(path, '/INSTRUMENT/nothing', 0, 1, 0, 1),))
    with pytest.raises(KeyError, match='no dataset /INSTRUMENT/nothing'):
        _execute.execute(bad)


def test_damaged_chunk_is_a_file_error(tmp_path):
    key = Key(np.float32, (256,), chunks=(1, 256), compression='gzip')
    m, path = one_key_run(tmp_path, key, [1, 1, 1, 1])
    with h5py.File(path, 'r') as f:
        info = f['INSTRUMENT/A/B/C:out/data/x'].id.get_chunk_info(2)
    with open(path, 'r+b') as fh:                  # garbage in place of train 3's chunk
        fh.seek(info.byte_offset)
        fh.write(b'\xff' * info.size)
    kd = reopen(tmp_path)
    with pytest.raises(FileStructureError, match='cannot read .*data/x rows') as e:
        kd.ndarray()
    assert e.value.path == path
    assert np.array_equal(kd[:2].ndarray(), m.expected('A/B/C:out', 'data.x', [1, 2]))


def test_execute_empty_plan_reads_nothing():
    plan = P.ReadPlan(np.dtype('f4'), (0, 3), ())
    assert _execute.execute(plan).shape == (0, 3)


def test_control_vector_key_roi(tmp_path):
    ctrl = ControlSource('A/B/C', {'vec': (np.float32, (3, 4))})
    m = write_run(tmp_path, RunSpec(np.arange(1, 21), [Aggregator('DA01', [ctrl],
                                                                  sequence_starts=(7, 13))]))
    kd = xfeldata.RunDirectory(tmp_path)['A/B/C', 'vec'].select_trains(np.s_[3:18:2])
    want = m.expected('A/B/C', 'vec.value', np.asarray(kd.train_ids, np.uint64))
    for roi in [(), (2,), np.s_[:, 1::2], (np.array([2, 0]),), np.s_[-1, -1]]:
        assert np.array_equal(kd.ndarray(roi=roi), want[(slice(None),) + roi]), roi
    # Advanced indices apart: numpy would put their axis before the row axis;
    # the roi applies per entry, so the rows stay first.
    roi = (np.array([2, 0]), Ellipsis, 1)
    assert np.array_equal(kd.ndarray(roi=roi), np.stack([e[roi] for e in want]))
