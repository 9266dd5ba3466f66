"""Virtual CXI files (xfeldata.write_cxi, det.write_virtual_cxi, det.write_frames and
``xfeldata make-virtual-cxi``), checked with plain h5py against FORMAT.md section 7.

The expected values are computed independently: per module, its rows of each
train are read with h5py from the run's files (INDEX first/count) and put at
the train's frames by hand; the CXI file is then read with plain h5py.
"""
import hashlib
import os
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_components import h5_module_rows

from xfeldata import H5File, RunDirectory
from xfeldata.cli import main as cli_main
from xfeldata.cli.make_virtual_cxi import default_output
from xfeldata.components import AGIPD1M, DSSC1M, JUNGFRAU, LPD1M
from xfeldata.testing import Aggregator, RunSpec, jungfrau_module, write_run, xtdf_module
from xfeldata.write_cxi import JUNGFRAUCXIWriter, XtdfCXIWriter, writer_for

TIDS = np.arange(10000, 10006, dtype=np.uint64)
FRAMES = [3, 0, 2, 4, 1, 2]          # train 10001 has no frames at all -> dropped
SHAPE = (4, 3)


# -- independent expectation: plain h5py --------------------------------------------------

# {train ID: rows of key} of one source, read with plain h5py from every file of the run.
h5_rows = h5_module_rows


def expected_frames(directory, slot_sources, n_slots, key, group, min_modules, cells, fill):
    """(train ID per frame, array (frames, slots, flat inner)) built from h5py reads."""
    per = {slot: h5_rows(directory, src, key, group) for slot, src in slot_sources.items()}
    trains = sorted({t for rows in per.values() for t in rows})
    kept, counts = [], []
    for t in trains:
        ns = {len(rows[t]) for rows in per.values() if t in rows}
        assert len(ns) == 1
        if sum(t in rows for rows in per.values()) >= min_modules:
            kept.append(t)
            counts.append(ns.pop() * cells)
    sample = next(iter(next(iter(per.values())).values()))
    inner = int(sample[0].size) // cells
    out = np.full((sum(counts), n_slots, inner), fill, sample.dtype)
    pos = 0
    for t, n in zip(kept, counts):
        for slot, rows in per.items():
            if t in rows:
                out[pos:pos + n, slot] = rows[t].reshape(n, inner)
        pos += n
    return np.repeat(kept, counts).astype(np.uint64), out


def superblock_version(path):
    with open(path, 'rb') as fh:
        head = fh.read(9)
    assert head[:8] == b'\x89HDF\r\n\x1a\n'
    return head[8]


def check_layout(path, *, det_name, n_frames, n_modules, module_ids, pulse_label,
                 data_dtype, frame_shape, cell_dtype, gain_mask, data_gain=None,
                 proposal=700000, run=1):
    """Every row of FORMAT.md section 7's table, with plain h5py."""
    assert superblock_version(path) == 3          # library version bounds v110
    with h5py.File(path, 'r') as f:
        ds = f['cxi_version']
        assert ds.dtype == np.int64 and ds.shape == (1,) and ds[()].tolist() == [150]
        entry = f['entry_1']
        if proposal is None:
            assert not {'name', 'euxfelProposalNumber', 'euxfelRunNumber'} & set(entry.attrs)
        else:
            assert entry.attrs['name'] == f'EuXFEL proposal {proposal} run {run}'
            for a, v in (('euxfelProposalNumber', proposal), ('euxfelRunNumber', run)):
                assert entry.attrs[a].dtype == np.uint32 and entry.attrs[a] == v
        ei = entry['experiment_identifier']
        assert ei.shape == (n_frames,) and h5py.check_string_dtype(ei.dtype).encoding == 'utf-8'
        assert h5py.check_string_dtype(ei.dtype).length is None          # variable length
        for name in ('trainId', pulse_label):
            assert entry[name].dtype == np.uint64 and entry[name].shape == (n_frames,)
        assert ({'pulseId', 'memoryCell'} - {pulse_label}).isdisjoint(entry)
        cell = entry['cellId']
        assert cell.is_virtual and cell.shape == (n_frames, n_modules)
        assert cell.dtype == cell_dtype and cell.fillvalue == 0
        assert cell.attrs['axes'] == 'experiment_identifier:module_identifier'
        det = f['entry_1/instrument_1/detector_1']
        assert det.attrs['name'] == det_name
        mi = det['module_identifier']
        assert mi.dtype == np.int64 and mi[()].tolist() == list(module_ids)
        data = det['data']
        assert data.is_virtual and data.dtype == data_dtype
        if data_gain is None:
            assert data.shape == (n_frames, n_modules) + frame_shape
            assert data.attrs['axes'] == 'experiment_identifier:module_identifier:y:x'
            assert 'data_gain' not in entry and 'data_gain' not in det
        else:
            assert data.shape == (n_frames, n_modules, len(data_gain)) + frame_shape
            assert data.attrs['axes'] == \
                'experiment_identifier:module_identifier:data_gain:y:x'
            dg = entry['data_gain']
            assert h5py.check_string_dtype(dg.dtype).encoding == 'utf-8'
            assert [x.decode() for x in dg[()]] == list(data_gain)
            link = det.get('data_gain', getlink=True)
            assert isinstance(link, h5py.SoftLink) and link.path == '/entry_1/data_gain'
        if np.dtype(data_dtype).kind == 'f':
            assert np.isnan(data.fillvalue)
        else:
            assert data.fillvalue == 0
        for name, dt, fill in (('gain', np.uint8, 0), ('mask', np.uint32, 0xFFFFFFFF)):
            if name in gain_mask:
                g = det[name]
                assert g.is_virtual and g.dtype == dt and g.fillvalue == fill
                assert g.shape == (n_frames, n_modules) + frame_shape
                assert g.attrs['axes'] == 'experiment_identifier:module_identifier:y:x'
            else:
                assert name not in det
        for link, target in (('entry_1/data_1', '/entry_1/instrument_1/detector_1'),
                             ('entry_1/instrument_1/detector_1/experiment_identifier',
                              '/entry_1/experiment_identifier')):
            lk = f.get(link, getlink=True)
            assert isinstance(lk, h5py.SoftLink) and lk.path == target
        assert f['entry_1/data_1/data'].shape == data.shape


