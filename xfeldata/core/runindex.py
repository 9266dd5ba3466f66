"""The index of a run (or any set of files): a pure function of FileIndexes.

:func:`RunIndex.build` derives, with vectorised numpy only, everything opening
needs: the sorted train IDs, which files hold each source, and the conflict
check (a (source, train) pair found in two places). A run can have 20,000
files and 50,000 trains; nothing here loops over trains in Python, and the
conflict check runs once per *group of files* that hold the same sources (all
sources of one aggregator share its sequence files), not once per source.
"""
from __future__ import annotations

import functools

import attrs
import numpy as np

from .records import FileIndex, readonly

__all__ = ['RunIndex', 'find_conflicts', 'union_train_ids']


def union_train_ids(files, inc_suspect_trains=True) -> np.ndarray:
    """Sorted unique train IDs of ``files`` (valid ones only if not including suspects)."""
    arrays = [f.usable_train_ids(inc_suspect_trains) for f in files]
    arrays = [a for a in arrays if len(a)]
    if not arrays:
        return readonly(np.zeros(0, np.uint64))
    return readonly(np.unique(np.concatenate(arrays)))


def find_conflicts(files, source_files, inc_suspect_trains=True) -> list:
    """(source, train_id, paths) for every source seen twice for one train.

    ``source_files`` maps source -> tuple of indices into ``files``. Sources
    held by the same tuple of files are checked together.
    """
    by_group = {}
    for src, ixs in source_files.items():
        by_group.setdefault(ixs, []).append(src)

    conflicts = []
    for ixs, sources in by_group.items():
        parts = [files[i].usable_train_ids(inc_suspect_trains) for i in ixs]
        owners = [np.full(len(p), i, dtype=np.int64) for i, p in zip(ixs, parts)]
        if not parts:
            continue
        tids = np.concatenate(parts)
        if len(tids) < 2:
            continue
        owner = np.concatenate(owners)
        order = np.argsort(tids, kind='stable')
        st = tids[order]
        dup = np.nonzero(st[1:] == st[:-1])[0]
        if len(dup) == 0:
            continue
        tid = st[dup[0]]
        paths = tuple(sorted({files[i].path for i in owner[order][st == tid]}))
        for src in sorted(sources):
            conflicts.append((src, int(tid), paths))
    conflicts.sort()
    return conflicts


@attrs.define(frozen=True, slots=False, eq=False)
class RunIndex:
    """Files of a collection and the tables derived from them.

    Equality and hashing use the files and the suspect-train policy only; the
    derived tables are memoised on first use (they are pure functions of the
    files, so memoising cannot change a result).
    """
    files: tuple  # tuple[FileIndex]
    inc_suspect_trains: bool = True

    @classmethod
    def build(cls, files, inc_suspect_trains=True, check_conflicts=True) -> 'RunIndex':
        """Build the index, raising SourceConflictError if a source's trains collide."""
        ri = cls(tuple(files), bool(inc_suspect_trains))
        if check_conflicts:
            ri.check_conflicts()
        return ri

    def __eq__(self, other):
        if not isinstance(other, RunIndex):
            return NotImplemented
        return (self.inc_suspect_trains == other.inc_suspect_trains
                and self.files == other.files)

    def __hash__(self):
        return hash((self.files, self.inc_suspect_trains))

    def __getstate__(self):
        # Only the fields travel; memoised tables are rebuilt on demand.
        return {'files': self.files, 'inc_suspect_trains': self.inc_suspect_trains}

    def __setstate__(self, state):
        object.__setattr__(self, 'files', state['files'])
        object.__setattr__(self, 'inc_suspect_trains', state['inc_suspect_trains'])

    # -- derived tables (memoised) ------------------------------------------
    @functools.cached_property
    def train_ids(self) -> np.ndarray:
        """Sorted unique train IDs over all files (per the suspect policy)."""
        return union_train_ids(self.files, self.inc_suspect_trains)

    @functools.cached_property
    def source_files(self) -> dict:
        """source -> tuple of file positions holding it (control and instrument)."""
        out = {}
        for i, f in enumerate(self.files):
            for s in f.control_sources:
                out.setdefault(s, []).append(i)
            for s in f.instrument_sources:
                out.setdefault(s, []).append(i)
        return {s: tuple(v) for s, v in out.items()}

    @functools.cached_property
    def control_sources(self) -> frozenset:
        return frozenset().union(*(f.control_sources for f in self.files))

    @functools.cached_property
    def instrument_sources(self) -> frozenset:
        return frozenset().union(*(f.instrument_sources for f in self.files))

    @functools.cached_property
    def legacy_sources(self) -> dict:
        out = {}
        for f in self.files:
            out.update(f.legacy_pairs)
        return out

    def check_conflicts(self):
        from ..exceptions import source_conflict_error
        # Legacy names are soft links to their canonical source: checking the
        # canonical name covers them.
        legacy = self.legacy_sources
        srcs = {s: ix for s, ix in self.source_files.items() if s not in legacy}
        conflicts = find_conflicts(self.files, srcs, self.inc_suspect_trains)
        if conflicts:
            raise source_conflict_error(conflicts)

    def files_for_source(self, source) -> tuple:
        """FileIndex records holding ``source`` (in collection order)."""
        return tuple(self.files[i] for i in self.source_files.get(source, ()))

    def section_of(self, source) -> str:
        if source in self.control_sources:
            return 'CONTROL'
        if source in self.instrument_sources:
            return 'INSTRUMENT'
        raise KeyError(source)

    def train_table(self, source) -> tuple:
        """Per-source lookup table, sorted by train ID.

        Returns ``(train_ids, file_positions, rows)``: for each train ID with
        data for ``source``, the position in :attr:`files` of the file that
        holds it and the train's row in that file's INDEX.
        """
        return _train_table(self, source)


def _train_table(ri: RunIndex, source):
    ixs = ri.source_files.get(source, ())
    tids, fpos, rows = [], [], []
    for i in ixs:
        f = ri.files[i]
        r = np.arange(len(f.train_ids))
        if not ri.inc_suspect_trains:
            r = r[f.valid]
        tids.append(f.train_ids[r])
        rows.append(r)
        fpos.append(np.full(len(r), i, dtype=np.int64))
    if not tids:
        z = np.zeros(0, np.uint64)
        return z, np.zeros(0, np.int64), np.zeros(0, np.int64)
    t = np.concatenate(tids)
    order = np.argsort(t, kind='stable')
    return (readonly(t[order]), readonly(np.concatenate(fpos)[order]),
            readonly(np.concatenate(rows)[order]))
