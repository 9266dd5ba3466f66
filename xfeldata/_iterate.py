"""Train-wise reading: the engine behind ``trains()`` and ``train_from_id()``.

Reading train by train with one HDF5 read per key per train is what makes
naive iteration slow: a run of 50 sources and 10,000 trains would make half
a million small reads. Here the trains are taken in *batches*; for every key
each file's block of rows for the batch is read once (one
:class:`~xfeldata.core.plan.ReadPlan`, executed by
:func:`xfeldata._execute.execute`), and the per-train values are slices
(views) of that block.

How a batch is read
-------------------
Once per iteration and index group of a source, :func:`train_table` (pure)
finds for every train to yield the file holding it and its ``first`` /
``count`` there (FORMAT.md 3.1, per-train access: the first file holding the
train, valid there unless suspect trains are included). A batch is a slice
of that table: :func:`batch_rows` (pure, vectorised over trains and files)
merges the row ranges of its trains with data where they touch or overlap,
so a well-formed INDEX gives one range per file and batch, and every
train's entries are ``buffer[start:start + count]``. For a well-formed INDEX
these are exactly the rows ``KeyData.ndarray()`` holds for the train; for a
broken one (gaps, overlaps) they are the rows ``first``/``count`` name, as
``train_from_id`` reads them, so ``trains()`` and ``train_from_id()`` always
agree. ``train_from_id`` is a batch of one train.

All keys of one index group share those ranges: the INDEX work is done once
per group, then one plan per key and batch is executed.

Batches hold at most :data:`BATCH_BYTES` of data (estimated from the INDEX
counts, at least one train) and at most :data:`MAX_BATCH_TRAINS` trains, so
memory stays bounded whatever the run's size. Values handed out are views
into the batch's arrays: each batch has its own arrays, so changing a value
in place affects nothing else.

What a train dict holds (API.md 2.2)
------------------------------------
Every selected source has ``'metadata': {'source': name, 'timestamp.tid':
tid}``. CONTROL keys give one entry (``ds[first]``); INSTRUMENT keys give one
entry for a count of 1 (unless ``keep_dims``), a slice for more, and are
left out for a count of 0. Variable-length strings stay ``bytes`` (what one
HDF5 entry reads as); ``KeyData`` methods give ``str``, as ``ndarray()`` does.
"""
from __future__ import annotations

import attrs
import numpy as np

from . import _execute
from .core import plan as _plan
from .exceptions import TrainIDError

__all__ = ['BATCH_BYTES', 'MAX_BATCH_TRAINS', 'TrainTable', 'RowMap', 'TrainLayout',
           'train_table', 'batch_rows', 'train_rows', 'batch_bounds', 'layout_of_collection',
           'layout_of_key', 'plan_iteration', 'read_batch', 'iterate_trains',
           'collection_train', 'iterate_key_trains', 'key_train']

#: Most bytes of data one batch of trains holds (estimated from the INDEX).
BATCH_BYTES = 1 << 26
#: Most trains in one batch: bounds the time to the first train and the
#: per-train bookkeeping, while amortising the per-key cost of a read (on
#: 50,000 trains of control data, 1024 reads in a third of the time of 256).
MAX_BATCH_TRAINS = 1024


# -- pure: where each train's entries are -----------------------------------------------

@attrs.frozen(eq=False)
class TrainTable:
    """Per train of a train list: the file holding it, and first/count there.

    Built once per iteration and index group (:func:`train_table`); a batch
    is then a slice of it (:func:`batch_rows`), so the work per batch does
    not grow with the number of files or trains of the run.

    Attributes
    ----------
    paths : tuple of str
        The files, by number.
    file : numpy.ndarray of int64
        Per train: number of the file it is taken from, -1 if none holds it.
    first, count : numpy.ndarray of int64
        Per train: its INDEX ``first``/``count`` in that file (count 0 if none).
    """
    paths: tuple
    file: np.ndarray
    first: np.ndarray
    count: np.ndarray

    def __len__(self):
        return len(self.file)

    def take(self, which) -> 'TrainTable':
        """The table of some of the trains (a mask, indices or a slice)."""
        return TrainTable(self.paths, self.file[which], self.first[which], self.count[which])


