"""Labelled outputs: xarray, pandas, dask, virtual datasets, the xarray backend, HTML.

One synthetic run is written for the module: a control source with units,
a vector and a string key; a second control source in another aggregator that
misses some trains (so joins have gaps); an instrument source with two groups
of 0/1 entries per train, a group of 0-3 entries, a structured key and a
legacy name; and a RUN-only source.
"""
import html
import os
import pickle
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xfeldata
from xfeldata import _execute, _outputs, by_index
from xfeldata.core.plan import ReadPlan, ReadStep
from xfeldata.exceptions import PropertyNameError, SourceNameError
from xfeldata.keydata import KeyData
from xfeldata.testing import Aggregator, ControlSource, InstrumentSource, Key, RunSpec, write_run

N, FIRST = 40, 5000
CTRL, GAUGE, INST, OLD, RUNONLY = ('CTRL/MOTOR/A', 'CTRL/GAUGE/B', 'INST/DET/A:output',
                                   'INST/DET/OLD:output', 'CTRL/RUN/ONLY')
HITS = np.dtype([('x', 'f8'), ('m', 'i4')])
GAUGE_MISSING = [3, 4, 30]


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    rng = np.random.default_rng(3)
    tids = np.arange(FIRST, FIRST + N)
    ctrl = ControlSource(CTRL, {
        'x': Key(np.float64, attrs={'unitSymbol': 'm', 'metricPrefixSymbol': 'u'}),
        'vec': (np.float32, (3, 4)), 'state': str, 'n': np.uint32})
    gauge = ControlSource(GAUGE, {'p': np.float32, 'code': np.int16})
    inst = InstrumentSource(INST, {'data.val': np.int32, 'data.img': (np.uint16, (4, 6)),
                                   'data.hits': (HITS, (2,)), 'multi.v': np.float32,
                                   'aux.flag': np.uint8},
                            groups={'data': rng.integers(0, 2, N), 'multi': rng.integers(0, 4, N),
                                    'aux': rng.integers(0, 2, N)},
                            legacy_names=(OLD,))
    spec = RunSpec(tids, [
        Aggregator('DA01', [ctrl, ControlSource(RUNONLY, {'setting': np.float64},
                                                run_only=True)], sequence_starts=(15,)),
        Aggregator('DA02', [gauge], train_ids=np.delete(tids, GAUGE_MISSING)),
        Aggregator('DA03', [inst], sequence_starts=(20,))])
    d = tmp_path_factory.mktemp('outputs')
    write_run(d, spec)
    return str(d)


@pytest.fixture(scope='module')
def run(run_dir):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        return xfeldata.RunDirectory(run_dir)


# -- KeyData.xarray ---------------------------------------------------------------------

def test_xarray_values_coords_name_units(run):
    kd = run[CTRL, 'x']
    da = kd.xarray()
    assert da.name == f'{CTRL}.x' and da.dims == ('trainId',)
    np.testing.assert_array_equal(da.values, kd.ndarray())
    np.testing.assert_array_equal(da.coords['trainId'].values, kd.train_id_coordinates())
    assert da.coords['trainId'].dtype == np.uint64
    assert da.attrs['units'] == 'μm'
    inst = run[INST, 'data.img'].xarray()
    assert inst.name == f'{INST}.data.img'
    assert inst.dims == ('trainId', 'dim_0', 'dim_1') and set(inst.coords) == {'trainId'}
    assert 'units' not in inst.attrs
    assert run[CTRL, 'x'].xarray(name='pos').name == 'pos'


def test_xarray_roi_coordinates(run):
    kd = run[INST, 'data.img']
    da = kd.xarray(roi=np.s_[1:3, ::2], extra_coords=True)
    np.testing.assert_array_equal(da.values, kd.ndarray(roi=np.s_[1:3, ::2]))
    assert da.coords['dim_0'].values.tolist() == [1, 2]
    assert da.coords['dim_1'].values.tolist() == [0, 2, 4]
    # Names for the stored entry's dims: the one an integer removes is dropped.
    da = kd.xarray(roi=np.s_[2, 1:4], extra_dims=['y', 'x'])
    assert da.dims == ('trainId', 'x') and da.coords['x'].values.tolist() == [1, 2, 3]
    # Names for the dims after the roi work too.
    assert kd.xarray(roi=np.s_[2, 1:4], extra_dims=['x']).dims == ('trainId', 'x')
    da = kd.xarray(roi=(..., [5, -1]), extra_coords=True)
    assert da.coords['dim_1'].values.tolist() == [5, 5]
    with pytest.raises(ValueError, match='extra_dims'):
        kd.xarray(extra_dims=['a', 'b', 'c'])
    # A dict is merged over the computed coordinates.
    da = kd.xarray(extra_coords={'dim_1': np.arange(6) * 10})
    assert da.coords['dim_0'].values.tolist() == [0, 1, 2, 3]
    assert da.coords['dim_1'].values.tolist() == [0, 10, 20, 30, 40, 50]


