"""Conformance with the reference corpus (../shared/corpus).

One test per (case, section), with the section names of the corpus's
``example_consumer.py``; the comparisons themselves are that script's, so the
corpus and these tests cannot drift apart. Sections owned by later issues are
marked xfail naming the feature that brings them.

Under ``CI=true`` a missing corpus fails the tests (it is always beside the
checkout in CI); elsewhere they are skipped.
"""
import importlib
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import xfeldata

CORPUS = Path(os.environ.get('XFELDATA_CORPUS',
                             Path(__file__).resolve().parents[1] / '..' / 'shared' / 'corpus'))
CORPUS = CORPUS.resolve()
HAVE_CORPUS = (CORPUS / 'example_consumer.py').is_file()

SECTIONS = ['files', 'validation', 'sources', 'trains', 'timestamps', 'metadata',
            'dataframes', 'selections', 'exceptions', 'split', 'keydata_api',
            'iteration', 'auxiliary', 'components', 'aliases']

# Sections brought by later issues: remove the mark when the feature lands.
PENDING = {
}

# Single cases still failing in a section that otherwise passes, with the reason.
# strict: a case that starts passing fails the run, so the mark gets removed.
KNOWN_FAILING = {
}


def _cases():
    if not HAVE_CORPUS:
        return []
    return sorted(p.parent.name for p in CORPUS.glob('*/expected.json'))


def _params():
    cases = _cases()
    if not cases:
        return [pytest.param(None, None, marks=pytest.mark.skip(reason='corpus absent'))]
    out = []
    for case in cases:
        for section in SECTIONS:
            marks = []
            if (case, section) in KNOWN_FAILING:
                marks.append(pytest.mark.xfail(reason=KNOWN_FAILING[case, section],
                                               strict=True))
            elif section in PENDING:
                # run=False: not run until its issue lands (keeps CI fast).
                marks.append(pytest.mark.xfail(reason=f"owned by the {PENDING[section]}",
                                               run=False))
            out.append(pytest.param(case, section, marks=marks, id=f"{case}/{section}"))
    return out


def test_corpus_present():
    if os.environ.get('CI') == 'true':
        assert HAVE_CORPUS, f"CI=true but the corpus is missing at {CORPUS}"
    elif not HAVE_CORPUS:
        pytest.skip('corpus absent')


@pytest.fixture(scope='module')
def consumer():
    sys.path.insert(0, str(CORPUS))
    ec = importlib.import_module('example_consumer')
    # Submodules the consumer uses only if imported (as with EXtra-data).
    for sub in ('xfeldata.validation', 'xfeldata.components'):
        importlib.import_module(sub)
    ch = importlib.import_module('corpus_helpers')
    # The corpus must stay exactly as it is: no run files map written into it.
    import xfeldata.run_files_map as rfm
    saved = rfm.RunFilesMap.save
    rfm.RunFilesMap.save = lambda self, *a, **kw: None
    yield ec, ch
    rfm.RunFilesMap.save = saved


def _check_files(ch, case_dir, exp):
    failures = []
    for name, fexp in exp['files'].items():
        path = case_dir / name
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                fa = xfeldata.FileAccess(path)
                got = {
                    'format_version': fa.format_version,
                    'train_ids': ch.encode_ids(fa.train_ids),
                    'n_train_ids': len(fa.train_ids),
                    'suspect_train_indices': [int(i) for i in np.nonzero(~fa.validity_flag)[0]],
                    'valid_train_ids': ch.encode_ids(fa.valid_train_ids),
                    'control_sources': sorted(fa.control_sources),
                    'instrument_sources': sorted(fa.instrument_sources),
                    'legacy_sources': dict(sorted(fa.legacy_sources.items())),
                    'reduction_sources': sorted(fa.reduction_sources),
                    'errata_sources': sorted(fa.errata_sources),
                    'aggregator': fa.aggregator,
                    'sequence': fa.sequence,
                    'data_category': fa.data_category,
                    'run': fa.run,
                    'metadata': ch.jsonable(fa.metadata()),
                }
        except Exception as e:
            info = ch.exception_info(e)
            if 'exception' not in fexp:
                failures.append(f"{name}: raised {info['exception']}: {e}")
            elif not (info['exception'] == fexp['exception']
                      or set(fexp['builtin_bases']) <= set(info['builtin_bases'])):
                failures.append(f"{name}: raised {info}, expected {fexp}")
            continue
        if 'exception' in fexp:
            failures.append(f"{name}: no exception, expected {fexp['exception']}")
            continue
        for k, v in fexp.items():
            if got.get(k) != v:
                failures.append(f"{name}.{k}: got {got.get(k)!r:.300} expected {v!r:.300}")
    return failures


