"""Read plans: what to read, from where, into which rows of the output (pure).

Every read is a plan first. A :class:`ReadPlan` is a value: it prints
(:meth:`ReadPlan.explain`), measures itself (``nbytes``, ``n_reads``) and can
be handed to an executor (:func:`xfeldata._execute.execute`).
"""
from __future__ import annotations

import attrs
import numpy as np

from .records import readonly

__all__ = ['ReadStep', 'ReadPlan', 'FileKeyIndex', 'plan_key', 'selected_positions',
           'contiguous_regions', 'counts_for_trains', 'roi_key', 'roi_from_key']


def roi_key(roi) -> tuple:
    """A hashable, printable form of a per-entry index expression."""
    if not isinstance(roi, tuple):
        roi = (roi,)
    out = []
    for r in roi:
        if isinstance(r, slice):
            out.append(('slice', r.start, r.stop, r.step))
        elif r is Ellipsis:
            out.append(('...',))
        elif isinstance(r, (int, np.integer)):
            out.append(('int', int(r)))
        else:
            out.append(('array', tuple(np.asarray(r).ravel().tolist())))
    return tuple(out)


def roi_from_key(key) -> tuple:
    out = []
    for r in key:
        if r[0] == 'slice':
            out.append(slice(*r[1:]))
        elif r[0] == '...':
            out.append(Ellipsis)
        elif r[0] == 'int':
            out.append(r[1])
        else:
            out.append(np.asarray(r[1]))
    return tuple(out)


def _fmt_roi(key):
    parts = []
    for r in key:
        if r[0] == 'slice':
            a, b, c = (('' if x is None else str(x)) for x in r[1:])
            parts.append(f"{a}:{b}" + (f":{c}" if c else ''))
        elif r[0] == '...':
            parts.append('...')
        elif r[0] == 'int':
            parts.append(str(r[1]))
        else:
            parts.append(str(list(r[1])))
    return '[' + ', '.join(parts) + ']'


@attrs.frozen
class ReadStep:
    """Read ``dataset[src_start:src_stop]`` of one file into output rows ``dst_start:dst_stop``."""
    path: str
    dataset: str
    src_start: int
    src_stop: int
    dst_start: int
    dst_stop: int

    @property
    def n_rows(self):
        return self.src_stop - self.src_start


@attrs.frozen
class ReadPlan:
    """A plan for reading one key into one preallocated output array."""
    dtype: np.dtype
    shape: tuple
    steps: tuple
    roi: tuple = ()
    label: str = ''

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def n_reads(self) -> int:
        return len(self.steps)

    @property
    def n_files(self) -> int:
        return len({s.path for s in self.steps})

    def explain(self) -> str:
        """Plain text describing the plan (stable: tests compare it exactly)."""
        head = (f"ReadPlan {self.label or '(unnamed)'}: {self.shape} {self.dtype}, "
                f"{self.nbytes} bytes in {self.n_reads} reads from {self.n_files} files")
        lines = [head]
        if self.roi:
            lines.append(f"  roi per entry: {_fmt_roi(self.roi)}")
        for s in self.steps:
            name = s.path.rsplit('/', 1)[-1]
            lines.append(f"  {name}:{s.dataset}[{s.src_start}:{s.src_stop}] -> "
                         f"out[{s.dst_start}:{s.dst_stop}]")
        return '\n'.join(lines)


@attrs.frozen(eq=False)
class FileKeyIndex:
    """What planning needs from one file: its trains, validity and one group's index."""
    path: str
    train_ids: np.ndarray
    valid: np.ndarray
    firsts: np.ndarray
    counts: np.ndarray


def selected_positions(train_ids, valid, sel_train_ids, inc_suspect_trains=True) -> np.ndarray:
    """Positions in a file's train list that are selected (and valid if required)."""
    mask = np.isin(train_ids, sel_train_ids)
    if not inc_suspect_trains:
        mask &= valid
    return np.nonzero(mask)[0]


