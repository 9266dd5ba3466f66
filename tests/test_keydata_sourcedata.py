"""KeyData and SourceData faces on a synthetic demo run (API.md sections 3 and 4)."""
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import xfeldata
from xfeldata import by_id
from xfeldata.exceptions import MultiRunError, NoDataError, PropertyNameError, TrainIDError
from xfeldata.testing import make_demo_run

XGM = 'SA1_XTD2_XGM/DOOCS/MAIN'
XGM_OUT = 'SA1_XTD2_XGM/DOOCS/MAIN:output'
CAM = 'SPB_IRU_CAM/CAM/SIDEMIC:daqOutput'
MOTOR = 'SPB_IRU_MOTORS/MOTOR/X'
RUNONLY = 'SPB_IRU_DAQ/SETTINGS/RUNONLY'


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp('demo') / 'raw' / 'r0001'
    d.mkdir(parents=True)
    m = make_demo_run(d)
    return xfeldata.RunDirectory(d), m


def test_keydata_properties(demo):
    run, m = demo
    kd = run[CAM, 'data.image.pixels']
    n_with = int(np.count_nonzero(m.counts_for(CAM, 'data')))
    assert kd.shape == (n_with, 32, 48)
    assert kd.ndim == 3 and kd.entry_shape == (32, 48)
    assert kd.dtype == np.dtype('u2')
    assert kd.nbytes == n_with * 32 * 48 * 2
    assert kd.size_mb == kd.nbytes / 1e6
    assert kd.index_group == 'data'
    assert kd.hdf5_data_path == f'/INSTRUMENT/{CAM}/data/image/pixels'
    assert kd.is_instrument and not kd.is_control and not kd.is_auxiliary
    assert run[XGM, 'beamPosition.ixPos'].index_group == ''


def test_keydata_counts_and_coordinates(demo):
    run, m = demo
    kd = run[CAM, 'data.image.pixels']
    counts = kd.data_counts()
    assert isinstance(counts, pd.Series) and counts.index.name == 'trainId'
    assert list(counts.index) == run.train_ids
    np.testing.assert_array_equal(counts.values, m.counts_for(CAM, 'data'))
    raw = kd.data_counts(labelled=False)
    assert raw.dtype == np.uint64
    coords = kd.train_id_coordinates()
    assert len(coords) == kd.shape[0]
    np.testing.assert_array_equal(coords, np.repeat(run.train_ids, raw.astype(int)))
    start, stop = kd.train_index_bounds()
    np.testing.assert_array_equal(stop - start, raw.astype(np.int64))
    df = kd.train_index_bounds(labelled=True)
    assert list(df.columns) == ['start', 'stop'] and df['stop'].iloc[-1] == kd.shape[0]


def test_keydata_selection(demo):
    run, m = demo
    kd = run[CAM, 'data.image.pixels']
    sub = kd.select_trains(np.s_[5:15])
    assert sub.train_ids == run.train_ids[5:15]
    assert kd[np.s_[5:15]] == sub
    parts = list(kd.split_trains(trains_per_part=30))
    assert [len(p.train_ids) for p in parts] == [25, 25, 25, 25]
    assert sum((p.train_ids for p in parts), []) == run.train_ids
    full = kd.drop_empty_trains()
    assert len(full.train_ids) == int(np.count_nonzero(m.counts_for(CAM, 'data')))
    assert (full.data_counts(labelled=False) > 0).all()
    with pytest.raises(TypeError):
        iter(kd)


def test_keydata_ndarray_matches_manifest(demo):
    run, m = demo
    kd = run[XGM_OUT, 'data.intensityTD'].select_trains(np.s_[10:20])
    arr = kd.ndarray()
    np.testing.assert_array_equal(arr, m.expected(XGM_OUT, 'data.intensityTD',
                                                  kd.train_ids))
    roi = kd.ndarray(roi=np.s_[2:5])
    np.testing.assert_array_equal(roi, arr[:, 2:5])
    out = np.zeros_like(arr)
    assert kd.ndarray(out=out) is out
    with pytest.raises(ValueError, match='requires output array of shape'):
        kd.ndarray(out=np.zeros((3, 3)))


def test_keydata_single_trains(demo):
    run, m = demo
    kd = run[XGM, 'beamPosition.ixPos']
    tid, v = kd.train_from_id(10003)
    assert tid == 10003 and np.ndim(v) == 0
    tid, v = kd.train_from_id(10003, keep_dims=True)
    assert v.shape == (1,)
    assert kd.train_from_index(3)[0] == 10003
    with pytest.raises(TrainIDError):
        kd.train_from_id(9)


def test_as_single_value(demo):
    run, _ = demo
    kd = run[XGM_OUT, 'data.intensityTD']
    with pytest.raises(ValueError, match='relative deviation'):
        kd.as_single_value()
    one = kd.select_trains(by_id[[10004]])
    np.testing.assert_array_equal(one.as_single_value(), one.ndarray()[0])
    assert kd.as_single_value(rtol=1e9) is not None
    with pytest.raises(ValueError, match='Unknown reduce_by'):
        kd.as_single_value(reduce_by='no_such_method_xyz', rtol=1e9)
    with pytest.raises(NoDataError):
        kd.select_trains(by_id[[1]]).as_single_value()


def test_units_attributes_and_run_value(demo):
    run, _ = demo
    kd = run[XGM_OUT, 'data.intensityTD']
    assert kd.units == 'μJ'
    assert kd.units_name is not None and kd.units_name.endswith('joule')
    attrs = kd.attributes()
    assert attrs.get('unitSymbol') == 'J'
    assert run[MOTOR, 'actualPosition'].run_value() == run[MOTOR].run_value('actualPosition')


