"""Virtual CXI files of multi-module detectors, and files of selected detector frames.

``det.write_virtual_cxi(filename)`` writes a small HDF5 file in the CXI 1.5
layout (FORMAT.md section 7) for CrystFEL and similar tools: the detector's
frames as arrays ``(frames, modules, ...)`` (``data``, and for corrected
data ``gain`` and ``mask``) that are *virtual datasets* mapping the run's
module files, plus per-frame train IDs, pulse IDs (JUNGFRAU: memory cells)
and ``"trainId:pulseId"`` identifiers. No detector data are copied.

How it is made
--------------
* Frames are all frames of the detector's trains (those with data from at
  least ``min_modules`` modules, as the detector object was made); the
  module axis has the detector's full module count, so a module absent
  from the run is an empty slot, not a shift of the others.
* Which source rows fill which (frame, module) slots is decided by the pure
  :mod:`xfeldata.core.cxi` from each module key's read plan: one mapping per
  run of rows contiguous in a file and matching the detector's frames train
  by train (one per sequence file when a module has every train).
* Pulse IDs (memory cells) are read once per module and must agree between
  the modules having a frame (``ValueError`` otherwise).
* Slots no file provides read the fill value: NaN for float data, else 0;
  gain 0; mask ``0xFFFFFFFF``; cellId 0. ``fillvalues={'data': 0, ...}``
  overrides them (cast to the dataset's type; a value the type cannot hold
  is a ``ValueError``).
* The file is created with HDF5 library version bounds v110 (readable by
  HDF5 1.10 and newer) under a temporary name in the target folder and
  renamed when complete. The target folder is checked first (missing or
  unwritable: ``FileNotFoundError`` / ``PermissionError``, before any
  reading). Source files are named by absolute path, so the CXI file can
  be moved on the same filesystem; it reads through to the run's files.
* Proposal and run numbers (``/entry_1`` attributes) come from the run
  metadata; data combined from several runs have none, and the attributes
  are left out.

Example
-------
>>> import tempfile, os, h5py, numpy as np, xfeldata
>>> from xfeldata.components import AGIPD1M
>>> from xfeldata.testing import Aggregator, write_run, xtdf_module
>>> d = tempfile.mkdtemp()
>>> _ = write_run(d, train_ids=range(10000, 10004), aggregators=[
...     Aggregator(f'AGIPD{m:02d}', [xtdf_module('SPB_DET_AGIPD1M-1', m, frames=3, raw=False)])
...     for m in (0, 5)])
>>> det = AGIPD1M(xfeldata.RunDirectory(d))
>>> path = det.write_virtual_cxi(os.path.join(d, 'agipd.cxi'))
>>> with h5py.File(path, 'r') as f:
...     print(f['entry_1/data_1/data'].shape, f['entry_1/experiment_identifier'][4].decode())
(12, 16, 64, 32) 10001:1
"""
from __future__ import annotations

import logging
import os

import h5py
import numpy as np

from .core import cxi as _cxi
from .core.detectors import FrameLayout

__all__ = ['VirtualCXIWriterBase', 'XtdfCXIWriter', 'JUNGFRAUCXIWriter', 'writer_for',
           'write_layout', 'write_frames']

log = logging.getLogger(__name__)

_UTF8 = h5py.string_dtype('utf-8')


def _input_paths(det) -> list:
    return [fi.path for fi in det.data._index.files]


