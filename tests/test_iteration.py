"""Train-wise access: ``trains()``, ``TrainIterator``, ``train_from_id`` (API.md 2.2, 2.3, 4).

A synthetic run is written once for the module: a control device in two
sequence files (scalar, vector and string keys), a second control device
whose files lack the last trains, a control device with no data, a RUN-only
device, and an instrument source with a legacy name, two index groups with
counts 0-3 per train, two trains it did not record, and a suspect train.
Train dicts are compared with what plain h5py reads for one train following
the INDEX (the per-train rule of FORMAT.md 3.1). The corpus's iteration
answers are checked at the end.
"""
import json
import os
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

import xfeldata
from xfeldata import _iterate, by_id
from xfeldata.core.plan import FileKeyIndex
from xfeldata.exceptions import TrainIDError
from xfeldata.reader import TrainIterator
from xfeldata.testing import Aggregator, ControlSource, InstrumentSource, RunSpec, write_run

N = 30
FIRST = 1000
TIDS = np.arange(FIRST, FIRST + N, dtype=np.uint64)
CTRL = 'CTRL/MOTOR/A'
GAUGE = 'CTRL/GAUGE/B'
EMPTY = 'CTRL/EMPTY/C'
RUNONLY = 'CTRL/RUNONLY/D'
INST = 'INST/DET/A:output'
LEGACY = 'INST/DET/OLD:output'
INST_MISSING = (1003, 1020)          # trains the instrument did not record
GAUGE_LAST = 1024                    # the gauge's files end here
SUSPECT = 1010


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    inst_tids = np.setdiff1d(TIDS, INST_MISSING)
    n = len(inst_tids)
    ctrl = ControlSource(CTRL, {'x': np.float64, 'vec': (np.float32, (3,)), 'state': str})
    empty = ControlSource(EMPTY, {'y': np.int32}, no_data=True)
    runonly = ControlSource(RUNONLY, {'z': np.int32}, run_only=True)
    gauge = ControlSource(GAUGE, {'p': np.float32})
    inst = InstrumentSource(INST, {'data.img': (np.uint16, (2, 3)), 'data.val': np.int32,
                                   'other.v': (np.float32, (2,))},
                            groups={'data': np.arange(n) % 4,
                                    'other': (np.arange(n) % 5 != 0).astype(int)},
                            legacy_names=(LEGACY,))
    valid = TIDS != SUSPECT
    spec = RunSpec(TIDS, [
        Aggregator('DA01', [ctrl, empty, runonly], sequence_starts=(12,)),
        Aggregator('DA02', [inst], sequence_starts=(15,), train_ids=inst_tids),
        Aggregator('DA03', [gauge], train_ids=TIDS[TIDS <= GAUGE_LAST]),
    ], valid=valid)
    d = tmp_path_factory.mktemp('iteration')
    write_run(d, spec)
    return d


@pytest.fixture(scope='module')
def runs(run_dir):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return {inc: xfeldata.RunDirectory(run_dir, inc_suspect_trains=inc)
                for inc in (True, False)}


@pytest.fixture
def run(runs):
    return runs[True]


# -- the truth: one train read with plain h5py ----------------------------------------------

def h5py_train(run_dir, selection, tid, inc_suspect=True, keep_dims=False):
    """The train dict API.md 2.2 describes, from per-train h5py reads.

    ``selection`` maps source -> keys. The first file (by name) holding the
    train (valid, unless suspect trains are included) gives first/count.
    """
    out = {}
    paths = sorted(Path(run_dir).glob('*.h5'))
    for src, keys in sorted(selection.items()):
        d = {'metadata': {'source': src, 'timestamp.tid': tid}}
        control = src.startswith('CTRL/')
        for key in sorted(keys):
            group = '' if control else key.split('.')[0]
            for p in paths:
                with h5py.File(p, 'r') as f:
                    base = f'INDEX/{src}' + (f'/{group}' if group else '')
                    if base not in f:
                        continue
                    tids = f['INDEX/trainId'][()]
                    flag = f['INDEX/flag'][()].astype(bool)
                    pos = np.flatnonzero((tids == tid) & (flag | inc_suspect))
                    if not len(pos):
                        continue
                    first = int(f[base + '/first'][pos[0]])
                    count = int(f[base + '/count'][pos[0]])
                    ds = f[('CONTROL/' if control else 'INSTRUMENT/') + src + '/'
                           + key.replace('.', '/')]
                    if count and (control or (count == 1 and not keep_dims)):
                        d[key] = ds[first]
                    elif count:
                        d[key] = ds[first:first + count]
                    break
        out[src] = d
    return tid, out


