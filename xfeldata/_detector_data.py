"""Multi-module key data: ``det[key]`` of :mod:`xfeldata.components`.

One key of every module of a detector, assembled into ``(module, rows, ...)``
arrays. Rows are the detector's trains (keys with one entry per train) or its
frames (XTDF ``image.*`` keys), as laid out by a
:class:`~xfeldata.core.detectors.FrameLayout`.

Reading goes through read plans: each module's ``KeyData.plan()`` is
re-targeted at its rows of the output (:func:`~xfeldata.core.detectors.remap_plan`)
and executed by :func:`xfeldata._execute.execute` straight into that
module's slice of one preallocated array. Rows no module file provides
(a module missing a train, missing modules with ``module_gaps``) get the fill
value; nothing is read train by train.
"""
from __future__ import annotations


import numpy as np

from .core import detectors as _d

__all__ = ['MultimodKeyData', 'XtdfImageMultimodKeyData', 'DetectorMaskedKeyData',
           'XtdfMaskedKeyData', 'default_fill', 'ModulePlans']


def default_fill(dtype, fill_value=None):
    """The fill value for missing data: NaN for floats, 0 otherwise (checked to fit)."""
    dtype = np.dtype(dtype)
    if fill_value is None:
        return np.nan if dtype.kind in 'fc' else 0
    if dtype.kind in 'iu':
        info = np.iinfo(dtype)
        try:
            ok = float(fill_value) == int(fill_value) and info.min <= int(fill_value) <= info.max
        except (ValueError, OverflowError, TypeError):
            ok = False
        if not ok:
            raise ValueError(f"fill value {fill_value!r} cannot be stored as {dtype}")
    return fill_value


def _roi_tuple(roi):
    from .core.trains import by_index
    if isinstance(roi, by_index):
        roi = roi.value
    if not isinstance(roi, tuple):
        raise TypeError(f"roi must be a tuple (e.g. np.s_[:, 0:8]), got {roi!r}")
    return roi


class ModulePlans:
    """Per module slot: the remapped plan and the output rows it covers."""
    __slots__ = ('slots', 'plans', 'covered', 'n_slots', 'dtype', 'shape')

    def __init__(self, slots, plans, covered, n_slots, dtype, shape):
        self.slots, self.plans, self.covered = slots, plans, covered
        self.n_slots, self.dtype, self.shape = n_slots, dtype, shape

    def explain(self) -> str:
        lines = [f"Detector read: {self.shape} {self.dtype}, one plan per module"]
        for slot, plan in zip(self.slots, self.plans):
            lines.append(f"module slot {slot}:")
            lines.extend('  ' + ln for ln in plan.explain(max_steps=8).splitlines())
        return '\n'.join(lines)


def fill_modules(mp: ModulePlans, out, fill):
    """Execute each module's plan into its slot of ``out``; fill what no file provides."""
    from ._execute import execute
    done = set()
    for slot, plan, cov in zip(mp.slots, mp.plans, mp.covered):
        dest = out[slot]
        # (Datasets never written are filled by the executor, not visited chunk by chunk.)
        view = dest.reshape(plan.shape) if dest.flags.c_contiguous else None
        if view is None:
            tmp = execute(plan, out=np.empty(plan.shape, out.dtype))
            dest[...] = tmp.reshape(dest.shape)
        else:
            execute(plan, out=view)
        if not cov.all():
            dest[~cov] = fill
        done.add(slot)
    for slot in range(mp.n_slots):
        if slot not in done:
            out[slot] = fill
    return out


