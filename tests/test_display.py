"""info(), detector_info() and train_info() (API.md sections 2.2 and 24), exact text.

The run: DA01 with an XGM (its output misses train 10002), a motor and three
side cameras; AGIPD00-02 modules with 2 frames per train (4 x 4 pixels); two
REDUCTION sources for the auxiliary part.
"""
import textwrap

import numpy as np
import pytest

import xfeldata
from xfeldata.display import (InfoPrinter, SourceGroup, format_duration, group_sources)
from xfeldata.testing import (Aggregator, ControlSource, InstrumentSource, RunSpec, write_run,
                              xgm_sources, xtdf_module)

TIDS = np.arange(10000, 10006)
HEADER = """\
# of trains:    6
Duration:       0:00:00.6
First train ID: 10000
Last train ID:  10005
"""


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp('display_run')
    ctrl, out = xgm_sources(samples=4, counts=[1, 1, 0, 1, 1, 1])
    cams = [InstrumentSource(f'SPB_IRU_CAM/CAM/SIDEMIC{i}:daqOutput',
                             {'data.image.pixels': ('u2', (2, 3))},
                             groups={'data': [1, 1, 1, 0, 0, 2]}) for i in (1, 2, 3)]
    lit = InstrumentSource('SPB_IRU_AGIPD1M1/REDU/LITFRM:daqFilter',
                           {'data.dataFramePattern': ('u1', (8,))},
                           groups={'data': [1] * 6}, section='REDUCTION')
    aggs = [Aggregator('DA01', [ctrl, out, ControlSource('SPB_IRU_MOTORS/MOTOR/X',
                                                         {'actualPosition': 'f4'}), *cams])]
    for m in range(3):
        srcs = [xtdf_module(modno=m, frames=2, frame_shape=(4, 4))]
        if m == 0:
            srcs.append(lit)
        aggs.append(Aggregator(f'AGIPD{m:02d}', srcs))
    write_run(d, RunSpec(TIDS, aggs, run=7))
    return xfeldata.RunDirectory(d)


def _info(run, capsys, **kw):
    run.info(**kw)
    return capsys.readouterr().out


def test_info_default(run, capsys):
    assert _info(run, capsys) == HEADER + textwrap.dedent("""\

        3 XTDF detector modules of SPB_DET_AGIPD1M-1
          e.g. module SPB_DET_AGIPD1M-1/DET/0CH0:xtdf : 4 x 4 pixels
          2 frames per train, 12 total frames

        4 instrument sources (excluding XTDF detectors):
          - SA1_XTD2_XGM/DOOCS/MAIN:output
          - SPB_IRU_CAM/CAM/SIDEMIC{1-3}:daqOutput

        2 control sources:
          - SA1_XTD2_XGM/DOOCS/MAIN
          - SPB_IRU_MOTORS/MOTOR/X
        """)


def test_info_ungrouped_with_auxiliary(run, capsys):
    out = _info(run, capsys, group_sources=False, with_auxiliary=True)
    assert out.endswith(textwrap.dedent("""\
        4 instrument sources (excluding XTDF detectors):
          - SA1_XTD2_XGM/DOOCS/MAIN:output
          - SPB_IRU_CAM/CAM/SIDEMIC1:daqOutput
          - SPB_IRU_CAM/CAM/SIDEMIC2:daqOutput
          - SPB_IRU_CAM/CAM/SIDEMIC3:daqOutput

        2 control sources:
          - SA1_XTD2_XGM/DOOCS/MAIN
          - SPB_IRU_MOTORS/MOTOR/X

        1 auxiliary sources:
          - AGIPD00@SPB_IRU_AGIPD1M1/REDU/LITFRM:daqFilter
        """))