def test_source_file_paths(demo):
    run, _ = demo
    kd = run[CAM, 'data.image.pixels']
    paths = kd.source_file_paths
    assert all(isinstance(p, Path) for p in paths)
    assert {p.name for p in paths} == {'RAW-R0001-DA02-S00000.h5', 'RAW-R0001-DA02-S00001.h5'}
    first = kd.select_trains(np.s_[:3]).source_file_paths
    assert [p.name for p in first] == ['RAW-R0001-DA02-S00000.h5']


def test_sourcedata_face(demo):
    run, m = demo
    sd = run[CAM]
    assert sd.is_instrument and not sd.is_control and not sd.is_legacy
    assert sd.index_groups == {'data'}
    assert sd.storage_class is None  # not under an EuXFEL data root
    assert sd.data_category == 'RAW' and sd.aggregator == 'DA02'
    assert run[MOTOR].device_class == 'IselMotor'
    assert run[RUNONLY].is_run_only and not run[MOTOR].is_run_only
    assert (run[RUNONLY].data_counts(labelled=False) == 0).all()
    assert sd.one_key() in sd.keys()
    with pytest.raises(ValueError):
        sd.one_key('no_such_group')
    coords = sd.train_id_coordinates()
    np.testing.assert_array_equal(coords, run[CAM, 'data.image.pixels'].train_id_coordinates())
    dropped = sd.drop_empty_trains()
    assert len(dropped.train_ids) == int(np.count_nonzero(m.counts_for(CAM, 'data')))


def test_sourcedata_keys_and_select_keys(demo):
    run, _ = demo
    sd = run[XGM]
    assert 'beamPosition.ixPos' in sd and 'beamPosition.ixPos.value' in sd
    assert 'beamPosition.ixPos' in sd.keys(inc_timestamps=False)
    sel = sd.select_keys('beamPosition.*')
    assert sel.keys() == {'beamPosition.ixPos.value', 'beamPosition.ixPos.timestamp',
                          'beamPosition.iyPos.value', 'beamPosition.iyPos.timestamp'}
    assert sd.select_keys('beamPosition.ixPos').keys() == {'beamPosition.ixPos.value'}
    assert sd.select_keys({'beamPosition.ixPos'}).keys() == {'beamPosition.ixPos.value'}
    with pytest.raises(PropertyNameError):
        sd.select_keys({'nope'})
    with pytest.raises(PropertyNameError):
        sd['nope']
    with pytest.raises(TypeError):
        sd[1.5]


def test_sourcedata_union(demo):
    run, _ = demo
    sd = run[CAM]
    a, b = sd.select_trains(np.s_[:10]), sd.select_trains(np.s_[-10:])
    u = a | b
    assert u.train_ids == run.train_ids[:10] + run.train_ids[-10:]
    assert u == b.union(a)
    with pytest.raises(ValueError):
        a.union(run[XGM])


def test_run_values(demo):
    run, _ = demo
    sd = run[MOTOR]
    vals = sd.run_values()
    assert 'actualPosition.value' in vals and 'actualPosition.timestamp' in vals
    short = sd.run_values(inc_timestamps=False)
    assert set(short) == {k[:-6] for k in vals if k.endswith('.value')}
    assert sd.run_keys() == set(vals)
    with pytest.raises(PropertyNameError):
        sd.run_value('nope')
    with pytest.raises(ValueError, match='no RUN values'):
        run[CAM].run_value('data.image.pixels')
    assert run.get_run_value(MOTOR, 'actualPosition') == sd.run_value('actualPosition')
    assert run.get_run_values(MOTOR) == vals


def test_multi_run_guard(demo, tmp_path):
    run, _ = demo
    d2 = tmp_path / 'raw' / 'r0002'
    d2.mkdir(parents=True)
    make_demo_run(d2, run=2, first_train=20000)
    both = run.union(xfeldata.RunDirectory(d2))
    assert not both.is_single_run
    with pytest.raises(MultiRunError):
        both[MOTOR].run_value('actualPosition')
    assert both[MOTOR].run_value('actualPosition', allow_multi_run=True) is not None


def test_union_keeps_each_parts_files(demo):
    """A source selected for early trains shows no data in trains only another part added."""
    run, _ = demo
    early = run.select(XGM_OUT).select_trains(np.s_[:5])
    late = run.select(CAM).select_trains(np.s_[-5:])
    u = early | late
    assert u.train_ids == run.train_ids[:5] + run.train_ids[-5:]
    xgm_counts = u[XGM_OUT, 'data.intensityTD'].data_counts(labelled=False)
    # The XGM's first sequence file holds only the early trains.
    assert xgm_counts.tolist() == [1] * 5 + [0] * 5
    cam_counts = u[CAM, 'data.image.pixels'].data_counts(labelled=False)
    assert cam_counts[:5].tolist() == [0] * 5
    # The full selection is unaffected.
    assert (run[XGM_OUT, 'data.intensityTD'].data_counts(labelled=False) == 1).all()


def test_deselect_rules(demo):
    run, _ = demo
    with pytest.raises(ValueError, match='No matches'):
        run.deselect('NO_SUCH*')
    with pytest.raises(ValueError, match='No matches'):
        run.deselect('*', 'no_such_key*')
    # A source none of whose keys match stays whole (even a keyless one).
    d = run.deselect('*', 'data.image.*')
    assert RUNONLY in d.all_sources and MOTOR in d.all_sources
    assert CAM not in d.all_sources or not any(k.startswith('data.image')
                                               for k in d[CAM].keys())


def test_keydata_pickles_small(demo):
    run, _ = demo
    kd = run[XGM, 'beamPosition.ixPos']
    blob = pickle.dumps(kd)
    again = pickle.loads(blob)
    assert again == kd
    np.testing.assert_array_equal(again.ndarray(), kd.ndarray())
    assert len(blob) < 20_000
