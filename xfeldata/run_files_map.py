"""Effects: EXtra-data's run files map, a JSON cache of what opening a run needs.

The map is read and written in exactly EXtra-data's format (FORMAT.md section 5)
so the two libraries share it: a map written by one saves the other from
opening every file of a run. It lives in one of two places:

1. ``<run dir>/karabo_data_map.json``;
2. ``<scratch root>/<INSTR>/<CYCLE>/<pNNNNNN>/scratch/.karabo_data_maps/<class>_<rNNNN>.json``,
   only when the run path looks like a proposal folder and that ``scratch``
   folder exists (run folders of raw data are read-only).

Trust rules: a map is a hint, never the truth. An entry is used only if the
data file it describes is in this directory and its size and mtime are exactly
those recorded, and the entry has every expected key; anything unreadable,
unparseable or malformed is ignored. Nothing here raises on a bad map.

The scratch root is ``/gpfs/exfel/exp/`` as in EXtra-data; xfeldata lets
tests move it with the environment variable ``XFELDATA_SCRATCH_ROOT``. Writing
can be switched off with ``XFELDATA_NO_RUN_MAP_WRITE=1`` (or by setting
:data:`WRITE_ENABLED` to False), so test suites never write into shared data
folders.
"""
from __future__ import annotations

import json
import logging
import os
import os.path as osp
import re
import secrets
from typing import Iterable, Mapping

import numpy as np

__all__ = ['RunFilesMap', 'atomic_dump', 'atomic_write', 'SCRATCH_ROOT_DIR',
           'WRITE_ENABLED', 'writing_enabled']

log = logging.getLogger(__name__)

#: Where proposal scratch folders live on the Maxwell cluster (EXtra-data hard-codes it).
SCRATCH_ROOT_DIR = "/gpfs/exfel/exp/"

#: Module switch for writing maps; the environment variable
#: ``XFELDATA_NO_RUN_MAP_WRITE=1`` also disables writing.
WRITE_ENABLED = True

MAP_FILE_NAME = 'karabo_data_map.json'

# Resolved run paths from which the scratch location is derived (FORMAT.md 5).
_MAXWELL_RE = re.compile(r'.+/(raw|proc|red|open)/(\w+)/(\w+)/(p\d+)/(r\d+)/?$')
_ONLINE_RE = re.compile(r'^.+/(\w+)/(\w+)/(p\d+)/(raw|proc)/(r\d+)/?$')


def scratch_root() -> str:
    """The scratch root: ``$XFELDATA_SCRATCH_ROOT`` if set, else :data:`SCRATCH_ROOT_DIR`."""
    return os.environ.get('XFELDATA_SCRATCH_ROOT') or SCRATCH_ROOT_DIR


def writing_enabled() -> bool:
    """Whether maps may be written (module switch and environment both allow it)."""
    env = os.environ.get('XFELDATA_NO_RUN_MAP_WRITE', '').strip().lower()
    return WRITE_ENABLED and env in ('', '0', 'false', 'no', 'off')


