"""Laws of multi-module detector assembly (core.detectors and xfeldata.components)."""
import tempfile
import warnings

import h5py
import numpy as np
from hypothesis import given, settings, strategies as st

import xfeldata
from xfeldata.components import AGIPD1M
from xfeldata.core.detectors import (FrameLayout, normalise_pulses, remap_plan,
                                     select_frames)
from xfeldata.core.plan import ReadPlan, ReadStep
from xfeldata.testing import Aggregator, write_run, xtdf_module

counts_st = st.lists(st.integers(0, 4), min_size=1, max_size=8)


def _per_train_index(counts):
    return np.concatenate([np.arange(n) for n in counts] + [np.zeros(0, int)])


@given(counts_st, st.integers(0, 5), st.integers(0, 6), st.integers(1, 3))
def test_select_frames_by_index_is_per_train_slicing(counts, a, b, c):
    L = FrameLayout.build(np.arange(1, len(counts) + 1), counts)
    mask = select_frames(L, normalise_pulses(slice(a, b, c)))
    exp = np.concatenate([np.isin(np.arange(n), np.arange(n)[a:b:c]) for n in counts]
                         + [np.zeros(0, bool)])
    assert mask.tolist() == exp.tolist()


@st.composite
def module_rows(draw):
    """A layout, and a module holding some of its trains (rows in train order, in
    one or two 'files' with gaps between trains' rows)."""
    counts = draw(counts_st)
    tids = np.arange(100, 100 + len(counts), dtype=np.uint64)
    has = draw(st.lists(st.booleans(), min_size=len(counts), max_size=len(counts)))
    gap = draw(st.integers(0, 2))
    steps, row_tids, src = [], [], []
    pos = 0
    dst = 0
    for t, n, h in zip(tids, counts, has):
        if not h or n == 0:
            continue
        pos += gap
        steps.append(ReadStep('/f.h5', '/d', pos, pos + n, dst, dst + n))
        row_tids += [t] * n
        src += list(range(pos, pos + n))
        pos += n
        dst += n
    plan = ReadPlan(np.dtype('i8'), (dst,), tuple(steps))
    return FrameLayout.build(tids, counts), plan, np.array(row_tids, np.uint64), pos


def _execute_fake(plan, data):
    out = np.full(plan.shape, -1, np.int64)
    for s in plan.steps:
        out[s.dst_start:s.dst_stop] = data[s.src_start:s.src_stop]
    return out


@given(module_rows())
def test_remap_places_each_row_at_its_frame(case):
    layout, plan, row_tids, n_src = case
    data = np.arange(1000, 1000 + max(n_src, 1))
    remapped, covered = remap_plan(plan, row_tids, layout)
    got = _execute_fake(remapped, data)
    # expectation: the module's own rows, then placed train by train
    own = _execute_fake(plan, data)
    exp = np.full(layout.n_frames, -1, np.int64)
    pos = 0
    for t, off, n in zip(layout.train_ids, layout.offsets[:-1], layout.counts):
        k = int((row_tids == t).sum())
        if k:
            exp[off:off + n] = own[pos:pos + k]
            pos += k
    assert got.tolist() == exp.tolist()
    assert covered.tolist() == (exp >= 0).tolist()
    # steps are real runs: consecutive in source and destination
    for s in remapped.steps:
        assert s.src_stop - s.src_start == s.dst_stop - s.dst_start > 0


# -- end to end, with files ------------------------------------------------------------------

@st.composite
def detector_runs(draw):
    n_trains = draw(st.integers(1, 5))
    frames = draw(st.lists(st.integers(0, 3), min_size=n_trains, max_size=n_trains))
    n_mod = draw(st.integers(1, 3))
    missing = [draw(st.lists(st.integers(0, n_trains - 1), max_size=2, unique=True))
               for _ in range(n_mod)]
    return frames, missing


def _h5_expected(directory, det):
    """(modules, frames, ...) from plain h5py reads, 0 where a module lacks the train."""
    layout = FrameLayout.build(det.train_ids, det.frame_counts.values)
    srcs = [det.modno_to_source[m] for m in sorted(det.modno_to_source)]
    out = None
    import os
    for i, src in enumerate(srcs):
        for fn in sorted(os.listdir(directory)):
            with h5py.File(os.path.join(directory, fn), 'r') as f:
                if f'INSTRUMENT/{src}' not in f:
                    continue
                ds = f[f'INSTRUMENT/{src}/image/data']
                if out is None:
                    out = np.zeros((len(srcs), layout.n_frames) + ds.shape[1:], ds.dtype)
                tids = f['INDEX/trainId'][:]
                first = f[f'INDEX/{src}/image/first'][:]
                count = f[f'INDEX/{src}/image/count'][:]
                for t, a, n in zip(tids, first.tolist(), count.tolist()):
                    j = int(np.searchsorted(layout.train_ids, t))
                    if n and j < len(layout.train_ids) and layout.train_ids[j] == t:
                        off = int(layout.offsets[j])
                        out[i, off:off + n] = ds[a:a + n]
    return out


@settings(max_examples=12, deadline=None)
@given(detector_runs(), st.integers(0, 2), st.integers(1, 3))
def test_detector_ndarray_equals_h5py_and_selection_laws(run, start, step):
    frames, missing = run
    tids = np.arange(10000, 10000 + len(frames))
    aggs = []
    for m, miss in enumerate(missing):
        keep = [i for i in range(len(frames)) if i not in miss]
        aggs.append(Aggregator(f'AGIPD{m:02d}', [xtdf_module(
            'SPB_DET_AGIPD1M-1', m, frames=[frames[i] for i in keep], frame_shape=(2, 3))],
            train_ids=tids[keep]))
    with tempfile.TemporaryDirectory() as d:
        write_run(d, train_ids=tids, aggregators=aggs)
        run_dc = xfeldata.RunDirectory(d)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            try:
                det = AGIPD1M(run_dc, raw=True)
            except ValueError as e:
                # no train has data in any module
                assert 'No data found' in str(e)
                assert all(frames[i] == 0 or all(i in mi for mi in missing)
                           for i in range(len(frames)))
                return
        kd = det['image.data']
        full = kd.ndarray()
        exp = _h5_expected(d, det)
        assert full.shape == exp.shape
        np.testing.assert_array_equal(full, exp)
        # a module lacking a train has fill (0) in exactly that train's frames
        avail = kd.data_availability()
        assert (full[~avail] == 0).all()
        # pulse selection by index == numpy slicing of the full array, train by train
        within = _per_train_index(det.frame_counts.values)
        sel = slice(start, None, step)
        mask = np.isin(within, np.arange(10)[sel]) & (within >= start) \
            & ((within - start) % step == 0)
        np.testing.assert_array_equal(kd.select_pulses(sel).ndarray(), full[:, mask])
        # the test files' pulse IDs are the frame positions: by ID == by index
        from xfeldata import by_id, by_index
        ids = list(range(start, 4, step))
        np.testing.assert_array_equal(kd.select_pulses(by_id[ids]).ndarray(),
                                      kd.select_pulses(by_index[ids]).ndarray())
        # split_trains concatenates to the whole
        for parts in (1, 2, 3):
            pieces = [p['image.data'].ndarray() for p in det.split_trains(parts=parts)]
            np.testing.assert_array_equal(np.concatenate(pieces, axis=1), full)
