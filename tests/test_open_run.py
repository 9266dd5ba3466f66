"""open_run: finding the proposal, which data folders, and the other ways in.

A proposal folder ``<root>/SPB/202401/p700000`` with ``raw/r0001`` (the demo
run: aggregators DA01 and DA02) and ``proc/r0001`` (DA02's sources only, as
CORR files), so that ``data=`` shows which folder a source comes from.
"""
import os
import warnings

import attrs
import pytest

import xfeldata
from xfeldata.exceptions import ProposalNotFoundError
from xfeldata.testing import demo_run_spec, write_run

XGM = 'SA1_XTD2_XGM/DOOCS/MAIN'
CAM = 'SPB_IRU_CAM/CAM/SIDEMIC'


@pytest.fixture
def root(tmp_path, monkeypatch):
    root = tmp_path / 'exp'
    prop = root / 'SPB' / '202401' / 'p700000'
    spec = demo_run_spec('1.2', n_trains=20, n_modules=0)
    write_run(prop / 'raw' / 'r0001', spec)
    proc = attrs.evolve(spec, category='CORR',
                        aggregators=tuple(a for a in spec.aggregators if a.name == 'DA02'))
    write_run(prop / 'proc' / 'r0001', proc)
    monkeypatch.setenv('XFELDATA_DATA_ROOT', str(root))
    monkeypatch.delenv('EXTRA_DATA_DATA_ROOT', raising=False)
    return root


def _folders(run, source):
    """The data folders (raw, proc) of the files ``source`` is read from."""
    return {os.path.basename(os.path.dirname(os.path.dirname(fa.filename)))
            for fa in run[source].files}


def test_data_raw_and_proc(root):
    raw = xfeldata.open_run(700000, 1, data='raw')
    proc = xfeldata.open_run(700000, 1, data='proc')
    assert _folders(raw, XGM) == _folders(raw, CAM) == {'raw'}
    assert XGM not in proc.all_sources and _folders(proc, CAM) == {'proc'}
    assert raw.is_single_run and proc.is_single_run


def test_data_default_is_proc_then_raw_raw_winning(root):
    run = xfeldata.open_run(700000, 1)
    assert _folders(run, CAM) == {'raw'} and _folders(run, XGM) == {'raw'}
    assert run.all_sources == xfeldata.open_run(700000, 1, data='raw').all_sources
    assert run.is_single_run


def test_data_all_is_raw_then_proc_proc_winning(root):
    run = xfeldata.open_run(700000, 1, data='all')
    assert _folders(run, CAM) == {'proc'} and _folders(run, XGM) == {'raw'}
    assert run.is_single_run


def test_a_missing_proc_folder(root):
    prop = root / 'SPB' / '202401' / 'p700000'
    (prop / 'proc' / 'r0001').rename(prop / 'proc' / 'r0009')
    with warnings.catch_warnings():
        warnings.simplefilter('error')   # default: proc may be absent, silently
        assert _folders(xfeldata.open_run(700000, 1), CAM) == {'raw'}
    with pytest.raises(FileNotFoundError):
        xfeldata.open_run(700000, 1, data='proc')
    with pytest.warns(UserWarning, match='No data available for this run at origin proc'):
        run = xfeldata.open_run(700000, 1, data='all')
    assert _folders(run, CAM) == {'raw'}


@pytest.mark.parametrize('proposal, run', [
    (700000, 1), ('700000', '1'), ('p700000', 'r0001'), ('p700000', 'r1'), (700000, '0001'),
])
def test_proposal_and_run_forms(root, proposal, run):
    dc = xfeldata.open_run(proposal, run, data='raw')
    assert {os.path.dirname(fa.filename) for fa in dc.files} == {
        str(root / 'SPB' / '202401' / 'p700000' / 'raw' / 'r0001')}


