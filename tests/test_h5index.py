"""xfeldata.h5index: the deprecated dataset lister (issue 11)."""
import csv
import io
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import h5py
import numpy as np
import pytest

from xfeldata import h5index as h5index_mod
from xfeldata.exceptions import FileOpenError
from xfeldata.h5index import h5index, main
from xfeldata.testing import make_demo_run

CORPUS = Path(__file__).resolve().parents[2] / 'shared' / 'corpus'
if not CORPUS.is_dir():
    CORPUS = Path('/work/shared/corpus')


def _visititems(path):
    """The independent answer: h5py's high-level visititems."""
    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            found.append(('/' + name, obj.shape, obj.dtype))
    with h5py.File(path, 'r') as f:
        f.visititems(visit)
    return sorted(found, key=lambda t: t[0])


def _quiet(path):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        return h5index(path)


def _corpus_files():
    if not CORPUS.is_dir():
        return []
    files = sorted(CORPUS.glob('*/*.h5'))
    # One file per case keeps this quick; cases are different layouts and versions.
    per_case = {}
    for f in files:
        per_case.setdefault(f.parent.name, f)
    return sorted(per_case.values())


@pytest.mark.skipif(not _corpus_files(), reason='corpus absent')
@pytest.mark.parametrize('path', _corpus_files(), ids=lambda p: p.parent.name)
def test_corpus_files_list_what_visititems_finds(path):
    got = _quiet(path)
    want = _visititems(path)
    assert [g[0] for g in got] == [w[0] for w in want]
    assert [g[1] for g in got] == [w[1] for w in want]
    assert [g[2] for g in got] == [w[2] for w in want]
    assert len(got) > 0


def test_synthetic_file(tmp_path):
    path = tmp_path / 'f.h5'
    with h5py.File(path, 'w') as f:
        f.create_dataset('INDEX/trainId', data=np.arange(10000, 10005, dtype='u8'))
        f.create_dataset('CONTROL/DEV/x/value', data=np.zeros((5, 3, 2), 'f4'), chunks=(1, 3, 2))
        f.create_dataset('METADATA/creationDate', data='2024', dtype=h5py.string_dtype())
        f.create_dataset('empty', data=h5py.Empty('f8'))
        f['INSTRUMENT/DEV:out/data/a'] = np.arange(3)
        f['legacy'] = h5py.SoftLink('/INSTRUMENT/DEV:out')   # not followed
        f['second/name'] = f['INDEX/trainId']                 # a hard link: listed once
        f.create_group('group/without/datasets')
    got = _quiet(path)
    assert got == _visititems(path)
    assert [g[0] for g in got] == ['/CONTROL/DEV/x/value', '/INDEX/trainId',
                                   '/INSTRUMENT/DEV:out/data/a', '/METADATA/creationDate',
                                   '/empty']
    assert got[0][1:] == ((5, 3, 2), np.dtype('f4'))
    assert got[1][1:] == ((5,), np.dtype('u8'))
    assert got[3][1] == ()
    assert h5py.check_string_dtype(got[3][2]).encoding == 'utf-8'
    assert got[4][1] is None


def test_demo_run_files_and_csv(tmp_path, capsys):
    m = make_demo_run(tmp_path)
    paths = sorted(f.path for f in m.files)
    for p in paths[:3]:
        assert _quiet(p) == _visititems(p)
    # main prints one CSV row per dataset, after a header.
    buf = io.StringIO()
    with warnings.catch_warnings(record=True) as w, redirect_stdout(buf):
        warnings.simplefilter('always')
        assert main([str(paths[0])]) == 0
    assert any(issubclass(x.category, DeprecationWarning) for x in w)
    rows = list(csv.reader(io.StringIO(buf.getvalue())))
    assert rows[0] == ['path', 'shape', 'dtype']
    want = _visititems(paths[0])
    assert [r[0] for r in rows[1:]] == [x[0] for x in want]
    assert [r[1] for r in rows[1:]] == ['x'.join(map(str, x[1])) for x in want]
    for r, x in zip(rows[1:], want):
        if h5py.check_vlen_dtype(x[2]) is None:
            assert np.dtype(r[2]) == x[2]
        else:
            assert r[2].startswith('vlen ')


def test_warns_and_points_to_ls_detail(tmp_path):
    path = tmp_path / 'f.h5'
    with h5py.File(path, 'w') as f:
        f['x'] = [1]
    with pytest.warns(DeprecationWarning, match='xfeldata ls --detail'):
        assert h5index(path) == [('/x', (1,), np.dtype(int))]


def test_bad_input(tmp_path, capsys):
    bad = tmp_path / 'not.h5'
    bad.write_bytes(b'not hdf5 at all')
    before = bad.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        with pytest.raises(FileOpenError, match='not.h5'):
            h5index(bad)
        with pytest.raises(FileNotFoundError):
            h5index(tmp_path / 'missing.h5')
        assert main([str(bad)]) == 1
        assert main([str(tmp_path / 'missing.h5')]) == 1
    err = capsys.readouterr().err
    assert 'not.h5' in err and 'no such file' in err
    assert bad.read_bytes() == before


def test_module_surface():
    assert h5index_mod.__all__ == ['h5index', 'main']