def train_table(files, train_ids, inc_suspect_trains=True) -> TrainTable:
    """Which file holds each of ``train_ids``, and the train's first/count there.

    Per-train access (FORMAT.md 3.1): a train is taken from the first file
    holding it (valid there, unless suspect trains are included), at its
    first position in that file.

    Parameters
    ----------
    files : sequence of FileKeyIndex
        The files holding the source, with the INDEX of one group.
    train_ids : array_like of uint64
        Sorted, without duplicates.
    inc_suspect_trains : bool

    Examples
    --------
    >>> from xfeldata.core.plan import FileKeyIndex
    >>> f = FileKeyIndex('/a.h5', np.array([5, 6, 7, 8], np.uint64), np.ones(4, bool),
    ...                  np.array([0, 2, 2, 5], np.uint64), np.array([2, 0, 3, 1], np.uint64))
    >>> t = train_table([f], np.array([4, 5, 7, 8], np.uint64))
    >>> t.file.tolist(), t.first.tolist(), t.count.tolist()
    ([-1, 0, 0, 0], [0, 0, 2, 5], [0, 2, 3, 1])
    """
    files = tuple(files)
    tids = np.asarray(train_ids, dtype=np.uint64).reshape(-1)
    file = np.full(len(tids), -1, dtype=np.int64)
    first = np.zeros(len(tids), dtype=np.int64)
    count = np.zeros(len(tids), dtype=np.int64)
    for i, f in enumerate(files):
        m = min(len(f.train_ids), len(f.firsts), len(f.counts))
        ftids = np.asarray(f.train_ids, dtype=np.uint64)
        pos = _plan.selected_positions(ftids, np.asarray(f.valid, bool), tids,
                                       inc_suspect_trains)
        if not len(pos):
            continue
        if pos[-1] >= m:
            # A selected train past the end of a short INDEX: IndexError, as
            # EXtra-data's per-train access raises; the message says why.
            raise IndexError(
                f"{f.path}: INDEX has {m} first/count entries, but train "
                f"{int(ftids[pos[-1]])} is at position {int(pos[-1])}; the file's index "
                "is inconsistent (xfeldata validate reports it)")
        ix, k = np.unique(np.searchsorted(tids, ftids[pos]), return_index=True)
        pos = pos[k]
        new = file[ix] < 0
        ix, pos = ix[new], pos[new]
        file[ix] = i
        first[ix] = np.asarray(f.firsts)[pos]
        count[ix] = np.asarray(f.counts)[pos]
    return TrainTable(tuple(f.path for f in files), file, first, count)


@attrs.frozen(eq=False)
class RowMap:
    """Rows to read for a batch of trains, and each train's place in the result.

    Attributes
    ----------
    paths : tuple of str
        Per range: the file to read.
    src_start, src_stop, dst_start : tuple of int
        Per range: dataset rows ``src_start:src_stop`` go to rows
        ``dst_start:`` of the batch buffer (ranges follow each other).
    n_rows : int
        Rows of the batch buffer.
    held : numpy.ndarray of bool
        Per train: some file holds it (its count may be 0).
    start, count : numpy.ndarray of int64
        Per train: its entries are ``buffer[start:start + count]``.
    """
    paths: tuple
    src_start: tuple
    src_stop: tuple
    dst_start: tuple
    n_rows: int
    held: np.ndarray
    start: np.ndarray
    count: np.ndarray


def batch_rows(table: TrainTable) -> RowMap:
    """The row ranges to read for the trains of ``table``, merged per file.

    The rows of the trains with data are merged where they touch or overlap
    (one range per file for a well-formed INDEX); a gap starts a new range.
    Vectorised over trains and files: trains are ordered by (file, first)
    and a running maximum of row ends finds the ranges.

    Examples
    --------
    >>> t = TrainTable(('/a.h5',), np.array([-1, 0, 0, 0]), np.array([0, 0, 2, 5]),
    ...                np.array([0, 2, 3, 1]))
    >>> m = batch_rows(t)
    >>> m.src_start, m.src_stop, m.n_rows
    ((0,), (6,), 6)
    >>> m.held.tolist(), m.start.tolist(), m.count.tolist()
    ([False, True, True, True], [0, 0, 2, 5], [0, 2, 3, 1])
    """
    n = len(table)
    held = table.file >= 0
    count = np.where(held, table.count, 0).astype(np.int64)
    start = np.zeros(n, dtype=np.int64)
    w = np.flatnonzero(count)
    if not len(w):
        return RowMap((), (), (), (), 0, held, start, count)
    order = w[np.lexsort((table.first[w], table.file[w]))]
    fno, lo_t = table.file[order], table.first[order].astype(np.int64)
    stop_t = lo_t + count[order]
    # Offsetting each file's rows past every row of the files before it lets
    # one running maximum serve all files: ranges never merge across files.
    off = fno * (int(stop_t.max()) + 1)
    reach = np.maximum.accumulate(stop_t + off)
    brk = np.ones(len(order), dtype=bool)
    brk[1:] = lo_t[1:] + off[1:] > reach[:-1]
    starts = np.flatnonzero(brk)
    ends = np.append(starts[1:], len(order)) - 1
    lo, hi = lo_t[starts], reach[ends] - off[ends]
    sizes = hi - lo
    dst = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    gid = np.cumsum(brk) - 1
    start[order] = dst[gid] + (lo_t - lo[gid])
    paths = tuple(table.paths[i] for i in fno[starts].tolist())
    return RowMap(paths, tuple(lo.tolist()), tuple(hi.tolist()), tuple(dst.tolist()),
                  int(sizes.sum()), held, start, count)


