"""Read plans: what to read, from where, into which rows of the output (pure).

Every read is a plan first. A :class:`ReadPlan` is a value: it prints
(:meth:`ReadPlan.explain`), measures itself (``nbytes``, ``n_reads``) and is
handed to an executor (:func:`xfeldata._execute.execute`), which reads it
into one preallocated array.

Planning is vectorised over trains: per file, the part of the (sorted)
selection within the file's train range is compared with the file's train IDs
(one comparison when the whole file is selected, the usual case; a
``searchsorted`` otherwise), and chunks are cut with ``diff``/``flatnonzero``.
Python loops only over files and over the resulting steps (to make the step
records), never over trains.

Chunks and steps
----------------
A *chunk* (:func:`chunk_table`, EXtra-data's ``DataChunk``) is a maximal run of
selected trains at consecutive positions of one file whose entries are
consecutive rows of the dataset. It ends where the file changes, where an
unselected train (or, excluding suspect trains, an invalid one) intervenes,
or where the INDEX is not contiguous (``first`` of a train with data is not
the end of the previous train with data; trains without data are ignored, as
their ``first`` carries no information). Chunks are ordered by their first
train ID, then by file path. A :class:`ReadStep` is a chunk with at least one
row; so the output's rows follow the trains in that order.

How the steps are read
----------------------
:func:`read_blocks` groups consecutive steps of one file into the calls an
executor makes: small gaps between steps are read over (one covering read
into scratch memory, then the wanted rows are gathered), other steps are
combined into one read with a union of hyperslabs (at most
``max_hyperslabs`` per read, as HDF5 combines hyperslab unions in quadratic
time). The grouping is a pure function of the plan, so it is tested without
files and every executor makes the same calls.
"""
from __future__ import annotations

import math
from functools import partial
from itertools import repeat
from typing import NamedTuple

import attrs
import numpy as np

from .records import readonly

__all__ = ['ReadStep', 'ReadPlan', 'ReadBlock', 'FileKeyIndex', 'ChunkTable', 'plan_key',
           'chunk_table', 'read_blocks', 'entry_train_ids', 'selected_positions',
           'contiguous_regions', 'counts_for_trains', 'roi_key', 'roi_from_key', 'partition']


# -- the per-entry region of interest ------------------------------------------------

def roi_key(roi) -> tuple:
    """A hashable, printable form of a per-entry index expression.

    Integers, slices, ``Ellipsis``, ``None`` (new axis) and integer or boolean
    arrays (any shape) round-trip through :func:`roi_from_key`.

    Examples
    --------
    >>> roi_key(np.s_[0, 1:5])
    (('int', 0), ('slice', 1, 5, None))
    >>> roi_key(([2, 0],))
    (('array', 'i', (2,), (2, 0)),)
    """
    if not isinstance(roi, tuple):
        roi = (roi,)
    out = []
    for r in roi:
        if isinstance(r, slice):
            out.append(('slice', _opt_int(r.start), _opt_int(r.stop), _opt_int(r.step)))
        elif r is Ellipsis:
            out.append(('...',))
        elif r is None:
            out.append(('newaxis',))
        elif isinstance(r, (int, np.integer)) and not isinstance(r, (bool, np.bool_)):
            out.append(('int', int(r)))
        else:
            a = np.asarray(r)
            kind = 'b' if a.dtype.kind == 'b' else 'i'
            if a.dtype.kind not in 'biu' and a.size:
                raise IndexError(f"unsupported index in roi: {r!r}")
            vals = a.astype(bool if kind == 'b' else np.int64).ravel().tolist()
            out.append(('array', kind, tuple(a.shape), tuple(vals)))
    return tuple(out)


def _opt_int(x):
    return None if x is None else int(x)


