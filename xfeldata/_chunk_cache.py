"""Effects: chunk tables on disk, so a new process does not walk HDF5's chunk index again.

The direct-chunk read path (:mod:`xfeldata._direct`) needs each dataset's
:class:`~xfeldata.core.h5chunks.StorageChunks` table: where every stored
chunk's bytes are. HDF5 answers with ``chunk_iter``, about 1.5 us per chunk
with the file in the page cache (more when the B-tree comes from a cluster
filesystem): a detector module with one frame per chunk holds tens of
thousands of chunks per dataset. This side cache keeps the tables of the big
ones (at least :data:`MIN_CHUNKS` chunks) beside xfeldata's index cache.

Where: ``<cache root>/chunks-v<N>/<sha256 of the resolved file path, 32 hex>.msgpack``,
one file per data file, with the cache root of :mod:`xfeldata.index_cache`
(``$XFELDATA_CACHE``, else ``$XDG_CACHE_HOME/xfeldata``, else
``~/.cache/xfeldata``). ``XFELDATA_CACHE=off`` disables it: nothing is read or
written. Never written next to the data.

Trust: a cache file holds the data file's resolved path, size, ``st_mtime_ns``
and inode; it is used only when all four equal the file now, and a table only
when the dataset's shape, chunk shape, element type and filters equal the
live dataset's. Each table is zlib-compressed (its checksum catches damage)
and checked on load (array lengths, chunk origins on the chunk grid, byte
ranges inside the file). Anything unusable is a miss: the table is read from
the file again. Nothing here raises because of the cache.

Size: the folder is kept under ``$XFELDATA_CHUNK_CACHE_MAX_MB`` (default
1024 MB): a write that takes it over deletes the least recently used cache
files (a load marks its file used) until it is under 80% of that. A module
file's tables take about a megabyte, so the cap matters on small home
folders. ``0`` stops writing tables at all.

Encoding: a msgpack map; each table's arrays as raw little-endian bytes,
compressed with zlib level 1 (chunk origins on a regular grid compress about
7x). No pickle: a cache folder may be shared. Writes are atomic (temporary
file + :func:`os.replace`); two processes adding tables of the same file at
the same moment may drop one of them, which is only a later miss.
"""
from __future__ import annotations

import hashlib
import logging
import os
import os.path as osp
import zlib

import msgpack
import numpy as np

from .core.h5chunks import StorageChunks
from .index_cache import cache_root
from .run_files_map import atomic_write

__all__ = ['CACHE_VERSION', 'MIN_CHUNKS', 'DEFAULT_MAX_MB', 'cache_file', 'file_identity',
           'load', 'store', 'max_bytes', 'prune']

log = logging.getLogger(__name__)

#: Bumped whenever the layout of a chunk cache file changes.
CACHE_VERSION = 1
#: Tables with fewer chunks are not written: ``chunk_iter`` rebuilds them in
#: under about 1.5 ms, less than reading a cache file costs to be worth it.
MIN_CHUNKS = 1024
_MAGIC = 'xfeldata-chunk-tables'
#: Default cap of the folder's size, in MB (``$XFELDATA_CHUNK_CACHE_MAX_MB``).
DEFAULT_MAX_MB = 1024


def max_bytes() -> int:
    """The folder's size cap, from ``$XFELDATA_CHUNK_CACHE_MAX_MB`` (the default if unset or bad)."""
    env = os.environ.get('XFELDATA_CHUNK_CACHE_MAX_MB', '').strip()
    try:
        return max(0, int(float(env or DEFAULT_MAX_MB) * 2**20))
    except (ValueError, OverflowError):   # not a number, NaN or infinite
        log.debug("Ignoring XFELDATA_CHUNK_CACHE_MAX_MB=%r: not a number of MB", env)
        return DEFAULT_MAX_MB * 2**20


def prune(folder, limit: int, keep=None) -> int:
    """Delete the least recently used ``*.msgpack`` files of ``folder`` while it holds
    more than ``limit`` bytes, down to 80% of it (never ``keep``). Returns how many.

    "Used" is the file's mtime: written, or marked by a load. Files another
    process deletes meanwhile are passed over. Never raises.
    """
    entries, total = [], 0
    try:
        with os.scandir(folder) as it:
            for e in it:
                if not e.name.endswith('.msgpack'):
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                entries.append((st.st_mtime_ns, e.path, st.st_size))
                total += st.st_size
    except OSError:
        return 0
    if total <= limit:
        return 0
    removed, target = 0, int(limit * 0.8)
    for _, path, size in sorted(entries):
        if total <= target:
            break
        if path == keep:
            continue
        try:
            os.unlink(path)
        except OSError:
            continue
        total -= size
        removed += 1
    if removed:
        log.debug("Chunk cache %s: removed %d least recently used files", folder, removed)
    return removed


def file_identity(path) -> tuple:
    """``(size, st_mtime_ns, inode)`` of a file now: what a cached table is keyed by."""
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def cache_file(path) -> str | None:
    """The cache file for a data file's tables (None when the cache is off)."""
    root = cache_root()
    if root is None:
        return None
    resolved = osp.realpath(os.fspath(path))
    name = hashlib.sha256(os.fsencode(resolved)).hexdigest()[:32]
    return osp.join(os.fspath(root), f'chunks-v{CACHE_VERSION}', f'{name}.msgpack')