class VirtualCXIWriterBase:
    """Write a virtual CXI file of a multi-module detector (``det.write_virtual_cxi``).

    Parameters
    ----------
    detdata : MultimodDetectorBase
        The detector object (``AGIPD1M(run)``, ...): its trains, modules and
        ``min_modules`` choose the frames.

    Subclasses name the keys: :class:`XtdfCXIWriter` (AGIPD, DSSC, LPD) and
    :class:`JUNGFRAUCXIWriter`.
    """
    #: Key holding each frame's pulse ID (JUNGFRAU: memory cell), and its CXI name.
    pulse_key = 'image.pulseId'
    pulse_label = 'pulseId'
    #: Key behind ``/entry_1/cellId``.
    cell_key = 'image.cellId'
    gain_key = 'image.gain'
    mask_key = 'image.mask'

    def __init__(self, detdata):
        self.detdata = detdata

    def __repr__(self):
        return f"<{type(self).__name__} for {self.detdata!r}>"

    @property
    def nmodules(self) -> int:
        """Size of the module axis: the detector's full module count."""
        return int(self.detdata.n_modules)

    # -- what to write (records only) -------------------------------------------------
    def _data_key(self) -> str:
        return self.detdata._spec.main_key

    def _cells(self) -> tuple:
        """(frames per source entry, whether image entries start with a cells axis)."""
        return 1, False

    def _module_ids(self) -> np.ndarray:
        first = self.detdata._first_slot
        return np.arange(first, first + self.nmodules, dtype=np.int64)

    def _main_maps(self, layout: FrameLayout, cells: int) -> tuple:
        """The virtual maps of the main key, all modules (from each module's read plan)."""
        det = self.detdata
        first = det._first_slot
        key = self._data_key()
        maps = []
        for modno, src in sorted(det.modno_to_source.items()):
            slot = modno - first
            if not 0 <= slot < self.nmodules:
                raise ValueError(f"module {modno} ({src}) is outside the detector's "
                                 f"{self.nmodules} modules; pass n_modules to the detector")
            kd = det.data[src, key]
            maps.extend(_cxi.module_maps(kd.plan(), kd.train_id_coordinates(), layout, slot,
                                         cells))
        return tuple(maps)

    def _key_info(self, key) -> tuple:
        """(dtype, entry shape) of a key, from the first module's records."""
        det = self.detdata
        kd = det.data[next(iter(det.source_to_modno)), key]
        return np.dtype(kd.dtype), tuple(int(n) for n in kd.entry_shape)

    def _keys(self) -> dict:
        """``{CXI dataset name: key}`` of the datasets to write."""
        det = self.detdata
        keys = {'cellId': self.cell_key, 'data': self._data_key()}
        if not det._is_raw:
            data_entry = self._key_info(keys['data'])[1]
            for name, key in (('gain', self.gain_key), ('mask', self.mask_key)):
                if not key or key not in det:
                    continue
                entry = self._key_info(key)[1]
                if entry != data_entry:
                    log.warning("Not writing %s: %s entries %s differ from the data's %s",
                                name, key, entry, data_entry)
                    continue
                keys[name] = key
        return keys

    def _layout(self) -> FrameLayout:
        """Source entries per kept train."""
        return self.detdata._frame_layout()

    # -- reading ------------------------------------------------------------------------
    def _pulse_ids(self, layout: FrameLayout, cells: int, main_maps) -> np.ndarray:
        """The common pulse ID (memory cell) of every frame, checked across modules.

        Each module's IDs are read from the rows its maps name (same index
        group as the data), so every frame gets the ID of the row behind it.
        """
        n_frames = layout.n_frames * cells
        maps = _cxi.retarget(main_maps, self._data_key(), self.pulse_key)
        dtype, entry = self._key_info(self.pulse_key)
        if int(np.prod(entry, dtype=np.int64)) != cells:
            raise ValueError(f"{self.pulse_key} has entries of shape {entry}; expected "
                             f"{cells} value(s) per entry")
        slots = sorted({m.slot for m in maps})
        row = {s: i for i, s in enumerate(slots)}
        vals = np.zeros((len(slots), layout.n_frames) + entry, dtype)
        have = np.zeros((len(slots), n_frames), bool)
        opened = {}
        for m in maps:
            # small ID datasets: one plain HDF5 read per map, straight into place
            dsid = _source_dataset(m, entry, opened)
            n = m.src_stop - m.src_start
            r0 = m.frame_start // cells
            fspace = dsid.get_space()
            fspace.select_hyperslab((m.src_start,) + (0,) * len(entry), (n,) + entry)
            i = row[m.slot]
            dsid.read(h5py.h5s.create_simple((n,) + entry), fspace, vals[i, r0:r0 + n])
            have[i, m.frame_start:m.frame_start + n * cells] = True
        vals = vals.reshape(len(slots), n_frames)
        return _cxi.common_frame_ids(vals, have, self.pulse_key,
                                     np.repeat(layout.frame_train_ids(), cells))

    def _entry_attrs(self) -> tuple:
        from .exceptions import MultiRunError
        try:
            md = self.detdata.data.run_metadata()
        except MultiRunError:
            log.info("Data from several runs: no proposal and run number attributes")
            return ()
        prop, run = md.get('proposalNumber'), md.get('runNumber')
        if prop is None or run is None:
            return ()
        return (('name', f'EuXFEL proposal {int(prop)} run {int(run)}'),
                ('euxfelProposalNumber', np.uint32(prop)),
                ('euxfelRunNumber', np.uint32(run)))

    def layout(self, fillvalues=None) -> _cxi.CXILayout:
        """The file's content as a :class:`~xfeldata.core.cxi.CXILayout` (reads pulse IDs).

        Nothing is written; ``layout().explain()`` shows the mappings.
        """
        det = self.detdata
        keys = self._keys()
        info = {name: self._key_info(key) for name, key in keys.items()}
        _cxi.fill_values({n: i[0] for n, i in info.items()}, fillvalues)   # fail early
        layout = self._layout()
        cells, cell_axis = self._cells()
        if layout.n_frames == 0:
            raise ValueError(f"{det.detector_name}: no frames to write")
        main_maps = self._main_maps(layout, cells)
        log.info("Reading %s of %d modules", self.pulse_key, len(det.modno_to_source))
        pulse_ids = self._pulse_ids(layout, cells, main_maps)
        spec = {name: info[name] + (_cxi.retarget(main_maps, self._data_key(), key),)
                for name, key in keys.items()}
        return _cxi.cxi_layout(det.detector_name, layout, self._module_ids(), pulse_ids, spec,
                               cells=cells, cell_axis=cell_axis, pulse_label=self.pulse_label,
                               fillvalues=fillvalues, entry_attrs=self._entry_attrs())

    def write(self, filename, fillvalues=None) -> str:
        """Write the virtual CXI file ``filename`` (atomically); returns its absolute path.

        Parameters
        ----------
        filename : str or os.PathLike
        fillvalues : dict, optional
            ``{'data'|'gain'|'mask'|'cellId': value}``: what slots without
            data read instead of the defaults (NaN or 0, 0, 0xFFFFFFFF, 0).

        Raises
        ------
        FileNotFoundError, PermissionError, IsADirectoryError, ValueError
            The target cannot be written (checked before any reading), or is
            an input file.
        ValueError
            A fill value the dataset's type cannot hold; modules disagree
            about a frame's pulse ID; no frames.
        """
        from ._write_util import atomic_output, check_target
        path = check_target(filename, _input_paths(self.detdata))
        lay = self.layout(fillvalues)
        log.info("Writing %s: %d frames x %d modules, %d virtual mappings", path,
                 lay.n_frames, lay.n_modules, lay.n_mappings)
        with atomic_output(path) as tmp:
            write_layout(tmp, lay)
        return path


