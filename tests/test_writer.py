"""DataCollection.write / write_virtual (xfeldata.writer), checked with plain h5py.

The written files are compared with the synthetic run's manifest (the values
the test writer put in the source files) and inspected with h5py against
FORMAT.md section 8: dataset names, dtypes, INDEX, METADATA, RUN.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

import xfeldata
from xfeldata import writer
from xfeldata.testing import (Aggregator, ControlSource, InstrumentSource, Key, RunSpec,
                              make_demo_run, write_run)

XGM = 'SA1_XTD2_XGM/DOOCS/MAIN'
XGM_OUT = 'SA1_XTD2_XGM/DOOCS/MAIN:output'
CAM = 'SPB_IRU_CAM/CAM/SIDEMIC:daqOutput'
MOD0 = 'SPB_DET_AGIPD1M-1/DET/0CH0:xtdf'


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp('demo')
    m = make_demo_run(d / 'r0001', n_trains=40, n_modules=2)
    return m


def _digests(folder) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).glob('*.h5'))}


def _strs(arr) -> list:
    return [x.decode() if isinstance(x, bytes) else str(x) for x in arr]


# -- copying writer: content ----------------------------------------------------------------

def test_write_whole_run_matches_manifest(demo, tmp_path):
    run = xfeldata.RunDirectory(demo.directory, _use_voview=False)
    before = _digests(demo.directory)
    out = tmp_path / 'copy.h5'
    run.write(out, progress=False)
    assert _digests(demo.directory) == before      # inputs untouched
    with h5py.File(out, 'r') as f:
        np.testing.assert_array_equal(f['INDEX/trainId'][()], demo.train_ids)
        assert f['INDEX/trainId'].dtype == np.uint64
        for src, key in [(XGM, 'beamPosition.ixPos.value'), (XGM_OUT, 'data.intensityTD'),
                         (CAM, 'data.image.pixels'), (MOD0, 'image.data')]:
            section = 'CONTROL' if src == XGM else 'INSTRUMENT'
            ds = f[f"{section}/{src}/{key.replace('.', '/')}"]
            want = demo.expected(src, key[:-6] if key.endswith('.value') else key)
            np.testing.assert_array_equal(ds[()], want)
        # INDEX: contiguous first = cumsum - count, count as in the manifest
        cnt = f[f'INDEX/{CAM}/data/count'][()]
        np.testing.assert_array_equal(cnt, demo.counts_for(CAM, 'data'))
        np.testing.assert_array_equal(f[f'INDEX/{CAM}/data/first'][()],
                                      np.cumsum(cnt) - cnt)
        assert f[f'INDEX/{XGM}/count'].dtype == np.uint64
        assert f['INDEX/flag'].dtype == np.int32 and f['INDEX/flag'][()].all()
        assert f.attrs['writer'].startswith('xfeldata ')
        # METADATA: version forced to 1.0, sorted exact source lists (vlen ASCII)
        assert f['METADATA/dataFormatVersion'][0] == b'1.0'
        assert f['METADATA/runNumber'][0] == 1
        ids = _strs(f['METADATA/dataSources/dataSourceId'][()])
        assert ids == sorted(ids) and '' not in ids
        assert f'INSTRUMENT/{CAM}/data' in ids and f'CONTROL/{XGM}' in ids
        assert h5py.check_string_dtype(f['METADATA/dataSources/root'].dtype).encoding == 'ascii'
        # RUN copied from the first file holding each control source
        assert f[f'RUN/{XGM}/classId/value'][0] == b'DoocsXGM'


def test_written_file_reads_like_source(demo, tmp_path):
    run = xfeldata.RunDirectory(demo.directory, _use_voview=False)
    out = tmp_path / 'copy.h5'
    run.write(out, progress=False)
    back = xfeldata.H5File(out)
    assert back.all_sources == run.all_sources
    assert back.run_metadata()['proposalNumber'] == 700000
    np.testing.assert_array_equal(back.train_timestamps(), run.train_timestamps())
    assert back[XGM].run_value('classId') == 'DoocsXGM'
    assert back[XGM_OUT, 'data.intensityTD'].units == run[XGM_OUT, 'data.intensityTD'].units
    np.testing.assert_array_equal(back[XGM, 'state'].ndarray(), run[XGM, 'state'].ndarray())


def test_write_selection(demo, tmp_path):
    run = xfeldata.RunDirectory(demo.directory, _use_voview=False)
    sel = run.select([(CAM, '*'), (XGM, 'beamPosition.ixPos')]).select_trains(np.s_[3:30:4])
    tids = np.asarray(sel.train_ids, np.uint64)
    out = tmp_path / 'sel.h5'
    sel.write(out, progress=False)
    with h5py.File(out, 'r') as f:
        np.testing.assert_array_equal(f['INDEX/trainId'][()], tids)
        assert set(f['CONTROL']) == {'SA1_XTD2_XGM'}
        assert set(f[f'CONTROL/{XGM}']) == {'beamPosition'}
        pix = f[f'INSTRUMENT/{CAM}/data/image/pixels'][()]
        np.testing.assert_array_equal(pix, demo.expected(CAM, 'data.image.pixels', tids))
        np.testing.assert_array_equal(f[f'INDEX/{CAM}/data/count'][()],
                                      demo.counts_for(CAM, 'data', tids))
        ids = _strs(f['METADATA/dataSources/dataSourceId'][()])
        assert ids == [f'CONTROL/{XGM}', f'INSTRUMENT/{CAM}/data']


def test_chunking_compression_dtype_like_source(tmp_path):
    tids = np.arange(500, 530, dtype=np.uint64)
    src = InstrumentSource('X/Y/Z:out', {
        'd.gz': Key(np.uint16, (6,), chunks=(4, 6), compression='gzip', compression_opts=3,
                    shuffle=True),
        'd.plain': Key(np.float64, (2, 3)),
        'd.text': Key(str),
    }, groups={'d': np.arange(30) % 3})
    m = write_run(tmp_path / 'run', RunSpec(tids, [Aggregator('DA01', [src])]))
    run = xfeldata.RunDirectory(m.directory, _use_voview=False)
    out = tmp_path / 'out.h5'
    run.select_trains(np.s_[5:]).write(out, progress=False)
    with h5py.File(m.files[0].path, 'r') as fs, h5py.File(out, 'r') as fo:
        for k in ('gz', 'plain', 'text'):
            a, b = fs[f'INSTRUMENT/X/Y/Z:out/d/{k}'], fo[f'INSTRUMENT/X/Y/Z:out/d/{k}']
            assert b.dtype == a.dtype
            assert h5py.check_string_dtype(b.dtype) == h5py.check_string_dtype(a.dtype)
            assert b.chunks == a.chunks
            assert (b.compression, b.compression_opts, b.shuffle) == \
                (a.compression, a.compression_opts, a.shuffle)
            assert b.maxshape[0] is None
        n = int(m.counts_for('X/Y/Z:out', 'd')[:5].sum())
        out_gz = fo['INSTRUMENT/X/Y/Z:out/d/gz'][()]
        np.testing.assert_array_equal(out_gz,
                                      fs['INSTRUMENT/X/Y/Z:out/d/gz'][n:n + len(out_gz)])


def test_small_blocks_give_same_file_content(demo, tmp_path):
    run = xfeldata.RunDirectory(demo.directory, _use_voview=False).select(MOD0)
    writer.write_file(tmp_path / 'a.h5', run, progress=False)
    writer.write_file(tmp_path / 'b.h5', run, progress=False, block_bytes=5000)
    with h5py.File(tmp_path / 'a.h5', 'r') as fa, h5py.File(tmp_path / 'b.h5', 'r') as fb:
        for k in ('image/data', 'image/pulseId', 'image/cellId'):
            np.testing.assert_array_equal(fa[f'INSTRUMENT/{MOD0}/{k}'][()],
                                          fb[f'INSTRUMENT/{MOD0}/{k}'][()])


def test_suspect_trains_flag(tmp_path):
    tids = np.arange(100, 110, dtype=np.uint64)
    valid = np.ones(10, bool)
    valid[[2, 7]] = False
    src = ControlSource('A/B/C', {'x': np.float64})
    m = write_run(tmp_path / 'run', RunSpec(tids, [Aggregator('DA01', [src])], valid=valid))
    out = tmp_path / 'all.h5'
    xfeldata.RunDirectory(m.directory, _use_voview=False).write(out, progress=False)
    with h5py.File(out, 'r') as f:
        np.testing.assert_array_equal(f['INDEX/flag'][()], valid.astype(np.int32))
    out2 = tmp_path / 'valid.h5'
    xfeldata.RunDirectory(m.directory, inc_suspect_trains=False,
                          _use_voview=False).write(out2, progress=False)
    with h5py.File(out2, 'r') as f:
        np.testing.assert_array_equal(f['INDEX/trainId'][()], tids[valid])
        assert f['INDEX/flag'][()].all()


def test_format_05_layout(tmp_path):
    m = make_demo_run(tmp_path / 'run', format_version='0.5', n_trains=10, n_modules=1)
    out = tmp_path / 'out.h5'
    xfeldata.RunDirectory(m.directory, _use_voview=False).write(out, progress=False)
    with h5py.File(out, 'r') as f:
        assert 'dataFormatVersion' not in f['METADATA']
        assert 'dataSourceId' in f['METADATA'] and 'dataSources' not in f['METADATA']
        assert 'flag' not in f['INDEX']
    assert xfeldata.H5File(out).run_metadata() == {'dataFormatVersion': '0.5'}


def test_multi_run_data_writes_without_run_metadata(tmp_path):
    a = make_demo_run(tmp_path / 'a', n_trains=5, n_modules=0)
    b = make_demo_run(tmp_path / 'b', n_trains=5, n_modules=0, run=2, first_train=20000)
    both = xfeldata.RunDirectory(a.directory).select(XGM).union(
        xfeldata.RunDirectory(b.directory).select(XGM))
    assert not both.is_single_run
    out = tmp_path / 'both.h5'
    both.write(out, progress=False)
    back = xfeldata.H5File(out)
    assert back.run_metadata() == {'dataFormatVersion': '1.0'}
    assert len(back.train_ids) == 10
    np.testing.assert_array_equal(back[XGM, 'beamPosition.ixPos'].ndarray(),
                                  both[XGM, 'beamPosition.ixPos'].ndarray())


# -- virtual writer -------------------------------------------------------------------------

def test_write_virtual_layout(demo, tmp_path):
    run = xfeldata.RunDirectory(demo.directory, _use_voview=False)
    out = tmp_path / 'virtual.h5'
    run.write_virtual(out, progress=False)
    with h5py.File(out, 'r') as f:
        data = f[f'INSTRUMENT/{MOD0}/image/data']
        assert data.is_virtual
        files = {vs.file_name for vs in data.virtual_sources()}
        assert files == {str(Path(demo.directory) / n) for n in
                         ('RAW-R0001-AGIPD00-S00000.h5', 'RAW-R0001-AGIPD00-S00001.h5')}
        for k in ('pulseId', 'cellId'):
            ds = f[f'INSTRUMENT/{MOD0}/image/{k}']
            assert not ds.is_virtual and ds.compression == 'gzip' and ds.compression_opts == 4
        attr = _strs(f[f'INSTRUMENT/{MOD0}'].attrs['source_files'])
        assert all(os.path.isabs(p) for p in attr) and len(attr) == 2
        assert f[f'RUN/{XGM}/classId/value'][0] == b'DoocsXGM'
        np.testing.assert_array_equal(data[()], demo.expected(MOD0, 'image.data'))


def test_write_virtual_beside_sources_uses_relative_names(tmp_path):
    m = make_demo_run(tmp_path / 'run', n_trains=10, n_modules=1)
    run = xfeldata.RunDirectory(m.directory, _use_voview=False).select(XGM)
    out = Path(m.directory) / 'virtual.hdf'
    run.write_virtual(out, progress=False)
    moved = tmp_path / 'moved'
    os.rename(m.directory, moved)
    with h5py.File(moved / 'virtual.hdf', 'r') as f:
        ds = f[f'CONTROL/{XGM}/beamPosition/ixPos/value']
        assert {vs.file_name for vs in ds.virtual_sources()} == {
            'RAW-R0001-DA01-S00000.h5', 'RAW-R0001-DA01-S00001.h5'}
        np.testing.assert_array_equal(ds[()], m.expected(XGM, 'beamPosition.ixPos'))


def test_write_virtual_empty_key(tmp_path):
    tids = np.arange(10, 15, dtype=np.uint64)
    src = InstrumentSource('E/M/P:out', {'d.x': np.float32}, groups={'d': 0})
    m = write_run(tmp_path / 'run', RunSpec(tids, [Aggregator('DA01', [src])]))
    out = tmp_path / 'v.h5'
    xfeldata.RunDirectory(m.directory, _use_voview=False).write_virtual(out, progress=False)
    with h5py.File(out, 'r') as f:
        ds = f['INSTRUMENT/E/M/P:out/d/x']
        assert ds.is_virtual and ds.shape == (0,) and ds.virtual_sources() == []
    assert xfeldata.H5File(out)['E/M/P:out', 'd.x'].shape == (0,)


# -- bad input and failures -----------------------------------------------------------------

def test_refuses_to_overwrite_input(demo):
    run = xfeldata.RunDirectory(demo.directory, _use_voview=False)
    target = Path(demo.directory) / 'RAW-R0001-DA01-S00000.h5'
    before = _digests(demo.directory)
    with pytest.raises(ValueError, match='input file'):
        run.write(target, progress=False)
    with pytest.raises(ValueError, match='input file'):
        run.write_virtual(str(target), progress=False)
    with pytest.raises(ValueError, match='input file'):
        writer.FileWriter(target, run)
    assert _digests(demo.directory) == before
    assert not [n for n in os.listdir(demo.directory) if 'xfeldata-tmp' in n]


def test_missing_folder(demo, tmp_path):
    run = xfeldata.RunDirectory(demo.directory, _use_voview=False)
    with pytest.raises(FileNotFoundError, match='does not exist'):
        run.write(tmp_path / 'nope' / 'x.h5', progress=False)


def test_read_only_folder(demo, tmp_path, monkeypatch):
    run = xfeldata.RunDirectory(demo.directory, _use_voview=False).select(XGM)
    ro = tmp_path / 'ro'
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:   # root writes anyway: simulate the refusal of the OS
        real_open = os.open

        def deny(path, *a, **kw):
            if os.fspath(path).startswith(str(ro)):
                raise PermissionError(13, 'Permission denied', os.fspath(path))
            return real_open(path, *a, **kw)
        monkeypatch.setattr(os, 'access', lambda p, m: not os.fspath(p).startswith(str(ro)))
        monkeypatch.setattr(os, 'open', deny)
    try:
        with pytest.raises(PermissionError, match='not writable'):
            run.write(ro / 'x.h5', progress=False)
        # also when the check passes but creating the file fails
        monkeypatch.setattr('xfeldata._write_util.check_target', lambda p, i=(): str(p),
                            raising=True)
        monkeypatch.setattr(os, 'access', lambda p, m: True)
        if os.geteuid() == 0:
            monkeypatch.setattr(os, 'open', deny)
        with pytest.raises(PermissionError):
            run.write_virtual(ro / 'y.h5', progress=False)
    finally:
        monkeypatch.undo()
        ro.chmod(0o755)
    assert os.listdir(ro) == []


def test_failure_midway_leaves_no_file(demo, tmp_path, monkeypatch):
    run = xfeldata.RunDirectory(demo.directory, _use_voview=False)
    target = tmp_path / 'out.h5'
    target.write_bytes(b'previous content')
    calls = []
    # Large keys go through copy_plan_rows, small ones through batches: fail the 5th copy.
    from xfeldata import _write_fast

    def failing(real):
        def copy(*a, **kw):
            calls.append(1)
            if len(calls) == 5:
                raise OSError(28, 'No space left on device')
            return real(*a, **kw)
        return copy
    monkeypatch.setattr(writer, 'copy_plan_rows', failing(writer.copy_plan_rows))
    monkeypatch.setattr(_write_fast, 'copy_small_keys', failing(_write_fast.copy_small_keys))
    with pytest.raises(OSError, match='No space left'):
        run.write(target, progress=False)
    assert len(calls) == 5
    assert target.read_bytes() == b'previous content'
    assert os.listdir(tmp_path) == ['out.h5']


def test_read_error_midway_leaves_no_file(demo, tmp_path, monkeypatch):
    """A failing read after some blocks were written: no file, no temporary left."""
    import xfeldata._execute as ex
    run = xfeldata.RunDirectory(demo.directory, _use_voview=False).select(MOD0)
    real, calls = ex.execute, []

    def failing(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(5, 'Input/output error')
        return real(*a, **kw)
    monkeypatch.setattr(ex, 'execute', failing)
    with pytest.raises(OSError, match='Input/output error'):
        writer.write_file(tmp_path / 'out.h5', run, progress=False, block_bytes=100_000)
    assert len(calls) == 3
    assert os.listdir(tmp_path) == []


def test_overwrites_existing_output_atomically(demo, tmp_path):
    run = xfeldata.RunDirectory(demo.directory, _use_voview=False).select(XGM)
    target = tmp_path / 'out.h5'
    target.write_bytes(b'old')
    run.write(target, progress=False)
    assert h5py.is_hdf5(target)
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert os.listdir(tmp_path) == ['out.h5']


def _umask():
    old = os.umask(0)
    os.umask(old)
    return old


# -- progress -------------------------------------------------------------------------------

def test_progress_on_request_only(demo, tmp_path, capsys):
    run = xfeldata.RunDirectory(demo.directory, _use_voview=False).select(MOD0)
    run.write(tmp_path / 'a.h5')                  # stderr is not a terminal here
    assert capsys.readouterr().err == ''
    run.write(tmp_path / 'b.h5', progress=True)
    err = capsys.readouterr().err
    assert err.startswith('\rWriting') and '100%' in err and err.endswith('\n')
    run.write(tmp_path / 'c.h5', progress=False)
    assert capsys.readouterr().err == ''


# -- public hooks ---------------------------------------------------------------------------

def test_filewriter_hooks_in_place(demo, tmp_path):
    run = xfeldata.RunDirectory(demo.directory, _use_voview=False).select(XGM)
    with writer.FileWriter(tmp_path / 'h.h5', run) as w:
        for hook in ('prepare_source', 'copy_dataset', 'copy_source', 'write_train_ids',
                     'write_indexes', 'write_metadata', 'write_sources', 'gather_flag',
                     'set_writer'):
            assert callable(getattr(w, hook))
        w.write()
    assert xfeldata.H5File(tmp_path / 'h.h5')[XGM, 'beamPosition.ixPos'].shape == (40,)
    with writer.VirtualFileWriter(tmp_path / 'v.h5', run) as w:
        w.set_writer()
        w.write_train_ids()
        w._source_jobs()
        w.prepare_source(XGM)
        assert w.add_dataset(XGM, 'beamPosition.ixPos.value') == \
            f'CONTROL/{XGM}/beamPosition/ixPos/value'


# -- corpus ---------------------------------------------------------------------------------

CORPUS = Path(os.environ.get('XFELDATA_CORPUS',
                             Path(__file__).resolve().parents[1] / '..' / 'shared' / 'corpus'))


@pytest.mark.skipif(not (CORPUS / 'spb_voview_v1.2').is_dir(), reason='corpus absent')
def test_write_from_overview_file_input(tmp_path):
    """Input datasets are virtual (the corpus overview file): copied as real data."""
    run = xfeldata.RunDirectory(CORPUS / 'spb_voview_v1.2')
    assert [Path(f.filename).name for f in run.files] == ['overview.h5']
    det = 'SPB_DET_AGIPD1M-1/DET/3CH0:xtdf'
    sel = run.select([(det, 'image.length'), (det, 'image.cellId'), (det, 'header.*'),
                      ('SA1_XTD2_XGM/DOOCS/MAIN', '*')]).select_trains(np.s_[10:20])
    out = tmp_path / 'o.h5'
    sel.write(out, progress=False)
    back = xfeldata.H5File(out)
    for src, key in [(det, 'image.length'), (det, 'image.cellId'), (det, 'header.pulseCount'),
                     ('SA1_XTD2_XGM/DOOCS/MAIN', 'beamPosition.ixPos.value')]:
        np.testing.assert_array_equal(back[src, key].ndarray(), sel[src, key].ndarray())
    with h5py.File(out, 'r') as f:
        assert not f[f'INSTRUMENT/{det}/image/length'].is_virtual


CORPUS_CASES = [('fxe_control_v0.5', (False,)), ('remi_run', (False, True)),
                ('lpd_mini_missed_train', (False, True)),
                ('suspect_flag0_v1.0', (False,)), ('fxe_jungfrau', (False, True)),
                ('modern_spb_proc_v1.2', (True,))]


@pytest.mark.parametrize('case, modes', CORPUS_CASES)
def test_corpus_round_trip(case, modes, tmp_path):
    """Corpus runs as inputs: written and virtual files read back the same (every key by
    shape, dtype and counts; the first keys of each source, up to 4 MB, by value)."""
    d = CORPUS / case
    if not d.is_dir():
        pytest.skip('corpus absent')
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        run = xfeldata.RunDirectory(d, _use_voview=False)
        for virtual in modes:
            out = tmp_path / f'out-{virtual}.h5'
            writer.write_file(out, run, virtual=virtual, progress=False)
            # sparse inputs (chunks never written) stay sparse: no GBs of fill values
            # (the logical size of these runs is up to 40 GB; the files are < 25 MB)
            assert out.stat().st_size < 64e6
            _compare_corpus(case, run, xfeldata.H5File(out))


def _compare_corpus(case, run, back):
    assert back.all_sources == run.all_sources
    np.testing.assert_array_equal(back.train_ids, run.train_ids)
    for src in sorted(run.all_sources):
        keys = set()
        for key in run[src].keys():
            try:
                run[src, key]
                keys.add(key)
            except KeyError:    # listed but unaddressable (a dot in a group name)
                pass
        assert back[src].keys() == keys, src
        for key in sorted(keys):
            a, b = run[src, key], back[src, key]
            assert a.shape == b.shape and a.dtype == b.dtype, (src, key)
            np.testing.assert_array_equal(a.data_counts(labelled=False),
                                          b.data_counts(labelled=False))
            if a.nbytes <= 4e6 and key in sorted(keys)[:3]:
                np.testing.assert_array_equal(b.ndarray(), a.ndarray(),
                                              err_msg=f'{case} {src} {key}')


def test_written_files_pass_validation(demo, tmp_path, capsys):
    validation = pytest.importorskip('xfeldata.validation')
    run = xfeldata.RunDirectory(demo.directory, _use_voview=False)
    run.select_trains(np.s_[2:30:3]).write(tmp_path / 'w.h5', progress=False)
    run.write_virtual(tmp_path / 'v.h5', progress=False)
    for name in ('w.h5', 'v.h5'):
        assert validation.main([str(tmp_path / name)]) == 0, capsys.readouterr().out


def test_raw_chunk_copy_paths(tmp_path, monkeypatch):
    """Stored-chunk copying of compressed keys: one-row chunks, multi-row chunks (not
    aligned: block copy), chunks splitting the entry; uncompressed keys in blocks.
    Compared with the manifest's values."""
    monkeypatch.setattr(writer, 'RAW_COPY_MIN_BYTES', 0)
    tids = np.arange(1000, 1012, dtype=np.uint64)
    counts = np.array([2, 0, 3, 1, 1, 0, 2, 2, 1, 3, 0, 1])
    src = InstrumentSource('R/A/W:out', {
        'a.one': Key(np.uint16, (4, 6), chunks=(1, 4, 6), compression='gzip'),
        'a.four': Key(np.float32, (5,), chunks=(4, 5), compression='gzip'),
        'a.plain': Key(np.uint16, (4, 6), chunks=(1, 4, 6)),
        'a.tiles': Key(np.int32, (6, 8), chunks=(1, 3, 4), compression='gzip',
                       compression_opts=1),
    }, groups={'a': counts})
    m = write_run(tmp_path / 'run', RunSpec(tids, [Aggregator('DA01', [src],
                                                              sequence_starts=(5,))]))
    run = xfeldata.RunDirectory(m.directory, _use_voview=False)
    calls = []
    real = writer._copy_chunks_raw

    def spy(plan, dest, progress=None):
        done = real(plan, dest, progress)
        calls.append((plan.label, done))
        return done
    monkeypatch.setattr(writer, '_copy_chunks_raw', spy)
    for i, sel in enumerate([run, run.select_trains(np.s_[2:10]),
                             run.select_trains(xfeldata.by_id[[1000, 1003, 1006, 1011]])]):
        out = tmp_path / f'o{i}.h5'
        sel.write(out, progress=False)
        tsel = np.asarray(sel.train_ids, np.uint64)
        with h5py.File(out, 'r') as f:
            for k in ('one', 'four', 'tiles', 'plain'):
                np.testing.assert_array_equal(
                    f[f'INSTRUMENT/R/A/W:out/a/{k}'][()], m.expected('R/A/W:out', f'a.{k}', tsel))
    by_key = {}
    for label, done in calls:
        by_key.setdefault(label.split()[-1], []).append(done)
    assert all(by_key['a.one']) and all(by_key['a.tiles'])   # one row per chunk: always
    assert not all(by_key['a.four'])   # 4-row chunks: the selections are not aligned
    assert not any(by_key['a.plain'])  # uncompressed: blocks are faster
    with h5py.File(tmp_path / 'o0.h5', 'r') as f:
        ds = f['INSTRUMENT/R/A/W:out/a/tiles']
        assert ds.chunks == (1, 3, 4) and ds.compression == 'gzip'