def check_values(path, directory, det, *, keys, cells=1, pulse_label='pulseId',
                 min_modules=1):
    """Datasets equal to h5py reads of the sources (fill in missing slots) and to the
    detector's own assembled arrays."""
    slots = {m - det._first_slot: s for m, s in det.modno_to_source.items()}
    group = keys['data'].partition('.')[0]
    with h5py.File(path, 'r') as f:
        tid = f['entry_1/trainId'][()]
        pid = f[f'entry_1/{pulse_label}'][()]
        ei = [x.decode() for x in f['entry_1/experiment_identifier'][()]]
        assert ei == [f'{t}:{p}' for t, p in zip(tid, pid)]
        for name, key in keys.items():
            got = f[f'entry_1/data_1/{name}' if name != 'cellId' else 'entry_1/cellId'][()]
            ds = f[f'entry_1/data_1/{name}' if name != 'cellId' else 'entry_1/cellId']
            fill = ds.fillvalue
            exp_tid, exp = expected_frames(directory, slots, det.n_modules, key, group,
                                           min_modules, cells, fill)
            assert tid.tolist() == exp_tid.tolist()
            np.testing.assert_array_equal(got.reshape(exp.shape), exp)
            # ... and the detector's assembled array, frame by frame
            arr = det[key].ndarray(module_gaps=True, fill_value=fill)
            arr = np.moveaxis(arr.reshape((det.n_modules, got.shape[0], -1)), 0, 1)
            np.testing.assert_array_equal(got.reshape(arr.shape), arr)
    return tid, pid


# -- runs ---------------------------------------------------------------------------------

def xtdf_run(d, det_name, kind, present, missing, raw, corr_names=False, seq=()):
    aggs = []
    for m in present:
        keep = [i for i in range(len(TIDS)) if i not in missing.get(m, ())]
        src = xtdf_module(det_name, m, frames=[FRAMES[i] for i in keep], kind=kind, raw=raw,
                          corr_names=corr_names, frame_shape=SHAPE)
        aggs.append(Aggregator(f'{kind}{m:02d}', [src], train_ids=TIDS[keep],
                               sequence_starts=(2,) if m in seq else ()))
    write_run(d, train_ids=TIDS, aggregators=aggs, category='RAW' if raw else 'CORR')
    return str(d)


def jf_run(d, present, missing, raw=False, cells=4, **kw):
    aggs = []
    for m in present:
        keep = [i for i in range(len(TIDS)) if i not in missing.get(m, ())]
        aggs.append(Aggregator(f'JNGFR{m:02d}', [jungfrau_module(
            'SPB_IRDA_JF4M', m, cells=cells, raw=raw, frame_shape=SHAPE,
            counts=[1] * len(keep))], train_ids=TIDS[keep]))
    write_run(d, train_ids=TIDS, aggregators=aggs, **kw)
    return str(d)


def digest(directory):
    h = hashlib.sha256()
    for p in sorted(Path(directory).glob('*.h5')):
        h.update(p.read_bytes())
        h.update(str(p.stat().st_mtime_ns).encode())
    return h.hexdigest()


