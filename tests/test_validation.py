"""xfeldata.validation: the checks against the corpus's golden answers, synthetic
files damaged with h5py, the run checks, and the API's error handling."""
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import xfeldata
from xfeldata import validation
from xfeldata.testing import ControlSource, FileSpec, InstrumentSource, make_demo_run, write_file
from xfeldata.validation import FileValidator, RunValidator, ValidationError

CORPUS = Path(os.environ.get('XFELDATA_CORPUS',
                             Path(__file__).resolve().parents[1] / '..' / 'shared' / 'corpus'))
CORPUS = CORPUS.resolve()
needs_corpus = pytest.mark.skipif(not (CORPUS / 'example_consumer.py').is_file(),
                                  reason='corpus absent')

FILE_CHECKS = ['train_ids_nonzero', 'train_ids_order', 'index_control', 'index_instrument',
               'control_timestamps_order']

XGM = 'SA1_XTD2_XGM/DOOCS/MAIN'


def _jsonable(problems):
    return sorted(json.dumps(p, sort_keys=True, default=list) for p in problems)


def _expected_json(problems):
    return sorted(json.dumps(p, sort_keys=True) for p in problems)


def _fingerprint(folder):
    out = {}
    for p in sorted(Path(folder).rglob('*')):
        if p.is_file():
            st = p.stat()
            out[p.name] = (p.read_bytes(), st.st_mtime_ns)
    return out


# -- corpus: every problem record equal to the reference's, check by check --------

INVALID_CASES = ['invalid_control_timestamps_v1.0', 'invalid_first_count_mismatch_v1.0',
                 'invalid_index_gap_v1.0', 'invalid_index_not_from_zero_v1.0',
                 'invalid_index_outside_v1.0', 'invalid_index_overlap_v1.0',
                 'invalid_index_short_v1.0', 'invalid_train_order_v0.5',
                 'invalid_zero_train_id_v0.5', 'agipd_example_v0.5', 'suspect_tid_low_v0.5',
                 'unsorted_tid_flagged_valid_v1.0', 'empty_file_v1.0', 'empty_source_v1.0']


@needs_corpus
@pytest.mark.parametrize('case', INVALID_CASES)
def test_corpus_problem_records(case):
    exp = json.loads((CORPUS / case / 'expected.json').read_text())['validation']
    assert exp['file_checks'] == FILE_CHECKS
    for fname, fv in exp['files'].items():
        fa = xfeldata.FileAccess(CORPUS / case / fname)
        for check, probs in fv['by_check'].items():
            skip = [c for c in FILE_CHECKS if c != check]
            got = FileValidator(fa, skip_checks=skip).run_checks()
            # Every field, not only the messages: dataset, file, shapes.
            assert _jsonable(got) == _expected_json(probs), (fname, check)
        all_problems = FileValidator(fa).run_checks()
        assert len(all_problems) == fv['n_problems']


@needs_corpus
def test_corpus_dotted_control_keys_are_checked():
    # The reference raises KeyError here (key names containing '.'); we check
    # them, and the file is fine (docs/compat.md).
    fa = xfeldata.FileAccess(CORPUS / 'jungfrau' / 'RAW-R0012-JNGFRCTRL00-S00000.h5')
    assert FileValidator(fa).run_checks() == []
    with h5py.File(fa.filename, 'r') as f:
        assert 'module1.adcTemperature' in f['CONTROL/SPB_IRDA_JF4M/MDL/MONITOR']


@needs_corpus
@pytest.mark.parametrize('case', ['unreadable_files_in_run', 'conflicting_sequences_v1.0',
                                  'modern_spb_proc_v1.2', 'lpd_mini_missed_train'])
def test_corpus_run_problems(case):
    exp = json.loads((CORPUS / case / 'expected.json').read_text())['validation']['run']
    before = _fingerprint(CORPUS / case)
    # The reference has no conflict check: compare without ours.
    v = RunValidator(CORPUS / case, skip_checks=['source_conflicts'], processes=1)
    got = v.run_checks()
    assert [(p['msg'], p['file']) for p in got] == \
        [(p['msg'], p['file']) for p in exp['problems']]
    assert len(got) == exp['n_problems']
    assert _fingerprint(CORPUS / case) == before


