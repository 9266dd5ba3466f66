"""Threaded decompression of HDF5 chunks (deflate, shuffle + deflate).

Two layers:

* what xfeldata's direct-chunk read path uses (:mod:`xfeldata._direct`):
  :func:`inflate` (python-isal's inflate when the ``fast`` extra is installed,
  else the standard library's ``zlib``; both release the GIL), the thread
  count :func:`num_threads` (``EXTRA_NUM_THREADS``, as EXtra-data reads it)
  and one shared :func:`thread_pool` per size;
* EXtra-data's ``compression`` names (API.md section 23), kept for scripts
  that used them: :func:`filter_ids`, :class:`DeflateDecompressor`,
  :class:`ShuffleDeflateDecompressor`, :func:`dataset_decompressor`,
  :func:`multi_dataset_decompressor`, :func:`parallel_decompress_chunks`.

Examples
--------
>>> import zlib, numpy as np
>>> raw = np.arange(6, dtype='<u2')
>>> bytes(inflate(zlib.compress(raw.tobytes()))) == raw.tobytes()
True
>>> d = ShuffleDeflateDecompressor((3, 2), '<u2')
>>> shuffled = raw.view(np.uint8).reshape(6, 2).T.tobytes()
>>> out = np.zeros((3, 2), '<u2')
>>> d.apply_filters(zlib.compress(shuffled), 0, out); out.ravel().tolist()
[0, 1, 2, 3, 4, 5]
"""
from __future__ import annotations

import os
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ['inflate', 'inflate_name', 'num_threads', 'thread_pool', 'filter_ids',
           'DeflateDecompressor', 'ShuffleDeflateDecompressor', 'dataset_decompressor',
           'multi_dataset_decompressor', 'parallel_decompress_chunks']

try:   # python-isal: about 3x the standard library's inflate speed (the `fast` extra)
    from isal import isal_zlib as _isal
except ImportError:  # pragma: no cover - depends on the environment
    _isal = None

_DEFLATE, _SHUFFLE = 1, 2


def inflate_name() -> str:
    """Which deflate decoder :func:`inflate` uses (``'isal'`` or ``'zlib'``).

    ``XFELDATA_INFLATE=zlib`` forces the standard library's.
    """
    if _isal is not None and os.environ.get('XFELDATA_INFLATE', '').lower() != 'zlib':
        return 'isal'
    return 'zlib'


def inflate(data) -> bytes:
    """Decompress one zlib stream (HDF5's deflate filter output)."""
    if inflate_name() == 'isal':
        return _isal.decompress(data)
    return zlib.decompress(data)


def num_threads() -> int:
    """Threads for decoding: ``EXTRA_NUM_THREADS`` if set, else the usable cores (at most 16)."""
    env = os.environ.get('EXTRA_NUM_THREADS', '').strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"EXTRA_NUM_THREADS must be an integer, got {env!r}") from None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 16))


_pools = {}
_pools_lock = threading.Lock()


def thread_pool(n: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``n`` decoding threads (made on first use)."""
    with _pools_lock:
        pool = _pools.get(n)
        if pool is None:
            pool = _pools[n] = ThreadPoolExecutor(n, thread_name_prefix='xfeldata-decode')
        return pool


# -- EXtra-data's names ------------------------------------------------------------------

def filter_ids(dset) -> list:
    """The filter IDs of an h5py dataset's pipeline, in encode order."""
    dcpl = dset.id.get_create_plist()
    return [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]


class DeflateDecompressor:
    """Undo a pipeline of deflate alone (``deflate_filter_idx``: its bit in filter masks)."""

    def __init__(self, deflate_filter_idx=0):
        self.deflate_filter_idx = deflate_filter_idx

    @classmethod
    def for_dataset(cls, dset):
        ids = filter_ids(dset)
        return cls(ids.index(_DEFLATE)) if ids == [_DEFLATE] else None

    def clone(self):
        return type(self)(self.deflate_filter_idx)

    def apply_filters(self, data, filter_mask, out):
        """Decode one stored chunk into ``out`` (an array of the chunk's shape)."""
        if filter_mask & (1 << self.deflate_filter_idx):
            raw = data
        else:
            raw = inflate(data)
        out.reshape(-1).view(np.uint8)[:] = np.frombuffer(raw, np.uint8)


class ShuffleDeflateDecompressor:
    """Undo shuffle then deflate for chunks of ``chunk_shape`` and ``dtype``."""

    def __init__(self, chunk_shape, dtype):
        self.chunk_shape = tuple(chunk_shape)
        self.dtype = np.dtype(dtype)

    @classmethod
    def for_dataset(cls, dset):
        if filter_ids(dset) != [_SHUFFLE, _DEFLATE]:
            return None
        return cls(dset.chunks, dset.dtype)

    def clone(self):
        return type(self)(self.chunk_shape, self.dtype)

    def apply_filters(self, data, filter_mask, out):
        raw = data if filter_mask & 2 else inflate(data)
        b = np.frombuffer(raw, np.uint8)
        size = self.dtype.itemsize
        dest = out.reshape(-1).view(np.uint8).reshape(-1, size)
        if filter_mask & 1 or size == 1:
            dest[:] = b.reshape(-1, size)
        else:
            dest[:] = b.reshape(size, -1).T


def dataset_decompressor(dset):
    """A decompressor for an h5py dataset's chunks, or None if not deflate (+ shuffle)."""
    if dset.chunks is None:
        return None
    return (DeflateDecompressor.for_dataset(dset)
            or ShuffleDeflateDecompressor.for_dataset(dset))


def multi_dataset_decompressor(dsets):
    """One decompressor for datasets sharing chunks, dtype and filters, else None."""
    dsets = list(dsets)
    if not dsets:
        return None
    first = dsets[0]
    sig = (first.chunks, first.dtype, filter_ids(first))
    if any((d.chunks, d.dtype, filter_ids(d)) != sig for d in dsets[1:]):
        return None
    return dataset_decompressor(first)


def parallel_decompress_chunks(tasks, decompressor_proto, threads=16):
    """Decode stored chunks into destinations in a thread pool.

    ``tasks`` yields ``(dataset, chunk_offset, destination)``: an h5py
    dataset, the logical offset of one of its chunks and an array of the
    chunk's shape. Raw chunks are read with ``read_direct_chunk`` (under
    HDF5's lock); unallocated chunks are skipped (their destination keeps
    what it holds, e.g. the fill value); decoding runs in the pool.
    """
    raw = []
    for dset, offset, dest in tasks:
        try:
            mask, data = dset.id.read_direct_chunk(tuple(offset))
        except (OSError, ValueError, RuntimeError):
            continue    # unallocated chunk
        raw.append((mask, data, dest))

    def run(item):
        mask, data, dest = item
        decompressor_proto.clone().apply_filters(data, mask, dest)

    if threads <= 1 or len(raw) <= 1:
        for item in raw:
            run(item)
    else:
        list(thread_pool(int(threads)).map(run, raw))
