"""Plan laws: executing a read plan equals reading the same rows with plain h5py.

One run is written once for the module (a fixture): control keys (scalar,
vector, string), an instrument source with two index groups and random
counts (zeros included) missing some trains, and suspect trains. (A
non-contiguous INDEX is not well-formed, FORMAT.md 3.1: it is read by the
format's chunk rule, tested in tests/test_plan.py.) For random keys, train selections and
regions of interest, ``run[src, key].select_trains(sel).ndarray(roi=roi)``
must equal the rows h5py reads following the INDEX, with the roi applied by
numpy; and the plan's ``nbytes``, ``n_reads`` and steps must describe that
output.
"""
import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xfeldata
from xfeldata import _execute, _tiers, by_id
from xfeldata.read_machinery import roi_shape
from xfeldata.testing import Aggregator, ControlSource, InstrumentSource, RunSpec, write_run

N_TRAINS = 60
FIRST = 1000
INST = 'INST/DET/A:output'
CTRL = 'CTRL/MOTOR/A'
KEYS = [  # (source, key, section, entry shape)
    (CTRL, 'x.value', 'CONTROL', ()),
    (CTRL, 'vec.value', 'CONTROL', (3, 4)),
    (CTRL, 'state.value', 'CONTROL', ()),
    (INST, 'data.img', 'INSTRUMENT', (4, 5, 6)),
    (INST, 'data.val', 'INSTRUMENT', ()),
    (INST, 'other.v', 'INSTRUMENT', (2,)),
]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    rng = np.random.default_rng(7)
    tids = np.arange(FIRST, FIRST + N_TRAINS)
    inst_tids = np.delete(tids, [0, 17, 18, 40])           # trains the instrument missed
    n_inst = len(inst_tids)
    ctrl = ControlSource(CTRL, {'x': np.float64, 'vec': (np.float32, (3, 4)), 'state': str})
    inst = InstrumentSource(INST, {'data.img': (np.uint16, (4, 5, 6)), 'data.val': np.int32,
                                   'other.v': (np.float32, (2,))},
                            groups={'data': rng.integers(0, 4, n_inst),
                                    'other': rng.integers(0, 2, n_inst)})
    valid = np.ones(N_TRAINS, bool)
    valid[[5, 30, 31]] = False
    spec = RunSpec(tids, [Aggregator('DA01', [ctrl], sequence_starts=(20, 41)),
                          Aggregator('DA02', [inst], sequence_starts=(25,),
                                     train_ids=inst_tids)],
                   valid=valid)
    d = tmp_path_factory.mktemp('plan-laws')
    write_run(d, spec)
    _tiers.MEMO.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('XFELDATA_CACHE', 'off')
        mp.setenv('XFELDATA_NO_RUN_MAP_WRITE', '1')
        return {inc: xfeldata.RunDirectory(d, inc_suspect_trains=inc) for inc in (True, False)}


def h5py_rows(files, source, key, section, train_ids, inc_suspect):
    """The entries of the selected trains, read with plain h5py following the INDEX.

    Returns (data, train ID per entry, list of (file, first row, stop row) per train).
    """
    group = '' if section == 'CONTROL' else key.split('.')[0]
    wanted = set(int(t) for t in train_ids)
    found = []   # (train ID, path, first, count)
    for path in files:
        with h5py.File(path, 'r') as f:
            if f'INDEX/{source}' not in f:
                continue
            tids = f['INDEX/trainId'][()]
            flag = f['INDEX/flag'][()] if 'INDEX/flag' in f else np.ones(len(tids), bool)
            base = f'INDEX/{source}' + (f'/{group}' if group else '')
            first, count = f[base + '/first'][()], f[base + '/count'][()]
            for i, t in enumerate(tids):
                if int(t) in wanted and (inc_suspect or flag[i]) and count[i] > 0:
                    found.append((int(t), path, int(first[i]), int(count[i])))
    found.sort(key=lambda x: (x[0], x[1]))
    ds_path = f"{section}/{source}/{key.replace('.', '/')}"
    parts, coords = [], []
    for t, path, a, n in found:
        with h5py.File(path, 'r') as f:
            ds = f[ds_path]
            parts.append(ds.asstr()[a:a + n] if h5py.check_string_dtype(ds.dtype) else ds[a:a + n])
        coords += [t] * n
    return parts, np.array(coords, np.uint64), [(p, a, a + n) for _, p, a, n in found]


