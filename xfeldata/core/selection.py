"""Resolved selections and the pure functions that compose them.

A :class:`Selection` is what a DataCollection holds: the selected train IDs
(sorted, read-only uint64) and, per selected source, the selected keys
(a frozenset, or None meaning "all keys of the source"). Functions here take a
selection and a *catalogue* (which sources exist, their sections, and a way
to list a source's keys) and return a new selection; they never touch files.
"""
from __future__ import annotations

import fnmatch
import re
from itertools import repeat
from typing import Callable, Iterable, Mapping

import attrs
import numpy as np

from .records import digest_of, readonly

__all__ = ['Selection', 'Catalogue', 'normalise_key', 'select', 'deselect',
           'selection_pairs', 'union', 'files_in_use', 'require_trains', 'strip_value']

ALL = None  # marker: every key of the source


@attrs.frozen(eq=False)
class Selection:
    """Selected train IDs, source -> keys (None = all keys), and file restrictions.

    ``files`` records, for sources whose data must come from a subset of the
    files that hold them, that subset (sorted paths). It is set when
    selections with different trains are combined (:func:`union`): each
    source then keeps only the files its own train selection used, so a
    source selected for the first trains of a run shows no data for the
    last trains another part contributed. Sources not listed use every file
    holding them that has a selected train.
    """
    train_ids: np.ndarray = attrs.field(repr=lambda a: f"<{len(a)} trains>")
    sources: tuple = attrs.field(repr=lambda s: f"<{len(s)} sources>")
    files: tuple = attrs.field(default=(), repr=False)
    #: digests are computed on first use (equality, hashing), not when a
    #: selection is made: opening a run and selecting trains never need them.
    _digest: str = attrs.field(default=None, repr=False)
    #: digest of sources and files only, reused when only the trains change
    _shape_digest: str = attrs.field(default=None, repr=False)
    #: the selected source names, computed once (asked for on every lookup)
    _names: frozenset = attrs.field(default=None, repr=False)

    @classmethod
    def build(cls, train_ids, sources: Mapping, files: Mapping = None) -> 'Selection':
        tids = readonly(train_ids, np.uint64)
        items = tuple(sorted(
            (s, None if k is None else frozenset(k)) for s, k in sources.items()))
        restr = tuple(sorted((s, tuple(sorted(p))) for s, p in (files or {}).items()
                             if s in sources))
        return cls(tids, items, restr, None, None, frozenset(s for s, _ in items))

    @classmethod
    def whole(cls, train_ids, names) -> 'Selection':
        """Every key of the sources ``names``, for ``train_ids``: what opening selects.

        Equal to ``build(train_ids, {name: None for name in names})``, made
        without per-source tuples being sorted (opening a run makes one).
        """
        names = frozenset(names)
        return cls(readonly(train_ids, np.uint64), tuple(zip(sorted(names), repeat(None))),
                   (), None, None, names)

    @property
    def digest(self) -> str:
        """A digest of trains, sources, keys and file restrictions (for eq/hash)."""
        if self._digest is None:
            if self._shape_digest is None:
                shape = digest_of(tuple((s, None if k is None else tuple(sorted(k)))
                                        for s, k in self.sources), self.files)
                # Memo on a frozen record: set once, never changes the value.
                object.__setattr__(self, '_shape_digest', shape)
            object.__setattr__(self, '_digest', digest_of(self.train_ids, self._shape_digest))
        return self._digest

    def __eq__(self, other):
        if not isinstance(other, Selection):
            return NotImplemented
        return self.digest == other.digest

    def __hash__(self):
        return hash(self.digest)

    @property
    def source_map(self) -> dict:
        return dict(self.sources)

    def keys_of(self, source):
        """The selected keys of one source (None = all); KeyError if not selected."""
        for s, k in self.sources if len(self.sources) < 8 else ():
            if s == source:
                return k
        if len(self.sources) < 8:
            raise KeyError(source)
        i = _bisect_sources(self.sources, source)
        if i < len(self.sources) and self.sources[i][0] == source:
            return self.sources[i][1]
        raise KeyError(source)

    @property
    def file_map(self) -> dict:
        return dict(self.files)

    @property
    def source_names(self) -> frozenset:
        if self._names is None:  # made by the constructor, not build()
            return frozenset(s for s, _ in self.sources)
        return self._names

    def with_trains(self, train_ids) -> 'Selection':
        tids = readonly(train_ids, np.uint64)
        return Selection(tids, self.sources, self.files, None, self._shape_digest,
                         self._names)

    def with_sources(self, sources: Mapping) -> 'Selection':
        return Selection.build(self.train_ids, sources, self.file_map)


