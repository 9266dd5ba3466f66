"""Effects: the direct-chunk read path (positional reads, decoding in threads).

HDF5 serialises every call, decompression included, behind one global lock
(FIELD.md 2.3). For a chunked, compressed dataset this path asks HDF5 only for
the chunk index (once per dataset and process: :func:`storage_chunks`), then
reads each stored chunk's bytes with ``os.pread`` and decodes them in a thread
pool: ``pread``, inflate and numpy's copies all release the GIL, so chunks
decode in parallel. Each chunk is decoded straight into its place in the
output (the byte shuffle undone by the same copy).

It is used only where it gives exactly what h5py gives: whole entries (no
region of interest), fixed-size types, a chunked layout whose filters it can
decode (deflate, shuffle: :func:`xfeldata.core.h5chunks.decode_pipeline`),
every needed chunk allocated, decoded sizes as expected. Anything else, or a
chunk that fails to decode, goes to the h5py path, which reports real damage.
A property test checks both paths byte-identical (properties/test_direct_laws.py).

Which path: :func:`xfeldata._execute.execute`'s ``read_path`` argument
(``'auto'``, ``'direct'``, ``'h5py'``), defaulting to the ``XFELDATA_READ_PATH``
environment variable, else ``'auto'``.
"""
from __future__ import annotations

import os
import threading
import h5py
import numpy as np

from . import compression
from .core.h5chunks import StorageChunks, chunk_copies, decode_pipeline

__all__ = ['storage_chunks', 'direct_reason', 'read_groups', 'READ_PATHS']

READ_PATHS = ('auto', 'direct', 'h5py')

#: Smallest mean stored chunk worth a thread task; below it h5py is as fast.
MIN_CHUNK_BYTES = 4096
#: Stored bytes per thread task (several small chunks share one task).
TASK_BYTES = 1 << 20

_memo = {}                 # (path, dataset, file identity) -> StorageChunks or reason
_memo_lock = threading.Lock()


class _Unusable(Exception):
    """A chunk could not be decoded here: the h5py path reads its dataset."""


def _file_identity(path):
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def storage_chunks(dsid, path: str, name: str):
    """The dataset's :class:`StorageChunks`, or a string saying why the direct path can't.

    Asks HDF5 for the chunk index once per dataset (``chunk_iter``) and
    remembers it for the process, keyed by the file's size, mtime and inode.
    """
    key = (path, name, _file_identity(path))
    with _memo_lock:
        known = _memo.get(key)
    if known is not None:
        return known
    found = _scan_chunks(dsid)
    with _memo_lock:
        _memo[key] = found
    return found


class Unwritten:
    """A dataset none of whose storage was ever written: it reads as its fill value.

    HDF5 answers such a read chunk by chunk (about 10 us per chunk); this
    path fills the output rows instead (the dataset's length is still
    checked, and a region of interest changes nothing: every element is the
    fill value).
    """
    __slots__ = ('fill', 'length')

    def __init__(self, fill, length):
        self.fill, self.length = fill, length


def _scan_chunks(dsid):
    dcpl = dsid.get_create_plist()
    layout = dcpl.get_layout()
    if layout == h5py.h5d.VIRTUAL:
        return 'virtual dataset'
    dtype = dsid.dtype
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        return f'element type {dtype} is not a plain number'
    if layout in (h5py.h5d.CHUNKED, h5py.h5d.CONTIGUOUS) and dcpl.get_external_count() == 0:
        unwritten = (dsid.get_num_chunks() == 0 if layout == h5py.h5d.CHUNKED
                     else dsid.get_storage_size() == 0)
        if unwritten:
            fill = np.zeros((), dtype)
            try:
                dcpl.get_fill_value(fill)
            except Exception:  # noqa: BLE001 - no fill value defined: HDF5 gives zeros
                fill = np.zeros((), dtype)
            return Unwritten(fill, dsid.shape[0] if dsid.shape else 0)
    if layout != h5py.h5d.CHUNKED:
        return 'not chunked'
    filters = tuple((int(f[0]), tuple(int(v) for v in f[2]))
                    for f in (dcpl.get_filter(i) for i in range(dcpl.get_nfilters())))
    steps = decode_pipeline(filters)
    if isinstance(steps, str):
        return steps
    if not steps:
        return 'not compressed (h5py reads it as fast)'
    infos = []
    if not hasattr(dsid, 'chunk_iter'):
        return 'h5py/HDF5 too old for chunk_iter'
    dsid.chunk_iter(infos.append)
    n, ndim = len(infos), len(dsid.shape)
    offsets = np.array([i.chunk_offset for i in infos], dtype=np.int64).reshape(n, ndim)
    table = StorageChunks.build(
        dsid.shape, dcpl.get_chunk(), dtype, filters, offsets,
        np.fromiter((i.byte_offset for i in infos), np.uint64, n),
        np.fromiter((i.size for i in infos), np.uint64, n),
        np.fromiter((i.filter_mask for i in infos), np.uint32, n))
    if n and int(table.sizes.sum()) < MIN_CHUNK_BYTES * n:
        return 'chunks too small to gain from threads'
    return table


