"""Write a DataCollection as an EuXFEL file (``DataCollection.write``/``write_virtual``).

:class:`FileWriter` copies the selected data into a new file in the EuXFEL
layout (FORMAT.md section 8.1); :class:`VirtualFileWriter` writes the same
layout with virtual datasets pointing at the source files (section 8.2).
Either file opens with any EuXFEL reader (``H5File`` here, EXtra-data there).

How data is copied
------------------
Each key is copied from its read plan (:meth:`KeyData.plan <xfeldata.keydata.KeyData.plan>`),
planned once per index group (every key of a group has the same steps). Three
paths, all giving the same file (``xfeldata._write_fast`` has the details):

* keys smaller than ``RAW_COPY_MIN_BYTES`` (1 MiB), nearly all control and
  instrument keys, are copied in batches of at most ``block_bytes``: each
  source file is visited once per batch and every key's rows are read from it
  with one ``H5Dread``, then each key is written with one ``H5Dwrite``;
* larger keys whose steps fall on chunk boundaries and whose source chunks
  have the output's chunk shape and filters are copied as stored chunks
  (no decompression and recompression; the bytes read with positional reads
  at the addresses HDF5 reports, 1 MiB at a time, and written with
  ``write_direct_chunk``) when they are compressed, sparse (chunks never
  written stay unwritten instead of becoming fill values on disk) or stored
  in chunks of at least 4 KiB (detector frames);
* the others are cut into pieces of at most :data:`BLOCK_BYTES` of output
  (:func:`xfeldata._outputs.partition_plan`), each read into one reused
  buffer by the plan executor (:func:`xfeldata._execute.execute`).

Memory therefore stays near one block whatever the size of the run, and the
input files the write opens are closed again when done with, at most 32 open
at a time (HDF5 keeps metadata in memory for each open file);
``benchmarks/bench_write.py`` measures time and memory against a plain h5py
copy. New datasets take the source dataset's HDF5 type and dataset creation
properties (chunk shape, filters, fill value) with the axis-0 size of the
selection and an unlimited axis 0.

Files are written to a temporary name in the target folder and renamed when
complete (``DataCollection.write``): a failure leaves no file under the final
name, and an input file is never overwritten. Using the classes directly
writes the given path in place, as EXtra-data's classes do.
"""
from __future__ import annotations

import math
import os.path as osp
import warnings

import attrs
import h5py
import numpy as np

from ._version import __version__

__all__ = ['FileWriter', 'VirtualFileWriter', 'write_file', 'BLOCK_BYTES']

#: Largest piece of one key read into memory at a time while copying.
BLOCK_BYTES = 64 << 20
#: Keys at least this large are copied as stored chunks when the layout allows
#: (no decompression; smaller keys are not worth the extra checks).
RAW_COPY_MIN_BYTES = 1 << 20

_UNIT_ATTRS = ('unitSymbol', 'unitName', 'metricPrefixSymbol', 'metricPrefixName',
               'unitEnum', 'metricPrefixEnum')
_ASCII = h5py.string_dtype('ascii')
_UTF8 = h5py.string_dtype('utf-8')


def _tiers():
    from . import _tiers as t
    return t


class _Job:
    """One source to write: name in the output, section, SourceData, legacy aliases.

    Keys listed for the source whose dataset cannot be found (a property group
    named with a dot, FORMAT.md 2.4, lists a key no path reaches) are left out
    with a warning.
    """
    __slots__ = ('name', 'section', 'sd', 'legacy', 'groups', 'keys', 'kds')

    def __init__(self, name, section, sd):
        self.name, self.section, self.sd = name, section, sd
        self.legacy = []
        self.kds = {}
        for k in sorted(sd.keys()):
            try:
                self.kds[k] = sd[k]
            except KeyError as e:
                warnings.warn(f"Not writing {sd.source} {k!r}: its dataset cannot be "
                              f"found ({e})", stacklevel=6)
        self.keys = list(self.kds)
        if section == 'CONTROL':
            self.groups = ['']
        else:
            self.groups = sorted(sd.index_groups | {k.partition('.')[0] for k in self.keys})


