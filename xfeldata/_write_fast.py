"""Fast paths of the copying writer (:class:`xfeldata.writer.FileWriter`).

The result is the same as copying each key through its read plan
(:func:`xfeldata.writer.copy_plan_rows`); these functions only cut the fixed
cost per key, which dominates runs with many small control and instrument
keys, and the per-chunk cost of large chunked keys.

One plan per index group
    Every key of a source's index group has the same INDEX, so the same read
    steps apart from the dataset name: :func:`group_plan` plans the group
    once and :func:`key_plan` derives each key's plan from it (equal to
    ``KeyData.plan()``).
Small keys in batches
    Keys smaller than :data:`xfeldata.writer.RAW_COPY_MIN_BYTES` are copied a
    batch at a time (:func:`copy_small_keys`, at most ``block_bytes`` of
    buffers): their datasets are created, then each source file is visited
    once per batch and every key's rows are read from it with one
    ``H5Dread`` into that key's buffer, then each key is written with one
    ``H5Dwrite``. No per-key plan, executor or high-level h5py object.
Stored chunks
    Large keys whose steps fall on chunk boundaries and whose source chunks
    have the output's chunk shape and filters are copied chunk by chunk,
    unchanged (:func:`copy_chunks_raw`): HDF5 lists each file's stored chunks
    once (``H5Dchunk_iter``, about 1 us a chunk; chunks never written are not
    listed, so they stay unwritten), neighbouring chunks are read together
    with ``os.preadv`` into one 1 MiB buffer, and each is written with
    ``H5Dwrite_chunk``. Reading a chunk through HDF5 instead
    (``H5Dread_chunk``) costs about 6 us more; writing it (about 14 us, most
    of it the kernel's page cache) is what ``H5Ocopy`` pays as well.
Input files
    :class:`InputFiles` closes the input files a write opened once it is done
    with them, keeping at most :data:`MAX_OPEN_INPUTS` open, so that HDF5's
    per-file metadata does not pile up over a run of many files.

Source datasets are opened per file visit and not kept: a file may be closed
when another is opened, which would invalidate identifiers held across files.
"""
from __future__ import annotations

import itertools
import os
import threading

import h5py
import numpy as np

from .core.plan import ReadPlan, ReadStep

__all__ = ['InputFiles', 'copy_chunks_raw', 'copy_small_keys', 'create_chunked_like',
           'create_contiguous', 'ensure_group', 'file_runs', 'group_plan', 'has_unit_attrs',
           'key_plan', 'lcpl', 'raw_copy_sources', 'touch']

#: Most row ranges of one file read with one H5Dread on the batched path
#: (selections made of many ranges are handled by the plan executor).
MAX_RANGES_PER_READ = 8
#: Unfiltered, fully written keys are copied as stored chunks only when a chunk
#: is at least this large (smaller ones are faster through whole-block reads).
RAW_UNFILTERED_MIN_CHUNK = 4096

_LCPL = None
_DCPL = None
_OPEN_ERRORS = (KeyError, ValueError, TypeError, OSError, RuntimeError)
_READ_ERRORS = (OSError, RuntimeError)


def _tiers():
    from . import _tiers as t
    return t


def lcpl():
    """Link creation properties: intermediate groups created, UTF-8 names (shared)."""
    global _LCPL
    if _LCPL is None:
        p = h5py.h5p.create(h5py.h5p.LINK_CREATE)
        p.set_create_intermediate_group(True)
        p.set_char_encoding(h5py.h5t.CSET_UTF8)
        _LCPL = p
    return _LCPL


def _plain_dcpl():
    """Dataset creation properties of h5py's ``create_dataset`` defaults (no times)."""
    global _DCPL
    if _DCPL is None:
        p = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        p.set_obj_track_times(False)
        _DCPL = p
    return _DCPL


def _enc(name: str) -> bytes:
    return name.encode('utf-8', 'surrogateescape')


def ensure_group(fid, path: str) -> None:
    """Create group ``path`` (and its parents) in the file ``fid`` unless it exists."""
    name = _enc(path)
    try:
        if fid.links.exists(name):
            return
    except _OPEN_ERRORS:
        pass    # a parent is missing: create the whole path
    h5py.h5g.create(fid, name, lcpl=lcpl())


def create_contiguous(fid, path: str, arr: np.ndarray):
    """A contiguous dataset holding ``arr`` (what ``create_dataset(data=arr)`` makes)."""
    arr = np.ascontiguousarray(arr)
    tid = h5py.h5t.py_create(arr.dtype, logical=True)
    space = h5py.h5s.create_simple(arr.shape, arr.shape)
    dsid = h5py.h5d.create(fid, _enc(path), tid, space, dcpl=_plain_dcpl(), lcpl=lcpl())
    if arr.size:
        dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, arr)
    return dsid