def test_info_details_and_aggregators(run, capsys):
    out = _info(run, capsys, details_for_sources=['*SIDEMIC2*', '*MOTOR*'],
                with_aggregators=True)
    assert out == HEADER + textwrap.dedent("""\

        7 instrument sources:
          - SA1_XTD2_XGM/DOOCS/MAIN:output [DA01]
          - SPB_DET_AGIPD1M-1/DET/0CH0:xtdf [AGIPD00]
          - SPB_DET_AGIPD1M-1/DET/1CH0:xtdf [AGIPD01]
          - SPB_DET_AGIPD1M-1/DET/2CH0:xtdf [AGIPD02]
          - SPB_IRU_CAM/CAM/SIDEMIC1:daqOutput [DA01]
          - SPB_IRU_CAM/CAM/SIDEMIC2:daqOutput [DA01]
            data: data for 4 trains (66.67%), 1-2 entries per train
              - data.image.pixels\t[uint16, entry shape (2, 3)]
              - data.trainId\t[uint64, entry shape ()]
          - SPB_IRU_CAM/CAM/SIDEMIC3:daqOutput [DA01]

        2 control sources:
          - SA1_XTD2_XGM/DOOCS/MAIN [DA01]
          - SPB_IRU_MOTORS/MOTOR/X [DA01]
            data for 6 trains (100.00%), 1 entry per train
              - actualPosition\t[float32, entry shape ()]
        """)


def test_info_counts(run, capsys):
    out = _info(run, capsys, counts=True)
    assert (
        "  - SA1_XTD2_XGM/DOOCS/MAIN:output\n"
        "    data: data for 5 trains (83.33%), 1 entry per train\n"
        "  - SPB_DET_AGIPD1M-1/DET/0CH0:xtdf\n"
        "    detector: data for 6 trains (100.00%), 1 entry per train\n"
        "    header: data for 6 trains (100.00%), 1 entry per train\n"
        "    image: data for 6 trains (100.00%), 2 entries per train\n"
        "    trailer: data for 6 trains (100.00%), 1 entry per train\n") in out
    assert 'XTDF detector modules' not in out
    assert '[uint16' not in out      # counts only, no keys


def test_info_selection_and_aliases(run, capsys):
    sub = run.select('*SIDEMIC*').select_trains(np.s_[2:4]).with_aliases(
        {'cam1': 'SPB_IRU_CAM/CAM/SIDEMIC1:daqOutput'})
    out = _info(sub, capsys)
    assert out == textwrap.dedent("""\
        # of trains:    2
        Duration:       0:00:00.2
        First train ID: 10002
        Last train ID:  10003

        3 instrument sources:
          - SPB_IRU_CAM/CAM/SIDEMIC1:daqOutput <cam1>
          - SPB_IRU_CAM/CAM/SIDEMIC{2-3}:daqOutput

        0 control sources:
        """)


def test_info_empty_selection(run, capsys):
    out = _info(run.select_trains(np.s_[0:0]).select('*MOTOR*'), capsys)
    assert out.startswith('# of trains:    0\nDuration:       0:00:00.0\n'
                          'First train ID: -\nLast train ID:  -\n')


def test_info_printer_format_matches_show(run, capsys):
    p = InfoPrinter(run, group_sources=False)
    p.show()
    assert capsys.readouterr().out == p.format() + '\n'


def test_detector_info(run):
    assert run.detector_info('SPB_DET_AGIPD1M-1/DET/1CH0:xtdf') == \
        {'dims': (4, 4), 'frames_per_train': 2, 'total_frames': 12}
    sub = run.select_trains(np.s_[:3])
    assert sub.detector_info('SPB_DET_AGIPD1M-1/DET/1CH0:xtdf')['total_frames'] == 6


def test_train_info(run, capsys):
    run.train_info(10003)
    assert capsys.readouterr().out == textwrap.dedent("""\
        Train 10003
        4 instrument sources with data:
          - SA1_XTD2_XGM/DOOCS/MAIN:output
          - SPB_DET_AGIPD1M-1/DET/0CH0:xtdf
          - SPB_DET_AGIPD1M-1/DET/1CH0:xtdf
          - SPB_DET_AGIPD1M-1/DET/2CH0:xtdf
        2 control sources with data:
          - SA1_XTD2_XGM/DOOCS/MAIN
          - SPB_IRU_MOTORS/MOTOR/X
        """)
    run.train_info(10002)
    out = capsys.readouterr().out
    assert 'MAIN:output' not in out and 'SIDEMIC3' in out