class FileWriter:
    """Copy the selected data of ``data`` into a new EuXFEL file at ``path``.

    ``path`` is opened with mode ``'w'`` at once; the object is a context
    manager that closes it. Call :meth:`write` to write everything.

    Parameters
    ----------
    path : str or os.PathLike
    data : DataCollection
    progress : Progress, optional
        Receives the number of bytes copied (``DataCollection.write`` passes
        a stderr progress display).
    block_bytes : int
        Largest piece of one key held in memory at a time.
    """

    def __init__(self, path, data, *, progress=None, block_bytes=BLOCK_BYTES):
        from ._write_util import check_target
        self.path = check_target(path, _input_paths(data))   # never an input file
        self.data = data
        self.progress = progress
        self.block_bytes = int(block_bytes)
        self.file = h5py.File(self.path, 'w')
        from ._write_fast import InputFiles
        # Input files this write opens are closed again (bounded memory, see InputFiles).
        self._inputs = InputFiles(fi.path for fi in data._index.files)
        self.indexes = {}        # INDEX path -> counts per written train
        self.data_sources = set()  # (root, deviceId)
        self._jobs = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.file.close()
        inputs = getattr(self, '_inputs', None)
        if inputs is not None:
            inputs.close()

    # -- what to write -------------------------------------------------------
    @property
    def train_ids(self) -> np.ndarray:
        return np.asarray(self.data._selection.train_ids, dtype=np.uint64)

    def _source_jobs(self) -> list:
        """One job per output source; legacy names become links to their canonical one."""
        if self._jobs is not None:
            return self._jobs
        data = self.data
        legacy = data._index.legacy_sources
        sel = sorted(data._selection.source_names)
        jobs = {}
        for src in sel:
            if src in legacy:
                continue
            jobs[src] = _Job(src, data._section(src), data[src])
        for src in sel:
            canon = legacy.get(src)
            if canon is None:
                continue
            sd = data._source_data(src, warn=False)
            if canon not in jobs:   # only the old name was selected: write under the new
                jobs[canon] = _Job(canon, data._section(src), sd)
            else:
                # The old name is a link to the new one, so it can only show the
                # same keys: write the keys selected under either name.
                job = jobs[canon]
                if job.sd.sel_keys is not None and not sd.keys() <= set(job.keys):
                    keys = frozenset(job.sd.sel_keys) | frozenset(sd.keys())
                    legacy_names = job.legacy
                    job = jobs[canon] = _Job(canon, job.section,
                                             attrs.evolve(job.sd, sel_keys=keys))
                    job.legacy = legacy_names
            jobs[canon].legacy.append(src)
        self._jobs = [jobs[k] for k in sorted(jobs)]
        return self._jobs

    def _format_version(self) -> str:
        fi = self.data._index.files[0]
        return _tiers().file_meta(fi).format_version

    # -- public hooks (EXtra-data's names) -------------------------------------
    def set_writer(self):
        """Record the library that wrote the file (root attribute ``writer``)."""
        self.file.attrs['writer'] = f'xfeldata {__version__}'

    def write(self):
        """Write trains, sources (data and INDEX) and METADATA."""
        self.set_writer()
        self.write_train_ids()
        self.write_sources(self.data.selection)
        self.write_indexes()
        self.write_metadata()

    def write_train_ids(self):
        """``INDEX/trainId`` and, if any is known, ``INDEX/timestamp``."""
        tids = self.train_ids
        self.file.create_dataset('INDEX/trainId', data=tids, dtype=np.uint64)
        if self._format_version() == '0.5':
            return
        ts = np.asarray(self.data.train_timestamps())
        known = ~np.isnat(ts)
        if known.any():
            vals = np.where(known, ts.astype('datetime64[ns]').view(np.int64), 0)
            self.file.create_dataset('INDEX/timestamp', data=vals.astype(np.uint64))

    def gather_flag(self) -> np.ndarray:
        """``INDEX/flag`` values: 1 where a train is valid in any file the selection reads."""
        tids = self.train_ids
        valid = [fi.train_ids[fi.valid] for fi in self._files_in_use()]
        ids = np.concatenate(valid) if valid else np.zeros(0, np.uint64)
        return np.isin(tids, ids).astype(np.int32)

    def _files_in_use(self) -> list:
        seen = {}
        for job in self._source_jobs():
            for fi in job.sd._files:
                seen.setdefault(fi.path, fi)
        return list(seen.values()) or list(self.data._index.files)

    def write_sources(self, selection):
        """Write every selected source (``selection``: source -> keys, for the signature)."""
        jobs = self._source_jobs()
        if self.progress is not None and not self.progress.total:
            self.progress.total = sum(self._key_nbytes(job, key) for job in jobs
                                      for key in job.keys)
        # Sources stored in the same files one after the other, so that each input
        # file is opened once and closed when done with (InputFiles: bounded memory).
        jobs = sorted(jobs, key=lambda j: (j.sd._files[0].path if j.sd._files else '', j.name))
        with self._inputs as files:
            files.close()       # those opened so far (train timestamps): reopened if used
            for i, job in enumerate(jobs):
                self.prepare_source(job.name)
                self.copy_source(job.name)
                for fi in job.sd._files:
                    files.touch(fi.path)
                files.release(keep={fi.path for fi in jobs[i + 1].sd._files}
                              if i + 1 < len(jobs) else ())

    def _job(self, source) -> _Job:
        by_name = getattr(self, '_by_name', None)
        if by_name is None:
            by_name = self._by_name = {job.name: job for job in self._source_jobs()}
        return by_name[source]

    def prepare_source(self, source):
        """Create the source's groups and record its index (count per written train)."""
        from ._write_fast import ensure_group
        job = self._job(source)
        fid = self.file.id
        ensure_group(fid, f'{job.section}/{source}')
        for g in job.groups:
            counts = np.asarray(job.sd.data_counts(labelled=False, index_group=g),
                                dtype=np.uint64)
            ipath = source if g == '' else f'{source}/{g}'
            self.indexes[ipath] = counts
            if job.section == 'INSTRUMENT':
                ensure_group(fid, f'{job.section}/{source}/{g}')
        if job.section == 'CONTROL':
            self.data_sources.add(('CONTROL', source))
        else:
            for name in [source] + job.legacy:
                for g in job.groups:
                    self.data_sources.add(('INSTRUMENT', f'{name}/{g}'))
        for leg in job.legacy:
            self.file[f'INSTRUMENT/{leg}'] = h5py.SoftLink(f'/INSTRUMENT/{source}')
            self.file[f'INDEX/{leg}'] = h5py.SoftLink(f'/INDEX/{source}')
        if job.section == 'CONTROL':
            self._copy_run(job)

    def copy_source(self, source):
        """Copy every selected key of ``source``.

        Keys smaller than ``RAW_COPY_MIN_BYTES`` are copied in batches
        (``xfeldata._write_fast.copy_small_keys``) unless a subclass
        overrides :meth:`copy_dataset`, which is then called for every key.
        """
        job = self._job(source)
        if type(self).copy_dataset is not FileWriter.copy_dataset:
            for key in job.keys:
                self.copy_dataset(source, key)
            return
        limit = min(RAW_COPY_MIN_BYTES, self.block_bytes)
        batch, size, group = [], 0, None
        for key in job.keys:
            kd = job.kds[key]
            g = kd.index_group
            nbytes = self._key_nbytes(job, key)
            if kd.dtype.hasobject or nbytes >= limit or self._group_runs(job, g) is None:
                self._copy_batch(job, group, batch)
                batch, size = [], 0
                self.copy_dataset(source, key)
                continue
            if batch and (g != group or size + nbytes > self.block_bytes):
                self._copy_batch(job, group, batch)
                batch, size = [], 0
            batch.append(key)
            size += nbytes
            group = g
        self._copy_batch(job, group, batch)

    def _copy_batch(self, job, g, keys):
        """Create and copy small keys of one index group (see :meth:`copy_source`)."""
        if not keys:
            return
        from ._write_fast import copy_small_keys, create_chunked_like, has_unit_attrs
        base = self._group_plan(job, g)
        self._check_rows(job, keys[0], base)
        shapes, paths = [], []
        for key in keys:
            kd = job.kds[key]
            shapes.append((base.shape[0],) + tuple(kd.entry_shape))
            paths.append(f"{job.section}/{job.name}/{key.replace('.', '/')}")

        def create(i, fid0, src):
            # Like the first file's dataset (FORMAT.md 8.1), with its unit attributes.
            out = create_chunked_like(self.file.id, paths[i], src, shapes[i])
            if out is None:
                out = _create_like(self.file, paths[i], h5py.Dataset(src), shapes[i]).id
            if has_unit_attrs(fid0, items[i][0], src, job.section, keys[i]):
                _copy_units(h5py.Dataset(src), h5py.Dataset(out), job.section, keys[i])
            return out
        items = [[job.kds[key].hdf5_data_path, np.empty(shape, job.kds[key].dtype), None]
                 for key, shape in zip(keys, shapes)]
        copy_small_keys(items, self._group_runs(job, g), self.progress, create=create,
                        create_path=job.sd._files[0].path)

    def _group_plan(self, job, g):
        """The read plan of the first selected key of index group ``g`` (memoised)."""
        cache = self.__dict__.setdefault('_group_plans', {})
        p = cache.get((job.name, g))
        if p is None:
            key = next(k for k in job.keys if job.kds[k].index_group == g)
            p = cache[job.name, g] = job.kds[key].plan()
        return p

    def _group_runs(self, job, g):
        """The group's steps as reads per file (``_write_fast.file_runs``)."""
        from ._write_fast import file_runs
        cache = self.__dict__.setdefault('_runs', {})
        if (job.name, g) not in cache:
            cache[job.name, g] = file_runs(self._group_plan(job, g).steps)
        return cache[job.name, g]

    def _key_nbytes(self, job, key) -> int:
        kd = job.kds[key]
        entry = math.prod(kd.entry_shape) * kd.dtype.itemsize
        return self._group_plan(job, kd.index_group).shape[0] * entry

    def _plan(self, source, key):
        """``KeyData.plan()`` of ``key``, derived from its index group's plan."""
        from ._write_fast import key_plan
        job = self._job(source)
        kd = job.kds[key]
        return key_plan(self._group_plan(job, kd.index_group), kd)

    def _check_rows(self, job, key, plan):
        g = '' if job.section == 'CONTROL' else key.partition('.')[0]
        ipath = job.name if g == '' else f'{job.name}/{g}'
        expected = int(self.indexes[ipath].sum()) if ipath in self.indexes else plan.shape[0]
        if plan.shape[0] != expected:
            from .exceptions import FileStructureError
            raise FileStructureError(
                f"{job.name} {key}: the read plan has {plan.shape[0]} entries but the "
                f"index counts {expected}")

    def copy_dataset(self, source, key):
        """Create ``key``'s dataset like the source's and copy the selected rows in blocks."""
        job = self._job(source)
        plan = self._plan(source, key)
        self._check_rows(job, key, plan)
        path = f"{job.section}/{source}/{key.replace('.', '/')}"
        src = _source_dataset(job.kds[key])
        ds = _create_like(self.file, path, src, plan.shape)
        _copy_units(src, ds, job.section, key)
        copy_plan_rows(plan, ds, self.block_bytes, self.progress)
        return path

    def write_indexes(self):
        """``INDEX/<source>[/<group>]/first,count`` (uint64, contiguous)."""
        from ._write_fast import create_contiguous
        fid = self.file.id
        for ipath, counts in sorted(self.indexes.items()):
            counts = np.asarray(counts, dtype=np.uint64)
            first = (np.cumsum(counts, dtype=np.uint64) - counts).astype(np.uint64)
            create_contiguous(fid, f'INDEX/{ipath}/first', first)
            create_contiguous(fid, f'INDEX/{ipath}/count', counts)

    def write_metadata(self):
        """Run metadata (version forced to 1.0), source lists and ``INDEX/flag``."""
        rows = sorted(self.data_sources)
        if self._format_version() == '0.5':
            _write_source_lists(self.file.require_group('METADATA'), rows)
            self.file.require_group('RUN')
            return
        md = self.file.require_group('METADATA')
        for name, value in self._metadata_values().items():
            _write_metadata_value(md, name, value)
        _write_source_lists(md.require_group('dataSources'), rows)
        self.file.create_dataset('INDEX/flag', data=self.gather_flag(), dtype=np.int32)
        self.file.require_group('RUN')

    def _metadata_values(self) -> dict:
        """METADATA scalars (first entry) of the first file; the version forced to 1.0."""
        out = {}
        if self.data.is_single_run:
            fi = self.data._index.files[0]
            f = _tiers().h5file(fi)
            md = f.get('METADATA')
            for name, obj in (md.items() if md is not None else ()):
                if isinstance(obj, h5py.Dataset) and obj.shape and obj.shape[0]:
                    out[name] = obj[0]
        out['dataFormatVersion'] = '1.0'
        return out

    # -- RUN -------------------------------------------------------------------
    def _copy_run(self, job):
        """Copy ``RUN/<source>`` from the first file holding the source, if it has one."""
        fi = job.sd._files[0]
        grp = _tiers().h5file(fi).get(f'RUN/{job.sd._hdf5_name()}')
        if not isinstance(grp, h5py.Group):
            return
        parent_path, _, leaf = f'RUN/{job.name}'.rpartition('/')
        parent = self.file.require_group(parent_path)
        if leaf not in parent:
            parent.copy(grp, parent, name=leaf)


