"""The selection face of DataCollection (API.md section 2.2), by example.

One small synthetic run (written once): 20 trains in two sequences, an XGM
(control + output channel with empty trains), a motor, a RUN-only device, a
camera whose aggregator misses two trains, an AGIPD module with two index
groups and empty trains, and a camera that saved nothing.
"""
import warnings

import numpy as np
import pytest

import xfeldata
from xfeldata import KeyData, PropertyNameError, SourceData, SourceNameError, by_id, by_index
from xfeldata.testing import Aggregator, ControlSource, InstrumentSource, RunSpec, write_run

XGM = 'SA1_XTD2_XGM/DOOCS/MAIN'
XGM_OUT = 'SA1_XTD2_XGM/DOOCS/MAIN:output'
MOTOR = 'SPB_IRU_MOTORS/MOTOR/X'
RUNONLY = 'SPB_IRU_DAQ/SETTINGS/RUNONLY'
CAM = 'SPB_IRU_CAM/CAM/SIDEMIC:daqOutput'
EMPTY = 'SPB_IRU_CAM/CAM/EMPTY:daqOutput'
DET = 'SPB_DET_AGIPD1M-1/DET/0CH0:xtdf'
ALL = {XGM, XGM_OUT, MOTOR, RUNONLY, CAM, EMPTY, DET}

N = 20
TIDS = list(range(10000, 10000 + N))
XGM_OUT_EMPTY = [3, 4]        # positions where the XGM channel has no entries
CAM_MISSING = [5, 15]         # positions DA02 did not record
DET_IMAGE_EMPTY = [0, 7]      # positions where the AGIPD image group is empty

XGM_KEYS = {f'{k}.{s}' for k in ('beamPosition.ixPos', 'beamPosition.iyPos',
                                  'pulseEnergy.photonFlux') for s in ('value', 'timestamp')}


def _positions_except(excluded):
    return [t for i, t in enumerate(TIDS) if i not in excluded]


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    tids = np.array(TIDS, dtype=np.uint64)
    xgm_out = np.ones(N, int)
    xgm_out[XGM_OUT_EMPTY] = 0
    det_image = np.full(N, 2)
    det_image[DET_IMAGE_EMPTY] = 0
    cam_tids = tids[[i for i in range(N) if i not in CAM_MISSING]]
    spec = RunSpec(tids, [
        Aggregator('DA01', [
            ControlSource(XGM, {'beamPosition.ixPos': np.float32,
                                'beamPosition.iyPos': np.float32,
                                'pulseEnergy.photonFlux': np.float64}),
            ControlSource(MOTOR, {'actualPosition': np.float64}),
            ControlSource(RUNONLY, {'threshold': np.float64}, run_only=True),
            InstrumentSource(XGM_OUT, {'data.intensityTD': (np.float32, (4,))},
                             groups={'data': xgm_out}),
        ], sequence_starts=(10,)),
        Aggregator('DA02', [
            InstrumentSource(CAM, {'data.image.pixels': ('u2', (3, 2))}, groups={'data': 1}),
        ], train_ids=cam_tids, sequence_starts=(9,)),
        Aggregator('DA03', [
            InstrumentSource(EMPTY, {'data.image.pixels': ('u2', (3, 2))}, groups={'data': 0}),
        ]),
        Aggregator('AGIPD00', [
            InstrumentSource(DET, {'image.data': ('u2', (2, 2)), 'header.pulseCount': np.uint64},
                             groups={'image': det_image, 'header': 1}),
        ], sequence_starts=(10,)),
    ], format_version='1.2')
    return xfeldata.RunDirectory(write_run(tmp_path_factory.mktemp('face'), spec).directory)


def snapshot(dc):
    return (dc.train_ids, dc.selection, dc.all_sources, repr(dc), hash(dc))


def no_user_warnings(f, *args, **kwargs):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter('always')
        out = f(*args, **kwargs)
    assert not [w for w in rec if issubclass(w.category, UserWarning)], \
        [str(w.message) for w in rec]
    return out


# -- the run as opened ----------------------------------------------------------------


def test_opened_run(run):
    assert run.all_sources == ALL
    assert run.selection == {s: None for s in ALL}
    assert run.train_ids == TIDS
    assert run[XGM].keys() == XGM_KEYS


# -- select: argument forms -----------------------------------------------------------


