"""Iteration laws: ``trains()`` yields, train by train, the rows ``ndarray()`` holds.

One run is written once for the module (a fixture): a control device in two
sequence files (scalar, array and string keys), a second control device
whose files miss some trains, and an instrument source with a legacy name,
two index groups with random counts (zeros included), missing trains, in
two sequence files; some trains are suspect. For random sources and keys,
train selections, batch budgets and options:

* every selected train is yielded once, in order, with a ``metadata`` entry
  per selected source;
* every key's value is the train's rows of ``KeyData.ndarray()`` (one entry
  for control keys, and for one instrument entry unless ``keep_dims``; the
  key is absent without rows); strings as bytes;
* ``require_all`` keeps exactly the trains where every selected non-legacy
  source has data for all its selected keys (these control devices have one
  entry in every train their files hold);
* ``trains()`` and ``train_from_id()`` agree; ``KeyData.trains(keep_dims=True)``
  concatenates to ``KeyData.ndarray()``.
"""
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xfeldata
from xfeldata import _iterate, _tiers, by_id
from xfeldata.testing import Aggregator, ControlSource, InstrumentSource, RunSpec, write_run

N_TRAINS = 50
FIRST = 2000
CTRL = 'CTRL/MOTOR/A'
CTRL2 = 'CTRL/GAUGE/B'
INST = 'INST/DET/A:output'
LEGACY = 'INST/DET/OLD:output'
PAIRS = [(CTRL, 'x'), (CTRL, 'vec'), (CTRL, 'state'), (CTRL, 'x.*'), (CTRL2, 'p'),
         (INST, 'data.img'), (INST, 'data.val'), (INST, 'other.v'), (LEGACY, 'data.val')]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    rng = np.random.default_rng(11)
    tids = np.arange(FIRST, FIRST + N_TRAINS)
    inst_tids = np.delete(tids, [0, 9, 10, 33])
    n_inst = len(inst_tids)
    ctrl = ControlSource(CTRL, {'x': np.float64, 'vec': (np.float32, (2, 3)), 'state': str})
    ctrl2 = ControlSource(CTRL2, {'p': np.int16})
    inst = InstrumentSource(INST, {'data.img': (np.uint16, (3, 4)), 'data.val': np.int32,
                                   'other.v': (np.float32, (2,))},
                            groups={'data': rng.integers(0, 4, n_inst),
                                    'other': rng.integers(0, 2, n_inst)},
                            legacy_names=(LEGACY,))
    valid = np.ones(N_TRAINS, bool)
    valid[[4, 20, 21]] = False
    spec = RunSpec(tids, [Aggregator('DA01', [ctrl], sequence_starts=(18,)),
                          Aggregator('DA02', [inst], sequence_starts=(23,), train_ids=inst_tids),
                          Aggregator('DA03', [ctrl2], train_ids=np.delete(tids, [2, 40, 41]))],
                   valid=valid)
    d = tmp_path_factory.mktemp('iteration-laws')
    write_run(d, spec)
    _tiers.MEMO.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('XFELDATA_CACHE', 'off')
        mp.setenv('XFELDATA_NO_RUN_MAP_WRITE', '1')
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return {inc: xfeldata.RunDirectory(d, inc_suspect_trains=inc) for inc in (True, False)}


@st.composite
def selections(draw, runs):
    """A DataCollection: some (source, key) pairs and a train selection."""
    inc = draw(st.booleans())
    pairs = draw(st.lists(st.sampled_from(PAIRS), min_size=1, max_size=5, unique=True))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        dc = runs[inc].select(pairs)
        kind = draw(st.sampled_from(['all', 'slice', 'ids', 'mask']))
        if kind == 'slice':
            dc = dc.select_trains(slice(draw(st.integers(-N_TRAINS, N_TRAINS)),
                                        draw(st.integers(-N_TRAINS, N_TRAINS)),
                                        draw(st.integers(1, 5))))
        elif kind == 'ids':
            ids = draw(st.lists(st.integers(FIRST - 2, FIRST + N_TRAINS + 2), max_size=20))
            dc = dc.select_trains(by_id[sorted(set(ids)) or [FIRST]])
        elif kind == 'mask':
            n = len(dc.train_ids)
            dc = dc.select_trains(np.array(draw(st.lists(st.booleans(), min_size=n,
                                                         max_size=n)), bool))
    return dc


