"""Tests of xfeldata.testing: the synthetic EuXFEL file writer.

Files are checked with plain h5py against FORMAT.md §2 and against the
manifests the writer returns.
"""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from xfeldata.testing import (
    EPOCH_NS,
    FORMAT_VERSIONS,
    TRAIN_PERIOD_NS,
    Aggregator,
    ControlSource,
    FileSpec,
    InstrumentSource,
    Key,
    RunSpec,
    control_timestamps,
    describe_file,
    describe_run,
    expected_values,
    guess_validity_v05,
    jungfrau_module,
    key_salt,
    make_benchmark_run,
    make_demo_run,
    plan_run,
    run_value,
    write_file,
    write_run,
    xgm_sources,
    xtdf_module,
)

COMPOUND = np.dtype([("x", "<f8"), ("y", "<f8"), ("t", "<f8"), ("m", "<i4")])
N = 12
TIDS = np.arange(10000, 10000 + N, dtype=np.uint64)
VALID = np.array([True] * 3 + [False] + [True] * (N - 4))
INST_COUNTS = np.array([2, 0, 1, 3, 0, 1, 1, 2, 0, 0, 1, 4], dtype=np.uint64)
FRAMES = np.array([3, 3, 0, 2, 3, 3, 1, 3, 3, 3, 3, 2])


def full_sources():
    """Every kind of source the writer knows, in one file."""
    xgm_ctrl, _ = xgm_sources("SA1_XTD2_XGM/DOOCS/MAIN")
    return [
        xgm_ctrl,
        ControlSource("SA1_XTD2_XGM/DOOCS/VEC", {"vec": (np.float64, (8,)), "n": np.uint8}),
        ControlSource("SA3_REMI_DLD6/DET/TOP", {"threshold": np.float64}, run_only=True,
                      run_keys={"digitizer.baseline_region": ":1000"}),
        ControlSource("SA3_XTD10_VAC/GAUGE/G30520C", {"AAlarmH": np.float32}, no_data=True),
        InstrumentSource(
            "SA3_REMI_DLD6/DET/TOP:output",
            {"rec.hits": (COMPOUND, (5,)), "rec.label": str,
             "aux.x": Key(np.float32, (3,), attrs={"unitSymbol": "m"})},
            groups={"rec": INST_COUNTS, "aux": 1},
            extra_rows=3,
        ),
        xtdf_module("SPB_DET_AGIPD1M-1", 0, frames=FRAMES, raw=True),
        xtdf_module("SPB_DET_AGIPD1M-1", 1, frames=FRAMES, raw=False, corr_names=True,
                    legacy=True, compression="gzip"),
        InstrumentSource(
            "PULSE_REDUCTION/SPB_DET_AGIPD1M-1/DET/0CH0:xtdf",
            {"image.data.reductionRatio": np.float64,
             "image.data.indicesBeforeReduction": (np.uint32, (6,))},
            section="REDUCTION",
        ),
        InstrumentSource("TRAINS_OUTSIDE_BUFFER_RANGE",
                         {"event.values": (str, (2,)), "event.originalTrainIds": (np.uint64, (2,))},
                         groups={"event": INST_COUNTS % 2}, section="ERRATA"),
    ]


def full_spec(version, **kw):
    flag = None if version == "0.5" else VALID
    return FileSpec(TIDS, full_sources(), format_version=version, flag=flag, run=7,
                    proposal=900203, sequence=2, aggregator="DA03", **kw)


@pytest.fixture(scope="module")
def full_files(tmp_path_factory):
    """One file with every feature per format version: {version: manifest}."""
    d = tmp_path_factory.mktemp("full")
    out = {}
    for v in FORMAT_VERSIONS:
        sub = d / v
        sub.mkdir()
        out[v] = write_file(sub, full_spec(v))
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_run(tmp_path_factory.mktemp("demo"), "1.2")


# -- a minimal independent reader, the way FORMAT.md §2-3 describes files -------

def _strs(ds):
    return [x.decode() if isinstance(x, bytes) else x for x in ds[()]]


def read_back(path):
    """Read what a reader needs from a file, with plain h5py."""
    with h5py.File(path, "r") as f:
        meta = f["METADATA"]
        version = meta["dataFormatVersion"][0].decode() if "dataFormatVersion" in meta else "0.5"
        lists = meta if version == "0.5" else meta["dataSources"]
        control, instrument, groups = set(), set(), {}
        for x in _strs(lists["dataSourceId"]):
            if not x or x == "Karabo_TimerServer":
                continue
            cat, rest = x.split("/", 1)
            if cat == "CONTROL":
                control.add(rest)
            else:
                assert cat == "INSTRUMENT"
                dev, chan = rest.split(":", 1)
                ch, grp = chan.split("/", 1)
                instrument.add(f"{dev}:{ch}")
                groups.setdefault(f"{dev}:{ch}", set()).add(grp)
        aux = {"REDUCTION": set(), "ERRATA": set()}
        if "auxiliarySources" in meta:
            for section, names in aux.items():
                for x in _strs(meta["auxiliarySources"][section]):
                    src, grp = x[len(section) + 1:].rsplit("/", 1)
                    names.add(src)
                    groups.setdefault(src, set()).add(grp)
        tids = f["INDEX/trainId"][()]
        nz = np.flatnonzero(tids)
        n = nz[-1] + 1 if len(nz) else 0  # trailing zeros are padding
        counts = {}

        def index_counts(path):
            g = f[path]
            if "count" in g:
                return g["count"][:n]
            first, last, status = g["first"][:n], g["last"][:n], g["status"][:n]
            return ((last - first + 1) * status).astype(np.uint64)

        for src in control:
            counts[(src, "")] = index_counts(f"INDEX/{src}")
        legacy = {}
        for src in sorted(instrument):
            link = f.get(f"INSTRUMENT/{src}", getlink=True)
            if isinstance(link, h5py.SoftLink):
                legacy[src] = link.path[len("/INSTRUMENT/"):]
                continue
            for grp in groups[src]:
                counts[(src, grp)] = index_counts(f"INDEX/{src}/{grp}")
        for names in aux.values():
            for src in names:
                for grp in groups[src]:
                    counts[(src, grp)] = index_counts(f"INDEX/{src}/{grp}")
        flag = f["INDEX/flag"][:n] if "flag" in f["INDEX"] else None
        ts = f["INDEX/timestamp"][:n] if "timestamp" in f["INDEX"] else None
    return {"version": version, "train_ids": tids[:n], "n_padding": len(tids) - n,
            "control": control, "instrument": instrument, "legacy": legacy, "counts": counts,
            "reduction": aux["REDUCTION"], "errata": aux["ERRATA"], "flag": flag,
            "timestamps": ts}


