"""Tier 0 from the low-level fast path equals the careful path's, file by file.

``_scan.scan_file_index_at`` reads tier 0 with h5py's low-level identifiers
and hands anything unusual to the careful high-level reader. These tests pin
down that the two can never disagree: for every file the fast path accepts it
gives a record equal to the careful one, and for every file it refuses the
careful path's result (record or exception) is what the caller sees.
"""
import glob
import os
import os.path as osp
import warnings

import h5py
import numpy as np
import pytest

from xfeldata import _scan
from xfeldata.exceptions import FileOpenError, FileStructureError
from xfeldata.testing import FORMAT_VERSIONS, make_demo_run

CORPUS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
                  'shared', 'corpus')


def careful(path):
    """Tier 0 through the high-level reader only (the reference)."""
    st = os.stat(path)
    f = _scan.open_h5(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return _scan.scan_file_index(f, path, st)
    finally:
        f.close()


def fast(path):
    """Tier 0 through the fast path only, or None where it gives up."""
    fid = _scan.open_fid(path)
    if fid is None:
        return None
    try:
        return _scan._ll_file_index(fid, path, os.stat(path))
    except Exception:
        return None
    finally:
        fid.close()


def outcome(fn, path):
    """(record, None) or (None, (exception type, message))."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return fn(path), None
    except Exception as e:
        return None, (type(e), str(e))


def assert_same_record(a, b):
    assert a == b
    assert (a.path, a.size, a.mtime) == (b.path, b.size, b.mtime)
    assert a.train_ids.dtype == b.train_ids.dtype == np.uint64
    assert np.array_equal(a.train_ids, b.train_ids) and np.array_equal(a.valid, b.valid)
    assert a.control_sources == b.control_sources
    assert a.instrument_sources == b.instrument_sources
    assert a.legacy_pairs == b.legacy_pairs
    assert not a.train_ids.flags.writeable and not a.valid.flags.writeable


def check_file(path):
    """The fast path agrees with the careful one; returns whether it was used."""
    ref, ref_err = outcome(careful, path)
    got = fast(path)
    if got is not None:
        assert ref_err is None, f"fast path accepted a file the careful one refuses: {path}"
        assert_same_record(got, ref)
    whole, whole_err = outcome(lambda p: _scan.scan_file_index_at(p, os.stat(p)), path)
    assert whole_err == ref_err
    if ref is not None:
        assert_same_record(whole, ref)
    return got is not None


@pytest.fixture(scope='module')
def demo_runs(tmp_path_factory):
    """One small synthetic run per format version (written once for the module)."""
    base = tmp_path_factory.mktemp('demo')
    return {v: make_demo_run(base / f'v{v}', format_version=v).directory
            for v in FORMAT_VERSIONS}


@pytest.mark.parametrize('version', FORMAT_VERSIONS)
def test_synthetic_files_of_every_version(demo_runs, version):
    paths = sorted(glob.glob(osp.join(demo_runs[version], '*.h5')))
    assert paths
    used = [check_file(p) for p in paths]
    if version != '1.1':   # 1.1 (inverted flags, with a warning) is left to the careful path
        assert all(used)


def corpus_files():
    return sorted(glob.glob(osp.join(CORPUS, '**', '*.h5'), recursive=True))


@pytest.mark.skipif(not os.path.isdir(CORPUS) and os.environ.get('CI') != 'true',
                    reason='conformance corpus not present')
def test_corpus_files():
    paths = corpus_files()
    assert paths, f"no files in {CORPUS}"
    used = [check_file(p) for p in paths]
    assert sum(used) > len(used) // 2   # the fast path serves the usual files


# -- unusual files: the fast path gives up or agrees --------------------------------

CTRL = 'SA1_XTD2_XGM/DOOCS/MAIN'


def write(path, fmt=b'1.0', tids=(10, 11, 12), flag=(1, 0, 1), sources=None, extra=None):
    with h5py.File(path, 'w') as f:
        if fmt is not None:
            f['METADATA/dataFormatVersion'] = [fmt]
        src = sources if sources is not None else np.array(
            [f'CONTROL/{CTRL}'.encode(), f'INSTRUMENT/{CTRL}:output/data'.encode()])
        f['METADATA/dataSources/dataSourceId'] = src
        if tids is not None:
            f['INDEX/trainId'] = np.asarray(tids, np.uint64)
        if flag is not None:
            f['INDEX/flag'] = np.asarray(flag, np.int32)
        f.create_group(f'INSTRUMENT/{CTRL}:output/data')
        if extra:
            extra(f)
    return str(path)


def legacy_link(target):
    def add(f):
        f['INSTRUMENT/OLD/NAME:output'] = h5py.SoftLink(target)
        del f['METADATA/dataSources/dataSourceId']
        f['METADATA/dataSources/dataSourceId'] = [
            f'CONTROL/{CTRL}'.encode(), f'INSTRUMENT/{CTRL}:output/data'.encode(),
            b'INSTRUMENT/OLD/NAME:output/data']
    return add


UNUSUAL = {
    'plain': {},
    'no flag': {'flag': None},
    'no version': {'fmt': None, 'flag': None},
    'version 0.5 with a flag': {'fmt': b'0.5'},
    'version 1.1': {'fmt': b'1.1', 'flag': (0, 1, 0)},
    'vlen str version': {'fmt': 'x', 'extra': lambda f: (
        f.__delitem__('METADATA/dataFormatVersion'),
        f.create_dataset('METADATA/dataFormatVersion', data=['1.2'],
                         dtype=h5py.string_dtype()))},
    'fixed-length source list': {'sources': np.array(
        [f'CONTROL/{CTRL}'.encode(), f'INSTRUMENT/{CTRL}:output/data'.encode()], 'S64')},
    'padded source list': {'sources': np.array(
        [f'CONTROL/{CTRL}'.encode(), b'', b''], object)},
    'version is a group': {'fmt': None, 'extra': lambda f: f.create_group(
        'METADATA/dataFormatVersion')},
    'empty version': {'fmt': None, 'extra': lambda f: f.create_dataset(
        'METADATA/dataFormatVersion', shape=(0,), dtype=h5py.string_dtype())},
    'numeric version': {'fmt': None, 'extra': lambda f: f.create_dataset(
        'METADATA/dataFormatVersion', data=[1.0])},
    'zero train IDs': {'tids': (10, 0, 11), 'flag': (1, 1, 1)},
    'short flag': {'flag': (1,)},
    'float flag': {'flag': None, 'extra': lambda f: f.create_dataset(
        'INDEX/flag', data=[1.0, 0.0, 1.0])},
    'bool flag': {'flag': None, 'extra': lambda f: f.create_dataset(
        'INDEX/flag', data=[True, False, True])},
    '2-D train IDs': {'tids': None, 'extra': lambda f: f.create_dataset(
        'INDEX/trainId', data=np.ones((3, 1), np.uint64))},
    'float train IDs': {'tids': None, 'extra': lambda f: f.create_dataset(
        'INDEX/trainId', data=[1.0, 2.0, 3.0])},
    'signed train IDs': {'tids': None, 'extra': lambda f: f.create_dataset(
        'INDEX/trainId', data=np.array([5, -1, 7], np.int64))},
    'no train IDs': {'tids': None},
    'unknown category': {'sources': np.array([b'OTHER/x/y']), 'flag': (1, 1, 1)},
    'numeric source list': {'sources': np.array([1, 2])},
    'source list elsewhere': {'extra': lambda f: (
        f.__delitem__('METADATA/dataSources/dataSourceId'),
        f.__setitem__('METADATA/dataSourceId', [f'CONTROL/{CTRL}'.encode()]))},
    'legacy link': {'extra': legacy_link(f'/INSTRUMENT/{CTRL}:output')},
    'dangling legacy link': {'extra': legacy_link('/INSTRUMENT/NOT/THERE:output')},
    'link outside INSTRUMENT': {'extra': legacy_link('/CONTROL/x')},
}


@pytest.mark.parametrize('case', sorted(UNUSUAL))
def test_unusual_files(tmp_path, case):
    path = write(tmp_path / 'RAW-R0001-DA01-S00000.h5', **UNUSUAL[case])
    check_file(path)


@pytest.mark.parametrize('case', ['plain', 'no flag', 'legacy link', 'dangling legacy link',
                                  'fixed-length source list', 'vlen str version',
                                  'zero train IDs', 'version 0.5 with a flag'])
def test_usual_variants_take_the_fast_path(tmp_path, case):
    path = write(tmp_path / 'RAW-R0001-DA01-S00000.h5', **UNUSUAL[case])
    assert check_file(path)


def test_legacy_link_read_by_fast_path(tmp_path):
    path = write(tmp_path / 'f.h5', **UNUSUAL['legacy link'])
    assert fast(path).legacy_sources == {'OLD/NAME:output': f'{CTRL}:output'}
    # A dangling link still names its target, as h5py's Group.get reports it.
    path = write(tmp_path / 'g.h5', **UNUSUAL['dangling legacy link'])
    assert fast(path).legacy_sources == careful(path).legacy_sources == {
        'OLD/NAME:output': 'NOT/THERE:output'}


def test_broken_files_raise_our_errors(tmp_path):
    empty = tmp_path / 'empty.h5'
    empty.write_bytes(b'')
    with pytest.raises(FileOpenError):
        _scan.scan_file_index_at(str(empty), os.stat(empty))
    text = tmp_path / 'text.h5'
    text.write_text('not hdf5')
    with pytest.raises(FileOpenError):
        _scan.scan_file_index_at(str(text), os.stat(text))
    path = write(tmp_path / 'notids.h5', tids=None)
    with pytest.raises(FileStructureError, match='INDEX/trainId'):
        _scan.scan_file_index_at(path, os.stat(path))
    with pytest.raises(FileNotFoundError):
        _scan.scan_file_index_at(str(tmp_path / 'gone.h5'), os.stat(path))


def test_truncated_file(tmp_path):
    path = write(tmp_path / 'full.h5', extra=lambda f: f.create_dataset(
        'CONTROL/x/big', data=np.arange(100_000)))
    data = open(path, 'rb').read()
    cut = tmp_path / 'cut.h5'
    cut.write_bytes(data[:len(data) // 2])
    check_file(str(cut))
