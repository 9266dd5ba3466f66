"""The index of a run (or any set of files): a pure function of FileIndexes.

:func:`RunIndex.build` derives everything opening needs: the sorted train
IDs, which files hold each source, and the conflict check (a (source, train)
pair found in two places). A run can have 20,000 files and 50,000 trains, and
opening a cached run must cost little more than listing its files, so:

- nothing loops over trains in Python;
- tables per source are built per group of files with the same source lists
  (all sequence files of an aggregator), not per file;
- train-ID arrays shared by several records (as decoded from the index cache)
  are handled once;
- the conflict check first tries to prove that there is none from each
  array's first and last train IDs (sorted files with disjoint ranges, the
  usual case); only if that fails are the groups checked exactly, and
  :func:`find_conflicts` describes what was found.
"""
from __future__ import annotations

import functools
import itertools

import attrs
import numpy as np

from .records import readonly

__all__ = ['RunIndex', 'RunSummary', 'any_conflict', 'find_conflicts', 'union_train_ids']


class _UsableTrains:
    """The usable train IDs of some files, each distinct array once.

    Records decoded from the index cache share equal arrays (all files of a
    sequence hold the same train IDs), so a run of thousands of files has a
    few hundred distinct arrays: the work below is per distinct array, with a
    fixed number of numpy calls (each costs microseconds, whatever its size)
    and plain Python over one number per file.
    """
    def __init__(self, files, inc_suspect_trains=True):
        usable = [f.train_ids if inc_suspect_trains else f.valid_train_ids for f in files]
        by_id = dict(zip(map(id, usable), usable))
        number = dict(zip(by_id, range(len(by_id))))
        #: per file, the number of its array in ``arrays``
        self.which = list(map(number.__getitem__, map(id, usable)))
        self.arrays = list(by_id.values())
        self.lens = list(map(len, self.arrays))
        self.ends = list(itertools.accumulate(self.lens))
        self.all = (np.concatenate(self.arrays) if self.arrays
                    else np.zeros(0, np.uint64)).astype(np.uint64, copy=False)

    def union(self) -> np.ndarray:
        return readonly(np.unique(self.all))

    def _all_increasing(self) -> bool:
        big = self.all
        if len(big) < 2:
            return True
        drops = np.flatnonzero(big[1:] <= big[:-1]).tolist()   # i: big[i + 1] <= big[i]
        if not drops:
            return True
        # A drop between two arrays (after the last element of one) is allowed.
        return set(drops) <= {e - 1 for e in self.ends}

    def may_repeat(self, position_tuples) -> bool:
        """False if, within each tuple of file positions, no train ID is there twice.

        Proved from first and last train IDs: every array strictly
        increasing, and in each tuple the files' ranges disjoint and in
        order (sequence files are). True means "look closer".
        """
        if not self._all_increasing():
            return True
        tuples = [t for t in position_tuples if len(t) > 1]
        if not tuples or not self.arrays:
            return False
        ends, lens = self.ends, self.lens
        firsts = self.all[[e - n for e, n in zip(ends, lens) if n]].tolist()
        lasts = self.all[[e - 1 for e, n in zip(ends, lens) if n]].tolist()
        rank = list(itertools.accumulate(bool(n) for n in lens))   # 1 + index in firsts
        which = self.which
        for t in tuples:
            prev_last = -1
            for i in t:
                k = which[i]
                if lens[k]:
                    j = rank[k] - 1
                    if firsts[j] <= prev_last:
                        return True
                    prev_last = lasts[j]
        return False


def union_train_ids(files, inc_suspect_trains=True) -> np.ndarray:
    """Sorted unique train IDs of ``files`` (valid ones only if not including suspects)."""
    return _UsableTrains(files, inc_suspect_trains).union()


def any_conflict(files, position_tuples, inc_suspect_trains=True, *, _usable=None) -> bool:
    """Whether :func:`find_conflicts` would find a conflict, decided quickly.

    ``position_tuples``: the tuples of file positions that hold a source.
    Usually every file is sorted and the files of a tuple cover disjoint
    ranges of train IDs, which first/last values prove without sorting; if
    not, each tuple is checked exactly.
    """
    usable = _usable or _UsableTrains(files, inc_suspect_trains)
    if not usable.may_repeat(position_tuples):
        return False
    for ixs in position_tuples:
        arrays = [usable.arrays[usable.which[i]] for i in ixs]
        arrays = [a for a in arrays if len(a)]
        if len(arrays) > 1 or (arrays and len(arrays[0]) > 1):
            st = np.sort(np.concatenate(arrays))
            if (st[1:] == st[:-1]).any():
                return True
    return False


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


