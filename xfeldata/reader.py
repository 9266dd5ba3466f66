"""Opening runs and files; the DataCollection.

``open_run`` / ``RunDirectory`` / ``H5File`` build tier-0 index records for
the files (from xfeldata's index cache, EXtra-data's run files map, or by
scanning), then a :class:`~xfeldata.core.runindex.RunIndex` (the conflict
check runs there) and a DataCollection: a RunIndex plus a resolved
:class:`~xfeldata.core.selection.Selection`. Every selection method returns a
new DataCollection; nothing is mutated.
"""
from __future__ import annotations

import os
import os.path as osp
import warnings

import attrs
import numpy as np

from . import _open, _tiers, index_cache, locality
from .core import selection as _sel
from .core.names import DETECTOR_SOURCE_RE, normalise_proposal, normalise_run
from .core.records import FileIndex
from .core.runindex import RunIndex
from .core.trains import select_train_ids, split_trains as _split_slices
from .exceptions import MultiRunError, NoUsableFilesError, SourceNameError
from .file_access import FileAccess
from .read_machinery import find_proposal
from .sourcedata import SourceData

__all__ = ['DataCollection', 'open_run', 'RunDirectory', 'H5File', 'RunHandler',
           'TrainIterator']

DEFAULT_ALIASES_FILE = "{}/usr/extra-data-aliases.yml"


