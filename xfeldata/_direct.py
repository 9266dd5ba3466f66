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
decode (deflate, shuffle, and with the ``compress`` extra LZ4 and bitshuffle:
:func:`xfeldata.core.h5chunks.decode_pipeline`), every needed chunk
allocated, decoded sizes as expected. Anything else, or a chunk that fails to
decode, goes to the h5py path, which reports real damage. Property tests check
both paths byte-identical (properties/test_direct_laws.py,
properties/test_direct_plugin_laws.py).

Plugin filters (LZ4 32004, bitshuffle 32008) are claimed only when HDF5 can
read them too (``hdf5plugin`` registers them and others, such as blosc and
zstd; it is imported here the first time a dataset with a filter HDF5 lacks
is met) and their decoder imports (``lz4`` for LZ4
blocks; the bit transposition is numpy). Bitshuffle pipelines stay on h5py
under ``'auto'`` (:data:`AUTO_H5PY_STEPS`: hdf5plugin's SIMD decoder is faster
than this numpy one even with 2 threads), and so does LZ4 when decoding has
one thread (:data:`AUTO_H5PY_STEPS_ONE_THREAD`: no faster per chunk than
HDF5's); ``read_path='direct'`` uses them.

Chunk tables of big datasets are also kept on disk (:mod:`xfeldata._chunk_cache`),
so a new process does not walk HDF5's chunk index again.

Which path: :func:`xfeldata._execute.execute`'s ``read_path`` argument
(``'auto'``, ``'direct'``, ``'h5py'``), defaulting to the ``XFELDATA_READ_PATH``
environment variable, else ``'auto'``.
"""
from __future__ import annotations

import importlib
import os
import struct
import threading
import h5py
import numpy as np

from . import _chunk_cache, compression
from .core.h5chunks import (PLUGIN_FILTERS, StorageChunks, bitshuffle_default_block,
                            bitshuffle_params, chunk_copies, decode_pipeline, step_modules)

__all__ = ['storage_chunks', 'direct_reason', 'read_groups', 'READ_PATHS', 'AUTO_H5PY_STEPS',
           'AUTO_H5PY_STEPS_ONE_THREAD', 'codec_reason']

READ_PATHS = ('auto', 'direct', 'h5py')

#: Smallest mean stored chunk worth a thread task; below it h5py is as fast.
MIN_CHUNK_BYTES = 4096
#: Stored bytes per thread task (several small chunks share one task).
TASK_BYTES = 1 << 20

#: Decode steps ``'auto'`` leaves to h5py because h5py (hdf5plugin) decodes them
#: faster (benchmarks/bench_direct.py: bitshuffle-LZ4 detector frames, 2 cores:
#: hdf5plugin's SIMD bit transposition uses a third of this numpy one's CPU time).
AUTO_H5PY_STEPS = frozenset({'bitunshuffle', 'bitunshuffle-lz4'})
#: ... and those it leaves to h5py when decoding has one thread only: LZ4 costs
#: about as much CPU time here as in HDF5 (lz4 gains from threads, not per chunk).
AUTO_H5PY_STEPS_ONE_THREAD = frozenset({'lz4'})

_memo = {}                 # (path, dataset, file identity) -> StorageChunks or reason
_memo_lock = threading.Lock()
_modules = {}              # import name -> module, or None if it does not import


class _Unusable(Exception):
    """A chunk could not be decoded here: the h5py path reads its dataset."""


def storage_chunks(dsid, path: str, name: str):
    """The dataset's :class:`StorageChunks`, or a string saying why the direct path can't.

    Asks HDF5 for the chunk index once per dataset (``chunk_iter``) and
    remembers it for the process, keyed by the file's size, mtime and inode;
    big tables are also kept on disk (:mod:`xfeldata._chunk_cache`) for the
    next process.
    """
    ident = _chunk_cache.file_identity(path)
    key = (path, name, ident)
    with _memo_lock:
        known = _memo.get(key)
    if known is not None:
        return known
    found = _scan_chunks(dsid, path, name, ident)
    with _memo_lock:
        _memo[key] = found
    return found


def _module(name):
    """The module ``name`` if it imports (remembered for the process), else None."""
    if name not in _modules:
        try:
            _modules[name] = importlib.import_module(name)
        except Exception:   # noqa: BLE001 - missing or broken: the capability is off
            _modules[name] = None
    return _modules[name]


def _hdf5_has_filter(fid: int) -> bool:
    """Whether HDF5 can decode filter ``fid``, importing hdf5plugin if it is missing."""
    if h5py.h5z.filter_avail(fid):
        return True
    if _module('hdf5plugin') is None:
        return False
    return bool(h5py.h5z.filter_avail(fid))


def codec_reason(filters, steps) -> str | None:
    """Why the direct path must not decode this pipeline here (None if it may).

    Plugin filters are decoded only when HDF5 can decode them as well
    (hdf5plugin registered), so that the direct path never reads what h5py
    could not; each decode step's optional module must import.
    """
    for fid in sorted({int(f) for f, _ in filters} & PLUGIN_FILTERS):
        if not _hdf5_has_filter(fid):
            return (f"filter {fid} is not available to HDF5 here (install the 'compress' "
                    "extra: hdf5plugin)")
    for mod in step_modules(steps):
        if _module(mod) is None:
            return f"decoding needs the {mod.split('.')[0]} package (the 'compress' extra)"
    return None


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


def _scan_chunks(dsid, path, name, ident):
    dcpl = dsid.get_create_plist()
    layout = dcpl.get_layout()
    if layout == h5py.h5d.VIRTUAL:
        return 'virtual dataset'
    dtype = dsid.dtype
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        return f'element type {dtype} is not a plain number'
    steps = reason = None
    if layout == h5py.h5d.CHUNKED:
        filters = tuple((int(f[0]), tuple(int(v) for v in f[2]))
                        for f in (dcpl.get_filter(i) for i in range(dcpl.get_nfilters())))
        for fid, _ in filters:      # let h5py read what hdf5plugin can register (blosc, ...)
            _hdf5_has_filter(fid)
        steps = decode_pipeline(filters)
        if isinstance(steps, str):
            reason = steps
        elif not steps:
            reason = 'not compressed (h5py reads it as fast)'
        elif not hasattr(dsid, 'chunk_iter'):
            reason = 'h5py/HDF5 too old for chunk_iter'
        else:
            reason = codec_reason(filters, steps)
        if reason is None:
            # A cached table (never empty) spares walking the chunk index,
            # including get_num_chunks below.
            shape, chunk_shape = tuple(dsid.shape), tuple(dcpl.get_chunk())
            table = _chunk_cache.load(path, ident, name, shape, chunk_shape, dtype.str, filters)
            if table is not None:
                return _worth_threads(table)
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
    if reason is not None:
        return reason
    infos = []
    dsid.chunk_iter(infos.append)
    n, ndim = len(infos), len(shape)
    offsets = np.array([i.chunk_offset for i in infos], dtype=np.int64).reshape(n, ndim)
    table = StorageChunks.build(
        shape, chunk_shape, dtype, filters, offsets,
        np.fromiter((i.byte_offset for i in infos), np.uint64, n),
        np.fromiter((i.size for i in infos), np.uint64, n),
        np.fromiter((i.filter_mask for i in infos), np.uint32, n))
    _chunk_cache.store(path, ident, name, table)
    return _worth_threads(table)


def _worth_threads(table):
    n = table.n_chunks
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
    # No filter of a pipeline the direct path decodes makes data much bigger:
    # a header claiming more is damage, not a reason to allocate it.
    limit = table.chunk_nbytes + table.chunk_nbytes // 2 + 4096
    for k, step in enumerate(steps):
        index = nfilt - 1 - k          # the filter's position in the pipeline
        if mask & (1 << index):
            continue       # this filter was skipped when the chunk was written
        if shuffled:       # a shuffle before another decode step: undo it now
            data, shuffled = _unshuffle(data, itemsize, None), False
        if step == 'inflate':
            data = compression.inflate(data)
        elif step == 'unshuffle':
            shuffled = itemsize > 1
        elif step == 'lz4':
            data = _lz4_decode(data, limit)
        else:              # 'bitunshuffle' or 'bitunshuffle-lz4'
            data = _bitshuffle_decode(data, table.filters[index][1],
                                      step == 'bitunshuffle-lz4', limit)
    if len(data) != table.chunk_nbytes:
        raise _Unusable('decoded size')
    return data, shuffled


# -- LZ4 and bitshuffle (hdf5plugin's filters) ------------------------------------------------

_HEADER = struct.Struct('>QI')     # total decoded bytes, bytes per block
_BLOCK = struct.Struct('>I')       # stored bytes of one block


def _lz4_blocks(data, pos, sizes, decompress, raw_if_same: bool):
    """Decode LZ4 blocks of the given decoded ``sizes`` from ``pos``: ``(parts, end)``.

    Each block is a 4-byte big-endian stored size and that many bytes. With
    ``raw_if_same`` (the HDF5 LZ4 filter, which stores a block raw when
    compression would not shrink it), a block whose stored size equals its
    decoded size is raw; bitshuffle always compresses.
    """
    mv, n, parts = memoryview(data), len(data), []
    for size in sizes:
        if pos + 4 > n:
            raise _Unusable('lz4: truncated')
        (stored,) = _BLOCK.unpack_from(data, pos)
        pos += 4
        if stored > n - pos:
            raise _Unusable('lz4: truncated')
        src = mv[pos:pos + stored]
        pos += stored
        if raw_if_same and stored == size:
            parts.append(src)
            continue
        part = decompress(src, uncompressed_size=size)
        if len(part) != size:
            raise _Unusable('lz4: block size')
        parts.append(part)
    return parts, pos


def _lz4_decode(data, limit: int):
    """Undo the HDF5 LZ4 filter (32004).

    Stream: 8-byte big-endian total decoded size, 4-byte big-endian block size
    (bytes), then the blocks (:func:`_lz4_blocks`), nothing after them.
    ``lz4.block.decompress`` releases the GIL.
    """
    if len(data) < _HEADER.size:
        raise _Unusable('lz4: no header')
    total, block = _HEADER.unpack_from(data, 0)
    if total > limit or (total and block <= 0):
        raise _Unusable('lz4: header')
    full, last = divmod(total, block) if total else (0, 0)
    sizes = [block] * full + ([last] if last else [])
    parts, end = _lz4_blocks(data, _HEADER.size, sizes, _module('lz4.block').decompress, True)
    if end != len(data):
        raise _Unusable('lz4: trailing bytes')
    if len(parts) == 1:
        return parts[0]
    return b''.join(parts)


def _bitshuffle_decode(data, options, lz4: bool, limit: int) -> np.ndarray:
    """Undo the bitshuffle filter (32008), without or with its LZ4 compression.

    Without compression the stream is the shuffled data itself, in blocks of
    the filter's block size (its options, or the default for the element
    size). With LZ4: 8-byte big-endian total decoded size, 4-byte big-endian
    block size in bytes, one LZ4 block (4-byte big-endian stored size, bytes)
    per block of elements, the last partial block rounded down to a multiple
    of 8 elements; the last ``n % 8`` elements follow as they are.
    """
    elem, block, _ = bitshuffle_params(options)
    if not lz4:
        if len(data) % elem:
            raise _Unusable('bitshuffle: size')
        return _bitunshuffle(np.frombuffer(data, np.uint8), elem,
                             block or bitshuffle_default_block(elem))
    if len(data) < _HEADER.size:
        raise _Unusable('bitshuffle: no header')
    total, block_bytes = _HEADER.unpack_from(data, 0)
    if total > limit or total % elem or block_bytes <= 0 or block_bytes % (8 * elem):
        raise _Unusable('bitshuffle: header')
    block = block_bytes // elem
    full, rest = divmod(total // elem, block)
    sizes = [block_bytes] * full + ([(rest - rest % 8) * elem] if rest >= 8 else [])
    parts, end = _lz4_blocks(data, _HEADER.size, sizes, _module('lz4.block').decompress,
                             False)
    if len(data) - end != (rest % 8) * elem:
        raise _Unusable('bitshuffle: trailing bytes')
    parts.append(memoryview(data)[end:])
    return _bitunshuffle(np.frombuffer(b''.join(parts), np.uint8), elem, block)


def _bitunshuffle(buf: np.ndarray, elem: int, block: int) -> np.ndarray:
    """Undo the bit transposition of ``buf`` (blocks of ``block`` elements of ``elem`` bytes).

    The last partial block is transposed over its largest multiple of 8
    elements; the remaining elements are stored as they are.
    """
    out = np.empty(len(buf), np.uint8)
    n = len(buf) // elem
    full, rest = divmod(n, block)
    done = full * block * elem
    if full:
        _unshuffle_bits(buf[:done], full, block, elem, out[:done])
    tail = (rest - rest % 8) * elem
    if tail:
        _unshuffle_bits(buf[done:done + tail], 1, rest - rest % 8, elem, out[done:done + tail])
    out[done + tail:] = buf[done + tail:]
    return out


def _repeat(byte: int, dtype):
    return dtype(int.from_bytes(bytes([byte]) * np.dtype(dtype).itemsize, 'little'))


def _unshuffle_bits(src: np.ndarray, nblocks: int, n: int, elem: int, dst: np.ndarray):
    """Undo bitshuffle's transposition of ``nblocks`` whole blocks of ``n`` elements.

    A block stores, for byte ``j`` of the element and bit ``k`` of that byte,
    a row of ``n / 8`` bytes holding that bit of every element (element ``i``
    at bit ``i % 8`` of byte ``i // 8``). Within each group of 8 rows
    (``k = 0..7``) the bytes at one position form an 8x8 bit matrix; three
    rounds of masked swaps between the rows (4, 2, then 1 apart) transpose
    every such matrix at once, in place, after which row ``b`` byte ``m`` is
    byte ``j`` of element ``8 m + b``. One copy then puts the bytes in
    element order. All blocks of a chunk are done together.
    """
    rows = n // 8
    a = src.reshape(nblocks, elem, 8, rows).copy()
    words = a.view(np.uint64) if rows % 8 == 0 else a     # same swaps, 8 bytes at a time
    wt = words.dtype.type
    w = words.shape[-1]
    for shape, shift, mask in (((nblocks, elem, 2, 4, w), 4, 0x0F),
                               ((nblocks, elem, 2, 2, 2, w), 2, 0x33),
                               ((nblocks, elem, 4, 2, w), 1, 0x55)):
        v = words.reshape(shape)
        lo, hi = (v[:, :, 0], v[:, :, 1]) if shift == 4 else (v[:, :, :, 0], v[:, :, :, 1])
        t = lo >> wt(shift)
        t ^= hi
        t &= _repeat(mask, wt)
        hi ^= t
        t <<= wt(shift)
        lo ^= t
    # a[block, j, b, m] is byte j of element 8 m + b of the block.
    uint = _UINTS.get(elem)
    if elem == 1:
        dst.reshape(nblocks, rows, 8)[...] = a.reshape(nblocks, 8, rows).transpose(0, 2, 1)
    elif uint is not None and np.little_endian:
        acc = a[:, 0].astype(uint)          # byte planes into whole elements, then order them
        for j in range(1, elem):
            acc |= a[:, j].astype(uint) << uint(8 * j)
        dst.view(uint).reshape(nblocks, rows, 8)[...] = acc.transpose(0, 2, 1)
    else:
        dst.reshape(nblocks, rows, 8, elem)[...] = a.transpose(0, 3, 2, 1)


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
    threads = compression.num_threads() if threads is None else max(1, int(threads))
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
            if reason is None and not force:
                reason = _auto_reason(decode_pipeline(table.filters), threads)
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


def _auto_reason(steps, threads) -> str | None:
    """Why ``'auto'`` leaves a decodable pipeline to h5py (None if it reads it directly)."""
    if not AUTO_H5PY_STEPS.isdisjoint(steps):
        return "h5py decodes bitshuffle faster ('auto'); read_path='direct' forces it"
    if threads == 1 and not AUTO_H5PY_STEPS_ONE_THREAD.isdisjoint(steps):
        return "with one thread h5py decodes LZ4 as fast ('auto'); read_path='direct' forces it"
    return None


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

    if threads == 1 or len(work) == 1:
        for item in work:
            run(item)
    else:
        list(compression.thread_pool(threads).map(run, work))
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