# -- fast paths (xfeldata._write_fast) ------------------------------------------------------

def _two_file_run(tmp_path):
    tids = np.arange(100, 112, dtype=np.uint64)
    ctrl = ControlSource('A/B/C', {'x': 'f8', 'v': (np.int32, (3,))})
    inst = InstrumentSource('A/B/C:out', {
        'd.frames': Key(np.int16, (64, 32), chunks=(1, 64, 32)),    # 4 KiB chunks
        'd.small': Key(np.uint32, (2,)),
    }, groups={'d': np.array([2, 1, 0, 3, 2, 2, 1, 0, 2, 3, 1, 2])})
    return write_run(tmp_path / 'run', RunSpec(tids, [Aggregator('DA01', [ctrl, inst],
                                                                 sequence_starts=(6,))]))


def test_small_key_errors_name_the_file(tmp_path):
    """Batched small keys fail as the plan executor does: a key missing from a later
    file is a KeyError naming it; a dataset shorter than its INDEX is a TypeError."""
    m = _two_file_run(tmp_path)
    second = m.files[1].path
    with h5py.File(second, 'r+') as f:
        del f['CONTROL/A/B/C/x/value']
        v = f['CONTROL/A/B/C/v/value'][:2]
        del f['CONTROL/A/B/C/v/value']
        f['CONTROL/A/B/C/v/value'] = v
    run = xfeldata.RunDirectory(m.directory, _use_voview=False)
    with pytest.raises(KeyError, match=os.path.basename(second)):
        run.select('A/B/C', 'x').write(tmp_path / 'x.h5', progress=False)
    with pytest.raises(TypeError, match='INDEX points past the end'):
        run.select('A/B/C', 'v').write(tmp_path / 'v.h5', progress=False)
    for name in ('x', 'v'):      # the executor agrees
        with pytest.raises((KeyError, TypeError)):
            run['A/B/C', f'{name}.value'].ndarray()
    assert sorted(os.listdir(tmp_path)) == ['run']