class MultimodKeyData:
    """One key of every module of a detector (EXtra-data's ``MultimodKeyData``)."""

    def __init__(self, det, key):
        self.det = det
        self.key = key
        self.modno_to_keydata = {m: det.data[src, key]
                                 for m, src in sorted(det.modno_to_source.items())}
        first = next(iter(self.modno_to_keydata.values()))
        self._kd0 = first

    # -- description (no I/O) ----------------------------------------------------------
    def __repr__(self):
        return (f"<{type(self).__name__} {self.key!r} for {len(self.modno_to_keydata)} "
                f"modules of {self.det.detector_name!r}>")

    __iter__ = None

    @property
    def train_ids(self) -> np.ndarray:
        return self.det.train_ids

    @property
    def modules(self) -> list:
        return sorted(self.modno_to_keydata)

    @property
    def dtype(self) -> np.dtype:
        return self._kd0.dtype

    @property
    def _squeeze(self) -> bool:
        return False

    @property
    def _entry_shape(self) -> tuple:
        es = tuple(self._kd0.entry_shape)
        return es[1:] if self._squeeze else es

    def _rows(self) -> int:
        return len(self.det.train_ids)

    def _inner_dims(self, ndim) -> list:
        return [f'dim_{i}' for i in range(ndim)]

    @property
    def ndim(self) -> int:
        return 2 + len(self._entry_shape)

    @property
    def shape(self) -> tuple:
        return (len(self.modno_to_keydata), self._rows()) + self._entry_shape

    @property
    def dimensions(self) -> list:
        return ['module', 'trainId'] + self._inner_dims(len(self._entry_shape))

    def buffer_shape(self, module_gaps=False, roi=()):
        from .core.trains import roi_shape
        roi = _roi_tuple(roi)
        n_mod = self.det.n_modules if module_gaps else len(self.modno_to_keydata)
        inner = roi_shape(self._entry_shape, roi) if roi else self._entry_shape
        return (n_mod, self._rows()) + tuple(inner)

    def train_id_coordinates(self) -> np.ndarray:
        return np.asarray(self.det.train_ids, dtype=np.uint64)

    def _module_coords(self, module_gaps=False) -> np.ndarray:
        if module_gaps:
            return np.arange(self.det._first_slot, self.det._first_slot + self.det.n_modules)
        return np.array(self.modules, dtype=np.int64)

    # -- selections ---------------------------------------------------------------------
    def _with_det(self, det):
        return type(self)(det, self.key)

    def select_trains(self, trains):
        return self._with_det(self.det.select_trains(trains))

    def __getitem__(self, item):
        return self.select_trains(item)

    def split_trains(self, parts=None, trains_per_part=None, frames_per_part=None):
        for d in self.det.split_trains(parts, trains_per_part, frames_per_part):
            yield self._with_det(d)

    def data_counts(self, labelled=True):
        """Entries per train and module: a DataFrame (trainId x module) or a 2-D array."""
        counts = np.stack([kd.data_counts(labelled=False)
                           for kd in self.modno_to_keydata.values()]) \
            if self.modno_to_keydata else np.zeros((0, self._rows()), np.uint64)
        if not labelled:
            return counts
        import pandas as pd
        return pd.DataFrame(counts.T.astype(np.int64),
                            index=pd.Index(self.train_id_coordinates(), name='trainId'),
                            columns=pd.Index(self.modules, name='module'))

    # -- plans ------------------------------------------------------------------------
    def _layout(self):
        """(layout, frame_dest or None, one_per_train)."""
        return _d.FrameLayout.build(self.det.train_ids, np.ones(self._rows(), np.int64)), \
            None, True

    def _plan_roi(self, roi):
        return ((slice(None),) + roi) if (self._squeeze and roi) else roi

    def plans(self, roi=(), module_gaps=False) -> ModulePlans:
        """One read plan per module, writing into the module's slot (nothing is read).

        Made once per key data object and roi (the object is immutable).
        """
        roi = _roi_tuple(roi)
        from .core.plan import roi_key
        ck = (roi_key(roi) if roi else (), bool(module_gaps))
        cache = self.__dict__.setdefault('_plans_memo', {})
        hit = cache.get(ck)
        if hit is not None:
            return hit
        mp = cache[ck] = self._make_plans(roi, module_gaps)
        return mp

    def _make_plans(self, roi, module_gaps):
        layout, frame_dest, one = self._layout()
        slots, plans, covered = [], [], []
        first = self.det._first_slot
        for i, (m, kd) in enumerate(self.modno_to_keydata.items()):
            plan = kd.plan(self._plan_roi(roi))
            tids = kd.train_id_coordinates()
            p, cov = _d.remap_plan(plan, tids, layout, frame_dest, one_per_train=one)
            slots.append(m - first if module_gaps else i)
            plans.append(p)
            covered.append(cov)
        n_slots = self.det.n_modules if module_gaps else len(slots)
        shape = self.buffer_shape(module_gaps, roi)
        return ModulePlans(tuple(slots), tuple(plans), tuple(covered), n_slots,
                           self.dtype, shape)

    # -- reading ----------------------------------------------------------------------
    def ndarray(self, *, fill_value=None, out=None, roi=(), astype=None, module_gaps=False):
        """Load into an array ``(modules, rows, ...)``; gaps get ``fill_value``.

        Default fill: NaN for floating-point output, 0 otherwise. ``module_gaps``
        gives every module of the detector a slot (index = module number minus
        the first module number).
        """
        mp = self.plans(roi, module_gaps)
        dtype = np.dtype(astype) if astype is not None else self.dtype
        if out is None:
            out = np.empty(mp.shape, dtype)
        elif out.shape != mp.shape:
            raise ValueError(f"requires output array of shape {mp.shape}, got {out.shape}")
        fill = default_fill(out.dtype, fill_value)
        return fill_modules(mp, out, fill)

    def _labels(self, module_gaps=False):
        """(dims after module, coords) for the rows."""
        return ['trainId'], {'trainId': self.train_id_coordinates()}

    def xarray(self, *, fill_value=None, roi=(), astype=None):
        import xarray as xr
        arr = self.ndarray(fill_value=fill_value, roi=roi, astype=astype)
        row_dims, coords = self._labels()
        dims = ['module'] + row_dims + self._inner_dims(arr.ndim - 1 - len(row_dims))
        coords['module'] = self._module_coords()
        return xr.DataArray(arr, dims=dims, coords=coords, name=self._name())

    def _name(self):
        return f"{self.det.detector_name}.{self.key}"

    def dask_array(self, *, labelled=False, fill_value=None, astype=None,
                   rows_per_chunk=None):
        """A lazy dask array, one task per module and block of rows (from the plans)."""
        from ._outputs import require_dask, _chunk_bytes
        require_dask()
        import dask.array as da
        from dask.highlevelgraph import HighLevelGraph
        mp = self.plans(())
        dtype = np.dtype(astype) if astype is not None else self.dtype
        fill = default_fill(dtype, fill_value)
        n_rows = mp.shape[1]
        row_bytes = max(1, int(np.prod(mp.shape[2:], dtype=np.int64)) * dtype.itemsize)
        per = rows_per_chunk or max(1, _chunk_bytes() // row_bytes)
        bounds = list(range(0, n_rows, per)) + [n_rows] if n_rows else [0, 0]
        ident = (self.det.detector_name, self.key, tuple(mp.slots), n_rows, dtype.str, id(self))
        name = f"xfeldata-det-{abs(hash(ident)):x}"
        dsk = {}
        inner = (0,) * (len(mp.shape) - 2)
        for i, (slot, plan, cov) in enumerate(zip(mp.slots, mp.plans, mp.covered)):
            for j, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
                dsk[(name, i, j) + inner] = (_read_rows, _d.slice_plan(plan, a, b),
                                             cov[a:b], mp.shape[2:], dtype, fill)
        if not mp.slots or n_rows == 0:
            arr = da.full(mp.shape, fill, dtype=dtype)
        else:
            chunks = ((1,) * len(mp.slots), tuple(np.diff(bounds).tolist())) + \
                tuple((n,) for n in mp.shape[2:])
            graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
            arr = da.Array(graph, name, chunks, dtype=dtype)
        if not labelled:
            return arr
        import xarray as xr
        row_dims, coords = self._labels()
        dims = ['module'] + row_dims + self._inner_dims(arr.ndim - 1 - len(row_dims))
        coords['module'] = self._module_coords()
        return xr.DataArray(arr, dims=dims, coords=coords, name=self._name())

    def data_availability(self, module_gaps=False) -> np.ndarray:
        """Bool array (modules, rows): where a module file provides the row."""
        mp = self.plans((), module_gaps)
        out = np.zeros(mp.shape[:2], bool)
        for slot, cov in zip(mp.slots, mp.covered):
            out[slot] = cov
        return out


def _read_rows(plan, covered, inner_shape, dtype, fill):
    """Dask task: one module's rows (shape (1, rows, ...))."""
    out = np.empty((1, len(covered)) + tuple(inner_shape), dtype)
    mp = ModulePlans((0,), (plan,), (covered,), 1, dtype, out.shape)
    return fill_modules(mp, out, fill)


class XtdfImageMultimodKeyData(MultimodKeyData):
    """An ``image.*`` key of an XTDF detector: rows are frames, with pulse selection."""

    def __init__(self, det, key, pulse_sel=None):
        super().__init__(det, key)
        self._pulse_sel = _d.normalise_pulses(np.s_[:] if pulse_sel is None else pulse_sel)

    def _with_det(self, det):
        return type(self)(det, self.key, self._pulse_sel)

    def select_pulses(self, pulses):
        """The same key with only the selected pulses (by index, or ``by_id``)."""
        return type(self)(self.det, self.key, _d.normalise_pulses(pulses))

    @property
    def _squeeze(self) -> bool:
        es = tuple(self._kd0.entry_shape)
        return len(es) >= 1 and es[0] == 1

    def _inner_dims(self, ndim) -> list:
        return _d.xtdf_inner_dims(ndim)

    @property
    def dimensions(self) -> list:
        return ['module', 'train_pulse'] + self._inner_dims(len(self._entry_shape))

    def _full_layout(self):
        return self.det._frame_layout()

    def _frame_mask(self):
        layout = self._full_layout()
        sel = self._pulse_sel
        if sel.is_all() and not self.det._parallel_gain:
            return None
        pids = self.det._frame_ids('image.pulseId') if sel.kind == 'id' else None
        return _d.select_frames(layout, sel, pids, self.det._parallel_gain)

    def _layout(self):
        layout = self._full_layout()
        mask = self._frame_mask()
        if mask is None:
            return layout, None, False
        dest = np.full(layout.n_frames, -1, np.int64)
        dest[mask] = np.arange(int(mask.sum()))
        return layout, dest, False

    def _selected_layout(self):
        mask = self._frame_mask()
        layout = self._full_layout()
        return layout if mask is None else layout.take(mask)

    def _rows(self) -> int:
        return self._selected_layout().n_frames

    def train_id_coordinates(self) -> np.ndarray:
        return self._selected_layout().frame_train_ids()

    def _ids(self, key):
        ids = self.det._frame_ids(key)
        mask = self._frame_mask()
        return ids if mask is None else ids[mask]

    def pulse_id_coordinates(self) -> np.ndarray:
        return self._ids('image.pulseId')

    def cell_id_coordinates(self) -> np.ndarray:
        return self._ids('image.cellId')

    def _gain_and_pulse(self, subtrain_index):
        """Per selected frame: gain stage (parallel gain) and pulse/cell ID."""
        det = self.det
        key = 'image.pulseId' if subtrain_index == 'pulseId' else 'image.cellId'
        layout = self._full_layout()
        ids = det._frame_ids(key)
        mask = self._frame_mask()
        if det._parallel_gain:
            within = layout.frame_index()
            third = np.repeat(layout.counts // 3, layout.counts)
            third = np.maximum(third, 1)
            gain = (within // third).astype(np.uint8)
            first = np.repeat(layout.offsets[:-1], layout.counts)
            ids = ids[first + within % third]
        else:
            gain = None
        if mask is not None:
            ids = ids[mask]
            gain = None if gain is None else gain[mask]
        return gain, ids

    def _labels_xtdf(self, subtrain_index='pulseId', names=('trainId', 'pulseId', 'cellId')):
        if subtrain_index not in ('pulseId', 'cellId'):
            raise ValueError(f"subtrain_index must be 'pulseId' or 'cellId', "
                             f"got {subtrain_index!r}")
        gain, ids = self._gain_and_pulse(subtrain_index)
        sub = names[1] if subtrain_index == 'pulseId' else names[2]
        levels = [(names[0], self.train_id_coordinates().astype(np.uint64))]
        if gain is not None:
            levels.append(('gain', gain))
        levels.append((sub, np.asarray(ids).astype(np.uint64)))
        return levels

    def xarray(self, *, pulses=None, fill_value=None, roi=(), astype=None,
               subtrain_index='pulseId', unstack_pulses=False, decompress_threads=None):
        """DataArray ``(module, train_pulse, ...)`` (MultiIndex trainId, pulseId|cellId),
        or unstacked ``(module, trainId, pulseId|cellId, ...)``. ``pulses`` is ignored
        (as in EXtra-data): use :meth:`select_pulses`."""
        arr = self.ndarray(fill_value=fill_value, roi=roi, astype=astype)
        levels = self._labels_xtdf(subtrain_index)
        return frames_to_xarray(arr, levels, self._module_coords(), self._inner_dims,
                                unstack_pulses, self._name())

    def ndarray(self, *, fill_value=None, out=None, roi=(), astype=None, module_gaps=False,
                decompress_threads=None):
        return super().ndarray(fill_value=fill_value, out=out, roi=roi, astype=astype,
                               module_gaps=module_gaps)

    def _labels(self, module_gaps=False):
        import xarray as xr
        levels = self._labels_xtdf()
        mi = _multiindex(levels)
        coords = xr.Coordinates.from_pandas_multiindex(mi, 'train_pulse')
        return ['train_pulse'], dict(coords)

    def dask_array(self, *, labelled=False, subtrain_index='pulseId', fill_value=None,
                   astype=None, frames_per_chunk=None):
        if subtrain_index not in ('pulseId', 'cellId'):
            raise ValueError(f"subtrain_index must be 'pulseId' or 'cellId', "
                             f"got {subtrain_index!r}")
        arr = super().dask_array(labelled=False, fill_value=fill_value, astype=astype,
                                 rows_per_chunk=frames_per_chunk)
        if not labelled:
            return arr
        import xarray as xr
        levels = self._labels_xtdf(subtrain_index)
        coords = dict(xr.Coordinates.from_pandas_multiindex(_multiindex(levels),
                                                            'train_pulse'))
        coords['module'] = self._module_coords()
        dims = ['module', 'train_pulse'] + [f'dim_{i}' for i in range(arr.ndim - 2)]
        return xr.DataArray(arr, dims=dims, coords=coords, name=self._name())


def _multiindex(levels):
    import pandas as pd
    return pd.MultiIndex.from_arrays([v for _, v in levels], names=[n for n, _ in levels])


def frames_to_xarray(arr, levels, module_coords, inner_dims, unstack, name=None):
    """A (module, frames, ...) array labelled per frame by ``levels`` [(name, values)].

    Unstacked: one dim per level (sorted unique values); combinations no
    frame has are NaN (integer data promoted as xarray does).
    """
    import xarray as xr
    n_inner = arr.ndim - 2
    inner = inner_dims(n_inner)
    if not unstack:
        coords = dict(xr.Coordinates.from_pandas_multiindex(_multiindex(levels), 'train_pulse'))
        coords['module'] = module_coords
        return xr.DataArray(arr, dims=['module', 'train_pulse'] + inner, coords=coords,
                            name=name)
    uniq, pos, full = _d.unstack_index([v for _, v in levels])
    sizes = [len(u) for u in uniq]
    new_shape = (arr.shape[0],) + tuple(sizes) + arr.shape[2:]
    if full:
        data = arr.reshape(new_shape)
    else:
        dtype = _d.promote_for_missing(arr.dtype)
        data = np.full((arr.shape[0], int(np.prod(sizes))) + arr.shape[2:], np.nan, dtype)
        data[:, pos] = arr
        data = data.reshape(new_shape)
    coords = {n: u for (n, _), u in zip(levels, uniq)}
    coords['module'] = module_coords
    return xr.DataArray(data, dims=['module'] + [n for n, _ in levels] + inner,
                        coords=coords, name=name)


# -- masked data ----------------------------------------------------------------------------

def _mask_bits(mask_bits):
    if mask_bits is None:
        return None
    if isinstance(mask_bits, (list, tuple, set, frozenset)):
        v = 0
        for b in mask_bits:
            v |= int(b)
        return v
    return int(mask_bits)


class _MaskedMixin:
    def _setup_mask(self, mask_kd, mask_bits, masked_value):
        self._mask = mask_kd
        self._mask_bits = _mask_bits(mask_bits)
        self._masked_value = masked_value

    def __repr__(self):
        return f"<Masked {self.key!r} detector data for {len(self.modno_to_keydata)} modules>"

    def _apply(self, arr, mask):
        if self._mask_bits is None:
            hit = mask != 0
        else:
            hit = (mask & self._mask_bits) != 0
        if np.isnan(self._masked_value) if isinstance(self._masked_value, float) else False:
            if arr.dtype.kind not in 'fc':
                arr = arr.astype(np.float32 if arr.dtype.itemsize <= 2 else np.float64)
        arr[hit] = self._masked_value
        return arr

    def ndarray(self, *, fill_value=None, out=None, roi=(), astype=None, module_gaps=False,
                **kw):
        mask = self._mask.ndarray(roi=roi, module_gaps=module_gaps, fill_value=0)
        arr = super().ndarray(fill_value=fill_value, out=out, roi=roi, astype=astype,
                              module_gaps=module_gaps)
        if mask.shape != arr.shape:
            raise IndexError(f"mask shape {mask.shape} does not match data shape {arr.shape}")
        return self._apply(arr, mask)


class DetectorMaskedKeyData(_MaskedMixin, MultimodKeyData):
    """``det.masked_data()`` for keys with one entry per train (JUNGFRAU)."""

    def __init__(self, det, key, mask_key, mask_bits=None, masked_value=np.nan):
        MultimodKeyData.__init__(self, det, key)
        self._setup_mask(MultimodKeyData(det, mask_key), mask_bits, masked_value)
        self._mask_key = mask_key

    def _with_det(self, det):
        return type(self)(det, self.key, self._mask_key, self._mask_bits, self._masked_value)


class XtdfMaskedKeyData(_MaskedMixin, XtdfImageMultimodKeyData):
    """``det.masked_data()`` for XTDF image data (mask read with the same pulses and roi)."""

    def __init__(self, det, key, mask_key, mask_bits=None, masked_value=np.nan, pulse_sel=None):
        XtdfImageMultimodKeyData.__init__(self, det, key, pulse_sel)
        self._mask_key = mask_key
        self._setup_mask(XtdfImageMultimodKeyData(det, mask_key, self._pulse_sel),
                         mask_bits, masked_value)

    def _with_det(self, det):
        return type(self)(det, self.key, self._mask_key, self._mask_bits,
                          self._masked_value, self._pulse_sel)

    def select_pulses(self, pulses):
        return type(self)(self.det, self.key, self._mask_key, self._mask_bits,
                          self._masked_value, _d.normalise_pulses(pulses))