def read_key(path, section, source, key, counts):
    """All indexed rows of one key (ignores padding rows)."""
    with h5py.File(path, "r") as f:
        ds = f[f"{section}/{source}/{key.replace('.', '/')}"]
        return ds[: int(np.sum(counts))]


def assert_file_matches(manifest):
    got = read_back(manifest.path)
    assert got["version"] == manifest.format_version
    np.testing.assert_array_equal(got["train_ids"], manifest.train_ids)
    assert got["n_padding"] == manifest.n_padding
    assert tuple(sorted(got["control"])) == manifest.control_sources
    assert tuple(sorted(got["instrument"])) == manifest.instrument_sources
    assert tuple(sorted(got["reduction"])) == manifest.reduction_sources
    assert tuple(sorted(got["errata"])) == manifest.errata_sources
    assert got["legacy"] == dict(manifest.legacy_sources)
    assert got["counts"].keys() == manifest.counts.keys()
    for k, c in manifest.counts.items():
        np.testing.assert_array_equal(got["counts"][k], c, err_msg=str(k))
    if manifest.format_version == "0.5":
        assert got["flag"] is None and got["timestamps"] is None
    else:
        np.testing.assert_array_equal(got["flag"], manifest.flag)
        np.testing.assert_array_equal(got["timestamps"], manifest.timestamps)


def assert_data_matches(manifest):
    """Every key's rows equal the manifest's expected values."""
    for name, src in manifest.sources.items():
        if isinstance(src, ControlSource):
            if src.run_only:
                continue
            c = manifest.counts[(name, "")]
            for prop in src.keys:
                for suffix in (".value", ".timestamp"):
                    got = read_key(manifest.path, "CONTROL", name, prop + suffix, c)
                    want = manifest.expected(name, prop + suffix)
                    _assert_same(got, want, f"{name} {prop}{suffix}")
        else:
            for key in src.all_keys():
                c = manifest.counts[(name, key.split(".", 1)[0])]
                got = read_key(manifest.path, src.section, name, key, c)
                _assert_same(got, manifest.expected(name, key), f"{name} {key}")


def _assert_same(got, want, msg):
    assert got.shape == want.shape, msg
    if got.dtype == object:
        got = np.vectorize(lambda x: x.decode() if isinstance(x, bytes) else x, otypes=[object])(got)
        want = np.vectorize(lambda x: x.decode() if isinstance(x, bytes) else x, otypes=[object])(want)
    np.testing.assert_array_equal(got, want, err_msg=msg)


# -- METADATA ---------------------------------------------------------------------

@pytest.mark.parametrize("version", FORMAT_VERSIONS)
def test_metadata_layout(full_files, version):
    m = full_files[version]
    with h5py.File(m.path, "r") as f:
        meta = f["METADATA"]
        if version == "0.5":
            assert "dataFormatVersion" not in meta and "dataSources" not in meta
            lists = meta
            assert {k for k in meta if isinstance(meta[k], h5py.Dataset)} == {
                "dataSourceId", "root", "deviceId"}
        else:
            lists = meta["dataSources"]
            assert "dataSourceId" not in meta
            expected = {"dataFormatVersion", "creationDate", "updateDate", "daqLibrary",
                        "karaboFramework", "proposalNumber", "runNumber", "sequenceNumber"}
            if version in ("1.2", "1.3"):
                expected |= {"runType", "sample"}
            datasets = {k for k in meta if isinstance(meta[k], h5py.Dataset)}
            assert datasets == expected
            for k in expected:
                ds = meta[k]
                assert ds.shape == (1,) and ds.maxshape == (1,) and ds.chunks is None
                if k.endswith("Number"):
                    assert ds.dtype == np.uint32
                else:
                    assert h5py.check_string_dtype(ds.dtype).encoding == "ascii"
                    assert h5py.check_string_dtype(ds.dtype).length is None
            assert meta["dataFormatVersion"][0] == version.encode()
            assert meta["proposalNumber"][0] == 900203
            assert meta["runNumber"][0] == 7 and meta["sequenceNumber"][0] == 2
            assert meta["creationDate"][0] == b"20240301T120000Z"
        arrays = [lists[k] for k in ("dataSourceId", "root", "deviceId")]
        for ds in arrays:
            assert h5py.check_string_dtype(ds.dtype).encoding == "ascii"
            assert ds.maxshape == (None,) and ds.shape == arrays[0].shape
            assert ds.shape[0] % 32 == 0
        ids, roots, devs = (_strs(ds) for ds in arrays)
    real = [i for i, x in enumerate(ids) if x]
    assert real == list(range(len(real)))  # padding only at the end
    assert all(x == "" for x in roots[len(real):] + devs[len(real):])
    rows = list(zip(ids[: len(real)], roots[: len(real)], devs[: len(real)]))
    if version == "1.1":
        assert rows[0] == ("Karabo_TimerServer", "", "Karabo_TimerServer")
        rows = rows[1:]
    else:
        assert "Karabo_TimerServer" not in ids
    for i, r, d in rows:
        assert i == f"{r}/{d}" and r in ("CONTROL", "INSTRUMENT")
    listed = [i for i, _, _ in rows]
    assert listed.count("CONTROL/SA3_REMI_DLD6/DET/TOP") == 1  # RUN-only still listed
    assert "CONTROL/SA3_XTD10_VAC/GAUGE/G30520C" in listed
    # one entry per index group, for the canonical and the legacy name
    for name in ("SPB_DET_AGIPD1M-1/CORR/1CH0:output", "SPB_DET_AGIPD1M-1/DET/1CH0:xtdf",
                 "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"):
        assert sorted(x for x in listed if x.startswith(f"INSTRUMENT/{name}/")) == [
            f"INSTRUMENT/{name}/{g}" for g in ("detector", "header", "image", "trailer")]
    assert sorted(x for x in listed if "REMI_DLD6/DET/TOP:output" in x) == [
        "INSTRUMENT/SA3_REMI_DLD6/DET/TOP:output/aux", "INSTRUMENT/SA3_REMI_DLD6/DET/TOP:output/rec"]
    # auxiliary sources are not in dataSources
    assert not any("REDUCTION" in x or "TRAINS_OUTSIDE" in x for x in listed)