class XtdfCXIWriter(VirtualCXIWriterBase):
    """Virtual CXI files of AGIPD, DSSC and LPD (``image.*`` keys, one frame per entry).

    Raw data keep their per-frame gain/plane axis: ``data`` is 5-D
    ``(frames, modules, G, ss, fs)`` with ``/entry_1/data_gain`` naming the
    planes (AGIPD ``['data', 'gain']``, LPD/DSSC ``['data']``).
    """


class JUNGFRAUCXIWriter(VirtualCXIWriterBase):
    """Virtual CXI files of JUNGFRAU: each source entry is ``cells`` frames (memory cells).

    ``/entry_1/memoryCell`` replaces ``pulseId``; module identifiers are 1-based.
    """
    pulse_key = 'data.memoryCell'
    pulse_label = 'memoryCell'
    cell_key = 'data.memoryCell'
    gain_key = 'data.gain'
    mask_key = 'data.mask'

    def _cells(self) -> tuple:
        det = self.detdata
        kd = det.data[next(iter(det.source_to_modno)), self._data_key()]
        es = tuple(kd.entry_shape)
        if len(es) == 3:
            return int(es[0]), True
        return 1, False


def writer_for(det) -> VirtualCXIWriterBase:
    """The CXI writer class for a detector object."""
    return XtdfCXIWriter(det) if det._spec.xtdf else JUNGFRAUCXIWriter(det)