def roi_from_key(key) -> tuple:
    """The index expression a :func:`roi_key` stands for.

    Examples
    --------
    >>> roi_from_key(roi_key(np.s_[..., 2:8:2]))
    (Ellipsis, slice(2, 8, 2))
    """
    out = []
    for r in key:
        tag = r[0]
        if tag == 'slice':
            out.append(slice(*r[1:]))
        elif tag == '...':
            out.append(Ellipsis)
        elif tag == 'newaxis':
            out.append(None)
        elif tag == 'int':
            out.append(r[1])
        else:
            _, kind, shape, vals = r
            dt = bool if kind == 'b' else np.int64
            out.append(np.array(vals, dtype=dt).reshape(shape))
    return tuple(out)


def _fmt_roi(key) -> str:
    parts = []
    for r in key:
        tag = r[0]
        if tag == 'slice':
            a, b, c = (('' if x is None else str(x)) for x in r[1:])
            parts.append(f"{a}:{b}" + (f":{c}" if c else ''))
        elif tag == '...':
            parts.append('...')
        elif tag == 'newaxis':
            parts.append('None')
        elif tag == 'int':
            parts.append(str(r[1]))
        else:
            parts.append(str(roi_from_key((r,))[0].tolist()))
    return '[' + ', '.join(parts) + ']'


# -- plan records ----------------------------------------------------------------------

class ReadStep(NamedTuple):
    """Read rows ``src_start:src_stop`` of one dataset into output rows ``dst_start:dst_stop``.

    ``first_train``/``last_train`` are the train IDs of the first and last
    entry read and ``n_trains`` the number of trains with entries in the step
    (0 when unknown, for steps not made by :func:`plan_key`).

    A named tuple rather than an attrs class: a plan can hold tens of
    thousands of steps, and a tuple is made about twice as fast.

    Examples
    --------
    >>> ReadStep('/r/A.h5', '/CONTROL/x/value', 10, 15, 0, 5).n_rows
    5
    """
    path: str
    dataset: str
    src_start: int
    src_stop: int
    dst_start: int
    dst_stop: int
    first_train: int = 0
    last_train: int = 0
    n_trains: int = 0

    @property
    def n_rows(self) -> int:
        return self.src_stop - self.src_start


_new_step = partial(tuple.__new__, ReadStep)


