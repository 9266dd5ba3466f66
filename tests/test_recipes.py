"""Examples for selection recipes (xfeldata.recipes, xfeldata.core.recipe) and docs/pipelines.md."""
import ast
import contextlib
import doctest
import io
import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import toolz

import xfeldata
from xfeldata import by_id, by_index
from xfeldata.core import recipe as core_recipe
from xfeldata.core.recipe import Globs, Names, Require, Select, SelectTrains, Union
from xfeldata import recipes
from xfeldata.recipes import (Recipe, chain, deselect, identity, require_all, require_any,
                              select, select_trains, union)
from xfeldata.testing import make_demo_run

ROOT = Path(__file__).resolve().parents[1]
XGM = 'SA1_XTD2_XGM/DOOCS/MAIN'
XGM_OUT = 'SA1_XTD2_XGM/DOOCS/MAIN:output'
CAM_OUT = 'SPB_IRU_CAM/CAM/SIDEMIC:daqOutput'
CAM = 'SPB_IRU_CAM/CAM/SIDEMIC'


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    # 30 trains from 10000; the camera output misses trains 10009, 10019, 10029.
    m = make_demo_run(tmp_path_factory.mktemp('demo'), n_trains=30, n_modules=2)
    return xfeldata.RunDirectory(m.directory)


def ids(data):
    return [int(t) for t in data.train_ids]


# ------------------------------------------------------------------ applying = method chains


def test_pipe_compose_and_rshift_equal_the_method_chain(run):
    want = run.select('*XGM*').select_trains(by_id[10010:10020])
    a, b = select('*XGM*'), select_trains(by_id[10010:10020])
    assert toolz.pipe(run, a, b) == want
    assert toolz.compose(b, a)(run) == want
    assert (a >> b)(run) == want
    assert chain(a, b)(run) == want
    assert ids(want) == list(range(10010, 10020))
    assert sorted(want.all_sources) == [XGM, XGM_OUT]


def test_deselect_and_key_globs(run):
    r = select('*XGM*', 'beamPosition.*') >> deselect(XGM, 'beamPosition.iyPos')
    got = r(run)
    assert got == run.select('*XGM*', 'beamPosition.*').deselect(XGM, 'beamPosition.iyPos')
    assert got.selection == {XGM: {'beamPosition.ixPos.value', 'beamPosition.ixPos.timestamp',
                                   'beamPosition.iyPos.timestamp'}}


def test_list_of_globs_and_pairs(run):
    seln = ['*XGM*', ('*CAM*', 'data.image.pixels'), ('*XGM*', 'data.*')]
    got = select(seln)(run)
    assert got == run.select(seln)
    assert got.selection == {XGM: None, XGM_OUT: None, CAM_OUT: {'data.image.pixels'}}


def test_dict_form(run):
    r = select({XGM: {'pulseEnergy.photonFlux'}, CAM_OUT: None})
    got = r(run)
    assert got == run.select({XGM: {'pulseEnergy.photonFlux'}, CAM_OUT: None})
    assert got.selection[XGM] == {'pulseEnergy.photonFlux.value'}
    assert got.selection[CAM_OUT] is None


def test_data_objects_are_captured_as_their_selection(run):
    sub = run.select('*XGM*', 'beamPosition.*')
    r = select(sub)
    assert r == select({XGM: {'beamPosition.ixPos.value', 'beamPosition.ixPos.timestamp',
                              'beamPosition.iyPos.value', 'beamPosition.iyPos.timestamp'}})
    assert r(run) == run.select(sub)
    assert select(run[XGM_OUT]) == select({XGM_OUT: None})
    assert select(run[XGM_OUT]).steps[0].target == Names(((XGM_OUT, None),))
    kd = run[XGM, 'pulseEnergy.photonFlux']
    assert select(kd) == select({XGM: {'pulseEnergy.photonFlux.value'}})
    assert select(kd)(run) == run.select(kd)
    assert deselect(kd)(run) == run.deselect(kd)
    assert b'h5py' not in pickle.dumps(select(sub))  # no run inside


def test_require_all_and_any(run):
    cam = select('*CAM*')
    got = (cam >> require_all())(run)
    assert got == run.select('*CAM*', require_all=True)
    assert ids(got) == [t for t in range(10000, 10030) if t % 10 != 9]
    assert (cam >> require_any())(run) == run.select('*CAM*', require_any=True)
    assert select('*CAM*', require_all=True)(run) == got
    # Only the RUN-only source: no source with data, require_any keeps no train.
    runonly = select('*RUNONLY*')
    assert ids((runonly >> require_any())(run)) == []
    assert ids((runonly >> require_all())(run)) == ids(run)