class VirtualFileWriter(FileWriter):
    """Write the EuXFEL layout with virtual datasets mapping the source files' rows.

    As :class:`FileWriter`, except: each key is a virtual dataset (empty keys
    are virtual with no mappings), ``image.pulseId``/``image.cellId`` are
    real gzip copies, and every source group gets the attribute
    ``source_files`` (absolute paths). Source files in the output's folder are
    named relative to it, so a run folder with its overview file can move.
    """

    def copy_dataset(self, source, key):
        return self.add_dataset(source, key)

    def add_dataset(self, source, key) -> str:
        """Add ``key`` of ``source`` (virtual, or a gzip copy for pulse/cell IDs); its path."""
        job = self._job(source)
        plan = self._plan(source, key)
        self._check_rows(job, key, plan)
        path = f"{job.section}/{source}/{key.replace('.', '/')}"
        src = _source_dataset(job.kds[key])
        if job.section == 'INSTRUMENT' and key in ('image.pulseId', 'image.cellId'):
            ds = _create_like(self.file, path, src, plan.shape, compression=('gzip', 4),
                              resizable=False)
            copy_plan_rows(plan, ds, self.block_bytes, self.progress)
        else:
            ds = _create_virtual(self.file, path, src, plan, osp.dirname(self.path))
            if self.progress is not None:
                self.progress.update(plan.nbytes)
        _copy_units(src, ds, job.section, key)
        return path

    def prepare_source(self, source):
        super().prepare_source(source)
        job = self._job(source)
        files = [fi.path for fi in job.sd._files]
        self.file[f'{job.section}/{source}'].attrs['source_files'] = np.array(files,
                                                                              dtype=_UTF8)


