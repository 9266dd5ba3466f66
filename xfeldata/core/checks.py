"""Validation checks as pure functions: numpy arrays in, problem records out.

Each function looks at arrays read from one file (or at the tier-0 records of
a run) and returns a list of *problems*: plain dicts with a ``msg`` and
context (``file``, ``dataset`` and check-specific fields), as EXtra-data's
validator reports them. :mod:`xfeldata.validation` reads the arrays (through
the reader's own scan, :mod:`xfeldata._scan`) and calls these; nothing here
touches a file.

The messages are EXtra-data's, so scripts that grep validator output keep
working. Arithmetic on ``first + count`` is done on Python-sized integers
where the values are large, so a corrupted index cannot wrap around.
"""
from __future__ import annotations

import numpy as np

__all__ = ['problem', 'train_ids_nonzero', 'train_ids_order', 'index_group',
           'data_outside_index', 'timestamps_order', 'run_map_entry', 'conflicts',
           'index_end']


def problem(msg, **kwargs) -> dict:
    """A problem record: ``{'msg': msg, **kwargs}``."""
    return dict(msg=msg, **kwargs)


def _ints(a) -> np.ndarray:
    """``a`` as int64, or as Python ints (object) if int64 could overflow."""
    a = np.asarray(a)
    if a.dtype.kind == 'f':
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0).astype(np.int64)
    if a.size and a.dtype.kind == 'u' and a.max() >= 2 ** 62:
        return a.astype(object)
    if a.size and a.dtype.kind == 'i' and (a.max() >= 2 ** 62 or a.min() <= -2 ** 62):
        return a.astype(object)
    return a.astype(np.int64, copy=False)


def train_ids_nonzero(raw_train_ids, file) -> list:
    """A zero in ``INDEX/trainId`` followed by a non-zero ID (zeros may only pad the end).

    >>> train_ids_nonzero(np.array([1, 2, 0, 0]), 'f.h5')
    []
    >>> [p['msg'] for p in train_ids_nonzero(np.array([1, 0, 3]), 'f.h5')]
    ['Zeroes in trainId index before last train ID']
    """
    tids = np.asarray(raw_train_ids)
    nonzero = np.flatnonzero(tids != 0)
    if len(nonzero) and (tids[:nonzero[-1]] == 0).any():
        return [problem("Zeroes in trainId index before last train ID",
                        dataset='INDEX/trainId', file=file)]
    return []


def train_ids_order(raw_train_ids, file) -> list:
    """Non-zero train IDs not strictly increasing (the first place reported).

    >>> train_ids_order(np.array([5, 6, 7, 0]), 'f.h5')
    []
    >>> train_ids_order(np.array([5, 9, 7]), 'f.h5')[0]['msg']
    'Train IDs are not strictly increasing, e.g. at 1 (9 >= 7)'
    """
    tids = np.asarray(raw_train_ids)
    tids = tids[tids != 0]
    bad = np.flatnonzero(tids[1:] <= tids[:-1])
    if len(bad):
        i = int(bad[0])
        return [problem(f"Train IDs are not strictly increasing, e.g. at {i} "
                        f"({tids[i]} >= {tids[i + 1]})", dataset='INDEX/trainId', file=file)]
    return []


def index_group(first, count, n_trains: int, dataset: str, file) -> list:
    """Shape and contiguity of one INDEX group's ``first``/``count`` (whole arrays).

    In order: both 1-D; equal lengths (stop if not); length equals the number
    of non-zero train IDs; ``first[0] == 0``; no gaps (``first[i] + count[i] <
    first[i+1]``) and no overlaps (``>``), each reported once with how many
    and the first place.

    >>> index_group(np.array([0, 2, 2]), np.array([2, 0, 1]), 3, 'INDEX/x/data', 'f.h5')
    []
    >>> [p['msg'] for p in index_group(np.array([1, 1]), np.array([1, 1]), 2, 'd', 'f')]
    ["Index doesn't start at 0", 'Overlaps (1) in index, e.g. at 0 (1 + 1 > 1)']
    """
    first, count = np.asarray(first), np.asarray(count)
    if first.ndim != 1 or count.ndim != 1:
        return [problem("Index first and count are not 1D", dataset=dataset, file=file,
                        first_shape=first.shape, count_shape=count.shape)]
    if first.shape != count.shape:
        return [problem("Index first & count have different number of entries",
                        dataset=dataset, file=file,
                        first_shape=first.shape, count_shape=count.shape)]
    out = []
    if first.shape != (n_trains,):
        out.append(problem("Index has wrong number of entries", dataset=dataset, file=file,
                           index_shape=first.shape, trainids_shape=(n_trains,)))
    if len(first) == 0:
        return out
    f, c = _ints(first), _ints(count)
    if f[0] != 0:
        out.append(problem("Index doesn't start at 0", dataset=dataset, file=file))
    ends, nxt = f[:-1] + c[:-1], f[1:]
    for name, mask, op in (('Gaps', ends < nxt, '<'), ('Overlaps', ends > nxt, '>')):
        where = np.flatnonzero(np.asarray(mask, dtype=bool))
        if len(where):
            i = int(where[0])
            out.append(problem(f"{name} ({len(where)}) in index, e.g. at {i} "
                               f"({f[i]} + {c[i]} {op} {f[i + 1]})",
                               dataset=dataset, file=file))
    return out