@needs_corpus
def test_conflicting_sequences_found_by_the_readers_checker():
    case = CORPUS / 'conflicting_sequences_v1.0'
    got = RunValidator(case, processes=1).run_checks()
    with pytest.raises(ValueError) as ei:
        xfeldata.RunDirectory(case)
    # Same records as the reader's error: one per source, same train, same files.
    assert {(p['source'], p['train_id'], tuple(p['files'])) for p in got} == {
        (s, t, tuple(os.path.basename(x) for x in paths)) for s, t, paths in ei.value.conflicts}
    assert got and all(p['train_id'] == 10300 for p in got)


# -- synthetic files, damaged with h5py --------------------------------------------

def good_file(path, n=8):
    spec = FileSpec(
        np.arange(10000, 10000 + n),
        [ControlSource(XGM, {'pulseEnergy.photonFlux': np.float32}),
         InstrumentSource(XGM + ':output', {'data.intensityTD': (np.float32, (4,))},
                          groups={'data': [1, 2, 0, 1, 1, 3, 1, 1][:n]})],
        format_version='1.2')
    write_file(path, spec)
    return path


@pytest.fixture
def good(tmp_path):
    return good_file(tmp_path / 'RAW-R0001-DA01-S00000.h5')


def _checks_with_problems(path):
    fa = xfeldata.FileAccess(path)
    out = {}
    for check in FILE_CHECKS:
        probs = FileValidator(fa, skip_checks=[c for c in FILE_CHECKS if c != check]
                              ).run_checks()
        if probs:
            out[check] = [p['msg'] for p in probs]
    return out


def test_good_file_has_no_problems(good):
    fa = xfeldata.FileAccess(good)
    v = FileValidator(fa)
    assert v.run_checks() == [] and v.problems == []
    v.validate()   # no exception


DAMAGES = {
    # name: (h5py edit, expected {check: [messages]})
    'swap_train_ids': (
        lambda f: f['INDEX/trainId'].__setitem__(slice(2, 4), [10003, 10002]),
        {'train_ids_order': ['Train IDs are not strictly increasing, e.g. at 2 '
                             '(10003 >= 10002)']}),
    'instrument_overlap': (
        lambda f: f[f'INDEX/{XGM}:output/data/count'].__setitem__(0, 2),
        {'index_instrument': ['Overlaps (1) in index, e.g. at 0 (0 + 2 > 1)']}),
    'instrument_not_from_zero': (
        lambda f: f[f'INDEX/{XGM}:output/data/first'].__setitem__(
            slice(None), f[f'INDEX/{XGM}:output/data/first'][:] + 1),
        # 10 entries in two datasets (intensityTD and the writer's trainId)
        {'index_instrument': ["Index doesn't start at 0",
                              'Index referring to data (11) outside dataset (10)',
                              'Index referring to data (11) outside dataset (10)']}),
    'control_gap': (
        lambda f: f[f'INDEX/{XGM}/first'].__setitem__(3, 4),
        {'index_control': ['Gaps (1) in index, e.g. at 2 (2 + 1 < 4)',
                           'Overlaps (1) in index, e.g. at 3 (4 + 1 > 4)']}),
    'control_huge_first': (   # no integer wrap-around in first + count
        lambda f: f[f'INDEX/{XGM}/first'].__setitem__(7, 2 ** 64 - 1),
        {'index_control': ['Index referring to data (18446744073709551616) outside '
                           'dataset (8)',
                           'Gaps (1) in index, e.g. at 6 (6 + 1 < 18446744073709551615)']}),
    'control_timestamp_back': (
        lambda f: f[f'CONTROL/{XGM}/pulseEnergy/photonFlux/timestamp'].__setitem__(
            5, f[f'CONTROL/{XGM}/pulseEnergy/photonFlux/timestamp'][4] - 1),
        {'control_timestamps_order': ['Timestamp is decreasing, e.g. at 5 ({b} < {a})']}),
    'control_timestamp_zero': (
        lambda f: f[f'CONTROL/{XGM}/pulseEnergy/photonFlux/timestamp'].__setitem__(2, 0),
        {'control_timestamps_order': ['Zeroes in Timestamp before last timestamp']}),
}


@pytest.mark.parametrize('damage', sorted(DAMAGES))
def test_damage_flagged_by_its_check_only(tmp_path, damage):
    p = good_file(tmp_path / 'RAW-R0001-DA01-S00000.h5')
    edit, expected = DAMAGES[damage]
    with h5py.File(p, 'r+') as f:
        ts = f[f'CONTROL/{XGM}/pulseEnergy/photonFlux/timestamp'][:]
        edit(f)
    expected = {k: [m.format(a=ts[4], b=ts[4] - 1) for m in v] for k, v in expected.items()}
    before = _fingerprint(tmp_path)
    got = _checks_with_problems(p)
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in expected.items()}
    with pytest.raises(ValidationError) as ei:
        FileValidator(xfeldata.FileAccess(p)).validate()
    assert len(ei.value.problems) == sum(len(v) for v in expected.values())
    assert p.name in str(ei.value)
    assert _fingerprint(tmp_path) == before