# -- datasets -----------------------------------------------------------------------------

def _source_dataset(kd) -> h5py.Dataset:
    """The key's dataset in the first file holding its source (for type and properties)."""
    from ._execute import _missing
    dsid = _open_dataset(_tiers().h5file(kd._files[0]).id, kd.hdf5_data_path)
    if dsid is None:
        raise _missing(kd._files[0].path, kd.hdf5_data_path)
    return h5py.Dataset(dsid)


def _lcpl():
    from ._write_fast import lcpl
    return lcpl()


def _create_like(f: h5py.File, path: str, src: h5py.Dataset, shape, compression=None,
                 resizable=True):
    """A dataset at ``path`` with ``src``'s type and creation properties, axis 0 unlimited.

    A chunked source lends its whole creation property list (chunk shape,
    filters, fill value); other layouts (contiguous, compact, virtual) get
    h5py's automatic chunking, unfiltered. ``compression=('gzip', level)``
    replaces the filters with deflate; ``resizable=False`` fixes axis 0.
    """
    shape = tuple(int(n) for n in shape)
    maxshape = ((None,) if resizable else shape[:1]) + shape[1:]
    dcpl = src.id.get_create_plist()
    if compression is None and dcpl.get_layout() == h5py.h5d.CHUNKED:
        dcpl = dcpl.copy()
        space = h5py.h5s.create_simple(shape, (h5py.h5s.UNLIMITED,) + shape[1:])
        dsid = h5py.h5d.create(f.id, path.encode(), src.id.get_type(), space,
                               dcpl=dcpl, lcpl=_lcpl())
        return h5py.Dataset(dsid)
    kw = {}
    if compression is not None:
        kw = dict(compression=compression[0], compression_opts=compression[1])
        chunks = src.chunks if dcpl.get_layout() == h5py.h5d.CHUNKED else True
    else:
        chunks = True
    if chunks is not True and chunks is not None and not resizable:
        chunks = (max(1, min(chunks[0], shape[0])),) + tuple(chunks[1:])
    if shape[0] == 0 and not resizable:
        chunks, maxshape = None, None
        kw = {}
    return f.create_dataset(path, shape=shape, maxshape=maxshape, dtype=src.dtype,
                            chunks=chunks, **kw)


