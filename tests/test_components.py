"""Multi-module detectors (xfeldata.components), checked against plain h5py reads."""
import json
import os
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

import xfeldata
from xfeldata import by_id, by_index
from xfeldata.components import (AGIPD1M, DSSC1M, JUNGFRAU, LPD1M, LPDSolo,
                                 identify_multimod_detectors)
from xfeldata.exceptions import SourceNameError
from xfeldata.testing import Aggregator, jungfrau_module, write_run, xtdf_module

DET = 'SPB_DET_AGIPD1M-1'
TIDS = np.arange(10000, 10006, dtype=np.uint64)
FRAMES = [3, 0, 2, 4, 1, 2]
MISSING = {2: [3]}     # module 2 lacks train position 3 (10003)


# -- independent expectation: plain h5py -----------------------------------------------------

def h5_module_rows(directory, source, key, group='image'):
    """{train ID: rows} of one module source, read with h5py from every file."""
    out = {}
    path = key.replace('.', '/')
    for fn in sorted(os.listdir(directory)):
        if not fn.endswith('.h5'):
            continue
        with h5py.File(os.path.join(directory, fn), 'r') as f:
            if f'INSTRUMENT/{source}' not in f:
                continue
            tids = f['INDEX/trainId'][:]
            first = f[f'INDEX/{source}/{group}/first'][:]
            count = f[f'INDEX/{source}/{group}/count'][:]
            ds = f[f'INSTRUMENT/{source}/{path}'][:]
            for t, a, n in zip(tids, first, count):
                if t and n:
                    out[int(t)] = ds[a:a + n]
    return out


def h5_detector_frames(directory, sources, key, train_ids, counts, fill):
    """(modules, frames, ...) from h5py: each module's train rows at the train's frames."""
    per_mod = [h5_module_rows(directory, s, key) for s in sources]
    sample = next(iter(per_mod[0].values()))
    inner = sample.shape[1:]
    if inner[:1] == (1,):
        inner = inner[1:]
    out = np.full((len(sources), int(sum(counts))) + inner, fill, sample.dtype)
    pos = 0
    for t, n in zip(train_ids, counts):
        for m, rows in enumerate(per_mod):
            if int(t) in rows:
                out[m, pos:pos + n] = rows[int(t)].reshape((n,) + inner)
        pos += n
    return out


# -- fixtures -------------------------------------------------------------------------------

def _agipd_run(d, raw=True, corr_names=False, legacy=False, frames=FRAMES, n_mod=4):
    aggs = []
    for m in range(n_mod):
        keep = [i for i in range(len(TIDS)) if i not in MISSING.get(m, [])]
        src = xtdf_module(DET, m, frames=[frames[i] for i in keep], raw=raw,
                          corr_names=corr_names, legacy=legacy, frame_shape=(4, 3))
        aggs.append(Aggregator(f'AGIPD{m:02d}', [src], train_ids=TIDS[keep],
                               sequence_starts=(3,) if m == 1 else ()))
    write_run(d, train_ids=TIDS, aggregators=aggs, category='RAW' if raw else 'CORR')
    return d


@pytest.fixture(scope='module')
def raw_dir(tmp_path_factory):
    return _agipd_run(tmp_path_factory.mktemp('agipd_raw'))


@pytest.fixture(scope='module')
def corr_dir(tmp_path_factory):
    return _agipd_run(tmp_path_factory.mktemp('agipd_corr'), raw=False, corr_names=True,
                      legacy=True)


@pytest.fixture(scope='module')
def raw_det(raw_dir):
    return AGIPD1M(xfeldata.RunDirectory(raw_dir), raw=True)


def _sources(det):
    return [det.modno_to_source[m] for m in sorted(det.modno_to_source)]


KEPT = [t for t, n in zip(TIDS, FRAMES) if n]
KEPT_COUNTS = [n for n in FRAMES if n]


# -- construction ---------------------------------------------------------------------------