def test_sparse_source_stays_sparse_on_both_stored_chunk_paths(tmp_path, monkeypatch):
    """Chunks a source never wrote are not written (positional reads and HDF5's chunk
    reads alike); the others are copied, values as the source reads."""
    from xfeldata import _write_fast
    m = _two_file_run(tmp_path)
    name = 'INSTRUMENT/A/B/C:out/d/frames'
    for fm in m.files:      # rewrite the key keeping only every other stored chunk
        with h5py.File(fm.path, 'r+') as f:
            old = f[name]
            data, dcpl = old[()], old.id.get_create_plist()
            tid = old.id.get_type()
            del f[name]
            space = h5py.h5s.create_simple(data.shape, (h5py.h5s.UNLIMITED,) + data.shape[1:])
            new = h5py.Dataset(h5py.h5d.create(f.id, name.encode(), tid, space, dcpl=dcpl))
            for r in range(0, len(data), 2):
                new[r] = data[r]
    run = xfeldata.RunDirectory(m.directory, _use_voview=False).select_trains(np.s_[1:])
    want = run['A/B/C:out', 'd.frames'].ndarray()
    plan = run['A/B/C:out', 'd.frames'].plan()
    stored = 0
    for s in plan.steps:
        with h5py.File(s.path, 'r') as f:
            stored += sum(1 for r in range(s.src_start, s.src_stop)
                          if f[name].id.get_chunk_info_by_coord((r, 0, 0)).byte_offset
                          is not None)
    assert 0 < stored < len(want)
    monkeypatch.setattr(writer, 'RAW_COPY_MIN_BYTES', 0)
    for label, pread in (('pread', _write_fast._pread_base), ('hdf5', lambda p: None)):
        monkeypatch.setattr(_write_fast, '_pread_base', pread)
        out = tmp_path / f'{label}.h5'
        run.write(out, progress=False)
        with h5py.File(out, 'r') as f:
            np.testing.assert_array_equal(f[name][()], want)
            assert f[name].id.get_num_chunks() == stored, label