@pytest.mark.parametrize("version", ["0.5", "1.2"])
def test_auxiliary_source_lists(full_files, version):
    m = full_files[version]
    with h5py.File(m.path, "r") as f:
        aux = f["METADATA/auxiliarySources"]
        assert set(aux) == {"REDUCTION", "ERRATA"}
        assert _strs(aux["REDUCTION"]) == [
            "REDUCTION/PULSE_REDUCTION/SPB_DET_AGIPD1M-1/DET/0CH0:xtdf/image"]
        assert _strs(aux["ERRATA"]) == ["ERRATA/TRAINS_OUTSIDE_BUFFER_RANGE/event"]
        assert aux["ERRATA"].maxshape == (None,)
        assert "INDEX/TRAINS_OUTSIDE_BUFFER_RANGE/event/count" in f
        assert "INDEX/PULSE_REDUCTION/SPB_DET_AGIPD1M-1/DET/0CH0:xtdf/image/first" in f
        red = f["REDUCTION/PULSE_REDUCTION/SPB_DET_AGIPD1M-1/DET/0CH0:xtdf/image/data"]
        assert set(red) == {"reductionRatio", "indicesBeforeReduction"}  # no trainId
        assert red["indicesBeforeReduction"].shape == (N, 6)
        err = f["ERRATA/TRAINS_OUTSIDE_BUFFER_RANGE/event/values"]
        assert h5py.check_string_dtype(err.dtype).encoding == "utf-8"
    assert m.reduction_sources == ("PULSE_REDUCTION/SPB_DET_AGIPD1M-1/DET/0CH0:xtdf",)
    assert m.errata_sources == ("TRAINS_OUTSIDE_BUFFER_RANGE",)


def test_auxiliary_list_empty_section(tmp_path):
    src = InstrumentSource("X_REDU/A/B:out", {"data.x": np.uint8}, section="REDUCTION")
    m = write_file(tmp_path, FileSpec(TIDS[:3], [src]))
    with h5py.File(m.path, "r") as f:
        assert f["METADATA/auxiliarySources/ERRATA"].shape == (0,)
        assert f["METADATA/auxiliarySources/REDUCTION"].shape == (1,)
    m2 = write_file(tmp_path / "b.h5", FileSpec(TIDS[:3], [ControlSource("A/B/C", {"x": "f4"})]))
    with h5py.File(m2.path, "r") as f:
        assert "auxiliarySources" not in f["METADATA"]


# -- INDEX --------------------------------------------------------------------------

@pytest.mark.parametrize("version", FORMAT_VERSIONS)
def test_index_layout(full_files, version):
    m = full_files[version]
    with h5py.File(m.path, "r") as f:
        index = f["INDEX"]
        tid = index["trainId"]
        assert tid.dtype == np.uint64 and tid.maxshape == (None,)
        np.testing.assert_array_equal(tid[()], TIDS)
        assert ("timestamp" in index) == ("flag" in index) == (version != "0.5")
        assert ("origin" in index) == (version in ("1.2", "1.3"))
        if version != "0.5":
            assert index["timestamp"].dtype == np.uint64
            assert index["flag"].dtype == np.int32
            np.testing.assert_array_equal(
                index["timestamp"][()], EPOCH_NS + np.arange(N, dtype=np.uint64) * TRAIN_PERIOD_NS)
            flag = index["flag"][()]
            if version == "1.1":
                # inverted: 0 = from the time server (valid), non-zero = suspect
                np.testing.assert_array_equal(flag == 0, VALID)
            else:
                np.testing.assert_array_equal(flag, VALID.astype(np.int32))
            np.testing.assert_array_equal(m.validity, VALID)
        else:
            assert m.validity.all()
        if version in ("1.2", "1.3"):
            assert index["origin"].dtype == np.int32 and (index["origin"][()] == -1).all()
        ctrl = index["SA1_XTD2_XGM/DOOCS/MAIN"]
        assert set(ctrl) == {"first", "count"}
        np.testing.assert_array_equal(ctrl["first"][()], np.arange(N))
        np.testing.assert_array_equal(ctrl["count"][()], np.ones(N))
        inst = index["SA3_REMI_DLD6/DET/TOP:output/rec"]
        assert inst["first"].dtype == inst["count"].dtype == np.uint64
        np.testing.assert_array_equal(inst["count"][()], INST_COUNTS)
        np.testing.assert_array_equal(inst["first"][()], np.cumsum(INST_COUNTS) - INST_COUNTS)
        np.testing.assert_array_equal(index["SA3_REMI_DLD6/DET/TOP:output/aux/count"][()], 1)
        run_only = index["SA3_REMI_DLD6/DET/TOP"]
        np.testing.assert_array_equal(run_only["count"][()], 1)  # as in the mock files
        np.testing.assert_array_equal(index["SA3_XTD10_VAC/GAUGE/G30520C/count"][()], 0)
        np.testing.assert_array_equal(index["SA3_XTD10_VAC/GAUGE/G30520C/first"][()], 0)
        img = index["SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"]
        np.testing.assert_array_equal(img["image/count"][()], FRAMES)
        for g in ("header", "trailer", "detector"):
            np.testing.assert_array_equal(img[f"{g}/count"][()], 1)