@st.composite
def train_selections(draw):
    kind = draw(st.sampled_from(['all', 'slice', 'positions', 'ids', 'mask']))
    if kind == 'all':
        return np.s_[:]
    if kind == 'slice':
        a = draw(st.integers(-N_TRAINS, N_TRAINS))
        b = draw(st.integers(-N_TRAINS, N_TRAINS))
        return slice(a, b, draw(st.integers(1, 7)))
    if kind == 'positions':
        return draw(st.lists(st.integers(0, N_TRAINS - 4), max_size=20, unique=True))
    if kind == 'ids':
        ids = draw(st.lists(st.integers(FIRST - 3, FIRST + N_TRAINS + 3), max_size=25))
        return by_id[sorted(set(ids)) or [FIRST]]
    return draw(st.integers(0, 2**N_TRAINS - 1))     # a mask, made once the length is known


@st.composite
def rois(draw, shape):
    """A per-entry numpy index: ints, slices (negative steps too), Ellipsis, None, an array."""
    if not shape:
        return draw(st.sampled_from([(), (Ellipsis,), (None,)]))
    n = draw(st.integers(0, len(shape)))
    array_axis = draw(st.none() | st.integers(0, len(shape) - 1))
    parts = []
    for ax, dim in enumerate(shape[:n]):
        if ax == array_axis:
            parts.append(np.array(draw(st.lists(st.integers(-dim, dim - 1), min_size=1,
                                                max_size=4))))
            continue
        kind = draw(st.sampled_from(['int', 'slice', 'slice', 'full']))
        if kind == 'int':
            parts.append(draw(st.integers(-dim, dim - 1)))
        elif kind == 'slice':
            step = draw(st.sampled_from([None, 1, 2, 3, -1, -2]))
            parts.append(slice(draw(st.none() | st.integers(-dim - 1, dim + 1)),
                               draw(st.none() | st.integers(-dim - 1, dim + 1)), step))
        else:
            parts.append(slice(None))
    if draw(st.booleans()):
        parts.insert(draw(st.integers(0, len(parts))), Ellipsis)
    if draw(st.booleans()) and len(parts) < 3:
        parts.insert(draw(st.integers(0, len(parts))), None)
    return tuple(parts)


def per_entry(whole, roi, entry_shape):
    """Apply ``roi`` to each entry, the meaning of ``ndarray(roi=...)``."""
    out_shape = roi_shape(entry_shape, roi)
    if roi == ():
        return whole
    if len(whole) == 0:
        return np.zeros((0,) + out_shape, whole.dtype)
    return np.stack([e[roi] for e in whole])


def _select(kd, sel):
    if isinstance(sel, int) and not isinstance(sel, bool):   # a bit mask
        n = len(kd.train_ids)
        return kd.select_trains(np.array([(sel >> i) & 1 for i in range(n)], bool))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return kd.select_trains(sel)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow])
@given(data=st.data(), which=st.sampled_from(range(len(KEYS))), inc=st.booleans(),
       sel=train_selections())