@pytest.fixture(scope='module')
def agipd_raw(tmp_path_factory):
    # modules 0, 1, 2, 5 of 16; module 2 lacks train 10003; module 1 in 2 sequence files
    d = xtdf_run(tmp_path_factory.mktemp('agipd_raw'), 'SPB_DET_AGIPD1M-1', 'AGIPD',
                 (0, 1, 2, 5), {2: (3,)}, raw=True, seq=(1,))
    return d, AGIPD1M(RunDirectory(d), raw=True)


@pytest.fixture(scope='module')
def agipd_corr(tmp_path_factory):
    d = xtdf_run(tmp_path_factory.mktemp('agipd_corr'), 'SPB_DET_AGIPD1M-1', 'AGIPD',
                 (0, 3, 15), {3: (2,), 15: (5,)}, raw=False, corr_names=True, seq=(0,))
    return d, AGIPD1M(RunDirectory(d))


# -- the layout, detector by detector ------------------------------------------------------

def test_agipd_raw(agipd_raw, tmp_path):
    d, det = agipd_raw
    before = digest(d)
    path = det.write_virtual_cxi(tmp_path / 'raw.cxi')
    assert path == str(tmp_path / 'raw.cxi')
    n = sum(FRAMES)
    check_layout(path, det_name='SPB_DET_AGIPD1M-1', n_frames=n, n_modules=16,
                 module_ids=range(16), pulse_label='pulseId', data_dtype=np.uint16,
                 frame_shape=SHAPE, cell_dtype=np.uint16, gain_mask=(),
                 data_gain=('data', 'gain'))
    tid, pid = check_values(path, d, det, keys={'data': 'image.data', 'cellId': 'image.cellId'})
    # synthetic pulse IDs are the frame index within the train
    assert pid.tolist() == [i for n in FRAMES for i in range(n)]
    with h5py.File(path, 'r') as f:
        data = f['entry_1/data_1/data']
        # absent modules (3, 4, 6..15) and module 2's missing train read the fill value
        assert (data[:, 3] == 0).all() and (data[:, 15] == 0).all()
        rows = np.flatnonzero(tid == 10003)
        assert (data[rows, 2] == 0).all() and (data[rows, 0] != 0).any()
        # few mappings, not one per frame: one per module file (module 1 has two),
        # plus one split where module 2's rows jump over its missing train 10003
        maps = [(m.file_name, m.src_space.get_select_bounds()[0][0],
                 m.vspace.get_select_bounds()[0][:2]) for m in data.virtual_sources()]
        assert len(maps) == 6
        m2 = sorted((s, v) for fn, s, v in maps if 'AGIPD02' in fn)
        assert m2 == [(0, (0, 2)), (5, (9, 2))]   # rows 0-4 -> frames 0-4, 5- -> 9-
    assert digest(d) == before                      # inputs untouched


def test_agipd_corrected_gain_mask(agipd_corr, tmp_path):
    d, det = agipd_corr
    path = det.write_virtual_cxi(tmp_path / 'corr.cxi')
    check_layout(path, det_name='SPB_DET_AGIPD1M-1', n_frames=sum(FRAMES), n_modules=16,
                 module_ids=range(16), pulse_label='pulseId', data_dtype=np.float32,
                 frame_shape=SHAPE, cell_dtype=np.uint16, gain_mask=('gain', 'mask'))
    check_values(path, d, det, keys={'data': 'image.data', 'gain': 'image.gain',
                                     'mask': 'image.mask', 'cellId': 'image.cellId'})
    with h5py.File(path, 'r') as f:
        data = f['entry_1/data_1/data'][()]
        mask = f['entry_1/data_1/mask'][()]
        gain = f['entry_1/data_1/gain'][()]
        tid = f['entry_1/trainId'][()]
    missing = (tid == 10002)[:, None] & (np.arange(16) == 3)[None, :]
    missing |= ~np.isin(np.arange(16), [0, 3, 15])[None, :]
    missing |= (tid == 10005)[:, None] & (np.arange(16) == 15)[None, :]
    assert np.isnan(data[missing]).all() and not np.isnan(data[~missing]).any()
    assert (mask[missing] == 0xFFFFFFFF).all() and (gain[missing] == 0).all()
    # masked frames: the detector's masked data equal data where mask == 0
    masked = det.masked_data().ndarray(module_gaps=True)
    exp = np.where(mask != 0, np.nan, data)
    np.testing.assert_array_equal(np.moveaxis(masked, 0, 1), exp)


