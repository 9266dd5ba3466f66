"""HDF5 storage chunks: which stored chunks a read needs, and where they go (pure).

The direct-chunk read path (:mod:`xfeldata._direct`) reads a chunked,
compressed dataset without HDF5's decoder: it takes the byte ranges of the
stored chunks from HDF5's chunk index once (a :class:`StorageChunks` record),
reads the raw bytes with positional reads and decodes them in threads, outside
HDF5's global lock. This module holds the parts that need no file:

* :func:`decode_pipeline`: the filter pipeline as decode steps, or the reason
  the direct path cannot decode it (then the h5py path reads the dataset);
  :func:`step_modules` names the optional modules the steps need (the effects
  layer checks they import), :func:`bitshuffle_params` reads the bitshuffle
  filter's options;
* :func:`chunk_copies`: for the rows a read plan wants (source row -> output
  row), the stored chunks to decode and the part of each to copy where.

Examples
--------
>>> decode_pipeline(((2, (2,)), (1, (4,))))        # shuffle, then deflate
('inflate', 'unshuffle')
>>> decode_pipeline(((32008, (0, 4, 2, 0, 2)),))  # bitshuffle with LZ4 (hdf5plugin)
('bitunshuffle-lz4',)
>>> decode_pipeline(((32001, ()),))
'filter 32001 (blosc) has no decoder here'
"""
from __future__ import annotations

import math
from typing import NamedTuple

import attrs
import numpy as np

from .records import readonly

__all__ = ['DEFLATE', 'SHUFFLE', 'FLETCHER32', 'LZ4', 'BITSHUFFLE', 'PLUGIN_FILTERS',
           'StorageChunks', 'ChunkCopy', 'decode_pipeline', 'step_modules',
           'bitshuffle_params', 'bitshuffle_default_block', 'chunk_copies', 'chunk_grid']

DEFLATE, SHUFFLE, FLETCHER32 = 1, 2, 3
#: HDF5 filters registered by plugins (hdf5plugin): h5py reads them only once
#: ``import hdf5plugin`` has registered them with HDF5.
LZ4, BITSHUFFLE = 32004, 32008
PLUGIN_FILTERS = frozenset({LZ4, BITSHUFFLE})
_NAMES = {1: 'deflate', 2: 'shuffle', 3: 'fletcher32', 4: 'szip', 5: 'nbit',
          6: 'scaleoffset', 32001: 'blosc', 32004: 'lz4', 32008: 'bitshuffle',
          32015: 'zstd'}
#: decode step for each filter the direct path knows (in decode order: reversed pipeline)
_DECODE = {DEFLATE: 'inflate', SHUFFLE: 'unshuffle', LZ4: 'lz4'}
#: optional modules (import names) each decode step needs
_STEP_MODULES = {'lz4': ('lz4.block',), 'bitunshuffle-lz4': ('lz4.block',)}
_BITSHUFFLE_CODECS = {0: 'bitunshuffle', 2: 'bitunshuffle-lz4', 3: None}   # 3: zstd


def decode_pipeline(filters) -> tuple | str:
    """Decode steps for a filter pipeline, or a string saying why there are none.

    ``filters`` is the pipeline in encode order, as ``(filter id, options)``
    pairs (:attr:`xfeldata.core.records.KeyInfo.filters`). The steps come in
    decode order. An empty pipeline gives ``()``.

    Steps: ``'inflate'`` (deflate), ``'unshuffle'`` (HDF5's byte shuffle),
    ``'lz4'`` (the HDF5 LZ4 filter 32004), ``'bitunshuffle'`` and
    ``'bitunshuffle-lz4'`` (the bitshuffle filter 32008 without and with its
    LZ4 compression). Bitshuffle with zstd, and every other filter, has none.
    """
    steps = []
    for fid, opts in reversed(tuple(filters)):
        fid = int(fid)
        if fid == BITSHUFFLE:
            params = bitshuffle_params(opts)
            if isinstance(params, str):
                return params
            step = _BITSHUFFLE_CODECS[params[2]]
        else:
            step = _DECODE.get(fid)
        if step is None:
            return f"filter {fid} ({_NAMES.get(fid, 'unknown')}) has no decoder here"
        steps.append(step)
    return tuple(steps)