def _plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@attrs.frozen
class ReadPlan:
    """A plan for reading one key into one preallocated output array.

    Attributes
    ----------
    dtype : numpy.dtype
    shape : tuple of int
        Output shape: ``(entries,) + entry shape`` (after the roi).
    steps : tuple of ReadStep
        In output order; their destination rows tile ``0:shape[0]``.
    roi : tuple
        :func:`roi_key` form of the per-entry index (``()`` = whole entries).
    label : str

    Examples
    --------
    >>> p = ReadPlan(np.dtype('f8'), (5,), (ReadStep('/r/A.h5', '/CONTROL/x/value', 0, 5, 0, 5),))
    >>> p.nbytes, p.n_reads, p.n_files
    (40, 1, 1)
    """
    dtype: np.dtype
    shape: tuple
    steps: tuple
    roi: tuple = ()
    label: str = ''

    @property
    def nbytes(self) -> int:
        """Bytes of the output array."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def n_reads(self) -> int:
        """Number of contiguous row ranges read (one per step)."""
        return len(self.steps)

    @property
    def n_files(self) -> int:
        return len({s.path for s in self.steps})

    @property
    def entry_nbytes(self) -> int:
        """Bytes of one output entry (one row of the output)."""
        return math.prod(self.shape[1:]) * self.dtype.itemsize

    def _repr_html_(self) -> str:
        """Notebook display: the explain() text, escaped (first 10 steps)."""
        import html
        return f"<pre>{html.escape(self.explain(max_steps=10))}</pre>"

    def explain(self, max_steps: int | None = None) -> str:
        """Plain text describing the plan; stable, so tests compare it exactly.

        One header line, the dataset when all steps read the same one, the
        roi if any, then one line per step: file name, source rows, output
        rows, and the trains the rows belong to.

        Parameters
        ----------
        max_steps : int, optional
            Print at most this many steps, then a line counting the others.

        Examples
        --------
        >>> s = ReadStep('/run/RAW-R0001-DA01-S00000.h5', '/CONTROL/A/x/value', 0, 50, 0, 50,
        ...              10000, 10049, 50)
        >>> print(ReadPlan(np.dtype('f4'), (50,), (s,), label='A x.value').explain())
        ReadPlan A x.value: (50,) float32, 200 bytes in 1 read from 1 file
          dataset /CONTROL/A/x/value
          RAW-R0001-DA01-S00000.h5 rows 0:50 -> out[0:50], 50 trains 10000..10049
        """
        head = (f"ReadPlan {self.label or '(unnamed)'}: {self.shape} {self.dtype}, "
                f"{self.nbytes} bytes in {_plural(self.n_reads, 'read')} from "
                f"{_plural(self.n_files, 'file')}")
        lines = [head]
        datasets = {s.dataset for s in self.steps}
        one_dataset = len(datasets) == 1
        if one_dataset:
            lines.append(f"  dataset {next(iter(datasets))}")
        if self.roi:
            lines.append(f"  roi per entry: {_fmt_roi(self.roi)}")
        shown = self.steps if max_steps is None else self.steps[:max(0, max_steps)]
        for s in shown:
            name = s.path.rsplit('/', 1)[-1]
            where = name if one_dataset else f"{name}:{s.dataset}"
            line = f"  {where} rows {s.src_start}:{s.src_stop} -> out[{s.dst_start}:{s.dst_stop}]"
            if s.n_trains == 1:
                line += f", 1 train {s.first_train}"
            elif s.n_trains:
                line += f", {s.n_trains} trains {s.first_train}..{s.last_train}"
            lines.append(line)
        if len(shown) < len(self.steps):
            lines.append(f"  ... {_plural(len(self.steps) - len(shown), 'more read')}")
        return '\n'.join(lines)


def partition(plan: ReadPlan, max_bytes: int) -> tuple:
    """Cut a plan into plans of at most ``max_bytes`` of output each (pure).

    Consecutive steps are put together until a piece is full; a step larger
    than the room left is split. Each piece's destination rows start at 0, and
    executing the pieces and concatenating them gives the whole plan's output.
    A piece holds at least one row, however large rows are. Dask arrays,
    the writer and the distributed helpers cut their work with it.

    Examples
    --------
    >>> steps = (ReadStep('/a.h5', '/x', 0, 5, 0, 5), ReadStep('/b.h5', '/x', 0, 3, 5, 8))
    >>> p = ReadPlan(np.dtype('f8'), (8,), steps)
    >>> [[(s.path, s.src_start, s.src_stop, s.dst_start, s.dst_stop) for s in q.steps]
    ...  for q in partition(p, 48)]
    [[('/a.h5', 0, 5, 0, 5), ('/b.h5', 0, 1, 5, 6)], [('/b.h5', 1, 3, 0, 2)]]
    """
    per_piece = max(1, int(max_bytes) // max(1, plan.entry_nbytes))
    if plan.shape[0] <= per_piece:
        return (plan,) if plan.steps else ()
    pieces, current, rows = [], [], 0

    def flush():
        nonlocal current, rows
        if current:
            pieces.append(attrs.evolve(plan, shape=(rows,) + tuple(plan.shape[1:]),
                                       steps=tuple(current)))
        current, rows = [], 0

    for s in plan.steps:
        a = s.src_start
        while a < s.src_stop:
            take = min(s.src_stop - a, per_piece - rows)
            whole = take == s.n_rows
            current.append(ReadStep(s.path, s.dataset, a, a + take, rows, rows + take,
                                    *((s.first_train, s.last_train, s.n_trains)
                                      if whole else ())))
            rows += take
            a += take
            if rows == per_piece:
                flush()
    flush()
    return tuple(pieces)


@attrs.frozen(eq=False)
class FileKeyIndex:
    """What planning needs from one file: its trains, validity and one group's index.

    ``firsts``/``counts`` are aligned with ``train_ids`` (longer arrays are
    cut to the shortest of the three).
    """
    path: str
    train_ids: np.ndarray
    valid: np.ndarray
    firsts: np.ndarray
    counts: np.ndarray


# -- selecting trains ----------------------------------------------------------------

def _sorted_ids(sel_train_ids) -> np.ndarray:
    a = np.asarray(sel_train_ids, dtype=np.uint64).reshape(-1)
    if len(a) > 1 and np.any(a[1:] < a[:-1]):
        a = np.sort(a)
    return a


def _isin_sorted(values: np.ndarray, sorted_ref: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_ref)`` for a sorted reference, in O(n log m)."""
    if len(sorted_ref) == 0 or len(values) == 0:
        return np.zeros(len(values), dtype=bool)
    ix = np.searchsorted(sorted_ref, values)
    np.minimum(ix, len(sorted_ref) - 1, out=ix)
    return sorted_ref[ix] == values