def open_dataset(fid, name: str):
    """Low-level open of a dataset; None if there is none at ``name``."""
    try:
        return h5py.h5d.open(fid, _enc(name))
    except _OPEN_ERRORS:
        return None


# -- input files ----------------------------------------------------------------------------

#: Most input files the writer keeps open that were not open before it started.
MAX_OPEN_INPUTS = 32

_current = threading.local()


class InputFiles:
    """Keeps the input files a write opens to at most ``cap`` open at a time.

    Reading a file leaves HDF5 metadata in memory for as long as the file is
    open (its metadata cache: about 0.4 kB per stored chunk of the datasets
    read, up to the cache's size), and the open-files limiter keeps files
    open for later reads. A write touches every file of the selection, so
    without this its memory would grow with the run. Files that were open
    before the write started are left alone; the others are closed once
    ``cap`` newer ones have been used (least recently used first) and when
    the write ends (:meth:`close`: also the inputs opened for anything else,
    such as train timestamps). A closed file reopens by itself if it is read
    again.

    Used as a context manager: while active, :func:`touch` reports uses to it.
    """

    def __init__(self, paths=(), cap=None):
        from .file_access import FileAccess
        self.cap = MAX_OPEN_INPUTS if cap is None else max(1, int(cap))
        self.before = {p for p, fa in list(FileAccess._registry.items()) if fa.valid}
        self.paths = set(paths)     # the inputs: closed by close() if opened since
        self.lru = {}

    def touch(self, path):
        if path in self.before:
            return
        self.lru.pop(path, None)
        self.lru[path] = True
        while len(self.lru) > self.cap:
            self._close(next(iter(self.lru)))

    def _close(self, path):
        from .file_access import FileAccess
        self.lru.pop(path, None)
        fa = FileAccess._registry.get(path)
        if fa is not None and fa.valid:
            fa.close()

    def release(self, keep=()):
        """Close the files this write opened, except those in ``keep``."""
        for path in [p for p in self.lru if p not in keep]:
            self._close(path)

    def close(self):
        """Close every input file opened since this object was made."""
        self.release()
        for path in self.paths - self.before:
            self._close(path)

    def __enter__(self):
        self._prev = getattr(_current, 'files', None)
        _current.files = self
        return self

    def __exit__(self, *exc):
        _current.files = self._prev
        self.release()


def touch(path) -> None:
    """Report that the write in progress (if any) has used the input file ``path``."""
    files = getattr(_current, 'files', None)
    if files is not None:
        files.touch(path)


# -- plans --------------------------------------------------------------------------------

def group_plan(kd) -> ReadPlan:
    """The read plan of ``kd``: any key of an index group gives the group's steps."""
    return kd.plan()


def key_plan(base: ReadPlan, kd) -> ReadPlan:
    """``kd.plan()`` made from the plan of another key of the same index group."""
    name = kd.hdf5_data_path
    steps = base.steps
    if steps and steps[0].dataset != name:
        new = tuple.__new__
        steps = tuple(new(ReadStep, (s[0], name) + s[2:]) for s in steps)
    return ReadPlan(np.dtype(kd.dtype), (base.shape[0],) + tuple(kd.entry_shape), steps,
                    (), f"{kd.source} {kd.key}")


def file_runs(steps):
    """Steps grouped into reads: ``[(path, ranges, dst_start, dst_stop), ...]``.

    A read takes consecutive steps of one file whose output rows follow each
    other and whose source rows increase (one H5Dread of a union of
    hyperslabs fills them in order). None when a read would need more than
    :data:`MAX_RANGES_PER_READ` ranges (the executor handles those).
    """
    runs = []
    for s in steps:
        if runs:
            path, ranges, d0, d1 = runs[-1]
            if path == s.path and d1 == s.dst_start and ranges[-1][1] <= s.src_start:
                if ranges[-1][1] == s.src_start:
                    ranges[-1] = (ranges[-1][0], s.src_stop)
                else:
                    ranges.append((s.src_start, s.src_stop))
                    if len(ranges) > MAX_RANGES_PER_READ:
                        return None
                runs[-1] = (path, ranges, d0, s.dst_stop)
                continue
        runs.append((s.path, [(s.src_start, s.src_stop)], s.dst_start, s.dst_stop))
    return runs


# -- small keys ---------------------------------------------------------------------------

def _missing(path, name):
    from ._execute import _missing as m
    return m(path, name)