def assert_same_train(got, want):
    """Same train ID, sources, keys, value types, dtypes, shapes and values."""
    assert got[0] == want[0] and type(got[0]) is int
    g, w = got[1], want[1]
    assert list(g) == list(w)
    for src in w:
        assert list(g[src]) == list(w[src]), src
        for key, wv in w[src].items():
            gv = g[src][key]
            if key == 'metadata':
                assert gv == wv
                continue
            assert type(gv) is type(wv), (src, key, type(gv), type(wv))
            assert np.shape(gv) == np.shape(wv), (src, key)
            assert np.asarray(gv).dtype == np.asarray(wv).dtype, (src, key)
            assert np.array_equal(np.asarray(gv), np.asarray(wv)), (src, key)


def selection_of(dc):
    return {s: dc[s].keys() for s in dc.all_sources}


# -- the rules of a train dict --------------------------------------------------------------------

@pytest.mark.parametrize('inc', [True, False])
@pytest.mark.parametrize('keep_dims', [False, True])
def test_every_train_is_what_per_train_reads_give(runs, run_dir, inc, keep_dims):
    dc = runs[inc]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        got = list(dc.trains(keep_dims=keep_dims))
        sel = selection_of(dc)
    assert [t for t, _ in got] == [int(t) for t in dc.train_ids]
    assert (SUSPECT in dc.train_ids) == inc
    for train in got:
        assert_same_train(train, h5py_train(run_dir, sel, train[0], inc, keep_dims))


def test_metadata_for_every_selected_source_even_without_data(run):
    tid, data = run.train_from_id(1003)
    assert data[INST] == {'metadata': {'source': INST, 'timestamp.tid': 1003}}
    assert data[EMPTY] == {'metadata': {'source': EMPTY, 'timestamp.tid': 1003}}
    assert data[RUNONLY] == {'metadata': {'source': RUNONLY, 'timestamp.tid': 1003}}
    assert set(data) == set(run.all_sources)
    # The gauge's files end before the last trains: metadata only.
    assert list(dict(run.trains(train_range=by_id[[FIRST + N - 1]]))[FIRST + N - 1][GAUGE]) \
        == ['metadata']


def test_control_keys_give_one_entry_even_with_keep_dims(run):
    _, data = run.train_from_id(1005, keep_dims=True)
    assert isinstance(data[CTRL]['x.value'], np.float64)
    assert data[CTRL]['vec.value'].shape == (3,)
    assert isinstance(data[CTRL]['x.timestamp'], np.uint64)


def test_instrument_counts_entry_slice_or_omitted(run):
    kd = run[INST, 'data.img']
    counts = dict(zip(kd.train_ids, kd.data_counts(labelled=False).tolist()))
    by_count = {c: next(int(t) for t, n in counts.items() if n == c) for c in (0, 1, 2, 3)}
    for keep in (False, True):
        for c, tid in by_count.items():
            value = run.train_from_id(tid, keep_dims=keep)[1][INST].get('data.img')
            if c == 0:
                assert value is None
            elif c == 1 and not keep:
                assert value.shape == (2, 3)
            else:
                assert value.shape == (c, 2, 3)