@pytest.mark.parametrize("version", FORMAT_VERSIONS)
def test_file_matches_manifest(full_files, version):
    assert_file_matches(full_files[version])
    assert_data_matches(full_files[version])


def test_describe_file_equals_write_manifest(full_files):
    for v, m in full_files.items():
        assert describe_file(full_spec(v), path=m.path) == m


def test_old_style_index(tmp_path):
    counts = np.array([0, 0, 2, 1, 0, 3], dtype=np.uint64)
    src = InstrumentSource("A/B/C:out", {"data.x": np.int16}, groups={"data": counts})
    ctrl = ControlSource("A/B/C", {"x": np.float32})
    spec = FileSpec(TIDS[:6], [src, ctrl], format_version="0.5", old_index=True)
    m = write_file(tmp_path, spec)
    with h5py.File(m.path, "r") as f:
        g = f["INDEX/A/B/C:out/data"]
        assert set(g) == {"first", "last", "status"}
        assert g["first"].dtype == g["last"].dtype == np.uint64
        assert g["status"].dtype == np.uint32
        first, last, status = g["first"][()], g["last"][()], g["status"][()]
        np.testing.assert_array_equal(status, [0, 0, 1, 1, 0, 1])
        np.testing.assert_array_equal((last - first + 1) * status, counts)
        np.testing.assert_array_equal(first, [0, 0, 0, 2, 3, 3])
        np.testing.assert_array_equal(last[status == 1], [1, 2, 5])
        c = f["INDEX/A/B/C"]
        assert set(c) == {"first", "last", "status"}
        np.testing.assert_array_equal(c["last"][()], np.arange(6))
    assert_file_matches(m)
    assert_data_matches(m)


@pytest.mark.parametrize("pad_index", [False, True])
def test_train_id_padding(tmp_path, pad_index):
    spec = FileSpec(TIDS[:5], [InstrumentSource("A/B/C:out", {"data.x": "u4"}, groups={"data": 2})],
                    format_version="1.2", pad_trainids_to=8, pad_source_index=pad_index)
    m = write_file(tmp_path, spec)
    with h5py.File(m.path, "r") as f:
        tid = f["INDEX/trainId"][()]
        np.testing.assert_array_equal(tid, list(TIDS[:5]) + [0, 0, 0])
        for k in ("timestamp", "flag", "origin"):
            assert f[f"INDEX/{k}"].shape == (8,)
        assert f["INDEX/A/B/C:out/data/count"].shape == ((8,) if pad_index else (5,))
        np.testing.assert_array_equal(f["INDEX/A/B/C:out/data/count"][:5], 2)
    np.testing.assert_array_equal(m.train_ids, TIDS[:5])
    assert m.n_padding == 3
    assert_file_matches(m)


def test_instrument_dataset_padding(full_files):
    m = full_files["1.2"]
    with h5py.File(m.path, "r") as f:
        hits = f["INSTRUMENT/SA3_REMI_DLD6/DET/TOP:output/rec/hits"]
        assert hits.dtype == COMPOUND and hits.shape == (INST_COUNTS.sum() + 3, 5)
        assert hits.maxshape == (None, 5)
        assert (hits[-3:]["x"] == 0).all()
        assert f["INSTRUMENT/SA3_REMI_DLD6/DET/TOP:output/aux/x"].shape == (N + 3, 3)


# -- CONTROL & RUN -----------------------------------------------------------------

def test_control_layout(full_files):
    m = full_files["1.2"]
    with h5py.File(m.path, "r") as f:
        grp = f["CONTROL/SA1_XTD2_XGM/DOOCS/MAIN/pulseEnergy/photonFlux"]
        assert set(grp) == {"value", "timestamp"}
        v, ts = grp["value"], grp["timestamp"]
        assert v.dtype == np.float32 and v.shape == (N,) and v.maxshape == (None,)
        assert ts.dtype == np.uint64 and ts.shape == (N,)
        assert (np.diff(ts[()].astype(np.int64)) >= 0).all() and (ts[()] > 0).all()
        assert grp.attrs["unitSymbol"] == "J" and grp.attrs["metricPrefixSymbol"] == "u"
        assert v.attrs["metricPrefixName"] == "micro"
        state = f["CONTROL/SA1_XTD2_XGM/DOOCS/MAIN/state/value"]
        assert h5py.check_string_dtype(state.dtype).encoding == "utf-8"
        vec = f["CONTROL/SA1_XTD2_XGM/DOOCS/VEC/vec/value"]
        assert vec.shape == (N, 8) and vec.maxshape == (None, 8)
        np.testing.assert_array_equal(
            vec[()], (TIDS.astype(np.int64)[:, None] * 1000
                      + key_salt("SA1_XTD2_XGM/DOOCS/VEC", "vec.value") + np.arange(8)))
        ixpos = f["CONTROL/SA1_XTD2_XGM/DOOCS/MAIN/beamPosition/ixPos"]
        assert ixpos.attrs["daqPolicy"].tolist() == [-1]
        assert ixpos["value"].attrs["daqPolicy"].tolist() == [1]


def test_run_section(full_files):
    m = full_files["1.0"]
    src = m.sources["SA1_XTD2_XGM/DOOCS/MAIN"]
    with h5py.File(m.path, "r") as f:
        run = f["RUN/SA1_XTD2_XGM/DOOCS/MAIN"]
        v = run["pulseEnergy/photonFlux/value"]
        assert v.shape == (1,) and v.maxshape == (None,) and v.dtype == np.float32
        assert run["pulseEnergy/photonFlux/timestamp"].shape == (1,)
        assert v[0] == run_value(src, "pulseEnergy.photonFlux")
        # RUN differs from every CONTROL row (train ID 0 in the rule)
        assert v[0] not in f["CONTROL/SA1_XTD2_XGM/DOOCS/MAIN/pulseEnergy/photonFlux/value"][()]
        cls = run["classId/value"]
        assert h5py.check_string_dtype(cls.dtype).encoding == "ascii" and cls[0] == b"DoocsXGM"
        state = run["state/value"]
        assert h5py.check_string_dtype(state.dtype).encoding == "ascii"
        assert state[0].decode() == run_value(src, "state")
        vec = f["RUN/SA1_XTD2_XGM/DOOCS/VEC/vec/value"]
        assert vec.shape == (1, 8) and vec.maxshape == (None, 8)
        assert "classId" not in f["RUN/SA1_XTD2_XGM/DOOCS/VEC"]