@attrs.frozen(eq=False, init=False)
class DataCollection:
    """A selection of sources, keys and trains from a set of EuXFEL files."""
    _index: RunIndex
    _selection: _sel.Selection
    is_single_run: bool = False
    ctx_closes: bool = False
    _aliases: tuple = ()
    _alias_files: tuple = ()

    def __init__(self, files, sources_data=None, train_ids=None, aliases=None,
                 ctx_closes=False, *, inc_suspect_trains=True, is_single_run=False,
                 alias_files=None):
        fis = tuple(files)
        if not all(map(FileIndex.__instancecheck__, fis)):   # isinstance over all, in C
            fis = tuple(f.index if isinstance(f, FileAccess) else f for f in fis)
        # The conflict check is skipped for records known to pass it (the
        # index cache's verdict, or a check done earlier in this process).
        # A known verdict may come with the records' RunSummary: the train
        # IDs and source sets, which the index then need not derive.
        known, summary = index_cache.known_run(fis)
        index = RunIndex.build(fis, inc_suspect_trains, check_conflicts=not known,
                               summary=summary)
        if not known and inc_suspect_trains:
            index_cache.note_conflict_free(fis, index.summary())
        if train_ids is None:
            tids = index.train_ids
        else:
            tids = np.unique(np.asarray(train_ids, dtype=np.uint64))
        names = index.control_sources | index.instrument_sources
        self.__attrs_init__(index, _sel.Selection.whole(tids, names), bool(is_single_run),
                            bool(ctx_closes), tuple(sorted((aliases or {}).items())),
                            tuple(alias_files or ()))

    @classmethod
    def _make(cls, index, selection, is_single_run=False, ctx_closes=False, aliases=(),
              alias_files=()):
        self = object.__new__(cls)
        self.__attrs_init__(index, selection, is_single_run, ctx_closes, aliases, alias_files)
        return self

    def _evolve(self, **kw):
        # attrs.evolve would call the EXtra-data-compatible __init__; build directly.
        kw.setdefault('ctx_closes', False)
        vals = {a.name.lstrip('_'): getattr(self, a.name) for a in attrs.fields(type(self))}
        vals.update(kw)
        new = object.__new__(type(self))
        new.__attrs_init__(**vals)
        return new

    @classmethod
    def from_paths(cls, paths, _files_map=None, *, inc_suspect_trains=True,
                   is_single_run=False, parallelize=True):
        fis, skipped = _open.file_indexes(paths, _files_map, parallelize=parallelize)
        if not fis:
            raise NoUsableFilesError("All HDF5 files specified are unusable", skipped)
        return cls(fis, inc_suspect_trains=inc_suspect_trains, is_single_run=is_single_run)

    @classmethod
    def from_path(cls, path, *, inc_suspect_trains=True):
        return cls([FileAccess(path)], ctx_closes=True,
                   inc_suspect_trains=inc_suspect_trains, is_single_run=True)

    # -- identity --------------------------------------------------------------------
    def __eq__(self, other):
        if not isinstance(other, DataCollection):
            return NotImplemented
        return (self._index == other._index and self._selection == other._selection
                and self._aliases == other._aliases)

    def __hash__(self):
        return hash((self._index, self._selection, self._aliases))

    def __repr__(self):
        return (f"<xfeldata.DataCollection for {len(self._selection.sources)} sources "
                f"and {len(self._selection.train_ids)} trains>")

    __iter__ = None

    def __enter__(self):
        if not self.ctx_closes:
            raise Exception(
                "Only DataCollection objects created by opening files directly can be "
                "used in a 'with' statement, not those created by selecting or combining.")
        return self

    def __exit__(self, *exc):
        for fa in self.files:
            fa.close()

    # -- run-level face (answers from the index records) -----------------------------------
    @property
    def inc_suspect_trains(self) -> bool:
        return self._index.inc_suspect_trains

    @property
    def files(self) -> list:
        return [FileAccess(fi.path, _cache_info=fi) for fi in self._index.files]

    @property
    def train_ids(self) -> list:
        return list(self._selection.train_ids)

    @property
    def selection(self) -> dict:
        return {s: (None if k is None else set(k)) for s, k in self._selection.sources}

    @property
    def control_sources(self) -> frozenset:
        return self._selection.source_names & self._index.control_sources

    @property
    def instrument_sources(self) -> frozenset:
        return self._selection.source_names & self._index.instrument_sources

    @property
    def all_sources(self) -> frozenset:
        return self._selection.source_names

    @property
    def legacy_sources(self) -> dict:
        sel = self._selection.source_names
        return {k: v for k, v in self._index.legacy_sources.items() if k in sel}

    @property
    def detector_sources(self) -> set:
        legacy = self._index.legacy_sources
        return {s for s in self.instrument_sources
                if s not in legacy and DETECTOR_SOURCE_RE.match(s)}

    def _ipython_key_completions_(self):
        return sorted(self.all_sources)

    def __contains__(self, item):
        if isinstance(item, str):
            return item in self._selection.source_names
        if isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, str) for x in item):
            src, key = item
            if src not in self._selection.source_names:
                return False
            return key in self._source_data(src)
        return False

    # -- sources & keys -------------------------------------------------------------------
    def _section(self, source):
        return self._index.section_of(source)

    def _source_data(self, source, warn=True) -> SourceData:
        """SourceData of a selected source; ``warn``: a DeprecationWarning for a legacy name
        (for a user's own access by that name; not when xfeldata reads every
        selected source, to write or iterate)."""
        if source not in self._selection.source_names:
            raise SourceNameError(source, candidates=self._selection.source_names)
        legacy = self._index.legacy_sources
        if warn and source in legacy:
            _warn_legacy(source, legacy[source], stacklevel=4)
        return SourceData(source, self._section(source), self._source_files(source),
                          self._selection.keys_of(source), self._selection.train_ids,
                          legacy.get(source, source), self.is_single_run,
                          self.inc_suspect_trains)

    def _source_files(self, source, fallback=True) -> tuple:
        """FileIndex records this selection reads ``source`` from."""
        restriction = self._selection.file_map.get(source) if self._selection.files else None
        return _sel.files_in_use(self._index.files_for_source(source), restriction,
                                 self._selection.train_ids, self.inc_suspect_trains,
                                 fallback, all_trains=restriction is None
                                 and self._has_all_trains())

    def _has_all_trains(self) -> bool:
        mine, run = self._selection.train_ids, self._index.train_ids
        return mine is run or (len(mine) == len(run) and np.array_equal(mine, run))

    def keys_for_source(self, source) -> set:
        return self._source_data(source).keys()

    _keys_for_source = keys_for_source

    def get_entry_shape(self, source, key):
        return self[source, key].entry_shape

    def get_dtype(self, source, key):
        return self[source, key].dtype

    def __getitem__(self, item):
        if isinstance(item, str):
            return self._source_data(item)
        if isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, str) for x in item):
            return self._source_data(item[0])[item[1]]
        if isinstance(item, tuple):
            raise TypeError(f"Expected data[source] or data[source, key], got {item!r}")
        if isinstance(item, float):
            raise TypeError(f"Cannot select trains with a float ({item!r})")
        return self.select_trains(item)

    # -- selection -------------------------------------------------------------------------
    def _catalogue(self):
        def list_keys(src):
            return frozenset(self._source_data(src, warn=False).keys())
        sections = {s: self._section(s) for s in self._selection.source_names}
        return _sel.Catalogue(sections, list_keys)

    def _seln_arg(self, seln):
        return selection_argument(seln)

    def _warn_named_legacy(self, seln):
        """Warn for each legacy source name ``seln`` spells out (not for one a glob matches).

        ``seln`` as given to select: a string, a dict or a list (not a data
        object, whose names the user did not write).
        """
        legacy = self._index.legacy_sources
        if not legacy:
            return
        if isinstance(seln, str):
            names = [seln]
        elif isinstance(seln, dict):
            names = list(seln)
        else:
            names = [x if isinstance(x, str) else x[0] for x in seln
                     if isinstance(x, str) or (isinstance(x, tuple) and x)]
        for name in dict.fromkeys(names):
            if isinstance(name, str) and name in legacy:   # no glob character can match
                _warn_legacy(name, legacy[name], stacklevel=4)

    def select(self, seln_or_source_glob, key_glob='*', require_all=False,
               require_any=False, *, warn_drop_trains_frac=1.):
        """Select sources and keys (globs, pairs, a dict, or another data object)."""
        if not isinstance(seln_or_source_glob, (str, dict, DataCollection, SourceData)) \
                and _is_iterable(seln_or_source_glob):
            seln_or_source_glob = list(seln_or_source_glob)   # read twice below
        if isinstance(seln_or_source_glob, (str, dict, list)):
            self._warn_named_legacy(seln_or_source_glob)
        seln = self._seln_arg(seln_or_source_glob)
        new = _sel.select(self._selection, self._catalogue(), seln, key_glob)
        dc = self._evolve(selection=new)
        if require_all or require_any:
            dc = dc._require(all_=bool(require_all), frac=warn_drop_trains_frac)
        return dc

    def _require(self, all_, frac):
        has_data = []
        for src in sorted(self._selection.source_names):
            if src in self._index.legacy_sources:
                continue
            sd = self._source_data(src)
            if sd.is_run_only:
                continue
            for g in sorted(sd.index_groups):
                label = src if g == '' else f"{src} (index group {g!r})"
                has_data.append((label, sd.data_counts(labelled=False, index_group=g) > 0))
        tids = self._selection.train_ids
        keep, messages = _sel.require_trains(len(tids), has_data, all_, frac)
        for m in messages:
            warnings.warn(m, stacklevel=4)
        return self._with_trains(tids[keep])

    def deselect(self, seln_or_source_glob, key_glob='*'):
        seln = self._seln_arg(seln_or_source_glob)
        new = _sel.deselect(self._selection, self._catalogue(), seln, key_glob)
        return self._evolve(selection=new)

    def select_trains(self, train_range):
        tids = select_train_ids(self._selection.train_ids, train_range, stacklevel=3)
        return self._with_trains(tids)

    def split_trains(self, parts=None, trains_per_part=None):
        tids = self._selection.train_ids
        for s in _split_slices(len(tids), parts, trains_per_part):
            yield self._with_trains(tids[s])

    def _with_trains(self, tids):
        """This collection with other trains; file restrictions narrowed to match.

        A source restricted by a union keeps, of its files, those holding a
        newly selected train (or its first file, as an unrestricted source
        would): a later union then adds what this selection reads, as
        EXtra-data's per-source file lists do.
        """
        sel = self._selection
        if not sel.files:
            return self._evolve(selection=sel.with_trains(tids))
        inc, restr = self.inc_suspect_trains, {}
        for src, paths in sel.files:
            files = self._index.files_for_source(src)
            kept = {f.path for f in _sel.files_in_use(files, paths, tids, inc)}
            if kept != {f.path for f in _sel.files_in_use(files, None, tids, inc)}:
                restr[src] = kept
        return self._evolve(selection=_sel.Selection.build(tids, sel.source_map, restr))

    def _used_files(self, src) -> set:
        """Paths ``src`` contributes to a union: its restriction, or the files in use."""
        restriction = self._selection.file_map.get(src) if self._selection.files else None
        if restriction is not None:
            return set(restriction)
        return {f.path for f in self._source_files(src)}

    def union(self, *others):
        dcs = (self,) + others
        files, seen = [], set()
        for dc in dcs:
            for fi in dc._index.files:
                if fi.path not in seen:
                    seen.add(fi.path)
                    files.append(fi)
        files.sort(key=lambda fi: fi.path)  # union is commutative
        inc = all(dc.inc_suspect_trains for dc in dcs)
        index = RunIndex.build(files, inc, check_conflicts=False)   # checked below
        # Each part contributes, per source, the files it reads (for a source
        # with no selected train: its first file, as EXtra-data keeps it), or
        # the restriction a former union recorded, whole: so the grouping of
        # a union of several parts never changes the result.
        used = [{src: dc._used_files(src) for src in dc._selection.source_names} for dc in dcs]
        new_sel = _sel.union([dc._selection for dc in dcs], used)
        # Keep a restriction only where it changes something, so equal data
        # compare equal (e.g. dc.union() == dc).
        restr = {src: paths for src, paths in new_sel.file_map.items()
                 if {f.path for f in _sel.files_in_use(
                     index.files_for_source(src), None, new_sel.train_ids, inc)} != set(paths)}
        if len(restr) != len(new_sel.files):
            new_sel = _sel.Selection.build(new_sel.train_ids, new_sel.source_map, restr)
        # Conflicts matter for what the union reads: its sources, each in the
        # files it uses. A source one part deselected may be in both parts'
        # files (open_run(data='all') drops raw's copy of proc's sources so).
        position = {fi.path: i for i, fi in enumerate(index.files)}
        index.check_conflicts({
            src: (index.source_files.get(src, ()) if src not in restr
                  else tuple(sorted(position[p] for p in restr[src])))
            for src in new_sel.source_names})
        from .aliases import merge_aliases
        aliases = merge_aliases(*(dc._aliases for dc in dcs))
        return DataCollection._make(index, new_sel, same_run(*dcs), False,
                                    tuple(sorted(aliases.items())),
                                    tuple(dict.fromkeys(f for dc in dcs for f in dc._alias_files)))

    def __or__(self, other):
        return self.union(other)

    def __ior__(self, other):
        return self.union(other)

    # -- metadata ----------------------------------------------------------------------------
    def run_metadata(self) -> dict:
        if not self.is_single_run:
            raise MultiRunError()
        return dict(_tiers.file_meta(self._index.files[0]).metadata)

    def train_timestamps(self, labelled=False, *, pydatetime=False, euxfel_local_time=False):
        """Timestamps (from INDEX/timestamp) of the selected trains; NaT where unknown."""
        if euxfel_local_time and not (labelled or pydatetime):
            raise ValueError("euxfel_local_time=True requires labelled=True or pydatetime=True")
        tids = self._selection.train_ids
        ts = np.zeros(len(tids), dtype=np.uint64)
        found = np.zeros(len(tids), dtype=bool)
        # Where files disagree (mock sequence files restart their clocks), the
        # first file in order of first train ID (then name) wins, matching the
        # reference's answers.
        files = sorted(self._index.files,
                       key=lambda f: (len(f.train_ids) == 0,
                                      int(f.train_ids[0]) if len(f.train_ids) else 0, f.path))
        for fi in files:
            if found.all():
                break
            meta = _tiers.file_meta(fi)
            if meta.timestamps is None:
                continue
            ok = np.ones(len(fi.train_ids), bool) if self.inc_suspect_trains else fi.valid
            pos = np.nonzero(np.isin(fi.train_ids, tids) & ok)[0]
            if not len(pos):
                continue
            ix = np.searchsorted(tids, fi.train_ids[pos])
            new = ~found[ix]
            ts[ix[new]] = meta.timestamps[pos[new]]
            found[ix[new]] = True
        arr = ts.astype('datetime64[ns]')
        arr[~found | (ts == 0)] = np.datetime64('NaT')
        if not (labelled or pydatetime):
            return arr
        import pandas as pd
        idx = pd.DatetimeIndex(arr).tz_localize('UTC')
        if pydatetime:
            # datetime holds microseconds; the API gives milliseconds (and
            # pandas would warn per train about dropping nanoseconds). In UTC,
            # where no local clock change makes a time ambiguous.
            idx = idx.floor('ms')
        if euxfel_local_time:
            idx = idx.tz_convert('Europe/Berlin')
        if pydatetime:
            return [None if pd.isna(t) else t.to_pydatetime() for t in idx]
        return pd.Series(idx, index=pd.Index(tids, name='trainId'))

    # -- single trains ---------------------------------------------------------------------------
    def trains(self, devices=None, train_range=None, *, require_all=False, flat_keys=False,
               keep_dims=False):
        """Iterate over the selected trains, yielding ``(train ID, data dict)``.

        ``devices`` and ``train_range`` narrow the selection first (``select``,
        ``select_trains``). Data are read in bulk, a batch of trains at a time
        (see :mod:`xfeldata._iterate`).
        """
        dc = self if devices is None else self.select(devices)
        if train_range is not None:
            dc = dc.select_trains(train_range)
        return iter(TrainIterator(dc, require_all=require_all, flat_keys=flat_keys,
                                  keep_dims=keep_dims))

    def train_from_id(self, train_id, devices=None, *, flat_keys=False, keep_dims=False):
        """``(train ID, data dict)`` for one selected train (TrainIDError if not selected)."""
        if devices is not None:
            # EXtra-data's quirk, kept (docs/compat.md 7): with devices,
            # flat_keys and keep_dims are not passed on.
            return self.select(devices).train_from_id(train_id)
        from ._iterate import collection_train
        return collection_train(self, train_id, flat_keys=flat_keys, keep_dims=keep_dims)

    def train_from_index(self, train_index, devices=None, *, flat_keys=False, keep_dims=False):
        tid = self._selection.train_ids[train_index]
        return self.train_from_id(int(tid), devices, flat_keys=flat_keys, keep_dims=keep_dims)

    def get_run_value(self, source, key):
        return self._source_data(source).run_value(key)

    def get_run_values(self, source) -> dict:
        return self._source_data(source).run_values()

    def get_data_counts(self, source, key):
        """Entries per selected train of one key (pandas Series by trainId, 0 = none)."""
        return self[source, key].data_counts(labelled=True)

    def get_series(self, source, key):
        """One 1-D key as a pandas Series indexed by trainId (``KeyData.series``)."""
        return self[source, key].series()

    def get_dataframe(self, fields=None, *, timestamps=False):
        """The selected 1-D keys as a pandas DataFrame, outer-joined on trainId.

        Columns ``source/key`` (control ``.value`` stripped); ``.timestamp``
        columns only with ``timestamps=True``; ``fields`` is applied with
        ``select`` first. See :func:`xfeldata._outputs.dataframe`.
        """
        from ._outputs import dataframe
        return dataframe(self, fields, timestamps=timestamps)

    def get_array(self, source, key, extra_dims=None, roi=(), name=None):
        """One key as an ``xarray.DataArray`` (``KeyData.xarray``); ``roi`` may be a by_index."""
        return self[source, key].xarray(extra_dims=extra_dims, roi=roi, name=name)

    def get_dask_array(self, source, key, labelled=False):
        """One key as a lazy dask array (``KeyData.dask_array``); needs the ``dask`` extra."""
        return self[source, key].dask_array(labelled=labelled)

    def get_virtual_dataset(self, source, key, filename=None):
        """Write a virtual dataset of one key's selected rows; return it opened read-only.

        Without ``filename`` a temporary ``*-karabo-data-vds.h5`` file is made
        (and not deleted). Source and key are checked before anything is written.
        """
        from ._outputs import virtual_dataset
        return virtual_dataset(self[source, key], filename)

    def write(self, filename, *, progress=None):
        """Copy the selected data into a new EuXFEL file (``xfeldata.writer``).

        Written atomically (temporary name, then rename); never an input file.
        ``progress``: None = on stderr when it is a terminal, True/False to force.
        """
        from .writer import write_file
        write_file(filename, self, progress=progress)

    def write_virtual(self, filename, *, progress=None):
        """Write an EuXFEL file whose datasets are virtual, mapping the source files."""
        from .writer import write_file
        write_file(filename, self, virtual=True, progress=progress)

    def _repr_html_(self):
        from ._outputs import collection_html
        return collection_html(self)

    @property
    def alias(self):
        """:class:`~xfeldata.aliases.AliasIndexer`: data by alias (``dc.alias['xgm']``)."""
        from .aliases import AliasIndexer
        return AliasIndexer(self)

    @property
    def auxiliary(self):
        """:class:`~xfeldata.auxiliary.AuxiliaryIndexer`: REDUCTION/ERRATA sources.

        Creating it does no I/O; its source lists come from tier 1 of the
        index (memoised per file), loaded the first time they are asked for.
        """
        from .auxiliary import AuxiliaryIndexer
        return AuxiliaryIndexer.for_collection(self)

    def with_aliases(self, *alias_defs):
        """A new collection with aliases added (dicts or .json/.yaml/.yml/.toml files).

        See :func:`xfeldata.aliases.with_aliases`.
        """
        from .aliases import with_aliases
        return with_aliases(self, *alias_defs)

    def only_aliases(self, *alias_defs, strict=False, require_all=False):
        """Add aliases, then select only the data they point to.

        See :func:`xfeldata.aliases.only_aliases`.
        """
        from .aliases import only_aliases
        return only_aliases(self, *alias_defs, strict=strict, require_all=require_all)

    def drop_aliases(self):
        """The same data without aliases or alias files."""
        from .aliases import drop_aliases
        return drop_aliases(self)

    # -- info ---------------------------------------------------------------------------------------
    def info(self, details_for_sources=(), *, counts=False, group_sources=True,
             with_aggregators=False, with_auxiliary=False):
        """Print a summary of the trains and sources (computed from the index only).

        See :class:`xfeldata.display.InfoPrinter` for the sections printed.
        """
        from .display import InfoPrinter
        InfoPrinter(self, details_for_sources, with_aggregators=with_aggregators,
                    data_counts=counts, group_sources=group_sources).show(with_auxiliary)

    def detector_info(self, source) -> dict:
        """``dims``, ``frames_per_train`` and ``total_frames`` of an XTDF module source."""
        from .display import detector_info
        return detector_info(self[source])

    def train_info(self, train_id):
        """Print the sources with data in one train (``ValueError`` if it is not selected)."""
        from .display import format_train_info
        print(format_train_info(self, train_id))

    def map_trains(self, func, *, client=None, trains_per_task=None, progress=None,
                   with_train_ids=False, **iter_kwargs) -> list:
        """``func(train_id, data)`` for every selected train, in parallel with dask.

        See :func:`xfeldata._distributed.map_trains` (``client``: a
        ``distributed.Client``; results in train order).
        """
        from ._distributed import map_trains
        return map_trains(self, func, client=client, trains_per_task=trains_per_task,
                          progress=progress, with_train_ids=with_train_ids, **iter_kwargs)

    def plot_missing_data(self, min_saved_pct=95, expand_instrument=False):
        """Plot the trains missing for sources with at most ``min_saved_pct`` percent saved.

        Returns a matplotlib ``Axes`` (the ``plot`` extra); see :mod:`xfeldata._plot`.
        """
        from ._plot import plot_missing_data
        return plot_missing_data(self, min_saved_pct, expand_instrument)


