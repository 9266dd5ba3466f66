"""Laws of selection recipes (xfeldata.recipes).

* Applying a recipe gives the same result (or the same kind of error, and the
  same warnings) as the equivalent chain of DataCollection method calls.
* Equivalent spellings build equal recipes with equal hashes; pickling and
  ``eval(repr(r))`` give back an equal recipe.
* ``>>`` is associative, ``identity`` is neutral, nested unions flatten.

One synthetic run is written for the whole module (DESIGN.md decision 7);
hypothesis draws recipes against its source and key names.
"""
import pickle
import warnings

import numpy as np
import pytest
import toolz
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xfeldata
from xfeldata import by_id, by_index, recipes
from xfeldata.recipes import identity, union
from xfeldata.testing import make_demo_run

N_TRAINS = 12
FIRST = 10000
SLOW = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                deadline=None)

SOURCE_GLOBS = ['*', '*XGM*', '*CAM*', 'SA1_*', '*:output', '*:daqOutput', '*AGIPD*',
                '*RUNONLY*', 'SPB_IRU_*', 'NOPE*']
KEY_GLOBS = ['*', 'data.*', 'beamPosition.*', 'pulseEnergy.photonFlux',
             'beamPosition.ixPos.value', 'data.image.*', '*.timestamp', 'nokey']


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    m = make_demo_run(tmp_path_factory.mktemp('recipe-laws'), n_trains=N_TRAINS,
                      first_train=FIRST, n_modules=1)
    return xfeldata.RunDirectory(m.directory)


@pytest.fixture(scope='module')
def catalogue(run):
    """source -> sorted keys, to draw dict-form selections from."""
    return {s: sorted(run[s].keys()) for s in sorted(run.all_sources)}


# ------------------------------------------------------------------ drawing operations
# An operation is (name, args, kwargs) naming a function of xfeldata.recipes (and, for
# all but require_*/union, the DataCollection method of the same name), or
# ('union', branches) with each branch a list of operations.


@st.composite
def selections(draw, catalogue):
    form = draw(st.sampled_from(['glob', 'pair', 'list', 'dict']))
    if form == 'glob':
        return (draw(st.sampled_from(SOURCE_GLOBS)),)
    if form == 'pair':
        return (draw(st.sampled_from(SOURCE_GLOBS)), draw(st.sampled_from(KEY_GLOBS)))
    if form == 'list':
        item = st.one_of(st.sampled_from(SOURCE_GLOBS),
                         st.tuples(st.sampled_from(SOURCE_GLOBS), st.sampled_from(KEY_GLOBS)))
        return (draw(st.lists(item, max_size=3)),)
    sources = draw(st.lists(st.sampled_from(sorted(catalogue) + ['NOPE']), min_size=1,
                            max_size=3, unique=True))
    d = {}
    for s in sources:
        keys = catalogue.get(s, []) + ['nokey']
        chosen = draw(st.one_of(st.none(), st.sets(st.sampled_from(keys), max_size=3)))
        # Control keys may be named without '.value'.
        d[s] = None if chosen is None else {
            k[:-6] if k.endswith('.value') and draw(st.booleans()) else k for k in chosen}
    return (d,)


def positions():
    return st.integers(-N_TRAINS - 2, N_TRAINS + 1)


def train_ids():
    return st.integers(FIRST - 3, FIRST + N_TRAINS + 3)


def optional(s):
    return st.one_of(st.none(), s)


def train_selectors():
    step = st.one_of(st.none(), st.integers(-3, 3).filter(bool))
    plain = st.one_of(
        st.builds(slice, optional(positions()), optional(positions()), step),
        positions(),
        st.lists(positions(), max_size=4),
        st.lists(positions(), max_size=4).map(np.array),
        st.lists(st.booleans(), min_size=N_TRAINS, max_size=N_TRAINS).map(np.array),
    )
    ids = st.one_of(
        st.builds(slice, optional(train_ids()), optional(train_ids()),
                  st.one_of(st.none(), st.integers(1, 3))),
        train_ids(),
        st.lists(train_ids(), max_size=4),
        st.lists(train_ids(), max_size=4).map(lambda v: np.array(v, dtype=np.uint64)),
    )
    return st.one_of(plain, plain.map(lambda v: by_index[v]), ids.map(lambda v: by_id[v]))


def atoms(catalogue):
    flags = st.fixed_dictionaries({}, optional={
        'require_all': st.booleans(), 'require_any': st.booleans(),
        'warn_drop_trains_frac': st.sampled_from([1.0, 0.5])})
    return st.one_of(
        st.tuples(st.just('select'), selections(catalogue), flags),
        st.tuples(st.just('deselect'), selections(catalogue), st.just({})),
        st.tuples(st.just('select_trains'), st.tuples(train_selectors()), st.just({})),
        st.tuples(st.just('require_all'), st.just(()),
                  st.fixed_dictionaries({}, optional={
                      'warn_drop_trains_frac': st.sampled_from([1.0, 0.5])})),
        st.tuples(st.just('require_any'), st.just(()), st.just({})),
    )


def operations(catalogue, depth=2, max_size=4):
    op = atoms(catalogue)
    if depth:
        branches = st.lists(operations(catalogue, depth - 1, 3), min_size=1, max_size=3)
        op = st.one_of(op, st.tuples(st.just('union'), branches))
    return st.lists(op, max_size=max_size)


# ------------------------------------------------------------------ the two ways to apply


def build(ops):
    r = identity
    for op in ops:
        if op[0] == 'union':
            r = r >> union(*[build(b) for b in op[1]])
        else:
            name, args, kwargs = op
            r = r >> getattr(recipes, name)(*args, **kwargs)
    return r


