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

Encoding: msgpack. Tier 0 of all files is stored in columns, with each
distinct source list and each distinct train-ID or validity array stored once
(the files of a sequence share them), arrays as ``(dtype, shape, raw bytes)``
or, for the usual ones, as an arithmetic progression or a single value; the
tiers above 0 are packed per file and decoded only when first asked for. A
CRC-32 covers the whole. The tier-0 cache of a 20,000-file run (50
aggregators, 400 sequences) is about 2.3 MB and loads in about 50 ms. No
pickle: a cache folder may be shared, and unpickling executes code.

Writes are atomic (temporary file + :func:`os.replace`), so concurrent savers
always leave a valid file; a best-effort lock on a side file serialises their
read-merge-write, so neither loses the other's entries.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import hashlib
import logging
import operator
import os
import os.path as osp
import threading
import time
import zlib
from pathlib import Path
from typing import Iterable, Mapping

import msgpack
import numpy as np

from . import _tiers
from .core.records import FileIndex
from .run_files_map import atomic_write
from ._cache_codec import (  # noqa: F401 (pack_record/unpack_record are public here)
    _LAYOUT, _MAGIC, _OFF, _UNICODE_ERRORS, CacheContents, decode_file_meta,
    decode_key_info, decode_source_index, decode_source_keys, encode_file_index,
    encode_file_meta, encode_key_info, encode_source_index, encode_source_keys,
    pack_body, pack_record, unpack_record)

__all__ = ['CACHE_VERSION', 'cache_root', 'cache_path', 'load', 'save', 'save_dirty',
           'forget_runs', 'pack_record', 'unpack_record']

log = logging.getLogger(__name__)

#: Bumped whenever the layout of the cache file changes.
CACHE_VERSION = 2

# Run directories this process loaded or saved: abspath -> {file path: FileIndex},
# so that tiers learnt later in the session are saved at exit (save_dirty).
_KNOWN_RUNS: dict = {}
# Cache file -> {file path: FileIndex} of the files whose current records it
# holds (loaded from it or saved to it here): saving those again, with nothing
# new, is skipped, so reopening a cached run does not rewrite its cache.
_ON_DISK: dict = {}
_known_lock = threading.Lock()
# Sets of FileIndex digests known to hold no source conflict with suspect
# trains included (hence none without them either): opening a cached run
# skips RunIndex's conflict check for them. Filled from the cache file's
# verdict and by checks that passed in this process; bounded. The value is
# the records' RunSummary when known (None if not): opening seeds its
# RunIndex with it.
_CONFLICT_FREE: dict = {}
_CONFLICT_FREE_MAX = 64


# -- locations ---------------------------------------------------------------

def _cache_root() -> str | None:
    env = os.environ.get('XFELDATA_CACHE')
    if env is not None and env.strip():
        if env.strip().lower() in _OFF:
            return None
        return osp.expanduser(env)
    xdg = os.environ.get('XDG_CACHE_HOME')
    if xdg:
        return osp.join(osp.expanduser(xdg), 'xfeldata')
    return osp.join(osp.expanduser('~'), '.cache', 'xfeldata')


def cache_root() -> Path | None:
    """The cache folder, or None if the cache is disabled.

    >>> import os
    >>> os.environ['XFELDATA_CACHE'] = 'off'
    >>> cache_root() is None
    True
    >>> del os.environ['XFELDATA_CACHE']
    """
    root = _cache_root()
    return None if root is None else Path(root)


def _cache_file(run_dir, _real=None) -> str | None:
    # Strings, not pathlib: this runs on every open, and Path objects cost
    # more than the rest of finding the file. ``_real``: the resolved
    # directory, when the caller has it already.
    root = _cache_root()
    if root is None:
        return None
    resolved = osp.realpath(os.fspath(run_dir)) if _real is None else _real
    # BLAKE2b, as the records' digests: OpenSSL's SHA-256 would cost more on
    # its first use in a process than the rest of finding the file.
    name = hashlib.blake2b(os.fsencode(resolved), digest_size=16).hexdigest()
    return osp.join(root, f'index-v{CACHE_VERSION}', f'{name}.msgpack')