def test_require_on_no_sources(run):
    empty = select([])
    assert empty(run).all_sources == frozenset()
    assert ids((empty >> require_all())(run)) == ids(run)
    assert ids((empty >> require_any())(run)) == []


def test_require_all_warns_as_the_method(run):
    r = select('*CAM*') >> require_all(warn_drop_trains_frac=0.05)
    with pytest.warns(UserWarning, match='dropped'):
        r(run)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        (select('*CAM*') >> require_all())(run)


def test_union(run):
    u = select('*XGM*') | (select('*CAM*') >> select_trains(np.s_[:3]))
    got = u(run)
    assert got == run.select('*XGM*').union(run.select('*CAM*').select_trains(np.s_[:3]))
    assert got.all_sources == {XGM, XGM_OUT, CAM, CAM_OUT}
    assert len(got.train_ids) == 30


def test_identity(run):
    assert identity(run) is run
    assert Recipe()(run) is run
    assert chain() == identity
    assert identity >> select('*') == select('*') == select('*') >> identity


def test_positions_are_relative_to_the_current_trains(run):
    r = select_trains(np.s_[10:]) >> select_trains(by_index[:3])
    assert ids(r(run)) == [10010, 10011, 10012]


# ------------------------------------------------------------------ canonical forms


@pytest.mark.parametrize('a, b', [
    (select('*XGM*'), select(['*XGM*'])),
    (select('*XGM*'), select([('*XGM*', '*')])),
    (select('*XGM*', 'data.*'), select([('*XGM*', 'data.*')])),
    (select(['B', 'A', 'B']), select(['A', 'B'])),
    (select({'A', 'B'}), select(('B', 'A'))),
    (select({'S': set()}), select({'S': None})),
    (select({'S': {}}), select({'S': None})),
    (select({'S': {'k'}, 'T': None}), select({'T': None, 'S': frozenset({'k'})})),
    (select('*', require_all=True), select('*') >> require_all()),
    (select('*', require_all=True, require_any=True), select('*') >> require_all()),
    (select('*', require_any=True, warn_drop_trains_frac=0.2), select('*') >> require_any()),
    (select('*', warn_drop_trains_frac=0.2), select('*')),
    (select_trains([0, 2]), select_trains(np.array([0, 2]))),
    (select_trains([0, 2]), select_trains(by_index[[0, 2]])),
    (select_trains([True, False]), select_trains(np.array([True, False]))),
    (select_trains(np.int64(3)), select_trains(3)),
    (select_trains(np.array(3)), select_trains(by_index[3])),
    (select_trains(np.s_[np.int32(1):5]), select_trains(slice(1, 5))),
    (select_trains(by_id[[10001, 10002]]), select_trains(by_id[np.array([10001, 10002])])),
    (select_trains(by_index[by_id[5]]), select_trains(by_id[5])),
    (select_trains([]), select_trains(np.zeros(0, np.uint64))),
    (union(select('a'), union(select('b'), select('c'))),
     union(union(select('a'), select('b')), select('c'))),
    (union(select('a')), select('a')),
    (select('a') | select('b'), union(select('a'), select('b'))),
])
def test_equivalent_spellings_are_equal_and_hash_equal(a, b):
    assert a == b
    assert hash(a) == hash(b)


@pytest.mark.parametrize('a, b', [
    (select('A'), deselect('A')),
    (select('A'), select('A', 'k')),
    (select({'S': None}), select('S')),          # exact name vs glob
    (select_trains(np.s_[:5]), select_trains(np.s_[0:5])),   # structural, not semantic
    (select_trains([1, 0]), select_trains([True, False])),
    (select_trains(by_id[5]), select_trains(by_index[5])),
    (require_all(), require_any()),
    (require_all(), require_all(warn_drop_trains_frac=0.5)),
    (select('a') >> select('b'), select('b') >> select('a')),
    (union(select('a'), select('b')), union(select('b'), select('a'))),
])
def test_different_recipes_are_not_equal(a, b):
    assert a != b


def test_canonical_steps():
    r = select(['B*', ('A*', 'k')]) >> select_trains([1, 2]) >> require_all()
    assert r.steps == (Select(Globs((('A*', 'k'), ('B*', '*')))),
                       SelectTrains(by_index[[1, 2]]), Require(True, 1.0))
    sel = r.steps[1].selector
    assert isinstance(sel.value, np.ndarray) and not sel.value.flags.writeable


