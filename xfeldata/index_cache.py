"""Effects: xfeldata's own index cache, every known tier of a run's files on disk.

EXtra-data's run files map (:mod:`xfeldata.run_files_map`) holds only tier 0.
This cache holds every tier record the process learnt about the files of one
run directory (:class:`~xfeldata.core.records.FileIndex`, ``FileMeta``,
``SourceFileIndex``, ``SourceKeys``, ``KeyInfo``), so that a second session
answers ``info()``, shapes and key lists without opening data files
(DESIGN.md decision 2).

Where: one file per run directory, named by a hash of the resolved directory
path, under ``<cache root>/index-v<N>/``. The cache root is
``$XFELDATA_CACHE``, else ``$XDG_CACHE_HOME/xfeldata``, else
``~/.cache/xfeldata``; ``XFELDATA_CACHE=off`` (or ``0``, ``none``) disables the
cache. It is never written into a run folder (often read-only, always shared).

Trust: an entry is keyed by the file's name, size and mtime and is used only
when all three match the file now; a cache file that is unreadable, corrupt,
of another version or written for other record layouts is ignored as a whole.
Nothing here raises on a bad cache: the worst case is a cold open.

Encoding: msgpack, numpy arrays as ``(dtype, shape, raw bytes)`` (or, for the
usual train IDs, firsts and counts, as an arithmetic progression or a single
value), each distinct source list stored once, and a CRC-32 of the whole. The
tier-0 cache of 20,000 files is about 5 MB and loads in about 0.3 s. No
pickle: a cache folder may be shared, and unpickling executes code.

Writes are atomic (temporary file + :func:`os.replace`), so concurrent savers
always leave a valid file; a best-effort lock on a side file serialises their
read-merge-write, so neither loses the other's entries.
"""
from __future__ import annotations

import atexit
import contextlib
import gc
import hashlib
import logging
import os
import os.path as osp
import threading
import time
import zlib
from pathlib import Path
from typing import Iterable, Mapping

import msgpack

from . import _tiers
from .core.records import FileIndex
from .run_files_map import atomic_write
from ._cache_codec import (  # noqa: F401 (pack_record/unpack_record are public here)
    _LAYOUT, _MAGIC, _OFF, _UNICODE_ERRORS, decode_file_index, decode_file_meta,
    decode_key_info, decode_source_index, decode_source_keys, encode_file_index,
    encode_file_meta, encode_key_info, encode_source_index, encode_source_keys,
    pack_record, unpack_record)

__all__ = ['CACHE_VERSION', 'cache_root', 'cache_path', 'load', 'save', 'save_dirty',
           'forget_runs', 'pack_record', 'unpack_record']

log = logging.getLogger(__name__)

#: Bumped whenever the layout of the cache file changes.
CACHE_VERSION = 1

# Run directories this process loaded or saved: abspath -> {file path: FileIndex},
# so that tiers learnt later in the session are saved at exit (save_dirty).
_KNOWN_RUNS: dict = {}
# Cache file -> keys of the files whose current records it holds (loaded from
# it or saved to it here): saving those again, with nothing new, is skipped, so
# reopening a cached run does not rewrite its cache.
_ON_DISK: dict = {}
_known_lock = threading.Lock()


# -- locations ---------------------------------------------------------------

def cache_root() -> Path | None:
    """The cache folder, or None if the cache is disabled.

    >>> import os
    >>> os.environ['XFELDATA_CACHE'] = 'off'
    >>> cache_root() is None
    True
    >>> del os.environ['XFELDATA_CACHE']
    """
    env = os.environ.get('XFELDATA_CACHE')
    if env is not None and env.strip():
        if env.strip().lower() in _OFF:
            return None
        return Path(env).expanduser()
    xdg = os.environ.get('XDG_CACHE_HOME')
    if xdg:
        return Path(xdg).expanduser() / 'xfeldata'
    return Path.home() / '.cache' / 'xfeldata'


def cache_path(run_dir) -> Path | None:
    """The cache file for a run directory (None if the cache is disabled).

    The name is a hash of the resolved path, so the same run reached through a
    symlink shares one cache file.
    """
    root = cache_root()
    if root is None:
        return None
    resolved = osp.realpath(os.fspath(run_dir))
    name = hashlib.sha256(os.fsencode(resolved)).hexdigest()[:32]
    return root / f'index-v{CACHE_VERSION}' / f'{name}.msgpack'


# -- file level ----------------------------------------------------------------

