"""Examples for file-name, path, glob and open_run argument helpers (FORMAT.md 1.1-1.3)."""

import pickle
import re
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

from xfeldata.core.names import (
    DETECTOR_NAMES,
    DETECTOR_SOURCE_RE,
    FileNameParts,
    FilenameInfo,
    PathInfo,
    glob_wildcards_re,
    is_int_like,
    normalise_proposal,
    normalise_run,
    parse_filename,
    parse_path_metadata,
    proposal_is_path,
)

# ----------------------------------------------------------------- is_int_like


@pytest.mark.parametrize("x", [0, -3, 2**70, np.int8(1), np.uint64(2**63), np.array(5),
                               np.array(5, dtype=np.uint16)])
def test_int_like(x):
    assert is_int_like(x)


@pytest.mark.parametrize("x", [1.0, np.float32(1), "1", None, True, np.bool_(True),
                               np.array([1]), np.array(1.0), np.array(True), slice(1)])
def test_not_int_like(x):
    assert not is_int_like(x)


# ----------------------------------------------------------------- file names


@pytest.mark.parametrize("name, parts", [
    ("RAW-R0450-DA01-S00000.h5", FileNameParts("RAW", 450, "DA01", 0)),
    ("CORR-R0012-AGIPD15-S00123.h5", FileNameParts("CORR", 12, "AGIPD15", 123)),
    ("/a/b/RAW-R0163-DSSC00-S00001.h5", FileNameParts("RAW", 163, "DSSC00", 1)),
    ("RAW-R0001-AGIPD1MCTRL00-S00000.h5", FileNameParts("RAW", 1, "AGIPD1MCTRL00", 0)),
    ("RAW-R0002-OVERVIEW.h5", FileNameParts("RAW", 2, "OVERVIEW", 0)),
    ("RAW-R0002-DA01.h5", FileNameParts("RAW", 2, "DA01", None)),
    (PurePosixPath("/x/RAW-R9999-LPD03-S00002.h5"), FileNameParts("RAW", 9999, "LPD03", 2)),
])
def test_parse_filename(name, parts):
    assert parse_filename(name) == parts


@pytest.mark.parametrize("name", [
    "overview.h5", "RAW-R450-DA01-S00000.h5", "raw-R0450-DA01-S00000.h5",
    "RAW-R0450-DA01-S0000.h5", "RAW-R0450-DA01-S00000h5", "RAW-R0450-DA01-S00000.h5.bak",
    "RAW-R0450-DA-01-S00000.h5",
])
def test_parse_filename_rejects(name):
    assert parse_filename(name) is None


@pytest.mark.parametrize("name, det, name_, modno, desc", [
    ("RAW-R0450-AGIPD07-S00001.h5", True, "AGIPD", 7, "AGIPD module 7"),
    ("CORR-R0450-DSSC15-S00000.h5", True, "DSSC", 15, "DSSC module 15"),
    ("/d/RAW-R0450-LPD00-S00000.h5", True, "LPD", 0, "LPD module 0"),
    ("RAW-R0450-DA02-S00003.h5", False, None, None, "Aggregated data"),
    ("RAW-R0450-JNGFR01-S00000.h5", False, None, None, "Unknown data source (JNGFR01)"),
    # Not module 1 (EXtra-data quirk not reproduced): a control aggregator.
    ("RAW-R0450-AGIPD1MCTRL00-S00000.h5", False, None, None,
     "Unknown data source (AGIPD1MCTRL00)"),
    ("RAW-R0450-OVERVIEW.h5", False, None, None, "Virtual overview"),
    ("something.h5", False, None, None, "Unrecognised file name"),
    ("A-B-C.h5", False, None, None, "Unrecognised file name"),
])
def test_filename_info(name, det, name_, modno, desc):
    info = FilenameInfo(name)
    assert info.basename == name.rsplit("/", 1)[-1]
    assert info.is_detector is det
    assert info.detector_name == name_
    assert info.detector_moduleno == modno
    assert info.description == desc


def test_filename_info_value_semantics():
    a = FilenameInfo(Path("/r/RAW-R0001-DA01-S00000.h5"))
    assert a.path == "/r/RAW-R0001-DA01-S00000.h5"
    assert a == FilenameInfo("/r/RAW-R0001-DA01-S00000.h5")
    assert hash(a) == hash(FilenameInfo("/r/RAW-R0001-DA01-S00000.h5"))
    assert pickle.loads(pickle.dumps(a)) == a
    with pytest.raises(AttributeError):
        a.is_detector = True


# ----------------------------------------------------------------- detector constants


def test_detector_constants():
    assert DETECTOR_NAMES == {"AGIPD", "DSSC", "LPD"}
    m = DETECTOR_SOURCE_RE.match("SPB_DET_AGIPD1M-1/DET/15CH0:xtdf")
    assert m.groups() == ("SPB_DET_AGIPD1M-1/DET", "15")
    m = DETECTOR_SOURCE_RE.match("FXE_DET_LPD1M-1/CORR/3CH0:output")
    assert m.groups() == ("FXE_DET_LPD1M-1/CORR", "3")
    assert DETECTOR_SOURCE_RE.match("SA1_XTD2_XGM/XGM/DOOCS") is None


# ----------------------------------------------------------------- globs


