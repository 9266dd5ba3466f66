"""Multi-module detectors as data, and the frame arithmetic behind them (pure).

A detector kind is a :class:`DetectorSpec` record: the pattern of its name,
the pattern of its module sources, the number and shape of its modules and
its main and mask keys. The public classes in :mod:`xfeldata.components`
each carry one spec; adding a detector is adding a record.

The rest of the module is the arithmetic of assembling module data:

* :class:`FrameLayout` - frames per train of the detector (train IDs, counts,
  offsets), and :func:`select_frames`, the frames a pulse selection keeps;
* :func:`normalise_pulses` - the ``pulses=`` argument as a :class:`PulseSel`;
* :func:`remap_plan` - a module's read plan (rows in its own order) turned
  into a plan writing each row at its detector frame, so one preallocated
  ``(modules, frames, ...)`` array is filled by one plan per module;
* :func:`slice_plan` - the part of such a plan for a range of output rows.

Only numpy and attrs; no file access.
"""
from __future__ import annotations

import re
from typing import NamedTuple

import attrs
import numpy as np

from .plan import ReadPlan, ReadStep
from .records import readonly

__all__ = ['DetectorSpec', 'SPECS', 'MAX_PULSES', 'NO_PULSE_ID', 'FrameLayout', 'PulseSel',
           'normalise_pulses', 'select_frames', 'remap_plan', 'slice_plan', 'find_detectors',
           'module_sources', 'check_frame_counts', 'xtdf_inner_dims', 'unstack_index',
           'promote_for_missing']

MAX_PULSES = 2700
NO_PULSE_ID = 9999


@attrs.frozen
class DetectorSpec:
    """One kind of multi-module detector.

    Attributes
    ----------
    name : str
        Public class name (``'AGIPD1M'``).
    name_re : str
        Regex of the detector part of source names (before ``/DET/``).
    module_re : str
        Regex of the module part after ``/DET/`` or ``/CORR/``; its last
        group is the module number.
    n_modules : int or None
        None: found from the data (JUNGFRAU).
    module_shape : tuple of int
    main_key, mask_key : str
    xtdf : bool
        Frames in an ``image`` group with pulse and cell IDs (AGIPD, LPD, DSSC).
    raw_by_ndim : int or None
        Raw data have this many dims (AGIPD ``image.data``: 4 with the
        frame axis); None: raw data have an integer dtype.
    first_modno : int
        Module numbering of the data (JUNGFRAU counts from 1).
    """
    name: str
    name_re: str
    module_re: str
    n_modules: int | None
    module_shape: tuple
    main_key: str
    mask_key: str
    xtdf: bool = True
    raw_by_ndim: int | None = None
    first_modno: int = 0

    def source_re(self, det_name: str, corr: bool) -> re.Pattern:
        part = 'CORR' if corr else 'DET'
        return re.compile(re.escape(det_name) + f'/{part}/' + self.module_re)

    def any_source_re(self) -> re.Pattern:
        return re.compile(f'({self.name_re})/(DET|CORR)/' + self.module_re)


_XTDF_MOD = r'(\d+)CH'
SPECS = {s.name: s for s in [
    DetectorSpec('AGIPD1M', r'[^/]+_AGIPD1M[^/]*', _XTDF_MOD, 16, (512, 128),
                 'image.data', 'image.mask', raw_by_ndim=4),
    DetectorSpec('AGIPD500K', r'[^/]+AGIPD500K[^/]*', _XTDF_MOD, 8, (512, 128),
                 'image.data', 'image.mask', raw_by_ndim=4),
    DetectorSpec('DSSC1M', r'[^/]+_DSSC1M[^/]*', _XTDF_MOD, 16, (128, 512),
                 'image.data', 'image.mask'),
    DetectorSpec('LPD1M', r'[^/]+_LPD1M[^/]*', _XTDF_MOD, 16, (256, 256),
                 'image.data', 'image.mask'),
    DetectorSpec('LPDSolo', r'[^/]+_LPD_SOLO[^/]*', _XTDF_MOD, 1, (256, 256),
                 'image.data', 'image.mask'),
    DetectorSpec('JUNGFRAU', r'[^/]+_(?:JNGFR|JF[14]M|JUNGF|JF|JF500K\d?)',
                 r'(MODULE_|RECEIVER-|JNGFR)(\d+)', None, (512, 1024),
                 'data.adc', 'data.mask', xtdf=False, first_modno=1),
]}


