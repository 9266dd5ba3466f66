"""Hypothesis strategies producing small, valid synthetic runs and files.

Import this module only where hypothesis is installed (it is not a runtime
dependency of xfeldata). Every generated run is tiny (a few trains, a few
sources, arrays of a few elements) so a property test can write one per
example in milliseconds.

Example
-------
>>> from hypothesis import given, settings
>>> from xfeldata.testing.strategies import run_specs, write_example
>>> @settings(max_examples=5, deadline=None)
... @given(spec=run_specs())
... def test_roundtrip(tmp_path_factory, spec):   # doctest: +SKIP
...     manifest = write_example(tmp_path_factory.mktemp('run'), spec)
...     run = open_run_somehow(manifest.directory)
...     assert list(run.train_ids) == manifest.train_ids.tolist()
"""

from __future__ import annotations

import os
import uuid

import numpy as np
from hypothesis import strategies as st

from ._records import FORMAT_VERSIONS, ControlSource, FileSpec, InstrumentSource, Key
from ._run import Aggregator, RunSpec, write_run

__all__ = [
    "control_sources",
    "counts_arrays",
    "file_specs",
    "format_versions",
    "instrument_sources",
    "run_specs",
    "sequence_starts",
    "train_id_arrays",
    "write_example",
]

#: Small key types the strategies pick from (scalar, vector, string, compound).
KEY_TYPES = (
    Key(np.float32),
    Key(np.int16),
    Key(np.uint8, (3,)),
    Key(np.float64, (2, 2)),
    Key(str),
    Key(np.dtype([("x", "<f8"), ("m", "<i4")]), (2,)),
)


def format_versions(versions=FORMAT_VERSIONS) -> st.SearchStrategy[str]:
    """One of the format versions."""
    return st.sampled_from(tuple(versions))


@st.composite
def train_id_arrays(draw, min_size: int = 1, max_size: int = 12, max_gap: int = 3,
                    min_start: int = 1, max_start: int = 10**10) -> np.ndarray:
    """Strictly increasing non-zero uint64 train IDs with gaps up to ``max_gap``."""
    n = draw(st.integers(min_size, max_size))
    start = draw(st.integers(min_start, max_start))
    gaps = draw(st.lists(st.integers(1, max_gap), min_size=max(n - 1, 0), max_size=max(n - 1, 0)))
    return np.array([start] + [start + int(g) for g in np.cumsum(gaps)], dtype=np.uint64)[:n]


@st.composite
def counts_arrays(draw, n: int, max_count: int = 3, allow_zero: bool = True) -> np.ndarray:
    """Per-train entry counts (0..max_count) for ``n`` trains."""
    lo = 0 if allow_zero else 1
    vals = draw(st.lists(st.integers(lo, max_count), min_size=n, max_size=n))
    return np.array(vals, dtype=np.uint64)


@st.composite
def sequence_starts(draw, n: int, max_sequences: int = 3) -> tuple[int, ...]:
    """Sorted split positions strictly inside ``(0, n)``: up to ``max_sequences`` files."""
    if n < 2 or max_sequences < 2:
        return ()
    k = draw(st.integers(0, min(max_sequences, n) - 1))
    return tuple(sorted(draw(st.sets(st.integers(1, n - 1), min_size=k, max_size=k))))


@st.composite
def control_sources(draw, name: str, special: bool = True) -> ControlSource:
    """A control source with 1-3 small keys; sometimes RUN-only or without data."""
    idx = draw(st.sets(st.integers(0, len(KEY_TYPES) - 2), min_size=1, max_size=3))
    keys = {f"prop{i}.value" if i % 2 else f"prop{i}": KEY_TYPES[i] for i in sorted(idx)}
    kind = draw(st.sampled_from(["normal", "normal", "run_only", "no_data"])) if special else "normal"
    return ControlSource(
        name, keys, run_only=kind == "run_only", no_data=kind == "no_data",
        device_class=draw(st.one_of(st.none(), st.just("TestDevice"))),
    )


@st.composite
def instrument_sources(draw, name: str, n_trains: int, max_groups: int = 2, max_count: int = 3,
                       section: str = "INSTRUMENT", legacy_name: str | None = None,
                       padding: bool = True) -> InstrumentSource:
    """An instrument-like source with 1-``max_groups`` index groups of random counts."""
    n_groups = draw(st.integers(1, max_groups))
    keys, groups = {}, {}
    for g in range(n_groups):
        group = f"g{g}"
        groups[group] = draw(st.one_of(
            st.integers(0, max_count),
            counts_arrays(n_trains, max_count),
        ))
        for i in sorted(draw(st.sets(st.integers(0, len(KEY_TYPES) - 1), min_size=1, max_size=2))):
            keys[f"{group}.k{i}"] = KEY_TYPES[i]
    return InstrumentSource(
        name, keys, groups=groups, section=section,
        legacy_names=(legacy_name,) if legacy_name else (),
        extra_rows=draw(st.integers(0, 2)) if padding else 0,
    )


