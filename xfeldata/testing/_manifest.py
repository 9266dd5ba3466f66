"""Manifests: exactly what a synthetic file or run contains.

Built by pure functions from the specs (:func:`describe_file`,
:meth:`RunManifest.from_files`), so they can be computed without writing and
compared with what a reader returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from ._records import ControlSource, FileSpec, Key
from ._values import (
    control_timestamps,
    expected_values,
    train_timestamps,
)

__all__ = [
    "FileManifest",
    "RunManifest",
    "describe_file",
    "flag_values",
    "guess_validity_v05",
    "run_value",
    "validity_from_flag",
]


def flag_values(valid: np.ndarray, format_version: str) -> np.ndarray:
    """Encode per-train validity as ``INDEX/flag`` for a format version.

    >>> flag_values(np.array([True, False]), '1.2').tolist()
    [1, 0]
    >>> flag_values(np.array([True, False]), '1.1').tolist()
    [0, 1]
    """
    valid = np.asarray(valid, dtype=bool)
    if format_version == "1.1":
        # 1.1 stores an index where the time server is 0: non-zero = suspect.
        return np.where(valid, 0, 1).astype(np.int32)
    return valid.astype(np.int32)


def validity_from_flag(flag: np.ndarray, format_version: str) -> np.ndarray:
    """Decode ``INDEX/flag`` (FORMAT.md §3.2): 1.1 inverted, else flag != 0."""
    flag = np.asarray(flag)
    if format_version == "1.1":
        return flag == 0
    return flag != 0


def guess_validity_v05(train_ids: np.ndarray) -> np.ndarray:
    """The 0.5 suspect-train guess of FORMAT.md §3.2, over non-zero IDs.

    For every position where the ID does not increase, invalidate either the
    earlier IDs ``>= tid[i+1]`` or the later IDs ``<= tid[i]``, whichever set
    is smaller (ties: the later ones). Zero IDs are reported invalid.

    >>> guess_validity_v05(np.array([1, 2, 99, 3, 4], dtype=np.uint64)).tolist()
    [True, True, False, True, True]
    """
    tids = np.asarray(train_ids, dtype=np.uint64)
    valid = tids != 0
    pos = np.flatnonzero(valid)
    t = tids[pos]
    ok = np.ones(len(t), dtype=bool)
    for i in np.flatnonzero(t[1:] <= t[:-1]):
        earlier = np.flatnonzero(t[: i + 1] >= t[i + 1])
        later = i + 1 + np.flatnonzero(t[i + 1 :] <= t[i])
        ok[earlier if len(earlier) < len(later) else later] = False
    valid[pos] = ok
    return valid


def _frozen_array(a) -> np.ndarray:
    a = np.array(a)
    a.flags.writeable = False
    return a


def _dict_of_arrays_eq(a: Mapping, b: Mapping) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


_DICT_ARR_EQ = attrs.cmp_using(eq=_dict_of_arrays_eq)
_ARR_EQ = attrs.cmp_using(eq=np.array_equal)
_OPT_ARR_EQ = attrs.cmp_using(
    eq=lambda a, b: (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
)


def _control_key_spec(src: ControlSource, key: str) -> tuple[str, Key | None]:
    """Map a reader key (``a.b``, ``a.b.value``, ``a.b.timestamp``) to its Key."""
    if key.endswith(".timestamp"):
        prop = key[: -len(".timestamp")]
        if prop in src.keys:
            return "timestamp", None
        raise KeyError(f"{src.name} has no key {key!r}")
    prop = key.removesuffix(".value")
    if prop not in src.keys:
        raise KeyError(f"{src.name} has no key {key!r}")
    return prop + ".value", src.keys[prop]


@attrs.frozen(eq=True, hash=False)
class FileManifest:
    """What one written file contains (all arrays per written train row).

    Attributes
    ----------
    path : str or None
        Where the file was written (None for a manifest not yet written).
    filename, aggregator, category, run, proposal, sequence, format_version
    train_ids : ndarray of uint64
        ``INDEX/trainId`` as written, without padding.
    n_padding : int
        Zero rows appended to ``INDEX/trainId``.
    flag : ndarray of int32 or None
        ``INDEX/flag`` as written (None for 0.5).
    validity : ndarray of bool
        Per row: valid per FORMAT.md §3.2 (0.5: guessed; zero IDs: False).
    timestamps : ndarray of uint64
        ``INDEX/timestamp`` as written (zeros for 0.5).
    timestamp_origin : int
        Train ID stamped with the epoch (control timestamps follow it).
    control_sources, instrument_sources, reduction_sources, errata_sources :
        Sorted tuples of names as a reader reports them (instrument sources
        include legacy names; auxiliary names carry no section prefix).
    legacy_sources : dict
        Legacy name -> canonical name.
    sources : dict
        Canonical name -> the source record written (sliced to this file).
    counts : dict
        ``(source, group) -> uint64 counts per row``; group ``''`` for
        control sources; canonical names only.
    unlisted_index : tuple of str
        INDEX-only entries not listed as sources.
    """

    path: str | None
    filename: str
    aggregator: str
    category: str
    run: int
    proposal: int
    sequence: int
    format_version: str
    train_ids: np.ndarray = attrs.field(eq=_ARR_EQ)
    n_padding: int
    flag: np.ndarray | None = attrs.field(eq=_OPT_ARR_EQ)
    validity: np.ndarray = attrs.field(eq=_ARR_EQ)
    timestamps: np.ndarray = attrs.field(eq=_ARR_EQ)
    timestamp_origin: int
    control_sources: tuple[str, ...]
    instrument_sources: tuple[str, ...]
    reduction_sources: tuple[str, ...]
    errata_sources: tuple[str, ...]
    legacy_sources: Mapping[str, str]
    sources: Mapping[str, Any]
    counts: Mapping[tuple[str, str], np.ndarray] = attrs.field(eq=_DICT_ARR_EQ)
    unlisted_index: tuple[str, ...] = ()
    old_index: bool = False

    @property
    def valid_train_ids(self) -> np.ndarray:
        """Non-zero train IDs of valid rows, in file order."""
        return self.train_ids[self.validity & (self.train_ids != 0)]

    def canonical(self, source: str) -> str:
        return self.legacy_sources.get(source, source)

    def index(self, source: str, group: str = "") -> tuple[np.ndarray, np.ndarray]:
        """``(first, count)`` per row of ``INDEX/<source>[/<group>]``."""
        count = self.counts[(self.canonical(source), group)]
        first = (np.cumsum(count) - count).astype(np.uint64)
        return first, count

    def key_names(self, source: str) -> frozenset[str]:
        """Keys a reader lists for ``source`` in this file."""
        return self.sources[self.canonical(source)].key_names()

    def expected(self, source: str, key: str) -> np.ndarray:
        """All rows of ``key`` in this file, in file order (see ``expected_values``)."""
        src = self.sources[self.canonical(source)]
        if isinstance(src, ControlSource):
            if src.run_only:
                raise KeyError(f"{src.name} is RUN-only: no CONTROL data")
            name, spec = _control_key_spec(src, key)
            count = self.counts[(src.name, "")]
            rows = self.train_ids[count > 0]
            if spec is None:
                ts = control_timestamps(self.train_ids, self.timestamp_origin)
                return ts[count > 0]
            return expected_values(src.name, name, spec, rows)
        spec = src.all_keys()[key]
        group = key.split(".", 1)[0]
        other = None
        if isinstance(spec.fill, str) and spec.fill.startswith("count:"):
            other = self.counts[(src.name, spec.fill[6:])]
        return expected_values(
            src.name, key, spec, self.train_ids, self.counts[(src.name, group)], other
        )


def describe_file(spec: FileSpec, path: str | None = None) -> FileManifest:
    """The manifest of ``spec`` (pure: nothing is written).

    Examples
    --------
    >>> import numpy as np
    >>> from xfeldata.testing import FileSpec, InstrumentSource, describe_file
    >>> src = InstrumentSource('A/B/C:out', {'data.x': 'f4'}, groups={'data': [2, 0, 1]})
    >>> m = describe_file(FileSpec(np.arange(1, 4), [src]))
    >>> m.counts[('A/B/C:out', 'data')].tolist()
    [2, 0, 1]
    """
    n = spec.n_trains
    tids = spec.train_ids
    nonzero = tids[tids != 0]
    origin = spec.timestamp_origin
    if origin is None:
        origin = int(nonzero.min()) if len(nonzero) else 0
    version = spec.format_version

    if version == "0.5":
        flag = None
        validity = guess_validity_v05(tids)
        timestamps = np.zeros(n, dtype=np.uint64)
    else:
        if spec.raw_flag is not None:
            flag = np.asarray(spec.raw_flag, dtype=np.int32)
        elif spec.flag is not None:
            flag = flag_values(spec.flag, version)
        else:
            flag = flag_values(np.ones(n, dtype=bool), version)
        validity = validity_from_flag(flag, version) & (tids != 0)
        if spec.timestamps is True:
            timestamps = train_timestamps(tids, origin)
        elif spec.timestamps is False:
            timestamps = np.zeros(n, dtype=np.uint64)
        else:
            timestamps = np.asarray(spec.timestamps, dtype=np.uint64)

    control, instrument, reduction, errata = [], [], [], []
    legacy: dict[str, str] = {}
    sources: dict[str, Any] = {}
    counts: dict[tuple[str, str], np.ndarray] = {}
    for src in spec.sources:
        sources[src.name] = src
        if isinstance(src, ControlSource):
            control.append(src.name)
        elif src.section == "INSTRUMENT":
            instrument.append(src.name)
            for leg in src.legacy_names:
                instrument.append(leg)
                legacy[leg] = src.name
        elif src.section == "REDUCTION":
            reduction.append(src.name)
        else:
            errata.append(src.name)
        for g in src.index_groups:
            counts[(src.name, g)] = _frozen_array(src.counts_for(g, n))

    return FileManifest(
        path=path,
        filename=spec.filename,
        aggregator=spec.aggregator,
        category=spec.category,
        run=spec.run,
        proposal=spec.proposal,
        sequence=spec.sequence,
        format_version=version,
        train_ids=_frozen_array(tids),
        n_padding=(spec.pad_trainids_to or n) - n,
        flag=None if flag is None else _frozen_array(flag),
        validity=_frozen_array(validity),
        timestamps=_frozen_array(timestamps),
        timestamp_origin=origin,
        control_sources=tuple(sorted(control)),
        instrument_sources=tuple(sorted(instrument)),
        reduction_sources=tuple(sorted(reduction)),
        errata_sources=tuple(sorted(errata)),
        legacy_sources=legacy,
        sources=sources,
        counts=counts,
        unlisted_index=tuple(spec.unlisted_index),
        old_index=spec.old_index,
    )


@attrs.frozen(eq=True, hash=False)
class RunManifest:
    """What a written run folder contains.

    Attributes
    ----------
    directory : str or None
    files : tuple of FileManifest
        In writing order.
    train_ids : ndarray of uint64
        Sorted union of the non-zero train IDs of all files.
    valid_train_ids : ndarray of uint64
        Sorted union of the train IDs valid in at least one file that has them
        (what a reader keeps when excluding suspect trains).
    timestamps : ndarray of uint64
        Per ``train_ids`` entry: ``INDEX/timestamp`` from a file holding it.
    control_sources, instrument_sources, reduction_sources, errata_sources
        Sorted union over files (instrument sources include legacy names).
    legacy_sources : dict
        Legacy name -> canonical name.
    sources : dict
        Canonical name -> source record (the first file's slice of it).
    counts : dict
        ``(source, group) -> uint64 counts per train in train_ids`` for
        control and instrument sources (0 where a source has no entry).
    aux_counts : dict
        ``(aggregator, source, group) -> counts per train`` for REDUCTION and
        ERRATA sources, kept per aggregator because readers name them
        ``<AGG>@<source>`` when several aggregators hold one.
    aux_aggregators : dict
        Auxiliary source name -> sorted tuple of aggregators holding it.
    """

    directory: str | None
    files: tuple[FileManifest, ...]
    train_ids: np.ndarray = attrs.field(eq=_ARR_EQ)
    valid_train_ids: np.ndarray = attrs.field(eq=_ARR_EQ)
    timestamps: np.ndarray = attrs.field(eq=_ARR_EQ)
    timestamp_origin: int
    control_sources: tuple[str, ...]
    instrument_sources: tuple[str, ...]
    reduction_sources: tuple[str, ...]
    errata_sources: tuple[str, ...]
    legacy_sources: Mapping[str, str]
    sources: Mapping[str, Any]
    counts: Mapping[tuple[str, str], np.ndarray] = attrs.field(eq=_DICT_ARR_EQ)
    aux_counts: Mapping[tuple[str, str, str], np.ndarray] = attrs.field(eq=_DICT_ARR_EQ)
    aux_aggregators: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_files(cls, files, directory: str | None = None) -> RunManifest:
        """Combine file manifests (pure)."""
        files = tuple(files)
        all_t = [f.train_ids[f.train_ids != 0] for f in files]
        tids = np.unique(np.concatenate(all_t)) if all_t else np.zeros(0, np.uint64)
        tids = tids.astype(np.uint64)
        valid_t = [f.valid_train_ids for f in files]
        vtids = np.unique(np.concatenate(valid_t)).astype(np.uint64) if valid_t else tids[:0]
        timestamps = np.zeros(len(tids), dtype=np.uint64)
        counts: dict[tuple[str, str], np.ndarray] = {}
        aux_counts: dict[tuple[str, str, str], np.ndarray] = {}
        control, instrument, reduction, errata = set(), set(), set(), set()
        legacy: dict[str, str] = {}
        sources: dict[str, Any] = {}
        aux_aggs: dict[str, set[str]] = {}
        # Later files do not overwrite timestamps of earlier ones: a reader
        # takes the timestamp from the first file holding the train.
        filled = np.zeros(len(tids), dtype=bool)
        for f in files:
            nz = f.train_ids != 0
            pos = np.searchsorted(tids, f.train_ids[nz])
            new = ~filled[pos]
            timestamps[pos[new]] = f.timestamps[nz][new]
            filled[pos] = True
            control.update(f.control_sources)
            instrument.update(f.instrument_sources)
            reduction.update(f.reduction_sources)
            errata.update(f.errata_sources)
            legacy.update(f.legacy_sources)
            for name, src in f.sources.items():
                sources.setdefault(name, src)
                if src.section in ("REDUCTION", "ERRATA"):
                    aux_aggs.setdefault(name, set()).add(f.aggregator)
            for (name, group), c in f.counts.items():
                aux = f.sources[name].section in ("REDUCTION", "ERRATA")
                k = (f.aggregator, name, group) if aux else (name, group)
                target = aux_counts if aux else counts
                arr = target.setdefault(k, np.zeros(len(tids), dtype=np.uint64))
                np.add.at(arr, pos, c[nz])
        for d in (counts, aux_counts):
            for arr in d.values():
                arr.flags.writeable = False
        origins = [f.timestamp_origin for f in files if len(f.train_ids)]
        return cls(
            directory=None if directory is None else str(directory),
            files=files,
            train_ids=_frozen_array(tids),
            valid_train_ids=_frozen_array(vtids),
            timestamps=_frozen_array(timestamps),
            timestamp_origin=min(origins) if origins else 0,
            control_sources=tuple(sorted(control)),
            instrument_sources=tuple(sorted(instrument)),
            reduction_sources=tuple(sorted(reduction)),
            errata_sources=tuple(sorted(errata)),
            legacy_sources=legacy,
            sources=sources,
            counts=counts,
            aux_counts=aux_counts,
            aux_aggregators={k: tuple(sorted(v)) for k, v in aux_aggs.items()},
        )

    @property
    def all_sources(self) -> tuple[str, ...]:
        """Control + instrument source names (instrument incl. legacy names)."""
        return tuple(sorted(set(self.control_sources) | set(self.instrument_sources)))

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(f.path for f in self.files)

    def canonical(self, source: str) -> str:
        return self.legacy_sources.get(source, source)

    def files_for(self, source: str) -> tuple[FileManifest, ...]:
        """Files whose source lists contain ``source``."""
        src = self.canonical(source)
        return tuple(f for f in self.files if src in f.sources)

    def counts_for(self, source: str, group: str = "", train_ids=None) -> np.ndarray:
        """Entries per train of ``(source, group)``; legacy names accepted.

        ``train_ids`` (default: all run trains) must be a subset of the run's.
        """
        c = self.counts[(self.canonical(source), group)]
        if train_ids is None:
            return c
        pos = np.searchsorted(self.train_ids, np.asarray(train_ids, dtype=np.uint64))
        return c[pos]

    def key_names(self, source: str) -> frozenset[str]:
        return self.sources[self.canonical(source)].key_names()

    def expected(self, source: str, key: str, train_ids=None) -> np.ndarray:
        """Data a reader must return for ``key`` over ``train_ids`` (sorted).

        Control ``.timestamp`` keys follow :func:`control_timestamps` with the
        run's timestamp origin (exact for files with increasing train IDs).

        Examples
        --------
        >>> import tempfile
        >>> from xfeldata.testing import make_demo_run
        >>> m = make_demo_run(tempfile.mkdtemp())
        >>> m.expected('SA1_XTD2_XGM/DOOCS/MAIN', 'beamPosition.ixPos').shape
        (100,)
        """
        src = self.sources[self.canonical(source)]
        tids = self.train_ids if train_ids is None else np.asarray(train_ids, dtype=np.uint64)
        if isinstance(src, ControlSource):
            if src.run_only:
                raise KeyError(f"{src.name} is RUN-only: no CONTROL data")
            name, spec = _control_key_spec(src, key)
            count = self.counts_for(src.name, "", tids)
            rows = tids[count > 0]
            if spec is None:
                return control_timestamps(rows, self.timestamp_origin)
            return expected_values(src.name, name, spec, rows)
        if src.section != "INSTRUMENT":
            raise KeyError("use FileManifest.expected for auxiliary sources")
        spec = src.all_keys()[key]
        group = key.split(".", 1)[0]
        other = None
        if isinstance(spec.fill, str) and spec.fill.startswith("count:"):
            other = self.counts_for(src.name, spec.fill[6:], tids)
        counts = self.counts_for(src.name, group, tids)
        return expected_values(src.name, key, spec, tids, counts, other)


def run_value(source: ControlSource, prop: str):
    """The value written at ``RUN/<source>/<prop>/value[0]``."""
    prop = prop.removesuffix(".value")
    if prop == "classId" and source.device_class is not None and prop not in source.run_keys:
        return source.device_class
    if prop in source.run_keys:
        return source.run_keys[prop]
    spec = source.keys[prop]
    # RUN values follow the pattern rule with train ID 0 (distinct from any
    # CONTROL row, so reading the wrong section is caught).
    return expected_values(source.name, prop + ".value", spec, [0])[0]