# -- the HDF5 file ------------------------------------------------------------------------

def _open_source(path: str, dataset: str, files: dict):
    from ._tiers import h5file
    from .exceptions import FileStructureError
    fid = files.get(path)
    if fid is None:
        fid = files[path] = h5file(path).id
    try:
        dsid = h5py.h5d.open(fid, dataset.encode('utf-8', 'surrogateescape'))
    except (KeyError, ValueError, TypeError, OSError, RuntimeError) as e:
        raise FileStructureError(f"{path}: cannot open dataset {dataset} ({e})") from None
    return dsid


def _source_dataset(m: _cxi.VirtualMap, entry: tuple, opened: dict):
    """The source dataset of a map (opened once), checked to hold the map's rows."""
    from .exceptions import FileStructureError
    key = (m.path, m.dataset)
    dsid = opened.get(key)
    if dsid is None:
        dsid = opened[key] = _open_source(m.path, m.dataset, opened.setdefault('files', {}))
    if m.src_stop > dsid.shape[0] or tuple(dsid.shape[1:]) != tuple(entry):
        raise FileStructureError(
            f"{m.path}: {m.dataset} has shape {dsid.shape}; the index needs rows "
            f"{m.src_start}:{m.src_stop} of entries {tuple(entry)}")
    return dsid


def _create_virtual(f: h5py.File, spec: _cxi.VirtualDatasetSpec, opened: dict):
    """One virtual dataset, one ``H5Pset_virtual`` per map (HDF5's low-level calls)."""
    shape = tuple(int(n) for n in spec.shape)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.VIRTUAL)
    htype = None
    names = opened.setdefault('names', {})
    for m, (vblock, sblock) in zip(spec.maps, spec.blocks()):
        dsid = _source_dataset(m, spec.source_entry, opened)
        h = names.get((m.path, m.dataset))
        if h is None:
            h = names[m.path, m.dataset] = (
                os.path.abspath(m.path).encode('utf-8', 'surrogateescape'),
                m.dataset.encode('utf-8', 'surrogateescape'))
        fname, dname = h
        if htype is None:
            htype = dsid.get_type()
        sspace = dsid.get_space()
        sspace.select_hyperslab(*sblock)
        vsel = h5py.h5s.create_simple(shape, shape)
        vsel.select_hyperslab(*vblock)
        dcpl.set_virtual(vsel, fname, dname, sspace)
    if htype is None:
        htype = h5py.h5t.py_create(spec.dtype, logical=True)
    dcpl.set_fill_value(np.array(spec.fill, dtype=spec.dtype))
    space = h5py.h5s.create_simple(shape, shape)
    lcpl = h5py.h5p.create(h5py.h5p.LINK_CREATE)
    lcpl.set_create_intermediate_group(True)
    dsid = h5py.h5d.create(f.id, spec.path.encode(), htype, space, dcpl=dcpl, lcpl=lcpl)
    ds = h5py.Dataset(dsid)
    ds.attrs['axes'] = spec.axes
    return ds


def write_layout(path, lay: _cxi.CXILayout) -> None:
    """Create the CXI file ``path`` (overwritten) from a layout; HDF5 library bounds v110."""
    ENTRY, DETECTOR = _cxi.ENTRY, _cxi.DETECTOR
    opened = {}
    with h5py.File(path, 'w', libver=('v110', 'v110')) as f:
        f.create_dataset('cxi_version', data=np.array([150], np.int64))
        entry = f.create_group(ENTRY)
        for name, value in lay.entry_attrs:
            entry.attrs[name] = value
        entry.create_dataset('experiment_identifier', data=lay.experiment_identifier(),
                             dtype=_UTF8)
        entry.create_dataset('trainId', data=lay.train_ids, dtype=np.uint64)
        entry.create_dataset(lay.pulse_label, data=lay.pulse_ids, dtype=np.uint64)
        if lay.data_gain:
            entry.create_dataset('data_gain', data=np.array(lay.data_gain, dtype=object),
                                 dtype=_UTF8)
        det = f.create_group(DETECTOR)
        det.attrs['name'] = lay.detector_name
        det.create_dataset('module_identifier', data=lay.module_ids, dtype=np.int64)
        for spec in lay.datasets:
            _create_virtual(f, spec, opened)
        for link, target in lay.links():
            f[link] = h5py.SoftLink(target)


