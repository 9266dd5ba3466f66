"""Bad input to the command-line tools and the validation/locality API.

Each damaged input gets a clear message of ours (on stderr or as a problem
record) and a documented exit code, never a traceback; no input file's bytes
or mtime change. The random damage campaign is in
properties/test_validation_laws.py.
"""
import contextlib
import io
import os

import h5py
import numpy as np
import pytest

import xfeldata
from xfeldata import cli, locality, validation
from xfeldata.exceptions import FileOpenError, FileStructureError
from xfeldata.testing import ControlSource, FileSpec, InstrumentSource, write_file

XGM = 'SA1_XTD2_XGM/DOOCS/MAIN'
NAME = 'RAW-R0001-DA01-S00000.h5'


def good_file(path):
    spec = FileSpec(np.arange(10000, 10006),
                    [ControlSource(XGM, {'pulseEnergy.photonFlux': np.float32}),
                     InstrumentSource(XGM + ':output', {'data.intensityTD': (np.float32, (4,))},
                                      groups={'data': [1, 2, 0, 1, 1, 2]})])
    write_file(path, spec)
    return path


def fingerprint(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob('*')) if p.is_file()}


def run_tool(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def _truncated(folder):
    p = good_file(folder / NAME)
    data = p.read_bytes()
    p.write_bytes(data[:len(data) // 3])
    return p


def _not_hdf5(folder):
    p = folder / NAME
    p.write_text('this is not an HDF5 file\n' * 20)
    return p


def _empty(folder):
    p = folder / NAME
    p.write_bytes(b'')
    return p


def _without(what):
    def make(folder):
        p = good_file(folder / NAME)
        with h5py.File(p, 'r+') as f:
            del f[what]
        return p
    return make


BROKEN = {
    'truncated': (_truncated, (FileOpenError, FileStructureError)),
    'not_hdf5': (_not_hdf5, FileOpenError),
    'empty': (_empty, FileOpenError),
    'no_INDEX': (_without('INDEX'), FileStructureError),
    'no_METADATA': (_without('METADATA'), FileStructureError),
    'no_trainId': (_without('INDEX/trainId'), FileStructureError),
}


@pytest.mark.parametrize('kind', sorted(BROKEN))
def test_broken_file_everywhere(tmp_path, kind):
    make, error = BROKEN[kind]
    p = make(tmp_path)
    before = fingerprint(tmp_path)

    with pytest.raises(error) as ei:
        xfeldata.H5File(p)
    assert NAME in str(ei.value)

    rc, out, err = run_tool('ls', p)
    assert rc == 1 and NAME in err and 'Traceback' not in err

    rc, out, err = run_tool('validate', p)
    assert rc == 1 and 'Could not open HDF5 file' in out and NAME in out

    rc, out, err = run_tool('validate', tmp_path, '-j', '1')
    assert rc == 1 and 'Could not open HDF5 file' in out and 'No usable files found' in out

    with pytest.warns(UserWarning, match='Skipping file'):
        with pytest.raises(xfeldata.exceptions.NoUsableFilesError):
            xfeldata.RunDirectory(tmp_path)

    assert fingerprint(tmp_path) == before


def test_broken_file_check_readable(tmp_path):
    p = _truncated(tmp_path)
    good_file(tmp_path / 'RAW-R0001-DA02-S00000.h5')
    before = fingerprint(tmp_path)
    rc, out, err = run_tool('check-readable', tmp_path, '-j', '1', '--timeout', '20')
    assert rc == 1 and '1 of 2 files readable' in out
    assert f'error        open      {p}' in out
    assert fingerprint(tmp_path) == before


def test_empty_folder(tmp_path):
    rc, out, err = run_tool('ls', tmp_path)
    assert rc == 2 and 'Unrecognised folder' in err
    rc, out, err = run_tool('validate', tmp_path)
    assert rc == 1 and 'No usable files found' in out
    rc, out, err = run_tool('check-readable', tmp_path)
    assert rc == 2 and 'no files' in err
    rc, out, err = run_tool('locality', tmp_path)
    assert rc == 0 and 'Checked 0 files' in out
    with pytest.raises(FileNotFoundError, match='No HDF5 files'):
        xfeldata.RunDirectory(tmp_path)


def test_unreadable_entry(tmp_path):
    # Root reads any file, so a folder named like a data file stands in for
    # a file we may not read: the plain read fails.
    good_file(tmp_path / 'RAW-R0001-DA02-S00000.h5')
    (tmp_path / NAME).mkdir()
    rc, out, err = run_tool('validate', tmp_path / NAME)   # a folder: an empty run
    assert rc == 1 and 'No usable files found' in out
    rc, out, err = run_tool('validate', tmp_path, '-j', '1')
    assert rc == 1 and 'Could not access file' in out and 'IsADirectoryError' in out
    rc, out, err = run_tool('ls', tmp_path)
    assert rc == 0   # the run opens without the unreadable entry


@pytest.mark.skipif(os.geteuid() == 0, reason='root can read anything')
def test_permission_denied(tmp_path):
    p = good_file(tmp_path / NAME)
    p.chmod(0)
    try:
        with pytest.raises(PermissionError):
            xfeldata.H5File(p)
        rc, out, err = run_tool('validate', p)
        assert rc == 1 and 'Could not access file' in out
        rc, out, err = run_tool('ls', p)
        assert rc == 1 and 'PermissionError' in err
    finally:
        p.chmod(0o644)


@pytest.mark.parametrize('func, arg', [
    (xfeldata.H5File, 123), (xfeldata.RunDirectory, None), (xfeldata.FileAccess, 1.5),
    (validation.RunValidator, 5), (validation.FileValidator, 'a/file.h5'),
    (locality.get_locality, 5), (locality.lc_ondisk, None), (locality.partition, 3),
])
def test_wrong_argument_types(func, arg):
    with pytest.raises(TypeError):
        func(arg)


@pytest.mark.parametrize('argv', [
    ['ls', '-s'], ['validate', '--skip'], ['validate', 'x', '-j', 'two'],
    ['check-readable'], ['check-readable', 'x', '--timeout', 'soon'], ['locality'],
    ['locality', 'a', 'b'],
])
def test_bad_command_lines_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as ei:
        cli.main(argv)
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert 'usage: xfeldata' in err and 'error:' in err


def test_damaged_index_is_reported_not_raised(tmp_path):
    p = good_file(tmp_path / NAME)
    with h5py.File(p, 'r+') as f:
        f[f'INDEX/{XGM}:output/data/count'][1] = 2 ** 64 - 1
        f['INDEX/trainId'][2] = 0
    before = fingerprint(tmp_path)
    rc, out, err = run_tool('validate', p)
    assert rc == 1
    assert 'Zeroes in trainId index before last train ID' in out
    assert 'Overlaps' in out and '18446744073709551615' in out
    rc, out, err = run_tool('ls', p)   # the summary needs no counts
    assert rc == 0 and '# of trains:    5' in out
    rc, out, err = run_tool('ls', p, '-d', 'XGM')   # details do: our error, exit 1
    assert rc == 1 and NAME in err and 'INDEX' in err and 'Traceback' not in err
    dc = xfeldata.H5File(p)
    with pytest.raises(TypeError, match=NAME):
        dc[XGM + ':output', 'data.intensityTD'].ndarray()
    assert fingerprint(tmp_path) == before
