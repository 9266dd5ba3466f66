"""Auxiliary sources: the REDUCTION and ERRATA sections (``dc.auxiliary``).

Since 2025 EuXFEL files may hold, beside CONTROL and INSTRUMENT, sources in
``REDUCTION`` (how data was reduced: pulse selection, lit-frame finding) and
``ERRATA`` (corrections to the record, e.g. trains outside a buffer range).
They are listed only in ``METADATA/auxiliarySources/{REDUCTION,ERRATA}``, and
the same name often appears in several aggregators with different content
(each detector module's file has its own lit-frame finder output), so they
are reached through an indexer rather than ``dc[source]``.

Naming (API.md section 20): an auxiliary source is called ``<AGG>@<source>``
(``AGIPD03@SPB_IRU_AGIPD1M1/REDU/LITFRM:daqFilter``), unless exactly one
aggregator has it *and* its name ends with the name of a CONTROL or
INSTRUMENT source of that aggregator's files
(``PULSE_REDUCTION/SPB_DET_AGIPD1M-1/DET/3CH0:xtdf`` in the module 3 file):
then the plain name is unambiguous and says what it belongs to.

The lists come from tier 1 of the index (:class:`~xfeldata.core.records.FileMeta`),
loaded and memoised per file by :mod:`xfeldata._tiers`; nothing else is read
until data is asked for.
"""
from __future__ import annotations

import os.path as osp

import numpy as np

from . import _tiers
from .core.names import parse_filename
from .core.records import FileIndex, readonly
from .core.selection import files_in_use
from .exceptions import SourceNameError
from .sourcedata import SourceData

__all__ = ['AuxiliaryIndexer', 'aux_source_table']


def _aggregator(fi: FileIndex) -> str:
    """The aggregator in a file's name; the file's stem when the name is not EuXFEL's."""
    base = osp.basename(fi.path)
    parts = parse_filename(base)
    if parts is None or parts.aggregator is None:
        # Not a standard name (hand-made files): the stem still tells files
        # apart, which is all the prefix is for.
        return osp.splitext(base)[0]
    return parts.aggregator


def _real_files(fi: FileIndex) -> list:
    """The data files behind ``fi``: itself, or the files a virtual overview records.

    Auxiliary sections are not copied into overview files, so they have to be
    found in the sequence files. Those are looked for beside the overview; an
    overview kept elsewhere (``usr/.extra_data``) whose files cannot be found
    there contributes nothing.
    """
    if not _tiers.file_meta(fi).is_voview:
        return [fi]
    g = _tiers.h5file(fi).get('.source_files/names')
    if g is None:
        return []
    out = []
    folder = osp.dirname(fi.path)
    for n in g[()]:
        n = n.decode() if isinstance(n, bytes) else str(n)
        p = osp.join(folder, n)
        if osp.isfile(p):
            out.append(_tiers.file_index(p))
    return out


def aux_source_table(files) -> dict:
    """Map each public auxiliary source name to ``(section, hdf5 name, files)``.

    Parameters
    ----------
    files : iterable of FileIndex
        The collection's files (overview files are expanded to their sequence
        files).

    Returns
    -------
    dict
        ``{name: (section, source, tuple of FileIndex)}``, where ``name`` follows
        the module's naming rule and ``source`` is the group name under the
        section in the files.
    """
    # (section, source) -> aggregator -> [FileIndex]; plus per aggregator the
    # CONTROL/INSTRUMENT names its files hold (for the naming rule).
    found: dict = {}
    real_names: dict = {}
    seen = set()
    for top in files:
        for fi in _real_files(top):
            if fi.path in seen:
                continue
            seen.add(fi.path)
            meta = _tiers.file_meta(fi)
            agg = _aggregator(fi)
            real_names.setdefault(agg, set()).update(fi.control_sources,
                                                     fi.instrument_sources)
            for section, names in (('REDUCTION', meta.reduction_sources),
                                   ('ERRATA', meta.errata_sources)):
                for src in names:
                    found.setdefault((section, src), {}).setdefault(agg, []).append(fi)
    table = {}
    for (section, src), by_agg in found.items():
        plain_ok = False
        if len(by_agg) == 1:
            (agg,) = by_agg
            plain_ok = any(src.endswith(r) for r in real_names[agg])
        for agg, fis in by_agg.items():
            fis = tuple(sorted(fis, key=lambda f: f.path))
            name = src if plain_ok else f'{agg}@{src}'
            table[name] = (section, src, fis)
    return table


