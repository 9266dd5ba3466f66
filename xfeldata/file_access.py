"""Effects: file handles, the open-files limiter, and EXtra-data's FileAccess.

A file handle is a *recipe* (an absolute path) looked up in a per-process
table of open ``h5py.File`` objects, least recently used first out
(the idea of xarray's CachingFileManager). Records never hold handles, so
they pickle small and travel to other processes; a process reopens a file
the first time it needs it.

:class:`FileAccess` keeps EXtra-data's interface: one instance per absolute
path (constructing it again returns the same object, also after unpickling),
and file-level attributes. It is the effects layer's handle object: unlike
the records, its tier-1 attributes (``format_version``, ``metadata()``, ...)
read the file once on first access and are then memoised.

Importing this module raises the soft limit on open files to the hard limit,
and the limiter keeps at most half of that open, as EXtra-data does.
"""
from __future__ import annotations

import os
import os.path as osp
import threading
import weakref
from collections import OrderedDict

import numpy as np

from .core import names as _names
from .exceptions import SourceNameError

__all__ = ['FileAccess', 'OpenFilesLimiter', 'open_files_limiter',
           'init_open_files_limiter', 'DatasetProxy']


class _FStat(tuple):
    """The fields of os.stat_result the caches use, with the exact float mtime."""
    def __new__(cls, size, mtime):
        return super().__new__(cls, (size, mtime))

    st_size = property(lambda self: self[0])
    st_mtime = property(lambda self: self[1])


class OpenFilesLimiter:
    """Keep at most ``maxfiles`` HDF5 files open; close the least recently used.

    Files are only "weakly" closed: the FileAccess object stays valid and
    reopens its file the next time it is used.
    """
    def __init__(self, maxfiles=128):
        self._maxfiles = max(1, int(maxfiles))
        self._lru = OrderedDict()   # filename -> FileAccess (strong ref while open)
        self._lock = threading.RLock()

    @property
    def maxfiles(self):
        return self._maxfiles

    @maxfiles.setter
    def maxfiles(self, value):
        self._maxfiles = max(1, int(value))
        self.close_old_files()

    def n_open_files(self):
        with self._lock:
            return len(self._lru)

    def touch(self, filename):
        """Mark a file as just used; close the oldest ones beyond the limit."""
        with self._lock:
            fa = FileAccess._registry.get(filename)
            if fa is None:
                return
            self._lru[filename] = fa
            self._lru.move_to_end(filename)
            self.close_old_files()

    def closed(self, filename):
        with self._lock:
            self._lru.pop(filename, None)

    def close_old_files(self):
        with self._lock:
            while len(self._lru) > self._maxfiles:
                _, fa = self._lru.popitem(last=False)
                fa._close_handle()


def _raise_nofile_limit():
    try:
        import resource
    except ImportError:  # not on this platform
        return 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 4096) if soft != resource.RLIM_INFINITY else 4096
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 4096