def find_detectors(spec: DetectorSpec, sources) -> set:
    """Detector names of this kind among ``sources``.

    Examples
    --------
    >>> sorted(find_detectors(SPECS['AGIPD1M'], ['SPB_DET_AGIPD1M-1/DET/0CH0:xtdf', 'X/Y/Z']))
    ['SPB_DET_AGIPD1M-1']
    """
    rx = spec.any_source_re()
    out = set()
    for s in sources:
        m = rx.match(s)
        if m:
            out.add(m.group(1))
    return out


def module_sources(spec: DetectorSpec, det_name: str, sources, corr: bool) -> dict:
    """``{source: module number}`` of one detector's ``/DET/`` or ``/CORR/`` sources.

    Examples
    --------
    >>> module_sources(SPECS['JUNGFRAU'], 'FXE_XAD_JF1M',
    ...                ['FXE_XAD_JF1M/DET/JNGFR02:daqOutput', 'FXE_XAD_JF1M/DET/CONTROL'], False)
    {'FXE_XAD_JF1M/DET/JNGFR02:daqOutput': 2}
    """
    rx = spec.source_re(det_name, corr)
    out = {}
    for s in sorted(sources):
        m = rx.match(s)
        if m:
            out[s] = int(m.groups()[-1])
    return out


def check_frame_counts(counts: np.ndarray, train_ids: np.ndarray, min_modules: int):
    """Trains to keep and their frame counts, from a (modules, trains) count matrix.

    A train is kept if at least ``min_modules`` modules have data; the
    non-zero counts of a train must agree.

    Returns
    -------
    keep : ndarray of bool (trains)
    frames : ndarray of uint64 (kept trains)

    Raises
    ------
    ValueError
        Counts disagree in a train, or no train has enough modules.

    Examples
    --------
    >>> c = np.array([[2, 2, 0], [2, 0, 0]], np.uint64)
    >>> k, f = check_frame_counts(c, np.array([1, 2, 3], np.uint64), 1)
    >>> k.tolist(), f.tolist()
    ([True, True, False], [2, 2])
    """
    counts = np.asarray(counts, dtype=np.uint64).reshape(len(counts), -1)
    n_present = (counts > 0).sum(axis=0)
    mx = counts.max(axis=0) if len(counts) else np.zeros(counts.shape[1], np.uint64)
    mn = np.where(counts > 0, counts, np.uint64(np.iinfo(np.uint64).max)).min(axis=0) \
        if len(counts) else mx
    bad = np.flatnonzero((n_present > 0) & (mn != mx))
    if len(bad):
        t = int(train_ids[bad[0]])
        per_mod = counts[:, bad[0]].tolist()
        raise ValueError(f"Inconsistent frame counts for train {t}: the modules have "
                         f"{per_mod} frames (0 = no data); each module with data must have "
                         "the same number")
    keep = n_present >= min_modules
    if not keep.any():
        raise ValueError(f"No data found with >= {min_modules} modules present")
    return keep, mx[keep]


# -- frame layouts ---------------------------------------------------------------------

@attrs.frozen(eq=False)
class FrameLayout:
    """Frames of a detector: per train, a number of consecutive frame rows.

    Examples
    --------
    >>> L = FrameLayout.build([10, 11, 12], [2, 0, 3])
    >>> L.offsets.tolist(), L.n_frames
    ([0, 2, 2, 5], 5)
    >>> L.frame_train_ids().tolist(), L.frame_index().tolist()
    ([10, 10, 12, 12, 12], [0, 1, 0, 1, 2])
    """
    train_ids: np.ndarray
    counts: np.ndarray
    offsets: np.ndarray

    @classmethod
    def build(cls, train_ids, counts) -> 'FrameLayout':
        tids = np.asarray(train_ids, dtype=np.uint64)
        c = np.asarray(counts, dtype=np.int64)
        off = np.zeros(len(c) + 1, np.int64)
        np.cumsum(c, out=off[1:])
        return cls(readonly(tids), readonly(c), readonly(off))

    @property
    def n_frames(self) -> int:
        return int(self.offsets[-1])

    def frame_train_ids(self) -> np.ndarray:
        return np.repeat(self.train_ids, self.counts)

    def frame_index(self) -> np.ndarray:
        """Position of every frame within its train."""
        return np.arange(self.n_frames, dtype=np.int64) - np.repeat(self.offsets[:-1], self.counts)

    def take(self, frame_mask) -> 'FrameLayout':
        """The layout of the frames where ``frame_mask`` is True."""
        m = np.asarray(frame_mask, dtype=bool)
        csum = np.zeros(len(m) + 1, np.int64)
        np.cumsum(m, out=csum[1:])
        return FrameLayout.build(self.train_ids, np.diff(csum[self.offsets]))


