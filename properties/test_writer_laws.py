"""Round-trip laws of the writers (issue 7).

For random synthetic runs (every format version, sequences, partial
aggregators, suspect trains, padding, old-style indexes, legacy names) and
random selections of sources, keys and trains:

* ``sel.write(f)`` then ``H5File(f)`` gives the same sources, keys, train IDs,
  per-train counts and identical arrays for every key as reading ``sel``;
* the same for ``sel.write_virtual(f)``;
* an overview file written for the run is used by ``RunDirectory`` and gives
  the same answers as the run's own files.
"""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

import xfeldata
from xfeldata import voview, writer
from xfeldata.testing import Aggregator, InstrumentSource, Key, RunSpec
from xfeldata.testing.strategies import run_specs, write_example

SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow], deadline=None)


@st.composite
def selections(draw, run):
    """A selection of ``run``: some sources (some with a subset of keys), some trains."""
    sources = sorted(run.all_sources)
    chosen = draw(st.lists(st.sampled_from(sources), min_size=1, max_size=len(sources),
                           unique=True))
    seln = {}
    for src in chosen:
        keys = sorted(run[src].keys())
        if keys and draw(st.booleans()):
            seln[src] = set(draw(st.lists(st.sampled_from(keys), min_size=1,
                                          max_size=len(keys), unique=True)))
        else:
            seln[src] = None
    sel = run.select(seln)
    tids = np.asarray(sel.train_ids, dtype=np.uint64)
    how = draw(st.sampled_from(['all', 'slice', 'ids']))
    if how == 'slice' and len(tids):
        a = draw(st.integers(0, len(tids) - 1))
        b = draw(st.integers(a + 1, len(tids)))
        step = draw(st.integers(1, 3))
        sel = sel.select_trains(np.s_[a:b:step])
    elif how == 'ids' and len(tids):
        mask = draw(st.lists(st.booleans(), min_size=len(tids), max_size=len(tids)))
        picked = tids[np.asarray(mask, dtype=bool)]
        if len(picked):
            sel = sel.select_trains(xfeldata.by_id[picked])
    return sel


def expected_sources(sel) -> set:
    """Selected sources plus the canonical name of every selected legacy name."""
    legacy = sel.legacy_sources
    return set(sel.all_sources) | {legacy[s] for s in sel.all_sources if s in legacy}


def expected_keys(sel, src) -> set:
    """A legacy name is a link to its canonical source: both show the keys selected
    under either name."""
    legacy = sel.legacy_sources
    canon = legacy.get(src, src)
    names = [canon] + [s for s in sel.all_sources if legacy.get(s) == canon]
    return set().union(*(sel[n].keys() for n in names if n in sel.all_sources))


def assert_same_data(sel, back):
    """``back`` (a written file, opened) answers exactly as ``sel`` for sel's sources."""
    assert np.array_equal(np.asarray(back.train_ids, np.uint64),
                          np.asarray(sel.train_ids, np.uint64))
    assert set(back.all_sources) == expected_sources(sel)
    for src in sorted(sel.all_sources):
        sd, bd = sel[src], back[src]
        assert bd.keys() == expected_keys(sel, src), src
        for key in sorted(sd.keys()):
            kd, bk = sd[key], bd[key]
            assert bk.shape == kd.shape, (src, key)
            assert np.array_equal(bk.data_counts(labelled=False),
                                  kd.data_counts(labelled=False)), (src, key)
            a, b = kd.ndarray(), bk.ndarray()
            assert a.dtype == b.dtype, (src, key)
            np.testing.assert_array_equal(b, a, err_msg=f"{src} {key}")


def _open(tmp_path, spec, inc_suspect):
    m = write_example(tmp_path, spec)
    return xfeldata.RunDirectory(m.directory, inc_suspect_trains=inc_suspect,
                                 _use_voview=False), m.directory


@SETTINGS
@given(spec=run_specs(max_trains=8, max_aggregators=2, max_sequences=2),
       inc_suspect=st.booleans(), data=st.data())
def test_write_round_trip(tmp_path, spec, inc_suspect, data):
    run, d = _open(tmp_path, spec, inc_suspect)
    sel = data.draw(selections(run))
    out = f"{d}-written.h5"
    sel.write(out, progress=False)
    with xfeldata.H5File(out) as back:
        assert_same_data(sel, back)