def test_zero_train_id_in_the_middle(tmp_path):
    p = good_file(tmp_path / 'RAW-R0001-DA01-S00000.h5')
    with h5py.File(p, 'r+') as f:
        f['INDEX/trainId'][3] = 0
    got = _checks_with_problems(p)
    assert got['train_ids_nonzero'] == ['Zeroes in trainId index before last train ID']
    # The index now has one entry more than there are train IDs.
    assert got['index_control'] == ['Index has wrong number of entries']
    assert 'Index has wrong number of entries' in got['index_instrument']
    assert 'train_ids_order' not in got


def test_first_count_not_1d_and_length_mismatch(tmp_path):
    p = good_file(tmp_path / 'RAW-R0001-DA01-S00000.h5')
    with h5py.File(p, 'r+') as f:
        grp = f[f'INDEX/{XGM}:output/data']
        first = grp['first'][:]
        del grp['first']
        grp['first'] = np.stack([first, first], axis=1)
        cgrp = f[f'INDEX/{XGM}']
        count = cgrp['count'][:]
        del cgrp['count']
        cgrp['count'] = np.append(count, 1).astype(count.dtype)
    fa = xfeldata.FileAccess(p)
    probs = FileValidator(fa, skip_checks=['index_control']).run_checks()
    assert [(p['msg'], p['first_shape'], p['count_shape']) for p in probs] == [
        ('Index first and count are not 1D', (8, 2), (8,))]
    probs = FileValidator(fa, skip_checks=['index_instrument']).run_checks()
    assert [(p['msg'], p['first_shape'], p['count_shape']) for p in probs] == [
        ('Index first & count have different number of entries', (8,), (9,))]


def test_missing_index_group(tmp_path):
    p = good_file(tmp_path / 'RAW-R0001-DA01-S00000.h5')
    with h5py.File(p, 'r+') as f:
        del f[f'INDEX/{XGM}/count']
        del f[f'INDEX/{XGM}:output']
    fa = xfeldata.FileAccess(p)
    probs = FileValidator(fa).run_checks()
    assert sorted((p['msg'], p['dataset']) for p in probs) == [
        ('Index could not be read', f'INDEX/{XGM}'),
        ('Source listed in METADATA has no INDEX group', f'INDEX/{XGM}:output')]


# -- API ------------------------------------------------------------------------------

def test_check_names_and_skips(good):
    fa = xfeldata.FileAccess(good)
    assert [f.__name__ for f in FileValidator.check_funcs] == FILE_CHECKS
    assert [f.__name__ for f in RunValidator.check_funcs] == ['run_json_cache',
                                                              'source_conflicts']
    with pytest.raises(ValueError, match='Unknown check name.*nonsense'):
        FileValidator(fa, skip_checks=['nonsense'])
    with pytest.raises(TypeError, match='FileAccess'):
        FileValidator(str(good))
    with pytest.raises(ValueError, match='Unknown check'):
        RunValidator(good.parent, skip_checks=['bogus'])
    with pytest.raises(NotADirectoryError):
        RunValidator(good)


def test_validation_error_and_problem():
    p = validation.problem('Something odd', dataset='INDEX/x', file='f.h5', n=3)
    assert p == {'msg': 'Something odd', 'dataset': 'INDEX/x', 'file': 'f.h5', 'n': 3}
    e = ValidationError([p])
    assert e.problems == [p]
    text = str(e)
    assert 'f.h5' in text and 'Something odd' in text and 'INDEX/x' in text and 'n: 3' in text
    assert isinstance(e, Exception)


def test_workers_never_zero(tmp_path, monkeypatch):
    make_demo_run(tmp_path)
    v = RunValidator(tmp_path, processes=0)
    assert v._n_workers(12) == 1
    import xfeldata.utils
    monkeypatch.setattr(xfeldata.utils, 'available_cpu_cores', lambda: 1)
    assert RunValidator(tmp_path)._n_workers(12) == 1
    monkeypatch.setattr(xfeldata.utils, 'available_cpu_cores', lambda: 64)
    assert RunValidator(tmp_path)._n_workers(12) == 12
    assert RunValidator(tmp_path)._n_workers(0) == 1


