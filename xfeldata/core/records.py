"""Frozen records describing EuXFEL files, in tiers.

The index of a run is built from per-file summaries, each a pure function of
the file's bytes (identified by path, size and mtime). Reading a whole file's
summary is slow on a cluster filesystem, so it comes in tiers, each read the
first time something asks for it (DESIGN.md decision 1):

=========  ========================  ==========================================
tier       record                    holds
=========  ========================  ==========================================
0 (open)   :class:`FileIndex`        train IDs, validity, source names, legacy
                                     names: exactly what opening a run and the
                                     conflict check need (and what EXtra-data's
                                     run files map caches)
1 (meta)   :class:`FileMeta`         format version, run metadata, timestamps,
                                     auxiliary sources, RUN source names
1 (index)  :class:`SourceFileIndex`  INDEX first/count of one source
2 (keys)   :class:`SourceKeys`       key names of one source
2 (key)    :class:`KeyInfo`          one key: dtype, entry shape, length,
                                     chunks, filters, units
=========  ========================  ==========================================

Records never hold open files and never touch the disk; they pickle small.
Numpy arrays inside records are read-only. Equality and hashing of records with
arrays go through a digest of the array bytes computed once at construction
(DESIGN.md decision 4).
"""
from __future__ import annotations

import hashlib
from typing import Mapping

import attrs
import numpy as np

__all__ = [
    'FileIndex', 'FileMeta', 'SourceFileIndex', 'KeyInfo', 'SourceKeys',
    'readonly', 'digest_of',
]


def readonly(arr, dtype=None) -> np.ndarray:
    """Return ``arr`` as a read-only numpy array (copying only if needed).

    >>> a = readonly([1, 2, 3], np.uint64)
    >>> a.flags.writeable
    False
    """
    a = np.asarray(arr, dtype=dtype)
    if a.flags.writeable:
        if a.base is not None or not a.flags.owndata:
            a = a.copy()
        a.flags.writeable = False
    return a