def step_modules(steps) -> tuple:
    """The optional modules (import names) the decode ``steps`` need, sorted.

    >>> step_modules(('lz4', 'unshuffle'))
    ('lz4.block',)
    """
    return tuple(sorted({m for s in steps for m in _STEP_MODULES.get(s, ())}))


def bitshuffle_default_block(elem_size: int) -> int:
    """Elements per block the bitshuffle filter uses when its options say 0.

    About 8 KiB of data, a multiple of 8 elements, at least 128 elements
    (checked against hdf5plugin's filter for element sizes 1 to 100).

    >>> [bitshuffle_default_block(n) for n in (1, 2, 3, 100)]
    [8192, 4096, 2728, 128]
    """
    return max(128, (8192 // int(elem_size)) // 8 * 8)


def bitshuffle_params(options) -> tuple | str:
    """``(element size, elements per block, compression)`` of a bitshuffle filter.

    ``options`` are the filter's stored values: format version (2 values),
    element size, block size in elements (0: the default), compression (0:
    none, 2: LZ4, 3: zstd), possibly a compression level. The block size is
    as stored (0 for the default; with LZ4 each chunk's header repeats it).
    Returns a string saying why the options cannot be decoded here.

    >>> bitshuffle_params((0, 4, 2, 0, 2))
    (2, 0, 2)
    >>> bitshuffle_params((0, 4, 4, 0, 3))
    'filter 32008 (bitshuffle) with zstd compression has no decoder here'
    """
    opts = tuple(int(v) for v in options)
    if len(opts) < 3 or opts[2] < 1:
        return 'filter 32008 (bitshuffle) options give no element size'
    block = opts[3] if len(opts) > 3 else 0
    comp = opts[4] if len(opts) > 4 else 0
    if block < 0 or block % 8:
        return f'filter 32008 (bitshuffle) block size {block} is not a multiple of 8'
    if comp not in _BITSHUFFLE_CODECS:
        return f'filter 32008 (bitshuffle) compression {comp} is unknown'
    if _BITSHUFFLE_CODECS[comp] is None:
        return 'filter 32008 (bitshuffle) with zstd compression has no decoder here'
    return opts[2], block, comp


@attrs.frozen(eq=False)
class StorageChunks:
    """The allocated stored chunks of one chunked dataset.

    Attributes
    ----------
    shape, chunk_shape : tuple of int
        The dataset's shape and its chunk shape (same length).
    dtype : str
        The stored element type (``numpy.dtype.str``, byte order included).
    filters : tuple
        ``(filter id, options)`` pairs in encode order.
    offsets : numpy.ndarray
        ``(n, ndim)`` int64: the logical origin of each allocated chunk.
    addresses, sizes : numpy.ndarray
        ``(n,)`` uint64: where each chunk's bytes are in the file, and how many.
    masks : numpy.ndarray
        ``(n,)`` uint32: HDF5's per-chunk filter mask (bit i set: filter i of
        the pipeline was skipped for this chunk).
    """
    shape: tuple
    chunk_shape: tuple
    dtype: str
    filters: tuple
    offsets: np.ndarray
    addresses: np.ndarray
    sizes: np.ndarray
    masks: np.ndarray

    @classmethod
    def build(cls, shape, chunk_shape, dtype, filters, offsets, addresses, sizes, masks):
        n = len(addresses)
        offs = np.asarray(offsets, dtype=np.int64).reshape(n, len(shape))
        return cls(tuple(int(x) for x in shape), tuple(int(x) for x in chunk_shape),
                   np.dtype(dtype).str, tuple(filters), readonly(offs, np.int64),
                   readonly(addresses, np.uint64), readonly(sizes, np.uint64),
                   readonly(masks, np.uint32))

    @property
    def n_chunks(self) -> int:
        return len(self.addresses)

    @property
    def chunk_nbytes(self) -> int:
        """Bytes of one decoded chunk (edge chunks are stored full size)."""
        return math.prod(self.chunk_shape) * np.dtype(self.dtype).itemsize

    def grid_positions(self) -> np.ndarray:
        """``where[g]``: the table row of the chunk at flat grid position ``g``, or -1."""
        grid = chunk_grid(self.shape, self.chunk_shape)
        where = np.full(math.prod(grid), -1, dtype=np.int64)
        if self.n_chunks:
            coords = self.offsets // np.asarray(self.chunk_shape, dtype=np.int64)
            ok = np.all(coords < np.asarray(grid, dtype=np.int64), axis=1)
            flat = np.ravel_multi_index(tuple(coords[ok].T), grid)
            where[flat] = np.flatnonzero(ok)
        return where


def chunk_grid(shape, chunk_shape) -> tuple:
    """Number of chunks along each axis.

    >>> chunk_grid((10, 512, 128), (1, 256, 128))
    (10, 2, 1)
    """
    return tuple(-(-int(s) // int(c)) if s else 0 for s, c in zip(shape, chunk_shape))


class ChunkCopy(NamedTuple):
    """Copy part of one decoded stored chunk into the output.

    ``chunk`` is the row of the :class:`StorageChunks` table. Rows
    ``src`` of the chunk go to output rows ``dst`` (both slices, or both
    integer arrays); ``inner`` are the slices of the other axes, the same in
    the chunk (relative to its origin) and in the output (absolute) except
    for the shift by the chunk's origin, given as ``inner_src``/``inner_dst``.
    """
    chunk: int
    src: object
    dst: object
    inner_src: tuple
    inner_dst: tuple


def _as_slice_or_array(a: np.ndarray):
    if len(a) and int(a[-1]) - int(a[0]) == len(a) - 1 and (len(a) < 3 or
                                                            (np.diff(a) == 1).all()):
        return slice(int(a[0]), int(a[-1]) + 1)
    return a


def chunk_copies(table: StorageChunks, src_rows, dst_rows) -> tuple | None:
    """The chunk copies that put ``src_rows`` of the dataset into ``dst_rows`` of the output.

    Every inner element of each row is copied (no region of interest).
    Returns None if a chunk the rows need was never written (unallocated:
    HDF5 would give the fill value there; the caller reads such a dataset
    with h5py).

    Examples
    --------
    >>> t = StorageChunks.build((6, 4), (2, 4), '<u2', (), [[0, 0], [2, 0], [4, 0]],
    ...                         [0, 16, 32], [16, 16, 16], [0, 0, 0])
    >>> [(c.chunk, c.src, c.dst) for c in chunk_copies(t, np.array([1, 2, 3, 5]),
    ...                                                np.arange(4))]
    [(0, slice(1, 2, None), slice(0, 1, None)), (1, slice(0, 2, None), slice(1, 3, None)), (2, slice(1, 2, None), slice(3, 4, None))]
    """
    src_rows = np.asarray(src_rows, dtype=np.int64)
    dst_rows = np.asarray(dst_rows, dtype=np.int64)
    if not len(src_rows):
        return ()
    c0 = table.chunk_shape[0]
    grid = chunk_grid(table.shape, table.chunk_shape)
    inner_grid = grid[1:]
    n_inner = math.prod(inner_grid)
    where = table.grid_positions()
    band = src_rows // c0
    order = np.argsort(band, kind='stable')
    band_sorted = band[order]
    cuts = np.flatnonzero(np.diff(band_sorted)) + 1
    starts = np.concatenate(([0], cuts))
    stops = np.concatenate((cuts, [len(order)]))
    bands = band_sorted[starts]
    # Stored chunks of every band (all inner chunks of the band are needed).
    flat = bands[:, None] * n_inner + np.arange(n_inner, dtype=np.int64)[None, :]
    rows = where[flat]
    if (rows < 0).any():
        return None
    inner_slices = []
    for pos in np.ndindex(*inner_grid) if inner_grid else [()]:
        src_s, dst_s = [], []
        for g, c, n in zip(pos, table.chunk_shape[1:], table.shape[1:]):
            a, b = g * c, min((g + 1) * c, n)
            src_s.append(slice(0, b - a))
            dst_s.append(slice(a, b))
        inner_slices.append((tuple(src_s), tuple(dst_s)))
    out = []
    for k, (s0, s1, b) in enumerate(zip(starts.tolist(), stops.tolist(), bands.tolist())):
        idx = order[s0:s1]
        src = _as_slice_or_array(src_rows[idx] - b * c0)
        dst = _as_slice_or_array(dst_rows[idx])
        if isinstance(src, slice) != isinstance(dst, slice):
            src, dst = src_rows[idx] - b * c0, dst_rows[idx]
        for j, (isrc, idst) in enumerate(inner_slices):
            out.append(ChunkCopy(int(rows[k, j]), src, dst, isrc, idst))
    return tuple(out)
