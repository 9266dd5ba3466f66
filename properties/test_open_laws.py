"""Opening a synthetic run gives back exactly what was written.

For random runs (every format version, sequences, suspect trains, padding,
old-style indexes, legacy links, empty trains): train IDs, sources and
per-train counts equal the writer's manifest, with and without suspect
trains, and through a warm index cache.
"""
import os
import tempfile

import numpy as np
from hypothesis import HealthCheck, given, settings

import xfeldata
from xfeldata import _tiers, index_cache
from xfeldata.core.runindex import RunIndex
from xfeldata.testing import strategies as xst

_DIR = tempfile.mkdtemp(prefix='xfeldata-open-laws-')


def _check(dc, m, inc_suspect):
    want = m.train_ids if inc_suspect else m.valid_train_ids
    assert np.array_equal(np.asarray(dc.train_ids, dtype=np.uint64), want)
    assert sorted(dc.control_sources) == list(m.control_sources)
    assert sorted(dc.instrument_sources) == list(m.instrument_sources)
    assert dc.legacy_sources == dict(m.legacy_sources)
    for (src, group), counts in m.counts.items():
        sd = dc[src]
        if src in m.control_sources and not sd.keys():
            continue
        got = sd.data_counts(labelled=False, index_group=group)
        exp = m.counts_for(src, group, train_ids=np.asarray(dc.train_ids, np.uint64))
        assert np.array_equal(got, exp), (src, group)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
          deadline=None)
@given(spec=xst.run_specs(aux=False))
def test_open_gives_back_what_was_written(spec):
    m = xst.write_example(_DIR, spec)
    for inc in (True, False):
        _tiers.MEMO.clear()
        dc = xfeldata.RunDirectory(m.directory, inc_suspect_trains=inc)
        _check(dc, m, inc)
    # Again in a "new process": an empty memo, tier 0 from the index cache,
    # and the train IDs and source sets from its run summary, which equal
    # what the records give.
    _tiers.MEMO.clear()
    index_cache.forget_runs()
    dc = xfeldata.RunDirectory(m.directory)
    _check(dc, m, True)
    fresh = RunIndex(dc._index.files)
    assert np.array_equal(dc._index.train_ids, fresh.train_ids)
    assert dc._index.control_sources == fresh.control_sources
    assert dc._index.instrument_sources == fresh.instrument_sources


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=xst.run_specs(aux=False))
def test_stale_cache_is_ignored(spec):
    m = xst.write_example(_DIR, spec)
    xfeldata.RunDirectory(m.directory)          # writes the index cache
    # Rewrite one file with other trains: size/mtime change, the cache is stale.
    f0 = m.files[0].path
    st = os.stat(f0)
    os.utime(f0, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    _tiers.MEMO.clear()
    dc = xfeldata.RunDirectory(m.directory)
    _check(dc, m, True)
    fi = [f for f in dc._index.files if f.path == os.path.abspath(f0)][0]
    assert fi.mtime == os.stat(f0).st_mtime



# -- two processes opening one run at once --------------------------------------------

def _open_in_child(run_dir, cache_dir, start_at):
    """Child process: open the run at ``start_at`` (wall clock), read its counts, save."""
    import time
    os.environ['XFELDATA_CACHE'] = cache_dir
    from xfeldata import index_cache
    time.sleep(max(0.0, start_at - time.time()))
    dc = xfeldata.RunDirectory(run_dir)
    for src in sorted(dc.all_sources):
        dc[src].data_counts(labelled=False)
    index_cache.save_dirty()
    return len(dc.train_ids)


_POOL = []


def _pool():
    """Two spawned worker processes, started once for all examples."""
    if not _POOL:
        import atexit
        import multiprocessing as mp
        _POOL.append(mp.get_context('spawn').Pool(2))
        atexit.register(_POOL[0].terminate)
    return _POOL[0]


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=xst.run_specs(aux=False))
def test_two_processes_opening_at_once_leave_a_valid_cache(spec):
    import time

    import pytest

    from xfeldata import _scan, index_cache
    m = xst.write_example(_DIR, spec)
    cache_dir = tempfile.mkdtemp(prefix='xfeldata-two-procs-')
    start_at = time.time() + 0.2
    results = [_pool().apply_async(_open_in_child, (m.directory, cache_dir, start_at))
               for _ in range(2)]
    assert [r.get(60) for r in results] == [len(m.train_ids)] * 2
    old = os.environ.get('XFELDATA_CACHE')
    os.environ['XFELDATA_CACHE'] = cache_dir
    try:
        _tiers.MEMO.clear()
        index_cache.forget_runs()
        path = index_cache.cache_path(m.directory)
        assert index_cache._parse_cache(path.read_bytes()) is not None
        # Opening again scans nothing: every file's tier 0 is in the cache.
        with pytest.MonkeyPatch.context() as mp_:
            def refuse(*args, **kwargs):
                raise AssertionError('a file was scanned although the cache holds it')
            mp_.setattr(_scan, 'scan_file_index', refuse)
            dc = xfeldata.RunDirectory(m.directory)
        _check(dc, m, True)
    finally:
        _tiers.MEMO.clear()
        index_cache.forget_runs()
        if old is None:
            del os.environ['XFELDATA_CACHE']
        else:
            os.environ['XFELDATA_CACHE'] = old