def _read_cache_file(path) -> dict | None:
    """The ``files`` table of a cache file: {file name: raw entry}, or None if unusable."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        if not isinstance(e, FileNotFoundError):
            log.debug("Cannot read index cache %s: %s", path, e)
        return None
    return _parse_cache(data, path)


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector (also usable as a decorator).

    Never leaves it disabled: it is enabled again on exit if it was on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _parse_cache(data: bytes, path='<bytes>') -> dict | None:
    """The ``files`` table of a cache file's bytes, or None if unusable.

    The file is a small header map whose ``body`` holds the packed table and
    ``crc`` its CRC-32: msgpack notices truncation but not a changed byte
    inside an array, so the checksum catches damage the structure cannot.
    """
    try:
        head = msgpack.unpackb(data, raw=False, strict_map_key=True)
        if not (isinstance(head, dict) and head.get('magic') == _MAGIC
                and head.get('version') == CACHE_VERSION and head.get('layout') == _LAYOUT):
            log.debug("Ignoring index cache %s: other version or layout", path)
            return None
        body = head['body']
        if zlib.crc32(body) != head['crc']:
            log.debug("Ignoring index cache %s: checksum mismatch", path)
            return None
        # Unpacking creates a million small containers; the cyclic GC would
        # run hundreds of times over them (and find nothing): doubles the time.
        with _gc_paused():
            table, files = msgpack.unpackb(body, raw=False, strict_map_key=True,
                                           unicode_errors=_UNICODE_ERRORS)
        names = [frozenset(t) for t in table]
        for entry in files.values():
            index = entry['index']
            index[5], index[6] = names[index[5]], names[index[6]]
    except Exception as e:   # msgpack raises several unrelated classes on bad input
        log.debug("Ignoring corrupt index cache %s: %s", path, e)
        return None
    return files


def _pack_cache(run_dir: str, files: dict) -> bytes:
    """The bytes of a cache file for ``files`` ({file name: entry}).

    The control and instrument source lists of a run's files repeat (every
    sequence file of an aggregator has the same ones), so each distinct list
    is stored once and entries refer to it by number. Decoded, files with
    equal lists share one frozenset: less to parse, and less memory for a
    20,000-file run.
    """
    table, numbers, packed = [], {}, {}
    for name, entry in files.items():
        index = list(entry['index'])
        for i in (5, 6):
            names = tuple(sorted(index[i]))
            if names not in numbers:
                numbers[names] = len(table)
                table.append(names)
            index[i] = numbers[names]
        packed[name] = {**entry, 'index': index}
    body = msgpack.packb([table, packed], use_bin_type=True, unicode_errors=_UNICODE_ERRORS)
    return msgpack.packb({'magic': _MAGIC, 'version': CACHE_VERSION, 'layout': _LAYOUT,
                          'dir': os.fsencode(osp.realpath(run_dir)), 'crc': zlib.crc32(body),
                          'body': body}, use_bin_type=True)


def _entry_is_current(entry, st) -> bool:
    try:
        return entry['size'] == st.st_size and entry['mtime'] == st.st_mtime
    except (TypeError, KeyError):
        return False


@contextlib.contextmanager
def _locked(path, timeout=5.0):
    """Hold an exclusive lock on ``<path>.lock`` if possible within ``timeout`` seconds.

    Best effort: a filesystem without working locks (or a stuck lock) only
    means that concurrent savers may drop each other's newest entries, never
    that the cache becomes invalid (writes are atomic anyway). The lock file is
    never deleted: deleting lock files reintroduces the race they prevent.
    """
    try:
        import fcntl
        fd = os.open(f'{path}.lock', os.O_RDWR | os.O_CREAT, 0o644)
    except (ImportError, OSError):
        yield False
        return
    try:
        deadline = time.monotonic() + timeout
        got = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                got = True
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            except OSError:
                break
        yield got
    finally:
        os.close(fd)   # releases the lock


# -- entries -------------------------------------------------------------------

def _try(encode, rec):
    """Encode a record, or None if it holds a value the cache cannot store."""
    try:
        return encode(rec)
    except (TypeError, ValueError) as e:
        log.debug("Not caching %r: %s", rec, e)
        return None


def _records_by_file(fkeys) -> dict:
    """What ``MEMO.records_for`` gives, for many files in one pass over the memo.

    ``records_for`` scans the whole memo per file: for 20,000 files with a few
    sources each, that is quadratic (minutes); grouping once is linear.
    """
    memo = _tiers.MEMO
    out = {k: {'meta': None, 'sources': {}, 'keys': {}, 'key_info': {}} for k in fkeys}
    with memo._lock:
        for k, recs in out.items():
            recs['meta'] = memo.meta.get(k)
        for table in ('sources', 'keys'):
            for (fk, source), v in getattr(memo, table).items():
                recs = out.get(fk)
                if recs is not None:
                    recs[table][source] = v
        for (fk, source, key), v in memo.key_info.items():
            recs = out.get(fk)
            if recs is not None:
                recs['key_info'][source, key] = v
    return out


def _encode_entry(fi: FileIndex, recs: dict) -> dict:
    """One file's cache entry from everything the memo knows about it (``recs``).

    A record that cannot be encoded is left out (it is read again from the
    file when needed); the rest of the file's entry is still saved.
    """
    key_info = {}
    for (source, key), ki in recs['key_info'].items():
        enc = _try(encode_key_info, ki)
        if enc is not None:
            key_info.setdefault(source, {})[key] = enc
    sources = {s: _try(encode_source_index, v) for s, v in recs['sources'].items()}
    keys = {s: _try(encode_source_keys, v) for s, v in recs['keys'].items()}
    return {
        'size': fi.size,
        'mtime': fi.mtime,
        'index': encode_file_index(fi),
        'meta': None if recs['meta'] is None else _try(encode_file_meta, recs['meta']),
        'sources': {s: v for s, v in sources.items() if v is not None},
        'keys': {s: v for s, v in keys.items() if v is not None},
        'key_info': key_info,
    }


def _merge_entries(old: dict, new: dict) -> dict:
    """Union of two current entries of the same file: the newer records win."""
    merged = dict(new)
    if merged.get('meta') is None:
        merged['meta'] = old.get('meta')
    for table in ('sources', 'keys'):
        merged[table] = {**(old.get(table) or {}), **new[table]}
    key_info = {s: dict(v) for s, v in (old.get('key_info') or {}).items()}
    for s, v in new['key_info'].items():
        key_info.setdefault(s, {}).update(v)
    merged['key_info'] = key_info
    return merged


def _install(path: str, entry: dict) -> FileIndex:
    """Decode one current entry and put its records into the memo (not as dirty).

    Records already in the memo for the same bytes are kept, so a record of a
    tier stays one object for the whole process.
    """
    fi = decode_file_index(entry['index'])
    if fi.path != path:   # same run through another path: the path is part of the record
        fi = FileIndex.build(path, fi.size, fi.mtime, fi.train_ids, fi.valid,
                             fi.control_sources, fi.instrument_sources, fi.legacy_pairs)
    meta = None if entry.get('meta') is None else decode_file_meta(entry['meta'])
    sources = {s: decode_source_index(v) for s, v in (entry.get('sources') or {}).items()}
    keys = {s: decode_source_keys(v) for s, v in (entry.get('keys') or {}).items()}
    key_info = {(s, k): decode_key_info(v)
                for s, d in (entry.get('key_info') or {}).items() for k, v in d.items()}
    # Decode everything before touching the memo: a corrupt entry installs nothing.
    memo = _tiers.MEMO
    fkey = fi.key
    with memo._lock:
        known = memo.index.get(path)
        if known is not None and known.key == fkey:
            fi = known
        else:
            memo.index[path] = fi
        if meta is not None:
            memo.meta.setdefault(fkey, meta)
        for s, v in sources.items():
            memo.sources.setdefault((fkey, s), v)
        for s, v in keys.items():
            memo.keys.setdefault((fkey, s), v)
        for (s, k), v in key_info.items():
            memo.key_info.setdefault((fkey, s, k), v)
    return fi


def _remember(run_dir: str, fis: Iterable[FileIndex]):
    with _known_lock:
        known = _KNOWN_RUNS.setdefault(run_dir, {})
        for fi in fis:
            known[fi.path] = fi


def _in_dir_filter(run_dir: str):
    """A predicate: is a file path directly inside ``run_dir`` (also via symlinks)?"""
    resolved = osp.realpath(run_dir)
    memo = {}

    def inside(path):
        d = osp.dirname(path)
        if d not in memo:
            memo[d] = d == run_dir or osp.realpath(d) == resolved
        return memo[d]
    return inside


# -- public API ------------------------------------------------------------------

@_gc_paused()   # decoding makes many small objects; see _parse_cache
def load(run_dir, paths_stats: Mapping[str, os.stat_result]) -> dict:
    """Load the cached tiers of a run's files into the process memo.

    Parameters
    ----------
    run_dir : str or path-like
        The run directory.
    paths_stats : mapping
        ``{absolute file path: os.stat_result}`` of the files to look up, as
        stat now. Only entries whose size and mtime equal these are used.

    Returns
    -------
    dict
        ``{path: FileIndex}`` for the files found (tier 0); their other tiers
        are in :data:`xfeldata._tiers.MEMO`. Files not found must be scanned.

    Never raises because of the cache: an unusable cache gives ``{}``.
    """
    path = cache_path(run_dir)
    if path is None or not paths_stats:
        return {}
    files = _read_cache_file(path)
    if not files:
        return {}
    run_dir = osp.abspath(os.fspath(run_dir))
    inside = _in_dir_filter(run_dir)
    found = {}
    for fpath, st in paths_stats.items():
        fpath = osp.abspath(os.fspath(fpath))
        entry = files.get(osp.basename(fpath))
        if entry is None or not _entry_is_current(entry, st) or not inside(fpath):
            continue
        try:
            found[fpath] = _install(fpath, entry)
        except Exception as e:   # a damaged entry is a miss, whatever its damage
            log.debug("Ignoring damaged index cache entry for %s: %s", fpath, e)
    if found:
        _remember(run_dir, found.values())
        with _known_lock:
            _ON_DISK.setdefault(path, set()).update(fi.key for fi in found.values())
    log.debug("Index cache %s: %d of %d files found", path, len(found), len(paths_stats))
    return found


@_gc_paused()
def save(run_dir, file_indexes: Iterable) -> bool:
    """Save every known tier of the given files to the run's cache file.

    Parameters
    ----------
    run_dir : str or path-like
        The run directory.
    file_indexes : iterable of FileIndex (or FileAccess)
        Files of that directory; all records :data:`xfeldata._tiers.MEMO`
        holds for them are saved. Files of other directories are skipped.

    Entries already on disk are kept for the directory's other files that
    are still current (same size and mtime), merged for these files, and
    dropped for files that changed or no longer exist. The given files are
    then no longer dirty in the memo.

    Nothing is written when the cache already holds every record of these
    files (they were loaded from it or saved to it, and no tier was learnt
    since).

    Returns
    -------
    bool
        Whether the cache file was written (False when disabled, not writable,
        or already up to date).
    """
    path = cache_path(run_dir)
    run_dir = osp.abspath(os.fspath(run_dir))
    inside = _in_dir_filter(run_dir)
    fis = [getattr(f, 'index', f) for f in file_indexes]
    fis = [fi for fi in fis if inside(fi.path)]
    _remember(run_dir, fis)
    if path is None or not fis:
        return False

    memo = _tiers.MEMO
    with memo._lock, _known_lock:
        on_disk = _ON_DISK.get(path, ())
        if all(fi.key in on_disk and fi.key not in memo.dirty for fi in fis):
            return False   # nothing new to write
        # Clear dirtiness before collecting: a record added meanwhile stays dirty.
        for fi in fis:
            memo.dirty.discard(fi.key)
    try:
        by_file = _records_by_file({fi.key for fi in fis})
        new = {osp.basename(fi.path): _encode_entry(fi, by_file[fi.key]) for fi in fis}
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path):
            files = {}
            for name, entry in (_read_cache_file(path) or {}).items():
                if name in new:
                    mine = new[name]
                    if (entry['size'], entry['mtime']) == (mine['size'], mine['mtime']):
                        new[name] = _merge_entries(entry, mine)
                    continue
                try:
                    st = os.stat(osp.join(run_dir, name))
                except OSError:
                    continue   # the file is gone
                if _entry_is_current(entry, st):
                    files[name] = entry
            files.update(new)
            atomic_write(path, _pack_cache(run_dir, files))
        with _known_lock:
            _ON_DISK.setdefault(path, set()).update(fi.key for fi in fis)
    except Exception as e:   # a cache must never break the caller
        log.debug("Could not save index cache %s: %s", path, e)
        with memo._lock:
            memo.dirty.update(fi.key for fi in fis)
        return False
    log.debug("Saved index cache %s (%d files)", path, len(files))
    return True


def save_dirty() -> int:
    """Save memo tiers learnt since the last save, for runs this process loaded or saved.

    Registered with :mod:`atexit`; also safe to call at any time. Never raises.

    Returns
    -------
    int
        The number of run directories whose cache was written.
    """
    written = 0
    with _known_lock:
        runs = {d: list(fis.values()) for d, fis in _KNOWN_RUNS.items()}
    for run_dir, fis in runs.items():
        try:
            dirty = _tiers.MEMO.dirty
            todo = [fi for fi in fis if fi.key in dirty]
            if todo and save(run_dir, todo):
                written += 1
        except Exception as e:   # at exit, a cache problem must stay silent
            log.debug("Could not save index cache for %s: %s", run_dir, e)
    return written


def forget_runs() -> None:
    """Forget which runs this process loaded or saved (tests; after fork)."""
    with _known_lock:
        _KNOWN_RUNS.clear()
        _ON_DISK.clear()


atexit.register(save_dirty)
