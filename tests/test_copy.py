"""xfeldata.copy.copy_structure: clone EuXFEL files without their bulk data (FORMAT.md 8.3)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

import xfeldata
from xfeldata.cli import main as cli_main
from xfeldata.copy import copy_structure
from xfeldata.testing import (Aggregator, InstrumentSource, Key, RunSpec, make_demo_run,
                              write_run)

XGM = 'SA1_XTD2_XGM/DOOCS/MAIN'
MOD0 = 'SPB_DET_AGIPD1M-1/DET/0CH0:xtdf'


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    return make_demo_run(tmp_path_factory.mktemp('demo') / 'r0001', n_trains=20, n_modules=1)


def _walk(path) -> dict:
    """name -> (kind, details) for every link in the file, with plain h5py."""
    out = {}
    with h5py.File(path, 'r') as f:
        def visit(name):
            link = f.get(name, getlink=True)
            if isinstance(link, h5py.SoftLink):
                out[name] = ('soft', link.path)
                return
            if isinstance(link, h5py.ExternalLink):
                out[name] = ('external', link.filename, link.path)
                return
            obj = f[name]
            attrs = {k: (obj.attrs[k].tolist() if isinstance(obj.attrs[k], np.ndarray)
                         else obj.attrs[k]) for k in obj.attrs}
            if isinstance(obj, h5py.Dataset):
                out[name] = ('dataset', obj.shape, obj.maxshape, obj.dtype.str, obj.chunks,
                             obj.compression, str(attrs))
            else:
                out[name] = ('group', str(attrs))
        names = []
        f.visit_links(names.append) if hasattr(f, 'visit_links') else f.visit(names.append)
        for n in names:
            visit(n)
    return out


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in Path(folder).iterdir()}


def test_structure_and_data_sections(demo, tmp_path):
    before = _digests(demo.directory)
    written = copy_structure(demo.directory, tmp_path)
    assert _digests(demo.directory) == before
    names = sorted(p.name for p in Path(demo.directory).glob('*.h5'))
    assert sorted(Path(p).name for p in written) == names
    for n in names:
        src, dst = Path(demo.directory) / n, tmp_path / n
        assert _walk(src) == _walk(dst), n
        with h5py.File(src, 'r') as a, h5py.File(dst, 'r') as b:
            assert dict(a.attrs) == dict(b.attrs)
            for sect in ('METADATA', 'INDEX'):
                def same(name, obj):
                    if isinstance(obj, h5py.Dataset):
                        np.testing.assert_array_equal(b[f'{sect}/{name}'][()], obj[()])
                a[sect].visititems(same)
            for sect in ('INSTRUMENT', 'CONTROL', 'RUN'):
                def empty(name, obj):
                    if isinstance(obj, h5py.Dataset) and obj.size:
                        out = b[f'{sect}/{name}']
                        # no data written: no storage allocated
                        assert out.id.get_storage_size() == 0, name
                if sect in a:
                    a[sect].visititems(empty)
    total_in = sum((Path(demo.directory) / n).stat().st_size for n in names)
    total_out = sum((tmp_path / n).stat().st_size for n in names)
    assert total_out < total_in / 5
    # the clone opens as the same run (sources, trains, shapes)
    a, b = xfeldata.RunDirectory(demo.directory), xfeldata.RunDirectory(tmp_path)
    assert a.all_sources == b.all_sources
    np.testing.assert_array_equal(a.train_ids, b.train_ids)
    assert b[MOD0, 'image.data'].shape == a[MOD0, 'image.data'].shape


def test_run_and_control_data_options(demo, tmp_path):
    copy_structure(demo.directory, tmp_path, run_data=True, control_data=True)
    a, b = xfeldata.RunDirectory(demo.directory), xfeldata.RunDirectory(tmp_path)
    np.testing.assert_array_equal(b[XGM, 'beamPosition.ixPos'].ndarray(),
                                  a[XGM, 'beamPosition.ixPos'].ndarray())
    assert b[XGM].run_value('classId') == 'DoocsXGM'
    assert not b[MOD0, 'image.data'].ndarray().any()     # instrument data stays empty
    assert a[MOD0, 'image.data'].ndarray().any()


def test_without_run_data_run_is_empty(demo, tmp_path):
    copy_structure(Path(demo.directory) / 'RAW-R0001-DA01-S00000.h5', tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ['RAW-R0001-DA01-S00000.h5']
    with h5py.File(tmp_path / 'RAW-R0001-DA01-S00000.h5', 'r') as f:
        assert f[f'RUN/{XGM}/classId/value'].id.get_storage_size() == 0
        assert f[f'CONTROL/{XGM}/beamPosition/ixPos/value'].id.get_storage_size() == 0


def test_links_preserved(tmp_path):
    tids = np.arange(10, 14, dtype=np.uint64)
    src = InstrumentSource('D/CORR/0CH0:output', {'image.data': Key(np.float32, (3,))},
                           groups={'image': 1}, legacy_names=('D/DET/0CH0:xtdf',))
    m = write_run(tmp_path / 'in', RunSpec(tids, [Aggregator('DA01', [src])]))
    path = m.files[0].path
    with h5py.File(path, 'a') as f:
        f['INSTRUMENT/hard'] = f['INSTRUMENT/D/CORR/0CH0:output/image/data']
        f['INSTRUMENT/ext'] = h5py.ExternalLink('other.h5', '/x')
        f['INSTRUMENT/D/CORR/0CH0:output/image'].attrs['note'] = np.array([1, 2], np.int32)
    out = tmp_path / 'out'
    out.mkdir()
    copy_structure(path, out)
    with h5py.File(out / Path(path).name, 'r') as f:
        assert f.get('INSTRUMENT/D/DET/0CH0:xtdf', getlink=True).path == \
            '/INSTRUMENT/D/CORR/0CH0:output'
        ext = f.get('INSTRUMENT/ext', getlink=True)
        assert (ext.filename, ext.path) == ('other.h5', '/x')
        hard, orig = f['INSTRUMENT/hard'], f['INSTRUMENT/D/CORR/0CH0:output/image/data']
        assert h5py.h5o.get_info(hard.id).addr == h5py.h5o.get_info(orig.id).addr
        np.testing.assert_array_equal(
            f['INSTRUMENT/D/CORR/0CH0:output/image'].attrs['note'], [1, 2])
    back = xfeldata.RunDirectory(tmp_path / 'out')
    assert 'D/DET/0CH0:xtdf' in back.all_sources


def test_bad_arguments(demo, tmp_path):
    with pytest.raises(ValueError, match='not a folder'):
        copy_structure(demo.directory, tmp_path / 'missing')
    with pytest.raises(ValueError, match='input folder'):
        copy_structure(demo.directory, demo.directory)
    with pytest.raises(ValueError, match='input folder'):
        copy_structure(Path(demo.directory) / 'RAW-R0001-DA01-S00000.h5', demo.directory)
    with pytest.raises(ValueError, match='not a file or a folder'):
        copy_structure(tmp_path / 'nothing.h5', tmp_path)
    txt = tmp_path / 'x.txt'
    txt.write_text('hello')
    with pytest.raises(ValueError, match='not an HDF5 file'):
        copy_structure(txt, tmp_path)
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(ValueError, match='no HDF5 files'):
        copy_structure(empty, tmp_path)


def test_cli_and_progress(demo, tmp_path, capsys):
    out = tmp_path / 'o'
    out.mkdir()
    assert cli_main(['copy', demo.directory, str(out), '--run-data', '--progress']) == 0
    cap = capsys.readouterr()
    assert 'Copied the structure of 6 file(s)' in cap.out
    assert '6/6' in cap.err and cap.err.endswith('\n')
    assert xfeldata.RunDirectory(out)[XGM].run_value('classId') == 'DoocsXGM'
    assert cli_main(['copy', demo.directory, str(tmp_path / 'nope')]) == 1
    assert 'not a folder' in capsys.readouterr().err
    assert cli_main(['copy', demo.directory, str(out), '--no-progress']) == 0
    assert capsys.readouterr().err == ''
    assert not [n for n in os.listdir(out) if 'xfeldata-tmp' in n]
