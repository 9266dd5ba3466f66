"""xfeldata.locality with a fake dCache: magic files ``.(get)(NAME)(locality)`` in tmp_path."""
import os

import numpy as np
import pytest

import xfeldata
from xfeldata import locality
from xfeldata.testing import make_demo_run


def fake(folder, localities):
    """Empty data files, with a magic file for each name whose locality is not None."""
    paths = []
    for name, loc in localities.items():
        p = folder / name
        p.write_text('')
        if loc is not None:
            (folder / f'.(get)({name})(locality)').write_text(f'{loc}\n')
        paths.append(str(p))
    return paths


LOCS = {'disk.h5': 'ONLINE', 'both.h5': 'ONLINE_AND_NEARLINE', 'tape.h5': 'NEARLINE',
        'lost.h5': 'UNAVAILABLE', 'plain.h5': None, 'odd.h5': 'SOMETHING_NEW'}


def test_constants():
    assert (locality.UNAVAIL, locality.ONTAPE, locality.ONDISK, locality.ANY) == (1, 2, 4, 7)
    assert locality.DC_LOC_RESP == {'UNAVAILABLE': 1, 'NEARLINE': 2, 'ONLINE': 4,
                                    'ONLINE_AND_NEARLINE': 6, 'NOT_ON_DCACHE': 4}
    assert locality.locality_code('SOMETHING_NEW') == 0
    assert set(locality.LOCMSG) >= {0, 1, 2, 4, 6}


def test_get_locality(tmp_path):
    paths = fake(tmp_path, LOCS)
    got = dict(locality.get_locality(p) for p in paths)
    assert {os.path.basename(p): v for p, v in got.items()} == {
        **{k: v for k, v in LOCS.items() if v}, 'plain.h5': 'NOT_ON_DCACHE'}


def test_list_locality_and_partition(tmp_path):
    paths = fake(tmp_path, LOCS)
    listed = list(locality.list_locality(paths))
    assert sorted(listed) == sorted(locality.get_locality(p) for p in paths)
    seen = []
    parts = locality.partition(paths, cb_disp=lambda counts: seen.append(dict(counts)))
    assert {k: [os.path.basename(p) for p in v] for k, v in parts.items()} == {
        'ONLINE': ['disk.h5'], 'ONLINE_AND_NEARLINE': ['both.h5'], 'NEARLINE': ['tape.h5'],
        'UNAVAILABLE': ['lost.h5'], 'NOT_ON_DCACHE': ['plain.h5'],
        'SOMETHING_NEW': ['odd.h5']}
    assert len(seen) == len(paths) and sum(seen[-1].values()) == len(paths)
    assert [sum(c.values()) for c in seen] == list(range(1, len(paths) + 1))


def test_filters(tmp_path, capsys):
    paths = fake(tmp_path, LOCS)
    names = lambda ps: sorted(os.path.basename(p) for p in ps)  # noqa: E731
    assert locality.lc_any(paths) == paths
    assert names(locality.lc_ondisk(paths)) == ['both.h5', 'disk.h5', 'plain.h5']
    err = capsys.readouterr().err
    assert 'Skipping file' in err and 'tape.h5 (locality: NEARLINE)' in err
    assert 'disk.h5' not in err
    assert names(locality.lc_avail(paths)) == ['both.h5', 'disk.h5', 'plain.h5', 'tape.h5']
    assert names(locality.lc_match(paths, locality.UNAVAIL)) == ['lost.h5']
    # Order of the input is kept.
    kept = locality.lc_ondisk(paths)
    assert kept == [p for p in paths if p in kept]


def test_filter_with_open_run(tmp_path, capsys):
    make_demo_run(tmp_path)
    tape = ['RAW-R0001-AGIPD03-S00000.h5', 'RAW-R0001-AGIPD03-S00001.h5']
    (tmp_path / f'.(get)({tape[0]})(locality)').write_text('NEARLINE')
    (tmp_path / f'.(get)({tape[1]})(locality)').write_text('UNAVAILABLE')
    run = xfeldata.RunDirectory(tmp_path, file_filter=locality.lc_ondisk)
    names = [os.path.basename(f.filename) for f in run.files]
    assert not set(tape) & set(names) and len(names) == 10
    err = capsys.readouterr().err
    assert f'{tape[0]} (locality: NEARLINE)' in err
    assert f'{tape[1]} (locality: UNAVAILABLE)' in err
    assert len(xfeldata.RunDirectory(tmp_path, file_filter=locality.lc_avail).files) == 11
    assert not any('AGIPD1M-1/DET/3CH0' in s for s in run.all_sources)
    full = xfeldata.RunDirectory(tmp_path)
    assert len(full.files) == 12
    np.testing.assert_array_equal(run.train_ids, full.train_ids)


@pytest.mark.parametrize('locs, expected', [
    ({'a.h5': None, 'b.h5': 'ONLINE'}, 0),
    ({'a.h5': 'NEARLINE', 'b.h5': 'ONLINE'}, 1),
    ({'a.h5': 'UNAVAILABLE'}, 2),
    ({'a.h5': 'WHO_KNOWS'}, 4),
    ({'a.h5': 'NEARLINE', 'b.h5': 'UNAVAILABLE', 'c.h5': 'X', 'd.h5': 'ONLINE_AND_NEARLINE'}, 7),
])
def test_check_dir(tmp_path, capsys, locs, expected):
    fake(tmp_path, locs)
    (tmp_path / 'notes.txt').write_text('not data')
    assert locality.check_dir(str(tmp_path), progress=False) == expected
    out = capsys.readouterr().out
    assert f'Checked {len(locs)} files' in out
    assert locality.main([str(tmp_path), '-q']) == expected


def test_check_dir_progress(tmp_path, capsys):
    fake(tmp_path, {'a.h5': None, 'b.h5': 'NEARLINE'})
    locality.check_dir(str(tmp_path), progress=True)
    err = capsys.readouterr().err
    assert '\rNEARLINE: 1' in err or 'NEARLINE: 1' in err


def test_main_missing_path(tmp_path, capsys):
    assert locality.main([str(tmp_path / 'nope')]) == 255
    assert 'no such file' in capsys.readouterr().err


def test_magic_file_read_never_writes(tmp_path):
    paths = fake(tmp_path, LOCS)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    locality.check_dir(str(tmp_path), progress=False)
    locality.lc_avail(paths)
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    assert before == after