def test_construction(raw_det):
    assert raw_det.detector_name == DET
    assert raw_det.source_to_modno == {f'{DET}/DET/{m}CH0:xtdf': m for m in range(4)}
    assert raw_det.train_ids.tolist() == [int(t) for t in KEPT]
    fc = raw_det.frame_counts
    assert fc.index.tolist() == [int(t) for t in KEPT] and fc.tolist() == KEPT_COUNTS
    assert fc.dtype == np.uint64
    assert raw_det.n_modules == 16 and raw_det.module_shape == (512, 128)
    assert raw_det.train_ids_perframe.tolist() == np.repeat(KEPT, KEPT_COUNTS).tolist()
    with pytest.raises(ValueError):
        raw_det.frames_per_train
    assert repr(raw_det) == (f"<AGIPD1M: Data interface for detector '{DET}' - raw data "
                             "with 4 modules>")
    assert set(raw_det.data.instrument_sources) == set(raw_det.source_to_modno)
    assert 'image.data' in raw_det and 'nope.nope' not in raw_det


def test_raw_fallback_warns(raw_dir):
    run = xfeldata.RunDirectory(raw_dir)
    with pytest.warns(UserWarning, match='raw'):
        AGIPD1M(run)
    with pytest.raises(SourceNameError):
        AGIPD1M(run, raw=False)


def test_corr_preferred_and_legacy_names(corr_dir):
    run = xfeldata.RunDirectory(corr_dir)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        det = AGIPD1M(run)
    assert all('/CORR/' in s for s in det.source_to_modno)
    assert 'proc data' in repr(det)
    with pytest.raises(ValueError, match='Raw data was not found'):
        AGIPD1M(run, raw=True)


def test_construction_errors(raw_dir, tmp_path):
    run = xfeldata.RunDirectory(raw_dir)
    with pytest.raises(SourceNameError):
        LPD1M(run)
    with pytest.raises(ValueError):
        AGIPD1M(run, raw=True, min_modules=0)
    with pytest.raises(SourceNameError):
        AGIPD1M(run, raw=True, modules=[9])
    det = AGIPD1M(run, raw=True, modules=[0, 3])
    assert sorted(det.modno_to_source) == [0, 3]
    with pytest.raises(ValueError, match='No data found with >= 5 modules'):
        AGIPD1M(run, raw=True, min_modules=5)
    # Several detectors need a name.
    d = tmp_path / 'two'
    write_run(d, train_ids=TIDS[:2], aggregators=[
        Aggregator('AGIPD00', [xtdf_module('SPB_DET_AGIPD1M-1', 0, frames=1, frame_shape=(2, 2))]),
        Aggregator('AGIPD01', [xtdf_module('MID_DET_AGIPD1M-1', 0, frames=1, frame_shape=(2, 2))]),
    ])
    with pytest.raises(ValueError, match='Multiple detectors'):
        AGIPD1M(xfeldata.RunDirectory(d), raw=True)
    found = identify_multimod_detectors(xfeldata.RunDirectory(d))
    assert found == {('SPB_DET_AGIPD1M-1', AGIPD1M), ('MID_DET_AGIPD1M-1', AGIPD1M)}
    with pytest.raises(ValueError):
        identify_multimod_detectors(xfeldata.RunDirectory(d), single=True)
    assert identify_multimod_detectors(run, single=True) == (DET, AGIPD1M)


def test_inconsistent_frame_counts(tmp_path):
    write_run(tmp_path, train_ids=TIDS[:3], aggregators=[
        Aggregator('AGIPD00', [xtdf_module(DET, 0, frames=[2, 2, 2], frame_shape=(2, 2))]),
        Aggregator('AGIPD01', [xtdf_module(DET, 1, frames=[2, 3, 2], frame_shape=(2, 2))]),
    ])
    with pytest.raises(ValueError, match='Inconsistent frame counts for train 10001'):
        AGIPD1M(xfeldata.RunDirectory(tmp_path), raw=True)


def test_min_modules_drops_trains(raw_dir):
    det = AGIPD1M(xfeldata.RunDirectory(raw_dir), raw=True, min_modules=4)
    assert 10003 not in det.train_ids.tolist()
    assert det.train_ids.tolist() == [int(t) for t in KEPT if t != 10003]


# -- reading --------------------------------------------------------------------------------