def test_select_source_glob(run):
    sel = run.select('*XGM*')
    assert sel.selection == {XGM: None, XGM_OUT: None}
    assert sel.train_ids == run.train_ids
    assert run.select('SPB_IRU_CAM/CAM/[SE]*').all_sources == {CAM, EMPTY}
    assert run.select('SPB_IRU_CAM/CAM/?MPTY:*').all_sources == {EMPTY}
    assert run.select('SPB_IRU_CAM/CAM/[!S]*').all_sources == {EMPTY}


def test_select_globs_are_case_sensitive_and_full_match(run):
    with pytest.raises(ValueError, match='No matches for pattern'):
        run.select('*xgm*')
    with pytest.raises(ValueError, match='No matches for pattern'):
        run.select('SA1_XTD2_XGM')  # a prefix is not a match


def test_select_source_and_key_globs(run):
    sel = run.select('*XGM*', 'data.*')  # only the channel has data.* keys
    assert sel.selection == {XGM_OUT: {'data.intensityTD', 'data.trainId'}}
    sel = run.select(DET, 'image.*')
    assert sel.selection == {DET: {'image.data', 'image.trainId'}}


def test_select_list_of_globs_and_pairs(run):
    sel = run.select([MOTOR, ('*XGM*', 'data.*')])
    assert sel.selection == {MOTOR: None, XGM_OUT: {'data.intensityTD', 'data.trainId'}}
    # Pairs matching one source union their keys ...
    sel = run.select([(XGM, 'beamPosition.ixPos'), (XGM, 'pulseEnergy.*')])
    assert sel.selection == {XGM: {'beamPosition.ixPos.value', 'pulseEnergy.photonFlux.value',
                                   'pulseEnergy.photonFlux.timestamp'}}
    # ... and a bare source glob (all keys) wins.
    assert run.select([XGM, (XGM, 'beamPosition.ixPos')]).selection == {XGM: None}
    # Any iterable of globs and pairs.
    sel = run.select((MOTOR, (XGM, 'beamPosition.*')))
    assert sel.selection == {MOTOR: None, XGM: {k for k in XGM_KEYS if 'beamPosition' in k}}


def test_select_dict(run):
    sel = run.select({XGM: {'beamPosition.ixPos'}, MOTOR: None, CAM: set(), DET: {}})
    assert sel.selection == {XGM: {'beamPosition.ixPos.value'}, MOTOR: None, CAM: None,
                             DET: None}
    sel = run.select({XGM_OUT: {'data.intensityTD'}})
    assert sel.selection == {XGM_OUT: {'data.intensityTD'}}
    assert sel[XGM_OUT].keys() == {'data.intensityTD'}


@pytest.mark.parametrize('value', [['beamPosition.ixPos'], 'beamPosition.ixPos',
                                   ('beamPosition.ixPos',), 1])
def test_select_dict_with_other_value_types(run, value):
    with pytest.raises(TypeError):
        run.select({XGM: value})
    with pytest.raises(TypeError):
        run.deselect({XGM: value})


def test_select_dict_unknown_names(run):
    with pytest.raises(SourceNameError) as e:
        run.select({'NO/SUCH/SOURCE': None})
    assert isinstance(e.value, KeyError)
    with pytest.raises(PropertyNameError) as e:
        run.select({XGM: {'no.such.key'}})
    assert isinstance(e.value, KeyError)
    with pytest.raises(SourceNameError):
        run.deselect({'NO/SUCH/SOURCE': None})
    with pytest.raises(PropertyNameError):
        run.deselect({XGM: {'no.such.key'}})
    # A deselected key is unknown to the narrower collection.
    with pytest.raises(PropertyNameError):
        run.select({XGM: {'beamPosition.ixPos'}}).select({XGM: {'beamPosition.iyPos'}})


def test_select_with_a_data_collection(run):
    other = run.select(['*XGM*', (DET, 'header.*')])
    assert run.select(other) == other
    assert run.select(other).selection == other.selection


def test_select_with_source_data(run):
    sel = run.select(run[XGM].select_keys('beamPosition.*'))
    assert sel.selection == {XGM: {k for k in XGM_KEYS if 'beamPosition' in k}}
    assert run.select(run[XGM]).selection == {XGM: None}
    # docs/compat.md: the collection keeps its own trains.
    assert run.select(run[XGM][:3]).train_ids == run.train_ids