def selected_positions(train_ids, valid, sel_train_ids, inc_suspect_trains=True) -> np.ndarray:
    """Positions in a file's train list that are selected (and valid if required).

    Examples
    --------
    >>> selected_positions(np.array([5, 6, 7, 8], np.uint64), np.array([1, 1, 0, 1], bool),
    ...                    np.array([6, 7, 8], np.uint64), inc_suspect_trains=False)
    array([1, 3])
    """
    mask = _isin_sorted(np.asarray(train_ids, dtype=np.uint64), _sorted_ids(sel_train_ids))
    if not inc_suspect_trains:
        mask &= np.asarray(valid, dtype=bool)
    return np.nonzero(mask)[0]


def contiguous_regions(positions) -> list:
    """Split sorted positions into maximal runs of consecutive integers.

    Examples
    --------
    >>> contiguous_regions(np.array([0, 1, 2, 5, 6, 9]))
    [(0, 3), (5, 7), (9, 10)]
    """
    p = np.asarray(positions)
    if len(p) == 0:
        return []
    breaks = np.nonzero(np.diff(p) != 1)[0]
    starts = np.concatenate([[0], breaks + 1])
    stops = np.concatenate([breaks + 1, [len(p)]])
    return list(zip(p[starts].tolist(), (p[stops - 1] + 1).tolist()))


def _file_selection(f, sel, inc_suspect_trains):
    """The selected trains of one file: ``(positions, indexes in sel, n)``.

    ``positions`` is None when every train of the file is selected and its
    train IDs are ``sel[lo:lo + n]`` (the usual case, found without searching);
    the indexes in ``sel`` are then the int ``lo``.
    """
    n = min(len(f.train_ids), len(f.firsts), len(f.counts))
    tids = np.asarray(f.train_ids[:n], dtype=np.uint64)
    z = np.zeros(0, np.int64)
    if n == 0 or len(sel) == 0:
        return z, z, n
    lo = int(np.searchsorted(sel, tids[0]))
    if lo + n <= len(sel) and (sel[lo:lo + n] == tids).all():
        p, sel_ix = None, lo
    else:
        # Only the part of the selection within the file's range can match.
        lo = int(np.searchsorted(sel, tids.min()))
        sub = sel[lo:int(np.searchsorted(sel, tids.max(), 'right'))]
        if len(sub) == 0:
            return z, z, n
        ix = np.minimum(np.searchsorted(sub, tids), len(sub) - 1)
        p = np.flatnonzero(sub[ix] == tids)
        sel_ix = lo + ix[p]
    if not inc_suspect_trains:
        valid = np.asarray(f.valid[:n], dtype=bool)
        if p is None:
            if valid.all():
                return None, lo, n
            p = np.nonzero(valid)[0]
            sel_ix = lo + p
        else:
            ok = valid[p]
            p, sel_ix = p[ok], sel_ix[ok]
    return p, sel_ix, n


