"""Multi-module detectors: AGIPD, DSSC, LPD and JUNGFRAU as one array.

Each class carries a :class:`~xfeldata.core.detectors.DetectorSpec` record
(name pattern, module pattern, module count and shape, main and mask keys);
the behaviour is shared by all of them. A detector object is built from a
:class:`~xfeldata.reader.DataCollection`; it finds the module sources, checks
their frame counts, keeps the trains with enough modules and then reads
keys of all modules into one array (``det['image.data'].ndarray()``,
``det.get_array(...)``) through read plans, one per module
(:mod:`xfeldata._detector_data`).

Example
-------
>>> import tempfile, xfeldata
>>> from xfeldata.testing import write_run, Aggregator, xtdf_module
>>> d = tempfile.mkdtemp()
>>> _ = write_run(d, train_ids=range(10000, 10004), aggregators=[
...     Aggregator(f'AGIPD{m:02d}', [xtdf_module('SPB_DET_AGIPD1M-1', m, frames=3)])
...     for m in range(2)])
>>> det = AGIPD1M(xfeldata.RunDirectory(d), raw=True)
>>> det['image.data'].shape
(2, 12, 2, 64, 32)
"""
from __future__ import annotations

import warnings

import numpy as np

from ._detector_data import (DetectorMaskedKeyData, MultimodKeyData, XtdfImageMultimodKeyData,
                             XtdfMaskedKeyData, frames_to_xarray)
from .core import detectors as _d
from .core.detectors import MAX_PULSES, NO_PULSE_ID  # noqa: F401 - public constants
from .core.trains import by_id, select_train_ids, split_trains as _split_slices
from .exceptions import SourceNameError

__all__ = ['AGIPD1M', 'AGIPD500K', 'DSSC1M', 'LPD1M', 'LPDSolo', 'JUNGFRAU',
           'identify_multimod_detectors']
# Also public, as in EXtra-data: MultimodDetectorBase, XtdfDetectorBase, LPDBase,
# MAX_PULSES, NO_PULSE_ID.

_RAW_FALLBACK_MSG = (
    "No corrected (/CORR/) sources found, so raw data are used, as older versions did. "
    "Pass raw=True to use raw data without this warning, or raw=False to make this an "
    "error.")