def test_select_with_key_data(run):
    assert run.select(run[XGM, 'beamPosition.ixPos']).selection == \
        {XGM: {'beamPosition.ixPos.value'}}
    assert run.select(run[XGM_OUT, 'data.intensityTD']).selection == \
        {XGM_OUT: {'data.intensityTD'}}


@pytest.mark.parametrize('arg', [42, 1.5, None, object()])
def test_select_unknown_types(run, arg):
    with pytest.raises(TypeError, match='Unknown selection type'):
        run.select(arg)
    with pytest.raises(TypeError, match='Unknown selection type'):
        run.deselect(arg)


@pytest.mark.parametrize('items', [[42], [(XGM, 'a', 'b')], [(XGM, 1)]])
def test_select_list_with_bad_items(run, items):
    with pytest.raises(TypeError):
        run.select(items)


@pytest.mark.parametrize('args', [('NOPE*',), (XGM, 'nope.*'), ([XGM, ('NOPE', '*')],),
                                  ([(XGM, 'nope')],)])
def test_pattern_without_matches(run, args):
    with pytest.raises(ValueError, match='No matches for pattern') as e:
        run.select(*args)
    assert 'nope' in str(e.value).lower()
    with pytest.raises(ValueError, match='No matches for pattern'):
        run.deselect(*args)


def test_key_glob_star_keeps_the_current_keys(run):
    narrow = run.select(XGM, 'beamPosition.ixPos')
    assert narrow.select(XGM, '*').selection == {XGM: {'beamPosition.ixPos.value'}}
    assert narrow.select('*').selection == {XGM: {'beamPosition.ixPos.value'}}
    # Re-selecting never resurrects deselected keys.
    assert narrow.select(XGM, 'beamPosition.*').selection == {XGM: {'beamPosition.ixPos.value'}}
    with pytest.raises(ValueError, match='No matches for pattern'):
        narrow.select(XGM, 'pulseEnergy.*')


# -- control .value normalisation -----------------------------------------------------


def test_control_key_globs_get_value_appended(run):
    value_only = {XGM: {'beamPosition.ixPos.value'}}
    assert run.select(XGM, 'beamPosition.ixPos').selection == value_only
    assert run.select(XGM, 'beamPosition.ixPos.value').selection == value_only
    assert run.select(XGM, 'beamPosition.ixPo?').selection == value_only
    assert run.select(XGM, 'beamPosition.ixPos.*').selection == \
        {XGM: {'beamPosition.ixPos.value', 'beamPosition.ixPos.timestamp'}}
    assert run.select(XGM, 'beamPosition.*').selection == \
        {XGM: {k for k in XGM_KEYS if 'beamPosition' in k}}
    assert run.select(XGM, '*.timestamp*').selection == \
        {XGM: {k for k in XGM_KEYS if k.endswith('.timestamp')}}
    # A glob ending in .timestamp gets .value appended too, so it matches nothing.
    with pytest.raises(ValueError, match='No matches for pattern'):
        run.select(XGM, 'beamPosition.ixPos.timestamp')


def test_control_keys_in_dicts_are_normalised(run):
    assert run.select({XGM: {'beamPosition.ixPos'}}).selection == \
        {XGM: {'beamPosition.ixPos.value'}}
    assert run.select({XGM: {'beamPosition.ixPos.value'}}).selection == \
        {XGM: {'beamPosition.ixPos.value'}}
    assert run.select({XGM: {'beamPosition.ixPos.timestamp'}}).selection == \
        {XGM: {'beamPosition.ixPos.timestamp'}}


def test_control_keys_in_lookups_are_normalised(run):
    kd = run[XGM, 'beamPosition.ixPos']
    assert kd.key == 'beamPosition.ixPos.value'
    assert kd == run[XGM, 'beamPosition.ixPos.value'] == run[XGM]['beamPosition.ixPos']
    assert run[XGM, 'beamPosition.ixPos.timestamp'].key == 'beamPosition.ixPos.timestamp'
    assert (XGM, 'beamPosition.ixPos') in run
    assert (XGM, 'beamPosition.ixPos.value') in run
    assert (XGM, 'beamPosition.ixPos.timestamp') in run
    # Instrument keys are never suffixed.
    assert (XGM_OUT, 'data.intensityTD') in run
    assert (XGM_OUT, 'data.intensityTD.value') not in run
    with pytest.raises(PropertyNameError):
        run[XGM_OUT, 'data.intensityTD.value']