def _check_index_lengths(files):
    """A whole-key operation needs first/count for every train of each file."""
    for f in files:
        if len(f.firsts) != len(f.train_ids) or len(f.counts) != len(f.train_ids):
            # ValueError, as EXtra-data raises for such a file; ours names it.
            raise ValueError(
                f"{f.path}: INDEX has {min(len(f.firsts), len(f.counts))} first/count "
                f"entries for {len(f.train_ids)} trains; the file's index is "
                "inconsistent (xfeldata validate reports it)")
        # Corrupted values near 2**64 would wrap around (uint64 sums) or
        # overflow int64 row arithmetic: no dataset has 2**62 rows.
        big = max((int(a.max()) for a in (f.firsts, f.counts) if len(a)), default=0)
        if big >= 2 ** 62:
            raise TypeError(
                f"{f.path}: INDEX first/count value {big} points past the end of any "
                "dataset; the file's index is inconsistent (xfeldata validate reports it)")


def counts_for_trains(files, sel_train_ids, inc_suspect_trains=True) -> np.ndarray:
    """Entry count per selected train (0 where no file holds it), aligned to sel_train_ids.

    Examples
    --------
    >>> f = FileKeyIndex('/a.h5', np.array([5, 6, 7], np.uint64), np.ones(3, bool),
    ...                  np.array([0, 2, 2], np.uint64), np.array([2, 0, 3], np.uint64))
    >>> counts_for_trains([f], np.array([4, 5, 7], np.uint64)).tolist()
    [0, 2, 3]
    """
    _check_index_lengths(files)
    req = np.asarray(sel_train_ids, dtype=np.uint64).reshape(-1)
    sel = _sorted_ids(req)
    out = np.zeros(len(sel), dtype=np.uint64)
    for f in files:
        p, sel_ix, n = _file_selection(f, sel, inc_suspect_trains)
        if p is None:
            out[sel_ix:sel_ix + n] = f.counts[:n]
        elif len(p):
            out[sel_ix] = np.asarray(f.counts)[p]
    if sel is not req and not np.array_equal(sel, req):
        out = out[np.searchsorted(sel, req)]
    return out


# -- chunks ------------------------------------------------------------------------------

@attrs.frozen(eq=False)
class ChunkTable:
    """Chunks of selected trains (see the module docstring), ordered by first train.

    Attributes
    ----------
    files : tuple of FileKeyIndex
    file : ndarray of int64
        Per chunk: position of its file in ``files``.
    bounds : ndarray of int64
        Chunk ``i`` holds ``train_ids[bounds[i]:bounds[i+1]]``.
    train_ids, counts : ndarray of uint64
        The selected trains of all chunks, chunk after chunk, and their counts.
    first_row, n_rows : ndarray of int64
        Per chunk: first dataset row and number of rows.
    n_data_trains : ndarray of int64
        Per chunk: trains with at least one entry.
    first_data_train, last_data_train : ndarray of uint64
        Per chunk: first and last train with entries (0 if none).
    """
    files: tuple
    file: np.ndarray
    bounds: np.ndarray
    train_ids: np.ndarray
    counts: np.ndarray
    first_row: np.ndarray
    n_rows: np.ndarray
    n_data_trains: np.ndarray
    first_data_train: np.ndarray
    last_data_train: np.ndarray

    def __len__(self):
        return len(self.file)


def _whole_file_chunk(tids, firsts, counts):
    """The one chunk of a wholly selected file with a contiguous INDEX, else None.

    Returns Python numbers: (first row, rows, trains with data, first and last
    train with data). This is the usual case; it costs a handful of numpy calls.
    """
    w = np.flatnonzero(counts)
    if len(w) == 0:
        return int(firsts[0]), 0, 0, 0, 0
    return int(firsts[0]), int(counts[w].sum()), len(w), int(tids[w[0]]), int(tids[w[-1]])


