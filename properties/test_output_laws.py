"""Output laws: labelled outputs carry exactly the data of ``ndarray()``.

One run is written once for the module (a fixture): control sources in two
aggregators with different trains, an instrument source with two groups of
0/1 entries per train and one of 0-3 entries, vector and string keys, and
suspect trains. For random keys, train selections (with and without suspect
trains) and regions of interest:

* ``kd.xarray()`` holds ``kd.ndarray()`` with ``train_id_coordinates()`` as its
  ``trainId`` coordinate, and roi coordinates are the indices the roi picks;
* ``get_dataframe()`` equals its columns' ``series()``, outer-joined on trainId;
* ``kd.dask_array()`` computes to ``kd.ndarray()`` for any chunk size, and the
  pieces of a partitioned plan concatenate to the whole plan's output;
* the xarray backend's lazily indexed variables equal the loaded ones.
"""
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xfeldata
from xfeldata import _execute, _outputs, _tiers
from xfeldata.testing import Aggregator, ControlSource, InstrumentSource, RunSpec, write_run

N_TRAINS = 50
FIRST = 2000
CTRL, GAUGE, INST = 'CTRL/MOTOR/A', 'CTRL/GAUGE/B', 'INST/DET/A:output'
ONE_VALUE = [  # keys with at most one value per train
    (CTRL, 'x'), (CTRL, 'state'), (GAUGE, 'p'), (GAUGE, 'code'), (INST, 'data.val'),
    (INST, 'aux.flag')]
ALL_KEYS = ONE_VALUE + [(CTRL, 'vec'), (INST, 'data.img'), (INST, 'multi.v')]

keep_suspect = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    rng = np.random.default_rng(11)
    tids = np.arange(FIRST, FIRST + N_TRAINS)
    ctrl = ControlSource(CTRL, {'x': np.float64, 'vec': (np.float32, (3, 4)), 'state': str})
    gauge = ControlSource(GAUGE, {'p': np.float32, 'code': np.int16})
    inst = InstrumentSource(INST, {'data.val': np.int32, 'data.img': (np.uint16, (4, 5)),
                                   'aux.flag': np.uint8, 'multi.v': np.float32},
                            groups={'data': rng.integers(0, 2, N_TRAINS),
                                    'aux': rng.integers(0, 2, N_TRAINS),
                                    'multi': rng.integers(0, 4, N_TRAINS)})
    valid = np.ones(N_TRAINS, bool)
    valid[[7, 8, 33]] = False
    spec = RunSpec(tids, [Aggregator('DA01', [ctrl], sequence_starts=(20, 35)),
                          Aggregator('DA02', [gauge], train_ids=np.delete(tids, [0, 12, 13])),
                          Aggregator('DA03', [inst], sequence_starts=(25,))],
                   valid=valid)
    d = tmp_path_factory.mktemp('output-laws')
    write_run(d, spec)
    _tiers.MEMO.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('XFELDATA_CACHE', 'off')
        mp.setenv('XFELDATA_NO_RUN_MAP_WRITE', '1')
        yield {inc: xfeldata.RunDirectory(d, inc_suspect_trains=inc) for inc in (True, False)}


def train_selections():
    """Positional selections of the run's trains: slices or positions (see ``_fit``)."""
    slices = st.builds(slice, st.integers(0, N_TRAINS), st.integers(0, N_TRAINS),
                       st.integers(1, 4))
    masks = st.lists(st.booleans(), min_size=N_TRAINS, max_size=N_TRAINS).map(
        lambda m: np.flatnonzero(m))
    return st.one_of(slices, masks)


def _fit(sel, dc):
    # Without suspect trains the run has fewer trains than positions drawn.
    return sel[sel < len(dc.train_ids)] if isinstance(sel, np.ndarray) else sel


