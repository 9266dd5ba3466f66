"""utils and read_machinery: CPU counts, progress bars, lazy isinstance, data roots."""

import os
import sys

import numpy as np
import pytest

from xfeldata import read_machinery, utils
from xfeldata.core import names, trains

# ----------------------------------------------------------------- CPU counts


def test_available_cpu_cores_uses_affinity(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert utils.available_cpu_cores() == 3


def test_available_cpu_cores_fallback_caps_at_8(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert utils.available_cpu_cores() == 8
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert utils.available_cpu_cores() == 2
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert utils.available_cpu_cores() == 1


def test_available_cpu_cores_never_zero(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(), raising=False)
    assert utils.available_cpu_cores() == 1


@pytest.mark.parametrize("cores, env, limit, expected", [
    (32, None, 16, 16),
    (4, None, 16, 4),
    (32, "6", 16, 6),
    (32, "100", 16, 16),
    (32, "0", 16, 1),       # never 0
    (32, None, 0, 1),
    (2, " 3 ", 16, 2),
])
def test_default_num_threads(monkeypatch, cores, env, limit, expected):
    monkeypatch.setattr(utils, "available_cpu_cores", lambda: cores)
    if env is None:
        monkeypatch.delenv("EXTRA_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("EXTRA_NUM_THREADS", env)
    assert utils.default_num_threads(limit) == expected


def test_default_num_threads_bad_env(monkeypatch):
    monkeypatch.setattr(utils, "available_cpu_cores", lambda: 32)
    monkeypatch.setenv("EXTRA_NUM_THREADS", "lots")
    with pytest.warns(RuntimeWarning, match="EXTRA_NUM_THREADS"):
        assert utils.default_num_threads() == 16


# ----------------------------------------------------------------- progress bar


@pytest.mark.parametrize("done, total, expected", [
    (0, 10, "[          ] 0/10 0% "),
    (5, 10, "[#####     ] 5/10 50% "),
    (10, 10, "[##########] 10/10 100% "),
    (15, 10, "[##########] 15/10 100% "),
    (0, 0, "[##########] 0/0 100% "),
])
def test_progress_bar(done, total, expected):
    assert utils.progress_bar(done, total, width=10) == expected


def test_progress_bar_suffix_and_default_width():
    s = utils.progress_bar(1, 4, suffix=" files")
    assert s.endswith("1/4 25% files")
    assert s.count("#") == 10 and len(s.split("]")[0]) == 41


# ----------------------------------------------------------------- isinstance_no_import


def test_isinstance_no_import():
    assert utils.isinstance_no_import(np.zeros(1), "numpy", "ndarray")
    assert not utils.isinstance_no_import([1], "numpy", "ndarray")
    assert not utils.isinstance_no_import(1, "numpy", "no_such_class")
    assert not utils.isinstance_no_import(1, "numpy", "pi")  # not a class


def test_isinstance_no_import_does_not_import():
    # colorsys: a small stdlib module nothing here imports; importing it would show up.
    if "colorsys" in sys.modules:
        pytest.skip("colorsys already imported")
    assert not utils.isinstance_no_import(1, "colorsys", "hls_to_rgb")
    assert "colorsys" not in sys.modules


# ----------------------------------------------------------------- read_machinery


def test_read_machinery_reexports():
    for name in ["by_id", "by_index", "select_train_ids", "split_trains", "roi_shape"]:
        assert getattr(read_machinery, name) is getattr(trains, name)
    for name in ["is_int_like", "glob_wildcards_re", "DETECTOR_NAMES", "DETECTOR_SOURCE_RE",
                 "FilenameInfo"]:
        assert getattr(read_machinery, name) is getattr(names, name)


@pytest.mark.parametrize("xf, ed, expected", [
    (None, None, "/gpfs/exfel/exp"),
    (None, "/ed", "/ed"),
    ("/xf", "/ed", "/xf"),
    ("", "/ed", "/ed"),
])
def test_data_root_dir(monkeypatch, xf, ed, expected):
    for var, val in [("XFELDATA_DATA_ROOT", xf), ("EXTRA_DATA_DATA_ROOT", ed)]:
        if val is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, val)
    assert read_machinery.data_root_dir() == expected


def test_sw_root_dir(monkeypatch):
    monkeypatch.delenv("EXTRA_DATA_SW_ROOT", raising=False)
    assert read_machinery.sw_root_dir() == "/gpfs/exfel/sw"
    monkeypatch.setenv("EXTRA_DATA_SW_ROOT", "/sw")
    assert read_machinery.sw_root_dir() == "/sw"


def test_data_root_constant_kept():
    assert isinstance(read_machinery.DATA_ROOT_DIR, str)


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    root = tmp_path / "exp[1]"  # glob metacharacters in the root must not matter
    (root / "SPB" / "201901" / "p002173" / "raw").mkdir(parents=True)
    (root / "MID" / "202130" / "p900203").mkdir(parents=True)
    (root / "MID" / "202201" / "p900203").mkdir(parents=True)
    (root / "FXE" / "202201").mkdir(parents=True)
    (root / "FXE" / "202201" / "p000999").write_text("not a directory")
    monkeypatch.delenv("XFELDATA_DATA_ROOT", raising=False)
    monkeypatch.setenv("EXTRA_DATA_DATA_ROOT", str(root))
    return root


@pytest.mark.parametrize("arg", [2173, "2173", "p002173", np.int32(2173)])
def test_find_proposal(data_root, arg):
    assert read_machinery.find_proposal(arg) == str(data_root / "SPB" / "201901" / "p002173")


def test_find_proposal_takes_first_sorted_hit(data_root):
    assert read_machinery.find_proposal(900203) == str(data_root / "MID" / "202130" / "p900203")


def test_find_proposal_path_returned_as_is(data_root):
    assert read_machinery.find_proposal("/some/where/p1") == "/some/where/p1"


@pytest.mark.parametrize("arg", [1, 999])
def test_find_proposal_missing(data_root, arg):
    with pytest.raises(Exception, match=r"Couldn't find proposal dir for 'p000%03d'" % arg) as e:
        read_machinery.find_proposal(arg)
    assert isinstance(e.value, read_machinery.ProposalNotFoundError)
    assert e.value.proposal == "p000%03d" % arg