def _read(cfile) -> dict | None:
    try:
        with open(cfile, 'rb') as f:
            data = f.read()
    except OSError:
        return None
    try:
        head = msgpack.unpackb(data, raw=False, strict_map_key=True)
        if (isinstance(head, dict) and head.get('magic') == _MAGIC
                and head.get('version') == CACHE_VERSION
                and isinstance(head.get('tables'), dict)):
            return head
    except Exception as e:  # noqa: BLE001 - msgpack raises several unrelated classes
        log.debug("Ignoring corrupt chunk cache %s: %s", cfile, e)
    return None


def _current(head, path, ident) -> bool:
    try:
        return (head['path'] == osp.realpath(os.fspath(path))
                and (head['size'], head['mtime_ns'], head['ino']) == tuple(ident))
    except (KeyError, TypeError):
        return False


def _encode(table: StorageChunks) -> bytes:
    body = msgpack.packb([
        list(table.shape), list(table.chunk_shape), table.dtype,
        [[fid, list(opts)] for fid, opts in table.filters], table.n_chunks,
        table.offsets.astype('<i8').tobytes(), table.addresses.astype('<u8').tobytes(),
        table.sizes.astype('<u8').tobytes(), table.masks.astype('<u4').tobytes(),
    ], use_bin_type=True)
    return zlib.compress(body, 1)


def _decode(blob: bytes, file_size: int) -> StorageChunks:
    """A table from its stored bytes; raises on anything inconsistent."""
    (shape, chunk_shape, dtype, filters, n,
     offsets, addresses, sizes, masks) = msgpack.unpackb(zlib.decompress(blob), raw=False)
    ndim = len(shape)
    if len(chunk_shape) != ndim or min(chunk_shape, default=1) < 1:
        raise ValueError('chunk shape')
    offs = np.frombuffer(offsets, '<i8').reshape(n, ndim)
    addr = np.frombuffer(addresses, '<u8')
    size = np.frombuffer(sizes, '<u8')
    mask = np.frombuffer(masks, '<u4')
    if not len(addr) == len(size) == len(mask) == n:
        raise ValueError('array lengths')
    if n:
        cs = np.asarray(chunk_shape, np.int64)
        if ((offs < 0).any() or (offs % cs).any()
                or int((addr + size).max()) > file_size or (addr + size < addr).any()):
            raise ValueError('chunk outside the dataset or the file')
    return StorageChunks.build(shape, chunk_shape, dtype,
                               tuple((int(f), tuple(int(v) for v in o)) for f, o in filters),
                               offs, addr, size, mask)


def load(path, ident, name, shape, chunk_shape, dtype, filters) -> StorageChunks | None:
    """The cached table of dataset ``name`` of ``path``, or None.

    ``ident`` is :func:`file_identity` of the file now; ``shape``,
    ``chunk_shape``, ``dtype`` (a ``numpy.dtype.str``) and ``filters`` are the
    live dataset's, which the cached table must match. Never raises.
    """
    try:
        cfile = cache_file(path)
        if cfile is None:
            return None
        head = _read(cfile)
        if head is None or not _current(head, path, ident):
            return None
        blob = head['tables'].get(name)
        if blob is None:
            return None
        table = _decode(blob, ident[0])
        try:
            os.utime(cfile)   # used now: pruning removes the least recently used
        except OSError:
            pass   # a read-only cache folder
    except Exception as e:  # noqa: BLE001 - a damaged entry is a miss, whatever its damage
        log.debug("Ignoring chunk cache entry %s of %s: %s", name, path, e)
        return None
    if (table.shape, table.chunk_shape, table.dtype, table.filters) != (
            tuple(shape), tuple(chunk_shape), dtype, tuple(filters)):
        return None
    return table


def store(path, ident, name, table: StorageChunks) -> bool:
    """Save dataset ``name``'s table of ``path`` if it is big enough to be worth it.

    Keeps the other tables of the same file when the cache file is current,
    drops them otherwise. Returns whether the cache file was written; never
    raises.
    """
    if table.n_chunks < MIN_CHUNKS:
        return False
    try:
        cfile = cache_file(path)
        limit = max_bytes()
        if cfile is None or limit == 0:
            return False
        head = _read(cfile)
        tables = dict(head['tables']) if head is not None and _current(head, path, ident) else {}
        tables[name] = _encode(table)
        size, mtime_ns, ino = ident
        data = msgpack.packb({'magic': _MAGIC, 'version': CACHE_VERSION,
                              'path': osp.realpath(os.fspath(path)), 'size': size,
                              'mtime_ns': mtime_ns, 'ino': ino, 'tables': tables},
                             use_bin_type=True)
        os.makedirs(osp.dirname(cfile), exist_ok=True)
        atomic_write(cfile, data)
        prune(osp.dirname(cfile), limit, keep=cfile)
    except Exception as e:  # noqa: BLE001 - a cache must never break a read
        log.debug("Could not save chunk cache for %s: %s", path, e)
        return False
    return True