# -- det.write_frames ---------------------------------------------------------------------

def write_frames(det, filename, trains, pulses) -> str:
    """Write chosen frames of an XTDF detector to a new EuXFEL file (``det.write_frames``).

    ``trains`` and ``pulses`` are 1-D arrays of equal length: frame ``i`` is
    the frame with train ID ``trains[i]`` and pulse ID ``pulses[i]``. The
    file holds the detector's module sources for the trains named: the
    ``image`` group with only the chosen frames of each module (INDEX counts
    to match; a module missing a train has none), and the other groups
    (``header``, ``trailer``, ``detector``) whole for those trains. Written
    atomically, like ``DataCollection.write``; returns the absolute path.

    Raises
    ------
    ValueError
        Arrays not 1-D or of different shapes; a requested frame is not in
        the detector's data (train not kept, or no such pulse ID).
    """
    from ._write_util import atomic_output, check_target
    from .core.trains import by_id
    pairs = det.zip_trains_pulses(trains, pulses)
    path = check_target(filename, _input_paths(det))
    want_t, want_p = pairs['trainId'], pairs['pulseId']
    frame_tids = det._frame_layout().frame_train_ids()
    frame_pids = det._frame_ids('image.pulseId')
    miss = _cxi.missing_pairs(frame_tids, frame_pids, want_t, want_p)
    if len(miss):
        ex = ', '.join(f'({int(want_t[i])}, {int(want_p[i])})' for i in miss[:5])
        raise ValueError(f"{len(miss)} of the {len(pairs)} requested frames are not in the "
                         f"{det.detector_name} data (train ID, pulse ID): {ex}")
    tids = np.unique(want_t).astype(np.uint64)
    data = det.data.select_trains(by_id[tids])
    written = np.asarray(data.train_ids, dtype=np.uint64)
    masks = {}
    for src in det.source_to_modno:
        kd = data[src, 'image.pulseId']
        rows_t = kd.train_id_coordinates()
        mask = _cxi.pair_mask(rows_t, kd.ndarray().reshape(len(rows_t), -1)[:, 0],
                              want_t, want_p)
        counts = np.bincount(np.searchsorted(written, rows_t[mask]),
                             minlength=len(written)).astype(np.uint64)
        masks[src] = (mask, counts)
    with atomic_output(path) as tmp, _frames_writer_class()(tmp, data, masks) as w:
        w.write()
    return path


def _frames_writer_class():
    from .writer import FileWriter, _create_like, _source_dataset, copy_plan_rows

    class FramesFileWriter(FileWriter):
        """A FileWriter keeping only chosen rows of each module's ``image`` group."""

        def __init__(self, path, data, frame_masks, **kw):
            self.frame_masks = frame_masks
            super().__init__(path, data, **kw)

        def prepare_source(self, source):
            super().prepare_source(source)
            if source in self.frame_masks:
                self.indexes[f'{source}/image'] = self.frame_masks[source][1]

        def copy_dataset(self, source, key):
            if source not in self.frame_masks or not key.startswith('image.'):
                return super().copy_dataset(source, key)
            kd = self.data[source, key]
            plan = _cxi.keep_rows(kd.plan(), self.frame_masks[source][0])
            path = f"INSTRUMENT/{source}/{key.replace('.', '/')}"
            ds = _create_like(self.file, path, _source_dataset(kd), plan.shape)
            copy_plan_rows(plan, ds, self.block_bytes, self.progress)
            return path

    return FramesFileWriter