class AuxiliaryIndexer:
    """Auxiliary (REDUCTION / ERRATA) sources of a collection: ``dc.auxiliary``.

    Parameters
    ----------
    train_ids : array-like of int
        The selected train IDs; auxiliary data is given for these trains.
    files : sequence of FileIndex or FileAccess
        The collection's files.
    is_single_run : bool
        Passed on to the SourceData objects (for RUN values / metadata).
    inc_suspect_trains : bool
        Whether trains flagged suspect are included.

    Notes
    -----
    Creating an indexer does no I/O. The first question about its sources
    (``all_sources``, ``aux[name]``, ``in``, ...) loads tier 1 of the index
    of every file (memoised per process, and stored in the index cache); for
    a virtual overview file the list of its sequence files is read once.

    Examples
    --------
    >>> aux = run.auxiliary                                  # doctest: +SKIP
    >>> sorted(aux.errata_sources)                           # doctest: +SKIP
    ['DA01@TRAINS_OUTSIDE_BUFFER_RANGE']
    >>> aux['DA01@TRAINS_OUTSIDE_BUFFER_RANGE', 'event.values'].shape   # doctest: +SKIP
    (64, 11)
    """

    def __init__(self, train_ids, files, is_single_run=False, inc_suspect_trains=True):
        self._train_ids = readonly(np.asarray(train_ids, dtype=np.uint64))
        self._files = tuple(getattr(f, 'index', f) for f in files)
        self.is_single_run = bool(is_single_run)
        self.inc_suspect_trains = bool(inc_suspect_trains)
        self._table_cache = None

    @classmethod
    def for_collection(cls, dc) -> 'AuxiliaryIndexer':
        """The indexer for a DataCollection's files and selected trains (no I/O)."""
        return cls(dc._selection.train_ids, dc._index.files, dc.is_single_run,
                   dc.inc_suspect_trains)

    def _table(self) -> dict:
        # Computed once per indexer; the tier loads underneath are memoised
        # per process, so a second indexer of the same run is cheap too.
        if self._table_cache is None:
            self._table_cache = aux_source_table(self._files)
        return self._table_cache

    # -- source lists ------------------------------------------------------------
    @property
    def reduction_sources(self) -> frozenset:
        """Names of the REDUCTION sources (loads tier 1 of the index once)."""
        return frozenset(n for n, v in self._table().items() if v[0] == 'REDUCTION')

    @property
    def errata_sources(self) -> frozenset:
        """Names of the ERRATA sources (loads tier 1 of the index once)."""
        return frozenset(n for n, v in self._table().items() if v[0] == 'ERRATA')

    @property
    def all_sources(self) -> frozenset:
        """Names of all auxiliary sources."""
        return frozenset(self._table())

    def __contains__(self, source) -> bool:
        return isinstance(source, str) and source in self._table()

    def _ipython_key_completions_(self):
        return sorted(self._table())

    # -- access --------------------------------------------------------------------
    def _error(self, source) -> SourceNameError:
        table = self._table()
        # The most likely mistake: the plain name of a source that several
        # aggregators hold, which only exists with an AGG@ prefix.
        prefixed = sorted(n for n in table if n.partition('@')[2] == source)
        if prefixed:
            more = f" and {len(prefixed) - 3} more" if len(prefixed) > 3 else ''
            msg = (f"Auxiliary source {source!r} is in {len(prefixed)} aggregators; "
                   f"name one with an AGG@ prefix: {', '.join(map(repr, prefixed[:3]))}{more}.")
        else:
            msg = (f"This data has no auxiliary source named {source!r}. Sources held "
                   "by more than one aggregator need an AGG@ prefix (e.g. "
                   "'DA01@SOURCE'); see data.auxiliary.all_sources for the names.")
        return SourceNameError(source, custom_message=msg, candidates=table)

    def _source_data(self, source: str) -> SourceData:
        entry = self._table().get(source)
        if entry is None:
            raise self._error(source)
        section, hdf5_name, fis = entry
        used = files_in_use(fis, None, self._train_ids, self.inc_suspect_trains)
        # The SourceData is named by its group in the files (that is where it
        # reads from); the AGG@ prefix only chose which files it reads.
        return SourceData(hdf5_name, section, used, None, self._train_ids, hdf5_name,
                          self.is_single_run, self.inc_suspect_trains)

    def __getitem__(self, item):
        if isinstance(item, str):
            return self._source_data(item)
        if (isinstance(item, tuple) and len(item) == 2
                and all(isinstance(x, str) for x in item)):
            return self._source_data(item[0])[item[1]]
        raise TypeError(f"Expected aux[source] or aux[source, key], got {item!r}")

    # -- display -------------------------------------------------------------------
    def __str__(self):
        return (f"<xfeldata.AuxiliaryIndexer for {len(self._table())} sources "
                f"and {len(self._train_ids)} trains>")

    __repr__ = __str__

    def info(self, details_for_sources=(), with_aggregators=False):
        """Print the auxiliary sources (and details of some), as ``DataCollection.info``.

        Parameters
        ----------
        details_for_sources : str or sequence of str
            Glob patterns of sources whose index groups and keys are listed.
        with_aggregators : bool
            Show each source's aggregator in brackets.
        """
        from .display import format_auxiliary
        print(format_auxiliary(self, details_for_sources, with_aggregators))

    def _aggregator_of(self, name: str) -> str:
        return _aggregator(self._table()[name][2][0])
