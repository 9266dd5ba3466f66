"""Effects: load the index tiers of a file once per process (memoised).

Every tier record is a pure function of the file's bytes, identified by
``(path, size, mtime)``: the memo is keyed by that, so a file that changes on
disk gets new records and a stale entry can never be served. The index cache
(:mod:`xfeldata.index_cache`) fills this memo from disk and saves it back.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from . import _scan
from .core.records import FileIndex

__all__ = ['MEMO', 'file_index', 'file_index_from_map_entry', 'file_meta',
           'source_index', 'source_keys', 'key_info', 'run_keys', 'h5file']


class TierMemo:
    """Per-process memo of tier records, keyed by a file's (path, size, mtime)."""
    def __init__(self):
        self._lock = threading.RLock()
        self.index = {}         # path -> FileIndex (latest known)
        self.meta = {}          # fkey -> FileMeta
        self.sources = {}       # (fkey, source) -> SourceFileIndex
        self.keys = {}          # (fkey, source) -> SourceKeys
        self.key_info = {}      # (fkey, source, key) -> KeyInfo
        self.dirty = set()      # fkeys with tiers not yet saved to the index cache
        # fkey -> packed tiers above 0 from the index cache, decoded on first
        # use: a warm open then costs the same however much the cache knows.
        self.pending = {}

    def clear(self):
        with self._lock:
            for d in (self.index, self.meta, self.sources, self.keys, self.key_info,
                      self.pending):
                d.clear()
            self.dirty.clear()

    def unpack_pending(self, fkey) -> bool:
        """Decode the cached tiers of one file into the memo; False if there were none."""
        with self._lock:
            packed = self.pending.pop(fkey, None)
        if packed is None:
            return False
        from .index_cache import install_tiers
        install_tiers(fkey, packed)
        return True

    def put(self, table, key, value, fkey):
        with self._lock:
            getattr(self, table)[key] = value
            self.dirty.add(fkey)
        return value

    def records_for(self, fi: FileIndex) -> dict:
        """All tier records known for one file (for the index cache)."""
        k = fi.key
        self.unpack_pending(k)
        with self._lock:
            return {
                'meta': self.meta.get(k),
                'sources': {s: v for (fk, s), v in self.sources.items() if fk == k},
                'keys': {s: v for (fk, s), v in self.keys.items() if fk == k},
                'key_info': {(s, key): v for (fk, s, key), v in self.key_info.items()
                             if fk == k},
            }


MEMO = TierMemo()


def h5file(fi_or_path):
    """The open h5py.File for a record or path, through the limiter."""
    return file_access(fi_or_path).file


def file_access(fi_or_path):
    """The FileAccess of a record or path (its file is opened when used)."""
    from .file_access import FileAccess
    if isinstance(fi_or_path, FileIndex):
        # The usual case, once per tier loaded: the FileAccess made for this
        # very record (skips FileAccess() normalising the path again).
        fa = FileAccess._registry.get(fi_or_path.path)
        if fa is None or fa.index is not fi_or_path:
            fa = FileAccess(fi_or_path.path, _cache_info=fi_or_path)
        return fa
    return FileAccess(fi_or_path)


def file_index(path, stat=None) -> FileIndex:
    """Tier 0 of a file: from the memo if its size and mtime still match, else scanned."""
    path = os.path.abspath(path)
    if stat is None:
        stat = os.stat(path)
    known = MEMO.index.get(path)
    if known is not None and known.size == stat.st_size and known.mtime == stat.st_mtime:
        return known
    fi = _scan.scan_file_index_at(path, stat)
    # Tier 1 (metadata, timestamps) is read later, when something asks for it:
    # reading it here would triple the cost of opening a run.
    MEMO.put('index', path, fi, fi.key)
    return fi


def file_index_from_map_entry(path, entry: dict) -> FileIndex:
    """Build tier 0 from an EXtra-data run files map entry (already validated)."""
    path = os.path.abspath(path)
    tids = np.asarray(entry['train_ids'], dtype=np.uint64)
    if 'flag' in entry:
        valid = np.asarray(entry['flag'], dtype=bool)
    else:
        valid = np.ones(len(tids), dtype=bool)
        valid[np.asarray(entry.get('suspect_train_indices', []), dtype=np.int64)] = False
    fi = FileIndex.build(path, entry['size'], entry['mtime'], tids, valid,
                         entry['control_sources'], entry['instrument_sources'],
                         entry.get('legacy_sources', {}))
    MEMO.put('index', path, fi, fi.key)
    return fi


def _check_current(fi: FileIndex):
    """Refuse to read tiers from a file that changed since its tier 0 was made."""
    from .exceptions import FileStructureError
    try:
        st = os.stat(fi.path)
    except OSError:
        return
    if st.st_size != fi.size or st.st_mtime != fi.mtime:
        raise FileStructureError(
            "file changed on disk since the run was opened; open it again", fi.path)


def _lookup(table: dict, key, fkey):
    """A memo entry, decoding the file's cached tiers first if they are pending."""
    r = table.get(key)
    if r is None and fkey in MEMO.pending and MEMO.unpack_pending(fkey):
        r = table.get(key)
    return r


def file_meta(fi: FileIndex):
    m = _lookup(MEMO.meta, fi.key, fi.key)
    if m is None:
        _check_current(fi)
        m = MEMO.put('meta', fi.key, _scan.scan_file_meta(h5file(fi)), fi.key)
    return m


def source_index(fi: FileIndex, source: str, section: str):
    k = (fi.key, source)
    r = _lookup(MEMO.sources, k, fi.key)
    if r is None:
        _check_current(fi)
        r = MEMO.put('sources', k, _scan.scan_source_index(h5file(fi), source, section),
                     fi.key)
    return r


def source_keys(fi: FileIndex, source: str, section: str):
    k = (fi.key, source)
    r = _lookup(MEMO.keys, k, fi.key)
    if r is None:
        _check_current(fi)
        r = MEMO.put('keys', k, _scan.scan_source_keys(h5file(fi), source, section), fi.key)
    return r


def key_info(fi: FileIndex, source: str, section: str, key: str):
    k = (fi.key, source, key)
    r = _lookup(MEMO.key_info, k, fi.key)
    if r is None:
        _check_current(fi)
        r = MEMO.put('key_info', k, _scan.scan_key_info(h5file(fi), source, section, key),
                     fi.key)
    return r


def run_keys(fi: FileIndex, source: str):
    """Keys of ``RUN/<source>`` (read directly: RUN is small and rarely asked)."""
    from .exceptions import SourceNameError
    f = h5file(fi)
    grp = f.get(f'RUN/{source}')
    if grp is None:
        raise SourceNameError(source, custom_message=f"{source} has no RUN values")
    return _scan.scan_source_keys(f, source, 'RUN').keys