def _warn_legacy(source, canonical, stacklevel):
    warnings.warn(f"{source!r} is a legacy name for {canonical!r}: access via this name "
                  "will stop working; use the new name instead.", DeprecationWarning,
                  stacklevel=stacklevel)


def selection_argument(seln):
    """``select``/``deselect`` argument with data objects turned into dict form.

    A DataCollection gives its ``selection``, a SourceData ``{source: keys}``
    and a KeyData ``{source: {key}}``; strings, dicts and other iterables pass
    through; anything else is a ``TypeError``.
    """
    from .keydata import KeyData
    if isinstance(seln, DataCollection):
        return seln.selection
    if isinstance(seln, SourceData):
        return {seln.source: None if seln.sel_keys is None else set(seln.sel_keys)}
    if isinstance(seln, KeyData):
        return {seln.source: {seln.key}}
    if isinstance(seln, (str, dict)) or _is_iterable(seln):
        return seln
    raise TypeError(f"Unknown selection type: {type(seln).__name__}")


def _is_iterable(x):
    try:
        iter(x)
    except TypeError:
        return False
    return True


def same_run(*args) -> bool:
    """True if every collection is single-run data of the same proposal and run."""
    ids = set()
    for dc in args:
        if not dc.is_single_run:
            return False
        md = dc.run_metadata()
        if md.get('dataFormatVersion') == '0.5':
            return False
        prop, run = md.get('proposalNumber'), md.get('runNumber')
        if prop is None or run is None:
            return False
        ids.add((int(prop), int(run)))
    return len(ids) == 1


