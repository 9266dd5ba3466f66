"""Aliases (API.md section 19), by example on a synthetic run and the corpus.

The demo run (written once per module) has an XGM (control + output channel),
a motor, a camera whose output misses every 10th train, and AGIPD modules.
"""
import json
import os
import pickle
import warnings
from pathlib import Path

import pytest

import xfeldata
from xfeldata import AliasError, KeyData, PropertyNameError, SourceData, SourceNameError, by_index
from xfeldata.aliases import (ALIAS_FILE_EXTENSIONS, AliasIndexer, merge_aliases,
                              normalise_alias, parse_aliases, read_alias_file)
from xfeldata.testing import make_demo_run

XGM = 'SA1_XTD2_XGM/DOOCS/MAIN'
XGM_OUT = 'SA1_XTD2_XGM/DOOCS/MAIN:output'
MOTOR = 'SPB_IRU_MOTORS/MOTOR/X'
CAM = 'SPB_IRU_CAM/CAM/SIDEMIC:daqOutput'
MISSING_SRC = 'SA4_XTD20_XGM/XGM/DOOCS'

ALIASES = {
    'xgm': XGM,
    'Beam_X': (XGM, 'beamPosition.ixPos'),
    'xgm-td': (XGM_OUT, 'data.intensityTD'),
    'motor-pos': (MOTOR, 'actualPosition'),
    'cam': (CAM, 'data.image.pixels'),
}
STORED = {'xgm': XGM, 'beam-x': (XGM, 'beamPosition.ixPos'),
          'xgm-td': (XGM_OUT, 'data.intensityTD'), 'motor-pos': (MOTOR, 'actualPosition'),
          'cam': (CAM, 'data.image.pixels')}
RED_CROSS = '\x1b[31m\u2717\x1b[0m'   # the red cross of the listing


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp('demo')
    make_demo_run(d, n_modules=2)
    return d


@pytest.fixture(scope='module')
def run(run_dir):
    return xfeldata.RunDirectory(run_dir)


@pytest.fixture(scope='module')
def arun(run):
    return run.with_aliases(ALIASES)


# -- names and definitions --------------------------------------------------------------

@pytest.mark.parametrize('name, norm', [('My_XGM', 'my-xgm'), ('a-b_c', 'a-b-c'), ('x', 'x')])
def test_normalise_alias(name, norm):
    assert normalise_alias(name) == norm


def test_parse_all_three_forms():
    got = parse_aliases({'XGM': XGM, 'beam_x': [XGM, 'beamPosition.ixPos'],
                         MOTOR: {'Motor_Pos': 'actualPosition'}})
    assert got == {'xgm': XGM, 'beam-x': (XGM, 'beamPosition.ixPos'),
                   'motor-pos': (MOTOR, 'actualPosition')}


@pytest.mark.parametrize('defs, words', [
    ({'a': 3}, ["'a'", '3']),
    ({'a': [XGM]}, ["'a'"]),
    ({'a': [XGM, 'k', 'extra']}, ["'a'"]),
    ({'a': [XGM, 5]}, ["'a'"]),
    ({'a': ''}, ["'a'"]),
    ({'a': None}, ["'a'", 'None']),
    ({XGM: {'a': 5}}, ["'a'", XGM]),
    ({XGM: {7: 'k'}}, ['7']),
    ({7: XGM}, ['7']),
    ({'': XGM}, ["''"]),
])
def test_parse_bad_values(defs, words):
    with pytest.raises(ValueError) as info:
        parse_aliases(defs)
    for w in words:
        assert w in str(info.value)


def test_parse_not_a_mapping():
    with pytest.raises(ValueError, match='mapping'):
        parse_aliases([('a', XGM)])


def test_parse_conflict_within_one_definition_names_both_values():
    with pytest.raises(ValueError, match='conflicting alias definition') as info:
        parse_aliases({'My_XGM': XGM, 'my-xgm': MOTOR})
    msg = str(info.value)
    assert "'my-xgm'" in msg and XGM in msg and MOTOR in msg