def atomic_write(path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half.

    The bytes go to a new temporary file in the same directory, which then
    replaces ``path`` with :func:`os.replace` (atomic on POSIX within one
    filesystem). The file is created with ``mode`` filtered by the umask:
    unlike EXtra-data (whose temporary file, hence the map, is 0600), a map or
    cache written by one user stays readable by the others sharing the folder.

    Raises OSError (e.g. PermissionError) if the directory is not writable; no
    temporary file is left behind.
    """
    path = os.fspath(path)
    dirname, basename = osp.split(osp.abspath(path))
    tmp = osp.join(dirname, f'.{basename}.{os.getpid()}.{secrets.token_hex(4)}.tmp')
    # os.open applies the umask to ``mode``, which tempfile.mkstemp would not.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_dump(obj, path, **kwargs) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (``kwargs`` go to :func:`json.dumps`).

    >>> import tempfile, json, os
    >>> d = tempfile.mkdtemp()
    >>> atomic_dump([{'a': 1}], os.path.join(d, 'x.json'), indent=2)
    >>> json.load(open(os.path.join(d, 'x.json')))
    [{'a': 1}]
    """
    atomic_write(path, json.dumps(obj, **kwargs).encode('utf-8'))


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_str_list(x) -> bool:
    return isinstance(x, list) and all(isinstance(s, str) for s in x)


def _is_uint_list(x, bound=2**64) -> bool:
    """Whether ``x`` is a list of ints in ``[0, bound)`` (vectorised: maps list
    20,000 files x hundreds of train IDs)."""
    if not isinstance(x, list):
        return False
    if not x:
        return True
    try:
        arr = np.array(x)
    except (ValueError, TypeError, OverflowError):
        return False
    if arr.dtype.kind in 'Of':   # huge, mixed or float values: the slow, exact way
        return all(_is_int(v) and 0 <= v < bound for v in x)
    # bool lists become dtype bool, floats and strings other kinds: rejected.
    return arr.dtype.kind in 'iu' and arr.ndim == 1 and int(arr.min()) >= 0 \
        and int(arr.max()) < bound


def _entry_is_well_formed(info) -> bool:
    """Whether a parsed map entry has every expected key, with the right types.

    An entry missing a key is a miss, never a partial hit (EXtra-data #547).
    """
    if not isinstance(info, dict) or not RunFilesMap.expected_cache_keys <= info.keys():
        return False
    if not isinstance(info.get('filename'), str) or '/' in info['filename']:
        return False
    mtime, size = info.get('mtime'), info.get('size')
    if not (isinstance(mtime, (int, float)) and not isinstance(mtime, bool)) or not _is_int(size):
        return False
    tids = info['train_ids']
    if not _is_uint_list(tids):
        return False
    if not (_is_str_list(info['control_sources']) and _is_str_list(info['instrument_sources'])):
        return False
    legacy = info['legacy_sources']
    if not (isinstance(legacy, dict) and all(isinstance(v, str) for v in legacy.values())):
        return False
    return _is_uint_list(info['suspect_train_indices'], bound=len(tids))


class RunFilesMap:
    """The run files map of one run directory (EXtra-data's ``karabo_data_map.json``).

    Constructing it loads the newest readable map (see :meth:`load`).

    Parameters
    ----------
    directory : str or path-like
        The run directory.
    stats : mapping, optional
        ``{file name: os.stat_result}`` of the directory's files, if the caller
        already has them (saves a ``stat`` per map entry on a cluster filesystem).

    Attributes
    ----------
    directory : str
        Absolute path of the run directory.
    dir_stat : os.stat_result
        Stat of the directory, to recognise it under another path (symlinks).
    files_data : dict
        File name -> map entry (as in the JSON), for the entries that are valid now.
    candidate_paths : list of str
        Where a map for this run may be, in the order tried for writing.
    cache_file : str or None
        The map that was loaded, if any.

    Examples
    --------
    >>> import tempfile
    >>> m = RunFilesMap(tempfile.mkdtemp())
    >>> m.files_data, m.cache_file
    ({}, None)
    """
    cache_file = None

    #: Keys every entry must have to be used.
    expected_cache_keys = frozenset({'train_ids', 'control_sources', 'instrument_sources',
                                     'suspect_train_indices', 'legacy_sources'})

    def __init__(self, directory, *, stats: Mapping[str, os.stat_result] | None = None):
        self.directory = osp.abspath(os.fspath(directory))
        self.dir_stat = os.stat(self.directory)
        self.files_data = {}
        self.candidate_paths = self.map_paths_for_run(self.directory)
        self._my_dirs = {}   # directory path -> bool, memo of is_my_directory
        self._stats = dict(stats) if stats is not None else None
        self.load()

    def __repr__(self):
        return f"<RunFilesMap {self.directory!r}: {len(self.files_data)} entries>"

    # -- locations -----------------------------------------------------------
    def map_paths_for_run(self, directory) -> list:
        """Candidate map paths for a run directory: in the folder, then in scratch.

        The scratch candidate exists only for proposal paths (Maxwell
        ``.../raw/SPB/201901/p002000/r0450`` or online
        ``.../SPB/201901/p002000/raw/r0450``) whose scratch folder exists.

        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> RunFilesMap(d).map_paths_for_run(d) == [os.path.join(d, 'karabo_data_map.json')]
        True
        """
        directory = os.fspath(directory)
        paths = [osp.join(directory, MAP_FILE_NAME)]
        resolved = osp.realpath(directory)
        m = _MAXWELL_RE.match(resolved)
        if m:
            klass, instr, cycle, prop, run = m.groups()
        else:
            m = _ONLINE_RE.match(resolved)
            if not m:
                return paths
            instr, cycle, prop, klass, run = m.groups()
        scratch = osp.join(scratch_root(), instr, cycle, prop, 'scratch')
        if osp.isdir(scratch):
            paths.append(osp.join(scratch, '.karabo_data_maps', f'{klass}_{run}.json'))
        return paths

    def is_my_directory(self, dir_path) -> bool:
        """Whether ``dir_path`` is this run's directory (same device and inode)."""
        dir_path = os.fspath(dir_path)
        known = self._my_dirs.get(dir_path)
        if known is None:
            try:
                known = osp.samestat(os.stat(dir_path), self.dir_stat)
            except OSError:
                known = False
            self._my_dirs[dir_path] = known
        return known

    # -- reading -------------------------------------------------------------
    def _file_stat(self, filename):
        if self._stats is not None and filename in self._stats:
            return self._stats[filename]
        try:
            return os.stat(osp.join(self.directory, filename))
        except OSError:
            return None

    def load(self) -> None:
        """Load the newest readable candidate map; keep the entries valid now.

        Candidates are tried newest mtime first; one that is missing,
        unreadable, not JSON, or not a list of objects is skipped. Of the map
        loaded, an entry is kept if its file exists in this directory with
        exactly the recorded size and mtime and the entry is complete.
        """
        dated = []
        for path in self.candidate_paths:
            try:
                dated.append((os.stat(path).st_mtime, path))
            except OSError:
                continue
        dated.sort(key=lambda t: t[0], reverse=True)  # stable: ties keep candidate order

        for _, path in dated:
            try:
                with open(path, 'rb') as f:
                    loaded = json.load(f)
            except (OSError, ValueError) as e:   # JSONDecodeError, UnicodeDecodeError
                log.debug("Ignoring run files map %s: %s", path, e)
                continue
            if not isinstance(loaded, list):
                log.debug("Ignoring run files map %s: not a JSON list", path)
                continue
            self.cache_file = path
            break
        else:
            return

        for info in loaded:
            if not _entry_is_well_formed(info):
                continue
            st = self._file_stat(info['filename'])
            if st is None or st.st_mtime != info['mtime'] or st.st_size != info['size']:
                continue   # changed or gone: never trust it
            self.files_data[info['filename']] = info
        log.debug("Loaded %d valid entries from run files map %s",
                  len(self.files_data), self.cache_file)

    def get(self, path) -> dict | None:
        """The cached tier-0 facts of a data file, or None if there is no valid entry.

        Returns
        -------
        dict or None
            ``train_ids`` (uint64 array), ``control_sources`` and
            ``instrument_sources`` (frozensets), ``legacy_sources`` (dict),
            ``flag`` (bool array, False at suspect trains),
            ``suspect_train_indices`` (int array), ``mtime``, ``size``.
        """
        dirname, filename = osp.split(osp.abspath(os.fspath(path)))
        if not self.is_my_directory(dirname):
            return None
        info = self.files_data.get(filename)
        if info is None:
            return None
        tids = np.asarray(info['train_ids'], dtype=np.uint64)
        suspect = np.asarray(info['suspect_train_indices'], dtype=np.int64)
        flag = np.ones(len(tids), dtype=np.bool_)
        flag[suspect] = False
        return {
            'train_ids': tids,
            'control_sources': frozenset(info['control_sources']),
            'instrument_sources': frozenset(info['instrument_sources']),
            'legacy_sources': dict(info['legacy_sources']),
            'flag': flag,
            'suspect_train_indices': suspect,
            'mtime': info['mtime'],
            'size': info['size'],
        }

    def file_index(self, path):
        """The tier-0 :class:`~xfeldata.core.records.FileIndex` of a file from the map.

        Returns None when the map has no valid entry for it. The record is
        also put into the process's tier memo (:data:`xfeldata._tiers.MEMO`).
        """
        entry = self.get(path)
        if entry is None:
            return None
        from . import _tiers
        return _tiers.file_index_from_map_entry(path, entry)

    # -- writing -------------------------------------------------------------
    @staticmethod
    def _entry_for(fi) -> dict:
        """A map entry (EXtra-data's JSON schema) from a FileIndex record."""
        return {
            'filename': osp.basename(fi.path),
            'mtime': float(fi.mtime),
            'size': int(fi.size),
            'train_ids': [int(t) for t in fi.train_ids],
            'control_sources': sorted(fi.control_sources),
            'instrument_sources': sorted(fi.instrument_sources),
            'legacy_sources': dict(sorted(fi.legacy_sources.items())),
            'suspect_train_indices': [int(i) for i in fi.suspect_train_indices],
        }

    def save(self, files: Iterable) -> None:
        """Write the map if some of ``files`` had no valid entry.

        Parameters
        ----------
        files : iterable of FileAccess or FileIndex
            The files opened from this run. Files of other directories are
            ignored. Their size and mtime are those recorded when the file's
            index was read, so an entry never claims more than was seen.

        Writes all valid entries (old and new) to the first candidate path
        that can be written; read-only locations are skipped silently.
        Nothing is done when writing is switched off (:func:`writing_enabled`).
        """
        if not writing_enabled():
            return
        changed = False
        for f in files:
            fi = getattr(f, 'index', f)   # FileAccess -> its FileIndex record
            dirname, filename = osp.split(fi.path)
            if not self.is_my_directory(dirname):
                continue
            old = self.files_data.get(filename)
            if old is not None and old['mtime'] == fi.mtime and old['size'] == fi.size:
                continue
            self.files_data[filename] = self._entry_for(fi)
            changed = True

        if not changed:
            return

        data = [self.files_data[k] for k in sorted(self.files_data)]
        for path in self.candidate_paths:
            try:
                os.makedirs(osp.dirname(path), exist_ok=True)
                atomic_dump(data, path, indent=2)
            except OSError as e:   # includes PermissionError: read-only runs are normal
                log.debug("Could not write run files map %s: %s", path, e)
                continue
            log.debug("Saved run files map %s (%d entries)", path, len(data))
            self.cache_file = path
            return