def direct_reason(table, out, roi) -> str | None:
    """Why a dataset can't be read directly into ``out`` (None if it can)."""
    if isinstance(table, str):
        return table
    if roi:
        return 'a region of interest is read with h5py'
    if not out.flags.c_contiguous or not out.flags.writeable:
        return 'output array is not C-contiguous and writeable'
    if tuple(out.shape[1:]) != table.shape[1:]:
        return 'output entry shape differs from the dataset'
    return None


# -- decoding ----------------------------------------------------------------------------

def _inflated(raw: bytes, table: StorageChunks, mask: int, steps: tuple):
    """Undo every filter but a final shuffle: ``(bytes, shuffled)``."""
    data, nfilt, shuffled = raw, len(table.filters), False
    itemsize = np.dtype(table.dtype).itemsize
    for k, step in enumerate(steps):
        if mask & (1 << (nfilt - 1 - k)):
            continue       # this filter was skipped when the chunk was written
        if shuffled:       # a shuffle before another decode step: undo it now
            data, shuffled = _unshuffle(data, itemsize, None), False
        if step == 'inflate':
            data = compression.inflate(data)
        elif step == 'unshuffle':
            shuffled = itemsize > 1
    if len(data) != table.chunk_nbytes:
        raise _Unusable('decoded size')
    return data, shuffled


_UINTS = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def _unshuffle(data, itemsize: int, target):
    """Undo HDF5's byte shuffle; into ``target`` (a C-contiguous array) if given.

    The shuffle stores byte 0 of every element, then byte 1, ...: each plane
    is shifted into place in an unsigned integer as wide as the element, in
    a few vectorised passes (a strided byte copy is several times slower).
    On a little-endian machine, the integer's bytes are the element's bytes.
    """
    planes = np.frombuffer(data, np.uint8).reshape(itemsize, -1)
    uint = _UINTS.get(itemsize)
    if uint is None or np.little_endian is False:
        result = np.ascontiguousarray(planes.T)
        if target is not None:
            target.reshape(-1).view(np.uint8)[:] = result.reshape(-1)
        return result.reshape(-1)
    if target is None:
        acc = np.empty(planes.shape[1], uint)
    else:
        acc = target.reshape(-1).view(uint)
    np.left_shift(planes[itemsize - 1], 8 * (itemsize - 1), out=acc, dtype=uint)
    for j in range(itemsize - 2, -1, -1):
        if j:
            acc |= np.left_shift(planes[j], 8 * j, dtype=uint)
        else:
            np.bitwise_or(acc, planes[0], out=acc)
    return acc.view(np.uint8)


def _copy_chunk(raw, table, mask, steps, c, out):
    """Decode one stored chunk and copy ChunkCopy ``c``'s part of it into ``out``."""
    data, shuffled = _inflated(raw, table, mask, steps)
    dtype = np.dtype(table.dtype)
    chunk_shape = table.chunk_shape
    if shuffled and out.dtype == dtype and _is_whole(c, chunk_shape, out.shape):
        # The usual detector case: a whole chunk into contiguous output rows.
        _unshuffle(data, dtype.itemsize, out[c.dst])
        return
    if shuffled:
        data = _unshuffle(data, dtype.itemsize, None)
    typed = np.frombuffer(data, dtype).reshape(chunk_shape)
    out[(c.dst,) + c.inner_dst] = typed[(c.src,) + c.inner_src]


def _is_whole(c, chunk_shape, out_shape) -> bool:
    """Whether ``c`` copies a whole chunk onto whole, consecutive output rows."""
    return (tuple(chunk_shape[1:]) == tuple(out_shape[1:])
            and isinstance(c.src, slice) and c.src.start == 0 and c.src.stop == chunk_shape[0]
            and isinstance(c.dst, slice))