def test_input_files_opened_by_write_are_closed(tmp_path, monkeypatch):
    """Files the write opens are closed again (at most MAX_OPEN_INPUTS at a time);
    files that were open before stay open."""
    from xfeldata import _write_fast
    from xfeldata.file_access import FileAccess
    m = make_demo_run(tmp_path / 'r0001', n_trains=12, n_modules=2)
    run = xfeldata.RunDirectory(m.directory, _use_voview=False)
    paths = sorted(fi.path for fi in run._index.files)
    keep = paths[0]
    assert FileAccess(keep).file               # open before the write
    peak, real_touch = [0], _write_fast.InputFiles.touch

    def touch(self, path):
        real_touch(self, path)
        opened = [p for p in paths if p not in self.before
                  and FileAccess._registry.get(p) is not None and FileAccess(p).valid]
        peak[0] = max(peak[0], len(opened))
    monkeypatch.setattr(_write_fast, 'MAX_OPEN_INPUTS', 2)
    monkeypatch.setattr(_write_fast.InputFiles, 'touch', touch)
    run.write(tmp_path / 'out.h5', progress=False)
    assert 0 < peak[0] <= 2     # the cap
    assert [p for p in paths if FileAccess(p).valid] == [keep]
    back = xfeldata.H5File(tmp_path / 'out.h5')
    np.testing.assert_array_equal(back[XGM_OUT, 'data.intensityTD'].ndarray(),
                                  run[XGM_OUT, 'data.intensityTD'].ndarray())