def test_strings_are_bytes_in_train_dicts_and_str_in_keydata(run):
    _, data = run.train_from_id(1001)
    assert isinstance(data[CTRL]['state.value'], bytes)
    kd = run[CTRL, 'state']
    assert isinstance(kd.train_from_id(1001)[1], str)
    assert all(isinstance(v, str) for _, v in kd.trains())
    assert [v.encode() for _, v in kd.trains()] == [d[CTRL]['state.value']
                                                    for _, d in run.select(CTRL).trains()]


def test_flat_keys(run):
    sel = run.select([(CTRL, 'x'), (INST, 'data.val')])
    tid, flat = next(sel.trains(flat_keys=True))
    _, nested = sel.train_from_id(tid)
    assert flat == {(s, k): v for s, d in nested.items() for k, v in d.items()}
    assert (CTRL, 'metadata') in flat and (INST, 'metadata') in flat
    assert sel.train_from_id(tid, flat_keys=True)[1].keys() == flat.keys()


def test_devices_and_train_range_narrow_first(run):
    got = list(run.trains(devices=[(CTRL, 'x')], train_range=by_id[1005:1008]))
    assert [t for t, _ in got] == [1005, 1006, 1007]
    assert all(list(d) == [CTRL] and list(d[CTRL]) == ['metadata', 'x.value'] for _, d in got)
    assert [t for t, _ in run.trains(train_range=np.s_[-2:])] == [FIRST + N - 2, FIRST + N - 1]


def test_train_from_id_with_devices_drops_flat_keys_and_keep_dims(run):
    # EXtra-data's quirk, kept (docs/compat.md section 7).
    tid = next(int(t) for t, n in zip(run.train_ids, run[INST, 'data.val'].data_counts(
        labelled=False)) if n == 1)
    _, data = run.train_from_id(tid, devices=[INST], flat_keys=True, keep_dims=True)
    assert set(data) == {INST}
    assert np.ndim(data[INST]['data.val']) == 0
    _, full = run.select([INST]).train_from_id(tid, flat_keys=True, keep_dims=True)
    assert np.shape(full[(INST, 'data.val')]) == (1,)


def test_train_lookup_errors(run):
    with pytest.raises(TrainIDError):
        run.train_from_id(FIRST - 1)
    with pytest.raises(TrainIDError):
        run.select_trains(np.s_[:5]).train_from_id(FIRST + 6)
    assert run.train_from_index(-1)[0] == FIRST + N - 1
    assert type(run.train_from_index(np.int64(2))[0]) is int
    with pytest.raises(IndexError):
        run.train_from_index(N)
    with pytest.raises(TrainIDError):
        run[INST, 'data.val'].train_from_id(FIRST + N)


# -- require_all ---------------------------------------------------------------------------------

def test_require_all_needs_every_control_source_and_instrument_group(run):
    data_counts = run[INST, 'data.val'].data_counts(labelled=False)
    sel = run.select([(CTRL, 'x'), (GAUGE, 'p'), (EMPTY, '*'), (INST, 'data.*')])
    want = [int(t) for t, n in zip(run.train_ids, data_counts) if n > 0 and t <= GAUGE_LAST]
    assert [t for t, _ in sel.trains(require_all=True)] == want
    assert len(list(sel.trains())) == N
    # With 'other' selected too, its zero counts also skip trains.
    other = run[INST, 'other.v'].data_counts(labelled=False)
    both = run.select([(INST, 'data.val'), (INST, 'other.v')])
    assert [t for t, _ in both.trains(require_all=True)] == [
        int(t) for t, a, b in zip(run.train_ids, data_counts, other) if a and b]


def test_require_all_ignores_legacy_names_and_control_sources_without_data(run):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        sel = run.select([(LEGACY, 'data.val'), (EMPTY, '*'), (RUNONLY, '*')])
        got = [t for t, _ in sel.trains(require_all=True)]
    # The legacy name is not checked; the two control devices' files hold every train.
    assert got == [int(t) for t in run.train_ids]