def test_lpd_corrected_and_dssc_raw(tmp_path):
    lpd_dir = xtdf_run(tmp_path / 'lpd', 'FXE_DET_LPD1M-1', 'LPD', (0, 1), {1: (0, 4)},
                       raw=False, corr_names=True)
    det = LPD1M(RunDirectory(lpd_dir))
    path = det.write_virtual_cxi(tmp_path / 'lpd.cxi')
    check_layout(path, det_name='FXE_DET_LPD1M-1', n_frames=sum(FRAMES), n_modules=16,
                 module_ids=range(16), pulse_label='pulseId', data_dtype=np.float32,
                 frame_shape=SHAPE, cell_dtype=np.uint16, gain_mask=('gain', 'mask'))
    check_values(path, lpd_dir, det, keys={'data': 'image.data', 'mask': 'image.mask',
                                           'cellId': 'image.cellId'})

    dssc_dir = xtdf_run(tmp_path / 'dssc', 'SCS_DET_DSSC1M-1', 'DSSC', (4, 9), {9: (2,)},
                        raw=True)
    det = DSSC1M(RunDirectory(dssc_dir), raw=True)
    path = det.write_virtual_cxi(tmp_path / 'dssc.cxi')
    # raw DSSC/LPD keep their length-1 plane axis: 5-D, data_gain = ['data']
    check_layout(path, det_name='SCS_DET_DSSC1M-1', n_frames=sum(FRAMES), n_modules=16,
                 module_ids=range(16), pulse_label='pulseId', data_dtype=np.uint16,
                 frame_shape=SHAPE, cell_dtype=np.uint16, gain_mask=(), data_gain=('data',))
    check_values(path, dssc_dir, det, keys={'data': 'image.data', 'cellId': 'image.cellId'})


def test_jungfrau_memory_cells(tmp_path):
    d = jf_run(tmp_path / 'jf', (1, 2, 4), {2: (3,)}, raw=False, cells=4)
    det = JUNGFRAU(RunDirectory(d), n_modules=5)
    assert isinstance(writer_for(det), JUNGFRAUCXIWriter)
    path = det.write_virtual_cxi(tmp_path / 'jf.cxi')
    n = len(TIDS) * 4
    check_layout(path, det_name='SPB_IRDA_JF4M', n_frames=n, n_modules=5,
                 module_ids=range(1, 6), pulse_label='memoryCell', data_dtype=np.float32,
                 frame_shape=SHAPE, cell_dtype=np.uint8, gain_mask=('gain', 'mask'))
    tid, cells = check_values(path, d, det, keys={'data': 'data.adc', 'gain': 'data.gain',
                                                  'mask': 'data.mask',
                                                  'cellId': 'data.memoryCell'},
                              cells=4, pulse_label='memoryCell')
    assert tid.tolist() == np.repeat(TIDS, 4).tolist()
    assert cells.tolist() == [0, 1, 2, 3] * len(TIDS)
    with h5py.File(path, 'r') as f:
        data = f['entry_1/data_1/data']
        rows = np.flatnonzero(tid == 10003)
        assert np.isnan(data[rows, 1]).all() and not np.isnan(data[rows, 0]).any()
        assert np.isnan(data[:, 2]).all() and np.isnan(data[:, 4]).all()   # modules 3, 5

    raw = jf_run(tmp_path / 'jfraw', (1, 2), {}, raw=True, cells=1)
    det = JUNGFRAU(RunDirectory(raw), raw=True)
    path = det.write_virtual_cxi(tmp_path / 'jfraw.cxi')
    check_layout(path, det_name='SPB_IRDA_JF4M', n_frames=len(TIDS), n_modules=2,
                 module_ids=[1, 2], pulse_label='memoryCell', data_dtype=np.uint16,
                 frame_shape=SHAPE, cell_dtype=np.uint8, gain_mask=())
    check_values(path, raw, det, keys={'data': 'data.adc', 'cellId': 'data.memoryCell'},
                 pulse_label='memoryCell')


def test_min_modules_and_train_selection(agipd_raw, tmp_path):
    d, _ = agipd_raw
    det = AGIPD1M(RunDirectory(d), raw=True, min_modules=4)
    path = det.write_virtual_cxi(tmp_path / 'min4.cxi')
    tid, _ = check_values(path, d, det, keys={'data': 'image.data'}, min_modules=4)
    assert sorted(set(tid.tolist())) == [10000, 10002, 10004, 10005]   # 10003 lacks module 2
    part = det.select_trains(np.s_[1:3])
    path = part.write_virtual_cxi(tmp_path / 'part.cxi')
    with h5py.File(path, 'r') as f:
        assert sorted(set(f['entry_1/trainId'][()].tolist())) == [10002, 10004]
        exp = np.moveaxis(part['image.data'].ndarray(module_gaps=True), 0, 1)
        np.testing.assert_array_equal(f['entry_1/data_1/data'][()], exp)