def test_data_root_from_extra_data_variable_and_proposal_paths(root, monkeypatch):
    monkeypatch.delenv('XFELDATA_DATA_ROOT')
    monkeypatch.setenv('EXTRA_DATA_DATA_ROOT', str(root))
    assert xfeldata.open_run(700000, 1, data='raw').all_sources
    monkeypatch.setenv('EXTRA_DATA_DATA_ROOT', str(root / 'nowhere'))
    with pytest.raises(ProposalNotFoundError, match="p700000"):
        xfeldata.open_run(700000, 1)
    prop = root / 'SPB' / '202401' / 'p700000'
    for given in (prop, str(prop)):   # a path is the proposal folder, no search
        assert xfeldata.open_run(given, 1, data='raw').all_sources


def test_include_file_filter_and_parallelize(root, monkeypatch):
    monkeypatch.setenv('XFELDATA_CACHE', 'off')
    whole = xfeldata.open_run(700000, 1, data='raw')
    only_da01 = xfeldata.open_run(700000, 1, data='raw', include='*DA01*')
    assert XGM in only_da01.all_sources and CAM not in only_da01.all_sources
    first = xfeldata.open_run(700000, 1, data='raw', file_filter=lambda files: sorted(files)[:1])
    assert [os.path.basename(fa.filename) for fa in first.files] == [
        sorted(os.path.basename(fa.filename) for fa in whole.files)[0]]
    serial = xfeldata.open_run(700000, 1, data='raw', parallelize=False)
    assert serial.train_ids == whole.train_ids and serial.all_sources == whole.all_sources
    assert [fa.filename for fa in serial.files] == [fa.filename for fa in whole.files]


def test_run_handler_and_from_paths(root):
    run_dir = root / 'SPB' / '202401' / 'p700000' / 'raw' / 'r0001'
    from xfeldata.reader import RunHandler   # the legacy name, in reader (API.md)
    assert RunHandler is xfeldata.RunDirectory
    run = RunHandler(run_dir)
    paths = sorted(str(p) for p in run_dir.glob('*.h5'))
    dc = xfeldata.DataCollection.from_paths(paths)
    assert dc.train_ids == run.train_ids and dc.all_sources == run.all_sources
    assert sorted(fa.filename for fa in dc.files) == paths
    one = xfeldata.DataCollection.from_path(paths[0])
    assert one.is_single_run and [fa.filename for fa in one.files] == [paths[0]]
    with one:
        assert one.train_ids


# -- union: conflicts among what the result reads ----------------------------------------

def test_union_raises_for_a_source_selected_in_both_parts(root, tmp_path):
    spec = demo_run_spec('1.2', n_trains=20, n_modules=0)
    a = xfeldata.RunDirectory(write_run(tmp_path / 'a', spec).directory)
    b = xfeldata.RunDirectory(write_run(tmp_path / 'b', spec).directory)
    with pytest.raises(ValueError, match='conflicting data') as e:
        a.select([CAM]).union(b.select([CAM, XGM]))
    assert {c[0] for c in e.value.conflicts} == {CAM}   # XGM is selected in b only
    # Each source from one part: no conflict, though both parts' files hold both.
    u = a.select([XGM]).union(b.select([CAM, CAM + ':daqOutput']))
    assert u.all_sources == {XGM, CAM, CAM + ':daqOutput'}
    assert {os.path.basename(os.path.dirname(fa.filename)) for fa in u[CAM].files} == {'b'}
    assert {os.path.basename(os.path.dirname(fa.filename)) for fa in u[XGM].files} == {'a'}
    assert (u[CAM + ':daqOutput', 'data.image.pixels'].ndarray()
            == b[CAM + ':daqOutput', 'data.image.pixels'].ndarray()).all()


# -- train_timestamps in every form ----------------------------------------------------