def _bisect_sources(items, source):
    lo, hi = 0, len(items)
    while lo < hi:  # items are sorted by source name
        mid = (lo + hi) // 2
        if items[mid][0] < source:
            lo = mid + 1
        else:
            hi = mid
    return lo


@attrs.frozen
class Catalogue:
    """What selection functions may know about the data.

    ``sections`` maps every available source to its section; ``list_keys`` is
    a callable giving all keys of a source (it may load a tier of the index:
    it is only called when a key pattern needs it).
    """
    sections: Mapping
    list_keys: Callable


def normalise_key(section: str, key: str) -> str:
    """Control keys may be given without ``.value``.

    >>> normalise_key('CONTROL', 'beamPosition.ixPos')
    'beamPosition.ixPos.value'
    >>> normalise_key('CONTROL', 'beamPosition.ixPos.timestamp')
    'beamPosition.ixPos.timestamp'
    >>> normalise_key('INSTRUMENT', 'data.x')
    'data.x'
    """
    if section == 'CONTROL' and not (key.endswith('.value') or key.endswith('.timestamp')):
        return key + '.value'
    return key


def strip_value(key: str, section: str) -> str:
    """A key as output names show it: control keys without their ``.value`` suffix.

    Examples
    --------
    >>> strip_value('beamPosition.ixPos.value', 'CONTROL')
    'beamPosition.ixPos'
    >>> strip_value('beamPosition.ixPos.timestamp', 'CONTROL')
    'beamPosition.ixPos.timestamp'
    >>> strip_value('data.image.value', 'INSTRUMENT')
    'data.image.value'
    """
    if section == 'CONTROL' and key.endswith('.value'):
        return key[:-6]
    return key


def _control_glob(section, key_glob):
    if section == 'CONTROL' and not (key_glob.endswith('.value') or key_glob.endswith('*')):
        return key_glob + '.value'
    return key_glob


def _glob_re(pattern) -> re.Pattern:
    # fnmatch semantics, case-sensitive, full match.
    return re.compile(fnmatch.translate(pattern))


def selection_pairs(seln, key_glob='*') -> list:
    """Normalise the glob forms of select/deselect into (source glob, key glob) pairs.

    >>> selection_pairs('*XGM*', 'data.*')
    [('*XGM*', 'data.*')]
    >>> selection_pairs(['A*', ('B', 'k')])
    [('A*', '*'), ('B', 'k')]
    """
    if isinstance(seln, str):
        return [(seln, key_glob)]
    pairs = []
    for item in seln:
        if isinstance(item, str):
            pairs.append((item, '*'))
        elif isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, str) for x in item):
            pairs.append(item)
        else:
            raise TypeError(f"Unknown selection item {item!r}: expected a source glob "
                            "or a (source glob, key glob) pair")
    return pairs


def _current_keys(sel_keys, source, cat: Catalogue) -> frozenset:
    return cat.list_keys(source) if sel_keys is None else sel_keys