def test_train_iterator_defaults_and_reiteration(run):
    sel = run.select([(CTRL, 'x'), (INST, 'data.val')])
    it = TrainIterator(sel)
    assert it.require_all is True and it.flat_keys is False and it.keep_dims is False
    first = [t for t, _ in it]
    assert first == [t for t, _ in sel.trains(require_all=True)]
    assert [t for t, _ in it] == first       # each iteration reads afresh
    gen = sel.trains()
    assert next(gen)[0] == FIRST


# -- bulk reading ---------------------------------------------------------------------------------

@pytest.mark.parametrize('budget', [dict(max_trains=1), dict(max_trains=7),
                                    dict(max_bytes=1), dict(max_bytes=500, max_trains=100)])
def test_batch_size_changes_nothing_yielded(run, budget):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        want = list(_iterate.iterate_trains(run, keep_dims=True))
        got = list(_iterate.iterate_trains(run, keep_dims=True, **budget))
    assert len(got) == len(want) == N
    for g, w in zip(got, want):
        assert_same_train(g, w)


def test_each_key_is_read_once_per_file_per_batch(run, monkeypatch):
    calls = []
    real = _iterate._execute.execute

    def spy(plan, *a, **kw):
        calls.append(plan)
        return real(plan, *a, **kw)
    monkeypatch.setattr(_iterate._execute, 'execute', spy)
    sel = run.select([(CTRL, '*'), (INST, 'data.*')])
    n_keys = sum(len(sel[s].keys()) for s in sel.all_sources)
    assert len(list(sel.trains())) == N
    # One plan per key; one row range per file (CTRL and INST are in 2 files each).
    assert len(calls) == n_keys
    assert {p.n_reads for p in calls} == {2}
    calls.clear()
    list(_iterate.iterate_trains(sel, max_trains=10))
    assert len(calls) == 3 * n_keys
    assert max(p.n_reads for p in calls) <= 2


def test_train_rows_uses_first_and_count_of_each_train():
    tids = np.arange(10, 16, dtype=np.uint64)
    # Overlapping rows (train 11 starts inside train 10) and a gap before train 14.
    f = FileKeyIndex('/a.h5', tids, np.ones(6, bool), np.array([0, 1, 5, 5, 9, 10], np.uint64),
                     np.array([2, 3, 0, 2, 1, 1], np.uint64))
    m = _iterate.train_rows([f], tids)
    assert list(zip(m.src_start, m.src_stop)) == [(0, 4), (5, 7), (9, 11)]
    rows = np.concatenate([np.arange(a, b) for a, b in zip(m.src_start, m.src_stop)])
    per_train = [rows[s:s + c].tolist() for s, c in zip(m.start, m.count)]
    assert per_train == [[0, 1], [1, 2, 3], [], [5, 6], [9], [10]]
    # A train held by two files comes from the first; absent trains are not held.
    g = FileKeyIndex('/b.h5', np.array([15, 16], np.uint64), np.ones(2, bool),
                     np.array([0, 1], np.uint64), np.array([1, 1], np.uint64))
    sel = np.array([9, 15, 16], np.uint64)
    m = _iterate.train_rows([f, g], sel)
    assert m.held.tolist() == [False, True, True]
    assert m.paths == ('/a.h5', '/b.h5') and (m.src_start, m.src_stop) == ((10, 1), (11, 2))
    # Rows of another file never join a range, even where the row numbers follow on.
    h = FileKeyIndex('/c.h5', np.array([16], np.uint64), np.ones(1, bool),
                     np.array([11], np.uint64), np.array([2], np.uint64))
    m = _iterate.train_rows([f, h], sel)
    assert m.paths == ('/a.h5', '/c.h5') and (m.src_start, m.src_stop) == ((10, 11), (11, 13))
    assert (m.start.tolist(), m.count.tolist(), m.n_rows) == ([0, 0, 1], [0, 1, 2], 3)
    # Excluding suspect trains, an invalid position is not taken.
    bad = FileKeyIndex('/a.h5', tids, np.array([1, 0, 1, 1, 1, 1], bool), f.firsts, f.counts)
    assert _iterate.train_rows([bad], tids, inc_suspect_trains=False).held.tolist() == [
        True, False, True, True, True, True]


