"""Virtual CXI layouts (pure): which source rows fill which (frame, module) slots.

A virtual CXI file (FORMAT.md section 7) shows a multi-module detector as
arrays ``(frames, modules, ...)`` whose values are virtual datasets pointing
into the run's module files. Everything about such a file except the HDF5
calls is decided here, from records and small arrays:

* :func:`module_maps` - a module key's read plan (rows in the module's
  own order, with each row's train ID) turned into :class:`VirtualMap`
  records: a contiguous run of source rows -> consecutive frames of one
  module slot. A run ends where the file changes or where the rows stop
  matching the detector's frames train by train, so a module with all its
  trains gives one mapping per sequence file, not one per frame.
* :class:`VirtualDatasetSpec` - one virtual dataset: path, dtype, shape,
  fill value, ``axes`` attribute and its maps; :meth:`~VirtualDatasetSpec.blocks`
  gives the hyperslabs (virtual and source) of every map.
* :class:`CXILayout` - the whole file (frame labels, module identifiers,
  virtual datasets, attributes, soft links), built by :func:`cxi_layout`.
* :func:`fill_values`, :func:`common_frame_ids`, :func:`axes_attr`,
  :func:`experiment_identifiers` - the rules for fill values, pulse-ID
  consistency and labels.
* :func:`pair_mask` and :func:`keep_rows` - the frame selection behind
  ``det.write_frames``.

Only numpy and attrs; no file access. ``xfeldata.write_cxi`` reads the
pulse IDs and creates the file from a :class:`CXILayout`.

Example
-------
A module holding trains 10 and 12 (rows 0-1 and 2-3 of one file) of a
detector whose frames are 2 per train for trains 10, 11, 12: two maps, since
train 11 is missing in between.

>>> from xfeldata.core.detectors import FrameLayout
>>> from xfeldata.core.plan import ReadPlan, ReadStep
>>> plan = ReadPlan(np.dtype('f4'), (4, 8, 8), (ReadStep('/r/a.h5', '/d', 0, 4, 0, 4),))
>>> layout = FrameLayout.build([10, 11, 12], [2, 2, 2])
>>> module_maps(plan, np.array([10, 10, 12, 12], np.uint64), layout, slot=3)
(VirtualMap(path='/r/a.h5', dataset='/d', src_start=0, src_stop=2, frame_start=0, slot=3), \
VirtualMap(path='/r/a.h5', dataset='/d', src_start=2, src_stop=4, frame_start=4, slot=3))
"""
from __future__ import annotations

from typing import NamedTuple

import attrs
import numpy as np

from .detectors import FrameLayout, remap_plan
from .plan import ReadPlan, ReadStep
from .records import readonly

__all__ = ['VirtualMap', 'VirtualDatasetSpec', 'CXILayout', 'module_maps', 'retarget',
           'maps_read_plan', 'covered_frames', 'cxi_layout', 'missing_pairs',
           'fill_values', 'default_fill_value', 'common_frame_ids', 'axes_attr',
           'experiment_identifiers', 'data_gain_labels', 'pair_mask', 'keep_rows',
           'ENTRY', 'DETECTOR', 'DATASET_NAMES']

#: Groups of the CXI file.
ENTRY = '/entry_1'
DETECTOR = '/entry_1/instrument_1/detector_1'
#: Virtual datasets a CXI file may hold, and where.
DATASET_NAMES = {'cellId': f'{ENTRY}/cellId', 'data': f'{DETECTOR}/data',
                 'gain': f'{DETECTOR}/gain', 'mask': f'{DETECTOR}/mask'}


class VirtualMap(NamedTuple):
    """Source rows ``src_start:src_stop`` of ``path``/``dataset`` -> module ``slot``.

    The rows fill consecutive frames from ``frame_start`` on (each source row
    is ``cells`` frames for JUNGFRAU, one otherwise).
    """
    path: str
    dataset: str
    src_start: int
    src_stop: int
    frame_start: int
    slot: int