@SETTINGS
@given(n=st.integers(1, 12), c0=st.integers(1, 3), tile=st.booleans(), data=st.data())
def test_raw_chunk_copy_round_trip(tmp_path, n, c0, tile, data):
    """Compressed keys copied as stored chunks (threshold 0) equal the source data for
    random counts, sequence splits, chunk heights and train selections."""
    tids = np.arange(5000, 5000 + n, dtype=np.uint64)
    counts = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    starts = data.draw(st.lists(st.integers(1, max(1, n - 1)), max_size=2, unique=True))
    starts = tuple(sorted(x for x in starts if 0 < x < n))
    chunks = (c0, 2, 3) if tile else (c0, 4, 6)
    src = InstrumentSource('RAW/COPY/X:out', {
        'g.z': Key(np.int32, (4, 6), chunks=chunks, compression='gzip', compression_opts=1)},
        groups={'g': counts})
    m = write_example(tmp_path, RunSpec(tids, [Aggregator('DA01', [src],
                                                          sequence_starts=starts)]))
    run = xfeldata.RunDirectory(m.directory, _use_voview=False)
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    if mask.any():
        run = run.select_trains(xfeldata.by_id[tids[mask]])
    saved = writer.RAW_COPY_MIN_BYTES
    writer.RAW_COPY_MIN_BYTES = 0
    try:
        out = f"{m.directory}-raw.h5"
        run.write(out, progress=False)
    finally:
        writer.RAW_COPY_MIN_BYTES = saved
    with xfeldata.H5File(out) as back:
        assert_same_data(run, back)
        np.testing.assert_array_equal(
            back['RAW/COPY/X:out', 'g.z'].ndarray(),
            m.expected('RAW/COPY/X:out', 'g.z', np.asarray(run.train_ids, np.uint64)))


@SETTINGS
@given(spec=run_specs(max_trains=8, max_aggregators=2, max_sequences=2),
       inc_suspect=st.booleans(), data=st.data())
def test_write_virtual_round_trip(tmp_path, spec, inc_suspect, data):
    run, d = _open(tmp_path, spec, inc_suspect)
    sel = data.draw(selections(run))
    out = f"{d}-virtual.h5"
    sel.write_virtual(out, progress=False)
    with xfeldata.H5File(out) as back:
        assert_same_data(sel, back)


@settings(SETTINGS, max_examples=15)
@given(spec=run_specs(max_trains=8, max_aggregators=2, max_sequences=2))
def test_voview_round_trip(tmp_path, spec):
    m = write_example(tmp_path, spec)
    path = voview.write_for_run(m.directory, progress=False)
    plain = xfeldata.RunDirectory(m.directory, _use_voview=False)
    via = xfeldata.RunDirectory(m.directory)
    assert [fa.filename for fa in via.files] == [path]
    assert_same_data(plain, via)


# -- fast paths of the copying writer (xfeldata._write_fast) ----------------------------------

class _PerKeyWriter(writer.FileWriter):
    """Overrides copy_dataset, which turns the batched small-key path off."""

    def copy_dataset(self, source, key):
        return super().copy_dataset(source, key)


def _datasets(path) -> dict:
    """Every dataset of a file: dtype, shape, chunks, filters and values (plain h5py)."""
    import h5py
    out = {}
    with h5py.File(path, 'r') as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                out[name] = (obj.dtype, obj.shape, obj.maxshape, obj.chunks, obj.compression,
                             data.tolist() if data.dtype.hasobject else data.tobytes())
        f.visititems(visit)
    return out


@SETTINGS
@given(spec=run_specs(max_trains=8, max_aggregators=2, max_sequences=2),
       inc_suspect=st.booleans(), data=st.data())
def test_key_plans_and_batches_equal_per_key_path(tmp_path, spec, inc_suspect, data):
    """The plan derived from the index group's plan is ``KeyData.plan()``, and small keys
    copied in batches give the same file content as copying key by key."""
    from xfeldata._write_fast import key_plan
    run, d = _open(tmp_path, spec, inc_suspect)
    sel = data.draw(selections(run))
    for src in sorted(sel.all_sources):
        sd = sel[src]
        by_group = {}
        for key in sorted(sd.keys()):
            kd = sd[key]
            base = by_group.setdefault(kd.index_group, kd.plan())
            assert key_plan(base, kd) == kd.plan(), (src, key)
    batched, per_key = f"{d}-batched.h5", f"{d}-per-key.h5"
    sel.write(batched, progress=False)
    with _PerKeyWriter(per_key, sel) as w:
        w.write()
    assert _datasets(batched) == _datasets(per_key)


