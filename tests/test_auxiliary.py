"""Auxiliary sources (REDUCTION / ERRATA, API.md section 20): synthetic run and corpus.

The synthetic run has a DA01 aggregator (XGM + an ERRATA source without a
channel) and two AGIPD modules, each with a lit-frame finder REDUCTION source
of the *same* name (so it needs an ``AGG@`` prefix) and a per-module pulse
reduction source whose name ends with the module's own source name (so it
keeps its plain name). The two modules' lit-frame finders have different
counts per train, which shows the prefix picks the right files.
"""
import importlib
import json
import os
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import xfeldata
from xfeldata import KeyData, SourceData, SourceNameError, by_index
from xfeldata.auxiliary import AuxiliaryIndexer
from xfeldata.testing import Aggregator, InstrumentSource, RunSpec, write_run, xgm_sources, \
    xtdf_module

TIDS = np.arange(10000, 10006)
LITFRM = 'SPB_IRU_AGIPD1M1/REDU/LITFRM:daqFilter'
ERRATA = 'TRAINS_OUTSIDE_BUFFER_RANGE'
MOD0 = 'SPB_DET_AGIPD1M-1/DET/0CH0:xtdf'
PULSE0 = f'PULSE_REDUCTION/{MOD0}'
PULSE1 = 'PULSE_REDUCTION/SPB_DET_AGIPD1M-1/DET/1CH0:xtdf'
LIT_COUNTS = {0: [1, 1, 0, 1, 1, 1], 1: [1, 0, 0, 1, 2, 1]}


def _litfrm(modno):
    return InstrumentSource(LITFRM, {'data.dataFramePattern': ('u1', (8,))},
                            groups={'data': LIT_COUNTS[modno]}, section='REDUCTION')


def _pulse(modno):
    return InstrumentSource(f'PULSE_REDUCTION/SPB_DET_AGIPD1M-1/DET/{modno}CH0:xtdf',
                            {'image.data.reductionRatio': 'f8'},
                            groups={'image': [1] * len(TIDS)}, section='REDUCTION')


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp('aux_run')
    errata = InstrumentSource(ERRATA, {'event.values': (str, (3,)),
                                       'event.originalTrainIds': ('u8', (3,))},
                              groups={'event': [0, 1, 0, 0, 1, 0]}, section='ERRATA')
    aggs = [Aggregator('DA01', [*xgm_sources(samples=4), errata], sequence_starts=(3,))]
    for m in (0, 1):
        aggs.append(Aggregator(f'AGIPD{m:02d}', [xtdf_module(modno=m, frames=2,
                                                             frame_shape=(4, 4)),
                                                 _litfrm(m), _pulse(m)]))
    write_run(d, RunSpec(TIDS, aggs, run=7, proposal=700000))
    return d


@pytest.fixture(scope='module')
def run(run_dir):
    return xfeldata.RunDirectory(run_dir)


def test_source_lists_and_naming_rule(run):
    aux = run.auxiliary
    assert aux.reduction_sources == {f'AGIPD00@{LITFRM}', f'AGIPD01@{LITFRM}', PULSE0, PULSE1}
    # No CONTROL/INSTRUMENT source of DA01 is a suffix of it: prefixed.
    assert aux.errata_sources == {f'DA01@{ERRATA}'}
    assert aux.all_sources == aux.reduction_sources | aux.errata_sources
    assert isinstance(aux.all_sources, frozenset)
    # Auxiliary sources are not ordinary sources of the collection.
    assert not (run.all_sources & {LITFRM, PULSE0, ERRATA})


def test_getitem_source(run):
    aux = run.auxiliary
    sd = aux[f'DA01@{ERRATA}']
    assert isinstance(sd, SourceData)
    assert (sd.section, sd.is_errata, sd.is_auxiliary, sd.is_instrument) == \
        ('ERRATA', True, True, False)
    assert sd.source == ERRATA  # named by its group in the files
    assert sorted(os.path.basename(f.filename) for f in sd.files) == \
        ['RAW-R0007-DA01-S00000.h5', 'RAW-R0007-DA01-S00001.h5']
    assert sd.keys() == {'event.values', 'event.originalTrainIds'}
    assert sd.index_groups == {'event'}
    assert sd.data_counts(labelled=False).tolist() == [0, 1, 0, 0, 1, 0]
    assert repr(sd) == ("<xfeldata.SourceData [section=ERRATA] "
                        f"source='{ERRATA}' for 6 trains>")


def test_prefix_selects_the_aggregator_files(run):
    aux = run.auxiliary
    for m in (0, 1):
        sd = aux[f'AGIPD{m:02d}@{LITFRM}']
        assert sd.is_reduction
        assert [os.path.basename(f.filename) for f in sd.files] == \
            [f'RAW-R0007-AGIPD{m:02d}-S00000.h5']
        assert sd.data_counts(labelled=False).tolist() == LIT_COUNTS[m]
    assert [os.path.basename(f.filename) for f in aux[PULSE1].files] == \
        ['RAW-R0007-AGIPD01-S00000.h5']


def test_getitem_key_reads_data(run, run_dir):
    import h5py
    kd = run.auxiliary[f'AGIPD01@{LITFRM}', 'data.dataFramePattern']
    assert isinstance(kd, KeyData)
    assert (kd.shape, kd.dtype) == ((5, 8), np.dtype('u1'))
    with h5py.File(run_dir / 'RAW-R0007-AGIPD01-S00000.h5', 'r') as f:
        raw = f[f'REDUCTION/{LITFRM}/data/dataFramePattern'][:5]
    np.testing.assert_array_equal(kd.ndarray(), raw)
    vals = run.auxiliary[f'DA01@{ERRATA}', 'event.values'].ndarray()
    assert vals.shape == (2, 3) and vals.dtype == object