def test_run_only_and_no_data_sources(full_files):
    m = full_files["1.3"]
    with h5py.File(m.path, "r") as f:
        assert len(f["CONTROL/SA3_REMI_DLD6/DET/TOP"]) == 0  # empty group
        rv = f["RUN/SA3_REMI_DLD6/DET/TOP/digitizer/baseline_region/value"]
        assert rv[0] == b":1000" and h5py.check_string_dtype(rv.dtype).encoding == "ascii"
        assert "threshold" in f["RUN/SA3_REMI_DLD6/DET/TOP"]
        nd = f["CONTROL/SA3_XTD10_VAC/GAUGE/G30520C/AAlarmH"]
        assert nd["value"].shape == (0,) and nd["timestamp"].shape == (0,)
        assert nd["value"].maxshape == (None,)
        assert f["RUN/SA3_XTD10_VAC/GAUGE/G30520C/AAlarmH/value"].shape == (1,)
    assert m.key_names("SA3_REMI_DLD6/DET/TOP") == frozenset()
    assert m.expected("SA3_XTD10_VAC/GAUGE/G30520C", "AAlarmH").shape == (0,)
    with pytest.raises(KeyError):
        m.expected("SA3_REMI_DLD6/DET/TOP", "threshold")


# -- detectors ------------------------------------------------------------------

def test_xtdf_raw_layout(full_files):
    m = full_files["1.2"]
    n_frames = FRAMES.sum()
    with h5py.File(m.path, "r") as f:
        img = f["INSTRUMENT/SPB_DET_AGIPD1M-1/DET/0CH0:xtdf/image"]
        assert img["data"].dtype == np.uint16 and img["data"].shape == (n_frames, 2, 64, 32)
        assert img["data"].chunks == (1, 2, 64, 32) and img["data"].maxshape[0] is None
        for k, dt in (("pulseId", np.uint64), ("cellId", np.uint16), ("trainId", np.uint64),
                      ("length", np.uint32), ("status", np.uint16)):
            assert img[k].dtype == dt and img[k].shape == (n_frames, 1), k
        entries = np.concatenate([np.arange(c) for c in FRAMES])
        np.testing.assert_array_equal(img["cellId"][:, 0], entries)
        np.testing.assert_array_equal(img["trainId"][:, 0], np.repeat(TIDS, FRAMES))
        hdr = f["INSTRUMENT/SPB_DET_AGIPD1M-1/DET/0CH0:xtdf/header"]
        np.testing.assert_array_equal(hdr["pulseCount"][()], FRAMES)
        assert hdr["magicNumberBegin"].dtype == np.int8 and hdr["magicNumberBegin"].shape == (N, 8)
        assert hdr["reserved"].shape == (N, 16)
        det = f["INSTRUMENT/SPB_DET_AGIPD1M-1/DET/0CH0:xtdf/detector/data"]
        assert det.dtype == np.uint8 and det.shape == (N, 5408)
        trl = f["INSTRUMENT/SPB_DET_AGIPD1M-1/DET/0CH0:xtdf/trailer"]
        assert trl["checksum"].shape == (N, 16) and trl["status"].dtype == np.uint64


def test_xtdf_corrected_legacy_links(full_files):
    m = full_files["1.2"]
    new, old = "SPB_DET_AGIPD1M-1/CORR/1CH0:output", "SPB_DET_AGIPD1M-1/DET/1CH0:xtdf"
    n_frames = FRAMES.sum()
    with h5py.File(m.path, "r") as f:
        for section in ("INSTRUMENT", "INDEX"):
            link = f.get(f"{section}/{old}", getlink=True)
            assert isinstance(link, h5py.SoftLink) and link.path == f"/{section}/{new}"
            assert isinstance(f.get(f"{section}/{new}", getlink=True), h5py.HardLink)
        assert f[f"INDEX/{old}/image/count"][()].tolist() == FRAMES.tolist()
        img = f[f"INSTRUMENT/{new}/image"]
        data = img["data"]
        assert data.dtype == np.float32 and data.shape == (n_frames, 64, 32)
        assert data.maxshape == data.shape and data.chunks == (1, 64, 32)
        assert data.compression == "gzip"
        for k, dt in (("mask", np.uint32), ("gain", np.uint8)):
            assert img[k].dtype == dt and img[k].compression == "gzip"
            assert img[k].compression_opts == 1 and img[k].chunks == (1, 64, 32)
        for k in ("pulseId", "cellId", "trainId"):
            assert img[k].shape == (n_frames,)
        assert img["length"].shape == (n_frames, 1)
    assert m.legacy_sources == {old: new}
    assert old in m.instrument_sources and new in m.instrument_sources
    assert (new, "image") in m.counts and (old, "image") not in m.counts
    np.testing.assert_array_equal(m.index(old, "image")[1], FRAMES)


def test_xtdf_kinds_and_options(tmp_path):
    lpd = xtdf_module("FXE_DET_LPD1M-1", 5, frames=4, kind="LPD")
    dssc = xtdf_module("SCS_DET_DSSC1M-1", 2, frames=2, kind="DSSC", frame_shape=(128, 512))
    m = write_file(tmp_path, FileSpec(TIDS[:2], [lpd, dssc], aggregator="LPD05"))
    with h5py.File(m.path, "r") as f:
        assert f["INSTRUMENT/FXE_DET_LPD1M-1/DET/5CH0:xtdf/image/data"].shape == (8, 1, 32, 32)
        assert f["INSTRUMENT/FXE_DET_LPD1M-1/DET/5CH0:xtdf/detector/data"].shape == (2, 416)
        assert f["INSTRUMENT/SCS_DET_DSSC1M-1/DET/2CH0:xtdf/image/data"].shape == (4, 1, 128, 512)
    assert_data_matches(m)
    with pytest.raises(ValueError):
        xtdf_module(legacy=True)
    with pytest.raises(ValueError):
        xtdf_module(kind="EPIX")