def test_xarray_roi_not_per_axis_has_no_inner_coords(run):
    kd = run[INST, 'data.img']
    roi = ([0, 1], [2, 3])
    da = kd.xarray(roi=roi, extra_coords=True)
    np.testing.assert_array_equal(da.values, kd.ndarray(roi=roi))
    assert set(da.coords) == {'trainId'}


def test_get_array_unwraps_by_index(run):
    da = run.get_array(INST, 'data.img', roi=by_index[1:3])
    np.testing.assert_array_equal(da.values, run[INST, 'data.img'].ndarray(roi=np.s_[1:3]))
    assert run.get_array(CTRL, 'x', name='x').name == 'x'


def test_xarray_structured_dtype_gives_dataset(run):
    kd = run[INST, 'data.hits']
    ds = kd.xarray(name='ignored')
    assert isinstance(ds, xr.Dataset) and set(ds.data_vars) == {'x', 'm'}
    arr = kd.ndarray()
    np.testing.assert_array_equal(ds['x'].values, arr['x'])
    np.testing.assert_array_equal(ds['m'].values, arr['m'])
    assert ds['x'].dims == ('trainId', 'dim_0')
    np.testing.assert_array_equal(ds.coords['trainId'].values, kd.train_id_coordinates())


def test_xarray_units_error_is_a_warning(run, monkeypatch):
    def broken(self):
        raise OSError('attribute unreadable')
    monkeypatch.setattr(KeyData, 'units', property(broken))
    with pytest.warns(UserWarning, match='units'):
        da = run[CTRL, 'x'].xarray()
    assert 'units' not in da.attrs and len(da) == N


# -- series and counts -----------------------------------------------------------------

def test_series(run):
    s = run.get_series(CTRL, 'x')
    assert s.name == f'{CTRL}/x' and s.index.name == 'trainId'
    np.testing.assert_array_equal(s.values, run[CTRL, 'x'].ndarray())
    multi = run[INST, 'multi.v']
    sm = multi.series()
    assert sm.name == f'{INST}/multi.v'
    np.testing.assert_array_equal(sm.index.values, multi.train_id_coordinates())
    with pytest.raises(TypeError, match='1-D'):
        run.get_series(CTRL, 'vec')


def test_get_data_counts_indexed_by_all_selected_trains(run):
    c = run.get_data_counts(INST, 'multi.v')
    assert c.dtype == np.int64 and c.index.name == 'trainId'
    np.testing.assert_array_equal(c.index.values, run.train_ids)
    assert (c == 0).any()
    pd.testing.assert_series_equal(c, run[INST, 'multi.v'].data_counts())


# -- get_dataframe -----------------------------------------------------------------------

ONE_D = [(CTRL, 'x'), (CTRL, 'n'), (CTRL, 'state'), (GAUGE, '*')]


def test_dataframe_columns_and_timestamps(run):
    df = run.get_dataframe(fields=ONE_D)
    assert sorted(df.columns) == sorted([f'{CTRL}/x', f'{CTRL}/n', f'{CTRL}/state',
                                         f'{GAUGE}/p', f'{GAUGE}/code'])
    assert df.index.name == 'trainId'
    np.testing.assert_array_equal(df.index.values, run.train_ids)
    # A control key glob without '*' selects only the value (API.md 2.2), so
    # only the gauge, selected with '*', has timestamp columns.
    with_ts = run.get_dataframe(fields=ONE_D, timestamps=True)
    assert set(with_ts.columns) - set(df.columns) == {f'{GAUGE}/p.timestamp',
                                                      f'{GAUGE}/code.timestamp'}
    np.testing.assert_array_equal(with_ts[f'{GAUGE}/p.timestamp'].dropna().values,
                                  run[GAUGE, 'p.timestamp'].ndarray())
    # fields=None uses the collection's own selection.
    pd.testing.assert_frame_equal(run.select(ONE_D).get_dataframe(), df)


