"""Pickle laws of DataCollection, SourceData and KeyData (DESIGN.md decision 5).

* A round trip (pickle, every protocol, and cloudpickle as dask uses it) gives
  an equal object with an equal hash that loads the same data, here and in a
  fresh process without caches.
* A pickled KeyData or SourceData carries the records of the files holding
  its source only: it is small and does not grow with the files of the run
  it does not use (a run with 2 and one with 20 extra control-aggregator
  files give pickles of the same size).
"""
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xfeldata
from xfeldata import by_id
from xfeldata.testing import (Aggregator, ControlSource, InstrumentSource, RunSpec,
                              write_run)

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')

XGM = 'SA1_XTD2_XGM/DOOCS/MAIN'
XGM_OUT = 'SA1_XTD2_XGM/DOOCS/MAIN:output'
CAM = 'SPB_IRU_CAM/CAM/SIDEMIC:daqOutput'
DET = 'SPB_DET_AGIPD1M-1/DET/0CH0:xtdf'

relaxed = settings(suppress_health_check=[HealthCheck.too_slow])

try:
    import cloudpickle
except ImportError:  # an optional test dependency
    cloudpickle = None


def _main_spec():
    n = 16
    tids = np.arange(20000, 20000 + 3 * n, 3, dtype=np.uint64)
    rng = np.random.default_rng(7)
    cam_tids = tids[np.arange(n) % 4 != 1]
    valid = np.ones(n, bool)
    valid[[3, 11]] = False
    return RunSpec(tids, [
        Aggregator('DA01', [
            ControlSource(XGM, {'beamPosition.ixPos': np.float32, 'state': str}),
            InstrumentSource(XGM_OUT, {'data.intensityTD': (np.float32, (5,))},
                             groups={'data': rng.integers(0, 3, n)}),
        ], sequence_starts=(5, 10)),
        Aggregator('DA02', [
            InstrumentSource(CAM, {'data.image.pixels': ('u2', (3, 4))},
                             groups={'data': rng.integers(0, 2, len(cam_tids))}),
        ], train_ids=cam_tids, sequence_starts=(6,)),
        Aggregator('AGIPD00', [
            InstrumentSource(DET, {'image.data': ('u2', (2, 3)), 'header.pulseCount': np.uint64},
                             groups={'image': rng.integers(0, 4, n), 'header': 1}),
        ], sequence_starts=(8,)),
    ], format_version='1.2', valid=valid)