def test_dataarray_selector_becomes_by_id():
    xr = pytest.importorskip('xarray')
    da = xr.DataArray([True, False, True], coords={'trainId': [10002, 10001, 10005]},
                      dims=['trainId'])
    assert select_trains(da) == select_trains(by_id[[10002, 10005]])
    with pytest.raises(TypeError, match='must be boolean'):
        select_trains(xr.DataArray([1, 2], dims=['trainId'], coords={'trainId': [1, 2]}))
    with pytest.raises(ValueError, match="'trainId' coordinate"):
        select_trains(xr.DataArray([True], dims=['x']))


def test_dataarray_recipe_equals_the_method(run):
    xr = pytest.importorskip('xarray')
    da = xr.DataArray(np.arange(30) % 3 == 0, coords={'trainId': np.arange(10000, 10030)},
                      dims=['trainId'])
    assert select_trains(da)(run) == run.select_trains(da)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize('make, match', [
    (lambda: select(3), 'Unknown selection type'),
    (lambda: select(b'*XGM*'), 'Unknown selection type'),
    (lambda: select('*', 3), 'key_glob must be a str'),
    (lambda: select([3]), 'Unknown selection item'),
    (lambda: select({'S': ['k']}), 'must be a set or None'),
    (lambda: select({'S': {3}}), 'must be str'),
    (lambda: select({3: None}), 'Source names must be str'),
    (lambda: select_trains(1.5), 'Train selector must be'),
    (lambda: select_trains('10000'), 'Train selector must be'),
    (lambda: select_trains((1, 2)), 'Train selector must be'),
    (lambda: select_trains(None), 'Train selector must be'),
    (lambda: select_trains(by_index[..., 3]), 'Train selector must be'),
    (lambda: select_trains(by_id[1.5]), 'Train selector must be'),
    (lambda: union(), 'at least one recipe'),
    (lambda: union(select('a'), 'b'), 'union takes recipes'),
    (lambda: chain(select('a'), 3), 'chain takes recipes'),
    (lambda: select('a') >> 3, 'unsupported operand'),
    (lambda: select('a') | 'b', 'unsupported operand'),
    (lambda: Recipe((3,)), 'Recipe steps must be'),
    (lambda: Union(()), 'non-empty tuple of recipes'),
    (lambda: Union((select('a'), 'b')), 'non-empty tuple of recipes'),
])
def test_wrong_argument_types_fail_when_built(make, match):
    with pytest.raises(TypeError, match=match):
        make()


@pytest.mark.parametrize('r, exc', [
    (select('NOPE*'), ValueError),
    (deselect('NOPE*'), ValueError),
    (select({'NOPE': None}), KeyError),
    (select({XGM: {'nope'}}), KeyError),
    (select_trains(100), IndexError),
    (select_trains([True, False]), ValueError),
    (select_trains([1.5]), TypeError),
])
def test_run_dependent_errors_come_when_applied(run, r, exc):
    with pytest.raises(exc):
        r(run)


def test_warnings_come_when_applied(run):
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        r = select_trains(by_id[20000:20010])
    with pytest.warns(UserWarning, match='no trains selected'):
        assert ids(r(run)) == []


def test_source_and_key_data_take_train_steps(run):
    window = select_trains(by_id[10010:10020])
    sd, kd = run[XGM_OUT], run[XGM_OUT, 'data.intensityTD']
    assert window(sd) == sd.select_trains(by_id[10010:10020])
    assert window(kd) == kd.select_trains(by_id[10010:10020])
    assert window(kd).shape == (10, 1000)
    with pytest.raises(TypeError, match=r"Cannot apply select\('\*'\) to SourceData: it has no "
                                        r"\.select\(\) method"):
        select('*')(sd)
    with pytest.raises(TypeError, match=r"Cannot apply require_any\(\) to KeyData"):
        require_any()(kd)
    with pytest.raises(TypeError, match=r"Cannot apply deselect"):
        deselect('*')(kd)
    with pytest.raises(TypeError, match=r"Cannot apply select_trains\(by_index\[0\]\) to int"):
        select_trains(0)(3)


def test_union_of_key_data_is_a_clear_type_error(run):
    kd = run[XGM_OUT, 'data.intensityTD']
    u = select_trains(np.s_[:2]) | select_trains(np.s_[5:])
    if hasattr(kd, 'union'):
        pytest.skip('KeyData has union now')
    with pytest.raises(TypeError, match=r'Cannot apply union\(.*\) to KeyData'):
        u(kd)


# ------------------------------------------------------------------ values


def test_recipes_are_frozen():
    r = select('*')
    with pytest.raises(AttributeError):
        r.steps = ()
    with pytest.raises(AttributeError):
        r.steps[0].target = Globs(())


