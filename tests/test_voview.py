"""Virtual overview files: writing, checking, use by RunDirectory/open_run (FORMAT.md 4)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import xfeldata
from xfeldata import voview
from xfeldata.cli import main as cli_main
from xfeldata.testing import make_demo_run

XGM = 'SA1_XTD2_XGM/DOOCS/MAIN'
MOD0 = 'SPB_DET_AGIPD1M-1/DET/0CH0:xtdf'
CORPUS = Path(os.environ.get('XFELDATA_CORPUS',
                             Path(__file__).resolve().parents[1] / '..' / 'shared' / 'corpus'))


def _same(a, b):
    """Same sources, keys, trains, counts and arrays."""
    assert a.all_sources == b.all_sources
    np.testing.assert_array_equal(a.train_ids, b.train_ids)
    for src in sorted(a.all_sources):
        assert a[src].keys() == b[src].keys()
        for k in sorted(a[src].keys()):
            ka, kb = a[src, k], b[src, k]
            np.testing.assert_array_equal(ka.data_counts(labelled=False),
                                          kb.data_counts(labelled=False))
            x, y = ka.ndarray(), kb.ndarray()
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y, err_msg=f'{src} {k}')


@pytest.fixture
def run_dir(tmp_path):
    m = make_demo_run(tmp_path / 'r0001', n_trains=20, n_modules=1)
    return Path(m.directory)


def test_write_and_use(run_dir):
    path = voview.write_for_run(run_dir, progress=False)
    assert path == str(run_dir / 'overview.h5')
    via = xfeldata.RunDirectory(run_dir)
    assert [f.filename for f in via.files] == [path]
    assert via.files[0].is_voview
    plain = xfeldata.RunDirectory(run_dir, _use_voview=False)
    _same(plain, via)
    assert via.run_metadata()['runNumber'] == 1
    np.testing.assert_array_equal(via.train_timestamps(), plain.train_timestamps())
    assert via[XGM].run_value('classId') == 'DoocsXGM'
    # the real files behind a key, from the virtual mappings
    assert [p.name for p in via[MOD0, 'image.data'].source_file_paths] == [
        'RAW-R0001-AGIPD00-S00000.h5', 'RAW-R0001-AGIPD00-S00001.h5']
    with h5py.File(path, 'r') as f:
        assert f.attrs['virtual_overview_version'] == 1
        names = sorted(n.decode() for n in f['.source_files/names'][()])
        assert names == sorted(p.name for p in run_dir.glob('RAW-*.h5'))
        sizes = dict(zip([n.decode() for n in f['.source_files/names'][()]],
                         f['.source_files/sizes'][()]))
        assert all(sizes[n] == (run_dir / n).stat().st_size for n in names)
        assert f['.source_files/sizes'].dtype == np.uint64


def test_open_run_uses_overview(tmp_path, monkeypatch):
    prop = tmp_path / 'SPB' / '202401' / 'p700000'
    m = make_demo_run(prop / 'raw' / 'r0001', n_trains=10, n_modules=1)
    monkeypatch.setenv('XFELDATA_DATA_ROOT', str(tmp_path))
    assert cli_main(['voview', '-q', m.directory]) == 0
    run = xfeldata.open_run(700000, 1, data='raw')
    assert [Path(f.filename).name for f in run.files] == ['overview.h5']
    plain = xfeldata.RunDirectory(m.directory, _use_voview=False)
    _same(plain, run)
    # a narrowed file list never uses the overview
    part = xfeldata.open_run(700000, 1, data='raw', include='*DA01*')
    assert all('DA01' in f.filename for f in part.files)


def test_changed_run_invalidates(run_dir, capsys):
    path = voview.write_for_run(run_dir, progress=False)
    assert cli_main(['voview', '--check', str(run_dir)]) == 0
    assert 'is valid' in capsys.readouterr().out
    assert voview.check_file(path, run_dir) == []
    # a file grows: the overview no longer describes the run
    victim = run_dir / 'RAW-R0001-DA02-S00000.h5'
    with open(victim, 'ab') as f:   # trailing bytes: HDF5 still opens it
        f.write(b'\0' * 1000)
    problems = voview.check_file(path, run_dir)
    assert len(problems) == 1 and 'size of RAW-R0001-DA02-S00000.h5 changed' in problems[0]
    assert cli_main(['voview', '--check', str(run_dir)]) == 1
    assert 'cannot be used' in capsys.readouterr().out
    assert voview.find_file_valid(str(run_dir)) is None
    run = xfeldata.RunDirectory(run_dir)
    assert len(run.files) == 6      # the real files
    # a new file
    shutil.copy(victim, run_dir / 'RAW-R0001-DA03-S00000.h5')
    assert any('new file' in p for p in voview.check_file(path, run_dir))
    os.unlink(run_dir / 'RAW-R0001-DA03-S00000.h5')
    # rewriting brings it back
    voview.write_for_run(run_dir, progress=False)
    assert voview.check_file(path, run_dir) == []
    assert voview.find_file_valid(str(run_dir)) is not None


def test_files_behind_overview_are_inputs(run_dir):
    voview.write_for_run(run_dir, progress=False)
    via = xfeldata.RunDirectory(run_dir)
    target = run_dir / 'RAW-R0001-DA01-S00000.h5'
    before = target.read_bytes()
    with pytest.raises(ValueError, match='input file'):
        via.select(XGM).write(target, progress=False)
    assert target.read_bytes() == before


def test_newer_version_not_used(run_dir):
    path = voview.write_for_run(run_dir, progress=False)
    with h5py.File(path, 'a') as f:
        f.attrs['virtual_overview_version'] = 2
    assert voview.find_file_valid(str(run_dir)) is None
    assert 'newer' in voview.check_file(path, run_dir)[0]


def test_check_without_file(run_dir, tmp_path, capsys):
    assert cli_main(['voview', '--check', str(run_dir)]) == 1
    assert 'No overview file' in capsys.readouterr().out
    bogus = tmp_path / 'bogus.h5'
    bogus.write_bytes(b'not hdf5')
    assert cli_main(['voview', '--check', str(run_dir), '--overview-file', str(bogus)]) == 1
    assert 'cannot open' in capsys.readouterr().out
    assert cli_main(['voview', str(tmp_path / 'missing')]) == 2


def test_custom_overview_file(run_dir, tmp_path, capsys):
    out = tmp_path / 'elsewhere' / 'ov.h5'
    out.parent.mkdir()
    assert cli_main(['voview', '-q', str(run_dir), '--overview-file', str(out)]) == 0
    assert 'Wrote overview file' in capsys.readouterr().out
    assert cli_main(['voview', '--check', str(run_dir), '--overview-file', str(out)]) == 0
    with h5py.File(out, 'r') as f:   # not beside the sources: absolute file names
        ds = f[f'CONTROL/{XGM}/beamPosition/ixPos/value']
        assert all(os.path.isabs(vs.file_name) for vs in ds.virtual_sources())
    via = xfeldata.H5File(out)
    _same(xfeldata.RunDirectory(run_dir, _use_voview=False), via)


def test_failure_keeps_previous_overview(run_dir, monkeypatch):
    path = Path(voview.write_for_run(run_dir, progress=False))
    before = path.read_bytes()
    from xfeldata import writer

    def boom(*a, **kw):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(writer, '_create_virtual', boom)
    with pytest.raises(OSError, match='No space'):
        voview.write_for_run(run_dir, progress=False)
    assert path.read_bytes() == before
    assert not [n for n in os.listdir(run_dir) if 'xfeldata-tmp' in n]
    assert voview.find_file_valid(str(run_dir)) is not None


def test_find_file_write_falls_back_to_usr(tmp_path, monkeypatch):
    root = tmp_path / 'exp'
    usr = root / 'SPB' / '202401' / 'p700000' / 'usr'
    usr.mkdir(parents=True)
    run = tmp_path / 'd' / 'raw' / 'SPB' / '202401' / 'p700000' / 'r0001'
    make_demo_run(run, n_trains=5, n_modules=0)
    monkeypatch.setenv('XFELDATA_DATA_ROOT', str(root))
    assert voview.voview_paths_for_run(str(run))[1] == str(
        usr / '.extra_data' / 'RAW-R0001-OVERVIEW.h5')
    real_open = os.open

    def deny_run_dir(p, *a, **kw):
        if os.path.dirname(os.fspath(p)) == str(run):
            raise PermissionError(13, 'Permission denied', os.fspath(p))
        return real_open(p, *a, **kw)
    monkeypatch.setattr(os, 'open', deny_run_dir)
    target = voview.find_file_write(str(run))
    assert target == str(usr / '.extra_data' / 'RAW-R0001-OVERVIEW.h5')
    voview.write_for_run(run, progress=False)
    monkeypatch.setattr(os, 'open', real_open)
    assert not (run / 'overview.h5').exists()
    vo = voview.find_file_valid(str(run))
    assert vo is not None and vo.filename == target
    _same(xfeldata.RunDirectory(run, _use_voview=False), xfeldata.RunDirectory(run))
    # Opening finds it, also through a link whose own path has no raw/ part.
    link = tmp_path / 'my-run'
    link.symlink_to(run)
    for path in (run, link):
        assert [fi.path for fi in xfeldata.RunDirectory(path)._index.files] == [target]
    # nothing writable at all
    monkeypatch.setattr(os, 'open', lambda *a, **kw: (_ for _ in ()).throw(
        PermissionError(13, 'Permission denied')))
    with pytest.raises(PermissionError, match='No writable location'):
        voview.find_file_write(str(run))


# -- the reference layout -------------------------------------------------------------------

def _layout(f: h5py.File) -> dict:
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            s = h5py.check_string_dtype(obj.dtype)
            out[name] = ('dataset', obj.shape, obj.maxshape,
                         obj.dtype.str if s is None else ('str', s.encoding),
                         obj.is_virtual, obj.compression, obj.compression_opts)
        else:
            out[name] = ('group', tuple(sorted(obj.attrs)))
    f.visititems(visit)
    return out


def _mappings(ds) -> list:
    return sorted((vs.vspace.get_select_bounds(), os.path.basename(vs.file_name),
                   vs.dset_name, vs.src_space.get_select_bounds())
                  for vs in ds.virtual_sources())


@pytest.mark.skipif(not (CORPUS / 'spb_voview_v1.2').is_dir(), reason='corpus absent')
def test_layout_matches_reference_overview(tmp_path):
    case = CORPUS / 'spb_voview_v1.2'
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    for p in case.glob('RAW-*.h5'):
        shutil.copy(p, run_dir / p.name)
    ours = voview.write_for_run(run_dir, progress=False)
    with h5py.File(case / 'overview.h5', 'r') as ref, h5py.File(ours, 'r') as f:
        assert set(f.attrs) == set(ref.attrs)
        assert f.attrs['virtual_overview_version'] == ref.attrs['virtual_overview_version']
        a, b = _layout(ref), _layout(f)
        assert set(a) == set(b)
        assert {k: v for k, v in b.items() if a[k] != v} == {}
        for name in ('INDEX/trainId', 'INDEX/flag', 'INDEX/timestamp',
                     'METADATA/dataSources/dataSourceId'):
            np.testing.assert_array_equal(f[name][()], ref[name][()])
        for name, kind in a.items():
            if kind[0] == 'dataset' and kind[4]:
                assert _mappings(f[name]) == _mappings(ref[name]), name
        assert sorted(f['.source_files/names'][()]) == sorted(ref['.source_files/names'][()])
    ref_run, our_run = xfeldata.RunDirectory(case), xfeldata.RunDirectory(run_dir)
    assert [Path(f.filename).name for f in our_run.files] == ['overview.h5']
    assert ref_run.all_sources == our_run.all_sources
    for src, key in [('SA1_XTD2_XGM/DOOCS/MAIN', 'beamPosition.ixPos.value'),
                     ('SPB_DET_AGIPD1M-1/DET/7CH0:xtdf', 'image.cellId'),
                     ('SPB_IRU_CAM/CAM/SIDEMIC:daqOutput', 'data.image.pixels')]:
        np.testing.assert_array_equal(our_run[src, key].ndarray(), ref_run[src, key].ndarray())


def test_python_m_voview_runs_without_a_runpy_warning():
    import subprocess
    import sys
    res = subprocess.run([sys.executable, '-W', 'error::RuntimeWarning', '-m',
                          'xfeldata.voview', '--help'], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert 'RuntimeWarning' not in res.stderr and '--check' in res.stdout
    import xfeldata
    assert xfeldata.voview.find_file_valid is voview.find_file_valid


def test_opening_a_run_without_overview_does_not_import_voview(tmp_path):
    # The module imports the writer; a run without an overview candidate
    # (no overview.h5, no raw/ or proc/ in its resolved path) never needs it.
    import subprocess
    import sys
    run = tmp_path / 'r0001'
    make_demo_run(run, n_trains=3, n_modules=0)
    code = ("import sys, xfeldata; xfeldata.RunDirectory(sys.argv[1]); "
            "print('xfeldata.voview' in sys.modules)")
    out = subprocess.run([sys.executable, '-c', code, str(run)], capture_output=True,
                         text=True, check=True, env=dict(os.environ, XFELDATA_CACHE='off'))
    assert out.stdout.strip() == 'False'