def test_parse_same_value_twice_is_fine():
    assert parse_aliases({'My_XGM': XGM, 'my-xgm': XGM}) == {'my-xgm': XGM}


def test_merge_aliases():
    assert merge_aliases({'a': XGM}, [('a', XGM), ('b', (XGM, 'k'))]) == {
        'a': XGM, 'b': (XGM, 'k')}
    with pytest.raises(ValueError, match="conflicting alias definition for 'a'"):
        merge_aliases({'a': XGM}, {'A': (XGM, 'k')})


# -- files --------------------------------------------------------------------------------

FILE_TEXT = {
    '.json': json.dumps({'xgm': XGM, 'Beam_X': [XGM, 'beamPosition.ixPos'],
                         MOTOR: {'motor-pos': 'actualPosition'}}),
    '.yaml': f"xgm: {XGM}\nBeam_X: [{XGM}, beamPosition.ixPos]\n"
             f"{MOTOR}:\n  motor-pos: actualPosition\n",
    '.toml': f'xgm = "{XGM}"\nBeam_X = ["{XGM}", "beamPosition.ixPos"]\n'
             f'["{MOTOR}"]\nmotor-pos = "actualPosition"\n',
}
FILE_TEXT['.yml'] = FILE_TEXT['.yaml']
FROM_FILE = {'xgm': XGM, 'beam-x': (XGM, 'beamPosition.ixPos'),
             'motor-pos': (MOTOR, 'actualPosition')}


@pytest.mark.parametrize('ext', sorted(FILE_TEXT))
def test_alias_file_formats(run, tmp_path, ext):
    path = tmp_path / f'aliases{ext}'
    path.write_text(FILE_TEXT[ext])
    assert read_alias_file(path) == FROM_FILE
    dc = run.with_aliases(path)
    assert dict(dc._aliases) == FROM_FILE
    assert dc.alias.file_paths() == [path]
    assert dc.alias['motor_pos'].key == 'actualPosition.value'


def test_alias_file_extension_case_insensitive(tmp_path):
    path = tmp_path / 'aliases.YML'
    path.write_text(FILE_TEXT['.yaml'])
    assert read_alias_file(path) == FROM_FILE


def test_supported_extensions():
    assert set(ALIAS_FILE_EXTENSIONS) == {'.json', '.yaml', '.yml', '.toml'}


@pytest.mark.parametrize('name', ['aliases.txt', 'aliases'])
def test_unknown_extension_is_a_clear_value_error(run, tmp_path, name):
    path = tmp_path / name
    path.write_text(FILE_TEXT['.yaml'])
    with pytest.raises(ValueError, match='Unknown alias file extension') as info:
        run.with_aliases(path)
    for ext in ('.json', '.yaml', '.yml', '.toml'):
        assert ext in str(info.value)
    assert str(path) in str(info.value)