def train_rows(files, train_ids, inc_suspect_trains=True) -> RowMap:
    """Where the entries of each of ``train_ids`` are: ``batch_rows(train_table(...))``.

    Examples
    --------
    >>> from xfeldata.core.plan import FileKeyIndex
    >>> f = FileKeyIndex('/a.h5', np.array([5, 6], np.uint64), np.ones(2, bool),
    ...                  np.array([0, 1], np.uint64), np.array([1, 1], np.uint64))
    >>> train_rows([f], np.array([6], np.uint64)).start.tolist()
    [0]
    """
    return batch_rows(train_table(files, train_ids, inc_suspect_trains))


def batch_bounds(bytes_per_train, max_bytes=None, max_trains=None) -> list:
    """Cut trains into consecutive batches within a byte and a train budget.

    Each batch has at least one train, so a train larger than ``max_bytes``
    is a batch of its own.

    Examples
    --------
    >>> batch_bounds(np.array([10, 10, 10, 50, 10]), max_bytes=25, max_trains=10)
    [(0, 2), (2, 3), (3, 4), (4, 5)]
    >>> batch_bounds(np.zeros(5), max_bytes=25, max_trains=2)
    [(0, 2), (2, 4), (4, 5)]
    """
    max_bytes = BATCH_BYTES if max_bytes is None else max_bytes
    max_trains = MAX_BATCH_TRAINS if max_trains is None else max(1, int(max_trains))
    b = np.asarray(bytes_per_train, dtype=np.float64).reshape(-1)
    cum = np.concatenate([[0.0], np.cumsum(b)])
    out, i, n = [], 0, len(b)
    while i < n:   # a loop over batches, not trains
        j = int(np.searchsorted(cum, cum[i] + max_bytes, 'right')) - 1
        j = min(max(j, i + 1), i + max_trains, n)
        out.append((i, j))
        i = j
    return out


# -- what to read ---------------------------------------------------------------------------

@attrs.frozen(eq=False)
class _Key:
    name: str
    dataset: str
    dtype: np.dtype
    entry_shape: tuple


@attrs.frozen(eq=False)
class _Group:
    """Selected keys of one source sharing one index group, and the group's INDEX."""
    source: str
    group: str
    files: tuple        # FileKeyIndex per file holding the group
    keys: tuple         # _Key, sorted by name

    @property
    def entry_bytes(self) -> int:
        return sum(int(np.prod(k.entry_shape, dtype=np.int64)) * k.dtype.itemsize
                   for k in self.keys)


@attrs.frozen(eq=False)
class _Source:
    name: str
    control: bool
    legacy: bool
    files: tuple        # FileIndex records the selection reads the source from
    groups: tuple       # _Group


@attrs.frozen(eq=False)
class TrainLayout:
    """What train-wise reading of a selection reads: sources, their groups and keys."""
    sources: tuple
    inc_suspect_trains: bool

    @property
    def groups(self):
        return tuple(g for s in self.sources for g in s.groups)


def _groups_of(source, keydatas) -> tuple:
    by_group = {}
    for kd in keydatas:
        by_group.setdefault(kd.index_group, []).append(kd)
    out = []
    for g, kds in sorted(by_group.items()):
        # Every key of a group has the same INDEX: take it from the first.
        fkis = tuple(kds[0]._file_key_indexes())
        keys = tuple(_Key(kd.key, kd.hdf5_data_path, np.dtype(kd.dtype),
                          tuple(kd.entry_shape)) for kd in kds)
        out.append(_Group(source, g, fkis, keys))
    return tuple(out)


def layout_of_collection(dc) -> TrainLayout:
    """The :class:`TrainLayout` of every selected source and key of a DataCollection."""
    legacy = dc._index.legacy_sources
    sources = []
    for name in sorted(dc._selection.source_names):
        # Selected legacy names are read like any source, without the warning
        # meant for a user's own access by that name.
        sd = dc._source_data(name, warn=False)
        kds = [sd[k] for k in sorted(sd.keys())]
        sources.append(_Source(name, sd.section == 'CONTROL', name in legacy,
                               tuple(sd._files), _groups_of(name, kds)))
    return TrainLayout(tuple(sources), dc.inc_suspect_trains)