def test_trains_and_train_from_id_agree_on_a_broken_index(tmp_path):
    src = 'INST/CAM/X:output'
    spec = RunSpec(np.arange(1, 9), [Aggregator('DA01', [InstrumentSource(
        src, {'data.v': np.int32}, groups={'data': 2}, extra_rows=4)])])
    write_run(tmp_path, spec)
    path = next(tmp_path.glob('*.h5'))
    with h5py.File(path, 'r+') as f:       # train 2 overlaps train 1; train 5 leaves a gap
        f[f'INDEX/{src}/data/first'][1] = 1
        f[f'INDEX/{src}/data/first'][4] = 10
        f[f'INDEX/{src}/data/count'][3] = 0
    dc = xfeldata.RunDirectory(tmp_path)
    got = list(dc.trains())
    for train in got:
        assert_same_train(train, dc.train_from_id(train[0]))
        assert_same_train(train, h5py_train(tmp_path, {src: {'data.trainId', 'data.v'}},
                                            train[0]))
    kd = dc[src, 'data.v']
    assert [(int(t), v.tolist()) for t, v in kd.trains()] == [
        (t, d[src]['data.v'].tolist()) for t, d in got if 'data.v' in d[src]]


# -- KeyData.trains / train_from_id ----------------------------------------------------------

def test_keydata_trains_rules(run):
    kd = run[INST, 'data.img']
    counts = dict(zip((int(t) for t in kd.train_ids), kd.data_counts(labelled=False).tolist()))
    held = [t for t in counts if t not in INST_MISSING]
    plain = list(kd.trains())
    assert all(type(t) is np.uint64 for t, _ in plain)
    assert [int(t) for t, _ in plain] == [t for t in held if counts[t]]
    assert all(v.shape == ((2, 3) if counts[int(t)] == 1 else (counts[int(t)], 2, 3))
               for t, v in plain)
    empty = list(kd.trains(include_empty=True))
    assert [int(t) for t, _ in empty] == held
    assert all((v is None) == (counts[int(t)] == 0) for t, v in empty)
    kept = list(kd.trains(keep_dims=True))
    assert [int(t) for t, _ in kept] == held     # empty trains as length-0 arrays
    assert all(v.shape == (counts[int(t)], 2, 3) for t, v in kept)
    np.testing.assert_array_equal(np.concatenate([v for _, v in kept]), kd.ndarray())


def test_keydata_train_from_id(run):
    kd = run[INST, 'data.val']
    counts = dict(zip((int(t) for t in kd.train_ids), kd.data_counts(labelled=False).tolist()))
    one = next(t for t, c in counts.items() if c == 1)
    tid, v = kd.train_from_id(one)
    assert tid == one and np.ndim(v) == 0
    assert kd.train_from_id(one, keep_dims=True)[1].shape == (1,)
    # A selected train no file holds: a tuple with an empty array (docs/compat.md 5).
    tid, v = kd.train_from_id(INST_MISSING[0])
    assert tid == INST_MISSING[0] and v.shape == (0,) and v.dtype == np.int32
    assert kd.train_from_index(0)[0] == FIRST
    assert [int(t) for t, _ in kd.select_trains(by_id[1000:1006]).trains(keep_dims=True)] == [
        1000, 1001, 1002, 1004, 1005]


# -- the reference corpus -------------------------------------------------------------------------

CORPUS = Path(os.environ.get('XFELDATA_CORPUS',
                             Path(__file__).resolve().parents[1] / '..' / 'shared' / 'corpus'))
CORPUS = CORPUS.resolve()
HAVE_CORPUS = (CORPUS / 'example_consumer.py').is_file()
SMALL_ENTRY = 1 << 16     # golden values are compared for keys this small per entry