def test_jungfrau_module(tmp_path):
    jf = jungfrau_module("SPB_IRDA_JF4M", 2, cells=4, counts=[1, 0, 1])
    spec = FileSpec(TIDS[:3], [jf], aggregator="JNGFR02",
                    unlisted_index=("SPB_IRDA_JF4M/DET/JNGFR02",))
    m = write_file(tmp_path, spec)
    with h5py.File(m.path, "r") as f:
        d = f["INSTRUMENT/SPB_IRDA_JF4M/DET/JNGFR02:daqOutput/data"]
        assert d["adc"].shape == (2, 4, 32, 64) and d["adc"].dtype == np.uint16
        assert d["gain"].dtype == np.uint8 and d["mask"].dtype == np.uint32
        assert d["memoryCell"].shape == (2, 4)
        np.testing.assert_array_equal(d["memoryCell"][()], [[0, 1, 2, 3]] * 2)
        assert d["frameNumber"].dtype == np.uint64 and d["timestamp"].dtype == np.float64
        np.testing.assert_array_equal(f["INDEX/SPB_IRDA_JF4M/DET/JNGFR02/count"][()], 1)
    assert m.unlisted_index == ("SPB_IRDA_JF4M/DET/JNGFR02",)
    assert m.control_sources == ()
    assert_data_matches(m)


# -- train IDs: suspect, broken, timestamps -------------------------------------------

def test_suspect_and_broken_train_ids(tmp_path):
    tids = np.array([10000, 10001, 0, 10003, 5, 10005], dtype=np.uint64)
    ctrl = ControlSource("A/B/C", {"x": np.float64})
    m = write_file(tmp_path / "a.h5", FileSpec(tids, [ctrl], format_version="0.5"))
    with h5py.File(m.path, "r") as f:
        np.testing.assert_array_equal(f["INDEX/trainId"][()], tids)  # written as given
        ts = f["CONTROL/A/B/C/x/timestamp"][()]
        assert (ts > 0).all() and (np.diff(ts.astype(np.int64)) >= 0).all()
    np.testing.assert_array_equal(m.train_ids, tids)
    # 0.5 guess: the low ID 5 is the single offender; zero IDs are never valid
    np.testing.assert_array_equal(m.validity, [True, True, False, True, False, True])
    assert_file_matches(m)

    m11 = write_file(tmp_path / "b.h5", FileSpec(tids[:2], [ctrl], format_version="1.1",
                                                 raw_flag=[0, 3]))
    np.testing.assert_array_equal(m11.validity, [True, False])
    with h5py.File(m11.path, "r") as f:
        np.testing.assert_array_equal(f["INDEX/flag"][()], [0, 3])


def test_guess_validity_v05_rules():
    g = lambda *t: guess_validity_v05(np.array(t, dtype=np.uint64)).tolist()
    assert g(1, 2, 3) == [True] * 3
    assert g(1, 2, 99, 3, 4) == [True, True, False, True, True]  # earlier set smaller
    assert g(5, 6, 7, 1, 8) == [True, True, True, False, True]  # later set smaller
    assert g(1, 3, 2) == [True, True, False]  # tie: later side invalid
    assert g(1, 1) == [True, False]  # duplicate


def test_timestamps_options(tmp_path):
    ctrl = ControlSource("A/B/C", {"x": np.float64})
    m = write_file(tmp_path / "a.h5", FileSpec(TIDS[:3], [ctrl], timestamps=False))
    with h5py.File(m.path, "r") as f:
        assert (f["INDEX/timestamp"][()] == 0).all()
        # control timestamps stay valid (non-zero, non-decreasing) regardless
        assert (f["CONTROL/A/B/C/x/timestamp"][()] > 0).all()
    explicit = [5, 6, 7]
    m2 = write_file(tmp_path / "b.h5", FileSpec(TIDS[:3], [ctrl], timestamps=explicit))
    with h5py.File(m2.path, "r") as f:
        np.testing.assert_array_equal(f["INDEX/timestamp"][()], explicit)
    m3 = write_file(tmp_path / "c.h5", FileSpec(TIDS[2:5], [ctrl], timestamp_origin=10000))
    np.testing.assert_array_equal(m3.timestamps, EPOCH_NS + np.arange(2, 5) * TRAIN_PERIOD_NS)
    np.testing.assert_array_equal(control_timestamps(TIDS[2:5], 10000), m3.timestamps)


def test_file_names(tmp_path):
    spec = FileSpec(TIDS[:1], [], run=42, sequence=3, category="CORR", aggregator="REMI01")
    assert spec.filename == "CORR-R0042-REMI01-S00003.h5"
    m = write_file(tmp_path, spec)
    assert os.path.basename(m.path) == spec.filename and os.path.exists(m.path)
    m = write_file(tmp_path / "custom.h5", spec)
    assert m.path.endswith("custom.h5") and m.filename == spec.filename


def test_empty_file(tmp_path):
    m = write_file(tmp_path, FileSpec([], [ControlSource("A/B/C", {"x": "f4"})]))
    with h5py.File(m.path, "r") as f:
        assert f["INDEX/trainId"].shape == (0,)
        assert f["CONTROL/A/B/C/x/value"].shape == (0,)
    assert_file_matches(m)