def _file_chunks(tids, firsts, counts, p):
    """Chunks of one file's selected trains (``tids``/``firsts``/``counts`` at ``p``).

    Returns per-chunk arrays: start (into the selected trains), first row,
    rows, trains with data, first and last train with data.
    """
    n = len(tids)
    # A chunk is a run of consecutive positions [a, b), read as
    # dataset[first[a] : first[a] + sum(count[a:b])] (FORMAT.md section 3.1):
    # the rows of a valid INDEX follow on. Where they do not (gaps, overlaps,
    # rows past the end) this reads what EXtra-data reads; the validator
    # reports such files.
    w = np.flatnonzero(counts)
    brk = np.zeros(n, dtype=bool)
    brk[0] = True
    if p is not None:
        brk[1:] = np.diff(p) != 1
    starts = np.flatnonzero(brk)
    stops = np.append(starts[1:], n)
    n_rows = np.add.reduceat(counts, starts).astype(np.int64)
    j0 = np.searchsorted(w, starts)
    j1 = np.searchsorted(w, stops)
    has = j1 > j0
    wpad = np.append(w, 0)
    first_row = firsts[starts]
    first_data = np.where(has, tids[wpad[j0]], 0)
    last_data = np.where(has, tids[wpad[np.maximum(j1 - 1, 0)]], 0)
    return (starts, first_row.astype(np.int64), n_rows, (j1 - j0).astype(np.int64),
            first_data.astype(np.uint64), last_data.astype(np.uint64))


def chunk_table(files, sel_train_ids, inc_suspect_trains=True) -> ChunkTable:
    """Cut the selected trains of ``files`` into chunks (vectorised over trains).

    Parameters
    ----------
    files : sequence of FileKeyIndex
    sel_train_ids : array_like of uint64
    inc_suspect_trains : bool
        If False, trains flagged invalid in a file are not taken from it.

    Examples
    --------
    >>> f = FileKeyIndex('/a.h5', np.arange(1, 7, dtype=np.uint64), np.ones(6, bool),
    ...                  np.array([0, 1, 2, 2, 3, 4], np.uint64),
    ...                  np.array([1, 1, 0, 1, 1, 1], np.uint64))
    >>> t = chunk_table([f], np.array([1, 2, 3, 4, 6], np.uint64))
    >>> t.bounds.tolist(), t.first_row.tolist(), t.n_rows.tolist()
    ([0, 4, 5], [0, 4], [3, 1])
    """
    files = tuple(files)
    _check_index_lengths(files)
    sel = _sorted_ids(sel_train_ids)
    tids_parts, count_parts, pieces, rows = [], [], [], []
    dtypes = (np.int64,) * 5 + (np.uint64,) * 2

    def flush():
        if rows:
            pieces.append([np.array(c, dtype=d) for c, d in zip(zip(*rows), dtypes)])
            rows.clear()

    offset = 0
    for i, f in enumerate(files):
        p, _, n = _file_selection(f, sel, inc_suspect_trains)
        if p is not None and len(p) == 0:
            continue
        take = slice(0, n) if p is None else p
        tids = np.asarray(f.train_ids)[take]
        counts = np.asarray(f.counts)[take]
        firsts = np.asarray(f.firsts)[take]
        one = _whole_file_chunk(tids, firsts, counts) if p is None else None
        if one is not None:
            rows.append((i, offset) + one)
        else:
            flush()
            starts, *cols = _file_chunks(tids, firsts, counts, p)
            pieces.append([np.full(len(starts), i, dtype=np.int64), starts + offset, *cols])
        tids_parts.append(tids)
        count_parts.append(counts)
        offset += len(tids)
    flush()
    if not pieces:
        z, zu = np.zeros(0, np.int64), readonly(np.zeros(0, np.uint64))
        return ChunkTable(files, z, np.zeros(1, np.int64), zu, zu, z, z, z, zu, zu)
    chunk_file, starts, first_row, n_rows, n_data, first_data, last_data = (
        c[0] if len(c) == 1 else np.concatenate(c) for c in zip(*pieces))
    tids = np.concatenate(tids_parts).astype(np.uint64, copy=False)
    counts = np.concatenate(count_parts).astype(np.uint64, copy=False)
    stops = np.append(starts[1:], offset)
    order = _chunk_order(files, chunk_file, tids[starts])
    if order is not None:
        lengths = (stops - starts)[order]
        new_stops = np.cumsum(lengths)
        perm = np.repeat(starts[order] - (new_stops - lengths), lengths) + np.arange(offset)
        tids, counts = tids[perm], counts[perm]
        chunk_file, first_row, n_rows, n_data, first_data, last_data = (
            a[order] for a in (chunk_file, first_row, n_rows, n_data, first_data, last_data))
        stops = new_stops
    bounds = np.append(0, stops).astype(np.int64)
    return ChunkTable(files, chunk_file, bounds, readonly(tids), readonly(counts),
                      first_row, n_rows, n_data, first_data, last_data)