def test_execute_equals_h5py(runs, data, which, inc, sel):
    source, key, section, shape = KEYS[which]
    run = runs[inc]
    kd = _select(run[source, key], sel)
    roi = data.draw(rois(shape)) if not key.startswith('state') else ()
    files = [fa.filename for fa in run[source].files]
    parts, coords, ref_rows = h5py_rows(files, source, key, section, kd.train_ids, inc)
    whole = np.concatenate(parts) if parts else np.zeros((0,) + shape)
    want = per_entry(whole, roi, shape)

    plan = kd.plan(roi=roi)
    got = kd.ndarray(roi=roi)
    assert got.shape == want.shape == plan.shape
    assert got.tolist() == want.tolist()
    assert np.array_equal(kd.train_id_coordinates(), coords)
    # The plan describes its output.
    assert plan.nbytes == got.nbytes
    assert plan.n_reads == len(plan.steps)
    assert sum(s.n_rows for s in plan.steps) == len(got)
    assert [s.dst_start for s in plan.steps] == [0, *(s.dst_stop for s in plan.steps)][:-1]
    assert all(s.n_rows > 0 and s.n_trains > 0 for s in plan.steps)
    # n_reads lies between the number of maximal runs of contiguous rows in one
    # file (in output order) and the number of trains with data.
    runs_of_rows = sum(1 for i, r in enumerate(ref_rows)
                       if i == 0 or r[0] != ref_rows[i - 1][0] or r[1] != ref_rows[i - 1][2])
    assert runs_of_rows <= plan.n_reads <= len(ref_rows)
    assert plan.n_files == len({r[0] for r in ref_rows})
    assert sum(s.n_trains for s in plan.steps) == len(ref_rows)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from([0, 1, 3, 5]), inc=st.booleans(), sel=train_selections(),
       gap=st.sampled_from([0, 8, 1 << 10, 1 << 30]), slabs=st.integers(1, 70),
       scratch=st.sampled_from([1, 1 << 12, 1 << 30]))
def test_read_grouping_never_changes_the_result(runs, which, inc, sel, gap, slabs, scratch):
    source, key, _, _ = KEYS[which]
    kd = _select(runs[inc][source, key], sel)
    plan = kd.plan()
    got = _execute.execute(plan, max_gap_bytes=gap, max_hyperslabs=slabs,
                           max_scratch_bytes=scratch)
    assert np.array_equal(got, _execute.execute(plan, max_gap_bytes=0, max_hyperslabs=1))


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(range(len(KEYS))), inc=st.booleans(), sel=train_selections(),
       per_part=st.integers(1, 25))
def test_split_parts_concatenate_to_the_whole(runs, which, inc, sel, per_part):
    source, key, _, _ = KEYS[which]
    kd = _select(runs[inc][source, key], sel)
    whole = kd.ndarray()
    parts = [p.ndarray() for p in kd.split_trains(trains_per_part=per_part)]
    joined = np.concatenate(parts) if parts else whole[:0]
    assert joined.tolist() == whole.tolist()


# -- partition (pure: no files) -----------------------------------------------------------

@st.composite
def _plans(draw):
    from xfeldata.core.plan import ReadPlan, ReadStep
    entry = tuple(draw(st.lists(st.integers(1, 4), max_size=2)))
    steps, dst = [], 0
    for i in range(draw(st.integers(0, 8))):
        a = draw(st.integers(0, 50))
        n = draw(st.integers(1, 20))
        steps.append(ReadStep(f'/r/f{i % 3}.h5', '/d', a, a + n, dst, dst + n, 1, 2, 2))
        dst += n
    return ReadPlan(np.dtype(draw(st.sampled_from(['u1', 'f4', 'f8']))), (dst,) + entry,
                    tuple(steps))


@given(plan=_plans(), max_bytes=st.integers(1, 2000))
def test_partition_pieces_concatenate_to_the_plan(plan, max_bytes):
    from xfeldata.core.plan import partition
    pieces = partition(plan, max_bytes)
    # Every piece is within the budget (or one row), its rows tile 0:n from 0.
    for p in pieces:
        assert p.nbytes <= max(max_bytes, plan.entry_nbytes)
        assert p.shape[1:] == plan.shape[1:] and p.dtype == plan.dtype
        assert [s.dst_start for s in p.steps] == [0] + [s.dst_stop for s in p.steps][:-1]
        assert p.steps[-1].dst_stop == p.shape[0]
    # The pieces read the plan's source rows, in the plan's order.
    rows = [(s.path, r) for p in pieces for s in p.steps for r in range(s.src_start, s.src_stop)]
    assert rows == [(s.path, r) for s in plan.steps for r in range(s.src_start, s.src_stop)]
    assert sum(p.shape[0] for p in pieces) == plan.shape[0]