# -- spec validation -------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: FileSpec(TIDS[:3], [], format_version="0.5", flag=[True] * 3),
    lambda: FileSpec(TIDS[:3], [], format_version="2.0"),
    lambda: FileSpec(TIDS[:3], [], flag=[True] * 2),
    lambda: FileSpec(TIDS[:3], [], pad_trainids_to=2),
    lambda: FileSpec(TIDS[:3], [InstrumentSource("A/B:c", {"d.x": "f4"}, groups={"d": [1, 2]})]),
    lambda: FileSpec(TIDS[:3], [ControlSource("A/B", {"x": "f4"}), ControlSource("A/B", {"y": "f4"})]),
    lambda: FileSpec(TIDS[:3], [InstrumentSource("A/B:c", {"d.x": "f4"}),
                                InstrumentSource("A/B:d", {"d.x": "f4"}, legacy_names=("A/B:c",))]),
    lambda: InstrumentSource("NOCHANNEL", {"d.x": "f4"}),
    lambda: ControlSource("A/B:c", {"x": "f4"}),
    lambda: ControlSource("A/B", {"x": "f4"}, run_only=True, no_data=True),
    lambda: ControlSource("A/B", {"x.timestamp": "f4"}),
    lambda: Key("f4", fill="nonsense"),
    lambda: Key(object),
    lambda: Key("f4", compression="lz4"),
    lambda: RunSpec([3, 2, 1], []),
    lambda: plan_run(RunSpec([1, 2, 3], [Aggregator("DA01", [], sequence_starts=(3,))])),
    lambda: plan_run(RunSpec([1, 2, 3], [Aggregator("DA01", [], train_ids=[1, 4])])),
])
def test_invalid_specs_rejected(make):
    with pytest.raises((ValueError, TypeError)):
        make()


# -- the value rule ------------------------------------------------------------

def test_value_rule():
    k = Key(np.uint8, (2,))
    v = expected_values("S:o", "d.x", k, [10000, 10001], counts=[1, 2])
    salt = key_salt("S:o", "d.x")
    base = np.array([10000_000, 10001_000, 10001_001]) + salt
    np.testing.assert_array_equal(v, ((base[:, None] + [0, 1]) % 256).astype(np.uint8))
    assert v.dtype == np.uint8
    assert key_salt("S:o", "d.x") != key_salt("S:o", "d.y")
    s = expected_values("S:o", "d.s", Key(str), [7], counts=2)
    assert s.tolist() == [str(7000 + key_salt("S:o", "d.s")), str(7001 + key_salt("S:o", "d.s"))]
    c = expected_values("S:o", "d.c", Key(COMPOUND), [7])
    assert c["x"][0] == 7000 + key_salt("S:o", "d.c") and c["m"][0] == c["x"][0] + 3
    assert expected_values("S:o", "d.b", Key(bool), [7]).dtype == bool
    assert expected_values("S:o", "d.t", Key("u8", fill="train_id"), [7, 8], [2, 1]).tolist() == [7, 7, 8]
    assert expected_values("S:o", "d.e", Key("u2", fill="entry"), [7, 8], [2, 1]).tolist() == [0, 1, 0]
    assert expected_values("S:o", "d.n", Key("u2", fill="count"), [7, 8], [2, 1]).tolist() == [2, 2, 1]
    assert expected_values("S:o", "d.i", Key("u1", (3,), fill="index"), [7], 1).tolist() == [[0, 1, 2]]
    assert expected_values("S:o", "d.k", Key("f4", (2,), fill=(1.5, 2)), [7], 1).tolist() == [[1.5, 2.0]]
    assert expected_values("S:o", "d.o", Key("u4", fill="count:g"), [7, 8], [1, 1],
                           other_counts=[5, 6]).tolist() == [5, 6]


# -- runs -------------------------------------------------------------------------

def test_write_run_sequences(tmp_path):
    tids = np.arange(10000, 10030, dtype=np.uint64)
    cam = InstrumentSource("X/CAM/A:daqOutput", {"data.img": ("u2", (2, 3))},
                           groups={"data": np.arange(30) % 3})
    mod = xtdf_module("SPB_DET_AGIPD1M-1", 0, frames=2, frame_shape=(4, 4))
    missing = np.delete(tids, [5, 6])
    valid = np.ones(30, dtype=bool)
    valid[20] = False
    spec = RunSpec(tids, [
        Aggregator("DA01", [ControlSource("X/MOTOR/A", {"pos": "f8"}), cam], sequence_starts=(10, 20)),
        Aggregator("AGIPD00", [mod], sequence_starts=(13,), train_ids=missing),
    ], format_version="1.1", run=9, valid=valid, file_options={"old_index": True})
    m = write_run(tmp_path / "r0009", spec)
    names = sorted(os.path.basename(f.path) for f in m.files)
    assert names == ["RAW-R0009-AGIPD00-S00000.h5", "RAW-R0009-AGIPD00-S00001.h5",
                     "RAW-R0009-DA01-S00000.h5", "RAW-R0009-DA01-S00001.h5",
                     "RAW-R0009-DA01-S00002.h5"]
    by_agg = {}
    for f in m.files:
        assert_file_matches(f)
        assert_data_matches(f)
        assert f.old_index and f.format_version == "1.1"
        with h5py.File(f.path, "r") as h:
            assert h["INDEX"].visit(lambda n: n if n.endswith("/last") else None) is not None
            assert h["METADATA/sequenceNumber"][0] == f.sequence
        by_agg.setdefault(f.aggregator, []).append(f.train_ids)
    # consecutive, disjoint sequence files; boundaries differ between aggregators
    for parts in by_agg.values():
        joined = np.concatenate(parts)
        assert (np.diff(joined.astype(np.int64)) > 0).all()
    np.testing.assert_array_equal(np.concatenate(by_agg["DA01"]), tids)
    np.testing.assert_array_equal(np.concatenate(by_agg["AGIPD00"]), missing)
    assert [len(p) for p in by_agg["DA01"]] == [10, 10, 10]
    assert [len(p) for p in by_agg["AGIPD00"]] == [13, 15]
    # run level
    np.testing.assert_array_equal(m.train_ids, tids)
    np.testing.assert_array_equal(m.valid_train_ids, np.delete(tids, 20))
    np.testing.assert_array_equal(m.counts_for("X/CAM/A:daqOutput", "data"), np.arange(30) % 3)
    img = m.counts_for("SPB_DET_AGIPD1M-1/DET/0CH0:xtdf", "image")
    np.testing.assert_array_equal(img, np.where(np.isin(tids, missing), 2, 0))
    np.testing.assert_array_equal(m.timestamps, EPOCH_NS + np.arange(30) * TRAIN_PERIOD_NS)
    # every file's timestamps use the run's first train as origin
    assert all(f.timestamp_origin == 10000 for f in m.files)
    # run-level expected data equals the concatenated file contents
    got = np.concatenate([read_key(f.path, "INSTRUMENT", "X/CAM/A:daqOutput", "data.img",
                                   f.counts[("X/CAM/A:daqOutput", "data")])
                          for f in m.files if f.aggregator == "DA01"])
    np.testing.assert_array_equal(got, m.expected("X/CAM/A:daqOutput", "data.img"))
    sel = tids[[1, 2, 25]]
    np.testing.assert_array_equal(
        m.expected("X/CAM/A:daqOutput", "data.img", sel),
        expected_values("X/CAM/A:daqOutput", "data.img", cam.keys["data.img"], sel, [1, 2, 1]))
    assert describe_run(spec, tmp_path / "r0009") == m