def _resolve_pairs(current: Mapping, cat: Catalogue, pairs) -> dict:
    """source -> keys (None = current selection unchanged) matched by the pairs."""
    out = {}
    for src_glob, key_glob in pairs:
        src_re = _glob_re(src_glob)
        matched_any = False
        for src in sorted(current):
            if not src_re.fullmatch(src):
                continue
            if key_glob == '*':
                matched_any = True
                prev = out.get(src, frozenset())
                cur = current[src]
                out[src] = None if (cur is None or prev is None) else prev | cur
                continue
            kg = _control_glob(cat.sections[src], key_glob)
            key_re = _glob_re(kg)
            keys = frozenset(k for k in _current_keys(current[src], src, cat)
                             if key_re.fullmatch(k))
            if keys:
                matched_any = True
                prev = out.get(src, frozenset())
                out[src] = None if prev is None else prev | keys
        if not matched_any:
            raise ValueError(f"No matches for pattern {(src_glob, key_glob)}")
    return out


def _resolve_dict(current: Mapping, cat: Catalogue, d: Mapping) -> dict:
    from ..exceptions import PropertyNameError, SourceNameError
    out = {}
    for src, keys in d.items():
        if src not in current:
            raise SourceNameError(src, candidates=current)
        if keys is None or (isinstance(keys, (set, frozenset, dict)) and not keys):
            out[src] = current[src]
            continue
        if not isinstance(keys, (set, frozenset)):
            raise TypeError(f"Keys for {src!r} must be a set or None, not "
                            f"{type(keys).__name__}")
        available = _current_keys(current[src], src, cat)
        norm = set()
        for k in keys:
            nk = normalise_key(cat.sections[src], k)
            if nk not in available:
                raise PropertyNameError(k, src, candidates=available)
            norm.add(nk)
        out[src] = frozenset(norm)
    return out


def select(sel: Selection, cat: Catalogue, seln, key_glob='*') -> Selection:
    """Keep only the sources / keys matched by ``seln`` (glob, pairs or dict).

    Trains are unchanged; ``require_all`` / ``require_any`` are applied by the
    caller, which can count data per train.
    """
    current = sel.source_map
    if isinstance(seln, Mapping):
        new = _resolve_dict(current, cat, seln)
    else:
        new = _resolve_pairs(current, cat, selection_pairs(seln, key_glob))
    return sel.with_sources(new)


def deselect(sel: Selection, cat: Catalogue, seln, key_glob='*') -> Selection:
    """Remove the sources / keys matched by ``seln``.

    Sources deselected with all keys, or left with no keys, disappear.
    """
    current = sel.source_map
    if isinstance(seln, Mapping):
        remove = _resolve_dict(current, cat, seln)
        remove = {s: (None if (seln[s] is None or not seln[s]) else k)
                  for s, k in remove.items()}
    else:
        remove = {}
        for src_glob, kg in selection_pairs(seln, key_glob):
            src_re = _glob_re(src_glob)
            matched_any = False
            for src in current:
                if not src_re.fullmatch(src):
                    continue
                if kg == '*':
                    remove[src] = None
                    matched_any = True
                    continue
                key_re = _glob_re(_control_glob(cat.sections[src], kg))
                keys = frozenset(k for k in _current_keys(current[src], src, cat)
                                 if key_re.fullmatch(k))
                if not keys:
                    continue
                matched_any = True
                if src in remove and remove[src] is None:
                    continue
                remove[src] = remove.get(src, frozenset()) | keys
            if not matched_any:
                raise ValueError(f"No matches for pattern {(src_glob, kg)}")
    new = {}
    for src, keys in current.items():
        rm = remove.get(src, frozenset())
        if rm is None:
            continue
        if not rm:  # nothing of this source matched: it stays as it was
            new[src] = keys
            continue
        left = _current_keys(keys, src, cat) - rm
        if left:
            new[src] = left
    return sel.with_sources(new)