def cache_path(run_dir) -> Path | None:
    """The cache file for a run directory (None if the cache is disabled).

    The name is a hash of the resolved path, so the same run reached through a
    symlink shares one cache file.
    """
    path = _cache_file(run_dir)
    return None if path is None else Path(path)


# -- file level ----------------------------------------------------------------
#
# A cache file is a small msgpack map (magic, version, layout, directory, crc,
# body); the body (see _cache_codec.pack_body) holds tier 0 of each file in
# columns, and for each file its tiers above 0 as msgpack bytes of
# ``[FileMeta, {source: SourceFileIndex}, {source: SourceKeys},
# {source: {key: KeyInfo}}]`` (encoded records). Opening a run decodes tier 0
# only; the packed tiers wait in the memo until something asks for one of
# them (_tiers.TierMemo.pending): a warm open then costs the same whether the
# cache knows a few records per file or thousands.

_TIER_TABLES = ('sources', 'keys', 'key_info')


def _read_cache_contents(path) -> CacheContents | None:
    """The contents of a cache file, or None if missing or unusable."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        if not isinstance(e, FileNotFoundError):
            log.debug("Cannot read index cache %s: %s", path, e)
        return None
    return _parse_cache(data, path)


def _read_cache_file(path) -> dict | None:
    """The entries of a cache file, ``{file name: entry}``, or None if unusable.

    The source lists of each entry's 'index' are frozensets here.
    """
    contents = _read_cache_contents(path)
    return None if contents is None else contents.entries()


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector.

    Never leaves it disabled: it is enabled again on exit if it was on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _gc_paused_call(fn):
    """``fn`` with the cyclic garbage collector paused while it runs (as :func:`_gc_paused`).

    A plain wrapper: opening a run calls one, and a generator-based context
    manager costs a few frames more.
    """
    @functools.wraps(fn)
    def paused(*args, **kwargs):
        enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()
    return paused


def _parse_cache(data: bytes, path='<bytes>') -> CacheContents | None:
    """The contents of a cache file's bytes, or None if unusable.

    The file is a small header map whose ``body`` holds the packed entries and
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
        # Unpacking creates many small containers; the cyclic GC would run
        # over them again and again (and find nothing). Opening (_load) has
        # paused it already.
        if gc.isenabled():
            with _gc_paused():
                contents = CacheContents(body)
        else:
            contents = CacheContents(body)
        contents.conflict_free = head.get('conflict_free') is True
        summary = head.get('summary')
        if contents.conflict_free and type(summary) is bytes \
                and zlib.crc32(summary) == head.get('summary_crc'):
            contents.summary = summary   # decoded if every entry turns out current
        return contents
    except Exception as e:   # msgpack raises several unrelated classes on bad input
        log.debug("Ignoring corrupt index cache %s: %s", path, e)
        return None


def _pack_cache(run_dir: str, files: dict, conflict_free=False) -> bytes:
    """The bytes of a cache file for ``files`` ({file name: entry}).

    ``conflict_free``: the tier-0 records of all these files were checked
    together and hold no source conflict (suspect trains included); their
    RunSummary, or True if it is not known. The verdict and the summary sit
    in the header, outside the CRC'd body (the summary with a CRC of its
    own), but are only ever used for an open that finds every entry
    current: then the records are the ones checked. An older reader ignores
    them.
    """
    body = pack_body(files)
    head = {'magic': _MAGIC, 'version': CACHE_VERSION, 'layout': _LAYOUT,
            'dir': os.fsencode(osp.realpath(run_dir)), 'crc': zlib.crc32(body),
            'body': body}
    if conflict_free:
        head['conflict_free'] = True
        if conflict_free is not True:
            # The summary's train IDs; its source sets are those of the body.
            head['summary'] = summary = conflict_free.train_ids.astype('<u8').tobytes()
            head['summary_crc'] = zlib.crc32(summary)
    return msgpack.packb(head, use_bin_type=True)


def _digests(fis) -> frozenset:
    return frozenset(map(_DIGEST, fis))


_DIGEST = operator.attrgetter('digest')