def module_maps(plan: ReadPlan, row_train_ids, layout: FrameLayout, slot: int,
                cells: int = 1) -> tuple:
    """The virtual maps placing one module's rows at the detector's frames.

    Parameters
    ----------
    plan : ReadPlan
        The module key's plan (``KeyData.plan()``), rows in the module's order.
    row_train_ids : array of uint64
        Train ID of every row of ``plan`` (``KeyData.train_id_coordinates()``).
    layout : FrameLayout
        The detector's entries per kept train: row ``k`` of a train goes to
        entry ``offsets[t] + k`` when ``k < counts[t]``; rows of other
        trains are not mapped (the rule of
        :func:`~xfeldata.core.detectors.remap_plan`, which assembles
        ``det[key].ndarray()``).
    slot : int
        Module slot (module number minus the first module number).
    cells : int
        Frames per source row (JUNGFRAU memory cells).

    Returns
    -------
    tuple of VirtualMap
        Maximal runs of rows consecutive in one dataset and in the frames,
        in the plan's order. Work is per run of rows of one train, not per
        row (a few numpy calls over the rows to find the runs).
    """
    steps = plan.steps
    tids = np.asarray(row_train_ids, dtype=np.uint64).reshape(-1)
    n = len(tids)
    if not steps or n == 0 or not len(layout.train_ids):
        return ()
    dst0 = np.fromiter((s.dst_start for s in steps), np.int64, len(steps))
    size = np.fromiter((s.dst_stop - s.dst_start for s in steps), np.int64, len(steps))
    if int(size.sum()) != n or dst0[0] != 0 or (dst0[1:] != np.cumsum(size)[:-1]).any():
        return _module_maps_by_row(plan, tids, layout, slot, cells)
    src0 = np.fromiter((s.src_start for s in steps), np.int64, len(steps))
    names = {}
    code = np.fromiter((names.setdefault((s.path, s.dataset), len(names)) for s in steps),
                       np.int64, len(steps))
    # runs of rows of one train (the position within the train restarts only when the
    # train changes), also cut where a step starts
    new_train = np.ones(n, bool)
    new_train[1:] = tids[1:] != tids[:-1]
    cut = new_train.copy()
    cut[dst0[size > 0]] = True
    g = np.flatnonzero(cut)
    g_len = np.diff(np.append(g, n))
    train_start = np.flatnonzero(new_train)
    within0 = g - train_start[np.searchsorted(train_start, g, 'right') - 1]
    g_tid = tids[g]
    ti = np.minimum(np.searchsorted(layout.train_ids, g_tid), len(layout.train_ids) - 1)
    known = layout.train_ids[ti] == g_tid
    keep_n = np.clip(layout.counts[ti] - within0, 0, g_len)
    keep = known & (keep_n > 0)
    if not keep.any():
        return ()
    g, keep_n, ti, within0 = g[keep], keep_n[keep], ti[keep], within0[keep]
    step = np.searchsorted(dst0, g, 'right') - 1
    src = src0[step] + (g - dst0[step])
    frame = layout.offsets[ti] + within0
    c = code[step]
    # merge runs continuing each other in the same dataset and in the frames
    brk = np.ones(len(g), bool)
    brk[1:] = (c[1:] != c[:-1]) | (src[1:] != src[:-1] + keep_n[:-1]) | \
        (frame[1:] != frame[:-1] + keep_n[:-1])
    first = np.flatnonzero(brk)
    last = np.append(first[1:], len(g)) - 1
    stop = src[last] + keep_n[last]
    by_code = {v: k for k, v in names.items()}
    return tuple(VirtualMap(*by_code[cc], a, b, f * cells, int(slot))
                 for cc, a, b, f in zip(c[first].tolist(), src[first].tolist(),
                                        stop.tolist(), frame[first].tolist()))


def _module_maps_by_row(plan, row_train_ids, layout, slot, cells):
    """:func:`module_maps` for plans whose steps do not tile their rows in order."""
    if not len(layout.train_ids):
        return ()
    remapped, _ = remap_plan(plan, row_train_ids, layout)
    out = []
    for s in remapped.steps:
        if out:
            p = out[-1]
            if (p.path == s.path and p.dataset == s.dataset and p.src_stop == s.src_start
                    and p.frame_start + (p.src_stop - p.src_start) * cells == s.dst_start * cells):
                out[-1] = p._replace(src_stop=s.src_stop)
                continue
        out.append(VirtualMap(s.path, s.dataset, int(s.src_start), int(s.src_stop),
                              int(s.dst_start) * cells, int(slot)))
    return tuple(out)