class PulseSel(NamedTuple):
    """A normalised pulse selection: ``kind`` 'index' or 'id'; a slice or an int array."""
    kind: str
    value: object

    def is_all(self) -> bool:
        return (self.kind == 'index' and isinstance(self.value, slice)
                and self.value == slice(0, MAX_PULSES, 1))


def _check_slice(s: slice) -> slice:
    parts = []
    for x, default in ((s.start, 0), (s.stop, MAX_PULSES), (s.step, 1)):
        if x is None:
            x = default
        if not isinstance(x, (int, np.integer)) or isinstance(x, (bool, np.bool_)):
            raise TypeError(f"Pulse selection slices must use integers, got {s!r}")
        parts.append(int(x))
    start, stop, step = parts
    if step < 1:
        raise ValueError(f"Pulse selection slice step must be >= 1, got {s!r}")
    if start < 0 or stop < 0:
        raise NotImplementedError(f"Negative pulse indices are not supported: {s!r}")
    return slice(start, stop, step)


def normalise_pulses(pulses) -> PulseSel:
    """The ``pulses=`` argument as a :class:`PulseSel` (EXtra-data's rules, API.md 7.3).

    Examples
    --------
    >>> normalise_pulses(np.s_[:])
    PulseSel(kind='index', value=slice(0, 2700, 1))
    >>> normalise_pulses(3).value.tolist()
    [3]
    """
    from .trains import by_id, by_index
    kind = 'index'
    if isinstance(pulses, by_id):
        kind, pulses = 'id', pulses.value
    elif isinstance(pulses, by_index):
        pulses = pulses.value
    if isinstance(pulses, PulseSel):
        return pulses
    if isinstance(pulses, slice):
        return PulseSel(kind, _check_slice(pulses))
    if isinstance(pulses, (bool, np.bool_)):
        raise TypeError(f"Unsupported pulse selection: {pulses!r}")
    if isinstance(pulses, (int, np.integer)):
        pulses = [pulses]
    try:
        arr = np.asarray(pulses)
    except Exception:  # noqa: BLE001 - re-raised as a clear TypeError
        arr = None
    if arr is None or arr.ndim != 1 or (arr.size and arr.dtype.kind not in 'iu'):
        raise TypeError(f"Unsupported pulse selection: {pulses!r} (use a slice, an int, a "
                        "list of ints, by_index[...] or by_id[...])")
    arr = arr.astype(np.int64)
    if (arr < 0).any():
        if kind == 'id':
            raise ValueError(f"Pulse IDs cannot be negative: {arr[arr < 0].tolist()}")
        raise NotImplementedError(f"Negative pulse indices are not supported: "
                                  f"{arr[arr < 0].tolist()}")
    return PulseSel(kind, readonly(arr))


def _match(values, sel):
    if isinstance(sel, slice):
        return (values >= sel.start) & (values < sel.stop) & ((values - sel.start) % sel.step == 0)
    return np.isin(values, sel)