def layout_of_key(kd) -> TrainLayout:
    """The :class:`TrainLayout` of one KeyData."""
    src = _Source(kd.source, kd.section == 'CONTROL', False, tuple(kd._files),
                  _groups_of(kd.source, [kd]))
    return TrainLayout((src,), kd.inc_suspect_trains)


# -- effects: reading a batch -------------------------------------------------------------------

def _read_key(group, key, rows: RowMap, as_bytes):
    eshape = key.entry_shape
    steps = tuple(_plan.ReadStep(p, key.dataset, a, b, d, d + (b - a))
                  for p, a, b, d in zip(rows.paths, rows.src_start, rows.src_stop,
                                        rows.dst_start))
    plan = _plan.ReadPlan(key.dtype, (rows.n_rows,) + eshape, steps,
                          label=f"{group.source} {key.name}")
    # Train dicts hold what one HDF5 entry reads as: bytes, not str.
    return _execute.execute(plan, decode_strings=not as_bytes)


def read_batch(layout: TrainLayout, tables, a=0, b=None, as_bytes=True) -> list:
    """Read trains ``a:b`` of an iteration: ``[(source, key, data, start, count, held), ...]``.

    ``tables`` holds one :class:`TrainTable` per group of ``layout`` over
    the iteration's trains. One :class:`~xfeldata.core.plan.ReadPlan` per key
    (one read per file for a well-formed INDEX); ``start``/``count``/``held``
    are lists aligned with the batch's trains (fast per-train indexing).
    """
    out = []
    for g, table in zip(layout.groups, tables):
        rows = batch_rows(table.take(slice(a, b)))
        start, count, held = rows.start.tolist(), rows.count.tolist(), rows.held.tolist()
        for k in g.keys:
            out.append((g.source, k.name, _read_key(g, k, rows, as_bytes), start, count, held))
    return out


# -- which trains, in which batches ---------------------------------------------------------------

def _held_by_files(files, train_ids, inc_suspect_trains):
    parts = [f.train_ids if inc_suspect_trains else f.train_ids[f.valid] for f in files]
    if not parts:
        return np.zeros(len(train_ids), dtype=bool)
    return np.isin(train_ids, np.concatenate(parts))


def plan_iteration(layout: TrainLayout, train_ids, require_all=False, max_bytes=None,
                   max_trains=None):
    """The trains to yield, their tables per group, and the batches: done once.

    ``require_all`` keeps the trains every control source's files hold and
    where every non-legacy instrument source has entries in each selected
    index group (API.md 2.2).

    Returns
    -------
    (train_ids, tables, bounds)
        The kept train IDs, one :class:`TrainTable` per group of ``layout``
        over them, and ``(a, b)`` batch bounds (:func:`batch_bounds`, with
        the bytes per train estimated from the counts).
    """
    inc = layout.inc_suspect_trains
    tids = np.asarray(train_ids, dtype=np.uint64).reshape(-1)
    tables = [train_table(g.files, tids, inc) for g in layout.groups]
    if require_all:
        keep = np.ones(len(tids), dtype=bool)
        by_name = {s.name: s for s in layout.sources}
        for s in layout.sources:
            if s.control:
                keep &= _held_by_files(s.files, tids, inc)
        for g, t in zip(layout.groups, tables):
            s = by_name[g.source]
            if not (s.control or s.legacy):
                keep &= t.count > 0
        tids, tables = tids[keep], [t.take(keep) for t in tables]
    nbytes = np.zeros(len(tids), dtype=np.float64)
    for g, t in zip(layout.groups, tables):
        nbytes += t.count * float(g.entry_bytes)
    return tids, tables, batch_bounds(nbytes, max_bytes, max_trains)


# -- train dicts ------------------------------------------------------------------------------

def _train_dicts(layout, batch, columns, flat_keys, keep_dims):
    controls = {s.name for s in layout.sources if s.control}
    names = [s.name for s in layout.sources]
    # Keys in name order after 'metadata' (columns come grouped by index group).
    cols = sorted(((src, key, data, start, count, src in controls)
                   for src, key, data, start, count, _ in columns), key=lambda c: c[:2])
    for i, tid in enumerate(batch.tolist()):
        d = {src: {'metadata': {'source': src, 'timestamp.tid': tid}} for src in names}
        for src, key, data, start, count, control in cols:
            n = count[i]
            if n == 0:
                continue
            a = start[i]
            # CONTROL: one entry (ds[first]) even if keep_dims; INSTRUMENT:
            # one entry for a count of 1 unless keep_dims, else a slice.
            d[src][key] = data[a] if control or (n == 1 and not keep_dims) else data[a:a + n]
        if flat_keys:
            d = {(src, k): v for src, sd in d.items() for k, v in sd.items()}
        yield tid, d


