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
from xfeldata import _tiers
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
    # Again in a "new process": an empty memo, tier 0 from the index cache.
    _tiers.MEMO.clear()
    dc = xfeldata.RunDirectory(m.directory)
    _check(dc, m, True)


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