@pytest.mark.parametrize("pattern, s, groups", [
    ("SPB_DET_AGIPD1M-1/DET/*CH0:xtdf", "SPB_DET_AGIPD1M-1/DET/11CH0:xtdf", ("11",)),
    ("*/DET/*", "A/DET/B", ("A", "B")),
    ("a?c", "abc", ("b",)),
    ("file[0-9].h5", "file7.h5", ("7",)),
    ("x[!ab]", "xc", ("c",)),
    ("a.b", "a.b", ()),
    ("a+(b)", "a+(b)", ()),
    ("[]]x", "]x", ("]",)),
    ("[a", "[a", ()),
])
def test_glob_wildcards_re_groups(pattern, s, groups):
    m = glob_wildcards_re(pattern).match(s)
    assert m is not None and m.groups() == groups


@pytest.mark.parametrize("pattern, s", [
    ("a.b", "axb"), ("*CH0", "1CH0:x"), ("x[!ab]", "xa"), ("file[0-9].h5", "fileA.h5"),
    ("abc", "ABC"),
])
def test_glob_wildcards_re_rejects(pattern, s):
    assert glob_wildcards_re(pattern).match(s) is None


@pytest.mark.parametrize("pattern", ["*", "a*b?c", "[abc]*", "[!x]y*", "*.h5", "a\\b*",
                                     "[a-c^]", "x^y$", "[]]"])
@pytest.mark.parametrize("s", ["", "a", "abc", "a^", "b", "y", "xy.h5", "a\\bz", "x^y$", "]",
                               "aXbYc", "c^"])
def test_glob_wildcards_re_agrees_with_fnmatch(pattern, s):
    assert (glob_wildcards_re(pattern).match(s) is not None) == fnmatchcase(s, pattern)


def test_glob_wildcards_re_returns_compiled_pattern():
    assert isinstance(glob_wildcards_re("a*"), re.Pattern)


# ----------------------------------------------------------------- paths


@pytest.mark.parametrize("path, info", [
    ("/gpfs/exfel/exp/SPB/201901/p002173/raw/r0012",
     PathInfo("raw", "SPB", "201901", 2173, 12)),
    ("/gpfs/exfel/exp/XMPL/202130/p700000/proc/r0001/",
     PathInfo("proc", "XMPL", "202130", 700000, 1)),
    ("/gpfs/exfel/exp/MID/202130/p900203/usr/.extra_data",
     PathInfo("usr", "MID", "202130", 900203, None)),
    ("/gpfs/exfel/d/raw/MID/202130/p900203/r0007",
     PathInfo("raw", "MID", "202130", 900203, 7)),     # all 6 digits (EXtra-data: 203)
    ("/gpfs/exfel/u/usr/SPB/201901/p002173/.extra_data",
     PathInfo("usr", "SPB", "201901", 2173, None)),
    ("/pnfs/xfel.eu/exfel/archive/XFEL/proc/FXE/201802/p002218/r0123",
     PathInfo("proc", "FXE", "201802", 2218, 123)),
    (Path("/gpfs/exfel/d/proc/SQS/202201/p900301/r0444/sub"),
     PathInfo("proc", "SQS", "202201", 900301, 444)),
])
def test_parse_path_metadata(path, info):
    assert parse_path_metadata(path) == info


@pytest.mark.parametrize("path", [
    "/tmp/r0001",
    "/gpfs/exfel/exp/SPB/2019/p002173/raw/r0012",        # cycle not 6 digits
    "/gpfs/exfel/exp/SPB/201901/p2173/raw/r0012",         # proposal not 6 digits
    "/gpfs/exfel/exp/SPB/201901/p002173/raw/r0012abc",
    "/gpfs/exfel/d/raw/MID/202130/p900203/raw/r0007",
    "/pnfs/xfelXeu/exfel/archive/XFEL/proc/FXE/201802/p002218/r0123",
    "relative/gpfs/exfel/exp/SPB/201901/p002173/raw/r0012",
])
def test_parse_path_metadata_rejects(path):
    assert parse_path_metadata(path) is None


# ----------------------------------------------------------------- open_run args


@pytest.mark.parametrize("arg, expected", [
    (2173, "p002173"), (np.int64(2173), "p002173"), ("2173", "p002173"),
    ("p002173", "p002173"), ("p2173", "p002173"), (900203, "p900203"),
    (1234567, "p1234567"), ("002173", "p002173"),
])
def test_normalise_proposal(arg, expected):
    assert normalise_proposal(arg) == expected
    assert not proposal_is_path(arg)


@pytest.mark.parametrize("arg", ["/gpfs/exfel/exp/SPB/201901/p002173", "./p002173",
                                 Path("p002173"), PurePosixPath("/x/p1")])
def test_proposal_paths_pass_through(arg):
    assert proposal_is_path(arg)
    assert normalise_proposal(arg) == str(arg)


@pytest.mark.parametrize("arg, exc", [
    (-1, ValueError), ("abc", ValueError), ("p-1", ValueError), ("", ValueError),
    (21.0, TypeError), (None, TypeError), (True, TypeError),
])
def test_normalise_proposal_errors(arg, exc):
    with pytest.raises(exc):
        normalise_proposal(arg)


@pytest.mark.parametrize("arg, expected", [
    (243, "r0243"), ("243", "r0243"), ("r0243", "r0243"), ("r243", "r0243"),
    (np.uint16(7), "r0007"), (0, "r0000"), (12345, "r12345"),
])
def test_normalise_run(arg, expected):
    assert normalise_run(arg) == expected


@pytest.mark.parametrize("arg, exc", [
    (-1, ValueError), ("x12", ValueError), ("r", ValueError), ("", ValueError),
    (1.0, TypeError), (None, TypeError), (False, TypeError),
])
def test_normalise_run_errors(arg, exc):
    with pytest.raises(exc):
        normalise_run(arg)