def copy_plan_rows(plan, dest: h5py.Dataset, block_bytes: int = BLOCK_BYTES,
                   progress=None) -> None:
    """Copy the rows ``plan`` describes into ``dest`` (same row order), block by block.

    At most ``block_bytes`` of output (at least one row) are in memory at a time;
    numeric blocks go through one reused buffer.
    """
    from ._execute import execute
    from ._outputs import partition_plan
    if not plan.steps or plan.shape[0] == 0:
        return
    if plan.nbytes >= RAW_COPY_MIN_BYTES and _copy_chunks_raw(plan, dest, progress):
        return
    pieces = partition_plan(plan, block_bytes)
    strings = plan.dtype.hasobject
    rows_max = max(p.shape[0] for p in pieces)
    buf = None if strings else np.empty((rows_max,) + tuple(plan.shape[1:]), plan.dtype)
    entry = tuple(plan.shape[1:])
    offset = 0
    for piece in pieces:
        n = piece.shape[0]
        if strings:
            arr = execute(piece, decode_strings=False)
            dest[offset:offset + n] = arr
        else:
            arr = execute(piece, out=buf[:n])
            fspace = dest.id.get_space()
            fspace.select_hyperslab((offset,) + (0,) * len(entry), (n,) + entry)
            dest.id.write(h5py.h5s.create_simple((n,) + entry), fspace, arr)
        offset += n
        if progress is not None:
            progress.update(piece.nbytes)