def known_run(file_indexes) -> tuple:
    """``(known conflict-free, RunSummary or None)`` of exactly these records.

    Known from the cache's verdict or a check earlier in this process, for
    exactly this set of records (by digest): a verdict on other files says
    nothing about these.
    """
    if not _CONFLICT_FREE:
        return False, None
    key = _digests(file_indexes)
    known = _CONFLICT_FREE.get(key, False)
    return (False, None) if known is False else (True, known)


def note_conflict_free(file_indexes, summary=None) -> None:
    """Remember that these records hold no conflict with suspect trains included.

    ``summary``: their :class:`~xfeldata.core.runindex.RunSummary`, if known.
    """
    key = _digests(file_indexes)
    with _known_lock:
        if summary is None:
            summary = _CONFLICT_FREE.get(key)
        else:
            _CONFLICT_FREE.pop(key, None)
        if len(_CONFLICT_FREE) >= _CONFLICT_FREE_MAX:
            _CONFLICT_FREE.pop(next(iter(_CONFLICT_FREE)))
        _CONFLICT_FREE[key] = summary


_UINT64_LE = np.dtype('<u8')


def _unpack_summary(contents: CacheContents):
    """The RunSummary of every entry of ``contents`` (ValueError if malformed).

    The train IDs come from the header (raw little-endian uint64, guarded by
    a CRC of their own), the source names from the body's source lists,
    whose strings are decoded already.
    """
    from .core.runindex import RunSummary
    tids = np.frombuffer(contents.summary, dtype=_UINT64_LE)
    if tids.dtype != np.uint64:   # a big-endian machine
        tids = tids.astype(np.uint64)
    ctrl, inst = contents.source_unions()
    return RunSummary(tids, ctrl, inst)


def _check_conflict_free(file_indexes):
    """The conflict check of a run's records, as a verdict (never raises).

    False if there is a conflict (or the check fails), else the records'
    RunSummary.
    """
    from .core.runindex import RunIndex
    try:
        ri = RunIndex(tuple(file_indexes), True)
        ri.check_conflicts()
        return ri.summary()
    except Exception as e:   # a conflict (a ValueError), or anything else: no verdict
        log.debug("No conflict verdict for the index cache: %s", e)
        return False


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
    """One file's expanded entry from everything the memo knows about it (``recs``).

    Expanded: the tiers as separate tables, not packed (see :func:`_pack_tiers`).
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


def _pack_tiers(expanded: dict) -> dict:
    """An expanded entry in the form stored: the tiers above 0 packed into bytes."""
    tiers = [expanded.get('meta')] + [expanded.get(t) or {} for t in _TIER_TABLES]
    packed = None
    if tiers[0] is not None or any(tiers[1:]):
        packed = msgpack.packb(tiers, use_bin_type=True, unicode_errors=_UNICODE_ERRORS)
    return {'size': expanded['size'], 'mtime': expanded['mtime'],
            'index': expanded['index'], 'tiers': packed}


def _unpack_tiers(packed) -> tuple:
    """``(meta, sources, keys, key_info)`` encoded records from an entry's 'tiers'."""
    if packed is None:
        return None, {}, {}, {}
    meta, sources, keys, key_info = msgpack.unpackb(
        packed, raw=False, strict_map_key=True, unicode_errors=_UNICODE_ERRORS)
    if not (isinstance(sources, dict) and isinstance(keys, dict)
            and isinstance(key_info, dict)):
        raise ValueError("malformed tiers")
    return meta, sources, keys, key_info


def _expand(entry: dict) -> dict:
    """A stored entry with its tiers unpacked into separate tables (for merging)."""
    meta, sources, keys, key_info = _unpack_tiers(entry.get('tiers'))
    return {'size': entry['size'], 'mtime': entry['mtime'], 'index': entry['index'],
            'meta': meta, 'sources': sources, 'keys': keys, 'key_info': key_info}


def _merge_entries(old: dict, new: dict) -> dict:
    """Union of two current expanded entries of the same file: the newer records win."""
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