def test_ndarray_equals_h5py(raw_dir, raw_det):
    kd = raw_det['image.data']
    arr = kd.ndarray()
    exp = h5_detector_frames(raw_dir, _sources(raw_det), 'image.data', KEPT, KEPT_COUNTS, 0)
    assert arr.shape == kd.shape == exp.shape
    np.testing.assert_array_equal(arr, exp)
    # module 2 misses train 10003 (frames 5:9 of the layout): filled with 0
    assert (arr[2, 5:9] == 0).all() and (arr[1, 5:9] != 0).all()
    assert kd.dimensions == ['module', 'train_pulse', 'data_gain', 'slow_scan', 'fast_scan']
    f = kd.ndarray(fill_value=7, astype=np.float32)
    assert f.dtype == np.float32 and (f[2, 5:9] == 7).all()
    assert np.isnan(kd.ndarray(astype=np.float64)[2, 5:9]).all()
    with pytest.raises(ValueError):
        kd.ndarray(fill_value=-1)
    with pytest.raises(ValueError):
        kd.ndarray(out=np.empty((1, 2)))
    out = np.empty(kd.shape, kd.dtype)
    assert kd.ndarray(out=out) is out


def test_plans_explain_and_roi(raw_dir, raw_det):
    kd = raw_det['image.data']
    text = kd.plans().explain()
    assert 'RAW-R0001-AGIPD01-S00001.h5' in text and 'module slot 3' in text
    roi = kd.ndarray(roi=np.s_[0, 1:3])
    np.testing.assert_array_equal(roi, kd.ndarray()[:, :, 0, 1:3])
    with pytest.raises(TypeError):
        kd.ndarray(roi=0)


def test_module_gaps(raw_det):
    kd = raw_det['image.data']
    g = kd.ndarray(module_gaps=True)
    assert g.shape == (16,) + kd.shape[1:]
    np.testing.assert_array_equal(g[:4], kd.ndarray())
    assert (g[4:] == 0).all()
    av = kd.data_availability(module_gaps=True)
    assert av.shape == (16, kd.shape[1]) and av[:4].sum() == 4 * kd.shape[1] - 4
    assert not av[2, 5:9].any()


def test_non_image_key(raw_dir, raw_det):
    kd = raw_det['header.pulseCount']
    assert kd.dimensions == ['module', 'trainId'] and kd.shape == (4, len(KEPT))
    a = kd.ndarray()
    exp = np.array([[n for n in KEPT_COUNTS]] * 4, np.uint64)
    exp[2, KEPT.index(10003)] = 0
    np.testing.assert_array_equal(a, exp)
    xa = raw_det.get_array('header.pulseCount')
    assert xa.dims == ('module', 'trainId')
    assert xa.coords['trainId'].values.tolist() == [int(t) for t in KEPT]
    assert xa.coords['module'].values.tolist() == [0, 1, 2, 3]


def test_pulse_selection_by_index_matches_numpy(raw_det):
    full = raw_det['image.data'].ndarray()
    layout_idx = np.concatenate([np.arange(n) for n in KEPT_COUNTS])
    for sel, mask in [(np.s_[1:], layout_idx >= 1), (by_index[0:3:2], layout_idx % 2 == 0),
                      ([0, 3], np.isin(layout_idx, [0, 3])), (2, layout_idx == 2)]:
        kd = raw_det['image.data'].select_pulses(sel)
        np.testing.assert_array_equal(kd.ndarray(), full[:, mask])
        assert kd.shape[1] == mask.sum()
        np.testing.assert_array_equal(kd.train_id_coordinates(),
                                      np.repeat(KEPT, KEPT_COUNTS)[mask])
    # pulse IDs of the test files equal the frame index, so by_id agrees with by_index
    np.testing.assert_array_equal(raw_det['image.data'].select_pulses(by_id[[0, 3]]).ndarray(),
                                  full[:, np.isin(layout_idx, [0, 3])])


@pytest.mark.parametrize('bad, exc', [
    (np.s_[::0], ValueError), (np.s_[-1:], NotImplementedError), ([-1], NotImplementedError),
    (by_id[[-2]], ValueError), (np.s_[0.5:], TypeError), ('x', TypeError)])
def test_pulse_selection_errors(raw_det, bad, exc):
    with pytest.raises(exc):
        raw_det['image.data'].select_pulses(bad)