def _chunk_order(files, chunk_file, first_tids):
    """Permutation sorting chunks by (first train ID, file path); None if already sorted."""
    if len(first_tids) < 2 or (first_tids[1:] > first_tids[:-1]).all():
        return None
    names = [f.path for f in files]
    rank = np.empty(len(names), dtype=np.int64)
    rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
    r = rank[chunk_file]
    t = first_tids
    if len(t) < 2 or np.all((t[1:] > t[:-1]) | ((t[1:] == t[:-1]) & (r[1:] >= r[:-1]))):
        return None
    return np.lexsort((r, t))


# -- plans ----------------------------------------------------------------------------------

def plan_key(files, dataset: str, dtype, entry_shape, sel_train_ids,
             inc_suspect_trains=True, roi=(), roi_shape=None, label='') -> ReadPlan:
    """Plan the read of one key over the selected trains.

    Parameters
    ----------
    files : sequence of FileKeyIndex
        The files holding the key's source, with the INDEX of its group.
    dataset : str
        HDF5 path of the key, the same in every file.
    dtype : numpy.dtype
    entry_shape : tuple of int
    sel_train_ids : array_like of uint64
    inc_suspect_trains : bool
    roi : index expression, optional
        Per-entry region of interest (kept in :func:`roi_key` form).
    roi_shape : tuple of int, optional
        Entry shape after the roi (``entry_shape`` if None).
    label : str

    Returns
    -------
    ReadPlan
        One step per chunk with data (see :func:`chunk_table`).

    Examples
    --------
    >>> f = FileKeyIndex('/r/A.h5', np.arange(1, 5, dtype=np.uint64), np.ones(4, bool),
    ...                  np.arange(4, dtype=np.uint64), np.ones(4, np.uint64))
    >>> p = plan_key([f], '/CONTROL/x/value', 'f8', (), np.array([1, 2, 4], np.uint64))
    >>> [(s.src_start, s.src_stop, s.dst_start, s.dst_stop) for s in p.steps]
    [(0, 2, 0, 2), (3, 4, 2, 3)]
    """
    t = chunk_table(files, sel_train_ids, inc_suspect_trains)
    eshape = tuple(entry_shape) if roi_shape is None else tuple(roi_shape)
    rk = roi_key(roi) if not (isinstance(roi, tuple) and roi == ()) else ()
    keep = np.nonzero(t.n_rows > 0)[0]
    n_rows = t.n_rows[keep]
    dst_stop = np.cumsum(n_rows)
    src_start = t.first_row[keep]
    paths = np.array([f.path for f in t.files], dtype=object)
    steps = tuple(map(_new_step, zip(
        paths[t.file[keep]].tolist(), repeat(dataset), src_start.tolist(),
        (src_start + n_rows).tolist(), (dst_stop - n_rows).tolist(), dst_stop.tolist(),
        t.first_data_train[keep].tolist(), t.last_data_train[keep].tolist(),
        t.n_data_trains[keep].tolist())))
    total = int(dst_stop[-1]) if len(dst_stop) else 0
    return ReadPlan(np.dtype(dtype), (total,) + eshape, steps, rk, label)