def test_fill_values(agipd_corr, agipd_raw, tmp_path):
    _, det = agipd_corr
    path = det.write_virtual_cxi(tmp_path / 'f.cxi',
                                 fillvalues={'data': -1, 'mask': 0x10, 'gain': 7, 'cellId': 9})
    with h5py.File(path, 'r') as f:
        det1 = f['entry_1/instrument_1/detector_1']
        assert det1['data'].fillvalue == -1 and (det1['data'][:, 5] == -1).all()
        assert det1['mask'].fillvalue == 0x10 and (det1['mask'][:, 5] == 0x10).all()
        assert (det1['gain'][:, 5] == 7).all() and (f['entry_1/cellId'][:, 5] == 9).all()
        assert not np.isnan(det1['data'][()]).any()
    with pytest.raises(ValueError, match='does not fit'):
        det.write_virtual_cxi(tmp_path / 'g.cxi', fillvalues={'gain': 300})
    with pytest.raises(ValueError, match='unknown datasets'):
        det.write_virtual_cxi(tmp_path / 'g.cxi', fillvalues={'nonsense': 1})
    _, raw = agipd_raw
    with pytest.raises(ValueError, match='not an integer'):
        raw.write_virtual_cxi(tmp_path / 'g.cxi', fillvalues={'data': np.nan})
    # gain/mask overrides for raw data (no such datasets) are ignored
    path = raw.write_virtual_cxi(tmp_path / 'r.cxi', fillvalues={'data': 0xFFFF, 'mask': 1})
    with h5py.File(path, 'r') as f:
        assert (f['entry_1/data_1/data'][:, 7] == 0xFFFF).all()
    assert not list(tmp_path.glob('g.cxi')) and not list(tmp_path.glob('.*tmp'))


def test_unwritable_target_fails_before_work(agipd_raw, tmp_path, monkeypatch):
    d, det = agipd_raw

    def boom(*a, **k):
        raise AssertionError('pulse IDs read before the target was checked')
    monkeypatch.setattr(XtdfCXIWriter, '_pulse_ids', boom)
    with pytest.raises(FileNotFoundError, match='does not exist'):
        det.write_virtual_cxi(tmp_path / 'nope' / 'x.cxi')
    with pytest.raises(IsADirectoryError):
        det.write_virtual_cxi(tmp_path)
    with pytest.raises(ValueError, match='input file'):
        det.write_virtual_cxi(min(Path(d).glob('*.h5')))
    ro = tmp_path / 'ro'
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip('running as a user who can write anywhere')
        with pytest.raises(PermissionError, match='not writable'):
            det.write_virtual_cxi(ro / 'x.cxi')
    finally:
        ro.chmod(0o700)


def test_failure_leaves_no_file(agipd_raw, tmp_path, monkeypatch):
    _, det = agipd_raw
    import xfeldata.write_cxi as wc
    target = tmp_path / 'x.cxi'
    target.write_bytes(b'old')

    def broken(*a, **k):
        raise RuntimeError('disk full')
    monkeypatch.setattr(wc, '_create_virtual', broken)
    with pytest.raises(RuntimeError, match='disk full'):
        det.write_virtual_cxi(target)
    assert target.read_bytes() == b'old'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['x.cxi']


def test_pulse_id_disagreement(tmp_path):
    d = xtdf_run(tmp_path / 'run', 'SPB_DET_AGIPD1M-1', 'AGIPD', (0, 1), {}, raw=False,
                 corr_names=True)
    fn = next(Path(d).glob('*AGIPD01*.h5'))
    with h5py.File(fn, 'r+') as f:
        ds = f['INSTRUMENT/SPB_DET_AGIPD1M-1/CORR/1CH0:output/image/pulseId']
        ds[4] = 77
    det = AGIPD1M(RunDirectory(d))
    with pytest.raises(ValueError, match='disagree about image.pulseId.*train 10002'):
        det.write_virtual_cxi(tmp_path / 'x.cxi')
    assert not (tmp_path / 'x.cxi').exists()