def test_aux_sources_across_aggregators(tmp_path):
    tids = np.arange(1, 7, dtype=np.uint64)
    err = InstrumentSource("TRAINS_OUTSIDE", {"event.v": "u8"}, groups={"event": [0, 1, 0, 0, 2, 0]},
                           section="ERRATA")
    m = write_run(tmp_path, train_ids=tids, aggregators=[
        Aggregator("DA01", [err, ControlSource("A/B/C", {"x": "f4"})], sequence_starts=(3,)),
        Aggregator("DA02", [err, ControlSource("A/B/D", {"x": "f4"})]),
    ])
    assert m.errata_sources == ("TRAINS_OUTSIDE",)
    assert m.aux_aggregators == {"TRAINS_OUTSIDE": ("DA01", "DA02")}
    assert ("TRAINS_OUTSIDE", "event") not in m.counts
    for agg in ("DA01", "DA02"):
        np.testing.assert_array_equal(m.aux_counts[(agg, "TRAINS_OUTSIDE", "event")],
                                      [0, 1, 0, 0, 2, 0])
    for f in m.files:
        assert_file_matches(f)
        assert_data_matches(f)


def test_demo_run(demo):
    assert len(demo.files) == 12
    np.testing.assert_array_equal(demo.train_ids, np.arange(10000, 10100))
    assert {f.aggregator for f in demo.files} == {"DA01", "DA02", "AGIPD00", "AGIPD01",
                                                  "AGIPD02", "AGIPD03"}
    firsts = {}
    for f in demo.files:
        assert_file_matches(f)
        assert f.format_version == "1.2"
        if f.sequence == 1:
            firsts[f.aggregator] = int(f.train_ids[0])
    assert len(set(firsts.values())) == 3  # DA01, DA02 and modules split differently
    assert "SPB_IRU_DAQ/SETTINGS/RUNONLY" in demo.control_sources
    assert demo.instrument_sources == (
        "SA1_XTD2_XGM/DOOCS/MAIN:output", "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf",
        "SPB_DET_AGIPD1M-1/DET/1CH0:xtdf", "SPB_DET_AGIPD1M-1/DET/2CH0:xtdf",
        "SPB_DET_AGIPD1M-1/DET/3CH0:xtdf", "SPB_IRU_CAM/CAM/SIDEMIC:daqOutput")
    cam = demo.counts_for("SPB_IRU_CAM/CAM/SIDEMIC:daqOutput", "data")
    assert cam.sum() == 90 and cam[9] == 0
    with h5py.File(demo.files[0].path, "r") as f:
        td = f["INSTRUMENT/SA1_XTD2_XGM/DOOCS/MAIN:output/data/intensityTD"]
        assert td.attrs["unitName"] == "joule" and td.attrs["metricPrefixName"] == "micro"
    xgm = demo.expected("SA1_XTD2_XGM/DOOCS/MAIN", "beamPosition.ixPos.value")
    parts = [read_key(f.path, "CONTROL", "SA1_XTD2_XGM/DOOCS/MAIN", "beamPosition.ixPos.value",
                      f.counts[("SA1_XTD2_XGM/DOOCS/MAIN", "")])
             for f in demo.files if f.aggregator == "DA01"]
    np.testing.assert_array_equal(np.concatenate(parts), xgm)


def test_benchmark_run_small(tmp_path):
    m = make_benchmark_run(tmp_path, n_trains=12, frames_per_train=2, frame_shape=(8, 8),
                           n_control_sources=20)
    assert len(m.files) == 76
    aggs = {}
    for f in m.files:
        aggs.setdefault(f.aggregator, []).append(f)
    assert len(aggs) == 19 and all(len(v) == 4 for v in aggs.values())
    assert len(m.control_sources) == 20
    assert len([s for s in m.instrument_sources if "AGIPD" in s]) == 16
    # control aggregators break sequences at other trains than the modules
    starts = {a: tuple(int(f.train_ids[0]) for f in fs) for a, fs in aggs.items()}
    assert starts["DA01"] != starts["AGIPD00"]
    assert_file_matches(aggs["DA02"][1])
    assert_data_matches(aggs["AGIPD07"][3])


# -- strategies (property test of the writer itself) -------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings

from xfeldata.testing.strategies import file_specs, run_specs, write_example


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=run_specs())
def test_random_runs_match_manifest(tmp_path, spec):
    m = write_example(tmp_path, spec)
    assert len(m.files) == len(plan_run(spec))
    for f in m.files:
        assert_file_matches(f)
        assert_data_matches(f)
    union = np.unique(np.concatenate([f.train_ids for f in m.files]))
    np.testing.assert_array_equal(m.train_ids, union[union != 0])
    for (src, group), c in m.counts.items():
        total = sum(int(f.counts[(src, group)].sum()) for f in m.files if (src, group) in f.counts)
        assert int(c.sum()) == total


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=file_specs(invalid=True))
def test_random_files_match_manifest(tmp_path, spec):
    m = write_file(tmp_path / "f.h5", spec)
    assert_file_matches(m)
    assert_data_matches(m)