def test_get_array_unstacked(raw_det):
    full = raw_det['image.data'].ndarray()
    arr = raw_det.get_array('image.data')
    assert arr.dims == ('module', 'train', 'pulse', 'data_gain', 'slow_scan', 'fast_scan')
    assert arr.shape[:3] == (4, len(KEPT), max(KEPT_COUNTS))
    assert arr.dtype == np.float32   # trains with fewer frames leave NaN gaps
    pos = 0
    for i, n in enumerate(KEPT_COUNTS):
        np.testing.assert_array_equal(arr.values[:, i, :n], full[:, pos:pos + n])
        assert np.isnan(arr.values[:, i, n:]).all()
        pos += n
    stacked = raw_det.get_array('image.data', unstack_pulses=False)
    assert stacked.dims[:2] == ('module', 'train_pulse')
    np.testing.assert_array_equal(stacked.values, full)
    assert stacked.coords['pulse'].values.tolist() == \
        np.concatenate([np.arange(n) for n in KEPT_COUNTS]).tolist()
    cells = raw_det.get_array('image.data', pulses=np.s_[:1], subtrain_index='cellId')
    assert cells.dims[2] == 'cell' and cells.dtype == np.uint16
    with pytest.raises(ValueError):
        raw_det.get_array('image.data', subtrain_index='frame')


def test_dask_equals_ndarray(raw_det):
    pytest.importorskip('dask')
    kd = raw_det['image.data']
    d = kd.dask_array(frames_per_chunk=5)
    assert d.shape == kd.shape
    np.testing.assert_array_equal(d.compute(), kd.ndarray())
    lab = raw_det.get_dask_array('image.data')
    assert lab.dims[:2] == ('module', 'train_pulse')
    np.testing.assert_array_equal(lab.values, kd.ndarray())
    hdr = raw_det.get_dask_array('header.pulseCount')
    np.testing.assert_array_equal(hdr.values, raw_det['header.pulseCount'].ndarray())


def test_select_and_split(raw_det):
    sub = raw_det.select_trains(by_id[[10002, 10004]])
    assert sub.train_ids.tolist() == [10002, 10004]
    assert sub.frame_counts.tolist() == [2, 1]
    full = raw_det['image.data'].ndarray()
    np.testing.assert_array_equal(sub['image.data'].ndarray(), full[:, 3:5].take(
        [0, 1], axis=1)[:, :2] if False else np.concatenate([full[:, 3:5], full[:, 9:10]], 1))
    assert raw_det['image.data'][np.s_[:2]].shape[1] == 5
    parts = list(raw_det.split_trains(parts=2))
    assert [len(p.train_ids) for p in parts] == [2, 3]
    got = np.concatenate([p['image.data'].ndarray() for p in parts], axis=1)
    np.testing.assert_array_equal(got, full)
    fparts = list(raw_det.split_trains(frames_per_part=4))
    assert [p.train_ids.tolist() for p in fparts] == [[10000], [10002], [10003], [10004, 10005]]
    with pytest.raises(ValueError):
        list(raw_det.split_trains())
    with pytest.raises(TypeError):
        raw_det[np.s_[:2]]


def test_trains_and_train_from_id(raw_det):
    full = raw_det['image.data'].ndarray()
    tid, d = raw_det.train_from_id(10003)
    assert tid == 10003
    np.testing.assert_array_equal(d['image.data'].values, full[:, 5:9])
    seen = [t for t, _ in raw_det.trains()]
    assert seen == [10000, 10002, 10004, 10005]       # 10003 lacks module 2
    assert [t for t, _ in raw_det.trains(require_all=False)] == [int(t) for t in KEPT]


def test_masked_data(corr_dir):
    det = AGIPD1M(xfeldata.RunDirectory(corr_dir))
    data = det['image.data'].ndarray()
    mask = det['image.mask'].ndarray()
    m = det.masked_data().ndarray()
    exp = data.copy()
    exp[mask != 0] = np.nan
    np.testing.assert_array_equal(m, exp)
    bits = det.masked_data(mask_bits=[1, 4], masked_value=-1).ndarray()
    exp = data.copy()
    exp[(mask & 5) != 0] = -1
    np.testing.assert_array_equal(bits, exp)
    sel = det.masked_data().select_pulses(np.s_[:1]).ndarray()
    assert sel.shape[1] == len(KEPT)
    assert 'Masked' in repr(det.masked_data())