@attrs.frozen
class RunSummary:
    """What opening asks of a :class:`RunIndex`, known ahead for a set of files.

    The sorted train IDs (suspect trains included) and the control and
    instrument source names. The index cache keeps one beside its conflict
    verdict, so that a warm open of a run takes them from there instead of
    deriving them from every file (:meth:`RunIndex.build`, ``summary=``).
    """
    train_ids: np.ndarray = attrs.field(eq=attrs.cmp_using(eq=np.array_equal),
                                        repr=lambda a: f"<{len(a)} trains>")
    control_sources: frozenset = attrs.field(repr=lambda s: f"<{len(s)} sources>")
    instrument_sources: frozenset = attrs.field(repr=lambda s: f"<{len(s)} sources>")


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
    def build(cls, files, inc_suspect_trains=True, check_conflicts=True,
              summary: RunSummary | None = None) -> 'RunIndex':
        """Build the index, raising SourceConflictError if a source's trains collide.

        ``summary``: the :meth:`summary` of these same files, known ahead (a
        trusted cache's): its tables are taken instead of derived. It only
        applies with suspect trains included, as it was made.
        """
        ri = cls(tuple(files), bool(inc_suspect_trains))
        if summary is not None and ri.inc_suspect_trains:
            # Seeding memoised values: each equals what the property would compute.
            d = ri.__dict__
            d['train_ids'] = readonly(summary.train_ids, np.uint64)
            d['control_sources'] = summary.control_sources
            d['instrument_sources'] = summary.instrument_sources
        if check_conflicts:
            ri.check_conflicts()
        return ri

    def summary(self) -> RunSummary:
        """Train IDs and source names of these files, suspect trains included."""
        tids = (self.train_ids if self.inc_suspect_trains
                else union_train_ids(self.files, True))
        return RunSummary(tids, self.control_sources, self.instrument_sources)

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
    def _usable(self) -> _UsableTrains:
        return _UsableTrains(self.files, self.inc_suspect_trains)

    @functools.cached_property
    def train_ids(self) -> np.ndarray:
        """Sorted unique train IDs over all files (per the suspect policy)."""
        return self._usable.union()

    @functools.cached_property
    def _source_set_groups(self) -> dict:
        """(control sources, instrument sources) -> tuple of positions of the files with them.

        The files of one aggregator list the same sources, so a run has about
        as many groups as aggregators: tables per source are built per group,
        not per file.
        """
        groups = {}
        for i, f in enumerate(self.files):
            groups.setdefault((f.control_sources, f.instrument_sources), []).append(i)
        return {k: tuple(v) for k, v in groups.items()}

    @functools.cached_property
    def source_files(self) -> dict:
        """source -> tuple of file positions holding it (control and instrument)."""
        out = {}
        for (ctrl, inst), ixs in self._source_set_groups.items():
            for names in (ctrl, inst):
                for s in names:
                    known = out.get(s)
                    out[s] = ixs if known is None else tuple(sorted(known + ixs))
        return out

    def _position_tuples(self, legacy) -> list:
        """Tuples of file positions covering those of every non-legacy source.

        Each group's tuple, plus the tuple of every source found in several
        groups: a source's tuple contains the tuple of each group holding it,
        so a train ID found twice in one of these is found twice for a source.
        """
        groups = self._source_set_groups
        tuples = [ixs for (c, i), ixs in groups.items()
                  if (c or i) and not (legacy and (c | i) <= legacy.keys())]
        if sum(len(c) + len(i) for c, i in groups) > len(self.source_files):
            # Some source is in several groups (or in both sections).
            group_tuples = {id(t) for t in groups.values()}
            tuples += [t for s, t in self.source_files.items()
                       if id(t) not in group_tuples and s not in legacy]
        return tuples

    @functools.cached_property
    def control_sources(self) -> frozenset:
        return frozenset().union(*{c for c, _ in self._source_set_groups})

    @functools.cached_property
    def instrument_sources(self) -> frozenset:
        return frozenset().union(*{i for _, i in self._source_set_groups})

    @functools.cached_property
    def legacy_sources(self) -> dict:
        out = {}
        for f in self.files:
            if f.legacy_pairs:
                out.update(f.legacy_pairs)
        return out

    def check_conflicts(self, source_files=None):
        """Raise SourceConflictError if a source has a train in two places.

        ``source_files``: check only these sources, each in the files at
        these positions (``{source: tuple of positions}``): a collection
        reads only its selected sources, each from the files it uses.
        Default: every source in every file holding it.
        """
        from ..exceptions import source_conflict_error
        # Legacy names are soft links to their canonical source: checking the
        # canonical name covers them.
        legacy = self.legacy_sources
        if source_files is None:
            tuples = self._position_tuples(legacy)
            srcs = self.source_files
        else:
            srcs = source_files
            tuples = list({ix for s, ix in srcs.items() if s not in legacy})
        # Nearly every run has no conflict, which any_conflict proves cheaply;
        # find_conflicts then describes the ones there are.
        if not any_conflict(self.files, tuples, self.inc_suspect_trains, _usable=self._usable):
            return
        srcs = {s: ix for s, ix in srcs.items() if s not in legacy}
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