def _copy_chunks_raw(plan, dest, progress=None) -> bool:
    """Copy stored chunks unchanged if the plan allows (``_write_fast.copy_chunks_raw``)."""
    from ._write_fast import copy_chunks_raw
    return copy_chunks_raw(plan, dest, progress)


def _open_dataset(fid, name: str):
    """Low-level open of a dataset (h5py's high-level lookup costs more than the open)."""
    try:
        return h5py.h5d.open(fid, name.encode('utf-8', 'surrogateescape'))
    except (KeyError, ValueError, TypeError, OSError, RuntimeError):
        return None


def _create_virtual(f: h5py.File, path: str, src: h5py.Dataset, plan, out_dir: str):
    """A virtual dataset mapping each plan step's rows to its source file's rows.

    Built with HDF5's low-level calls (one ``H5Pset_virtual`` per step): h5py's
    ``VirtualLayout`` copies its selection objects for every mapping, which
    dominates for runs with thousands of small keys.
    """
    from ._execute import _check_length, _missing
    shape = tuple(int(n) for n in plan.shape)
    entry = shape[1:]
    zeros = (0,) * len(entry)
    vspace = h5py.h5s.create_simple(shape, shape)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.VIRTUAL)    # also for keys without data (no mappings)
    opened = {}
    for s in plan.steps:
        h = opened.get(s.path)
        if h is None:
            dsid = _open_dataset(_tiers().h5file(s.path).id, s.dataset)
            if dsid is None:
                raise _missing(s.path, s.dataset)
            name = s.path
            if osp.dirname(osp.abspath(s.path)) == out_dir:
                name = osp.basename(s.path)   # beside the output: relocatable together
            h = opened[s.path] = (dsid, name.encode('utf-8', 'surrogateescape'),
                                  s.dataset.encode('utf-8', 'surrogateescape'))
        dsid, fname, dname = h
        _check_length(dsid.shape, s, [s], s.path)
        sspace = dsid.get_space()
        sspace.select_hyperslab((s.src_start,) + zeros, (s.src_stop - s.src_start,) + entry)
        vsel = h5py.h5s.create_simple(shape, shape)
        vsel.select_hyperslab((s.dst_start,) + zeros, (s.dst_stop - s.dst_start,) + entry)
        dcpl.set_virtual(vsel, fname, dname, sspace)
    dsid = h5py.h5d.create(f.id, path.encode('utf-8', 'surrogateescape'), src.id.get_type(),
                           vspace, dcpl=dcpl, lcpl=_lcpl())
    return h5py.Dataset(dsid)