def _corpus_opens():
    if not HAVE_CORPUS:
        return [pytest.param(None, None, None, marks=pytest.mark.skip(reason='corpus absent'))]
    out = []
    for exp_path in sorted(CORPUS.glob('*/expected.json')):
        exp = json.loads(exp_path.read_text())
        by_name = {o['name']: o for o in exp['opens']}
        for entry in exp['opens']:
            target = by_name[entry.get('same_result_as', entry['name'])]
            if 'exception' not in target:
                out.append(pytest.param(exp_path.parent.name, entry['call'], target['result'],
                                        id=f"{exp_path.parent.name}/{entry['name']}"))
    return out


@pytest.fixture(scope='module')
def corpus_lib():
    sys.path.insert(0, str(CORPUS))
    import corpus_helpers
    import example_consumer
    import xfeldata.run_files_map as rfm
    saved = rfm.RunFilesMap.save
    rfm.RunFilesMap.save = lambda self, *a, **kw: None   # the corpus must stay as it is
    yield corpus_helpers, example_consumer
    rfm.RunFilesMap.save = saved


@pytest.mark.parametrize('case, call, result', _corpus_opens())
def test_corpus_iteration(corpus_lib, case, call, result):
    """Train IDs and first train's keys of ``dc.select(probes).trains(require_all=...)``."""
    ch, ec = corpus_lib
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        dc = ec.open_call(xfeldata, str(CORPUS / case), call)
        it = result['iteration']
        sel = {}
        for src, key in it['select']:
            sel.setdefault(src, set()).add(key)
        probes = dc.select(sel)
        for require_all in (False, True):
            want = it[f'require_all={require_all}']
            got = list(probes.trains(require_all=require_all))
            assert ch.encode_ids([t for t, _ in got]) == want['train_ids']
            first = {s: sorted(d) for s, d in got[0][1].items()} if got else None
            assert first == want['first_train_keys']


@pytest.mark.parametrize('case, call, result', _corpus_opens())
def test_corpus_train_values(corpus_lib, case, call, result):
    """Train dicts from ``trains()`` hold the reference's values, types and shapes.

    The reference recorded ``train_from_id`` for a few trains; the same
    trains are read here through ``trains(train_range=...)``, keys with
    small entries only (big detector frames are read by the trains section).
    Sources the reference could not read are left out, as its recorder did
    (their errors are checked by the corpus's trains section).
    """
    ch, ec = corpus_lib
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        dc = ec.open_call(xfeldata, str(CORPUS / case), call)
        recorded = result['train_from_id']
        if result.get('unreadable_sources'):
            dc = dc.deselect(result['unreadable_sources'])
            recorded = result.get('train_from_id_readable') or []
        big = {}
        for src in dc.all_sources:
            for key in dc[src].keys():
                kd = dc[src, key]
                if int(np.prod(kd.entry_shape, dtype=np.int64)) * kd.dtype.itemsize > SMALL_ENTRY:
                    big.setdefault(src, set()).add(key)
        small = dc.deselect(big) if big else dc
        recorded = [t for t in recorded if 'exception' not in t]
        tids = sorted({t['train_id'] for t in recorded})
        got = dict(small.trains(train_range=by_id[tids])) if tids else {}
    assert sorted(got) == tids
    for t in recorded:
        data = got[t['train_id']]
        assert sorted(data) == sorted(s for s in t['sources'] if s in small.all_sources)
        for src, data_src in data.items():
            want_keys = t['sources'][src]['keys']
            assert data_src['metadata'] == {'source': src, 'timestamp.tid': t['train_id']}
            assert sorted(k for k in data_src if k != 'metadata') == sorted(
                k for k in want_keys if k not in big.get(src, ()))
            for key, want in want_keys.items():
                if key in data_src:
                    summary = ec.value_summary(data_src[key])
                    for field in ('shape', 'dtype', 'sha256', 'python_type'):
                        if field in want:
                            assert summary[field] == want[field], (src, key, field)