def test_dataframe_outer_join_has_nan_gaps(run):
    df = run.get_dataframe(fields=ONE_D)
    missing = [FIRST + i for i in GAUGE_MISSING]
    assert df.loc[missing, f'{GAUGE}/code'].isna().all()
    assert df[f'{GAUGE}/code'].notna().sum() == N - len(GAUGE_MISSING)
    assert df[f'{GAUGE}/code'].dtype == np.float64     # int16 with NaN, as pandas does
    assert df[f'{CTRL}/n'].dtype == np.uint32           # no gaps: dtype kept
    for col, kd in ((f'{GAUGE}/code', run[GAUGE, 'code']), (f'{CTRL}/x', run[CTRL, 'x'])):
        pd.testing.assert_series_equal(df[col], kd.series().reindex(df.index), check_names=False)


def test_dataframe_instrument_join(run):
    df = run.get_dataframe(fields=[(CTRL, 'x'), (INST, 'data.val')])
    val = run[INST, 'data.val']
    assert len(df) == N
    assert df[f'{INST}/data.val'].notna().sum() == len(val.train_id_coordinates())
    pd.testing.assert_series_equal(df[f'{INST}/data.val'], val.series().reindex(df.index),
                                   check_names=False)


def test_dataframe_several_entries_per_train(run):
    # One index group on its own: its (repeated) train IDs are the index.
    df = run.get_dataframe(fields=[(INST, 'multi.v')])
    s = run[INST, 'multi.v'].series()
    np.testing.assert_array_equal(df.index.values, s.index.values)
    np.testing.assert_array_equal(df[f'{INST}/multi.v'].values, s.values)
    with pytest.raises(ValueError, match='several entries'):
        run.get_dataframe(fields=[(CTRL, 'x'), (INST, 'multi.v')])


def test_dataframe_errors(run):
    with pytest.raises(TypeError, match='vec'):
        run.get_dataframe(fields=[(CTRL, '*')])
    with pytest.raises(ValueError, match='no keys'):
        run.get_dataframe(fields=[RUNONLY])


def test_dataframe_skips_legacy_duplicate(run):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        sel = run.select('INST/DET/*', 'data.val')
        assert OLD in sel.all_sources
        df = sel.get_dataframe()
    assert list(df.columns) == [f'{INST}/data.val']


# -- dask ------------------------------------------------------------------------------------

dask = pytest.importorskip('dask')
import dask.array as dsa  # noqa: E402


def test_dask_array_equals_ndarray(run):
    for src, key in [(CTRL, 'x'), (CTRL, 'state'), (INST, 'data.img'), (INST, 'multi.v')]:
        kd = run[src, key]
        arr = kd.dask_array()
        assert isinstance(arr, dsa.Array) and arr.shape == kd.shape
        np.testing.assert_array_equal(arr.compute(), kd.ndarray())
        np.testing.assert_array_equal(run.get_dask_array(src, key).compute(), kd.ndarray())


def test_dask_names_follow_the_plan(run):
    kd = run[INST, 'data.img']
    assert kd.dask_array().name == run[INST, 'data.img'].dask_array().name
    assert kd.select_trains(np.s_[1:]).dask_array().name != kd.dask_array().name
    assert run[INST, 'data.val'].dask_array().name != run[INST, 'data.trainId'].dask_array().name


def test_dask_chunks_bounded_by_chunk_size(run):
    kd = run[INST, 'data.img']          # 48 bytes per entry
    with dask.config.set({'array.chunk-size': '200B'}):
        arr = kd.dask_array()
    assert max(arr.chunks[0]) == 4 and sum(arr.chunks[0]) == kd.shape[0]
    assert arr.chunks[1:] == ((4,), (6,))
    np.testing.assert_array_equal(arr.compute(), kd.ndarray())
    # Small steps are put together: one chunk for the whole key by default.
    assert len(kd.dask_array().chunks[0]) == 1


def test_dask_labelled(run):
    kd = run[CTRL, 'x']
    da = run.get_dask_array(CTRL, 'x', labelled=True)
    assert isinstance(da.data, dsa.Array) and da.dims == ('trainId',)
    np.testing.assert_array_equal(da.coords['trainId'].values, kd.train_id_coordinates())
    assert da.attrs['units'] == 'μm'
    np.testing.assert_array_equal(da.values, kd.ndarray())