def test_deselect_control_key_removes_only_the_value(run):
    sel = run.deselect(XGM, 'beamPosition.ixPos')
    assert sel[XGM].keys() == XGM_KEYS - {'beamPosition.ixPos.value'}
    assert (XGM, 'beamPosition.ixPos') not in sel
    assert (XGM, 'beamPosition.ixPos.timestamp') in sel


# -- deselect -------------------------------------------------------------------------


def test_deselect_forms(run):
    assert run.deselect('*XGM*').all_sources == ALL - {XGM, XGM_OUT}
    assert run.deselect('*XGM*').train_ids == run.train_ids
    assert run.deselect(XGM_OUT, 'data.intensityTD').selection[XGM_OUT] == {'data.trainId'}
    # A source left with no keys disappears.
    assert XGM_OUT not in run.deselect(XGM_OUT, 'data.*').all_sources
    assert run.deselect([MOTOR, (XGM, 'pulseEnergy.*')]).selection == {
        **{s: None for s in ALL - {MOTOR, XGM}},
        XGM: {k for k in XGM_KEYS if 'pulseEnergy' not in k}}
    sel = run.deselect({XGM: {'beamPosition.ixPos'}, MOTOR: None, CAM: set()})
    assert sel.all_sources == ALL - {MOTOR, CAM}
    assert sel[XGM].keys() == XGM_KEYS - {'beamPosition.ixPos.value'}


def test_deselect_with_data_objects(run):
    assert run.deselect(run.select('*XGM*')) == run.deselect('*XGM*')
    assert run.deselect(run[MOTOR]).all_sources == ALL - {MOTOR}
    assert run.deselect(run[XGM, 'beamPosition.ixPos'])[XGM].keys() == \
        XGM_KEYS - {'beamPosition.ixPos.value'}


# -- require_all / require_any --------------------------------------------------------


def test_require_all(run):
    sel = no_user_warnings(run.select, [CAM, XGM_OUT], require_all=True)
    assert sel.train_ids == _positions_except(XGM_OUT_EMPTY + CAM_MISSING)
    assert sel.selection == run.select([CAM, XGM_OUT]).selection


def test_require_all_counts_only_selected_index_groups(run):
    assert run.select(DET, 'header.*', require_all=True).train_ids == TIDS
    assert run.select(DET, '*', require_all=True).train_ids == \
        _positions_except(DET_IMAGE_EMPTY)
    assert run.select(DET, 'image.*', require_all=True).train_ids == \
        _positions_except(DET_IMAGE_EMPTY)


def test_require_all_ignores_run_only_sources(run):
    assert run.select([RUNONLY, CAM], require_all=True).train_ids == \
        run.select(CAM, require_all=True).train_ids == _positions_except(CAM_MISSING)
    assert run.select(RUNONLY, require_all=True).train_ids == TIDS


def test_require_all_on_selected_trains(run):
    sel = run[5:12].select(CAM, require_all=True)
    assert sel.train_ids == [t for t in TIDS[5:12] if t != TIDS[5]]


def test_require_any(run):
    assert run.select([CAM, XGM_OUT], require_any=True).train_ids == TIDS
    assert run.select([EMPTY, (DET, 'image.*')], require_any=True).train_ids == \
        _positions_except(DET_IMAGE_EMPTY)
    assert run.select([XGM_OUT, (DET, 'image.*')], require_any=True).train_ids == \
        _positions_except(set(XGM_OUT_EMPTY) & set(DET_IMAGE_EMPTY))


def test_require_all_warns_when_everything_is_dropped(run):
    with pytest.warns(UserWarning, match='EMPTY'):
        sel = run.select(EMPTY, require_all=True)
    assert sel.train_ids == []
    assert sel.all_sources == {EMPTY}


def test_require_all_warn_drop_trains_frac(run):
    # CAM drops 2 of 20 trains: 10 %.
    no_user_warnings(run.select, CAM, require_all=True)
    no_user_warnings(run.select, CAM, require_all=True, warn_drop_trains_frac=0.11)
    with pytest.warns(UserWarning, match='SIDEMIC'):
        run.select(CAM, require_all=True, warn_drop_trains_frac=0.1)
    # The fraction is of the trains still remaining when a source is considered.
    with pytest.warns(UserWarning) as rec:
        run.select([CAM, XGM_OUT], require_all=True, warn_drop_trains_frac=0.05)
    assert len([w for w in rec if issubclass(w.category, UserWarning)]) == 2


# -- indexing, membership, repr, iteration --------------------------------------------