def test_atomic_output_lets_the_body_create_the_file(tmp_path):
    """The temporary name is reserved and removed: h5py creates the file new (ext4
    flushes a truncated file's data on close, which costs ~0.3 s per GB)."""
    from xfeldata._write_util import atomic_output
    target = tmp_path / 'x.h5'
    with atomic_output(target) as tmp:
        assert not os.path.exists(tmp) and os.path.dirname(tmp) == str(tmp_path)
        with h5py.File(tmp, 'x') as f:      # 'x': fails if the file exists
            f['a'] = 1
    with h5py.File(target, 'r') as f:
        assert f['a'][()] == 1
    assert os.listdir(tmp_path) == ['x.h5']


def test_file_with_user_block_is_copied_through_hdf5(tmp_path, monkeypatch):
    """Chunk addresses are relative to a user block: such files are not read with
    positional reads (they go through HDF5's chunk reads), and copy correctly."""
    from xfeldata import _write_fast
    m = _two_file_run(tmp_path)
    path = m.files[0].path
    moved = path + '.old'
    os.rename(path, moved)
    with h5py.File(moved, 'r') as src, h5py.File(path, 'w', userblock_size=512) as dst:
        for name in src:
            src.copy(src[name], dst, name=name)
        for k, v in src.attrs.items():
            dst.attrs[k] = v
    os.unlink(moved)
    run = xfeldata.RunDirectory(m.directory, _use_voview=False)
    assert _write_fast._pread_base(path) is None
    assert _write_fast._pread_base(m.files[1].path) == 0
    monkeypatch.setattr(writer, 'RAW_COPY_MIN_BYTES', 0)
    run.write(tmp_path / 'out.h5', progress=False)
    with h5py.File(tmp_path / 'out.h5', 'r') as f:
        np.testing.assert_array_equal(f['INSTRUMENT/A/B/C:out/d/frames'][()],
                                      run['A/B/C:out', 'd.frames'].ndarray())
        np.testing.assert_array_equal(
            f['INSTRUMENT/A/B/C:out/d/frames'][()],
            m.expected('A/B/C:out', 'd.frames', np.asarray(run.train_ids, np.uint64)))