def test_dask_no_data_gives_zeros(run):
    kd = run[INST, 'data.img'].select_trains(np.s_[0:0])
    arr = kd.dask_array()
    assert arr.shape == (0, 4, 6) and arr.dtype == np.uint16
    assert arr.compute().shape == (0, 4, 6)
    assert run[CTRL, 'state'].select_trains(np.s_[0:0]).dask_array().compute().shape == (0,)


def test_dask_array_pickles_and_computes(run):
    kd = run[INST, 'data.img'].select_trains(np.s_[::3])
    with dask.config.set({'array.chunk-size': '500B'}):
        arr = kd.dask_array()
    blob = pickle.dumps(arr)
    assert len(blob) < 50_000          # records of the files only, no handles
    np.testing.assert_array_equal(pickle.loads(blob).compute(), kd.ndarray())


def test_dask_missing_gives_clear_import_error(run, monkeypatch):
    monkeypatch.setitem(sys.modules, 'dask', None)
    monkeypatch.setitem(sys.modules, 'dask.array', None)
    with pytest.raises(ImportError, match=r"xfeldata\[dask\]"):
        run[CTRL, 'x'].dask_array()


def test_partition_plan_pieces_concatenate(run):
    kd = run[INST, 'multi.v'].select_trains(np.s_[::2])
    plan = kd.plan()
    for max_bytes in (1, 7, 12, 40, 10**6):
        pieces = _outputs.partition_plan(plan, max_bytes)
        assert sum(p.shape[0] for p in pieces) == plan.shape[0]
        assert all(p.nbytes <= max(max_bytes, plan.entry_nbytes) for p in pieces)
        got = np.concatenate([_execute.execute(p) for p in pieces])
        np.testing.assert_array_equal(got, _execute.execute(plan))


# -- virtual datasets --------------------------------------------------------------------

def test_virtual_dataset(run, tmp_path):
    sel = run.select_trains(np.s_[::2])
    for src, key in [(INST, 'data.img'), (INST, 'multi.v'), (CTRL, 'x')]:
        kd = sel[src, key]
        fn = tmp_path / f"{key}.h5"
        ds = sel.get_virtual_dataset(src, key, filename=str(fn))
        try:
            assert ds.is_virtual and ds.file.mode == 'r' and ds.name == kd.hdf5_data_path
            np.testing.assert_array_equal(ds[()], kd.ndarray())
        finally:
            ds.file.close()


def test_virtual_dataset_default_temp_file(run):
    ds = run.get_virtual_dataset(CTRL, 'x')
    path = ds.file.filename
    try:
        assert path.endswith('-karabo-data-vds.h5')
        np.testing.assert_array_equal(ds[()], run[CTRL, 'x'].ndarray())
    finally:
        ds.file.close()
        os.remove(path)


def test_virtual_dataset_checks_source_and_key_first(run, tmp_path):
    fn = tmp_path / 'vds.h5'
    with pytest.raises(SourceNameError):
        run.get_virtual_dataset('NO/SUCH/SOURCE', 'x', filename=str(fn))
    with pytest.raises(PropertyNameError):
        run.get_virtual_dataset(CTRL, 'nosuchkey', filename=str(fn))
    assert not fn.exists()


# -- the xarray backend -------------------------------------------------------------------

def test_backend_is_registered():
    assert 'xfeldata' in xr.backends.list_engines()


def test_backend_control_source(run, run_dir):
    ds = xr.open_dataset(run_dir, engine='xfeldata', source=CTRL)
    assert set(ds.data_vars) == {'x', 'n', 'state'}
    assert ds.attrs['skipped_keys'] == ['vec.value'] and ds.attrs['source'] == CTRL
    assert ds['x'].attrs['units'] == 'μm'
    np.testing.assert_array_equal(ds['trainId'].values, run.train_ids)
    for name in ('x', 'n', 'state'):
        np.testing.assert_array_equal(ds[name].values, run[CTRL, name].ndarray())
    with_ts = xr.open_dataset(run_dir, engine='xfeldata', source=CTRL, timestamps=True,
                              drop_variables=['n', 'n.timestamp'])
    # vec.timestamp has one value per train, so it is there (vec itself is not).
    assert set(with_ts.data_vars) == {'x', 'state', 'x.timestamp', 'state.timestamp',
                                      'vec.timestamp'}
    assert set(xr.open_dataset(run_dir, engine='xfeldata', source=CTRL, keys='s*').data_vars
               ) == {'state'}