def _too_short(path, name, a, stop, n):
    # The executor's error for the same problem (TypeError, as EXtra-data).
    return TypeError(
        f"{path}: INDEX points past the end of {name}: rows {a}:{stop} of {n}; the "
        "file's index is inconsistent (xfeldata validate reports it)")


_MTYPES = {}


def _mtype(dtype):
    """The memory type h5py would make for ``dtype`` (made once per dtype)."""
    t = _MTYPES.get(dtype)
    if t is None:
        t = _MTYPES[dtype] = h5py.h5t.py_create(dtype)
    return t


def create_chunked_like(fid, path: str, src, shape):
    """A dataset like ``src`` (a chunked DatasetID) with ``shape``, axis 0 unlimited.

    The low-level form of :func:`xfeldata.writer._create_like` for chunked
    sources; None for other layouts.
    """
    dcpl = src.get_create_plist()
    if dcpl.get_layout() != h5py.h5d.CHUNKED:
        return None
    space = h5py.h5s.create_simple(shape, (h5py.h5s.UNLIMITED,) + tuple(shape[1:]))
    return h5py.h5d.create(fid, _enc(path), src.get_type(), space, dcpl=dcpl, lcpl=lcpl())


def has_unit_attrs(fid, name: str, src, section: str, key: str) -> bool:
    """Whether ``src`` (or a control value's property group) has any attribute."""
    if h5py.h5a.get_num_attrs(src):
        return True
    if section == 'CONTROL' and key.endswith('.value'):
        try:
            return bool(h5py.h5a.get_num_attrs(h5py.h5o.open(fid, _enc(name.rpartition('/')[0]))))
        except _OPEN_ERRORS:
            return False
    return False


def copy_small_keys(items, runs, progress=None, create=None, create_path=None) -> None:
    """Copy a batch of small keys of one index group.

    Parameters
    ----------
    items : list of [dataset name in the source files, buffer, output DatasetID]
        ``buffer`` has the key's output shape and dtype.
    runs : list
        :func:`file_runs` of the group's steps.
    create : callable, optional
        ``create(i, fid, src)`` makes item ``i``'s output from its dataset
        ``src`` in the file ``create_path`` (open as ``fid``), for items whose
        output is None. It is called while that file is read anyway (first), so
        each dataset there is opened once.
    """
    by_path = {}
    if create is not None:
        by_path[create_path] = []       # visited first
    for run in runs:
        by_path.setdefault(run[0], []).append(run)
    h5file = _tiers().h5file
    create_simple = h5py.h5s.create_simple
    ALL = h5py.h5s.ALL
    for path, file_runs_ in by_path.items():
        fid = h5file(path).id
        making = create is not None and path == create_path
        for i, (name, buf, _) in enumerate(items):
            dsid = open_dataset(fid, name)
            if dsid is None:
                raise _missing(path, name)
            if making:
                items[i][2] = create(i, fid, dsid)
            shape = dsid.shape
            n = shape[0] if shape else 0
            mtype = _mtype(buf.dtype)
            for _, ranges, d0, d1 in file_runs_:
                stop = ranges[-1][1]
                if stop > n:
                    raise _too_short(path, name, ranges[0][0], stop, n)
                dest = buf[d0:d1]
                if len(ranges) == 1 and ranges[0][0] == 0 and stop == n \
                        and dest.shape == shape:
                    mspace = space = ALL     # the whole dataset
                else:
                    inner = tuple(shape[1:])
                    zeros = (0,) * len(inner)
                    space = dsid.get_space()
                    op = h5py.h5s.SELECT_SET
                    for a, b in ranges:
                        space.select_hyperslab((a,) + zeros, (b - a,) + inner, op=op)
                        op = h5py.h5s.SELECT_OR
                    mspace = create_simple(dest.shape)
                try:
                    dsid.read(mspace, space, dest, mtype)
                except _READ_ERRORS as e:
                    from .exceptions import FileStructureError
                    raise FileStructureError(
                        f"cannot read {name} rows {ranges[0][0]}:{stop}: {e}", path) from None
        dsid = fid = None
        touch(path)
    for _, buf, out in items:
        if buf.size:
            out.write(ALL, ALL, buf, _mtype(buf.dtype))
        if progress is not None:
            progress.update(buf.nbytes)


# -- stored chunks ------------------------------------------------------------------------

def _filters(dcpl) -> tuple:
    return tuple((dcpl.get_filter(i)[0], tuple(dcpl.get_filter(i)[2]))
                 for i in range(dcpl.get_nfilters()))