def _copy_units(src, dest, section, key):
    """Copy Karabo unit attributes (and, for control values, the property group's).

    Objects without attributes are passed over with one low-level call each.
    """
    try:
        if h5py.h5a.get_num_attrs(src.id):
            _copy_unit_attrs(src, dest)
        if section == 'CONTROL' and key.endswith('.value'):
            sp = h5py.h5i.get_name(src.id).rpartition(b'/')[0]
            sg = h5py.h5o.open(h5py.h5i.get_file_id(src.id), sp)
            if h5py.h5a.get_num_attrs(sg):
                dp = h5py.h5i.get_name(dest.id).rpartition(b'/')[0]
                _copy_unit_attrs(h5py.Group(sg), dest.file[dp.decode('utf-8', 'surrogateescape')])
    except Exception:   # attributes are a courtesy; never fail a write for them
        pass


def _copy_unit_attrs(s, d):
    for a in _UNIT_ATTRS:
        if a in s.attrs:
            d.attrs[a] = s.attrs[a]


# -- METADATA -----------------------------------------------------------------------------

def _write_source_lists(group, rows):
    """``dataSourceId``, ``root``, ``deviceId``: vlen ASCII, exact length, sorted."""
    ids = [f'{root}/{dev}' for root, dev in rows]
    for name, values in (('dataSourceId', ids), ('root', [r for r, _ in rows]),
                         ('deviceId', [d for _, d in rows])):
        arr = np.array([v.encode() for v in values], dtype=object)
        group.create_dataset(name, data=arr, dtype=_ASCII, maxshape=(None,),
                             chunks=(max(len(arr), 1),))


def _write_metadata_value(group, name, value):
    if isinstance(value, (bytes, str)):
        if isinstance(value, bytes):
            value = value.decode('utf-8', 'surrogateescape')
        group.create_dataset(name, data=np.array([value], dtype=object), dtype=_UTF8)
    else:
        arr = np.asarray([value])
        group.create_dataset(name, data=arr, dtype=arr.dtype)


# -- entry points used by DataCollection --------------------------------------------------

def _input_paths(data) -> list:
    paths = [fi.path for fi in data._index.files]
    for fi in data._index.files:    # an overview file's real files are inputs too
        name = osp.basename(fi.path).lower()
        if name != 'overview.h5' and not name.endswith('-overview.h5'):
            continue
        try:
            if _tiers().file_meta(fi).is_voview:
                g = _tiers().h5file(fi).get('.source_files/names')
                base = osp.dirname(fi.path)
                for n in (g[()] if g is not None else ()):
                    paths.append(osp.join(base, n.decode() if isinstance(n, bytes) else n))
        except Exception:
            pass
    return paths


def write_file(filename, data, *, virtual=False, progress=None,
               block_bytes=BLOCK_BYTES) -> str:
    """``DataCollection.write``/``write_virtual``: write ``data`` atomically to ``filename``.

    The target is checked before any work (its folder must exist and be
    writable; it must not be an input file); the file is written under a
    temporary name in the same folder and renamed over ``filename`` when
    complete. An existing ``filename`` (not an input) is replaced.

    Parameters
    ----------
    progress : bool or None
        Show progress on stderr: None (default) = when stderr is a terminal.

    Returns
    -------
    str
        The absolute path written.
    """
    from ._write_util import Progress, atomic_output, check_target
    path = check_target(filename, _input_paths(data))
    cls = VirtualFileWriter if virtual else FileWriter
    prog = Progress(0, 'Writing virtual file' if virtual else 'Writing', enabled=progress)
    with atomic_output(path) as tmp:
        with cls(tmp, data, progress=prog, block_bytes=block_bytes) as w:
            # The temporary name is what HDF5 sees; mappings are relative to the folder,
            # which is the same for the final name.
            w.write()
        prog.close()
    return path