def test_multi_run_skips_metadata(tmp_path):
    a = xtdf_run(tmp_path / 'a', 'SPB_DET_AGIPD1M-1', 'AGIPD', (0,), {}, raw=True)
    spec = RunSpec(np.arange(20000, 20003), [Aggregator('AGIPD01', [xtdf_module(
        'SPB_DET_AGIPD1M-1', 1, frames=2, frame_shape=SHAPE)])], run=2)
    write_run(tmp_path / 'b', spec)
    both = RunDirectory(a).union(RunDirectory(tmp_path / 'b'))
    assert not both.is_single_run
    det = AGIPD1M(both, raw=True)
    path = det.write_virtual_cxi(tmp_path / 'multi.cxi')
    check_layout(path, det_name='SPB_DET_AGIPD1M-1', n_frames=sum(FRAMES) + 6, n_modules=16,
                 module_ids=range(16), pulse_label='pulseId', data_dtype=np.uint16,
                 frame_shape=SHAPE, cell_dtype=np.uint16, gain_mask=(),
                 data_gain=('data', 'gain'), proposal=None)
    with h5py.File(path, 'r') as f:
        data = f['entry_1/data_1/data'][()]
    np.testing.assert_array_equal(np.moveaxis(det['image.data'].ndarray(module_gaps=True),
                                              0, 1), data)


def test_layout_explain_and_records(agipd_raw, tmp_path):
    _, det = agipd_raw
    w = XtdfCXIWriter(det)
    assert w.detdata is det and w.nmodules == 16
    path = w.write(str(tmp_path / 'direct.cxi'), fillvalues={'data': 7})
    with h5py.File(path, 'r') as f:
        assert (f['entry_1/data_1/data'][:, 4] == 7).all()
    lay = writer_for(det).layout()
    assert lay.n_frames == sum(FRAMES) and lay.n_modules == 16
    assert lay.dataset('data').shape == (sum(FRAMES), 16, 2) + SHAPE
    assert {m.slot for m in lay.dataset('data').maps} == {0, 1, 2, 5}
    text = lay.explain()
    assert 'mappings' in text and '/entry_1/instrument_1/detector_1/data' in text
    with pytest.raises(KeyError):
        lay.dataset('gain')


# -- write_frames ---------------------------------------------------------------------------

def test_write_frames(agipd_corr, tmp_path):
    d, det = agipd_corr
    trains = np.array([10000, 10000, 10002, 10005, 10003])
    pulses = np.array([2, 0, 1, 1, 3])
    path = det.write_frames(tmp_path / 'frames.h5', trains, pulses)
    f = H5File(path)
    assert f.train_ids == [10000, 10002, 10003, 10005]
    for src in det.source_to_modno:
        rows = h5_rows(d, src, 'image.data', 'image')
        pids = h5_rows(d, src, 'image.pulseId', 'image')
        exp, exp_p = [], []
        for t in f.train_ids:
            if t not in rows:
                continue
            want = {int(p) for tt, p in zip(trains, pulses) if tt == t}
            keep = [i for i, p in enumerate(pids[t]) if int(p) in want]
            exp.append(rows[t][keep])
            exp_p += [int(pids[t][i]) for i in keep]
        np.testing.assert_array_equal(f[src, 'image.data'].ndarray(), np.concatenate(exp))
        assert f[src, 'image.pulseId'].ndarray().tolist() == exp_p
        # other groups: whole trains
        assert f[src, 'header.trainId'].ndarray().tolist() == \
            [t for t in f.train_ids if t in rows]
    with h5py.File(path, 'r') as h:
        src = 'SPB_DET_AGIPD1M-1/CORR/3CH0:output'   # lacks train 10002
        assert h[f'INDEX/{src}/image/count'][()].tolist() == [2, 0, 1, 1]


def test_write_frames_errors(agipd_corr, tmp_path):
    _, det = agipd_corr
    with pytest.raises(ValueError, match="don't match"):
        det.write_frames(tmp_path / 'x.h5', [10000, 10002], [0])
    with pytest.raises(ValueError, match='1-D'):
        det.write_frames(tmp_path / 'x.h5', [[10000]], [[0]])
    with pytest.raises(ValueError, match='not in the'):
        det.write_frames(tmp_path / 'x.h5', [10000, 10001], [0, 0])   # 10001: no frames
    with pytest.raises(ValueError, match=r'\(10000, 9\)'):
        det.write_frames(tmp_path / 'x.h5', [10000], [9])
    assert not list(tmp_path.iterdir())


# -- the command line -----------------------------------------------------------------------

@pytest.fixture(scope='module')
def proposal(tmp_path_factory):
    root = tmp_path_factory.mktemp('p')
    prop = root / 'SPB' / '202401' / 'p002173'
    xtdf_run(prop / 'proc' / 'r0012', 'SPB_DET_AGIPD1M-1', 'AGIPD', range(10), {9: (0,)},
             raw=False, corr_names=True)
    xtdf_run(prop / 'raw' / 'r0012', 'SPB_DET_AGIPD1M-1', 'AGIPD', (0, 1), {}, raw=True)
    (prop / 'scratch').mkdir()
    return prop