def index_end(first, count, n_trains: int) -> int:
    """Rows the index refers to: ``max(first + count)`` over the first ``n_trains`` entries.

    >>> index_end(np.array([0, 1, 999, 0]), np.array([1, 1, 1, 0]), 3)
    1000
    """
    f, c = np.asarray(first)[:n_trains], np.asarray(count)[:n_trains]
    n = min(len(f), len(c))
    if n == 0 or f.ndim != 1 or c.ndim != 1:
        return 0
    return int((_ints(f[:n]) + _ints(c[:n])).max())


def data_outside_index(end: int, lengths, file, *, first_only=False) -> list:
    """Datasets shorter than the rows their index refers to.

    ``lengths``: ``(dataset path, axis-0 length)`` pairs in report order.
    Control sources report only the first such key (``first_only``), as
    EXtra-data does.

    >>> data_outside_index(5, [('a', 5), ('b', 4)], 'f.h5')[0]['msg']
    'Index referring to data (5) outside dataset (4)'
    """
    out = []
    for dataset, length in lengths:
        if length < end:
            out.append(problem(f"Index referring to data ({end}) outside dataset ({length})",
                               dataset=dataset, file=file))
            if first_only:
                break
    return out


def timestamps_order(ts, dataset: str, file) -> list:
    """A CONTROL ``timestamp`` dataset: zeros only at the end, non-zero values not decreasing.

    >>> timestamps_order(np.array([1, 2, 2, 0]), 'd', 'f')
    []
    >>> timestamps_order(np.array([1, 10, 5]), 'd', 'f')[0]['msg']
    'Timestamp is decreasing, e.g. at 2 (5 < 10)'
    """
    ts = np.asarray(ts)
    if ts.ndim != 1 or ts.dtype.kind not in 'uif':
        return []
    out = []
    nonzero = np.flatnonzero(ts != 0)
    if len(nonzero) and (ts[:nonzero[-1]] == 0).any():
        out.append(problem("Zeroes in Timestamp before last timestamp",
                           dataset=dataset, file=file))
    vals = ts[nonzero]
    dec = np.flatnonzero(vals[1:] < vals[:-1])
    if len(dec):
        j = int(dec[0])
        i = int(nonzero[j + 1])
        out.append(problem(f"Timestamp is decreasing, e.g. at {i} ({vals[j + 1]} < {vals[j]})",
                           dataset=dataset, file=file))
    return out


def run_map_entry(entry: dict, train_ids, control_sources, instrument_sources, file) -> list:
    """A run files map entry that disagrees with the file it describes.

    ``entry``: a valid map entry (as :meth:`RunFilesMap.get <xfeldata.run_files_map.RunFilesMap.get>` returns it);
    the other arguments: what the file itself holds (tier 0, freshly read).

    >>> e = {'train_ids': np.array([1, 2]), 'control_sources': {'A'},
    ...      'instrument_sources': set()}
    >>> run_map_entry(e, np.array([1, 2]), {'A'}, set(), 'f.h5')
    []
    >>> run_map_entry(e, np.array([1, 3]), {'A'}, set(), 'f.h5')[0]['msg']
    'Incorrect data map cache entry'
    """
    differ = []
    if frozenset(entry.get('control_sources', ())) != frozenset(control_sources):
        differ.append('control_sources')
    if frozenset(entry.get('instrument_sources', ())) != frozenset(instrument_sources):
        differ.append('instrument_sources')
    if not np.array_equal(np.asarray(entry.get('train_ids', ()), dtype=np.uint64),
                          np.asarray(train_ids, dtype=np.uint64)):
        differ.append('train_ids')
    if differ:
        return [problem("Incorrect data map cache entry", file=file, differing=differ)]
    return []


def conflicts(records, basename=lambda p: p) -> list:
    """Problems from the reader's conflict records ``(source, train_id, paths)``.

    >>> conflicts([('A', 7, ('x.h5', 'y.h5'))])[0]['msg']
    'Source has data for train 7 in more than one place (x.h5, y.h5)'
    """
    out = []
    for src, tid, paths in records:
        names = [basename(p) for p in paths]
        where = ', '.join(names) if len(names) > 1 else f"twice in {names[0]}"
        out.append(problem(f"Source has data for train {tid} in more than one place ({where})",
                           source=src, train_id=int(tid), files=names))
    return out