def test_masked_data_needs_mask(raw_det):
    with pytest.raises(RuntimeError, match='mask'):
        raw_det.masked_data()


# -- JUNGFRAU and LPD ---------------------------------------------------------------------

@pytest.fixture(scope='module')
def jf_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp('jf')
    write_run(d, train_ids=TIDS[:4], aggregators=[
        Aggregator(f'JNGFR{m:02d}', [jungfrau_module('FXE_XAD_JF500K', m, cells=2,
                                                     frame_shape=(3, 4))],
                   train_ids=TIDS[:4] if m != 4 else TIDS[1:4])
        for m in (3, 4)])
    return d


def test_jungfrau(jf_dir):
    run = xfeldata.RunDirectory(jf_dir)
    det = JUNGFRAU(run, raw=True, first_modno=3)
    assert det.source_to_modno == {'FXE_XAD_JF500K/DET/JNGFR03:daqOutput': 1,
                                   'FXE_XAD_JF500K/DET/JNGFR04:daqOutput': 2}
    assert det.n_modules == 2 and det.frames_per_train == 2
    arr = det.get_array('data.adc')
    assert arr.dims == ('module', 'train', 'cell', 'slow_scan', 'fast_scan')
    assert arr.coords['module'].values.tolist() == [1, 2]
    srcs = _sources(det)
    for i, s in enumerate(srcs):
        rows = h5_module_rows(jf_dir, s, 'data.adc', group='data')
        for j, t in enumerate(det.train_ids):
            if int(t) in rows:
                np.testing.assert_array_equal(arr.values[i, j], rows[int(t)][0])
            else:
                assert (arr.values[i, j] == 0).all()
    assert det.get_array('data.memoryCell').dims == ('module', 'train', 'cell')
    np.testing.assert_array_equal(det.cell_ids(), [0, 1])
    assert JUNGFRAU(run, raw=True).n_modules == 4        # numbered 3, 4 from 1
    assert det['data.adc'].ndarray(module_gaps=True).shape[0] == 2


def test_lpd_parallel_gain(tmp_path):
    write_run(tmp_path, train_ids=TIDS[:2], aggregators=[
        Aggregator('LPD00', [xtdf_module('FXE_DET_LPD1M-1', 0, frames=6, kind='LPD',
                                         frame_shape=(2, 2))])])
    run = xfeldata.RunDirectory(tmp_path)
    det = LPD1M(run, raw=True, parallel_gain=True)
    arr = det.get_array('image.data')
    assert arr.dims == ('module', 'train', 'gain', 'pulse', 'slow_scan', 'fast_scan')
    assert arr.shape[:4] == (1, 2, 3, 2)
    full = det['image.data'].ndarray()
    np.testing.assert_array_equal(arr.values[0, 0].reshape(6, 2, 2), full[0, :6])
    one = det.get_array('image.data', pulses=np.s_[1:2])
    np.testing.assert_array_equal(one.values[0, 0, :, 0], full[0, [1, 3, 5]])
    assert one.coords['gain'].values.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match='divisible by 3'):
        write_run(tmp_path / 'x', train_ids=TIDS[:1], aggregators=[
            Aggregator('LPD00', [xtdf_module('FXE_DET_LPD1M-1', 0, frames=4, kind='LPD',
                                             frame_shape=(2, 2))])])
        LPD1M(xfeldata.RunDirectory(tmp_path / 'x'), raw=True, parallel_gain=True)
    assert LPD1M(run, raw=True)['image.data'].dimensions == \
        ['module', 'train_pulse', 'slow_scan', 'fast_scan']
    with pytest.raises(SourceNameError):
        LPDSolo(run)
    with pytest.raises(SourceNameError):
        DSSC1M(run)


# -- the reference corpus: values EXtra-data recorded beyond the consumer's checks ---------

CORPUS = Path(os.environ.get('XFELDATA_CORPUS',
                             Path(__file__).resolve().parents[1] / '..' / 'shared' / 'corpus'))