def per_axis_rois(ndim):
    """Rois acting axis by axis: integers, slices and at most one index list."""
    part = st.one_of(st.integers(0, 2), st.builds(slice, st.sampled_from([None, 0, 1]),
                                                  st.sampled_from([None, 2, 3]),
                                                  st.sampled_from([None, 1, 2])))
    return st.lists(part, min_size=0, max_size=ndim).map(tuple)


@keep_suspect
@given(key=st.sampled_from(ALL_KEYS), sel=train_selections(), inc=st.booleans(),
       data=st.data())
def test_xarray_holds_ndarray(runs, key, sel, inc, data):
    kd = runs[inc][key].select_trains(_fit(sel, runs[inc]))
    ndim = len(kd.entry_shape)
    roi = data.draw(per_axis_rois(ndim)) if ndim else ()
    da = kd.xarray(roi=roi, extra_coords=True)
    np.testing.assert_array_equal(da.values, kd.ndarray(roi=roi))
    np.testing.assert_array_equal(da.coords['trainId'].values, kd.train_id_coordinates())
    assert da.dims[0] == 'trainId' and len(da.dims) == da.ndim
    # Each inner coordinate is the indices the roi takes along that axis.
    full = roi + (slice(None),) * (ndim - len(roi))
    kept = [(r, n) for r, n in zip(full, kd.entry_shape) if isinstance(r, slice)]
    for dim, (r, n) in zip(da.dims[1:], kept):
        np.testing.assert_array_equal(da.coords[dim].values, np.arange(n)[r])


@keep_suspect
@given(keys=st.lists(st.sampled_from(ONE_VALUE), min_size=1, max_size=6, unique=True),
       sel=train_selections(), inc=st.booleans(), timestamps=st.booleans())
def test_dataframe_is_joined_series(runs, keys, sel, inc, timestamps):
    dc = runs[inc].select_trains(_fit(sel, runs[inc]))
    df = dc.get_dataframe(fields=keys, timestamps=timestamps)
    series = [dc[src, key].series() for src, key in keys]
    assert sorted(df.columns) == sorted(s.name for s in series)
    union = np.unique(np.concatenate([s.index.values for s in series])).astype(np.uint64)
    np.testing.assert_array_equal(df.index.values, union)
    for s in series:
        pd.testing.assert_series_equal(df[s.name], s.reindex(df.index))


@keep_suspect
@given(key=st.sampled_from(ALL_KEYS), sel=train_selections(), inc=st.booleans(),
       chunk=st.integers(1, 2000))
def test_dask_equals_eager(runs, key, sel, inc, chunk):
    import dask
    kd = runs[inc][key].select_trains(_fit(sel, runs[inc]))
    with dask.config.set({'array.chunk-size': chunk}):
        arr = kd.dask_array()
    assert arr.shape == kd.shape
    np.testing.assert_array_equal(arr.compute(scheduler='synchronous'), kd.ndarray())
    plan = kd.plan()
    pieces = _outputs.partition_plan(plan, chunk)
    assert all(p.nbytes <= max(chunk, plan.entry_nbytes) for p in pieces)
    whole = _execute.execute(plan)
    parts = [_execute.execute(p) for p in pieces]
    np.testing.assert_array_equal(np.concatenate(parts) if parts else whole[:0], whole)


@keep_suspect
@given(source=st.sampled_from([CTRL, GAUGE, INST]), inc=st.booleans(),
       index=st.one_of(st.builds(slice, st.integers(-60, 60) | st.none(),
                                 st.integers(-60, 60) | st.none(),
                                 st.sampled_from([None, 1, 2, -1, -3])),
                       st.integers(0, N_TRAINS - 1)))
def test_backend_lazy_indexing_equals_loaded(runs, source, inc, index):
    ds = xr.open_dataset(runs[inc], engine='xfeldata', source=source)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        for name in ds.data_vars:
            if isinstance(index, int) and index >= ds.sizes['trainId']:
                continue
            loaded = ds[name].values
            np.testing.assert_array_equal(ds[name][index].values, loaded[index])