def contiguous_regions(positions) -> list:
    """Split sorted positions into maximal runs of consecutive integers.

    >>> contiguous_regions(np.array([0, 1, 2, 5, 6, 9]))
    [(0, 3), (5, 7), (9, 10)]
    """
    p = np.asarray(positions)
    if len(p) == 0:
        return []
    breaks = np.nonzero(np.diff(p) != 1)[0]
    starts = np.concatenate([[0], breaks + 1])
    stops = np.concatenate([breaks + 1, [len(p)]])
    return [(int(p[a]), int(p[b - 1]) + 1) for a, b in zip(starts, stops)]


def read_runs(f: 'FileKeyIndex', positions) -> list:
    """Split selected positions into runs readable as one contiguous block.

    A run breaks where positions are not consecutive, and also where the
    INDEX itself is not contiguous (``first[i+1] != first[i] + count[i]``), so
    a damaged index is read as it says rather than assumed contiguous.
    """
    p = np.asarray(positions)
    if len(p) == 0:
        return []
    firsts = f.firsts[p].astype(np.int64)
    ends = firsts + f.counts[p].astype(np.int64)
    brk = (np.diff(p) != 1) | (firsts[1:] != ends[:-1])
    idx = np.nonzero(brk)[0]
    starts = np.concatenate([[0], idx + 1])
    stops = np.concatenate([idx + 1, [len(p)]])
    return [(int(p[a]), int(p[b - 1]) + 1) for a, b in zip(starts, stops)]


def counts_for_trains(files, sel_train_ids, inc_suspect_trains=True) -> np.ndarray:
    """Entry count per selected train (0 where no file holds it), aligned to sel_train_ids."""
    out = np.zeros(len(sel_train_ids), dtype=np.uint64)
    for f in files:
        pos = selected_positions(f.train_ids, f.valid, sel_train_ids, inc_suspect_trains)
        if len(pos) == 0:
            continue
        ix = np.searchsorted(sel_train_ids, f.train_ids[pos])
        out[ix] = f.counts[pos]
    return out


def plan_key(files, dataset: str, dtype, entry_shape, sel_train_ids,
             inc_suspect_trains=True, roi=(), roi_shape=None, label='') -> ReadPlan:
    """Plan the read of one key over the selected trains.

    ``files`` are :class:`FileKeyIndex` records of the files holding the
    source. For each file, the selected positions are split into contiguous
    runs; each run becomes one step reading ``first[a] : first[a] + sum(count[a:b])``.
    Steps are ordered by the first train ID they hold.
    """
    chunks = []
    for f in files:
        pos = selected_positions(f.train_ids, f.valid, sel_train_ids, inc_suspect_trains)
        for a, b in read_runs(f, pos):
            n = int(f.counts[a:b].sum())
            if n == 0:
                continue
            start = int(f.firsts[a])
            chunks.append((int(f.train_ids[a]), f.path, start, start + n))
    chunks.sort(key=lambda c: (c[0], c[1]))
    steps, dst = [], 0
    for _, path, a, b in chunks:
        steps.append(ReadStep(path, dataset, a, b, dst, dst + (b - a)))
        dst += b - a
    eshape = tuple(entry_shape) if roi_shape is None else tuple(roi_shape)
    return ReadPlan(np.dtype(dtype), (dst,) + eshape, tuple(steps),
                    roi_key(roi) if roi != () else (), label)


def entry_train_ids(files, sel_train_ids, inc_suspect_trains=True) -> np.ndarray:
    """Train ID of every entry, in the order :func:`plan_key` reads them."""
    chunks = []
    for f in files:
        pos = selected_positions(f.train_ids, f.valid, sel_train_ids, inc_suspect_trains)
        for a, b in read_runs(f, pos):
            c = f.counts[a:b]
            if c.sum() == 0:
                continue
            chunks.append((int(f.train_ids[a]), f.path,
                           np.repeat(f.train_ids[a:b], c.astype(np.int64))))
    chunks.sort(key=lambda c: (c[0], c[1]))
    if not chunks:
        return readonly(np.zeros(0, np.uint64))
    return readonly(np.concatenate([c[2] for c in chunks]).astype(np.uint64))