class MultimodDetectorBase:
    """Shared machinery of the detector classes; ``_spec`` says which detector."""
    _spec: _d.DetectorSpec = None
    _parallel_gain = False

    def __init__(self, data, detector_name=None, modules=None, *, min_modules=1, raw=None):
        spec = self._spec
        if spec is None:
            raise TypeError(f"{type(self).__name__} is a base class; use a detector class "
                            "such as AGIPD1M")
        if min_modules <= 0:
            raise ValueError(f"min_modules must be a positive integer, got {min_modules!r}")
        if detector_name is None:
            detector_name = self._find_detector(data)
        self.detector_name = detector_name
        source_to_modno, corr = self._module_sources(data, detector_name, raw)
        source_to_modno = self._renumber(source_to_modno)
        if modules is not None:
            wanted = {int(m) for m in modules}
            source_to_modno = {s: m for s, m in source_to_modno.items() if m in wanted}
            if not source_to_modno:
                part = 'CORR' if corr else 'DET'
                raise SourceNameError(f"{detector_name}/{part}/...")
        self.source_to_modno = dict(sorted(source_to_modno.items(), key=lambda x: x[1]))
        self.modno_to_source = {m: s for s, m in self.source_to_modno.items()}
        self._is_raw = not corr and self._looks_raw(data, next(iter(self.source_to_modno)))
        self._n_modules = self._count_modules(source_to_modno)

        tids = np.asarray(data._selection.train_ids, dtype=np.uint64)
        counts = np.stack([
            data[src, spec.main_key].data_counts(labelled=False)
            for src in self.source_to_modno]).astype(np.uint64)
        keep, frames = _d.check_frame_counts(counts, tids, min_modules)
        self._set_state(
            data.select(list(self.source_to_modno)), tids[keep], frames)
        self._min_modules = min_modules

    # -- construction helpers --------------------------------------------------------------
    @classmethod
    def _find_detector(cls, data):
        names = _d.find_detectors(cls._spec, data.instrument_sources)
        if not names:
            raise SourceNameError(cls._spec.any_source_re().pattern)
        if len(names) > 1:
            raise ValueError(f"Multiple detectors found in the data: {', '.join(sorted(names))}. "
                             "Pass a name to the detector_name parameter.")
        return names.pop()

    def _module_sources(self, data, det_name, raw):
        spec = self._spec
        sources = data.instrument_sources
        legacy = data.legacy_sources
        corr = {s: m for s, m in _d.module_sources(spec, det_name, sources, True).items()
                if s not in legacy}
        if raw is not True and corr:
            return corr, True
        det = _d.module_sources(spec, det_name, sources, False)
        if raw is True:
            if not det:
                raise SourceNameError(f"{det_name}/DET/...")
            not_raw = [s for s in det if not self._looks_raw(data, s)]
            if not_raw:
                raise ValueError(f"Raw data was not found: {len(not_raw)} of the {det_name}/DET/"
                                 f" sources hold corrected data (e.g. {not_raw[0]}); pass "
                                 "raw=False (or leave it out) to use corrected data")
            return det, False
        if not det:
            raise SourceNameError(f"{det_name}/CORR/...")
        if self._looks_raw(data, next(iter(det))):
            if raw is False:
                raise SourceNameError(f"{det_name}/CORR/...")
            warnings.warn(_RAW_FALLBACK_MSG, UserWarning, stacklevel=4)
        return det, False

    def _looks_raw(self, data, source) -> bool:
        source = data.legacy_sources.get(source, source)
        if '/CORR/' in source:
            return False
        kd = data[source, self._spec.main_key]
        if self._spec.raw_by_ndim is not None:
            return kd.ndim == self._spec.raw_by_ndim
        return np.dtype(kd.dtype).kind in 'iu'

    def _renumber(self, source_to_modno):
        return source_to_modno

    def _count_modules(self, source_to_modno):
        return self._spec.n_modules

    def _set_state(self, data, train_ids, frames):
        tids = np.asarray(train_ids, dtype=np.uint64)
        self.data = data._evolve(selection=data._selection.with_trains(tids))
        self._tids = tids
        self._frames = np.asarray(frames, dtype=np.uint64)
        self._cache = {}

    def _derive(self, train_ids):
        """A copy for a subset of this detector's trains (no file access)."""
        new = object.__new__(type(self))
        new.__dict__.update({k: v for k, v in self.__dict__.items() if k != '_cache'})
        pos = np.searchsorted(self._tids, train_ids)
        new._set_state(self.data, self._tids[pos], self._frames[pos])
        return new

    # -- attributes (no I/O) --------------------------------------------------------------
    @property
    def n_modules(self) -> int:
        return self._n_modules

    @property
    def module_shape(self) -> tuple:
        return self._spec.module_shape

    @property
    def _first_slot(self) -> int:
        return self._spec.first_modno

    @property
    def train_ids(self) -> np.ndarray:
        return self._tids

    @property
    def frame_counts(self):
        """Frames (entries of the main key) per train, a pandas Series by train ID."""
        import pandas as pd
        return pd.Series(self._frames, index=pd.Index(self._tids, name='trainId'),
                         dtype=np.uint64)

    @property
    def train_ids_perframe(self) -> np.ndarray:
        return np.repeat(self._tids, self._frames.astype(np.int64))

    def _frames_per_entry(self) -> int:
        return 1

    @property
    def frames_per_train(self) -> int:
        u = np.unique(self._frames)
        if len(u) != 1:
            raise ValueError(f"Varying number of frames per train: {u[:10].tolist()}")
        return int(u[0]) * self._frames_per_entry()

    @property
    def train_id_chunks(self):
        warnings.warn("train_id_chunks is deprecated; use split_trains()", DeprecationWarning,
                      stacklevel=2)
        return [d.train_ids for d in self.split_trains(trains_per_part=1)]

    def __repr__(self):
        kind = 'raw' if self._is_raw else 'proc'
        return (f"<{type(self).__name__}: Data interface for detector "
                f"{self.detector_name!r} - {kind} data with {len(self.source_to_modno)} "
                "modules>")

    def info(self, file=None):
        """Print a short summary: modules, trains and frames."""
        import sys
        file = file or sys.stdout
        mods = sorted(self.modno_to_source)
        lines = [repr(self),
                 f"  modules: {len(mods)} of {self.n_modules}: {mods}",
                 f"  trains: {len(self._tids)}" + (
                     f" ({int(self._tids[0])} - {int(self._tids[-1])})" if len(self._tids) else ''),
                 "  frames per train: " + (
                     str(int(self._frames[0])) if len(np.unique(self._frames)) == 1
                     else f"{int(self._frames.min())} - {int(self._frames.max())}")]
        print('\n'.join(lines), file=file)

    # -- keys ---------------------------------------------------------------------------
    def __getitem__(self, key):
        if not isinstance(key, str):
            raise TypeError(f"det[...] takes a key name such as {self._spec.main_key!r}; "
                            "use select_trains() to select trains")
        return self._key_data(key)

    def _key_data(self, key):
        return MultimodKeyData(self, key)

    def __contains__(self, key):
        return all(key in self.data[src] for src in self.source_to_modno)

    def _frame_layout(self):
        c = self._cache.get('layout')
        if c is None:
            c = self._cache['layout'] = _d.FrameLayout.build(self._tids, self._frames)
        return c

    # -- selections ------------------------------------------------------------------------
    def select_trains(self, trains):
        tids = select_train_ids(self._tids, trains, stacklevel=3)
        return self._derive(tids)

    def split_trains(self, parts=None, trains_per_part=None, frames_per_part=None):
        """Yield detector objects for parts of the trains (whole trains only)."""
        if parts is None and trains_per_part is None and frames_per_part is None:
            raise ValueError("One of parts, trains_per_part or frames_per_part must be given")
        n = len(self._tids)
        if n == 0:
            return
        if frames_per_part is not None:
            if frames_per_part < 1:
                raise ValueError(f"frames_per_part must be >= 1, got {frames_per_part}")
            fpe = self._frames.astype(np.int64) * self._frames_per_entry()
            if len(np.unique(fpe)) == 1:
                tpp = max(1, frames_per_part // max(int(fpe[0]), 1))
                if trains_per_part is not None:
                    tpp = min(tpp, trains_per_part)
                slices = _split_slices(n, parts, tpp)
            else:
                cap = trains_per_part or (-(-n // parts) if parts else n)
                slices = _accumulate(fpe, frames_per_part, cap)
        else:
            slices = _split_slices(n, parts, trains_per_part)
        for s in slices:
            yield self._derive(self._tids[s])

    # -- reading ----------------------------------------------------------------------
    def _module_coords(self):
        return np.array(sorted(self.modno_to_source), dtype=np.int64)

    def get_array(self, key, *, fill_value=None, roi=(), astype=None):
        """DataArray ``(module, trainId, dim_0, ...)`` of one key of all modules."""
        return self[key].xarray(fill_value=fill_value, roi=roi, astype=astype)

    def get_dask_array(self, key, fill_value=None, astype=None):
        return self[key].dask_array(labelled=True, fill_value=fill_value, astype=astype)

    def data_availability(self, module_gaps=False):
        return self[self._spec.main_key].data_availability(module_gaps=module_gaps)

    def write_virtual_cxi(self, filename, fillvalues=None):
        """Write a virtual CXI file of this detector's frames (:mod:`xfeldata.write_cxi`).

        ``fillvalues`` (``{'data'|'gain'|'mask'|'cellId': value}``) replaces the
        values of slots without data. Returns the absolute path written.
        """
        from .write_cxi import writer_for
        return writer_for(self).write(filename, fillvalues=fillvalues)

    def masked_data(self, key=None, *, mask_bits=None, masked_value=np.nan):
        """Key data whose ``ndarray``/``xarray`` replace masked pixels by ``masked_value``."""
        key = key or self._spec.main_key
        mask_key = self._spec.mask_key
        if mask_key not in self:
            raise RuntimeError(f"This data doesn't include a mask ({mask_key!r} is missing "
                               f"from some {self.detector_name} modules)")
        return self._masked(key, mask_key, mask_bits, masked_value)

    def _masked(self, key, mask_key, mask_bits, masked_value):
        return DetectorMaskedKeyData(self, key, mask_key, mask_bits, masked_value)

    def _train_keys(self):
        keys = None
        for src in self.source_to_modno:
            k = set(self.data[src].keys())
            keys = k if keys is None else keys & k
        return sorted(keys or ())

    def trains(self, require_all=True):
        """Iterate ``(train ID, {key: DataArray with a 'module' dim})``, a batch at a time."""
        return self._iter_trains(require_all, None)

    def _train_value(self, key, part, pulses):
        return part.get_array(key)

    def _iter_trains(self, require_all, pulses):
        keys = self._train_keys()
        avail = (MultimodKeyData(self, self._spec.main_key).data_counts(labelled=False) > 0
                 if require_all else None)
        for part in self.split_trains(frames_per_part=1024, trains_per_part=64):
            arrays = {k: self._train_value(k, part, pulses) for k in keys}
            for tid in part._tids:
                i = int(np.searchsorted(self._tids, tid))
                if avail is not None and not avail[:, i].all():
                    continue
                yield int(tid), {k: _one_train(a, tid) for k, a in arrays.items()}

    def train_from_id(self, train_id, **kw):
        part = self.select_trains(by_id[[train_id]])
        if len(part._tids) == 0:
            from .exceptions import TrainIDError
            raise TrainIDError(train_id)
        for tid, d in part._iter_trains(False, kw.get('pulses')):
            return tid, d
        return int(train_id), {}


def _one_train(arr, tid):
    for dim in ('trainId', 'train'):
        if dim in arr.dims:
            return arr.sel({dim: tid})
    if 'train_pulse' in arr.dims:
        return arr.sel(train=tid) if 'train' in arr.coords else arr.sel(trainId=tid)
    return arr


def _accumulate(frames, budget, cap):
    """Slices of whole trains: a part ends before its frames would exceed ``budget``
    or its trains ``cap``."""
    out, start, acc = [], 0, 0
    for i, f in enumerate(frames.tolist()):
        if i > start and (acc + f > budget or i - start >= cap):
            out.append(slice(start, i))
            start, acc = i, 0
        acc += f
    out.append(slice(start, len(frames)))
    return out


class XtdfDetectorBase(MultimodDetectorBase):
    """AGIPD, DSSC and LPD: frames in an ``image`` group with pulse and cell IDs."""

    def _key_data(self, key):
        if key.startswith('image.'):
            return XtdfImageMultimodKeyData(self, key)
        return MultimodKeyData(self, key)

    def _frame_ids(self, key) -> np.ndarray:
        """Pulse or cell ID of every frame, checked to agree between modules."""
        c = self._cache.get(('ids', key))
        if c is not None:
            return c
        kd = XtdfImageMultimodKeyData(self, key)
        layout = self._frame_layout()
        n_mod = len(kd.modno_to_keydata)
        vals = np.zeros((n_mod, layout.n_frames), np.int64)
        have = np.zeros((n_mod, layout.n_frames), bool)
        from ._execute import execute
        for i, mkd in enumerate(kd.modno_to_keydata.values()):
            plan, cov = _d.remap_plan(mkd.plan(), mkd.train_id_coordinates(), layout)
            a = execute(plan).reshape(layout.n_frames, -1)
            if a.shape[1] != 1:
                raise ValueError(f"{key} has entries of shape {mkd.entry_shape}; expected "
                                 "one ID per frame")
            vals[i], have[i] = a[:, 0].astype(np.int64), cov
        big = np.iinfo(np.int64).max
        lo = np.where(have, vals, big).min(axis=0, initial=big)
        hi = np.where(have, vals, -1).max(axis=0, initial=-1)
        if (~have.any(axis=0)).any():
            f = int(np.flatnonzero(~have.any(axis=0))[0])
            raise ValueError(f"No module has {key} for frame {f} of train "
                             f"{int(layout.frame_train_ids()[f])}")
        bad = np.flatnonzero(lo != hi)
        if len(bad):
            f = int(bad[0])
            t = int(layout.frame_train_ids()[f])
            per = {m: int(v) for m, v, h in zip(kd.modules, vals[:, f], have[:, f]) if h}
            raise ValueError(f"Modules disagree about {key} in train {t}, frame "
                             f"{int(layout.frame_index()[f])}: {per}")
        self._cache[('ids', key)] = lo
        return lo

    def get_array(self, key, pulses=np.s_[:], unstack_pulses=True, *, fill_value=None,
                  subtrain_index='pulseId', roi=(), astype=None):
        """Data of all modules as a DataArray.

        ``image.*`` keys: dims ``(module, train, pulse|cell, ...)`` (LPD with
        parallel gain adds ``gain``), or ``(module, train_pulse, ...)`` with a
        MultiIndex when ``unstack_pulses=False``. Other keys: ``(module,
        trainId, ...)``.
        """
        if subtrain_index not in ('pulseId', 'cellId'):
            raise ValueError(f"subtrain_index must be 'pulseId' or 'cellId', "
                             f"got {subtrain_index!r}")
        if not key.startswith('image.'):
            return MultimodDetectorBase.get_array(self, key, fill_value=fill_value, roi=roi,
                                                  astype=astype)
        kd = self[key].select_pulses(pulses)
        arr = kd.ndarray(fill_value=fill_value, roi=roi, astype=astype)
        levels = kd._labels_xtdf(subtrain_index, names=('train', 'pulse', 'cell'))
        return frames_to_xarray(arr, levels, kd._module_coords(), kd._inner_dims,
                                unstack_pulses, kd._name())

    def get_dask_array(self, key, subtrain_index='pulseId', fill_value=None, astype=None):
        if key.startswith('image.'):
            return self[key].dask_array(labelled=True, subtrain_index=subtrain_index,
                                        fill_value=fill_value, astype=astype)
        return MultimodDetectorBase.get_dask_array(self, key, fill_value, astype)

    def trains(self, pulses=np.s_[:], require_all=True):
        return self._iter_trains(require_all, pulses)

    def _train_value(self, key, part, pulses):
        if key.startswith('image.'):
            return part.get_array(key, pulses=np.s_[:] if pulses is None else pulses,
                                  unstack_pulses=False)
        return part.get_array(key)

    def _masked(self, key, mask_key, mask_bits, masked_value):
        if key.startswith('image.'):
            return XtdfMaskedKeyData(self, key, mask_key, mask_bits, masked_value)
        return DetectorMaskedKeyData(self, key, mask_key, mask_bits, masked_value)

    def write_frames(self, filename, trains, pulses):
        """Write the frames ``(trains[i], pulses[i])`` to a new EuXFEL file.

        See :func:`xfeldata.write_cxi.write_frames`; returns the absolute path.
        """
        from .write_cxi import write_frames
        return write_frames(self, filename, trains, pulses)

    @staticmethod
    def zip_trains_pulses(trains, pulses):
        """Structured ``(trainId, pulseId)`` array of paired train and pulse IDs."""
        trains, pulses = np.asarray(trains), np.asarray(pulses)
        if trains.ndim != 1 or pulses.ndim != 1:
            raise ValueError("Train & pulse arrays must be 1-D")
        if trains.shape != pulses.shape:
            raise ValueError(f"Train & pulse arrays don't match ({trains.shape} and "
                             f"{pulses.shape})")
        out = np.zeros(trains.shape, dtype=[('trainId', 'u8'), ('pulseId', 'u8')])
        out['trainId'], out['pulseId'] = trains, pulses
        return out


class LPDBase(XtdfDetectorBase):
    """LPD detectors, with the ``parallel_gain`` option (3 gain stages per train)."""

    def __init__(self, data, detector_name=None, modules=None, *, min_modules=1,
                 parallel_gain=False, raw=None):
        super().__init__(data, detector_name, modules, min_modules=min_modules, raw=raw)
        self._parallel_gain = bool(parallel_gain)
        if self._parallel_gain:
            bad = np.flatnonzero(self._frames % 3 != 0)
            if len(bad):
                raise ValueError(
                    f"parallel_gain=True needs frame counts divisible by 3, but train "
                    f"{int(self._tids[bad[0]])} has {int(self._frames[bad[0]])} frames")


def _spec_class(name, base, doc):
    return type(name, (base,), {'_spec': _d.SPECS[name], '__doc__': doc,
                                '__module__': __name__})


AGIPD1M = _spec_class('AGIPD1M', XtdfDetectorBase,
                      "AGIPD 1M: 16 modules of 512 x 128 pixels.")
AGIPD500K = _spec_class('AGIPD500K', XtdfDetectorBase,
                        "AGIPD 500K: 8 modules of 512 x 128 pixels.")
DSSC1M = _spec_class('DSSC1M', XtdfDetectorBase, "DSSC 1M: 16 modules of 128 x 512 pixels.")
LPD1M = _spec_class('LPD1M', LPDBase, "LPD 1M: 16 modules of 256 x 256 pixels.")
LPDSolo = _spec_class('LPDSolo', LPDBase, "LPD Solo: 1 module of 256 x 256 pixels.")


class JUNGFRAU(MultimodDetectorBase):
    """JUNGFRAU: modules numbered from 1, one entry per train with memory cells."""
    _spec = _d.SPECS['JUNGFRAU']

    def __init__(self, data, detector_name=None, modules=None, *, min_modules=1,
                 n_modules=None, first_modno=1, raw=None):
        self._first_modno = int(first_modno)
        self._n_modules_arg = n_modules
        super().__init__(data, detector_name, modules, min_modules=min_modules, raw=raw)

    def _renumber(self, source_to_modno):
        return {s: m - self._first_modno + 1 for s, m in source_to_modno.items()}

    def _module_sources(self, data, det_name, raw):
        s2m, corr = super()._module_sources(data, det_name, raw)
        self._n_found = max(s2m.values()) - self._first_modno + 1 if s2m else 0
        return s2m, corr

    def _count_modules(self, source_to_modno):
        if self._n_modules_arg is not None:
            return int(self._n_modules_arg)
        return self._n_found

    def _frames_per_entry(self) -> int:
        kd = self.data[next(iter(self.source_to_modno)), self._spec.main_key]
        return int(kd.entry_shape[0]) if kd.entry_shape else 1

    def get_array(self, key, *, fill_value=None, roi=(), astype=None):
        """DataArray ``(module, train, cell, slow_scan, fast_scan)`` (or ``cell`` only)."""
        arr = super().get_array(key, fill_value=fill_value, roi=roi, astype=astype)
        inner = arr.dims[2:]
        names = {3: ['cell', 'slow_scan', 'fast_scan'], 1: ['cell']}.get(len(inner))
        ren = {'trainId': 'train'}
        if names:
            ren.update(dict(zip(inner, names)))
        return arr.rename(ren)

    def _masked(self, key, mask_key, mask_bits, masked_value):
        return DetectorMaskedKeyData(self, key, mask_key, mask_bits, masked_value)

    def cell_ids(self) -> np.ndarray:
        """Memory-cell IDs of the first train (all modules must agree)."""
        kd = self['data.memoryCell'].select_trains(np.s_[:1])
        arr = kd.ndarray()
        have = kd.data_counts(labelled=False)[:, 0] > 0 if arr.size else []
        vals = arr[have, 0] if arr.size else arr
        if vals.size == 0:
            raise ValueError("No memory cell IDs found")
        if not (vals == vals[:1]).all():
            raise ValueError("Modules disagree about the memory cell IDs of the first train")
        return vals[0]


_ALL = (AGIPD1M, AGIPD500K, DSSC1M, LPD1M, LPDSolo, JUNGFRAU)


def identify_multimod_detectors(data, detector_name=None, *, single=False, clses=None):
    """``{(detector name, class)}`` for the multi-module detectors in ``data``.

    ``single=True`` returns the one ``(name, class)`` found, and raises
    ValueError if there are none or several. ``detector_name`` is accepted and
    not used (as in EXtra-data).
    """
    found = set()
    for cls in (clses or _ALL):
        for name in _d.find_detectors(cls._spec, data.instrument_sources):
            found.add((name, cls))
    if single:
        if len(found) != 1:
            raise ValueError(f"Expected one multi-module detector, found {len(found)}: "
                             f"{sorted((n, c.__name__) for n, c in found)}")
        return found.pop()
    return found