@pytest.mark.parametrize('sel, positions', [
    (by_id[10002:10005], [2, 3, 4]),
    (by_id[[10019, 10001, 99]], [1, 19]),
    (by_id[10007], [7]),
    (by_index[[0, 5]], [0, 5]),
    (by_index[-2:], [18, 19]),
    (np.s_[2:5], [2, 3, 4]),
    (np.s_[::7], [0, 7, 14]),
    ([4, 1], [1, 4]),
    (np.array([4, 1, -1]), [1, 4, 19]),
    (np.arange(N) % 6 == 0, [0, 6, 12, 18]),
    (3, [3]),
    (-1, [19]),
    (np.int64(2), [2]),
])
def test_getitem_train_selection(run, sel, positions):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)  # by_id IDs not in the run
        sub = run[sel]
        assert sub == run.select_trains(sel)
    assert sub.train_ids == [TIDS[i] for i in positions]
    assert sub.all_sources == run.all_sources
    assert sub[XGM].train_ids == sub.train_ids
    assert sub[CAM, 'data.image.pixels'].train_ids == sub.train_ids


def test_getitem_train_selection_with_a_data_array(run):
    xr = pytest.importorskip('xarray')
    mask = xr.DataArray(np.arange(N) >= 17, dims=['trainId'], coords={'trainId': TIDS})
    assert run[mask].train_ids == TIDS[17:]


def test_getitem_train_selection_errors(run):
    with pytest.raises(IndexError):
        run[N]
    with pytest.raises(ValueError):
        run[np.ones(N - 1, bool)]


def test_getitem_source_and_key(run):
    sd = run[XGM]
    assert isinstance(sd, SourceData) and sd.source == XGM
    kd = run[XGM_OUT, 'data.intensityTD']
    assert isinstance(kd, KeyData) and (kd.source, kd.key) == (XGM_OUT, 'data.intensityTD')
    assert kd == run[XGM_OUT]['data.intensityTD']


def test_getitem_unknown_names(run):
    with pytest.raises(SourceNameError):
        run['NO/SUCH/SOURCE']
    with pytest.raises(SourceNameError):
        run['NO/SUCH/SOURCE', 'x']
    with pytest.raises(PropertyNameError):
        run[XGM, 'no.such.key']
    with pytest.raises(SourceNameError):
        run.deselect(MOTOR)[MOTOR]
    with pytest.raises(PropertyNameError):
        run.select(XGM, 'beamPosition.ixPos')[XGM, 'beamPosition.iyPos']


@pytest.mark.parametrize('item', [1.5, (XGM, 'beamPosition.ixPos', 'x'), (XGM,), (XGM, 1),
                                  (1, 2)])
def test_getitem_type_errors(run, item):
    with pytest.raises(TypeError):
        run[item]


def test_contains(run):
    assert XGM in run and CAM in run
    assert 'NO/SUCH/SOURCE' not in run
    assert (XGM_OUT, 'data.intensityTD') in run
    assert (XGM, 'no.such.key') not in run
    assert ('NO/SUCH/SOURCE', 'x') not in run
    for other in (42, 1.5, None, (XGM, 'beamPosition.ixPos', 'x'), (XGM,), [XGM]):
        assert other not in run
    sel = run.select(XGM, 'beamPosition.ixPos')
    assert XGM in sel and MOTOR not in sel
    assert (XGM, 'beamPosition.iyPos') not in sel


def test_repr(run):
    assert repr(run) == '<xfeldata.DataCollection for 7 sources and 20 trains>'
    assert repr(run.select('*XGM*')[2:5]) == '<xfeldata.DataCollection for 2 sources and 3 trains>'
    assert repr(run[XGM][:4]) == f"<xfeldata.SourceData source='{XGM}' for 4 trains>"
    assert repr(run[XGM, 'beamPosition.ixPos']) == \
        f"<xfeldata.KeyData source='{XGM}' key='beamPosition.ixPos.value' for 20 trains>"


@pytest.mark.parametrize('make', [lambda r: r, lambda r: r[XGM],
                                  lambda r: r[XGM_OUT, 'data.intensityTD']],
                         ids=['DataCollection', 'SourceData', 'KeyData'])
def test_iteration_is_disabled(run, make):
    obj = make(run)
    with pytest.raises(TypeError):
        iter(obj)
    with pytest.raises(TypeError):
        list(obj)


# -- union ----------------------------------------------------------------------------