def entry_train_ids(files, sel_train_ids, inc_suspect_trains=True) -> np.ndarray:
    """Train ID of every entry, in the order :func:`plan_key` reads them.

    Examples
    --------
    >>> f = FileKeyIndex('/a.h5', np.array([5, 6, 7], np.uint64), np.ones(3, bool),
    ...                  np.array([0, 2, 2], np.uint64), np.array([2, 0, 3], np.uint64))
    >>> entry_train_ids([f], np.array([5, 6, 7], np.uint64)).tolist()
    [5, 5, 7, 7, 7]
    """
    t = chunk_table(files, sel_train_ids, inc_suspect_trains)
    return readonly(np.repeat(t.train_ids, t.counts.astype(np.int64)), np.uint64)


# -- grouping steps into read calls -------------------------------------------------------

@attrs.frozen
class ReadBlock:
    """One read call of an executor: ``steps[step_start:step_stop]`` of a plan.

    ``gather`` False: one read of the union of the steps' source rows straight
    into their (contiguous) output rows. ``gather`` True: one read of source
    rows ``src_start:src_stop`` (covering the steps and the gaps between them)
    into scratch memory, from which the steps' rows are copied out.
    """
    path: str
    dataset: str
    step_start: int
    step_stop: int
    src_start: int
    src_stop: int
    gather: bool = False


def read_blocks(steps, entry_nbytes: int, max_gap_bytes: int = 1 << 16,
                max_scratch_bytes: int = 1 << 24, max_hyperslabs: int = 64) -> tuple:
    """Group consecutive steps of one file and dataset into read calls (pure).

    Steps join a block when they read the same dataset, their output rows
    follow each other and their source rows increase without overlapping.
    A gap of at most ``max_gap_bytes`` is read over (a gather block, whose
    covering range stays within ``max_scratch_bytes``); otherwise steps are
    combined as a hyperslab union of at most ``max_hyperslabs`` ranges.

    Parameters
    ----------
    steps : sequence of ReadStep
    entry_nbytes : int
        Bytes of one output row; gaps and scratch sizes are measured with it.

    Returns
    -------
    tuple of ReadBlock
        Covering every step once, in order.

    Examples
    --------
    >>> st = [ReadStep('/a.h5', '/x', a, a + 1, i, i + 1) for i, a in enumerate([0, 2, 4])]
    >>> [(b.step_start, b.step_stop, b.src_start, b.src_stop, b.gather)
    ...  for b in read_blocks(st, entry_nbytes=8)]
    [(0, 3, 0, 5, True)]
    >>> [(b.step_start, b.step_stop, b.gather)
    ...  for b in read_blocks(st, entry_nbytes=8, max_gap_bytes=0, max_hyperslabs=2)]
    [(0, 2, False), (2, 3, False)]
    """
    blocks = []
    n = len(steps)
    i = 0
    row = max(1, int(entry_nbytes))
    while i < n:
        s = steps[i]
        j = i + 1
        lo, hi, gather = s.src_start, s.src_stop, False
        mode = None    # decided by the first join: 'gather' or 'union'
        while j < n:
            t, prev = steps[j], steps[j - 1]
            if (t.path != s.path or t.dataset != s.dataset or t.dst_start != prev.dst_stop
                    or t.src_start < prev.src_stop):
                break
            gap = (t.src_start - prev.src_stop) * row
            small = gap <= max_gap_bytes and (t.src_stop - lo) * row <= max_scratch_bytes
            if mode is None:
                mode = 'gather' if small else 'union'
            if mode == 'gather' and not small:
                break
            if mode == 'union' and j - i >= max_hyperslabs:
                break
            hi = t.src_stop
            gather = gather or (mode == 'gather' and gap > 0)
            j += 1
        blocks.append(ReadBlock(s.path, s.dataset, i, j, lo, hi, gather))
        i = j
    return tuple(blocks)