def _trains(path):
    with h5py.File(path, 'r') as f:
        return sorted(set(f['entry_1/trainId'][()].tolist()))


def test_cli_default_paths(proposal, capsys):
    proc = proposal / 'proc' / 'r0012'
    assert cli_main(['make-virtual-cxi', str(proc)]) == 0
    out = proposal / 'scratch' / 'r0012_proc_detectors_virt.cxi'
    # default min_modules = 16 // 2 + 1 = 9: module 9 lacks train 10000, 10 modules present
    assert _trains(out) == [10000, 10002, 10003, 10004, 10005]
    with h5py.File(out, 'r') as f:
        assert f['entry_1/data_1/data'].dtype == np.float32
        assert 'mask' in f['entry_1/instrument_1/detector_1']
    # raw run of 2 modules: the default min_modules (9) keeps nothing -> exit 1
    raw = proposal / 'raw' / 'r0012'
    assert cli_main(['make-virtual-cxi', str(raw)]) == 1
    assert 'No data found with >= 9 modules' in capsys.readouterr().err
    assert cli_main(['make-virtual-cxi', str(raw) + '/', '--min-modules', '1', '-q']) == 0
    assert (proposal / 'scratch' / 'r0012_raw_detectors_virt.cxi').exists()
    # the legacy form: PROPOSAL_DIR RUN -> proc/rNNNN, scratch/rNNNN_detectors_virt.cxi
    assert cli_main(['make-virtual-cxi', str(proposal), '12', '--min-modules', '10']) == 0
    assert _trains(proposal / 'scratch' / 'r0012_detectors_virt.cxi') == \
        [10002, 10003, 10004, 10005]
    assert default_output(str(proc)) == str(out)
    assert default_output(str(proposal / 'usr' / 'r0012')) is None


def test_cli_output_and_options(proposal, tmp_path, capsys):
    proc = str(proposal / 'proc' / 'r0012')
    out = tmp_path / 'mine.cxi'
    assert cli_main(['make-virtual-cxi', proc, '-o', str(out), '--min-modules', '1',
                     '--fill-value', 'mask', '0xff00', '--fill-value', 'data', '-2.5',
                     '--fill-value', 'gain', '0b11', '-q']) == 0
    with h5py.File(out, 'r') as f:
        det1 = f['entry_1/instrument_1/detector_1']
        assert det1['mask'].fillvalue == 0xff00 and det1['data'].fillvalue == -2.5
        assert det1['gain'].fillvalue == 3
        assert (det1['mask'][:, 12] == 0xff00).all()
        assert f['entry_1/trainId'].shape == (sum(FRAMES),)       # --min-modules 1
    assert capsys.readouterr().err == ''                          # -q: silent
    # a folder without the raw|proc/rNNNN form needs -o
    with pytest.raises(SystemExit) as e:
        cli_main(['make-virtual-cxi', str(tmp_path)])
    assert e.value.code == 2 and '-o' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(['make-virtual-cxi', proc, '-o', str(out), '--fill-value', 'data', 'x'])
    # unwritable output: message, exit 1, nothing written
    assert cli_main(['make-virtual-cxi', proc, '-o', str(tmp_path / 'no' / 'x.cxi')]) == 1
    assert 'does not exist' in capsys.readouterr().err
    assert not (tmp_path / 'no').exists()
    assert cli_main(['make-virtual-cxi', str(tmp_path / 'nothing'), '-o',
                     str(tmp_path / 'y.cxi')]) == 1
    # bad fill value for the type: exit 1 with the reason, no file
    assert cli_main(['make-virtual-cxi', proc, '-o', str(tmp_path / 'z.cxi'),
                     '--fill-value', 'gain', '999', '-q']) == 1
    assert 'does not fit' in capsys.readouterr().err
    assert not (tmp_path / 'z.cxi').exists()


