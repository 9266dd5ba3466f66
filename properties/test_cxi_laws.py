"""Laws of virtual CXI files (xfeldata.core.cxi and xfeldata.write_cxi).

* Pure: the virtual maps of a module, applied to its source rows, put every row
  at its frame (the same place the detector's assembly puts it) and nothing
  anywhere else; the maps are maximal (no two could be one).
* End to end: for random module presence, missing trains, frame counts and
  sequence splits, the CXI file's ``data`` (read with plain h5py) equals the
  detector's assembled array frame by frame, with the fill value in the slots
  no module file provides; train and pulse IDs match.
"""
import tempfile
import warnings

import h5py
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from xfeldata import RunDirectory
from xfeldata.components import AGIPD1M, JUNGFRAU
from xfeldata.core.cxi import (
    VirtualDatasetSpec,
    _module_maps_by_row,
    covered_frames,
    keep_rows,
    module_maps,
    pair_mask,
)
from xfeldata.core.detectors import FrameLayout
from xfeldata.core.plan import ReadPlan, ReadStep
from xfeldata.testing import Aggregator, jungfrau_module, write_run, xtdf_module

# -- pure: maps ----------------------------------------------------------------------------

@st.composite
def module_case(draw):
    """A detector layout and one module's plan: some of the trains, rows in 1-3 'files',
    maybe with gaps between trains' rows."""
    counts = draw(st.lists(st.integers(0, 4), min_size=1, max_size=8))
    tids = np.arange(100, 100 + len(counts), dtype=np.uint64)
    has = draw(st.lists(st.booleans(), min_size=len(counts), max_size=len(counts)))
    # the module may have more rows in a train than the detector keeps (they are
    # dropped), and trains the detector does not keep (min_modules)
    rows = [c + draw(st.integers(0, 1)) for c in counts]
    in_layout = draw(st.lists(st.booleans(), min_size=len(counts), max_size=len(counts)))
    n_files = draw(st.integers(1, 3))
    cuts = sorted(draw(st.lists(st.integers(0, len(counts)), min_size=n_files - 1,
                                max_size=n_files - 1)))
    gap = draw(st.integers(0, 1))
    steps, row_tids, dst = [], [], 0
    bounds = [0] + cuts + [len(counts)]
    for f, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        pos = 0
        for i in range(a, b):
            n = rows[i]
            if not has[i] or n == 0:
                pos += gap
                continue
            if steps and steps[-1].path == f'/f{f}.h5' and steps[-1].src_stop == pos:
                s = steps[-1]
                steps[-1] = ReadStep(s.path, s.dataset, s.src_start, pos + n, s.dst_start,
                                     dst + n)
            else:
                steps.append(ReadStep(f'/f{f}.h5', '/d', pos, pos + n, dst, dst + n))
            row_tids += [tids[i]] * n
            pos += n
            dst += n
    plan = ReadPlan(np.dtype('i8'), (dst,), tuple(steps))
    cells = draw(st.sampled_from([1, 2]))
    keep = np.array(in_layout)
    layout = FrameLayout.build(tids[keep], np.array(counts)[keep])
    return layout, plan, np.array(row_tids, np.uint64), cells


def _source_values(plan):
    """A distinct value for every (file, row) of the plan."""
    return {s.path: 1000 * int(s.path[2]) for s in plan.steps}


@given(module_case(), st.integers(0, 3))
def test_maps_place_rows_at_their_frames(case, slot):
    layout, plan, row_tids, cells = case
    base = _source_values(plan)
    maps = module_maps(plan, row_tids, layout, slot, cells)
    n_frames = layout.n_frames * cells
    got = np.full((n_frames, 4), -1, np.int64)
    for m in maps:
        n = (m.src_stop - m.src_start) * cells
        rows = np.repeat(np.arange(m.src_start, m.src_stop), cells)
        assert (got[m.frame_start:m.frame_start + n, m.slot] == -1).all()   # no overlap
        got[m.frame_start:m.frame_start + n, m.slot] = base[m.path] + rows
    # expectation, row by row: the k-th row of a train goes to that train's k-th frame
    exp = np.full((n_frames, 4), -1, np.int64)
    within = {}
    dst = 0
    for s in plan.steps:
        for r in range(s.src_start, s.src_stop):
            t = row_tids[dst]
            dst += 1
            k = within.get(t, 0)
            within[t] = k + 1
            i = int(np.searchsorted(layout.train_ids, t))
            if i < len(layout.train_ids) and layout.train_ids[i] == t and k < layout.counts[i]:
                f0 = (layout.offsets[i] + k) * cells
                exp[f0:f0 + cells, slot] = base[s.path] + r
    np.testing.assert_array_equal(got, exp)
    np.testing.assert_array_equal(covered_frames(maps, n_frames, 4, cells), exp >= 0)
    # maximal: consecutive maps never continue each other in file and frames
    for a, b in zip(maps[:-1], maps[1:]):
        assert not (a.path == b.path and a.src_stop == b.src_start and
                    a.frame_start + (a.src_stop - a.src_start) * cells == b.frame_start)
    # the row-by-row construction (remap_plan, as det[key].ndarray() uses) agrees
    assert maps == _module_maps_by_row(plan, row_tids, layout, slot, cells)
    # and their hyperslabs cover the same number of elements on both sides
    spec = VirtualDatasetSpec('data', '/d', 'u2', (n_frames, 4, 3), (cells, 3), cells, 0,
                              maps, 'x')
    for (v0, vc), (s0, sc) in spec.blocks():
        assert np.prod(vc) == np.prod(sc)