def select_frames(layout: FrameLayout, sel: PulseSel, pulse_ids=None,
                  parallel_gain: bool = False) -> np.ndarray:
    """Boolean mask over ``layout``'s frames that the pulse selection keeps.

    By index, positions count within the train (within each gain stage with
    ``parallel_gain``: a train's frames are 3 equal blocks). By ID, frames
    whose pulse ID (``pulse_ids``, one per frame; with ``parallel_gain`` only
    the first block's are used, repeated) is selected.

    Examples
    --------
    >>> L = FrameLayout.build([1, 2], [3, 2])
    >>> select_frames(L, normalise_pulses(np.s_[1:])).tolist()
    [False, True, True, False, True]
    >>> select_frames(L, PulseSel('id', np.array([7])), np.array([5, 6, 7, 7, 9])).tolist()
    [False, False, True, True, False]
    """
    if sel.is_all() and not parallel_gain:
        return np.ones(layout.n_frames, bool)
    within = layout.frame_index()
    if parallel_gain:
        third = np.repeat(layout.counts // 3, layout.counts)
        pos = within % np.maximum(third, 1)
    else:
        pos = within
    if sel.kind == 'index':
        return _match(pos, sel.value)
    if pulse_ids is None:
        raise ValueError("selecting pulses by ID needs the pulse IDs")
    pids = np.asarray(pulse_ids).astype(np.int64)
    if parallel_gain:
        first = np.repeat(layout.offsets[:-1], layout.counts)
        pids = pids[first + pos]
    return _match(pids, sel.value)


# -- plans into the detector's frame layout ---------------------------------------------------

def _expand_steps(steps):
    """Per plan row: its step number and source row (rows in output order)."""
    n = np.fromiter((s.src_stop - s.src_start for s in steps), np.int64, len(steps))
    src0 = np.fromiter((s.src_start for s in steps), np.int64, len(steps))
    step_no = np.repeat(np.arange(len(steps)), n)
    starts = np.zeros(len(steps), np.int64)
    np.cumsum(n[:-1], out=starts[1:])
    src = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(starts - src0, n)
    return step_no, src


def remap_plan(plan: ReadPlan, row_train_ids, layout: FrameLayout, frame_dest=None,
               one_per_train: bool = False):
    """Re-target a module's plan at the detector's frame rows.

    Parameters
    ----------
    plan : ReadPlan
        A module key's plan (rows in its own order).
    row_train_ids : array of uint64
        Train ID of every row of ``plan`` (``entry_train_ids``).
    layout : FrameLayout
        The detector's frames; row ``k`` of train ``t`` of the module goes to
        frame ``offsets[t] + k``, if ``k < counts[t]``.
    frame_dest : array of int64, optional
        Output row of every layout frame (-1: not wanted), for pulse selections.
    one_per_train : bool
        Keep only the first row of each train (keys with one entry per train).

    Returns
    -------
    plan : ReadPlan
        Shape ``(n_out,) + plan.shape[1:]``; steps are runs of rows that are
        consecutive both in the file and in the output.
    covered : ndarray of bool
        Output rows the plan writes (the others need a fill value).

    Examples
    --------
    >>> p = ReadPlan(np.dtype('u2'), (4,), (ReadStep('/a.h5', '/d', 0, 4, 0, 4),))
    >>> L = FrameLayout.build([1, 2, 3], [2, 2, 2])
    >>> q, cov = remap_plan(p, np.array([1, 1, 3, 3], np.uint64), L)
    >>> [(s.src_start, s.src_stop, s.dst_start, s.dst_stop) for s in q.steps], cov.tolist()
    ([(0, 2, 0, 2), (2, 4, 4, 6)], [True, True, False, False, True, True])
    """
    n_out = layout.n_frames if frame_dest is None else int(np.max(frame_dest, initial=-1)) + 1
    if frame_dest is not None:
        n_out = max(n_out, int(np.count_nonzero(np.asarray(frame_dest) >= 0)))
    shape = (n_out,) + tuple(plan.shape[1:])
    covered = np.zeros(n_out, bool)
    steps = plan.steps
    if not steps:
        return attrs.evolve(plan, shape=shape, steps=()), covered
    step_no, src = _expand_steps(steps)
    tids = np.asarray(row_train_ids, dtype=np.uint64)
    if len(tids) != len(src):
        raise ValueError(f"{len(tids)} train IDs for {len(src)} rows")
    if not len(layout.train_ids):   # no frames to place rows in
        return attrs.evolve(plan, shape=shape, steps=()), covered
    ti = np.searchsorted(layout.train_ids, tids)
    ti_c = np.minimum(ti, len(layout.train_ids) - 1)
    known = (ti < len(layout.train_ids)) & (layout.train_ids[ti_c] == tids)
    # Position of each row within its train: rows of one train follow each other.
    new_group = np.ones(len(tids), bool)
    new_group[1:] = tids[1:] != tids[:-1]
    gstart = np.flatnonzero(new_group)
    within = np.arange(len(tids)) - np.repeat(gstart, np.diff(np.append(gstart, len(tids))))
    limit = np.ones(len(tids), np.int64) if one_per_train else layout.counts[ti_c]
    keep = known & (within < limit)
    dest = layout.offsets[ti_c] + within
    if frame_dest is not None:
        fd = np.asarray(frame_dest, dtype=np.int64)
        dest = np.where(keep, fd[np.minimum(dest, len(fd) - 1)], -1)
        keep &= dest >= 0
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        return attrs.evolve(plan, shape=shape, steps=()), covered
    d, s, k = dest[idx], src[idx], step_no[idx]
    covered[d] = True
    brk = np.ones(len(idx), bool)
    brk[1:] = (np.diff(d) != 1) | (np.diff(s) != 1) | (np.diff(k) != 0)
    starts = np.flatnonzero(brk)
    stops = np.append(starts[1:], len(idx))
    tk = tids[idx]
    new = tuple(
        ReadStep(steps[kk].path, steps[kk].dataset, ss, ss + (b - a), dd, dd + (b - a),
                 int(t0), int(t1), 0)
        for kk, ss, dd, a, b, t0, t1 in zip(
            k[starts].tolist(), s[starts].tolist(), d[starts].tolist(), starts.tolist(),
            stops.tolist(), tk[starts].tolist(), tk[stops - 1].tolist()))
    return attrs.evolve(plan, shape=shape, steps=new), covered


def slice_plan(plan: ReadPlan, start: int, stop: int) -> ReadPlan:
    """The part of ``plan`` writing output rows ``start:stop``, shifted to start at 0.

    Examples
    --------
    >>> p = ReadPlan(np.dtype('u2'), (6,), (ReadStep('/a.h5', '/d', 10, 14, 1, 5),))
    >>> [(s.src_start, s.src_stop, s.dst_start, s.dst_stop) for s in slice_plan(p, 2, 4).steps]
    [(11, 13, 0, 2)]
    """
    out = []
    for s in plan.steps:
        a, b = max(s.dst_start, start), min(s.dst_stop, stop)
        if a >= b:
            continue
        off = s.src_start - s.dst_start
        out.append(ReadStep(s.path, s.dataset, a + off, b + off, a - start, b - start))
    return attrs.evolve(plan, shape=(stop - start,) + tuple(plan.shape[1:]), steps=tuple(out))


# -- labels --------------------------------------------------------------------------------

def xtdf_inner_dims(ndim: int) -> list:
    """Names of a frame's dims on XTDF image keys (after squeezing the raw length-1 axis).

    >>> xtdf_inner_dims(3), xtdf_inner_dims(1)
    (['data_gain', 'slow_scan', 'fast_scan'], ['dim_0'])
    """
    if ndim == 3:
        return ['data_gain', 'slow_scan', 'fast_scan']
    if ndim == 2:
        return ['slow_scan', 'fast_scan']
    return [f'dim_{i}' for i in range(ndim)]


def unstack_index(levels):
    """Positions of rows in the product of the sorted unique values of each level.

    Returns ``(uniques per level, flat position of every row, full)``, where
    ``full`` tells whether the rows are exactly the whole product in order
    (then a reshape unstacks). Duplicate rows raise ValueError.

    >>> u, pos, full = unstack_index([np.array([1, 1, 2]), np.array([0, 1, 1])])
    >>> [x.tolist() for x in u], pos.tolist(), full
    ([[1, 2], [0, 1]], [0, 1, 3], False)
    """
    uniq, codes = [], []
    for lv in levels:
        u, inv = np.unique(np.asarray(lv), return_inverse=True)
        uniq.append(u)
        codes.append(inv.reshape(-1).astype(np.int64))
    sizes = [len(u) for u in uniq]
    pos = np.ravel_multi_index(codes, sizes) if codes and len(codes[0]) else np.zeros(0, np.int64)
    total = int(np.prod(sizes)) if sizes else 0
    if len(np.unique(pos)) != len(pos):
        raise ValueError("Cannot unstack: some (train, pulse) pairs appear more than once "
                         "(use unstack_pulses=False)")
    full = len(pos) == total and bool(np.all(pos == np.arange(total)))
    return uniq, pos, full


def promote_for_missing(dtype) -> np.dtype:
    """The dtype that can hold NaN for missing values (as xarray promotes).

    >>> promote_for_missing('u2'), promote_for_missing('u8'), promote_for_missing('f4')
    (dtype('float32'), dtype('float64'), dtype('float32'))
    """
    dtype = np.dtype(dtype)
    if dtype.kind in 'iu':
        return np.dtype(np.float32 if dtype.itemsize <= 2 else np.float64)
    if dtype.kind == 'b':
        return np.dtype(object)
    return dtype
