"""SourceData: one source over the selected trains, with a key selection.

A frozen record: the source's name and section, the FileIndex records of the
files that hold it, the selected keys (None = all) and train IDs. Loading a
tier of the index (key names, INDEX arrays) happens in methods, through the
memoised loaders of :mod:`xfeldata._tiers`.
"""
from __future__ import annotations

import fnmatch
import re

import attrs
import numpy as np

from ._sections import SectionTests
from . import _tiers
from .core.records import readonly
from .core.selection import files_in_use, normalise_key
from .core.trains import select_train_ids, split_trains as _split_slices
from .exceptions import MultiRunError, PropertyNameError

__all__ = ['SourceData']


@attrs.frozen(eq=False)
class SourceData(SectionTests):
    """Data for one source (EXtra-data's ``SourceData``)."""
    source: str
    section: str
    _files: tuple = attrs.field(repr=False)       # FileIndex records holding the source
    sel_keys: frozenset | None = None
    _train_ids: np.ndarray = attrs.field(repr=False, factory=lambda: np.zeros(0, np.uint64))
    canonical_name: str = ''
    is_single_run: bool = False
    inc_suspect_trains: bool = True

    def _ident(self):
        # Compare the files holding selected data, not the one kept for an
        # empty selection: equal selections reached by any route are equal.
        held = files_in_use(self._files, None, self._train_ids, self.inc_suspect_trains,
                            fallback=False)
        return (self.source, self.section, held, self.sel_keys,
                self._train_ids.tobytes(), self.inc_suspect_trains)

    def __eq__(self, other):
        return isinstance(other, SourceData) and self._ident() == other._ident()

    def __hash__(self):
        return hash(self._ident())

    def __repr__(self):
        sect = f" [section={self.section}]" if self.section not in ('CONTROL', 'INSTRUMENT') else ''
        return (f"<xfeldata.SourceData{sect} source={self.source!r} "
                f"for {len(self._train_ids)} trains>")

    __iter__ = None

    # -- properties ------------------------------------------------------------
    @property
    def train_ids(self) -> list:
        return list(self._train_ids)

    @property
    def files(self) -> list:
        from .file_access import FileAccess
        return [FileAccess(fi.path, _cache_info=fi) for fi in self._files]

    @property
    def is_legacy(self):
        return bool(self.canonical_name) and self.canonical_name != self.source

    @property
    def is_run_only(self) -> bool:
        """A CONTROL source with no CONTROL keys (only RUN values)."""
        return self.section == 'CONTROL' and not self._all_keys()

    def _data_file_names(self):
        from .core.names import parse_filename
        for fi in self._files:
            parts = parse_filename(fi.path.rsplit('/', 1)[-1])
            if parts is not None and parts.aggregator != 'OVERVIEW':
                return fi.path, parts
        return (self._files[0].path if self._files else None), None

    @property
    def storage_class(self):
        """The storage class folder of the data (``raw``, ``proc``...), or None."""
        from .core.names import parse_path_metadata
        path, _ = self._data_file_names()
        if path is None:
            return None
        info = parse_path_metadata(path.rsplit('/', 1)[0])
        return None if info is None else info.data_category

    @property
    def data_category(self):
        """The file name's category (``RAW``, ``CORR``...), or None."""
        _, parts = self._data_file_names()
        return None if parts is None else parts.category

    @property
    def aggregator(self):
        """The aggregator named in the file name (``DA01``, ``AGIPD00``...), or None."""
        _, parts = self._data_file_names()
        return None if parts is None else parts.aggregator

    @property
    def device_class(self):
        """The Karabo class of the device (RUN value ``classId``), or None."""
        try:
            return self.run_value('classId', allow_multi_run=True)
        except Exception:
            return None

    # -- keys --------------------------------------------------------------------
    def _all_keys(self) -> frozenset:
        # The key catalogue of one file is enough (EXtra-data consults one file).
        return _tiers.source_keys(self._files[0], self._hdf5_name(), self.section).keys

    def _hdf5_name(self):
        return self.source

    def keys(self, inc_timestamps=True) -> set:
        keys = set(self._all_keys() if self.sel_keys is None else self.sel_keys)
        if not inc_timestamps and self.section == 'CONTROL':
            keys = {k[:-6] for k in keys if k.endswith('.value')}
        return keys

    def __contains__(self, key):
        return normalise_key(self.section, key) in self.keys()

    def _key_data(self, key):
        from .keydata import KeyData
        nkey = normalise_key(self.section, key)
        keys = self.keys()
        if nkey not in keys:
            raise PropertyNameError(key, self.source, candidates=keys)
        sindex = tuple(_tiers.source_index(fi, self._hdf5_name(), self.section)
                       for fi in self._files)
        info = _tiers.key_info(self._files[0], self._hdf5_name(), self.section, nkey)
        return KeyData(self.source, nkey, self.section, self._files, sindex, info,
                       self._train_ids, self.inc_suspect_trains, self.is_single_run)

    def __getitem__(self, item):
        if isinstance(item, str):
            return self._key_data(item)
        if isinstance(item, (float, tuple)):
            raise TypeError(f"Expected a key name or a train selection, got {item!r}")
        return self.select_trains(item)

    def one_key(self, index_group=None):
        keys = sorted(self.keys())
        if index_group is not None:
            keys = [k for k in keys if k.partition('.')[0] == index_group]
            if not keys:
                raise ValueError(f"{self.source} has no index group {index_group!r} "
                                 "among the selected keys")
        return keys[0] if keys else None

    def select_keys(self, keys) -> 'SourceData':
        available = self.keys()
        if keys is None or (isinstance(keys, (set, frozenset)) and not keys):
            return self
        if isinstance(keys, str):
            g = keys
            if self.section == 'CONTROL' and not (g.endswith('.value') or g.endswith('*')):
                g += '.value'
            rx = re.compile(fnmatch.translate(g))
            new = frozenset(k for k in available if rx.fullmatch(k))
            if not new:
                raise PropertyNameError(keys, self.source, candidates=available)
        else:
            new = set()
            for k in keys:
                nk = normalise_key(self.section, k)
                if nk not in available:
                    raise PropertyNameError(k, self.source, candidates=available)
                new.add(nk)
            new = frozenset(new)
        return attrs.evolve(self, sel_keys=new)

    # -- trains ------------------------------------------------------------------
    def _with_trains(self, tids) -> 'SourceData':
        tids = readonly(tids, np.uint64)
        files = files_in_use(self._files, None, tids, self.inc_suspect_trains)
        return attrs.evolve(self, files=files, train_ids=tids)

    def select_trains(self, trains) -> 'SourceData':
        return self._with_trains(select_train_ids(self._train_ids, trains))

    def split_trains(self, parts=None, trains_per_part=None):
        """Split into parts of near-equal train counts (empty trains count too)."""
        for s in _split_slices(len(self._train_ids), parts, trains_per_part):
            yield self._with_trains(self._train_ids[s])

    def drop_empty_trains(self, index_group=None) -> 'SourceData':
        """Only the trains with data (in any index group, or in ``index_group``)."""
        counts = self.data_counts(labelled=False, index_group=index_group)
        return self._with_trains(self._train_ids[counts > 0])

    def train_id_coordinates(self, index_group=None) -> np.ndarray:
        """Train ID of every entry (one per entry, empty trains absent)."""
        groups = [index_group] if index_group is not None else sorted(self.index_groups)
        coords = None
        for g in groups:
            c = self[self.one_key(g)].train_id_coordinates()
            if coords is not None and not np.array_equal(c, coords):
                raise ValueError('source has index groups with differing data counts')
            coords = c
        return readonly(np.zeros(0, np.uint64)) if coords is None else coords

    def union(self, *others) -> 'SourceData':
        """This source's files, keys and trains combined with other selections of it."""
        from .reader import same_run
        for o in others:
            if not isinstance(o, SourceData) or o.source != self.source:
                raise ValueError(f"Cannot union SourceData for different sources "
                                 f"({self.source!r} and {getattr(o, 'source', o)!r})")
        parts = (self,) + others
        files, seen = [], set()
        for sd in parts:
            for fi in sd._files:
                if fi.path not in seen:
                    seen.add(fi.path)
                    files.append(fi)
        keys = None
        if all(sd.sel_keys is not None for sd in parts):
            keys = frozenset().union(*(sd.sel_keys for sd in parts))
        tids = np.unique(np.concatenate([sd._train_ids for sd in parts]))
        files.sort(key=lambda fi: fi.path)  # union is commutative
        return attrs.evolve(self, files=tuple(files), sel_keys=keys,
                            train_ids=readonly(tids, np.uint64),
                            is_single_run=same_run(*parts),
                            inc_suspect_trains=all(sd.inc_suspect_trains for sd in parts))

    def __or__(self, other):
        return self.union(other)

    def __ior__(self, other):
        return self.union(other)

    @property
    def index_groups(self) -> set:
        if self.section == 'CONTROL':
            return {''}
        if self.sel_keys is not None:
            return {k.partition('.')[0] for k in self.sel_keys}
        return set(_tiers.source_index(self._files[0], self._hdf5_name(), self.section).groups)

    def data_counts(self, labelled=True, index_group=None):
        """Per-train maximum entry count over index groups."""
        from .core.plan import FileKeyIndex, counts_for_trains
        groups = [index_group] if index_group is not None else sorted(self.index_groups)
        total = np.zeros(len(self._train_ids), dtype=np.uint64)
        if not self.keys():  # keyless (RUN-only) sources have no data
            groups = []
        for g in groups:
            fkis = []
            for fi in self._files:
                si = _tiers.source_index(fi, self._hdf5_name(), self.section)
                if g in si.groups:
                    firsts, counts = si.group(g)
                    fkis.append(FileKeyIndex(fi.path, fi.train_ids, fi.valid, firsts, counts))
            total = np.maximum(total, counts_for_trains(fkis, self._train_ids,
                                                        self.inc_suspect_trains))
        if not labelled:
            return total
        import pandas as pd
        return pd.Series(total.astype(np.int64), index=pd.Index(self._train_ids, name='trainId'))

    # -- RUN values ----------------------------------------------------------------
    def _check_single_run(self, allow_multi_run):
        if not (self.is_single_run or allow_multi_run):
            raise MultiRunError()

    def run_keys(self, inc_timestamps=True) -> set:
        self._check_single_run(False)
        keys = set(_tiers.run_keys(self._files[0], self._hdf5_name()))
        if not inc_timestamps:
            keys = {k[:-6] for k in keys if k.endswith('.value')}
        return keys

    def run_value(self, key, *, allow_multi_run=False):
        """The value of ``key`` recorded at the start of the run (RUN section)."""
        self._check_single_run(allow_multi_run)
        if self.section != 'CONTROL':
            raise ValueError(f"{self.source} has no RUN values")
        f = _tiers.h5file(self._files[0])
        grp = f.get(f'RUN/{self.source}')
        if grp is None:
            raise ValueError(f"{self.source} has no RUN values")
        nkey = normalise_key('CONTROL', key)
        ds = grp.get(nkey.replace('.', '/'))
        if ds is None:
            raise PropertyNameError(key, self.source,
                                    candidates=_tiers.run_keys(self._files[0], self.source))
        v = ds[0]
        if isinstance(v, bytes):
            v = v.decode('utf-8', 'surrogateescape')
        return v

    def run_values(self, inc_timestamps=True) -> dict:
        keys = self.run_keys()
        out = {}
        for k in keys:
            v = self.run_value(k)
            if not inc_timestamps:
                if k.endswith('.timestamp'):
                    continue
                k = k[:-6] if k.endswith('.value') else k
            out[k] = v
        return out

    def run_metadata(self) -> dict:
        self._check_single_run(False)
        return dict(_tiers.file_meta(self._files[0]).metadata)