def _size_spec(n_extra):
    """XGM_OUT in 2 files of DA01, and ``n_extra`` files of a control aggregator."""
    n = 40
    tids = np.arange(30000, 30000 + n, dtype=np.uint64)
    return RunSpec(tids, [
        Aggregator('DA01', [
            InstrumentSource(XGM_OUT, {'data.intensityTD': (np.float32, (5,)), 'data.x': 'f8'},
                             groups={'data': np.arange(n) % 3}),
        ], sequence_starts=(n // 2,)),
        Aggregator('DA02', [
            ControlSource(f'SPB_CTRL/DEV/D{i}', {'value': np.float64, 'vector': ('f4', (3,))})
            for i in range(3)
        ], sequence_starts=tuple(range(1, n_extra))),
    ], format_version='1.2')


class Runs(dict):
    def __repr__(self):
        return f"<runs {sorted(self)}>"


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp('pickle-laws')
    main = write_run(d / 'main', _main_spec()).directory
    out = Runs(
        main=xfeldata.RunDirectory(main),
        main_valid=xfeldata.RunDirectory(main, inc_suspect_trains=False),
    )
    for k in (2, 20):
        out[f'extra{k:02d}'] = xfeldata.RunDirectory(
            write_run(d / f'size{k:02d}', _size_spec(k)).directory)
    return out


# -- strategies -----------------------------------------------------------------------


class Made:
    """A drawn object that prints as the recipe that made it."""

    def __init__(self, obj, how):
        self.obj, self.how = obj, how

    def __repr__(self):
        return self.how


def train_selections(train_ids):
    n, first = len(train_ids), int(train_ids[0])
    bound = st.none() | st.integers(-n - 1, n + 1)
    return st.one_of(
        st.builds(slice, bound, bound, st.none() | st.integers(1, 3)),
        st.lists(st.integers(0, n - 1), max_size=5, unique=True),
        st.lists(st.integers(first - 2, first + 3 * n), max_size=6).map(lambda v: by_id[v]),
    )


@st.composite
def collections(draw, runs):
    name = draw(st.sampled_from(['main', 'main_valid']))
    dc, how = runs[name], f"runs[{name!r}]"
    sel = draw(train_selections(dc.train_ids))
    dc, how = dc.select_trains(sel), f"{how}.select_trains({sel!r})"
    if draw(st.booleans()):
        srcs = draw(st.lists(st.sampled_from(sorted(dc.all_sources)), min_size=1,
                             max_size=3, unique=True))
        dc, how = dc.select(srcs), f"{how}.select({srcs!r})"
    return Made(dc, how)


@st.composite
def sources(draw, runs):
    made = draw(collections(runs))
    src = draw(st.sampled_from(sorted(made.obj.all_sources)))
    sd, how = made.obj[src], f"{made.how}[{src!r}]"
    if draw(st.booleans()):
        keys = draw(st.sets(st.sampled_from(sorted(sd.keys())), min_size=1, max_size=2))
        sd, how = sd.select_keys(keys), f"{how}.select_keys({keys!r})"
    return Made(sd, how)


@st.composite
def keys(draw, runs):
    made = draw(sources(runs))
    key = draw(st.sampled_from(sorted(made.obj.keys())))
    return Made(made.obj[key], f"{made.how}[{key!r}]")


def dumpers():
    protocols = [(lambda o, p=p: pickle.dumps(o, protocol=p), f'pickle protocol {p}')
                 for p in range(2, pickle.HIGHEST_PROTOCOL + 1)]
    if cloudpickle is not None:
        protocols.append((cloudpickle.dumps, 'cloudpickle'))
    return st.sampled_from(protocols)


def facts(obj) -> list:
    """What a user can observe of a DataCollection, SourceData or KeyData, data included."""
    if isinstance(obj, xfeldata.DataCollection):
        out = [obj.train_ids, obj.selection, obj.all_sources, obj.inc_suspect_trains, repr(obj)]
        for src in sorted(obj.all_sources):
            out += facts(obj[src])
        return out
    if isinstance(obj, xfeldata.SourceData):
        return [obj.source, obj.train_ids, obj.keys(), obj.section, obj.index_groups,
                obj.data_counts(labelled=False), repr(obj)] + facts(obj[min(obj.keys())])
    return [obj.source, obj.key, obj.train_ids, obj.dtype, obj.entry_shape, obj.shape,
            obj.data_counts(labelled=False), obj.train_id_coordinates(), obj.ndarray(),
            repr(obj)]


def assert_same_facts(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if isinstance(w, np.ndarray):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)
        else:
            assert g == w


# -- round trips ----------------------------------------------------------------------


@relaxed
@pytest.mark.parametrize('kind', [collections, sources, keys],
                         ids=['DataCollection', 'SourceData', 'KeyData'])
@given(data=st.data())
def test_round_trip(runs, kind, data):
    obj = data.draw(kind(runs)).obj
    back = pickle.loads(data.draw(dumpers())[0](obj))
    assert type(back) is type(obj)
    assert back == obj and hash(back) == hash(obj)
    assert_same_facts(facts(back), facts(obj))


def test_unpickled_objects_load_data_in_a_fresh_process(runs, tmp_path):
    """What a dask worker does: no memo, no index cache, only the pickle and the files."""
    dc = runs['main_valid'].select_trains(np.s_[2:13]).select([XGM, CAM, DET])
    objs = (dc, dc[CAM], dc[DET, 'image.data'])
    (tmp_path / 'in.pkl').write_bytes(pickle.dumps(objs))
    script = textwrap.dedent(f"""
        import pickle, runpy
        facts = runpy.run_path({__file__!r})['facts']
        objs = pickle.loads(open({str(tmp_path / 'in.pkl')!r}, 'rb').read())
        with open({str(tmp_path / 'out.pkl')!r}, 'wb') as f:
            pickle.dump([facts(o) for o in objs], f)
    """)
    env = dict(os.environ, XFELDATA_CACHE='off', XFELDATA_NO_RUN_MAP_WRITE='1')
    subprocess.run([sys.executable, '-c', script], check=True, env=env, timeout=120)
    got = pickle.loads((tmp_path / 'out.pkl').read_bytes())
    for g, obj in zip(got, objs, strict=True):
        assert_same_facts(g, facts(obj))


# -- sizes ----------------------------------------------------------------------------

# Equal up to a few bytes of pickle framing (the paths have equal lengths).
SIZE_SLACK = 16


@relaxed
@pytest.mark.parametrize('key', ['data.intensityTD', 'data.x', None],
                         ids=['KeyData-vector', 'KeyData-scalar', 'SourceData'])
@given(data=st.data())
def test_pickle_does_not_grow_with_unrelated_files(runs, key, data):
    small, big = runs['extra02'], runs['extra20']
    assert small.train_ids == big.train_ids
    sel = data.draw(train_selections(small.train_ids))
    name = XGM_OUT if key is None else (XGM_OUT, key)
    obj_small, obj_big = small[name][sel], big[name][sel]
    assert obj_small.train_ids == obj_big.train_ids
    a, b = pickle.dumps(obj_small), pickle.dumps(obj_big)
    assert abs(len(a) - len(b)) <= SIZE_SLACK, (len(a), len(b))
    assert b'DA02' not in b  # no record of a file it does not use
    assert len(b) < 6000


def test_the_size_comparison_sees_extra_files(runs):
    # The measure is sensitive: a whole collection (which must carry every
    # file's record) grows by the 18 extra files, so equal KeyData sizes mean
    # the KeyData really leaves them out.
    small, big = (pickle.dumps(runs[k]) for k in ('extra02', 'extra20'))
    assert len(big) > len(small) + 18 * 200
    assert b'DA02' in big