def init_open_files_limiter():
    """Raise the soft open-files limit and build a limiter for half of it."""
    limit = _raise_nofile_limit()
    return OpenFilesLimiter(max(8, limit // 2))


open_files_limiter = init_open_files_limiter()


class _OpenDatasets:
    """Open HDF5 datasets of open files, with their shapes; the most recently used kept.

    Reading one train of many keys opens each dataset again and again, and
    HDF5's open and dataspace queries cost more than such a small read. A
    dataset stays open while its file is (:meth:`FileAccess._close_handle`
    drops the file's), for at most ``max_open`` datasets in the process
    (some 13 kB of HDF5 memory each).
    """
    def __init__(self, max_open=512):
        self.max_open = max_open
        self._lock = threading.Lock()
        self._lru = OrderedDict()   # (filename, dataset name) -> (DatasetID, shape)
        self._by_file = {}          # filename -> {dataset name}

    def get(self, fa: 'FileAccess', name: str) -> tuple:
        """``(h5py.h5d.DatasetID, shape)`` of ``name`` in ``fa``'s file (KeyError if missing)."""
        import h5py
        key = (fa.filename, name)
        with self._lock:
            got = self._lru.get(key)
            if got is not None and got[0].valid:   # (closed if someone closed the h5py.File)
                self._lru.move_to_end(key)
                return got
        f = fa.file   # outside the lock: opening may close another file (drop_file)
        dsid = h5py.h5d.open(f.id, name.encode())
        got = (dsid, dsid.shape)
        with self._lock:
            self._lru[key] = got
            self._lru.move_to_end(key)
            self._by_file.setdefault(fa.filename, set()).add(name)
            while len(self._lru) > self.max_open:
                (fname, dname), _ = self._lru.popitem(last=False)
                names = self._by_file[fname]
                names.discard(dname)
                if not names:
                    del self._by_file[fname]
        return got

    def drop_file(self, filename: str) -> None:
        with self._lock:
            for name in self._by_file.pop(filename, ()):
                self._lru.pop((filename, name), None)


open_datasets = _OpenDatasets()


class FileAccess:
    """Access to one EuXFEL HDF5 file (one instance per absolute path).

    Parameters
    ----------
    filename : str or path-like
    _cache_info : FileIndex or dict, optional
        Tier-0 information from a cache, so the file need not be opened now.
    """
    _registry = weakref.WeakValueDictionary()
    _registry_lock = threading.RLock()

    def __new__(cls, filename, _cache_info=None):
        filename = osp.abspath(os.fspath(filename))
        with cls._registry_lock:
            inst = cls._registry.get(filename)
            # An instance describes one version of the file: a record of other
            # bytes (the file changed, and was rescanned or found in a cache)
            # or a changed file on disk means a new instance.
            if inst is not None and (
                    (_cache_info is None and not inst._is_current())
                    or (_cache_info is not None and not isinstance(_cache_info, dict)
                        and _cache_info.key != inst._index.key)):
                inst._close_handle()
                inst = None
            if inst is None:
                inst = super().__new__(cls)
                inst._init(filename, _cache_info)
                cls._registry[filename] = inst
            return inst

    def _init(self, filename, cache_info):
        from . import _tiers
        self.filename = filename
        self._file = None
        self._lock = threading.RLock()
        if cache_info is not None and not isinstance(cache_info, dict):
            self._index = cache_info
        elif cache_info is not None:
            self._index = _tiers.file_index_from_map_entry(filename, cache_info)
        else:
            self._index = _tiers.file_index(filename)

    def _is_current(self):
        try:
            st = os.stat(self.filename)
        except OSError:
            return True  # let the next use report the problem
        return st.st_size == self._index.size and st.st_mtime == self._index.mtime

    # Pickles carry the path and the tier-0 record, never the open file; an
    # unpickled FileAccess reuses the process's instance for that path.
    def __reduce__(self):
        return FileAccess, (self.filename, self._index)

    def __eq__(self, other):
        return isinstance(other, FileAccess) and other.filename == self.filename

    def __hash__(self):
        return hash(self.filename)

    def __repr__(self):
        return f"FileAccess({self.filename!r})"

    # -- handle management ---------------------------------------------------
    @property
    def file(self):
        """The open ``h5py.File`` (opened on demand, read-only)."""
        from ._scan import open_h5
        with self._lock:
            # Also reopened if someone closed the h5py.File itself.
            if self._file is None or not self._file.id.valid:
                open_datasets.drop_file(self.filename)
                self._file = open_h5(self.filename)
        open_files_limiter.touch(self.filename)
        return self._file

    @property
    def valid(self):
        return self._file is not None

    def dataset(self, name: str) -> tuple:
        """``(h5py.h5d.DatasetID, shape)`` of dataset ``name``, kept open with the file.

        KeyError (or h5py's error) if the file has no such dataset.
        """
        return open_datasets.get(self, name)

    def _close_handle(self):
        with self._lock:
            open_datasets.drop_file(self.filename)
            if self._file is not None:
                try:
                    self._file.close()
                except Exception:
                    pass
                self._file = None

    def close(self):
        """Close the HDF5 file (it reopens transparently if used again)."""
        self._close_handle()
        open_files_limiter.closed(self.filename)

    # -- tier 0 --------------------------------------------------------------
    @property
    def index(self):
        """The tier-0 :class:`~xfeldata.core.records.FileIndex` record."""
        return self._index

    @property
    def train_ids(self):
        return self._index.train_ids

    @property
    def validity_flag(self):
        return self._index.valid

    @property
    def valid_train_ids(self):
        return self._index.valid_train_ids

    @property
    def control_sources(self):
        return self._index.control_sources

    @property
    def instrument_sources(self):
        return self._index.instrument_sources

    @property
    def all_sources(self):
        return self._index.all_sources

    @property
    def legacy_sources(self):
        return self._index.legacy_sources

    @property
    def metadata_fstat(self):
        """Size and mtime recorded when the file's index was read (for caches)."""
        return _FStat(self._index.size, self._index.mtime)

    def has_train_ids(self, tids, inc_suspect=False):
        ids = self._index.train_ids if inc_suspect else self._index.valid_train_ids
        return bool(np.intersect1d(np.asarray(tids, dtype=np.uint64), ids).size)

    # -- tier 1: read once, memoised -----------------------------------------
    def _meta(self):
        from . import _tiers
        return _tiers.file_meta(self._index)

    @property
    def format_version(self):
        return self._meta().format_version

    def metadata(self) -> dict:
        return self._meta().metadata

    @property
    def reduction_sources(self):
        return self._meta().reduction_sources

    @property
    def errata_sources(self):
        return self._meta().errata_sources

    @property
    def is_voview(self):
        return self._meta().is_voview

    # -- path and file name facts (pure string parsing) ----------------------
    @property
    def _path_info(self):
        info = _names.parse_path_metadata(osp.dirname(osp.realpath(self.filename)))
        return info._asdict() if info is not None else {}

    @property
    def _name_info(self):
        parts = _names.parse_filename(self.filename)
        return parts._asdict() if parts is not None else {}

    @property
    def storage_class(self):
        return self._path_info.get('data_category')

    @property
    def instrument(self):
        return self._path_info.get('instrument')

    @property
    def cycle(self):
        return self._path_info.get('cycle')

    @property
    def proposal(self):
        return self._path_info.get('proposal')

    @property
    def run(self):
        r = self._name_info.get('run')
        return r if r is not None else self._path_info.get('run')

    @property
    def data_category(self):
        return self._name_info.get('category')

    @property
    def aggregator(self):
        return self._name_info.get('aggregator')

    @property
    def sequence(self):
        return self._name_info.get('sequence')

    # -- source lookups --------------------------------------------------------
    def _section(self, source):
        if source in self._index.control_sources:
            return 'CONTROL'
        if source in self._index.instrument_sources:
            return 'INSTRUMENT'
        meta = self._meta()
        if source in meta.reduction_sources:
            return 'REDUCTION'
        if source in meta.errata_sources:
            return 'ERRATA'
        raise SourceNameError(source, candidates=self._index.all_sources)

    def get_index(self, source, group):
        """(firsts, counts) arrays of one source's index group."""
        from . import _tiers
        si = _tiers.source_index(self._index, source, self._section(source))
        return si.group(group)

    def index_groups(self, source):
        from . import _tiers
        return set(_tiers.source_index(self._index, source, self._section(source)).groups)

    def get_keys(self, source):
        from . import _tiers
        return set(_tiers.source_keys(self._index, source, self._section(source)).keys)

    def get_one_key(self, source, index_group=None):
        keys = sorted(self.get_keys(source))
        if index_group is not None:
            keys = [k for k in keys if k.partition('.')[0] == index_group]
            if not keys:
                raise ValueError(f"{source} has no index group {index_group!r}")
        return keys[0] if keys else None

    def get_run_keys(self, source):
        from . import _tiers
        return set(_tiers.run_keys(self._index, source))

    def has_source_key(self, source, key):
        try:
            return key in self.get_keys(source)
        except SourceNameError:
            return False

    def dset_proxy(self, ds_path):
        return DatasetProxy(self, ds_path)


class DatasetProxy:
    """A picklable array-like over one dataset, reopening through FileAccess."""
    def __init__(self, file_acc, ds_path):
        self.file_acc = file_acc
        self.ds_path = ds_path
        ds = file_acc.file[ds_path]
        self.shape, self.dtype = ds.shape, ds.dtype

    @property
    def ndim(self):
        return len(self.shape)

    def __getitem__(self, item):
        return self.file_acc.file[self.ds_path][item]

    def __getstate__(self):
        return {'file_acc': self.file_acc, 'ds_path': self.ds_path,
                'shape': self.shape, 'dtype': self.dtype}

    def __setstate__(self, state):
        self.__dict__.update(state)