def test_union_of_sources(run):
    a, b = run.select('*XGM*'), run.select(CAM)
    both = run.select(['*XGM*', CAM])
    assert a | b == both and a.union(b) == both
    assert (a | b).selection == both.selection
    assert a.union(b, run.select(MOTOR)).all_sources == {XGM, XGM_OUT, CAM, MOTOR}
    # Keys are unioned; all keys win.
    k1, k2 = run.select(XGM, 'beamPosition.ixPos'), run.select(XGM, 'pulseEnergy.*')
    assert (k1 | k2).selection == {XGM: {'beamPosition.ixPos.value',
                                         'pulseEnergy.photonFlux.value',
                                         'pulseEnergy.photonFlux.timestamp'}}
    assert (k1 | run.select(XGM)).selection == {XGM: None}


def test_union_in_place_operator_binds_a_new_object(run):
    a, b = run.select('*XGM*'), run.select(CAM)
    before = snapshot(a)
    c = a
    c |= b
    assert c == a | b and c is not a
    assert snapshot(a) == before


def test_union_of_trains(run):
    u = run.select(XGM)[:5] | run.select(CAM)[12:]
    assert u.train_ids == TIDS[:5] + TIDS[12:]
    for src in (XGM, CAM):
        assert u[src].train_ids == u.train_ids
    # Each source keeps the files its own selection used: the XGM's second
    # sequence file is not part of the union, so it has no data after train 9.
    counts = u[XGM, 'beamPosition.ixPos'].data_counts(labelled=False).tolist()
    assert counts == [1] * 5 + [0] * 8
    cam = u[CAM, 'data.image.pixels'].data_counts(labelled=False).tolist()
    assert cam == [0] * 5 + [0 if i in CAM_MISSING else 1 for i in range(12, N)]


# -- immutability ---------------------------------------------------------------------


OPERATIONS = {
    'select glob': lambda d: d.select('*XGM*'),
    'select pair': lambda d: d.select(XGM, 'beamPosition.ixPos'),
    'select dict': lambda d: d.select({XGM: {'beamPosition.ixPos'}, CAM: None}),
    'require_all': lambda d: d.select([CAM, XGM_OUT], require_all=True),
    'require_any': lambda d: d.select([CAM, XGM_OUT], require_any=True),
    'deselect glob': lambda d: d.deselect('*XGM*'),
    'deselect pair': lambda d: d.deselect(XGM, 'beamPosition.ixPos'),
    'select_trains': lambda d: d.select_trains(np.s_[3:9]),
    'by_id': lambda d: d[by_id[10004:10010]],
    'positions': lambda d: d[[1, 2]],
    'split_trains': lambda d: list(d.split_trains(3)),
    'or': lambda d: d | d.select(CAM)[:3],
    'union': lambda d: d.union(d[:2], d[5:]),
    'source data': lambda d: d[XGM].select_keys('beamPosition.*')[2:4],
    'key data': lambda d: d[XGM_OUT, 'data.intensityTD'][1:3].ndarray(),
}


@pytest.mark.parametrize('op', OPERATIONS.values(), ids=OPERATIONS.keys())
def test_operations_leave_the_original_unchanged(run, op):
    for dc in (run, run.select(['*XGM*', CAM, MOTOR])[2:12]):
        before = snapshot(dc)
        sd_keys, kd_ids = dc[XGM].keys(), dc[XGM, 'beamPosition.ixPos'].train_ids
        result = op(dc)
        assert result is not dc
        assert snapshot(dc) == before
        assert dc[XGM].keys() == sd_keys
        assert dc[XGM, 'beamPosition.ixPos'].train_ids == kd_ids


def test_returned_containers_are_copies(run):
    before = snapshot(run)
    sel = run.selection
    sel.clear()
    run.train_ids.clear()
    assert snapshot(run) == before
    narrow = run.select(XGM, 'beamPosition.ixPos')
    narrow.selection[XGM].add('bogus')
    assert narrow.selection == {XGM: {'beamPosition.ixPos.value'}}
    with pytest.raises(AttributeError):
        run.all_sources.add('bogus')  # a frozenset


def test_attributes_cannot_be_set(run):
    with pytest.raises(AttributeError):
        run.is_single_run = False
    with pytest.raises(AttributeError):
        run[XGM].source = 'other'
    with pytest.raises(AttributeError):
        run[XGM, 'beamPosition.ixPos'].key = 'other'