def _sha(a):
    import hashlib
    a = np.asarray(a)
    return hashlib.sha256(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder('<')).tobytes()
                          ).hexdigest()


@pytest.mark.parametrize('case', ['lpd_mini_missed_train', 'modern_spb_proc_v1.2',
                                  'reduced_spb_proc_v1.2', 'fxe_jungfrau'])
def test_corpus_details(case):
    exp_path = CORPUS / case / 'expected.json'
    if not exp_path.is_file():
        pytest.skip('corpus absent')
    exp = json.loads(exp_path.read_text())
    entry = exp['opens'][0]
    run = xfeldata.RunDirectory(CORPUS / case)
    for comp in entry['result']['components']:
        if comp.get('construct') != 'ok':
            continue
        cls = getattr(xfeldata.components, comp['class'])
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            det = cls(run, **comp['kwargs'])
        assert len(det.train_ids) == comp['n_trains']
        if isinstance(comp['frames_per_train'], int):
            assert det.frames_per_train == comp['frames_per_train']
        else:
            with pytest.raises(ValueError):
                det.frames_per_train
        for key, kexp in comp['keydata'].items():
            kd = det[key]
            assert [kd.dimensions, list(kd.shape), str(kd.dtype), kd.ndim] == \
                [kexp['dimensions'], kexp['shape'], kexp['dtype'], kexp['ndim']], key
        av = det.data_availability()
        assert list(av.shape) == comp['data_availability']['shape']
        assert int(av.sum()) == comp['data_availability']['n_true']
        g = comp['ndarray_module_gaps']
        roi = tuple(slice(*s) for s in g['roi'])
        arr = det[g['key']].ndarray(roi=roi, module_gaps=True)
        assert list(arr.shape) == g['shape'] and _sha(arr) == g['sha256']
        if isinstance(comp.get('masked_data'), dict) and 'sha256' in comp['masked_data']:
            md = comp['masked_data']
            m = det.masked_data().ndarray(roi=tuple(slice(*s) for s in md['roi']))
            assert list(m.shape) == md['shape'] and int(np.isnan(m).sum()) == md['n_nan']
            assert _sha(m) == md['sha256']
        st = comp['select_trains_by_index_1_4']
        sub = det.select_trains(np.s_[1:4])
        assert list(sub[det._spec.main_key].shape) == st['main_key_shape']
        for label, kw in [('split_trains_parts_3', {'parts': 3}),
                          ('split_trains_frames_per_part_100', {'frames_per_part': 100})]:
            if label in comp:
                got = [[int(p.train_ids[0]), int(p.train_ids[-1]), len(p.train_ids)]
                       for p in det.split_trains(**kw)]
                assert got == comp[label], label


def test_docstring_examples(isolated_cache):
    import doctest
    import xfeldata.components as comp
    import xfeldata._detector_data as dd
    for mod in (comp, dd):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert res.failed == 0


def test_plans_pickle_small(raw_det):
    import pickle
    mp = raw_det['image.data'].plans()
    for plan in mp.plans:
        assert len(pickle.dumps(plan)) < 5000
    spec = type(raw_det)._spec
    assert pickle.loads(pickle.dumps(spec)) == spec