def test_writing_and_iterating_legacy_names_do_not_warn(tmp_path, legacy_corr_run):
    """Legacy names selected with the rest are written as links and read without the
    DeprecationWarning meant for a user's own access by such a name."""
    import warnings

    run = legacy_corr_run()
    old, new = 'SPB_DET_AGIPD1M-1/DET/0CH0:xtdf', 'SPB_DET_AGIPD1M-1/CORR/0CH0:output'
    assert run.legacy_sources == {old: new}
    with warnings.catch_warnings():
        warnings.simplefilter('error', DeprecationWarning)
        run.write(tmp_path / 'out.h5', progress=False)
        sel = run.select('*AGIPD*', 'image.*')   # keys selected under both names
        sel.write(tmp_path / 'sel.h5', progress=False)
        n = sum(1 for _ in run.trains())
    assert n == 4
    assert xfeldata.H5File(tmp_path / 'sel.h5')[new].keys() == sel[new].keys()
    back = xfeldata.H5File(tmp_path / 'out.h5')
    assert back.legacy_sources == {old: new}
    np.testing.assert_array_equal(back[new, 'image.data'].ndarray(),
                                  run[new, 'image.data'].ndarray())
    with pytest.warns(DeprecationWarning, match='legacy name'):
        run[old]   # a user's own access still warns