def test_demo_run_parallel_equals_serial(tmp_path, capsys):
    make_demo_run(tmp_path)
    with h5py.File(tmp_path / 'RAW-R0001-DA01-S00000.h5', 'r+') as f:
        f['INDEX/trainId'][1] = f['INDEX/trainId'][0]
    before = _fingerprint(tmp_path)
    serial = RunValidator(tmp_path, processes=1).run_checks()
    v = RunValidator(tmp_path, term_progress=True, processes=2)
    parallel = v.run_checks()
    assert serial == parallel
    assert [p['msg'][:30] for p in serial if 'file' in p] == [
        'Train IDs are not strictly inc']
    assert len(v.file_indexes) == 12
    err = capsys.readouterr().err
    assert '12/12' in err   # the progress bar
    assert _fingerprint(tmp_path) == before


def test_empty_and_unusable_folders(tmp_path):
    assert RunValidator(tmp_path, processes=1).run_checks() == [
        {'msg': 'No usable files found', 'directory': str(tmp_path)}]
    (tmp_path / 'a.h5').write_bytes(b'not hdf5')
    probs = RunValidator(tmp_path, processes=1).run_checks()
    assert [(p['msg'], p.get('file')) for p in probs] == [
        ('Could not open HDF5 file', 'a.h5'), ('No usable files found', None)]
    assert 'not an HDF5 file' in probs[0]['error']


@pytest.mark.skipif(os.geteuid() == 0, reason='root can read anything')
def test_permission_denied_is_access_problem(tmp_path):
    p = good_file(tmp_path / 'RAW-R0001-DA01-S00000.h5')
    good_file(tmp_path / 'RAW-R0001-DA02-S00000.h5')
    p.chmod(0)
    try:
        probs = RunValidator(tmp_path, processes=1).run_checks()
    finally:
        p.chmod(0o644)
    assert [(q['msg'], q['file']) for q in probs] == [
        ('Could not access file', 'RAW-R0001-DA01-S00000.h5')]
    assert 'PermissionError' in probs[0]['error']


def test_run_files_map_disagreeing(tmp_path, monkeypatch):
    make_demo_run(tmp_path)
    from xfeldata import run_files_map
    monkeypatch.setattr(run_files_map, 'writing_enabled', lambda: True)
    xfeldata.RunDirectory(tmp_path)   # writes karabo_data_map.json
    map_path = tmp_path / 'karabo_data_map.json'
    entries = json.loads(map_path.read_text())
    assert RunValidator(tmp_path, processes=1).run_checks() == []
    entries[0]['train_ids'] = entries[0]['train_ids'][:-1]
    entries[1]['control_sources'] = ['NOT/A/SOURCE']
    map_path.write_text(json.dumps(entries))
    probs = RunValidator(tmp_path, processes=1).run_checks()
    assert [(p['msg'], p['file'], p['differing']) for p in probs] == [
        ('Incorrect data map cache entry', entries[0]['filename'], ['train_ids']),
        ('Incorrect data map cache entry', entries[1]['filename'], ['control_sources'])]
    assert RunValidator(tmp_path, skip_checks=['run_json_cache'], processes=1
                        ).run_checks() == []


def test_overview_file_included_but_not_in_conflicts(tmp_path):
    make_demo_run(tmp_path)
    # A copy of a data file named overview.h5: validated as a file, and the
    # run's conflict check leaves it out (it would repeat every train).
    shutil.copy(tmp_path / 'RAW-R0001-DA01-S00000.h5', tmp_path / 'overview.h5')
    v = RunValidator(tmp_path, processes=1)
    assert v.run_checks() == []
    assert 'overview.h5' in v.filenames


def test_unreadable_entry_is_access_problem(tmp_path):
    # As root, permissions do not stop reads: a folder named like a data file
    # fails the plain read the same way ("Could not access file").
    good_file(tmp_path / 'RAW-R0001-DA01-S00000.h5')
    (tmp_path / 'RAW-R0001-DA02-S00000.h5').mkdir()
    probs = RunValidator(tmp_path, processes=1).run_checks()
    assert [(q['msg'], q['file']) for q in probs] == [
        ('Could not access file', 'RAW-R0001-DA02-S00000.h5')]
    assert 'IsADirectoryError' in probs[0]['error']