def files_in_use(files, restriction, sel_train_ids, inc_suspect_trains=True,
                 fallback=True, all_trains=False) -> tuple:
    """The files a source's data come from under a selection.

    ``files`` are the FileIndex records holding the source (run order);
    ``restriction`` is the selection's recorded subset of paths for it (or
    None). Of those, the files holding at least one selected train (valid,
    unless suspect trains are included) are used; if none does, the first
    one is kept (unless ``fallback`` is False), so keys, dtypes and entry
    shapes still answer for an empty selection. ``all_trains=True`` says the
    selection holds every train of the run (the common ``run[source]``): then
    each file with a usable train is used, without a membership test.
    """
    if restriction is not None:
        allowed = set(restriction)
        files = tuple(f for f in files if f.path in allowed)
    if all_trains:
        used = tuple(f for f in files if (len(f.train_ids) if inc_suspect_trains
                                          else f.valid.any()))
        return used if (used or not fallback or not files) else (files[0],)
    # One membership test over all the files' trains (not one per file):
    # this runs on every run[source] lookup.
    parts = [f.train_ids if inc_suspect_trains else f.train_ids[f.valid] for f in files]
    lengths = np.array([len(p) for p in parts], dtype=np.int64)
    used = []
    if lengths.sum():
        hit = np.isin(np.concatenate(parts), sel_train_ids)
        cum = np.concatenate([[0], np.cumsum(hit)])
        ends = np.cumsum(lengths)
        n_hits = cum[ends] - cum[ends - lengths]
        used = [f for f, n in zip(files, n_hits) if n]
    if not used and files and fallback:
        used = [files[0]]
    return tuple(used)


def union(selections: Iterable[Selection], used_files: Iterable[Mapping] = None) -> Selection:
    """Union of sources (None keys win) and of train IDs.

    ``used_files`` gives, per selection, source -> paths its data came from;
    each source of the result is restricted to the union of those (the face
    drops a restriction where it equals what the source would read anyway).
    """
    sels = list(selections)
    sources = {}
    for s in sels:
        for src, keys in s.sources:
            if src in sources:
                prev = sources[src]
                sources[src] = None if (prev is None or keys is None) else prev | keys
            else:
                sources[src] = keys
    arrays = [s.train_ids for s in sels if len(s.train_ids)]
    tids = np.unique(np.concatenate(arrays)) if arrays else np.zeros(0, np.uint64)
    restr = {}
    if used_files is not None:
        for used in used_files:
            for src, paths in used.items():
                restr.setdefault(src, set()).update(paths)
        # An empty set (no part had data of the source) records nothing: the
        # source then reads as if unrestricted, as an empty part would.
        restr = {src: p for src, p in restr.items() if p}
    return Selection.build(tids, sources, restr)


def require_trains(n_trains: int, has_data, require_all: bool = True,
                   warn_drop_trains_frac: float = 1.) -> tuple:
    """Which trains to keep for ``require_all`` / ``require_any``.

    ``has_data`` is a sequence of ``(label, mask)``: one boolean mask per
    selected (source, index group), aligned to the selected trains. Returns
    ``(keep_mask, messages)``; a message is produced for every entry that,
    under ``require_all``, drops at least ``warn_drop_trains_frac`` of the
    trains still kept before it (so the default 1 warns only when it drops
    every remaining train).

    >>> keep, msgs = require_trains(4, [('A', np.array([1, 1, 0, 1], bool)),
    ...                                 ('B', np.array([1, 0, 0, 1], bool))])
    >>> keep.tolist(), msgs
    ([True, False, False, True], [])
    >>> require_trains(4, [('A', np.array([1, 0, 0, 0], bool))], False)[0].tolist()
    [True, False, False, False]
    """
    if require_all:
        keep = np.ones(n_trains, bool)
    else:
        keep = np.zeros(n_trains, bool)
    messages = []
    for label, mask in has_data:
        if require_all:
            before = int(keep.sum())
            keep &= mask
            dropped = before - int(keep.sum())
            if before and dropped and dropped >= warn_drop_trains_frac * before:
                messages.append(f"{dropped}/{before} ({dropped / before:.0%}) of the "
                                f"remaining trains dropped because {label} has no data "
                                "in them")
        else:
            keep |= mask
    return keep, messages