def test_cli_jungfrau_and_suspect_trains(tmp_path, capsys):
    valid = [True, True, False, True, True, True]
    d = jf_run(tmp_path / 'p001' / 'raw' / 'r0003', (1, 2, 3), {3: (0, 1)}, raw=True, cells=2,
               valid=valid)
    out = tmp_path / 'jf.cxi'
    # --n-modules 4: min_modules defaults to 3 -> trains where all 3 modules have data
    assert cli_main(['make-virtual-cxi', d, '-o', str(out), '--n-modules', '4']) == 0
    err = capsys.readouterr().err
    assert 'JUNGFRAU' in err and 'Wrote' in err
    with h5py.File(out, 'r') as f:
        assert f['entry_1/data_1/data'].shape == (4 * 2, 4) + SHAPE
        assert _trains(out) == [10002, 10003, 10004, 10005]
        assert f['entry_1/instrument_1/detector_1/module_identifier'][()].tolist() == \
            [1, 2, 3, 4]
    assert cli_main(['make-virtual-cxi', d, '-o', str(out), '--n-modules', '4',
                     '--exc-suspect-trains', '-q']) == 0
    assert _trains(out) == [10003, 10004, 10005]
    # without --n-modules: min_modules 1, module count from the data
    assert cli_main(['make-virtual-cxi', d, '-o', str(out), '-q']) == 0
    assert _trains(out) == [int(t) for t in TIDS]
    with h5py.File(out, 'r') as f:
        assert f['entry_1/data_1/data'].shape[1] == 3


def test_cli_no_detector(tmp_path, capsys):
    from xfeldata.testing import xgm_sources
    write_run(tmp_path / 'run', train_ids=TIDS, aggregators=[Aggregator('DA01', xgm_sources())])
    assert cli_main(['make-virtual-cxi', str(tmp_path / 'run'), '-o',
                     str(tmp_path / 'x.cxi')]) == 1
    assert 'found 0' in capsys.readouterr().err
    assert not (tmp_path / 'x.cxi').exists()


# -- the reference corpus -------------------------------------------------------------------

CORPUS = Path('/work/shared/corpus')
CORPUS_CASES = {
    # case: (class, train positions to compare (None = all), keys)
    'lpd_mini_missed_train': (LPD1M, None, {'data': 'image.data', 'cellId': 'image.cellId'}),
    'modern_spb_proc_v1.2': (AGIPD1M, [0, -1], {'data': 'image.data', 'mask': 'image.mask',
                                                'cellId': 'image.cellId'}),
    'reduced_spb_proc_v1.2': (AGIPD1M, [0, 3, -1], {'data': 'image.data',
                                                    'mask': 'image.mask'}),
    'jungfrau': (JUNGFRAU, [0, -1], {'data': 'data.adc', 'cellId': 'data.memoryCell'}),
}


@pytest.mark.parametrize('case', sorted(CORPUS_CASES))
def test_corpus(case, tmp_path):
    """Corpus runs as input: layout and labels whole, values of some trains."""
    folder = CORPUS / case
    if not folder.is_dir():
        pytest.skip('reference corpus not available')
    cls, positions, keys = CORPUS_CASES[case]
    before = digest(folder)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)     # raw fallback of mock runs
        det = cls(RunDirectory(folder))
    path = det.write_virtual_cxi(tmp_path / f'{case}.cxi')
    cells = det._frames_per_entry()
    layout = det._frame_layout()
    n = layout.n_frames * cells
    with h5py.File(path, 'r') as f:
        assert f['entry_1/data_1/data'].shape[:2] == (n, det.n_modules)
        tid = f['entry_1/trainId'][()]
        assert tid.tolist() == np.repeat(layout.frame_train_ids(), cells).tolist()
        label = 'memoryCell' if cls is JUNGFRAU else 'pulseId'
        pid = f[f'entry_1/{label}'][()]
        if cls is not JUNGFRAU:
            np.testing.assert_array_equal(pid, det._frame_ids('image.pulseId'))
        else:
            np.testing.assert_array_equal(pid, np.tile(det.cell_ids(), len(det.train_ids)))
        ei = f['entry_1/experiment_identifier']
        assert [x.decode() for x in ei[-3:]] == [f'{t}:{p}' for t, p in zip(tid[-3:], pid[-3:])]
        pos = range(len(det.train_ids)) if positions is None else \
            sorted({p % len(det.train_ids) for p in positions})
        for name, key in keys.items():
            ds = f['entry_1/cellId' if name == 'cellId' else f'entry_1/data_1/{name}']
            # image rows 0-15 only: mock data are never written, and reading through
            # the virtual dataset visits every (unallocated) chunk
            part = np.s_[..., 0:16, :] if ds.ndim > 2 else ()
            roi = () if ds.ndim == 2 else np.s_[..., 0:16, :]
            for t in pos:
                a, b = layout.offsets[t] * cells, layout.offsets[t + 1] * cells
                arr = det.select_trains(np.s_[t:t + 1])[key].ndarray(
                    module_gaps=True, fill_value=ds.fillvalue, roi=roi)
                got = ds[(slice(a, b),) + part]
                arr = np.moveaxis(arr.reshape((det.n_modules, b - a) + got.shape[2:]), 0, 1)
                np.testing.assert_array_equal(got, arr)
    assert digest(folder) == before