@given(st.lists(st.tuples(st.integers(1, 4), st.integers(0, 3)), max_size=12),
       st.lists(st.tuples(st.integers(1, 4), st.integers(0, 3)), max_size=6))
def test_pair_mask_and_keep_rows(rows, wanted):
    t = np.array([r[0] for r in rows], np.uint64)
    p = np.array([r[1] for r in rows], np.uint64)
    mask = pair_mask(t, p, [w[0] for w in wanted], [w[1] for w in wanted])
    assert mask.tolist() == [r in set(wanted) for r in rows]
    plan = ReadPlan(np.dtype('i8'), (len(rows),),
                    (ReadStep('/a.h5', '/d', 5, 5 + len(rows), 0, len(rows)),) if rows else ())
    q = keep_rows(plan, mask)
    got = [r for s in q.steps for r in range(s.src_start, s.src_stop)]
    assert got == [5 + i for i in np.flatnonzero(mask).tolist()]
    assert q.shape == (int(mask.sum()),)


# -- end to end -------------------------------------------------------------------------------

@st.composite
def xtdf_runs(draw):
    n_trains = draw(st.integers(1, 5))
    frames = draw(st.lists(st.integers(0, 3), min_size=n_trains, max_size=n_trains))
    mods = draw(st.lists(st.integers(0, 15), min_size=1, max_size=4, unique=True))
    missing = {m: draw(st.lists(st.integers(0, n_trains - 1), max_size=2, unique=True))
               for m in mods}
    seq = {m: draw(st.booleans()) for m in mods}
    raw = draw(st.booleans())
    min_modules = draw(st.integers(1, len(mods)))
    return frames, missing, seq, raw, min_modules


def _write(d, frames, missing, seq, raw):
    tids = np.arange(10000, 10000 + len(frames))
    aggs = []
    for m, miss in missing.items():
        keep = [i for i in range(len(frames)) if i not in miss]
        aggs.append(Aggregator(f'AGIPD{m:02d}', [xtdf_module(
            'SPB_DET_AGIPD1M-1', m, frames=[frames[i] for i in keep], frame_shape=(2, 3),
            raw=raw, corr_names=not raw)], train_ids=tids[keep],
            sequence_starts=(1,) if seq[m] and len(keep) > 1 else ()))
    write_run(d, train_ids=tids, aggregators=aggs)


@settings(max_examples=12, deadline=None)
@given(xtdf_runs())
def test_cxi_data_equals_assembled_array(case):
    frames, missing, seq, raw, min_modules = case
    with tempfile.TemporaryDirectory() as d:
        _write(d, frames, missing, seq, raw)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            try:
                det = AGIPD1M(RunDirectory(d), min_modules=min_modules)
            except ValueError as e:
                assert 'No data found' in str(e)
                return
        path = det.write_virtual_cxi(f'{d}/out.cxi')
        exp = np.moveaxis(det['image.data'].ndarray(module_gaps=True), 0, 1)
        avail = det['image.data'].data_availability(module_gaps=True).T
        with h5py.File(path, 'r') as f:
            data = f['entry_1/data_1/data'][()]
            np.testing.assert_array_equal(data, exp)
            fill = f['entry_1/data_1/data'].fillvalue
            missing_slots = data[~avail]
            if raw:
                assert (missing_slots == fill).all() and fill == 0
            else:
                assert np.isnan(missing_slots).all() and np.isnan(fill)
            assert f['entry_1/trainId'][()].tolist() == det.train_ids_perframe.tolist()
            np.testing.assert_array_equal(f['entry_1/pulseId'][()],
                                          det._frame_ids('image.pulseId'))
            assert f['entry_1/cellId'][()][avail].tolist() == \
                np.broadcast_to(f['entry_1/pulseId'][()][:, None], avail.shape)[avail].tolist()


@settings(max_examples=6, deadline=None)
@given(st.integers(1, 4), st.lists(st.integers(1, 4), min_size=1, max_size=3, unique=True),
       st.lists(st.integers(0, 3), max_size=2, unique=True))
def test_jungfrau_cxi_equals_assembled_array(cells, mods, missing):
    tids = np.arange(10000, 10004)
    aggs = []
    for i, m in enumerate(mods):
        keep = [j for j in range(4) if not (i == 0 and j in missing)]
        aggs.append(Aggregator(f'JNGFR{m:02d}', [jungfrau_module(
            'FXE_XAD_JF1M', m, cells=cells, raw=False, frame_shape=(2, 3),
            counts=[1] * len(keep))], train_ids=tids[keep]))
    with tempfile.TemporaryDirectory() as d:
        write_run(d, train_ids=tids, aggregators=aggs)
        det = JUNGFRAU(RunDirectory(d), n_modules=4)
        path = det.write_virtual_cxi(f'{d}/out.cxi')
        arr = det['data.adc'].ndarray(module_gaps=True)     # (4, trains, cells, 2, 3)
        exp = np.moveaxis(arr.reshape(4, -1, 2, 3), 0, 1)
        with h5py.File(path, 'r') as f:
            np.testing.assert_array_equal(f['entry_1/data_1/data'][()], exp)
            assert f['entry_1/memoryCell'][()].tolist() == \
                list(range(cells)) * len(det.train_ids)