def test_backend_instrument_source_matches_dataframe(run, run_dir):
    ds = xr.open_dataset(run_dir, engine='xfeldata', source=INST)
    assert set(ds.data_vars) == {'data.val', 'data.trainId', 'aux.flag', 'aux.trainId'}
    assert set(ds.attrs['skipped_keys']) == {'data.img', 'data.hits', 'multi.v', 'multi.trainId'}
    df = run.get_dataframe(fields=[(INST, 'data.val'), (INST, 'aux.flag')])
    np.testing.assert_array_equal(ds['trainId'].values, df.index.values)
    for name in ('data.val', 'aux.flag'):
        assert ds[name].dtype == df[f'{INST}/{name}'].dtype == np.float64
        np.testing.assert_array_equal(ds[name].values, df[f'{INST}/{name}'].values)


def run_kd_coords(run_dir):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        return xfeldata.RunDirectory(run_dir)[INST, 'data.val'].train_id_coordinates()


def test_backend_is_lazy_and_reads_only_what_is_indexed(run_dir, monkeypatch):
    calls = []
    real = _execute.execute

    def counting(plan, *a, **kw):
        calls.append(plan.shape[0])
        return real(plan, *a, **kw)
    monkeypatch.setattr(_execute, 'execute', counting)
    ds = xr.open_dataset(run_dir, engine='xfeldata', source=INST)
    assert calls == []
    val = ds['data.val']
    gaps = np.isnan(val.values)
    assert gaps.any() and calls == [len(run_kd_coords(run_dir))]
    calls.clear()
    ds = xr.open_dataset(run_dir, engine='xfeldata', source=INST)
    part = ds['data.val'][5:15].values
    assert calls == [int((~gaps[5:15]).sum())]     # just those trains' entries
    np.testing.assert_array_equal(part, val.values[5:15])
    np.testing.assert_array_equal(ds['data.val'][::-3].values, val.values[::-3])
    assert ds['data.val'][int(np.flatnonzero(gaps)[0])].isnull()


def test_backend_other_inputs_and_errors(run, run_dir):
    f = sorted(p for p in os.listdir(run_dir) if 'DA02' in p)[0]
    one = xr.open_dataset(os.path.join(run_dir, f), engine='xfeldata')   # a single source
    assert set(one.data_vars) == {'p', 'code'}
    ds = xr.open_dataset(run, engine='xfeldata', source=GAUGE)
    assert ds.sizes['trainId'] == N - len(GAUGE_MISSING)
    with pytest.raises(ValueError, match='source'):
        xr.open_dataset(run_dir, engine='xfeldata')
    with pytest.raises(SourceNameError):
        xr.open_dataset(run_dir, engine='xfeldata', source='NO/SUCH/SOURCE')


def test_backend_with_dask_chunks(run_dir):
    ds = xr.open_dataset(run_dir, engine='xfeldata', source=CTRL, chunks={})
    assert isinstance(ds['x'].data, dsa.Array)
    ds2 = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(ds2['x'].values, ds['x'].compute().values)


# -- HTML reprs ----------------------------------------------------------------------------

def test_html_reprs(run):
    h = run._repr_html_()
    assert 'xfeldata.DataCollection' in h and f'{FIRST} – {FIRST + N - 1}' in h
    assert html.escape(INST) in h
    short = _outputs.collection_html(run, max_sources=1)
    assert '… and' in short and len(short) < len(h)
    k = run[CTRL, 'x']._repr_html_()
    assert 'xfeldata.KeyData' in k and 'x.value' in k and 'μm' in k
    plan = ReadPlan(np.dtype('f8'), (3,), (ReadStep('/r/<b>&.h5', '/x', 0, 3, 0, 3),))
    p = _outputs.plan_html(plan)
    assert '<b>' not in p and '&lt;b&gt;&amp;' in p and p.startswith('<pre>')


@pytest.mark.parametrize('module', ['xfeldata._outputs', 'xfeldata.xarray_backend'])
def test_docstring_examples(module):
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted and result.failed == 0