def test_pickle_round_trips_small():
    r = (select(['*XGM*', ('*CAM*', 'data.*')], require_all=True)
         >> select_trains(by_id[10000:10100:2])
         >> (select({XGM: {'a', 'b'}}) | deselect('*')))
    data = pickle.dumps(r)
    back = pickle.loads(data)
    assert back == r and hash(back) == hash(r) and repr(back) == repr(r)
    assert len(data) < 1000


def test_cloudpickle_round_trips():
    cloudpickle = pytest.importorskip('cloudpickle')
    r = select('*XGM*') >> select_trains([1, 5])
    assert cloudpickle.loads(cloudpickle.dumps(r)) == r


NAMESPACE = {**{n: getattr(recipes, n) for n in recipes.__all__}, 'identity': identity,
             'by_id': by_id, 'by_index': by_index}


@pytest.mark.parametrize('r, text', [
    (Recipe(), 'Recipe()'),
    (select('*XGM*'), "select('*XGM*')"),
    (select('*XGM*', 'data.*'), "select('*XGM*', 'data.*')"),
    (select(['b', 'a']), "select([('a', '*'), ('b', '*')])"),
    (select([]), 'select([])'),
    (select({'S': {'k2', 'k1'}, 'R': None}), "select({'R': None, 'S': {'k1', 'k2'}})"),
    (deselect('*AGIPD*'), "deselect('*AGIPD*')"),
    (require_all(warn_drop_trains_frac=0.25), 'require_all(warn_drop_trains_frac=0.25)'),
    (require_any(), 'require_any()'),
    (select_trains(np.s_[::2]), 'select_trains(by_index[::2])'),
    (select_trains(-1), 'select_trains(by_index[-1])'),
    (select_trains(np.array([3, 1], np.uint64)), 'select_trains(by_index[[3, 1]])'),
    (select_trains([True, False]), 'select_trains(by_index[[True, False]])'),
    (select_trains(by_id[[2**64 - 1]]), f'select_trains(by_id[[{2**64 - 1}]])'),
    (select_trains(by_id[10:]), 'select_trains(by_id[10:])'),
    (union(select('a'), select('b') >> select_trains(0)),
     "union(select('a'), select('b') >> select_trains(by_index[0]))"),
])
def test_repr_is_the_expression_building_the_recipe(r, text):
    assert repr(r) == text
    assert eval(text, dict(NAMESPACE)) == r


def test_explain():
    r = (select(['*XGM*', ('*CAM*', 'data.*')], require_all=True)
         >> (deselect({XGM: None}) | select_trains(np.s_[:5]))
         >> require_any())
    assert r.explain() == "\n".join([
        "Recipe: 4 steps",
        "  1. select sources/keys matching ('*CAM*', 'data.*'), ('*XGM*', '*')",
        "  2. require_all: keep trains where every selected source has data (warn when a "
        "source drops >= 100% of the trains)",
        "  3. union of 2 recipes, each applied to this step's input:",
        "     Recipe: 1 step",
        f"       1. deselect sources/keys named '{XGM}' (current keys)",
        "     Recipe: 1 step",
        "       1. select_trains by train positions: by_index[:5]",
        "  4. require_any: keep trains where at least one selected source has data",
    ])
    assert identity.explain() == "Recipe: 0 steps (identity)"


# ------------------------------------------------------------------ docs and house rules


def _markdown_blocks(text):
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)


def test_pipelines_doc_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = _markdown_blocks((ROOT / 'docs' / 'pipelines.md').read_text())
    python = [i for i, (lang, _) in enumerate(blocks) if lang == 'python']
    assert len(python) >= 5
    for i in python:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(blocks[i][1], f'docs/pipelines.md block {i}', 'exec'),
                 {'__name__': '__pipelines_doc__'})
        # A ```text block right after a python block shows what the block prints.
        if i + 1 < len(blocks) and blocks[i + 1][0] == 'text':
            assert out.getvalue() == blocks[i + 1][1]


def test_public_docstring_examples():
    # The core's examples run in tests/test_doctests.py; the face module's run here.
    result = doctest.testmod(recipes, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_core_recipe_is_pure():
    tree = ast.parse(Path(core_recipe.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split('.')[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split('.')[0])
    # Relative imports stay inside the core (level 1); nothing that touches the world.
    assert not imported & {'os', 'h5py', 'pandas', 'xarray', 'zmq', 'xfeldata', 'pathlib'}
    assert all(n.level in (0, 1) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom))


def test_step_records_are_the_documented_ones():
    assert {Select, core_recipe.Deselect, Require, SelectTrains, Union} == set(
        core_recipe._STEP_TYPES)