# -- the run index: fast derived tables equal their plain definitions ---------------
#
# RunIndex groups files by their source sets, works on distinct train-ID arrays
# and proves "no conflict" from first/last train IDs before looking closer.
# These laws compare it with the plain, per-file definitions, on random file
# records (no files on disk): unsorted and repeated train IDs, files sharing
# one array object (as records decoded from the index cache do), a source in
# both sections, legacy names.

from hypothesis import strategies as st  # noqa: E402

from xfeldata.core.records import FileIndex  # noqa: E402
from xfeldata.core.runindex import find_conflicts  # noqa: E402

_CTRL = ('A', 'B', 'C')
_INST = ('X:out', 'Y:out', 'A')


@st.composite
def _file_records(draw):
    n_arrays = draw(st.integers(1, 4))
    arrays = []
    for _ in range(n_arrays):
        tids = draw(st.one_of(
            st.lists(st.integers(1, 40), max_size=8),
            st.builds(lambda a, n: list(range(a, a + n)), st.integers(1, 40),
                      st.integers(0, 8))))
        arr = np.array(tids, np.uint64)
        arr.flags.writeable = False
        valid = np.array(draw(st.lists(st.booleans(), min_size=len(tids),
                                       max_size=len(tids))), bool)
        valid.flags.writeable = False
        arrays.append((arr, valid))
    files = []
    for i in range(draw(st.integers(1, 6))):
        arr, valid = arrays[draw(st.integers(0, n_arrays - 1))]   # shared objects
        ctrl = draw(st.frozensets(st.sampled_from(_CTRL)))
        inst = draw(st.frozensets(st.sampled_from(_INST)))
        legacy = {'X:out': 'Y:out'} if 'X:out' in inst and draw(st.booleans()) else {}
        files.append(FileIndex.build(f'/run/f{i}.h5', 1, 1.0, arr, valid, ctrl, inst,
                                     legacy))
    return files


def _plain_source_files(files):
    out = {}
    for i, f in enumerate(files):
        for s in sorted(f.control_sources):
            out.setdefault(s, []).append(i)
        for s in sorted(f.instrument_sources):
            out.setdefault(s, []).append(i)
    return {s: tuple(v) for s, v in out.items()}


@settings(deadline=None)
@given(files=_file_records(), inc=st.booleans())
def test_run_index_tables_equal_plain_definitions(files, inc):
    plain = _plain_source_files(files)
    legacy = {}
    for f in files:
        legacy.update(f.legacy_pairs)
    expected = find_conflicts(files, {s: ix for s, ix in plain.items() if s not in legacy},
                              inc)
    try:
        ri = RunIndex.build(files, inc)
    except ValueError as e:
        assert expected and e.conflicts == expected
        ri = RunIndex.build(files, inc, check_conflicts=False)
    else:
        assert not expected
    assert ri.source_files == plain
    usable = [f.train_ids if inc else f.train_ids[f.valid] for f in files]
    assert np.array_equal(ri.train_ids, np.unique(np.concatenate(usable)))
    assert ri.train_ids.dtype == np.uint64 and not ri.train_ids.flags.writeable
    assert ri.control_sources == frozenset().union(*(f.control_sources for f in files))
    assert ri.instrument_sources == frozenset().union(
        *(f.instrument_sources for f in files))
    assert ri.legacy_sources == legacy