def install_tiers(fkey: tuple, packed) -> bool:
    """Decode a file's packed tiers (an entry's 'tiers') into the memo.

    All or nothing: a damaged entry installs none of its records (they are
    read from the file when needed). Records already in the memo are kept, so
    a record of a tier stays one object for the whole process.
    """
    try:
        with _gc_paused():
            meta, sources, keys, key_info = _unpack_tiers(packed)
            meta = None if meta is None else decode_file_meta(meta)
            sources = {s: decode_source_index(v) for s, v in sources.items()}
            keys = {s: decode_source_keys(v) for s, v in keys.items()}
            key_info = {(s, k): decode_key_info(v)
                        for s, d in key_info.items() for k, v in d.items()}
    except Exception as e:   # a damaged entry is a miss, whatever its damage
        log.debug("Ignoring damaged index cache tiers for %s: %s", fkey[0], e)
        return False
    memo = _tiers.MEMO
    with memo._lock:
        if meta is not None:
            memo.meta.setdefault(fkey, meta)
        for s, v in sources.items():
            memo.sources.setdefault((fkey, s), v)
        for s, v in keys.items():
            memo.keys.setdefault((fkey, s), v)
        for (s, k), v in key_info.items():
            memo.key_info.setdefault((fkey, s, k), v)
    return True


def _same_bytes(a, b) -> bool:
    """Whether two FileIndex records (or None) describe the same bytes of a file."""
    return a is not None and (a is b or a.key == b.key)


def _requests(paths_stats, inside):
    """``(path, name, stat)`` of the files in ``paths_stats`` that are in the run folder."""
    sep = os.sep
    for fpath, st in paths_stats.items():
        if type(fpath) is not str or not fpath.startswith(sep):   # cheaper than isabs
            fpath = osp.abspath(os.fspath(fpath))
        fdir, _, name = fpath.rpartition(sep)
        if inside(fdir or sep):
            yield fpath, name, st


def _remember(run_dir: str, fis: Iterable[FileIndex]):
    with _known_lock:
        _KNOWN_RUNS.setdefault(run_dir, {}).update((fi.path, fi) for fi in fis)


def _in_dir_filter(run_dir: str):
    """A predicate: is a directory ``run_dir`` (also via symlinks)?"""
    memo = {run_dir: True}
    resolved = []

    def inside(d):
        known = memo.get(d)
        if known is None:
            if not resolved:   # realpath stats every component: only when needed
                resolved.append(osp.realpath(run_dir))
            known = memo[d] = osp.realpath(d) == resolved[0]
        return known
    return inside