@SETTINGS
@given(n=st.integers(1, 12), c0=st.integers(1, 3), tile=st.booleans(),
       gzip=st.booleans(), hdf5_reads=st.booleans(), data=st.data())
def test_stored_chunk_copy_is_byte_identical(tmp_path, n, c0, tile, gzip, hdf5_reads, data):
    """Keys copied as stored chunks (positional reads, or HDF5's chunk reads) hold
    exactly the source's chunk bytes and read back as a decoding copy does."""
    import h5py

    from xfeldata import _write_fast
    tids = np.arange(7000, 7000 + n, dtype=np.uint64)
    counts = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    starts = data.draw(st.lists(st.integers(1, max(1, n - 1)), max_size=2, unique=True))
    starts = tuple(sorted(x for x in starts if 0 < x < n))
    # 64 x 32 int16 = 4 KiB entries: unfiltered chunks of a whole entry are copied stored,
    # unfiltered tiles (1 KiB) are not.
    chunks = (c0, 32, 16) if tile else (c0, 64, 32)
    opts = {'compression': 'gzip', 'compression_opts': 1} if gzip else {}
    src = InstrumentSource('RAW/BYTES/X:out', {'g.z': Key(np.int16, (64, 32), chunks=chunks,
                                                          **opts)}, groups={'g': counts})
    m = write_example(tmp_path, RunSpec(tids, [Aggregator('DA01', [src],
                                                          sequence_starts=starts)]))
    run = xfeldata.RunDirectory(m.directory, _use_voview=False)
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    if mask.any():
        run = run.select_trains(xfeldata.by_id[tids[mask]])
    saved = writer.RAW_COPY_MIN_BYTES, _write_fast._pread_base, _write_fast.copy_chunks_raw
    stored = []

    def spy(plan, dest, progress=None):
        done = saved[2](plan, dest, progress)
        if plan.label.endswith(' g.z'):
            stored.append(done)
        return done
    try:
        writer.RAW_COPY_MIN_BYTES = 0
        _write_fast.copy_chunks_raw = spy
        if hdf5_reads:
            _write_fast._pread_base = lambda path: None
        raw = f"{m.directory}-stored.h5"
        run.write(raw, progress=False)
        writer.RAW_COPY_MIN_BYTES = 1 << 62       # every key decoded and re-encoded
        decoded = f"{m.directory}-decoded.h5"
        run.write(decoded, progress=False)
    finally:
        writer.RAW_COPY_MIN_BYTES, _write_fast._pread_base, _write_fast.copy_chunks_raw = saved
    chunk_bytes = int(np.prod(chunks)) * 2
    if c0 == 1 and (gzip or chunk_bytes >= _write_fast.RAW_UNFILTERED_MIN_CHUNK):
        assert stored == [True] or not len(run.train_ids) or not counts[mask if mask.any()
                                                                         else slice(None)].any()
    name = 'INSTRUMENT/RAW/BYTES/X:out/g/z'
    plan = run['RAW/BYTES/X:out', 'g.z'].plan()
    with h5py.File(raw, 'r') as fr, h5py.File(decoded, 'r') as fd:
        np.testing.assert_array_equal(fr[name][()], fd[name][()])
        np.testing.assert_array_equal(
            fr[name][()], m.expected('RAW/BYTES/X:out', 'g.z', np.asarray(run.train_ids)))
        if stored != [True]:
            return      # steps not on chunk boundaries: decoded, as the other file
        ds = fr[name]
        grid = [(i, j) for i in range(0, 64, chunks[1]) for j in range(0, 32, chunks[2])]
        for s in plan.steps:     # every output chunk is its source chunk, byte for byte
            with h5py.File(s.path, 'r') as fs:
                sds = fs[s.dataset]
                for r in range(s.src_start, s.src_stop, c0):
                    for i, j in grid:
                        want = sds.id.read_direct_chunk((r, i, j))
                        got = ds.id.read_direct_chunk((s.dst_start + r - s.src_start, i, j))
                        assert got == want