@st.composite
def run_specs(
    draw,
    versions=FORMAT_VERSIONS,
    max_trains: int = 10,
    max_aggregators: int = 3,
    max_sequences: int = 3,
    max_control: int = 2,
    max_instrument: int = 2,
    max_count: int = 3,
    suspect: bool = True,
    padding: bool = True,
    old_index: bool = True,
    aux: bool = True,
    legacy: bool = True,
    partial: bool = True,
) -> RunSpec:
    """A small, valid :class:`~xfeldata.testing.RunSpec` drawn at random.

    Parameters
    ----------
    versions : sequence of str
        Format versions to choose from.
    max_trains, max_aggregators, max_sequences, max_control, max_instrument, max_count
        Size limits (per run, per run, per aggregator, per aggregator, per
        aggregator, entries per train).
    suspect : bool
        Allow suspect trains (flag; never for 0.5).
    padding : bool
        Allow padded ``INDEX/trainId`` and instrument datasets with extra rows.
    old_index : bool
        Allow the ``first/last/status`` index.
    aux : bool
        Allow REDUCTION/ERRATA sources.
    legacy : bool
        Allow legacy soft-link names.
    partial : bool
        Allow aggregators recording only some of the run's trains.
    """
    version = draw(format_versions(versions))
    tids = draw(train_id_arrays(max_size=max_trains))
    n = len(tids)
    aggs = []
    n_aggs = draw(st.integers(1, max_aggregators))
    for a in range(n_aggs):
        if partial and draw(st.booleans()):
            mask = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
            if not mask.any():
                mask[draw(st.integers(0, n - 1))] = True
            agg_tids = tids[mask]
        else:
            agg_tids = None
        m = n if agg_tids is None else len(agg_tids)
        sources: list = []
        for i in range(draw(st.integers(0, max_control))):
            sources.append(draw(control_sources(f"HYPO_A{a}/CTRL/C{i}")))
        for i in range(draw(st.integers(0 if sources else 1, max_instrument))):
            leg = None
            if legacy and draw(st.booleans()):
                name, leg = f"HYPO_DET{a}/CORR/{i}CH0:output", f"HYPO_DET{a}/DET/{i}CH0:xtdf"
            else:
                name = f"HYPO_A{a}/INST/I{i}:output"
            sources.append(draw(instrument_sources(name, m, max_count=max_count,
                                                   legacy_name=leg, padding=padding)))
        if aux and draw(st.booleans()):
            # The same ERRATA name in several aggregators is allowed (and real).
            shared = draw(st.booleans())
            sources.append(draw(instrument_sources(
                "HYPO_ERRATA" if shared else f"HYPO_ERRATA_{a}", m, max_groups=1,
                max_count=max_count, section="ERRATA", padding=False)))
            if draw(st.booleans()):
                sources.append(draw(instrument_sources(
                    f"HYPO_REDU/PULSE/P{a}:filter", m, max_groups=1, max_count=max_count,
                    section="REDUCTION", padding=False)))
        aggs.append(Aggregator(
            f"DA{a + 1:02d}", sources,
            sequence_starts=draw(sequence_starts(m, max_sequences)),
            train_ids=agg_tids,
        ))
    valid = None
    if suspect and version != "0.5" and draw(st.booleans()):
        valid = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    options = {}
    if padding and draw(st.booleans()):
        options["pad_trainids_to"] = n + draw(st.integers(0, 3))
        options["pad_source_index"] = draw(st.booleans())
    if old_index and draw(st.booleans()):
        options["old_index"] = True
    options["timestamps"] = draw(st.booleans())
    return RunSpec(tids, aggs, format_version=version, valid=valid,
                   run=draw(st.integers(1, 9999)), file_options=options)


@st.composite
def file_specs(
    draw,
    versions=FORMAT_VERSIONS,
    max_trains: int = 10,
    max_count: int = 3,
    invalid: bool = False,
) -> FileSpec:
    """A single small :class:`~xfeldata.testing.FileSpec`; with ``invalid=True`` train IDs may
    contain zeros in the middle, go backwards or repeat (broken files)."""
    version = draw(format_versions(versions))
    tids = draw(train_id_arrays(max_size=max_trains))
    n = len(tids)
    if invalid and n > 1:
        tids = tids.copy()
        for _ in range(draw(st.integers(1, 2))):
            i = draw(st.integers(0, n - 1))
            how = draw(st.sampled_from(["zero", "low", "high", "repeat"]))
            if how == "zero" and i < n - 1:
                tids[i] = 0
            elif how == "low":
                tids[i] = draw(st.integers(1, 9))
            elif how == "high":
                tids[i] = int(tids.max()) + draw(st.integers(1, 10**6))
            elif how == "repeat" and i > 0:
                tids[i] = tids[i - 1]
    sources = [draw(control_sources("HYPO/CTRL/C0"))]
    sources.append(draw(instrument_sources("HYPO/INST/I0:output", n, max_count=max_count)))
    flag = None
    if version != "0.5" and draw(st.booleans()):
        flag = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return FileSpec(
        tids, sources, format_version=version, flag=flag,
        old_index=draw(st.booleans()),
        pad_trainids_to=n + draw(st.integers(0, 3)) if draw(st.booleans()) else None,
        timestamps=draw(st.booleans()),
    )


def write_example(directory, spec: RunSpec):
    """Write ``spec`` into a fresh sub-folder of ``directory`` and return its
    manifest (hypothesis reuses fixtures across examples, so each example
    needs its own folder)."""
    sub = os.path.join(os.fspath(directory), f"run-{uuid.uuid4().hex[:12]}")
    return write_run(sub, spec)