# -- public API ------------------------------------------------------------------

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
        ``{path: FileIndex}`` for the files found (tier 0). Their other
        cached tiers go to :data:`xfeldata._tiers.MEMO` still packed, and are
        decoded when first asked for. Files not found must be scanned.

    Never raises because of the cache: an unusable cache gives ``{}``.
    """
    if not paths_stats:
        return {}
    run_dir = osp.abspath(os.fspath(run_dir))
    return _load(run_dir, _requests(paths_stats, _in_dir_filter(run_dir)))


@_gc_paused_call   # decoding makes many small objects; see _parse_cache
def _load(run_dir: str, requests, _real=None) -> dict:
    """:func:`load` for ``requests``: ``(path, name, stat)`` of files in ``run_dir``.

    Opening a run calls this directly: it has the names and paths (and the
    resolved directory, ``_real``) already.
    """
    path = _cache_file(run_dir, _real)
    if path is None:
        return {}
    contents = _read_cache_contents(path)
    if contents is None:
        return {}
    found, pending = contents.file_indexes(requests, log.debug)
    if not found:
        return found
    verdict = contents.conflict_free and len(found) == len(contents.positions)
    memo = _tiers.MEMO
    with memo._lock:
        index = memo.index
        for fpath in found.keys() & index.keys():
            known = index[fpath]
            if known.key == found[fpath].key:
                found[fpath] = known   # a record stays one object for the process
        index.update(found)
        waiting = memo.pending
        for fkey in pending.keys() & waiting.keys():   # those already waiting stay
            del pending[fkey]
        waiting.update(pending)
    with _known_lock:
        _KNOWN_RUNS.setdefault(run_dir, {}).update(found)
        _ON_DISK.setdefault(path, {}).update(found)
    if verdict:   # every entry found current: they are the records checked
        summary = None
        if contents.summary is not None:
            try:
                summary = _unpack_summary(contents)
            except Exception as e:
                log.debug("Ignoring the run summary of index cache %s: %s", path, e)
        note_conflict_free(found.values(), summary)
    log.debug("Index cache %s: %d files found", path, len(found))
    return found


@_gc_paused_call
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
    path = _cache_file(run_dir)
    run_dir = osp.abspath(os.fspath(run_dir))
    inside = _in_dir_filter(run_dir)
    fis = [getattr(f, 'index', f) for f in file_indexes]
    fis = [fi for fi in fis if inside(osp.dirname(fi.path))]
    _remember(run_dir, fis)
    if path is None or not fis:
        return False

    memo = _tiers.MEMO
    with memo._lock, _known_lock:
        on_disk = _ON_DISK.get(path, {})
        # Files whose records the cache file already holds, with nothing new:
        # their stored entries are kept as they are, not decoded and re-encoded.
        clean = {osp.basename(fi.path): fi for fi in fis
                 if _same_bytes(on_disk.get(fi.path), fi) and fi.key not in memo.dirty}
        if len(clean) == len(fis):
            return False   # nothing new to write
        # Clear dirtiness before collecting: a record added meanwhile stays dirty.
        for fi in fis:
            memo.dirty.discard(fi.key)
    try:
        todo = [fi for fi in fis if osp.basename(fi.path) not in clean]
        new = _encode_entries(todo)
        os.makedirs(osp.dirname(path), exist_ok=True)
        with _locked(path):
            files = {}
            old = _read_cache_contents(path)
            kept = []   # (path, name, stat) of entries kept for the run's other files
            for name, entry in (old.entries() if old is not None else {}).items():
                mine = new.get(name)
                if mine is not None:
                    if (entry['size'], entry['mtime']) == (mine['size'], mine['mtime']):
                        try:
                            new[name] = _merge_entries(_expand(entry), mine)
                        except Exception:   # a damaged old entry: only the new records
                            pass
                    continue
                fi = clean.get(name)
                if fi is not None:
                    if (entry['size'], entry['mtime']) == (fi.size, fi.mtime):
                        files[name] = entry
                    continue
                try:
                    st = os.stat(osp.join(run_dir, name))
                except OSError:
                    continue   # the file is gone
                if _entry_is_current(entry, st):
                    files[name] = entry
                    kept.append((osp.join(run_dir, name), name, st))
            # A clean file whose entry vanished from disk meanwhile: from the memo.
            new.update(_encode_entries([fi for name, fi in clean.items() if name not in files]))
            files.update((name, _pack_tiers(e)) for name, e in new.items())
            atomic_write(path, _pack_cache(run_dir, files, _verdict(fis, old, kept)))
        with _known_lock:
            _ON_DISK.setdefault(path, {}).update((fi.path, fi) for fi in fis)
    except Exception as e:   # a cache must never break the caller
        log.debug("Could not save index cache %s: %s", path, e)
        with memo._lock:
            memo.dirty.update(fi.key for fi in fis if osp.basename(fi.path) not in clean)
        return False
    log.debug("Saved index cache %s (%d files)", path, len(files))
    return True


def _verdict(fis, old, kept):
    """Whether the records of a cache file being written hold no source conflict together.

    ``fis``: the records saved now; ``kept``: requests for the entries kept
    from ``old`` (the file's previous contents) for the run's other files.
    Returns False, or the records' RunSummary if they hold no conflict.
    """
    others = {}
    if kept:
        others, _ = old.file_indexes(kept)
        if len(others) != len(kept):
            return False   # a kept entry that does not decode: no verdict
    records = list(fis) + list(others.values())
    known, summary = known_run(records)
    if known and summary is not None:
        return summary
    summary = _check_conflict_free(records)
    if summary:
        note_conflict_free(records, summary)
    return summary


def _encode_entries(fis) -> dict:
    """{file name: expanded entry} of the given files, from the memo."""
    for fi in fis:   # records still packed must not be lost
        _tiers.MEMO.unpack_pending(fi.key)
    by_file = _records_by_file({fi.key for fi in fis})
    return {osp.basename(fi.path): _encode_entry(fi, by_file[fi.key]) for fi in fis}


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
        _CONFLICT_FREE.clear()


atexit.register(save_dirty)