def test_selection_is_followed(run):
    sub = run.select_trains(by_index[3:])
    sd = sub.auxiliary[f'DA01@{ERRATA}']
    assert sd.train_ids == list(TIDS[3:])
    # Only the second sequence file holds the selected trains.
    assert [os.path.basename(f.filename) for f in sd.files] == ['RAW-R0007-DA01-S00001.h5']
    assert sd.data_counts(labelled=False).tolist() == [0, 1, 0]
    assert str(sub.auxiliary) == '<xfeldata.AuxiliaryIndexer for 5 sources and 3 trains>'


def test_unknown_sources(run):
    aux = run.auxiliary
    with pytest.raises(SourceNameError, match='AGG@ prefix') as ei:
        aux[LITFRM]
    assert f"'AGIPD00@{LITFRM}'" in str(ei.value)
    with pytest.raises(SourceNameError, match="no auxiliary source named 'nope'"):
        aux['nope']
    with pytest.raises(SourceNameError):
        aux['nope', 'data.x']
    with pytest.raises(TypeError):
        aux[0]
    with pytest.raises(TypeError):
        aux[PULSE0, 'a', 'b']


def test_contains(run):
    aux = run.auxiliary
    assert PULSE0 in aux and f'AGIPD00@{LITFRM}' in aux
    assert LITFRM not in aux and MOD0 not in aux and 3 not in aux


def test_str_and_info(run, capsys):
    aux = run.auxiliary
    assert str(aux) == '<xfeldata.AuxiliaryIndexer for 5 sources and 6 trains>'
    aux.info()
    out = capsys.readouterr().out
    assert out.splitlines()[0] == '5 auxiliary sources:'
    assert f'  - DA01@{ERRATA}' in out.splitlines()


def test_indexer_is_lazy_and_pickles(run, monkeypatch):
    from xfeldata import auxiliary
    calls = []
    monkeypatch.setattr(auxiliary, 'aux_source_table',
                        lambda files: calls.append(1) or {})
    aux = run.auxiliary
    assert calls == []          # building it reads nothing
    assert aux.all_sources == frozenset()
    aux.errata_sources
    assert calls == [1]         # the table is made once per indexer
    monkeypatch.undo()
    aux2 = pickle.loads(pickle.dumps(run.auxiliary))
    assert PULSE0 in aux2


def test_one_file(run):
    one = xfeldata.H5File(next(f.filename for f in run.files if 'AGIPD00' in f.filename))
    aux = AuxiliaryIndexer.for_collection(one)
    assert aux.errata_sources == frozenset()
    # One aggregator holds both; only the pulse reduction source ends with a
    # source name of the file, so the lit-frame finder keeps its prefix.
    assert aux.reduction_sources == {f'AGIPD00@{LITFRM}', PULSE0}
    assert one.auxiliary[f'AGIPD00@{LITFRM}'].data_counts(labelled=False).tolist() == \
        LIT_COUNTS[0]


# -- corpus --------------------------------------------------------------------------

CORPUS = Path(os.environ.get('XFELDATA_CORPUS',
                             Path(__file__).resolve().parents[1] / '..' / 'shared' / 'corpus'))
CORPUS = CORPUS.resolve()


def _corpus_opens():
    if not (CORPUS / 'corpus_helpers.py').is_file():
        return [pytest.param(None, None, None, marks=pytest.mark.skip(reason='corpus absent'))]
    out = []
    for exp in sorted(CORPUS.glob('*/expected.json')):
        data = json.loads(exp.read_text())
        by_name = {o['name']: o for o in data['opens']}
        for entry in data['opens']:
            target = by_name[entry.get('same_result_as', entry['name'])]
            res = target.get('result')
            if res is None or 'auxiliary' not in res:
                continue
            if not res['auxiliary']['all_sources'] and exp.parent.name != 'spb_voview_v1.2':
                continue  # nothing to compare beyond an empty list; keeps the suite fast
            out.append(pytest.param(exp.parent, entry['call'], res['auxiliary'],
                                    id=f"{exp.parent.name}/{entry['name']}"))
    return out


@pytest.mark.parametrize('case_dir, call, expected', _corpus_opens())
def test_corpus_auxiliary(case_dir, call, expected, monkeypatch):
    sys.path.insert(0, str(CORPUS))
    ch = importlib.import_module('corpus_helpers')
    import xfeldata.run_files_map as rfm
    monkeypatch.setattr(rfm.RunFilesMap, 'save', lambda self, *a, **kw: None)
    kw = dict(call.get('kwargs', {}))
    path = case_dir / call['path']
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        dc = (xfeldata.RunDirectory if call['function'] == 'RunDirectory'
              else xfeldata.H5File)(path, **kw)
    aux = dc.auxiliary
    assert sorted(aux.all_sources) == expected['all_sources']
    assert sorted(aux.reduction_sources) == expected.get('reduction_sources', [])
    assert sorted(aux.errata_sources) == expected.get('errata_sources', [])
    for name, sexp in expected.get('sources', {}).items():
        sd = aux[name]
        assert sorted(sd.keys()) == sexp['keys'], name
        assert sorted(os.path.basename(f.filename) for f in sd.files) == sexp['files'], name
        for key, kexp in sexp['keydata'].items():
            kd = aux[name, key]
            ser = kd.data_counts()
            got = {'shape': list(kd.shape), 'dtype': ch.dtype_str(kd.dtype),
                   'data_counts': ch.encode_counts(ser.index.values, ser.values)}
            assert got == {k: kexp[k] for k in got}, (name, key)
            assert ch.sha256_of(kd.ndarray()) == kexp['sha256'], (name, key)