@pytest.mark.parametrize('case, section', _params())
def test_corpus(consumer, case, section):
    ec, ch = consumer
    case_dir = CORPUS / case
    if section == 'files':
        exp = json.loads((case_dir / 'expected.json').read_text())
        failures = _check_files(ch, case_dir, exp)
    else:
        checker = ec.Checker(xfeldata, [s for s in SECTIONS if s != section])
        ec.check_case(checker, str(case_dir))
        failures = checker.failures
    failures = [f for f in failures if not _deliberate(case, f)]
    assert not failures, '\n'.join(failures[:30])


# Deliberate differences from the reference, each documented in docs/compat.md:
# (case, substring of the failure line, reason). Keep this list short and exact.
DELIBERATE = [
    # by_id[a:b] with an end inside the run but not one of its train IDs: the
    # reference raises TypeError (it compares a list with an int); API.md
    # section 2.4 specifies "first greater ID", which xfeldata does.
    ('invalid_train_order_v0.5', "selections[trains_by_id_slice]: got", 'by_id gap end'),
    ('invalid_train_order_v0.5', "selections[trains_by_id_slice_before_start]: got",
     'by_id gap end'),
    ('suspect_tid_low_v0.5', "selections[trains_by_id_slice]: got", 'by_id gap end'),
    ('suspect_tid_low_v0.5', "selections[trains_by_id_slice_before_start]: got",
     'by_id gap end'),
    # require_all / require_any over an INDEX shorter than the train list: the
    # reference raises IndexError with suspect trains included and ValueError
    # without; xfeldata raises the ValueError naming the file in both cases.
    ('invalid_index_short_v1.0', "file.selections[select_require_a", 'short INDEX'),
    # Control keys whose names contain '.' (module1.adcTemperature): the
    # reference's index_control and control_timestamps_order raise KeyError
    # (a dotted key turned back into a wrong HDF5 path); xfeldata checks them.
    ('jungfrau', ".validation[RAW-R0012-JNGFRCTRL00-S00000.h5][", 'dotted control keys'),
    ('fxe_jungfrau', ".validation[RAW-R0052-JNGFRCTRL00-S00000.h5][", 'dotted control keys'),
    # Detector get_array on a file whose train IDs are out of order: the
    # reference fails an internal assertion; xfeldata places every frame by
    # its train ID and returns the data (docs/compat.md, Detectors).
    ('invalid_train_order_v0.5', "file.components[0:AGIPD1M].get_array(", 'unsorted trains'),
    ('suspect_tid_low_v0.5', "file.components[0:AGIPD1M].get_array(", 'unsorted trains'),
    ('suspect_tid_very_high_v0.5', "file.components[0:AGIPD1M].get_array(", 'unsorted trains'),
    ('unsorted_tid_flagged_valid_v1.0', ".components[0:AGIPD1M].get_array(", 'unsorted trains'),
    # Detector reads where the INDEX points past the end of image.data: the
    # reference raises IndexError, ValueError or OSError depending on the
    # pulse selection; xfeldata raises KeyData's TypeError naming the rows.
    ('invalid_index_overlap_v1.0', ".components[0:AGIPD1M].get_array(", 'INDEX past end'),
]


_DETECTOR_EXC = '.components[0:AGIPD1M].get_array('


def _deliberate(case, failure):
    return any(case == c and sub in failure and ("expected 'TypeError'" in failure
                                                 or "expected 'IndexError'" in failure
                                                 or "expected 'KeyError'" in failure
                                                 or "expected ['IndexError'" in failure
                                                 or _DETECTOR_EXC in failure
                                                 and ("expected 'AssertionError'" in failure
                                                      or "expected 'ValueError'" in failure
                                                      or "expected 'OSError'" in failure
                                                      or "expected ['ValueError'" in failure
                                                      or "expected ['OSError'" in failure))
               for c, sub, _ in DELIBERATE)