# -- opening -----------------------------------------------------------------------------------

def RunDirectory(path, include='*', file_filter=locality.lc_any, *, inc_suspect_trains=True,
                 parallelize=True, _use_voview=True):
    """Open a run directory (every ``*.h5`` file matching ``include``).

    Unusable files are skipped with a warning naming the file and the problem;
    :class:`~xfeldata.exceptions.NoUsableFilesError` if none can be used.
    """
    fis = _open.run_file_indexes(path, include, file_filter, parallelize=parallelize,
                                 use_voview=_use_voview)
    return DataCollection(fis, inc_suspect_trains=inc_suspect_trains, is_single_run=True,
                          ctx_closes=True)


RunHandler = RunDirectory


def H5File(path, *, inc_suspect_trains=True):
    """Open a single EuXFEL HDF5 file."""
    return DataCollection.from_path(path, inc_suspect_trains=inc_suspect_trains)


def open_run(proposal, run, data='default', include='*', file_filter=locality.lc_any, *,
             inc_suspect_trains=True, parallelize=True, aliases=DEFAULT_ALIASES_FILE,
             _use_voview=True):
    """Open a run by proposal and run number (see FORMAT.md section 1.2)."""
    if isinstance(proposal, (str, os.PathLike)) and (
            '/' in os.fspath(proposal) or isinstance(proposal, os.PathLike)):
        prop_dir = os.fspath(proposal)
    else:
        prop_dir = find_proposal(normalise_proposal(proposal))
    run_name = normalise_run(run)
    kw = dict(include=include, file_filter=file_filter, inc_suspect_trains=inc_suspect_trains,
              parallelize=parallelize, _use_voview=_use_voview)
    if data == 'default':
        locations, absent_ok = ['proc', 'raw'], {'proc'}
    elif data == 'all':
        locations, absent_ok = ['raw', 'proc'], set()
    elif isinstance(data, str):
        locations, absent_ok = [data], set()
    else:
        locations, absent_ok = list(data), set()
    dc = None
    for loc in locations:
        try:
            new = RunDirectory(osp.join(prop_dir, loc, run_name), **kw)
        except FileNotFoundError:
            if loc in absent_ok:
                continue
            if dc is None:
                raise
            warnings.warn(f"No data available for this run at origin {loc}", stacklevel=2)
            continue
        if dc is None:
            dc = new
        else:
            common = dc.all_sources & new.all_sources
            if common == dc.all_sources:
                dc = new
            else:
                earlier = dc.deselect([(s, '*') for s in common]) if common else dc
                dc = new.union(earlier)._evolve(is_single_run=True)
    if dc is None:
        raise FileNotFoundError(f"No data found for {run_name} in {prop_dir}")
    if aliases is not None:
        from .aliases import load_default_aliases
        dc = load_default_aliases(dc, aliases, prop_dir)
    return dc


class TrainIterator:
    """Iterable over the trains of a DataCollection: ``(int train ID, data dict)``.

    Each iteration reads afresh, a batch of trains at a time
    (:func:`xfeldata._iterate.iterate_trains`).
    """
    def __init__(self, data, require_all=True, flat_keys=False, keep_dims=False):
        self.data = data
        self.require_all = require_all
        self.flat_keys = flat_keys
        self.keep_dims = keep_dims

    def __iter__(self):
        from ._iterate import iterate_trains
        return iterate_trains(self.data, require_all=self.require_all,
                              flat_keys=self.flat_keys, keep_dims=self.keep_dims)