def test_train_timestamps_forms(tmp_path):
    import datetime

    import h5py
    import numpy as np
    import pandas as pd
    m = write_run(tmp_path / 'r0001', demo_run_spec('1.2', n_trains=6, n_modules=0))
    run = xfeldata.RunDirectory(m.directory, _use_voview=False)
    tids = np.asarray(run.train_ids, np.uint64)
    # Nanoseconds as the DAQ writes them; one train without a timestamp (0).
    want = np.datetime64('2024-07-01T06:30:00.123456789', 'ns').astype(np.uint64) \
        + np.arange(len(tids), dtype=np.uint64) * np.uint64(100_000_000)
    want[2] = 0
    for fa in run.files:
        with h5py.File(fa.filename, 'r+') as f:
            ft = f['INDEX/trainId'][()]
            f['INDEX/timestamp'][...] = [want[np.searchsorted(tids, t)] for t in ft]
    run = xfeldata.RunDirectory(m.directory, _use_voview=False)   # the files changed

    arr = run.train_timestamps()
    assert arr.dtype == np.dtype('datetime64[ns]') and np.isnat(arr[2])
    assert arr[[0, 1, 3]].astype(np.uint64).tolist() == want[[0, 1, 3]].tolist()

    ser = run.train_timestamps(labelled=True)
    assert list(ser.index) == list(tids) and ser.index.name == 'trainId'
    assert str(ser.dt.tz) == 'UTC' and pd.isna(ser.iloc[2])
    assert ser.iloc[0] == pd.Timestamp(int(want[0]), tz='UTC')
    local = run.train_timestamps(labelled=True, euxfel_local_time=True)
    assert str(local.dt.tz) == 'Europe/Berlin' and (local.dropna() == ser.dropna()).all()
    assert local.iloc[0].hour == 8   # 06:30 UTC is 08:30 in Berlin in July

    with warnings.catch_warnings():
        warnings.simplefilter('error')   # no warning per train about nanoseconds
        dts = run.train_timestamps(pydatetime=True)
        local_dts = run.train_timestamps(pydatetime=True, euxfel_local_time=True)
    assert dts[2] is None and local_dts[2] is None
    assert dts[0] == datetime.datetime(2024, 7, 1, 6, 30, 0, 123000, datetime.timezone.utc)
    assert dts[0].tzinfo == datetime.timezone.utc and local_dts[0] == dts[0]
    assert local_dts[0].utcoffset() == datetime.timedelta(hours=2)
    with pytest.raises(ValueError, match='euxfel_local_time'):
        run.train_timestamps(euxfel_local_time=True)


def test_detector_sources_leave_out_legacy_names(legacy_corr_run):
    run = legacy_corr_run(n_modules=2)
    corr = {f'SPB_DET_AGIPD1M-1/CORR/{i}CH0:output' for i in range(2)}
    legacy = {f'SPB_DET_AGIPD1M-1/DET/{i}CH0:xtdf' for i in range(2)}
    assert run.legacy_sources == {f'SPB_DET_AGIPD1M-1/DET/{i}CH0:xtdf':
                                  f'SPB_DET_AGIPD1M-1/CORR/{i}CH0:output' for i in range(2)}
    assert legacy <= run.instrument_sources and corr <= run.instrument_sources
    assert run.detector_sources == corr
    assert run.select([next(iter(sorted(corr)))]).detector_sources == {sorted(corr)[0]}


def test_legacy_names_warn_when_the_user_names_them(legacy_corr_run):
    import warnings as w

    run = legacy_corr_run()
    old, new = 'SPB_DET_AGIPD1M-1/DET/0CH0:xtdf', 'SPB_DET_AGIPD1M-1/CORR/0CH0:output'
    for seln in (old, [old], [(old, 'image.*')], {old: None}, (s for s in [old, new])):
        with pytest.warns(DeprecationWarning, match='legacy name') as rec:
            sel = run.select(seln)
        assert old in sel.all_sources and len(rec) == 1
        assert rec[0].filename == __file__   # pointing at the caller's line
    with w.catch_warnings():
        w.simplefilter('error', DeprecationWarning)
        run.select('*')
        run.select('*AGIPD*', 'image.*')
        run.select([new])
        run.select(run.select('*'))   # a data object: names the user did not write
    with pytest.warns(DeprecationWarning, match='legacy name') as rec:
        run[old]
    assert rec[0].filename == __file__