def test_missing_alias_file(run, tmp_path):
    path = tmp_path / 'nope.yml'
    with pytest.raises(FileNotFoundError) as info:
        run.with_aliases(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize('ext, text', [
    ('.json', '{"a": '),
    ('.yaml', 'a: [unclosed\n'),
    ('.toml', 'a = \n'),
])
def test_unparseable_alias_file(run, tmp_path, ext, text):
    path = tmp_path / f'bad{ext}'
    path.write_text(text)
    with pytest.raises(ValueError, match='Could not read') as info:
        run.with_aliases(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize('ext, text', [
    ('.json', '["a", "b"]'),
    ('.yaml', '- a\n- b\n'),
    ('.json', '{"a": 3}'),
    ('.yaml', 'a: {b: [1, 2]}\n'),
    ('.yaml', f'1: {XGM}\n'),
])
def test_bad_content_names_the_file(tmp_path, ext, text):
    path = tmp_path / f'bad{ext}'
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        read_alias_file(path)
    assert str(path) in str(info.value)


def test_empty_yaml_file_defines_nothing(run, tmp_path):
    path = tmp_path / 'empty.yml'
    path.write_text('')
    dc = run.with_aliases(path)
    assert dc._aliases == ()
    assert dc.alias.file_paths() == [path]


def test_conflict_between_file_and_dict_names_alias_values_and_file(run, tmp_path):
    path = tmp_path / 'a.yml'
    path.write_text(f'xgm: {XGM}\n')
    with pytest.raises(ValueError, match="conflicting alias definition for 'xgm'") as info:
        run.with_aliases({'XGM': MOTOR}, path)
    msg = str(info.value)
    assert XGM in msg and MOTOR in msg and str(path) in msg


@pytest.mark.parametrize('bad', [42, ['xgm'], None, b'aliases.yml'])
def test_with_aliases_bad_definition_type(run, bad):
    with pytest.raises(TypeError, match='dicts or alias file paths'):
        run.with_aliases(bad)


# -- with_aliases, lookups ---------------------------------------------------------------

def test_with_aliases_returns_new_collection(run, arun):
    assert run._aliases == ()
    assert dict(arun._aliases) == STORED
    assert arun != run
    assert arun.train_ids == run.train_ids
    assert arun.all_sources == run.all_sources


def test_with_aliases_adds_to_existing(arun):
    dc = arun.with_aliases({'extra': MOTOR})
    assert dict(dc._aliases) == {**STORED, 'extra': MOTOR}


def test_with_aliases_same_definition_again_is_fine(arun):
    assert arun.with_aliases({'XGM': XGM}) == arun


def test_with_aliases_conflict_with_existing(arun):
    with pytest.raises(ValueError, match="conflicting alias definition for 'xgm'") as info:
        arun.with_aliases({'xgm': MOTOR})
    assert XGM in str(info.value) and MOTOR in str(info.value)


def test_lookup_source_alias(arun):
    sd = arun.alias['xgm']
    assert isinstance(sd, SourceData) and sd.source == XGM


@pytest.mark.parametrize('name', ['beam-x', 'Beam_X', 'BEAM-X', 'beam_x'])
def test_lookup_key_alias_any_spelling(arun, name):
    kd = arun.alias[name]
    assert isinstance(kd, KeyData)
    assert (kd.source, kd.key) == (XGM, 'beamPosition.ixPos.value')


def test_lookup_source_alias_with_key(arun):
    kd = arun.alias['XGM', 'beamPosition.iyPos']
    assert (kd.source, kd.key) == (XGM, 'beamPosition.iyPos.value')


def test_lookup_key_alias_with_key_is_value_error(arun):
    with pytest.raises(ValueError, match="alias for a key"):
        arun.alias['beam-x', 'beamPosition.iyPos']


@pytest.mark.parametrize('item', [3, ('xgm',), ('xgm', 'a', 'b'), ('xgm', 3), None, 1.5])
def test_lookup_bad_type(arun, item):
    with pytest.raises(TypeError):
        arun.alias[item]


def test_unknown_alias_suggests_close_matches(arun):
    with pytest.raises(AliasError) as info:
        arun.alias['Beam_Y']
    assert isinstance(info.value, KeyError)
    assert info.value.alias == 'beam-y'
    assert "Did you mean: 'beam-x'" in str(info.value)


def test_alias_error_without_aliases(run):
    with pytest.raises(AliasError, match='no aliases have been loaded'):
        run.alias['xgm']


def test_alias_to_missing_source(run):
    dc = run.with_aliases({'gone': MISSING_SRC, 'gone-key': (MISSING_SRC, 'k')})
    for name in ('gone', 'gone-key'):
        with pytest.raises(SourceNameError) as info:
            dc.alias[name]
        assert info.value.source == MISSING_SRC
        assert repr(name) in str(info.value) and MISSING_SRC in str(info.value)


def test_alias_to_missing_key(run):
    dc = run.with_aliases({'bad-key': (XGM, 'no.such.key')})
    with pytest.raises(PropertyNameError) as info:
        dc.alias['bad-key']
    assert info.value.source == XGM
    with pytest.raises(PropertyNameError):
        dc.alias['bad-key'.upper().replace('-', '_')]
    with pytest.raises(PropertyNameError):
        run.with_aliases({'xgm': XGM}).alias['xgm', 'no.such.key']


def test_contains(run, arun):
    dc = arun.with_aliases({'gone': MISSING_SRC, 'bad-key': (XGM, 'nope')})
    assert 'xgm' in dc.alias and 'Beam_X' in dc.alias
    assert ('xgm', 'beamPosition.iyPos') in dc.alias
    for item in ('gone', 'bad-key', 'no-such-alias', ('beam-x', 'beamPosition.iyPos'),
                 ('xgm', 'nope'), 3, ('xgm',)):
        assert item not in dc.alias
    assert 'xgm' not in run.alias


def test_key_completions(arun):
    assert arun.alias._ipython_key_completions_() == sorted(STORED)


def test_str(run, arun):
    assert str(arun.alias) == '<xfeldata.AliasIndexer with 5 aliases>'
    assert str(run.alias) == '<xfeldata.AliasIndexer with 0 aliases>'
    assert isinstance(arun.alias, AliasIndexer)


# -- repr ---------------------------------------------------------------------------------

def test_repr_empty(run):
    assert repr(run.alias) == 'No aliases have been loaded.'


def test_repr_lists_aliases_by_source(arun):
    text = repr(arun.alias)
    lines = text.splitlines()
    assert lines[0] == 'Aliases (5), by source:'
    assert f'  {XGM}' in lines
    i = lines.index(f'  {XGM}')
    # Source alias first, then the key aliases of that source.
    assert lines[i + 1] == '    xgm (the source)'
    assert lines[i + 2] == '    beam-x -> beamPosition.ixPos'
    assert RED_CROSS not in text and '~' not in text


def test_repr_marks_missing_and_partial(run):
    dc = run.with_aliases({'xgm': XGM, 'bad-key': (XGM, 'nope'), 'gone': MISSING_SRC})
    lines = repr(dc.alias).splitlines()
    assert f'~ {XGM}' in lines                       # partly valid group
    assert f'{RED_CROSS} {MISSING_SRC}' in lines          # nothing valid
    assert f'  {RED_CROSS} bad-key -> nope' in lines
    assert f'  {RED_CROSS} gone (the source)' in lines
    assert '    xgm (the source)' in lines


def test_repr_after_selection_marks_deselected(arun):
    dc = arun.select(XGM_OUT)
    lines = repr(dc.alias).splitlines()
    assert f'{RED_CROSS} {XGM}' in lines
    assert f'  {XGM_OUT}' in lines


def test_repr_lists_files(run, tmp_path):
    path = tmp_path / 'a.yml'
    path.write_text(f'xgm: {XGM}\n')
    lines = repr(run.with_aliases(path).alias).splitlines()
    assert lines[-2:] == ['Alias files:', f'  {path}']


# -- files and links ------------------------------------------------------------------------

def test_file_paths_sorted_and_unique(run, tmp_path):
    a, b = tmp_path / 'b.yml', tmp_path / 'a.json'
    a.write_text(f'xgm: {XGM}\n')
    b.write_text(json.dumps({'motor': MOTOR}))
    dc = run.with_aliases(a).with_aliases(b, a)
    assert dc.alias.file_paths() == [b, a]
    assert dc.alias.jhub_links() == {}


def test_relative_alias_file_is_recorded_absolute(run, tmp_path, monkeypatch):
    (tmp_path / 'a.yml').write_text(f'xgm: {XGM}\n')
    monkeypatch.chdir(tmp_path)
    assert run.with_aliases('a.yml').alias.file_paths() == [tmp_path / 'a.yml']


def test_jhub_links_for_gpfs_paths(arun):
    gp = '/gpfs/exfel/exp/SPB/202401/p001234/usr/extra-data-aliases.yml'
    dc = arun._evolve(alias_files=(gp, '/home/me/a.yml'))
    links = dc.alias.jhub_links()
    assert list(links) == [Path(gp)]
    assert links[Path(gp)].startswith('https://max-jhub.desy.de/')
    assert links[Path(gp)].endswith(gp)
    assert links[Path(gp)] in repr(dc.alias)


# -- aliases follow selections --------------------------------------------------------------

def test_aliases_survive_selections(arun):
    for dc in (arun.select(XGM), arun.select('*', require_all=True), arun.deselect(CAM),
               arun.select_trains(by_index[:10]), arun[5:20], arun[20],
               next(arun.split_trains(parts=3))):
        assert dc._aliases == arun._aliases
        assert dc.alias['xgm'].source == XGM


def test_alias_lookup_follows_train_selection(arun):
    dc = arun.select_trains(by_index[10:15])
    assert dc.alias['beam-x'].train_ids == arun.train_ids[10:15]
    assert dc.alias['beam-x'].shape == (5,)


def test_alias_to_deselected_source_fails(arun):
    with pytest.raises(SourceNameError):
        arun.select(MOTOR).alias['xgm']


def test_union_merges_aliases(run, arun):
    a = run.with_aliases({'xgm': XGM})
    b = run.with_aliases({'motor': MOTOR})
    u = a.union(b)
    assert dict(u._aliases) == {'xgm': XGM, 'motor': MOTOR}
    assert dict((a | b)._aliases) == dict(u._aliases)
    # Halves of one run by trains keep the aliases.
    halves = arun[:50].union(arun[50:])
    assert halves._aliases == arun._aliases


def test_union_merges_alias_files(run, tmp_path):
    p1, p2 = tmp_path / 'a.yml', tmp_path / 'b.yml'
    p1.write_text(f'xgm: {XGM}\n')
    p2.write_text(f'motor: {MOTOR}\n')
    u = run.with_aliases(p1).union(run.with_aliases(p2))
    assert u.alias.file_paths() == [p1, p2]


def test_union_conflict(run):
    a = run.with_aliases({'x': XGM})
    b = run.with_aliases({'X': MOTOR})
    with pytest.raises(ValueError, match="conflicting alias definition for 'x'") as info:
        a.union(b)
    assert XGM in str(info.value) and MOTOR in str(info.value)


def test_aliases_pickle(arun):
    again = pickle.loads(pickle.dumps(arun))
    assert again == arun and again._aliases == arun._aliases
    assert again.alias['xgm'].source == XGM


def test_with_aliases_keeps_context_manager(run_dir):
    with xfeldata.RunDirectory(run_dir).with_aliases({'xgm': XGM}) as dc:
        assert dc.alias['xgm'].source == XGM
    with pytest.raises(Exception, match='with'):
        with xfeldata.RunDirectory(run_dir).with_aliases({'xgm': XGM}).select(XGM):
            pass


def test_aliases_change_equality_and_hash(run, arun):
    same = run.with_aliases(ALIASES)
    assert same == arun and hash(same) == hash(arun)
    assert run.with_aliases({'xgm': XGM}) != arun


# -- drop_aliases ---------------------------------------------------------------------------

def test_drop_aliases(run, arun, tmp_path):
    path = tmp_path / 'a.yml'
    path.write_text(f'motor: {MOTOR}\n')
    dc = arun.with_aliases(path).drop_aliases()
    assert dc._aliases == () and dc._alias_files == ()
    assert dc == run
    assert dc.alias.file_paths() == []
    with pytest.raises(AliasError, match='no aliases have been loaded'):
        dc.alias['xgm']
    # The data stays.
    assert dc.all_sources == arun.all_sources and dc.train_ids == arun.train_ids


# -- only_aliases ---------------------------------------------------------------------------

def _keys(dc):
    return {s: set(dc.keys_for_source(s)) for s in dc.all_sources}


def test_only_aliases(run):
    dc = run.only_aliases(ALIASES)
    assert dc.all_sources == {XGM, XGM_OUT, MOTOR, CAM}
    keys = _keys(dc)
    assert keys[XGM] == set(run.keys_for_source(XGM))     # aliased as a whole
    assert keys[XGM_OUT] == {'data.intensityTD'}
    assert keys[MOTOR] == {'actualPosition.value'}
    assert keys[CAM] == {'data.image.pixels'}
    assert dc.train_ids == run.train_ids
    assert dict(dc._aliases) == STORED


def test_only_aliases_key_then_source_alias_of_same_source(run):
    # A source alias wins over key aliases of that source, in either order.
    for defs in ({'a': (XGM, 'beamPosition.ixPos'), 'b': XGM},
                 {'b': XGM, 'a': (XGM, 'beamPosition.ixPos')}):
        dc = run.only_aliases(defs)
        assert set(dc.keys_for_source(XGM)) == set(run.keys_for_source(XGM))


def test_only_aliases_drops_missing_silently(run):
    dc = run.only_aliases({**ALIASES, 'gone': MISSING_SRC, 'bad-key': (MOTOR, 'nope')})
    assert dc.all_sources == {XGM, XGM_OUT, MOTOR, CAM}
    assert set(dc.keys_for_source(MOTOR)) == {'actualPosition.value'}


def test_only_aliases_strict(run):
    with pytest.raises(ValueError, match='strict') as info:
        run.only_aliases({**ALIASES, 'gone': MISSING_SRC, 'bad-key': (MOTOR, 'nope')},
                         strict=True)
    msg = str(info.value)
    assert "'gone'" in msg and MISSING_SRC in msg and "'bad-key'" in msg and 'nope' in msg
    assert "'xgm'" not in msg
    # Strict with everything present is the plain result.
    assert run.only_aliases(ALIASES, strict=True) == run.only_aliases(ALIASES)


def test_only_aliases_require_all(run):
    counts = run[CAM].data_counts(labelled=False)
    dc = run.only_aliases(ALIASES, require_all=True)
    assert dc.train_ids == [t for t, c in zip(run.train_ids, counts) if c > 0]
    assert len(dc.train_ids) < len(run.train_ids)


def test_only_aliases_uses_existing_aliases(arun):
    dc = arun.only_aliases()
    assert dc == arun.only_aliases(ALIASES)
    dc2 = arun.only_aliases({'more': 'SPB_IRU_CAM/CAM/SIDEMIC'})
    assert dc2.all_sources == {XGM, XGM_OUT, MOTOR, CAM, 'SPB_IRU_CAM/CAM/SIDEMIC'}


def test_only_aliases_from_file(run, tmp_path):
    path = tmp_path / 'a.toml'
    path.write_text(FILE_TEXT['.toml'])
    dc = run.only_aliases(path)
    assert dc.all_sources == {XGM, MOTOR}
    assert dc.alias.file_paths() == [path]


def test_only_aliases_without_any(run):
    with pytest.raises(ValueError, match='no aliases have been loaded'):
        run.only_aliases()


# -- selecting by alias -------------------------------------------------------------------

def test_alias_select_source_alias_with_key_glob(arun):
    assert arun.alias.select('xgm', 'beamPosition.*') == arun.select(XGM, 'beamPosition.*')
    assert arun.alias.select('XGM') == arun.select(XGM)


def test_alias_select_key_alias(arun):
    assert arun.alias.select('beam-x') == arun.select(XGM, 'beamPosition.ixPos')
    with pytest.raises(ValueError, match='alias for a key'):
        arun.alias.select('beam-x', 'beamPosition.*')


def test_alias_select_iterable(arun):
    got = arun.alias.select(['xgm-td', ('xgm', 'beamPosition.iy*'), 'motor-pos'])
    want = arun.select([(XGM_OUT, 'data.intensityTD'), (XGM, 'beamPosition.iy*'),
                        (MOTOR, 'actualPosition')])
    assert got == want
    assert got._aliases == arun._aliases


def test_alias_select_dict(arun):
    got = arun.alias.select({'xgm': {'beamPosition.ixPos'}})
    assert got == arun.select({XGM: {'beamPosition.ixPos'}})
    with pytest.raises(ValueError, match='alias for a key'):
        arun.alias.select({'beam-x': None})


def test_alias_select_require_all(arun):
    assert arun.alias.select(['cam', 'xgm'], require_all=True) == \
        arun.select([(CAM, 'data.image.pixels'), XGM], require_all=True)
    assert arun.alias.select(['cam'], require_any=True) == \
        arun.select([(CAM, 'data.image.pixels')], require_any=True)


def test_alias_select_errors(arun):
    with pytest.raises(AliasError):
        arun.alias.select('no-such')
    with pytest.raises(AliasError):
        arun.alias.select(['xgm', 'no-such'])
    with pytest.raises(TypeError):
        arun.alias.select(42)
    with pytest.raises(TypeError):
        arun.alias.select([('xgm', 'a', 'b')])
    with pytest.raises(TypeError):
        arun.alias.select([3])
    with pytest.raises(ValueError, match='No matches'):
        arun.alias.select('xgm', 'no.such.*')


def test_alias_names_are_not_globs(arun):
    with pytest.raises(AliasError):
        arun.alias.select('xg*')


def test_alias_select_source_with_glob_characters(run):
    # The alias target is an exact name, even if it holds glob characters.
    dc = run.with_aliases({'odd': 'SA1_XTD2_XGM/DOOCS/MA[I]N'})
    with pytest.raises(ValueError, match='No matches'):
        dc.alias.select('odd')


def test_alias_deselect(arun):
    assert arun.alias.deselect('xgm') == arun.deselect(XGM)
    assert arun.alias.deselect('beam-x') == arun.deselect(XGM, 'beamPosition.ixPos')
    assert arun.alias.deselect(['cam', ('xgm', 'beamPosition.*')]) == \
        arun.deselect([(CAM, 'data.image.pixels'), (XGM, 'beamPosition.*')])
    assert arun.alias.deselect({'xgm': None}) == arun.deselect({XGM: None})


# -- open_run and the proposal's alias file ---------------------------------------------------

@pytest.fixture
def proposal(tmp_path, monkeypatch, run_dir):
    prop = tmp_path / 'SPB' / '202401' / 'p001234'
    (prop / 'raw').mkdir(parents=True)
    (prop / 'usr').mkdir()
    os.symlink(run_dir, prop / 'raw' / 'r0001')
    monkeypatch.setenv('XFELDATA_DATA_ROOT', str(tmp_path))
    return prop


def test_open_run_loads_default_alias_file(proposal):
    path = proposal / 'usr' / 'extra-data-aliases.yml'
    path.write_text(f'xgm: {XGM}\nbeam_x: [{XGM}, beamPosition.ixPos]\n')
    dc = xfeldata.open_run(1234, 1)
    assert dc.alias['beam-x'].key == 'beamPosition.ixPos.value'
    assert dc.alias.file_paths() == [path]


def test_open_run_without_default_alias_file(proposal):
    dc = xfeldata.open_run(1234, 1)
    assert dc._aliases == () and dc._alias_files == ()
    assert not (proposal / 'usr' / 'extra-data-aliases.yml').exists()


def test_open_run_aliases_none(proposal):
    (proposal / 'usr' / 'extra-data-aliases.yml').write_text(f'xgm: {XGM}\n')
    dc = xfeldata.open_run(1234, 1, aliases=None)
    assert dc._aliases == ()


def test_open_run_other_alias_file(proposal, tmp_path):
    (proposal / 'usr' / 'mine.json').write_text(json.dumps({'motor': MOTOR}))
    assert dict(xfeldata.open_run(1234, 1, aliases='{}/usr/mine.json')._aliases) == {
        'motor': MOTOR}
    other = tmp_path / 'elsewhere.toml'
    other.write_text(f'motor = "{MOTOR}"\n')
    assert dict(xfeldata.open_run(1234, 1, aliases=other)._aliases) == {'motor': MOTOR}
    assert dict(xfeldata.open_run(1234, 1, aliases={'m': MOTOR})._aliases) == {'m': MOTOR}


def test_open_run_missing_other_alias_file(proposal):
    with pytest.raises(FileNotFoundError, match='mine.yml'):
        xfeldata.open_run(1234, 1, aliases='{}/usr/mine.yml')


def test_open_run_bad_placeholder(proposal):
    with pytest.raises(ValueError, match='placeholder'):
        xfeldata.open_run(1234, 1, aliases='{prop}/usr/a.yml')


def test_open_run_broken_default_alias_file(proposal):
    (proposal / 'usr' / 'extra-data-aliases.yml').write_text('xgm: [a, b, c]\n')
    with pytest.raises(ValueError, match='extra-data-aliases.yml'):
        xfeldata.open_run(1234, 1)


# -- the corpus's recorded answers (sa3_control cases) ----------------------------------------

CORPUS = Path(os.environ.get('XFELDATA_CORPUS',
                             Path(__file__).resolve().parents[1] / '..' / 'shared' / 'corpus'))
CORPUS = CORPUS.resolve()
ALIAS_CASES = ['sa3_control_v0.5', 'sa3_control_v1.2']


@pytest.mark.parametrize('case', ALIAS_CASES)
def test_corpus_alias_answers(case, monkeypatch):
    """Lookups and probes of ``AliasInfo`` (corpus README), which the example
    consumer's sections do not compare."""
    if not (CORPUS / case / 'expected.json').is_file():
        if os.environ.get('CI') == 'true':
            pytest.fail(f'CI=true but the corpus is missing at {CORPUS}')
        pytest.skip('corpus absent')
    monkeypatch.syspath_prepend(str(CORPUS))
    import corpus_helpers as ch
    import example_consumer as ec
    import xfeldata.run_files_map as rfm
    monkeypatch.setattr(rfm.RunFilesMap, 'save', lambda self, *a, **kw: None)
    case_dir = CORPUS / case
    exp = json.loads((case_dir / 'expected.json').read_text())
    entries = [o for o in exp['opens'] if (o.get('result') or {}).get('aliases')]
    assert entries
    checker = ec.Checker(xfeldata, [])
    for entry in entries:
        info = entry['result']['aliases']
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            dc = ec.open_call(xfeldata, str(case_dir), entry['call'])
        parent_keys = {s: set(dc.keys_for_source(s)) for s in dc.all_sources}

        def compare(path, got, e):
            ec.check_returned(checker, path, got, e, parent_keys)
        adc = dc.with_aliases(str(case_dir / info['file']))
        for name, e in info['lookups'].items():
            item = tuple(name.split(' | ')) if ' | ' in name else name
            checker.run(f'.lookups[{name}]', e, lambda item=item: adc.alias[item], compare)
        for probe in info['probes']:
            checker.run(f".probes[{probe['name']}]", probe['result'],
                        lambda probe=probe: ch.apply_ops(dc, probe['ops'],
                                                         ec.lib_proxy(xfeldata),
                                                         base_dir=str(case_dir)),
                        compare)
    assert checker.n_checks > 50
    assert not checker.failures, '\n'.join(checker.failures[:30])


def test_docstring_examples():
    import doctest

    import xfeldata.aliases
    result = doctest.testmod(xfeldata.aliases, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_constructor_aliases_are_normalised_on_lookup(run):
    dc = xfeldata.DataCollection(run.files, aliases={'My_XGM': XGM,
                                                     'Beam_X': [XGM, 'beamPosition.ixPos']})
    assert dc.alias['my-xgm'].source == XGM
    assert dc.alias['beam-x'].key == 'beamPosition.ixPos.value'
    assert dc.alias._ipython_key_completions_() == ['beam-x', 'my-xgm']