def apply_chain(dc, ops):
    for op in ops:
        if op[0] == 'union':
            parts = [apply_chain(dc, b) for b in op[1]]
            # union() of one recipe is that recipe (documented): no .union() call.
            dc = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
            continue
        name, args, kwargs = op
        if name in ('require_all', 'require_any'):
            # No method of its own: the requirement of select() on the current
            # selection (a glob that matches it all, or no pattern when it is empty).
            everything = '*' if dc.all_sources else []
            dc = dc.select(everything, **{name: True}, **kwargs)
        else:
            dc = getattr(dc, name)(*args, **kwargs)
    return dc


# Name lookups raise KeyError subclasses; which one comes first may differ when
# a recipe's canonical (sorted) order checks names in another order.
ERROR_KINDS = (KeyError, IndexError, ValueError, TypeError)


def outcome(f):
    """('ok', result) or ('error', kind), and the warning categories raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        try:
            result = ('ok', f())
        except ERROR_KINDS as e:
            result = ('error', next(k for k in ERROR_KINDS if isinstance(e, k)))
    return result, sorted({w.category.__name__ for w in caught})


def assert_same(a, b):
    (ra, wa), (rb, wb) = a, b
    assert ra[0] == rb[0], (ra, rb)
    if ra[0] == 'error':
        assert ra[1] is rb[1]
    else:
        x, y = ra[1], rb[1]
        assert x == y
        assert list(x.train_ids) == list(y.train_ids)
        assert x.selection == y.selection
        assert x.all_sources == y.all_sources
        assert x.is_single_run == y.is_single_run
    assert wa == wb


# ------------------------------------------------------------------ laws


@SLOW
@given(data=st.data())
def test_recipe_equals_method_chain(run, catalogue, data):
    ops = data.draw(operations(catalogue), label='ops')
    assert_same(outcome(lambda: build(ops)(run)), outcome(lambda: apply_chain(run, ops)))


def respell(ops):
    """The same operations written another way (see docs/pipelines.md, canonical forms)."""
    out = []
    for op in ops:
        if op[0] == 'union':
            out.append(('union', [respell(b) for b in op[1]]))
            continue
        name, args, kwargs = op
        if name in ('select', 'deselect'):
            seln = args[0]
            if isinstance(seln, str):
                key = args[1] if len(args) > 1 else '*'
                seln = [(seln, key)] if key != '*' else [seln]
            elif isinstance(seln, dict):
                seln = {s: (set() if k is None else frozenset(k))
                        for s, k in reversed(list(seln.items()))}
            else:
                seln = [(x, '*') if isinstance(x, str) else x for x in reversed(seln)] * 2
            kwargs = dict(kwargs)
            req_all, req_any = kwargs.pop('require_all', False), kwargs.pop('require_any', False)
            frac = kwargs.pop('warn_drop_trains_frac', 1.0)
            out.append((name, (seln,), {}))
            if req_all:
                out.append(('require_all', (), {'warn_drop_trains_frac': frac}))
            elif req_any:
                out.append(('require_any', (), {}))
        elif name == 'select_trains':
            sel = args[0]
            if isinstance(sel, by_id):
                v = sel.value
                sel = by_id[list(v) if isinstance(v, np.ndarray) else v]
            elif isinstance(sel, by_index):
                sel = sel.value
            elif isinstance(sel, list):
                sel = by_index[np.array(sel, dtype=np.int64)]
            else:
                sel = by_index[sel]
            out.append((name, (sel,), {}))
        else:
            out.append(op)
    return out


@SLOW
@given(data=st.data())
def test_equivalent_spellings_are_equal_recipes(catalogue, data):
    ops = data.draw(operations(catalogue), label='ops')
    a, b = build(ops), build(respell(ops))
    assert a == b
    assert hash(a) == hash(b)


NAMESPACE = {**{n: getattr(recipes, n) for n in recipes.__all__}, 'identity': identity,
             'by_id': by_id, 'by_index': by_index}


@SLOW
@given(data=st.data())
def test_pickle_and_repr_round_trip(catalogue, data):
    r = build(data.draw(operations(catalogue), label='ops'))
    back = pickle.loads(pickle.dumps(r))
    assert back == r and hash(back) == hash(r)
    again = eval(repr(r), dict(NAMESPACE))
    assert again == r and hash(again) == hash(r)


@SLOW
@given(data=st.data())
def test_composition_is_associative_with_identity(run, catalogue, data):
    a, b, c = (build(data.draw(operations(catalogue, depth=1, max_size=2), label=n))
               for n in 'abc')
    assert (a >> b) >> c == a >> (b >> c)
    assert hash((a >> b) >> c) == hash(a >> (b >> c))
    assert identity >> a == a == a >> identity
    assert identity(run) is run
    whole = outcome(lambda: ((a >> b) >> c)(run))
    assert_same(whole, outcome(lambda: toolz.pipe(run, a, b, c)))
    assert_same(whole, outcome(lambda: toolz.compose(c, b, a)(run)))


@SLOW
@given(data=st.data())
def test_nested_unions_flatten(run, catalogue, data):
    a, b, c = (build(data.draw(operations(catalogue, depth=0, max_size=2), label=n))
               for n in 'abc')
    left, right = union(union(a, b), c), union(a, union(b, c))
    assert left == right == (a | b | c) and hash(left) == hash(right)
    assert union(a) == a
    # Flattening is sound: a nested union of results equals the flat one.
    nested = outcome(lambda: a(run).union(b(run).union(c(run))))
    assert_same(outcome(lambda: right(run)), nested)