@pytest.mark.parametrize('tid', [9999, 10006, 0])
def test_train_info_unknown(run, tid):
    with pytest.raises(ValueError, match=str(tid)):
        run.train_info(tid)


def test_group_sources():
    names = [f'SPB_DET_AGIPD1M-1/DET/{i}CH0:xtdf' for i in range(16)] + ['A/B/C', 'A/B/D']
    assert [str(x) for x in group_sources(names)] == \
        ['A/B/{C,D}', 'SPB_DET_AGIPD1M-1/DET/{0-15}CH0:xtdf']
    assert [str(x) for x in group_sources(['X/1', 'X/2', 'X/4', 'Y'])] == ['X/{1-2,4}', 'Y']
    assert [str(x) for x in group_sources(['AGIPD00', 'AGIPD01', 'AGIPD03'])] == \
        ['AGIPD{00-01,03}']
    assert group_sources(['only']) == ['only']
    g = SourceGroup(['D/1', 'D/2'], 2)
    assert (len(g), str(g)) == (2, 'D/{1-2}')


def test_format_duration():
    assert format_duration([10000, 10000]) == '0:00:00.1'
    assert format_duration(np.array([10000, 10000 + 36000 * 2 + 599], np.uint64)) == \
        '2:01:00.0'
    assert format_duration([1, 2 ** 63]).startswith('(too long')


# -- plot_missing_data -------------------------------------------------------------

def test_missing_data_rows(run):
    from xfeldata._plot import missing_data_rows
    rows = missing_data_rows(run)
    # Cameras: trains 3 and 4 empty (4 of 6 saved); the XGM output misses train 2.
    assert [(r.label, r.n_missing, r.ranges) for r in rows] == [
        (f'SPB_IRU_CAM/CAM/SIDEMIC{i}:daqOutput', 2, ((3, 2),)) for i in (1, 2, 3)
    ] + [('SA1_XTD2_XGM/DOOCS/MAIN:output', 1, ((2, 1),))]
    assert rows[0].saved_pct == pytest.approx(400 / 6)
    assert missing_data_rows(run, min_saved_pct=70) == rows[:3]
    # Aliases label their source; index groups get their own rows.
    aliased = run.with_aliases({'cam1': 'SPB_IRU_CAM/CAM/SIDEMIC1:daqOutput'})
    rows = missing_data_rows(aliased, min_saved_pct=70, expand_instrument=True)
    assert [r.label for r in rows] == [
        'SPB_IRU_CAM/CAM/SIDEMIC2:daqOutput [data]', 'SPB_IRU_CAM/CAM/SIDEMIC3:daqOutput [data]',
        'cam1 [data]']


def test_plot_missing_data(run):
    pytest.importorskip('matplotlib')
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    ax = run.plot_missing_data()
    try:
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert labels[0] == 'SPB_IRU_CAM/CAM/SIDEMIC1:daqOutput (66.7%)'
        assert len(labels) == 4
        bars = [c for c in ax.collections]
        assert len(bars) == 4
        meta = run.run_metadata()
        assert ax.get_title() == (f"p{meta['proposalNumber']:06d}, r0007: "
                                  "4 source(s) with <= 95% of trains saved")
    finally:
        plt.close('all')


def test_missing_ranges_law():
    from xfeldata._plot import missing_ranges
    rng = np.random.default_rng(3)
    for _ in range(50):
        present = rng.random(rng.integers(0, 30)) < 0.6
        rebuilt = np.ones(len(present), bool)
        for start, length in missing_ranges(present):
            assert length > 0 and rebuilt[start:start + length].all()
            rebuilt[start:start + length] = False
        assert (rebuilt == present).all()