def iterate_trains(dc, require_all=False, flat_keys=False, keep_dims=False, *,
                   max_bytes=None, max_trains=None):
    """Yield ``(train ID, dict)`` for the selected trains of a DataCollection.

    Parameters
    ----------
    dc : DataCollection
    require_all : bool
        Skip trains where a control source's files lack the train or a
        (non-legacy) instrument source has no entries in a selected index group.
    flat_keys : bool
        ``{(source, key): value}`` instead of ``{source: {key: value}}``.
    keep_dims : bool
        INSTRUMENT keys with one entry give a length-1 array.
    max_bytes, max_trains : int, optional
        Batch budget (default :data:`BATCH_BYTES`, :data:`MAX_BATCH_TRAINS`);
        changes how much is read at once, never what is yielded.

    Examples
    --------
    >>> import tempfile, xfeldata
    >>> from xfeldata.testing import make_demo_run
    >>> d = tempfile.mkdtemp(); _ = make_demo_run(d)
    >>> run = xfeldata.RunDirectory(d).select('SPB_IRU_MOTORS/MOTOR/X', 'actualPosition')
    >>> tid, data = next(iterate_trains(run))
    >>> sorted(data['SPB_IRU_MOTORS/MOTOR/X'])
    ['actualPosition.value', 'metadata']
    """
    layout = layout_of_collection(dc)
    tids, tables, bounds = plan_iteration(layout, dc._selection.train_ids, require_all,
                                          max_bytes, max_trains)
    for a, b in bounds:
        columns = read_batch(layout, tables, a, b)
        yield from _train_dicts(layout, tids[a:b], columns, flat_keys, keep_dims)


def _check_selected(train_ids, train_id) -> int:
    tid = int(train_id)
    ix = np.searchsorted(train_ids, np.uint64(tid)) if tid >= 0 else len(train_ids)
    if ix >= len(train_ids) or int(train_ids[ix]) != tid:
        raise TrainIDError(train_id)
    return tid


def collection_train(dc, train_id, flat_keys=False, keep_dims=False):
    """``(train ID, dict)`` for one selected train: a batch of one train.

    Raises
    ------
    TrainIDError
        ``train_id`` is not among the selected trains.
    """
    tid = _check_selected(dc._selection.train_ids, train_id)
    layout = layout_of_collection(dc)
    tids, tables, _ = plan_iteration(layout, [tid])
    return next(_train_dicts(layout, tids, read_batch(layout, tables), flat_keys, keep_dims))


# -- one key ------------------------------------------------------------------------------------

def iterate_key_trains(kd, keep_dims=False, include_empty=False, *, max_bytes=None,
                       max_trains=None):
    """Yield ``(numpy.uint64 train ID, value)`` for one key (``KeyData.trains``).

    Trains are taken in train ID order; trains no file holds are skipped.
    A count of 1 gives the entry (unless ``keep_dims``); more, or
    ``keep_dims``, give a slice (possibly empty); a count of 0 is skipped
    unless ``include_empty`` (then the value is None). Strings are ``str``,
    as in ``ndarray()``.
    """
    layout = layout_of_key(kd)
    tids, tables, bounds = plan_iteration(layout, kd._train_ids, False, max_bytes, max_trains)
    for a, b in bounds:
        ((_, _, data, start, count, held),) = read_batch(layout, tables, a, b, as_bytes=False)
        for i, tid in enumerate(tids[a:b]):
            if not held[i]:
                continue
            n, a = count[i], start[i]
            if n == 1 and not keep_dims:
                yield tid, data[a]
            elif n or keep_dims:
                yield tid, data[a:a + n]
            elif include_empty:
                yield tid, None


def key_train(kd, train_id, keep_dims=False):
    """``(train ID, value)`` for one selected train of one key (``KeyData.train_from_id``).

    The entry for a count of 1 (unless ``keep_dims``), else a slice, empty
    when the train has no data or no file holds it.

    Raises
    ------
    TrainIDError
        ``train_id`` is not among the selected trains.
    """
    tid = _check_selected(kd._train_ids, train_id)
    layout = layout_of_key(kd)
    _, tables, _ = plan_iteration(layout, [tid])
    ((_, _, data, start, count, _),) = read_batch(layout, tables, as_bytes=False)
    n, a = count[0], start[0]
    return tid, (data[a] if n == 1 and not keep_dims else data[a:a + n])