def test_unwritten_datasets_read_as_fill_but_virtual_ones_are_read(tmp_path, monkeypatch):
    # The executor answers datasets never written with their fill value (the
    # corpus's mock detector data); virtual datasets have no storage of their
    # own and must still be read through their mapping.
    from xfeldata import _direct, _tiers
    from xfeldata._execute import execute
    from xfeldata.core.plan import ReadPlan, ReadStep
    class PlainFile:   # a FileAccess stand-in for these files, which are not EuXFEL files
        def __init__(self, path):
            self.filename, self.file = path, h5py.File(path, 'r')

        def dataset(self, name):
            dsid = h5py.h5d.open(self.file.id, name.encode())
            return dsid, dsid.shape

    opened = {}
    monkeypatch.setattr(_tiers, 'file_access', lambda p: opened.setdefault(p, PlainFile(p)))
    src = tmp_path / 'src.h5'
    with h5py.File(src, 'w') as f:
        f.create_dataset('real', data=np.arange(6, dtype=np.uint16))
        f.create_dataset('empty', shape=(6,), dtype=np.uint16, chunks=(2,), fillvalue=3)
    vds = tmp_path / 'vds.h5'
    with h5py.File(vds, 'w') as f:
        layout = h5py.VirtualLayout((6,), np.uint16)
        layout[:] = h5py.VirtualSource(str(src), 'real', shape=(6,))
        f.create_virtual_dataset('v', layout)

    def read(path, name):
        plan = ReadPlan(np.dtype(np.uint16), (4,), (ReadStep(str(path), name, 1, 5, 0, 4),))
        return execute(plan).tolist()

    assert read(src, '/empty') == [3, 3, 3, 3]
    assert read(src, '/real') == [1, 2, 3, 4]
    assert read(vds, '/v') == [1, 2, 3, 4]
    with h5py.File(src, 'r') as f:
        assert isinstance(_direct.storage_chunks(f['empty'].id, str(src), '/empty'),
                          _direct.Unwritten)
    with h5py.File(vds, 'r') as f:
        assert _direct.storage_chunks(f['v'].id, str(vds), '/v') == 'virtual dataset'
    for fa in opened.values():
        fa.file.close()


def _run_with_pulse_ids(d, ids_by_module):
    write_run(d, train_ids=TIDS[:2], aggregators=[
        Aggregator(f'AGIPD{m:02d}', [xtdf_module(DET, m, frames=3, frame_shape=(2, 2))])
        for m in range(len(ids_by_module))])
    for m, ids in enumerate(ids_by_module):
        with h5py.File(d / f'RAW-R0001-AGIPD{m:02d}-S00000.h5', 'r+') as f:
            f[f'INSTRUMENT/{DET}/DET/{m}CH0:xtdf/image/pulseId'][:, 0] = ids
    return AGIPD1M(xfeldata.RunDirectory(d), raw=True)


def test_pulse_ids_by_id_and_module_disagreement(tmp_path):
    # pulse IDs 10, 20, 30 in every train of both modules
    det = _run_with_pulse_ids(tmp_path / 'a', [[10, 20, 30] * 2] * 2)
    full = det['image.data'].ndarray()
    arr = det.get_array('image.data', pulses=by_id[[20, 30]])
    assert arr.coords['pulse'].values.tolist() == [20, 30]
    np.testing.assert_array_equal(arr.values[:, 0], full[:, 1:3])
    np.testing.assert_array_equal(arr.values[:, 1], full[:, 4:6])
    assert det['image.data'].select_pulses(by_id[20:31:10]).shape[1] == 4
    np.testing.assert_array_equal(det['image.data'].pulse_id_coordinates(), [10, 20, 30] * 2)
    det = _run_with_pulse_ids(tmp_path / 'b', [[10, 20, 30] * 2, [10, 20, 30, 10, 99, 30]])
    with pytest.raises(ValueError, match=r'disagree.*train 10001.*frame 1'):
        det.get_array('image.data')


def test_jungfrau_masked_and_xarray(jf_dir):
    det = JUNGFRAU(xfeldata.RunDirectory(jf_dir), raw=True, first_modno=3)
    kd = det['data.adc']
    assert kd.dimensions == ['module', 'trainId', 'dim_0', 'dim_1', 'dim_2']
    xa = kd.xarray()
    assert xa.dims == ('module', 'trainId', 'dim_0', 'dim_1', 'dim_2')
    data, mask = kd.ndarray(), det['data.mask'].ndarray()
    m = det.masked_data(mask_bits=2).ndarray()
    exp = data.astype(np.float32)
    exp[(mask & 2) != 0] = np.nan
    np.testing.assert_array_equal(m, exp)
    assert (mask & 2).any() and not (mask & 2).all()


def test_remap_plan_onto_a_layout_without_trains():
    from xfeldata.core.detectors import FrameLayout, remap_plan
    from xfeldata.core.plan import ReadPlan, ReadStep
    p = ReadPlan(np.dtype('u2'), (4, 3), (ReadStep('/a.h5', '/d', 0, 4, 0, 4),))
    q, covered = remap_plan(p, np.array([1, 1, 3, 3], np.uint64), FrameLayout.build([], []))
    assert q.shape == (0, 3) and q.steps == () and covered.shape == (0,)