def digest_of(*parts) -> str:
    """A short stable digest of arrays, strings and numbers (for eq/hash)."""
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(str(p.dtype).encode())
            h.update(str(p.shape).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(repr(p).encode())
        h.update(b'\x00')
    return h.hexdigest()


def _frozen_pairs(mapping) -> tuple:
    if isinstance(mapping, tuple):
        return mapping
    return tuple(sorted(dict(mapping).items()))


# -- Tier 0 -------------------------------------------------------------------

@attrs.frozen(eq=False)
class FileIndex:
    """Tier 0 of a file: what opening a run needs.

    Build with :meth:`build`; ``train_ids`` are the non-zero entries of
    ``INDEX/trainId`` in file order (not necessarily sorted), ``valid`` the
    validity flag per train after applying the format's flag semantics.
    """
    path: str
    size: int
    mtime: float
    train_ids: np.ndarray = attrs.field(repr=lambda a: f"<{len(a)} trains>")
    valid: np.ndarray = attrs.field(repr=False)
    control_sources: frozenset
    instrument_sources: frozenset
    #: sorted (legacy name, canonical name) pairs
    legacy_pairs: tuple = ()
    digest: str = attrs.field(default='', repr=False)

    @classmethod
    def build(cls, path, size, mtime, train_ids, valid, control_sources,
              instrument_sources, legacy_sources=()) -> 'FileIndex':
        tids = readonly(train_ids, np.uint64)
        valid = readonly(valid, np.bool_)
        if valid.shape != tids.shape:
            raise ValueError("validity flags must match train IDs")
        ctrl = frozenset(control_sources)
        inst = frozenset(instrument_sources)
        legacy = _frozen_pairs(legacy_sources)
        dg = digest_of(str(path), int(size), float(mtime), tids, valid,
                       tuple(sorted(ctrl)), tuple(sorted(inst)), legacy)
        return cls(str(path), int(size), float(mtime), tids, valid, ctrl, inst,
                   legacy, dg)

    @classmethod
    def _from_fields(cls, path, size, mtime, train_ids, valid, control_sources,
                     instrument_sources, legacy_pairs, digest) -> 'FileIndex':
        """A record from fields already in final form (types, read-only arrays, digest).

        For decoders of trusted caches only: opening a cached run makes one
        record per file, and this is twice as fast as attrs' ``__init__``.
        """
        self = _object_new(cls)
        _SET_PATH(self, path)
        _SET_SIZE(self, size)
        _SET_MTIME(self, mtime)
        _SET_TRAIN_IDS(self, train_ids)
        _SET_VALID(self, valid)
        _SET_CONTROL(self, control_sources)
        _SET_INSTRUMENT(self, instrument_sources)
        _SET_LEGACY(self, legacy_pairs)
        _SET_DIGEST(self, digest)
        return self

    def __eq__(self, other):
        if not isinstance(other, FileIndex):
            return NotImplemented
        return self.digest == other.digest

    def __hash__(self):
        return hash(self.digest)

    @property
    def legacy_sources(self) -> dict:
        """Legacy source name -> canonical name."""
        return dict(self.legacy_pairs)

    @property
    def all_sources(self) -> frozenset:
        return self.control_sources | self.instrument_sources

    @property
    def valid_train_ids(self) -> np.ndarray:
        return self.train_ids[self.valid]

    @property
    def suspect_train_indices(self) -> np.ndarray:
        return np.nonzero(~self.valid)[0]

    @property
    def key(self) -> tuple:
        """What identifies the file's bytes for caches: (path, size, mtime)."""
        return (self.path, self.size, self.mtime)

    def usable_train_ids(self, inc_suspect_trains=True) -> np.ndarray:
        return self.train_ids if inc_suspect_trains else self.valid_train_ids


# The slot descriptors of FileIndex, for FileIndex._from_fields (attrs' frozen
# classes are set through object.__setattr__; the descriptors do the same).
_object_new = object.__new__
(_SET_PATH, _SET_SIZE, _SET_MTIME, _SET_TRAIN_IDS, _SET_VALID, _SET_CONTROL,
 _SET_INSTRUMENT, _SET_LEGACY, _SET_DIGEST) = (
    getattr(FileIndex, a.name).__set__ for a in attrs.fields(FileIndex))


# -- Tier 1 -------------------------------------------------------------------

@attrs.frozen(eq=False)
class FileMeta:
    """Tier 1 of a file: metadata that opening does not need."""
    format_version: str
    #: run metadata: sorted (name, value) pairs of the METADATA scalar datasets
    metadata_pairs: tuple
    #: INDEX/timestamp (ns since the epoch, 0 = unknown) aligned to train_ids, or None
    timestamps: np.ndarray | None = attrs.field(repr=False)
    reduction_sources: frozenset = frozenset()
    errata_sources: frozenset = frozenset()
    #: sources with a RUN group
    run_sources: frozenset = frozenset()
    is_voview: bool = False
    digest: str = attrs.field(default='', repr=False)

    @classmethod
    def build(cls, format_version, metadata, timestamps=None, reduction_sources=(),
              errata_sources=(), run_sources=(), is_voview=False) -> 'FileMeta':
        ts = None if timestamps is None else readonly(timestamps, np.uint64)
        md = _frozen_pairs(metadata)
        red, err, runs = frozenset(reduction_sources), frozenset(errata_sources), frozenset(run_sources)
        dg = digest_of(format_version, md, ts if ts is not None else None,
                       tuple(sorted(red)), tuple(sorted(err)), tuple(sorted(runs)), is_voview)
        return cls(str(format_version), md, ts, red, err, runs, bool(is_voview), dg)

    def __eq__(self, other):
        if not isinstance(other, FileMeta):
            return NotImplemented
        return self.digest == other.digest

    def __hash__(self):
        return hash(self.digest)

    @property
    def metadata(self) -> dict:
        return dict(self.metadata_pairs)


@attrs.frozen(eq=False)
class SourceFileIndex:
    """INDEX of one source in one file: first/count per index group.

    Arrays are truncated to the file's number of (non-zero) train IDs. Control
    sources have the single group ``''``.
    """
    source: str
    section: str
    groups: tuple
    firsts: tuple = attrs.field(repr=False)
    counts: tuple = attrs.field(repr=False)
    digest: str = attrs.field(default='', repr=False)

    @classmethod
    def build(cls, source, section, groups: Mapping[str, tuple]) -> 'SourceFileIndex':
        names = tuple(sorted(groups))
        firsts = tuple(readonly(groups[g][0], np.uint64) for g in names)
        counts = tuple(readonly(groups[g][1], np.uint64) for g in names)
        dg = digest_of(source, section, names, *firsts, *counts)
        return cls(source, section, names, firsts, counts, dg)

    def __eq__(self, other):
        if not isinstance(other, SourceFileIndex):
            return NotImplemented
        return self.digest == other.digest

    def __hash__(self):
        return hash(self.digest)

    def group(self, name) -> tuple:
        """(firsts, counts) of one index group."""
        try:
            i = self.groups.index(name)
        except ValueError:
            raise KeyError(name) from None
        return self.firsts[i], self.counts[i]

    def max_counts(self) -> np.ndarray:
        """Per-train maximum count over the index groups."""
        if not self.counts:
            return np.zeros(0, np.uint64)
        return np.max(np.stack(self.counts), axis=0)


# -- Tier 2 -------------------------------------------------------------------

@attrs.frozen
class KeyInfo:
    """What is known about one dataset without reading its data."""
    key: str
    dtype: np.dtype
    entry_shape: tuple
    #: length of axis 0 of the dataset (may exceed the indexed entries: padding)
    length: int
    chunks: tuple | None = None
    #: HDF5 filter pipeline as (filter id, options) pairs; () = no filters
    filters: tuple = ()
    is_virtual: bool = False
    #: unit attributes: unitSymbol, unitName, metricPrefixSymbol, metricPrefixName
    units: tuple = ()

    @property
    def index_group(self) -> str:
        return self.key.partition('.')[0]

    @property
    def units_map(self) -> dict:
        return dict(self.units)


@attrs.frozen
class SourceKeys:
    """The key names of one source in one file (tier 2a: names only).

    Listing names is cheap (one ``H5Ovisit``); what each key is (dtype, shape,
    filters, units) is tier 2b, a :class:`KeyInfo` loaded per key on demand.
    """
    source: str
    section: str
    keys: frozenset  # frozenset[str]