def _keydatas(dc):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        return {(s, k): dc[s, k] for s in sorted(dc.all_sources) for k in sorted(dc[s].keys())}


def _encoded(rows):
    if rows.dtype.hasobject:
        return np.array([v.encode('utf-8', 'surrogateescape') for v in rows.reshape(-1)],
                        dtype=object).reshape(rows.shape)
    return rows


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow])
@given(data=st.data(), keep_dims=st.booleans(), max_trains=st.integers(1, N_TRAINS + 5),
       max_bytes=st.sampled_from([None, 1, 64, 4096]))
def test_trains_yield_the_rows_ndarray_holds(runs, data, keep_dims, max_trains, max_bytes):
    dc = data.draw(selections(runs))
    got = list(_iterate.iterate_trains(dc, keep_dims=keep_dims, max_trains=max_trains,
                                       max_bytes=max_bytes))
    assert [t for t, _ in got] == [int(t) for t in dc.train_ids]
    for tid, d in got:
        assert sorted(d) == sorted(dc.all_sources)
        assert all(d[s]['metadata'] == {'source': s, 'timestamp.tid': tid} for s in d)
    for (src, key), kd in _keydatas(dc).items():
        whole, coords = _encoded(kd.ndarray()), kd.train_id_coordinates()
        for tid, d in got:
            rows = whole[coords == tid]
            if len(rows) == 0:
                assert key not in d[src]
                continue
            value = d[src][key]
            if kd.is_control or (len(rows) == 1 and not keep_dims):
                assert type(value) is type(rows[0])
                assert np.array_equal(value, rows[0])
            else:
                assert value.dtype == rows.dtype and value.shape == rows.shape
                assert np.array_equal(value, rows)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow])
@given(data=st.data(), max_trains=st.integers(1, 20))
def test_require_all_keeps_the_trains_with_all_selected_data(runs, data, max_trains):
    dc = data.draw(selections(runs))
    legacy = set(dc.legacy_sources)
    needed = {s: dc[s].keys() for s in dc.all_sources - legacy}
    want = [t for t, d in dc.trains()
            if all(all(k in d[s] for k in keys) for s, keys in needed.items())]
    got = [t for t, _ in _iterate.iterate_trains(dc, require_all=True, max_trains=max_trains)]
    assert got == want


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow])
@given(data=st.data(), flat_keys=st.booleans(), keep_dims=st.booleans())
def test_trains_agree_with_train_from_id(runs, data, flat_keys, keep_dims):
    dc = data.draw(selections(runs))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        got = list(dc.trains(flat_keys=flat_keys, keep_dims=keep_dims))
        picks = data.draw(st.lists(st.sampled_from(got), max_size=4)) if got else []
        for tid, d in picks:
            one = dc.train_from_id(tid, flat_keys=flat_keys, keep_dims=keep_dims)
            assert one[0] == tid and list(one[1]) == list(d)
            for name, value in d.items():
                other = one[1][name]
                if isinstance(value, dict):
                    assert list(value) == list(other)
                    assert all(np.array_equal(value[k], other[k]) for k in value if
                               k != 'metadata')
                else:
                    assert np.array_equal(value, other)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow])
@given(data=st.data(), max_trains=st.integers(1, 20), include_empty=st.booleans())
def test_keydata_trains_concatenate_to_ndarray(runs, data, max_trains, include_empty):
    dc = data.draw(selections(runs))
    for kd in _keydatas(dc).values():
        kept = list(_iterate.iterate_key_trains(kd, keep_dims=True, max_trains=max_trains))
        ids = [int(t) for t, _ in kept]
        assert ids == sorted(set(ids)) and set(ids) <= {int(t) for t in kd.train_ids}
        whole = kd.ndarray()
        joined = np.concatenate([v for _, v in kept]) if kept else whole[:0]
        assert joined.shape == whole.shape and joined.tolist() == whole.tolist()
        plain = list(kd.trains(include_empty=include_empty))
        with_data = {int(t) for t in np.unique(kd.train_id_coordinates())}
        assert [int(t) for t, _ in plain] == [t for t in ids
                                              if include_empty or t in with_data]