def _run_task(fd, table, steps, copies, out):
    addresses, sizes, masks = table.addresses, table.sizes, table.masks
    for c in copies:
        i = c.chunk
        size = int(sizes[i])
        raw = os.pread(fd, size, int(addresses[i]))
        if len(raw) != size:
            raise _Unusable('short read')
        try:
            _copy_chunk(raw, table, int(masks[i]), steps, c, out)
        except _Unusable:
            raise
        except Exception as e:      # zlib.error and friends: let h5py report it
            raise _Unusable(str(e)) from None


def _tasks(table, copies):
    """Split copies into thread tasks of about TASK_BYTES stored bytes."""
    sizes = table.sizes
    task, acc = [], 0
    for c in copies:
        task.append(c)
        acc += int(sizes[c.chunk])
        if acc >= TASK_BYTES:
            yield task
            task, acc = [], 0
    if task:
        yield task


def read_groups(groups, out, roi, threads=None, force=False) -> list:
    """Read ``groups`` of steps directly into ``out``; return the groups it did not read.

    ``groups`` maps ``(path, dataset)`` to ``(dataset id, steps reading it)``.
    A group is left to the caller (returned) when the direct path cannot read
    it exactly; with ``force``, that raises ValueError instead. Datasets never
    written are answered with their fill value (:class:`Unwritten`), with or
    without a region of interest.
    """
    left, jobs = [], []
    for (path, name), (dsid, steps) in groups.items():
        table = storage_chunks(dsid, path, name)
        if isinstance(table, Unwritten):
            if max(s.src_stop for s in steps) <= table.length:
                for s in steps:
                    out[s.dst_start:s.dst_stop] = table.fill
                continue
            reason = 'rows beyond the dataset'     # h5py path raises the clear error
        else:
            reason = direct_reason(table, out, roi)
        copies = None
        if reason is None:
            src = np.concatenate([np.arange(s.src_start, s.src_stop) for s in steps])
            dst = np.concatenate([np.arange(s.dst_start, s.dst_stop) for s in steps])
            if len(src) and int(src.max()) >= table.shape[0]:
                reason = 'rows beyond the dataset'     # h5py path raises the clear error
            else:
                copies = chunk_copies(table, src, dst)
                if copies is None:
                    reason = 'unallocated chunks (fill value)'
        if reason is not None:
            if force:
                raise ValueError(f"read_path='direct' cannot read {name} in {path}: {reason}")
            left.append(((path, name), (dsid, steps)))
            continue
        jobs.append(((path, name), (dsid, steps), table, copies))
    if not jobs:
        return left
    steps_of = {j[0]: j for j in jobs}
    fds = {}
    try:
        for key, _, _, _ in jobs:
            if key[0] not in fds:
                fds[key[0]] = os.open(key[0], os.O_RDONLY)
        work = []
        for key, _, table, copies in jobs:
            dec = decode_pipeline(table.filters)
            for task in _tasks(table, copies):
                work.append((key, fds[key[0]], table, dec, task))
        failed = _run_all(work, out, threads)
    finally:
        for fd in fds.values():
            os.close(fd)
    for key in failed:
        if force:
            raise ValueError(f"read_path='direct' could not decode {key[1]} in {key[0]}")
        left.append((key, steps_of[key][1]))
    return left


def _run_all(work, out, threads) -> set:
    """Run the tasks (in the shared pool when worth it); keys of datasets that failed."""
    failed = set()

    def run(item):
        key, fd, table, dec, task = item
        if key in failed:
            return
        try:
            _run_task(fd, table, dec, task, out)
        except _Unusable:
            failed.add(key)

    n = compression.num_threads() if threads is None else max(1, int(threads))
    if n == 1 or len(work) == 1:
        for item in work:
            run(item)
    else:
        list(compression.thread_pool(n).map(run, work))
    return failed


def group_steps(steps, open_dataset) -> dict:
    """``{(path, dataset): (dataset id, steps)}``, in first-appearance order."""
    groups = {}
    for s in steps:
        k = (s.path, s.dataset)
        g = groups.get(k)
        if g is None:
            g = groups[k] = (open_dataset(s.path, s.dataset), [])
        g[1].append(s)
    return groups