def _n_chunks(shape, chunks) -> int:
    total = 1
    for n, c in zip(shape, chunks):
        total *= -(-n // c)
    return total


def _is_sparse(dsid, chunks) -> bool:
    """True if some chunks of the dataset were never written (they read as fill value)."""
    try:
        return dsid.get_num_chunks() < _n_chunks(dsid.shape, chunks)
    except Exception:  # noqa: BLE001 - unknown (old HDF5): look each chunk up
        return True


def raw_copy_sources(plan, dest):
    """The source paths if every step can be copied as stored chunks, else None.

    Needs: no roi, fixed-size type equal to the destination's, the same
    chunk shape and filters in every source, every step starting on a chunk
    boundary at both ends (a step's last chunk may be partial only where both
    datasets end), so that no output chunk takes rows from two steps; and a
    filtered (compressed) destination, or chunks of at least
    :data:`RAW_UNFILTERED_MIN_CHUNK` bytes, or a sparse source (unwritten
    chunks, which a block copy would write out as fill values).
    """
    if plan.roi or plan.dtype.hasobject or dest.chunks is None:
        return None
    chunks = tuple(dest.chunks)
    c0 = chunks[0]
    want = _filters(dest.id.get_create_plist())
    chunk_bytes = int(np.prod(chunks, dtype=np.int64)) * dest.dtype.itemsize
    worth = bool(want) or chunk_bytes >= RAW_UNFILTERED_MIN_CHUNK
    h5file = _tiers().h5file
    lengths = {}
    for s in plan.steps:
        if s.path not in lengths:
            dsid = open_dataset(h5file(s.path).id, s.dataset)
            if dsid is None or dsid.dtype != dest.dtype \
                    or tuple(dsid.shape[1:]) != tuple(plan.shape[1:]):
                return None
            sp = dsid.get_create_plist()
            if sp.get_layout() != h5py.h5d.CHUNKED or tuple(sp.get_chunk()) != chunks \
                    or _filters(sp) != want:
                return None
            lengths[s.path] = dsid.shape[0]
            # Unfiltered small chunks are faster in blocks, unless unwritten chunks
            # must stay unwritten.
            worth = worth or _is_sparse(dsid, chunks)
            dsid = sp = None
            touch(s.path)
        n = s.src_stop - s.src_start
        if s.src_start % c0 or s.dst_start % c0:
            return None
        if n % c0 and not (s.dst_stop == plan.shape[0] and s.src_stop == lengths[s.path]):
            return None
        if s.src_stop > lengths[s.path]:
            return None
    return list(lengths) if worth else None


#: Stored bytes read with one ``preadv`` on the stored-chunk path (one buffer, reused).
RAW_READ_BYTES = 1 << 20


class _ChunkIndex:
    """Where a dataset's stored chunks are: sorted linear chunk numbers and their bytes.

    The linear number of a chunk is its position in the C-ordered grid of
    chunks; ``per_row`` chunks cover one chunk row (axis 0).
    """
    __slots__ = ('addr', 'inner', 'lin', 'mask', 'per_row', 'size')

    def __init__(self, dsid, chunks):
        infos = []
        dsid.chunk_iter(infos.append)
        n, ndim = len(infos), len(chunks)
        grid = [-(-int(x) // c) for x, c in zip(dsid.shape, chunks)]
        strides = np.ones(ndim, np.int64)
        for d in range(ndim - 2, -1, -1):
            strides[d] = strides[d + 1] * grid[d + 1]
        offs = np.array([i.chunk_offset for i in infos], np.int64).reshape(n, ndim)
        lin = (offs // np.asarray(chunks, np.int64)) @ strides if n else np.zeros(0, np.int64)
        order = np.argsort(lin, kind='stable')
        self.lin = lin[order]
        self.addr = np.fromiter((i.byte_offset for i in infos), np.int64, n)[order]
        self.size = np.fromiter((i.size for i in infos), np.int64, n)[order]
        self.mask = np.fromiter((i.filter_mask for i in infos), np.int64, n)[order]
        self.per_row = int(np.prod(grid[1:], dtype=np.int64))
        self.inner = [tuple(int(i) * c for i, c in zip(ix, chunks[1:]))
                      for ix in itertools.product(*(range(g) for g in grid[1:]))]

    def stored(self, row_start, row_stop, c0):
        """Stored chunks of the chunk rows holding rows ``row_start:row_stop``."""
        lo = (row_start // c0) * self.per_row
        hi = (-(-row_stop // c0)) * self.per_row
        i0, i1 = np.searchsorted(self.lin, [lo, hi])
        return (self.lin[i0:i1].tolist(), self.addr[i0:i1].tolist(),
                self.size[i0:i1].tolist(), self.mask[i0:i1].tolist())


def _pread_base(path):
    """The file's base address for ``os.pread`` of chunk addresses (None: do not).

    Files with a user block (HDF5 versions differ on whether chunk addresses
    count it) or opened with another file driver are read through HDF5.
    """
    f = _tiers().h5file(path)
    try:
        if f.id.get_create_plist().get_userblock() != 0:
            return None
        if f.id.get_access_plist().get_driver() != h5py.h5fd.SEC2:
            return None
    except Exception:  # noqa: BLE001 - cannot tell: read through HDF5
        return None
    return 0


def _copy_stored(fd, index, steps, c0, write, progress, row_bytes):
    """Copy the stored chunks of ``steps`` (one file) with big positional reads."""
    buf = bytearray(RAW_READ_BYTES)
    view = memoryview(buf)
    per_row, inner = index.per_row, index.inner
    for s in steps:
        lin, addr, size, mask = index.stored(s.src_start, s.src_stop, c0)
        shift = s.dst_start - s.src_start
        k, n = 0, len(lin)
        while k < n:
            start = end = addr[k]
            j = k
            while j < n and addr[j] == end and (end + size[j] - start <= RAW_READ_BYTES
                                                 or j == k):
                end += size[j]
                j += 1
            want = end - start
            mv = view if want <= RAW_READ_BYTES else memoryview(bytearray(want))
            got = os.preadv(fd, [mv[:want]], start)
            if got != want:
                from .exceptions import FileStructureError
                raise FileStructureError(f"short read of stored chunks at {start}: "
                                         f"{got} of {want} bytes", steps[0].path)
            if per_row == 1:        # chunks span whole entries (detector frames)
                tail = inner[0]
                for i in range(k, j):
                    a = addr[i] - start
                    write((lin[i] * c0 + shift,) + tail, mv[a:a + size[i]], mask[i])
            else:
                for i in range(k, j):
                    row, rest = divmod(lin[i], per_row)
                    a = addr[i] - start
                    write((row * c0 + shift,) + inner[rest], mv[a:a + size[i]], mask[i])
            k = j
        if progress is not None:
            progress.update((s.src_stop - s.src_start) * row_bytes)


def _copy_through_hdf5(dsid, steps, c0, grid, write, progress, row_bytes):
    """Copy stored chunks with ``H5Dread_chunk`` (when positional reads can't be used)."""
    read = dsid.read_direct_chunk
    exists = None
    if _is_sparse(dsid, dsid.get_create_plist().get_chunk()):
        get_info = dsid.get_chunk_info_by_coord

        def exists(off):
            return get_info(off).byte_offset is not None
    for s in steps:
        dst = s.dst_start
        for r in range(s.src_start, s.src_stop, c0):
            for inner in grid:
                off = (r,) + inner
                if exists is None or exists(off):   # else never written: fill value
                    mask, data = read(off)
                    write((dst,) + inner, data, mask)
            dst += c0
        if progress is not None:
            progress.update((s.src_stop - s.src_start) * row_bytes)


def copy_chunks_raw(plan, dest, progress=None) -> bool:
    """Copy stored chunks unchanged (no decompression) if the plan allows; True if done.

    A chunk the source never wrote (it reads as the fill value, which the
    destination shares) is skipped. The chunks' bytes are read with
    ``os.preadv`` at the addresses HDF5 reports (``H5Dchunk_iter``), several
    neighbouring chunks per read; files HDF5 does not address plainly (a user
    block, another file driver) are read chunk by chunk through HDF5.
    """
    if raw_copy_sources(plan, dest) is None:
        return False
    chunks = tuple(dest.chunks)
    c0 = chunks[0]
    grid = list(itertools.product(*(range(0, n, c) for n, c in
                                     zip(plan.shape[1:], chunks[1:]))))
    row_bytes = plan.entry_nbytes
    write = dest.id.write_direct_chunk
    h5file = _tiers().h5file
    for path, steps in itertools.groupby(plan.steps, key=lambda s: s.path):
        steps = list(steps)
        dsid = open_dataset(h5file(path).id, steps[0].dataset)
        base = _pread_base(path) if hasattr(dsid, 'chunk_iter') else None
        if base is None:
            _copy_through_hdf5(dsid, steps, c0, grid, write, progress, row_bytes)
            del dsid
            touch(path)
            continue
        index = _ChunkIndex(dsid, chunks)
        del dsid
        touch(path)
        fd = os.open(path, os.O_RDONLY)
        try:
            _copy_stored(fd, index, steps, c0, write, progress, row_bytes)
        finally:
            os.close(fd)
    return True