def covered_frames(maps, n_frames: int, n_slots: int, cells: int = 1) -> np.ndarray:
    """Bool array ``(frames, slots)``: the slots some map fills.

    >>> covered_frames([VirtualMap('a', 'd', 0, 2, 1, 0)], 4, 2).astype(int).tolist()
    [[0, 0], [1, 0], [1, 0], [0, 0]]
    """
    out = np.zeros((n_frames, n_slots), bool)
    for m in maps:
        out[m.frame_start:m.frame_start + (m.src_stop - m.src_start) * cells, m.slot] = True
    return out


# -- fill values --------------------------------------------------------------------------

def default_fill_value(name: str, dtype):
    """FORMAT.md 7: data NaN (float) or 0; gain 0; mask all bits set; cellId 0.

    >>> default_fill_value('data', 'f4'), default_fill_value('data', 'u2')
    (nan, 0)
    >>> hex(default_fill_value('mask', 'u4'))
    '0xffffffff'
    """
    dtype = np.dtype(dtype)
    if name == 'mask' and dtype.kind in 'iu':
        return int(np.iinfo(dtype).max) if dtype.kind == 'u' else -1
    if name == 'data' and dtype.kind in 'fc':
        return float('nan')
    return 0


def _cast_fill(name, value, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind in 'iu':
        try:
            as_int = int(value)
            ok = float(value) == as_int if not isinstance(value, (int, np.integer)) else True
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            raise ValueError(f"fill value {value!r} for {name!r} is not an integer, as the "
                             f"dataset's type {dtype} needs")
        info = np.iinfo(dtype)
        if not info.min <= as_int <= info.max:
            raise ValueError(f"fill value {value!r} for {name!r} does not fit in {dtype} "
                             f"({info.min} to {info.max})")
        return dtype.type(as_int)
    try:
        return np.asarray(value).astype(dtype)[()]
    except (TypeError, ValueError) as e:
        raise ValueError(f"fill value {value!r} for {name!r} cannot be stored as "
                         f"{dtype}: {e}") from None


def fill_values(dtypes: dict, overrides=None) -> dict:
    """``{dataset name: fill value cast to its dtype}``.

    ``dtypes`` maps the datasets being written (``'data'``, ``'gain'``,
    ``'mask'``, ``'cellId'``) to their dtypes; ``overrides`` (the user's
    ``fillvalues``) replaces defaults. An override for a dataset of the CXI
    layout that this file does not hold (``gain`` of raw data) is ignored;
    any other name, or a value the dtype cannot hold, raises ValueError.

    >>> fill_values({'data': 'u2', 'mask': 'u4'}, {'data': 0x10, 'gain': 3})
    {'data': np.uint16(16), 'mask': np.uint32(4294967295)}
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(DATASET_NAMES))
    if unknown:
        raise ValueError(f"fill values given for unknown datasets {unknown}; CXI datasets "
                         f"are {sorted(DATASET_NAMES)}")
    out = {}
    for name, dt in dtypes.items():
        value = overrides.get(name, default_fill_value(name, dt))
        out[name] = _cast_fill(name, value, dt)
    return out


# -- frame labels ---------------------------------------------------------------------------

def common_frame_ids(values, have, key: str = 'pulseId', frame_train_ids=None) -> np.ndarray:
    """The one ID every module with data gives a frame (``values``/``have``: (modules, frames)).

    Raises ValueError when modules disagree about a frame or no module has it.

    >>> v = np.array([[0, 1, 2], [0, 1, 9]], np.uint64)
    >>> common_frame_ids(v, np.array([[1, 1, 1], [1, 1, 0]], bool)).tolist()
    [0, 1, 2]
    >>> common_frame_ids(v, np.ones((2, 3), bool))
    Traceback (most recent call last):
    ...
    ValueError: Modules disagree about pulseId for frame 2: [2, 9] (modules with data)
    """
    values = np.asarray(values, dtype=np.uint64)
    have = np.asarray(have, dtype=bool)
    n = values.shape[1] if values.ndim == 2 else 0
    if n == 0:
        return np.zeros(0, np.uint64)
    big = np.uint64(np.iinfo(np.uint64).max)
    lo = np.where(have, values, big).min(axis=0)
    hi = np.where(have, values, np.uint64(0)).max(axis=0)
    where = '' if frame_train_ids is None else ' (train {})'
    missing = np.flatnonzero(~have.any(axis=0))
    if len(missing):
        f = int(missing[0])
        t = '' if frame_train_ids is None else where.format(int(frame_train_ids[f]))
        raise ValueError(f"No module has {key} for frame {f}{t}")
    bad = np.flatnonzero(lo != hi)
    if len(bad):
        f = int(bad[0])
        t = '' if frame_train_ids is None else where.format(int(frame_train_ids[f]))
        seen = values[have[:, f], f].tolist()
        raise ValueError(f"Modules disagree about {key} for frame {f}{t}: {seen} "
                         "(modules with data)")
    return lo


def experiment_identifiers(train_ids, pulse_ids) -> np.ndarray:
    """``"<trainId>:<pulseId>"`` per frame, as an object array of str.

    >>> experiment_identifiers(np.array([10, 10]), np.array([0, 4])).tolist()
    ['10:0', '10:4']
    """
    t = np.asarray(train_ids).astype(np.uint64)
    p = np.asarray(pulse_ids).astype(np.uint64)
    if len(t) == 0:
        return np.zeros(0, object)
    out = np.empty(len(t), object)
    out[:] = [f'{a}:{b}' for a, b in zip(t.tolist(), p.tolist())]   # faster than np.strings
    return out


def axes_attr(name: str, ndim: int) -> str:
    """The ``axes`` attribute of a virtual dataset with ``ndim`` dims.

    >>> axes_attr('cellId', 2), axes_attr('data', 4), axes_attr('data', 5)
    ('experiment_identifier:module_identifier', \
'experiment_identifier:module_identifier:y:x', \
'experiment_identifier:module_identifier:data_gain:y:x')
    """
    base = ['experiment_identifier', 'module_identifier']
    inner = ndim - 2
    if inner <= 0:
        return ':'.join(base)
    if inner == 1:
        return ':'.join(base + ['x'])
    extra = ['data_gain'] if inner == 3 else [f'dim_{i}' for i in range(inner - 2)]
    return ':'.join(base + extra + ['y', 'x'])


def data_gain_labels(n: int) -> tuple:
    """Names along the ``data_gain`` axis of 5-D raw data.

    >>> data_gain_labels(2), data_gain_labels(1)
    (('data', 'gain'), ('data',))
    """
    if n == 2:
        return ('data', 'gain')
    if n == 1:
        return ('data',)
    return tuple(f'plane_{i}' for i in range(n))


# -- the whole file ------------------------------------------------------------------------

@attrs.frozen
class VirtualDatasetSpec:
    """One virtual dataset of a CXI file.

    Attributes
    ----------
    name : str
        ``'data'``, ``'gain'``, ``'mask'`` or ``'cellId'``.
    path : str
        HDF5 path in the CXI file.
    dtype : numpy.dtype
    shape : tuple of int
        ``(frames, modules) + frame shape``.
    source_entry : tuple of int
        Shape of one source entry (row).
    cells : int
        Frames per source entry.
    fill : numpy scalar
        What unmapped slots read.
    maps : tuple of VirtualMap
    axes : str
        The ``axes`` attribute.
    """
    name: str
    path: str
    dtype: np.dtype = attrs.field(converter=np.dtype)
    shape: tuple
    source_entry: tuple
    cells: int
    fill: object
    maps: tuple
    axes: str

    def __attrs_post_init__(self):
        n_src = int(np.prod(self.source_entry, dtype=np.int64))
        n_dst = self.cells * int(np.prod(self.shape[2:], dtype=np.int64))
        if n_src != n_dst:
            raise ValueError(f"{self.name}: a source entry {self.source_entry} does not hold "
                             f"{self.cells} frame(s) of shape {self.shape[2:]}")

    def blocks(self):
        """Per map: ``((virtual start, count), (source start, count))`` hyperslabs.

        >>> s = VirtualDatasetSpec('data', '/d', 'u2', (8, 2, 4), (2, 4), 2, 0,
        ...                        (VirtualMap('a.h5', '/x', 1, 3, 2, 1),), 'a')
        >>> list(s.blocks())
        [(((2, 1, 0), (4, 1, 4)), ((1, 0, 0), (2, 2, 4)))]
        """
        inner = tuple(self.shape[2:])
        z_in, z_src = (0,) * len(inner), (0,) * len(self.source_entry)
        for m in self.maps:
            n = m.src_stop - m.src_start
            yield (((m.frame_start, m.slot) + z_in, (n * self.cells, 1) + inner),
                   ((m.src_start,) + z_src, (n,) + tuple(self.source_entry)))


@attrs.frozen(eq=False)
class CXILayout:
    """Everything a virtual CXI file holds (FORMAT.md section 7), as values.

    Attributes
    ----------
    detector_name : str
    train_ids, pulse_ids : ndarray of uint64
        Per frame; ``pulse_ids`` are the common pulse IDs (XTDF) or memory
        cells (JUNGFRAU), stored as ``/entry_1/<pulse_label>``.
    pulse_label : str
        ``'pulseId'`` or ``'memoryCell'``.
    module_ids : ndarray of int64
        ``module_identifier`` (0-based; 1-based for JUNGFRAU).
    datasets : tuple of VirtualDatasetSpec
    data_gain : tuple of str
        Labels of the ``data_gain`` axis (5-D raw data only, else empty).
    entry_attrs : tuple of (name, value)
        Attributes of ``/entry_1`` (proposal and run when known).
    """
    detector_name: str
    train_ids: np.ndarray = attrs.field(converter=lambda a: readonly(a, np.uint64))
    pulse_ids: np.ndarray = attrs.field(converter=lambda a: readonly(a, np.uint64))
    pulse_label: str
    module_ids: np.ndarray = attrs.field(converter=lambda a: readonly(a, np.int64))
    datasets: tuple
    data_gain: tuple = ()
    entry_attrs: tuple = ()

    @property
    def n_frames(self) -> int:
        return len(self.train_ids)

    @property
    def n_modules(self) -> int:
        return len(self.module_ids)

    @property
    def n_mappings(self) -> int:
        return sum(len(d.maps) for d in self.datasets)

    def dataset(self, name: str) -> VirtualDatasetSpec:
        for d in self.datasets:
            if d.name == name:
                return d
        raise KeyError(name)

    def experiment_identifier(self) -> np.ndarray:
        return experiment_identifiers(self.train_ids, self.pulse_ids)

    def links(self) -> tuple:
        """Soft links ``(link path, target path)``."""
        out = [(f'{ENTRY}/data_1', DETECTOR),
               (f'{DETECTOR}/experiment_identifier', f'{ENTRY}/experiment_identifier')]
        if self.data_gain:
            out.append((f'{DETECTOR}/data_gain', f'{ENTRY}/data_gain'))
        return tuple(out)

    def explain(self) -> str:
        """A few lines: frames, modules and the maps of each virtual dataset."""
        lines = [(f"Virtual CXI for {self.detector_name}: {self.n_frames} frames x "
                  f"{self.n_modules} modules, {self.n_mappings} mappings")]
        for d in self.datasets:
            files = len({m.path for m in d.maps})
            lines.append(f"  {d.path} {d.dtype} {d.shape} fill={d.fill!r}: "
                         f"{len(d.maps)} maps from {files} files")
        return '\n'.join(lines)


def retarget(maps, old_key: str, new_key: str) -> tuple:
    """The maps of another key of the same index group (same rows, other dataset).

    >>> m = VirtualMap('/r/a.h5', '/INSTRUMENT/D/DET/0CH0:xtdf/image/data', 0, 5, 0, 0)
    >>> retarget([m], 'image.data', 'image.cellId')[0].dataset
    '/INSTRUMENT/D/DET/0CH0:xtdf/image/cellId'
    """
    o, n = '/' + old_key.replace('.', '/'), '/' + new_key.replace('.', '/')
    if old_key.partition('.')[0] != new_key.partition('.')[0]:
        raise ValueError(f"{old_key} and {new_key} are in different index groups")
    out = []
    for m in maps:
        if not m.dataset.endswith(o):
            raise ValueError(f"{m.dataset} is not the dataset of {old_key}")
        out.append(m._replace(dataset=m.dataset[:-len(o)] + n))
    return tuple(out)


def maps_read_plan(maps, dtype, entry_shape, n_rows: int, cells: int = 1) -> ReadPlan:
    """A plan reading the rows ``maps`` name into an array ``(n_rows,) + entry_shape``
    of source entries in frame order (row = frame // cells), for one module slot.

    >>> p = maps_read_plan([VirtualMap('/a.h5', '/p', 3, 5, 4, 0)], 'u8', (2,), 4, cells=2)
    >>> p.shape, [(s.src_start, s.src_stop, s.dst_start, s.dst_stop) for s in p.steps]
    ((4, 2), [(3, 5, 2, 4)])
    """
    steps = tuple(ReadStep(m.path, m.dataset, m.src_start, m.src_stop, m.frame_start // cells,
                           m.frame_start // cells + (m.src_stop - m.src_start)) for m in maps)
    return ReadPlan(np.dtype(dtype), (int(n_rows),) + tuple(entry_shape), steps)


def cxi_layout(detector_name: str, layout: FrameLayout, module_ids, pulse_ids,
               keys: dict, *, cells: int = 1, cell_axis: bool = False,
               pulse_label: str = 'pulseId', fillvalues=None, entry_attrs=()) -> CXILayout:
    """Assemble a :class:`CXILayout`.

    Parameters
    ----------
    layout : FrameLayout
        Source entries per kept train (XTDF: frames; JUNGFRAU: entries of
        ``cells`` frames each).
    module_ids : sequence of int
        ``module_identifier`` of each slot.
    pulse_ids : array
        The common pulse/cell ID of each frame.
    keys : dict
        ``{dataset name: (dtype, source entry shape, maps)}`` for ``'cellId'``,
        ``'data'`` and optionally ``'gain'``, ``'mask'``; ``maps`` are the
        :class:`VirtualMap` records of all modules (:func:`module_maps`).
    cells : int
        Frames per source entry.
    cell_axis : bool
        Source entries of image datasets start with the cells axis (JUNGFRAU).
    fillvalues : dict, optional
        Overrides of :func:`fill_values`.
    """
    n_frames = layout.n_frames * cells
    n_mod = len(module_ids)
    pulse_ids = np.asarray(pulse_ids)
    if len(pulse_ids) != n_frames:
        raise ValueError(f"{len(pulse_ids)} pulse IDs for {n_frames} frames")
    fills = fill_values({n: k[0] for n, k in keys.items()}, fillvalues)
    specs, data_gain = [], ()
    for name in ('cellId', 'data', 'gain', 'mask'):
        if name not in keys:
            continue
        dtype, entry, maps = keys[name]
        entry = tuple(int(n) for n in entry)
        if name == 'cellId':
            inner = ()
        else:
            inner = entry[1:] if cell_axis else entry
        shape = (n_frames, n_mod) + inner
        for m in maps:
            if not 0 <= m.slot < n_mod:
                raise ValueError(f"module slot {m.slot} is outside the detector's "
                                 f"{n_mod} modules")
        specs.append(VirtualDatasetSpec(name, DATASET_NAMES[name], dtype, shape, entry,
                                        cells, fills[name], tuple(maps),
                                        axes_attr(name, len(shape))))
        if name == 'data' and len(shape) == 5:
            data_gain = data_gain_labels(shape[2])
    return CXILayout(detector_name, np.repeat(layout.frame_train_ids(), cells), pulse_ids,
                     pulse_label, np.asarray(module_ids, np.int64), tuple(specs), data_gain,
                     tuple(entry_attrs))


# -- frame selection (det.write_frames) -------------------------------------------------------

def _pairs(a, b) -> np.ndarray:
    arr = np.empty((len(a), 2), np.uint64)
    arr[:, 0], arr[:, 1] = a, b
    return arr.view(np.dtype((np.void, 16))).reshape(-1)


def pair_mask(train_ids, pulse_ids, want_trains, want_pulses) -> np.ndarray:
    """Bool per row: is ``(train_ids[i], pulse_ids[i])`` one of the wanted pairs?

    >>> pair_mask([1, 1, 2], [0, 1, 0], [1, 2], [1, 5]).tolist()
    [False, True, False]
    """
    t = np.asarray(train_ids, dtype=np.uint64).reshape(-1)
    p = np.asarray(pulse_ids, dtype=np.uint64).reshape(-1)
    wt = np.asarray(want_trains, dtype=np.uint64).reshape(-1)
    wp = np.asarray(want_pulses, dtype=np.uint64).reshape(-1)
    if len(t) == 0 or len(wt) == 0:
        return np.zeros(len(t), bool)
    return np.isin(_pairs(t, p), _pairs(wt, wp))


def missing_pairs(have_trains, have_pulses, want_trains, want_pulses) -> np.ndarray:
    """Positions of wanted pairs that are not among the ``have`` pairs.

    >>> missing_pairs([1, 1], [0, 1], [1, 1, 2], [1, 2, 0]).tolist()
    [1, 2]
    """
    have = _pairs(np.asarray(have_trains, np.uint64).reshape(-1),
                  np.asarray(have_pulses, np.uint64).reshape(-1))
    want = _pairs(np.asarray(want_trains, np.uint64).reshape(-1),
                  np.asarray(want_pulses, np.uint64).reshape(-1))
    return np.flatnonzero(~np.isin(want, have))


def keep_rows(plan: ReadPlan, mask) -> ReadPlan:
    """The plan reading only the rows where ``mask`` (one bool per output row) is True.

    >>> p = ReadPlan(np.dtype('u2'), (5,), (ReadStep('/a.h5', '/d', 10, 15, 0, 5),))
    >>> q = keep_rows(p, [True, True, False, True, False])
    >>> q.shape, [(s.src_start, s.src_stop, s.dst_start, s.dst_stop) for s in q.steps]
    ((3,), [(10, 12, 0, 2), (13, 14, 2, 3)])
    """
    mask = np.asarray(mask, dtype=bool)
    if len(mask) != plan.shape[0]:
        raise ValueError(f"{len(mask)} mask values for {plan.shape[0]} rows")
    steps = plan.steps
    shape = (int(mask.sum()),) + tuple(plan.shape[1:])
    if not steps or not mask.any():
        return attrs.evolve(plan, shape=shape, steps=())
    n = np.fromiter((s.dst_stop - s.dst_start for s in steps), np.int64, len(steps))
    dst0 = np.fromiter((s.dst_start for s in steps), np.int64, len(steps))
    src0 = np.fromiter((s.src_start for s in steps), np.int64, len(steps))
    step_no = np.repeat(np.arange(len(steps)), n)
    rows = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n) + np.repeat(dst0, n)
    src = rows - np.repeat(dst0 - src0, n)
    keep = mask[rows]
    k, s = step_no[keep], src[keep]
    d = np.arange(len(k))
    brk = np.ones(len(k), bool)
    brk[1:] = (np.diff(s) != 1) | (np.diff(k) != 0)
    starts = np.flatnonzero(brk)
    stops = np.append(starts[1:], len(k))
    new = tuple(ReadStep(steps[kk].path, steps[kk].dataset, ss, ss + (b - a), dd, dd + (b - a))
                for kk, ss, dd, a, b in zip(k[starts].tolist(), s[starts].tolist(),
                                             d[starts].tolist(), starts.tolist(),
                                             stops.tolist()))
    return attrs.evolve(plan, shape=shape, steps=new)
