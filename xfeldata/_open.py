"""Effects of opening: list a run's files and get their tier-0 index records.

Sources of a record, fastest first: the in-process memo, xfeldata's own index
cache, EXtra-data's run files map, a scan of the file. Unusable files are
skipped with a warning naming the file and the problem.

Opening a cached run must cost little more than listing and stat-ing its
files (issue 3: within twice that), so the common path here avoids work that
only the uncommon cases need: the run files map is parsed only for files the
index cache lacks, and no FileAccess objects are made (``DataCollection.files``
makes them on demand).
"""
from __future__ import annotations

import fnmatch
import operator
import os
import os.path as osp
import warnings

from .exceptions import NoUsableFilesError

__all__ = ['file_indexes', 'list_run_files', 'run_file_indexes']


def file_indexes(paths, files_map=None, cached=None, *, parallelize=True, stats=None):
    """Tier-0 records for ``paths`` and the list of skipped ``(path, reason)``.

    ``cached`` maps absolute paths to records already known (from the index
    cache); ``stats`` maps absolute paths to their ``os.stat`` results, if the
    caller has them. Files that must be scanned are scanned in worker
    processes when there are many of them and ``parallelize`` is true
    (:mod:`xfeldata._scan_worker`: HDF5's global lock makes threads useless
    here), else in this process.
    """
    from . import _tiers
    cached = cached or {}
    stats = stats or {}
    paths = [osp.abspath(p) for p in paths]
    from_map = {}
    scanned = {}
    if parallelize:
        todo = []
        for p in paths:
            if p in cached or p in _tiers.MEMO.index:
                continue
            fi = files_map.file_index(p) if files_map is not None else None
            if fi is not None:
                from_map[p] = fi
            else:
                todo.append(p)
        scanned = _scan_in_processes(todo)
    fis, skipped = [], []
    for p in paths:
        fi = cached.get(p) or from_map.get(p)
        if fi is None and p in scanned:
            fi, reason, caught = scanned[p]
            for message, category in caught:
                warnings.warn(message, _warning_class(category), stacklevel=4)
            if fi is None:
                warnings.warn(f"Skipping file {p} ({reason})", stacklevel=4)
                skipped.append((p, reason))
                continue
            _tiers.MEMO.put('index', p, fi, fi.key)
        if fi is None and files_map is not None and not parallelize:
            fi = files_map.file_index(p)
        if fi is None:
            try:
                fi = _tiers.file_index(p, stats.get(p))
            except Exception as e:  # a bad file must not stop the others
                reason = f"{type(e).__name__}: {e}"
                warnings.warn(f"Skipping file {p} ({reason})", stacklevel=4)
                skipped.append((p, reason))
                continue
        fis.append(fi)
    return fis, skipped


def _warning_class(name: str):
    """A warning class by name (builtins, then xfeldata.exceptions; else UserWarning)."""
    import builtins

    from . import exceptions
    cls = getattr(builtins, name, None) or getattr(exceptions, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, Warning) else UserWarning


def _scan_in_processes(paths) -> dict:
    """``{path: (FileIndex or None, reason, warnings)}`` from worker processes, or {}."""
    from . import _scan_worker
    n = _scan_worker.n_scan_processes(len(paths))
    if n < 2:
        return {}
    try:
        answers = _scan_worker.scan_in_processes(paths, n)
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        # Workers could not run here (no executable, limits, ...): scan in-process.
        warnings.warn(f"Scanning files in worker processes failed ({e}); scanning serially",
                      RuntimeWarning, stacklevel=5)
        return {}
    return {p: (fi, reason, caught) for p, fi, reason, caught in answers}


def _h5_names(path) -> list:
    """Sorted names of the ``*.h5`` files in ``path``, without the overview file."""
    return _listing(path)[0]


def _may_have_usr_overview(real) -> bool:
    """Whether a resolved run path may have an overview file in its proposal's ``usr``.

    Both path patterns of FORMAT.md section 4 need a ``raw`` or ``proc``
    component: without one, no candidate outside the run folder applies.
    """
    return '/raw/' in real or '/proc/' in real


def _listing(path) -> tuple:
    """(:func:`_h5_names` of ``path``, whether it holds an ``overview.h5``): one listdir."""
    listed = os.listdir(path)
    names = sorted(filter(_is_h5_name, listed))
    if 11 in set(map(len, names)):   # len('overview.h5'), in any case
        names = [n for n in names if n.lower() != 'overview.h5']
    return names, 'overview.h5' in listed


_is_h5_name = operator.methodcaller('endswith', '.h5')


def list_run_files(path, include='*'):
    """Sorted paths of the ``*.h5`` files in ``path`` matching ``include``."""
    names = _h5_names(path)
    if include != '*':   # '*' matches every name: skip the per-name regex
        names = [n for n in names if fnmatch.fnmatch(n, include)]
    return [osp.join(path, n) for n in names]


def run_file_indexes(path, include='*', file_filter=None, *, parallelize=True,
                     use_voview=True) -> list:
    """Tier-0 records of a run folder's files (or of its valid overview file)."""
    from . import index_cache, locality, run_files_map
    path = osp.abspath(os.fspath(path))
    names, has_overview = _listing(path)
    n_all = len(names)
    if include != '*':
        names = [n for n in names if fnmatch.fnmatch(n, include)]
    if not names:
        raise FileNotFoundError(f"No HDF5 files found in {path} with glob pattern {include}")
    prefix = path if path.endswith(os.sep) else path + os.sep
    files = [prefix + n for n in names]   # osp.join, without its per-call checks
    files_from_listing = file_filter is None or file_filter is locality.lc_any
    if not files_from_listing:
        # Paths from a file filter may be relative or unnormalised: the
        # records and caches use absolute paths.
        files = [osp.abspath(p) for p in file_filter(files)]
    real = osp.realpath(path)   # once: the overview and cache lookups both need it
    if use_voview and include == '*' and len(files) == n_all and (
            has_overview or _may_have_usr_overview(real)):
        from . import voview   # imports the writer: only when there may be an overview
        vo = voview.find_file_valid(path, _real=real, _in_dir=has_overview)
        if vo is not None:
            return [vo.index]
    try:
        stats = dict(zip(files, map(os.stat, files)))
    except OSError:   # a file went away since the listing (or cannot be stat-ed)
        stats = {}
        for p in files:
            try:
                stats[p] = os.stat(p)
            except OSError:
                pass
    if files_from_listing:
        # (path, name, stat) of each file, for the cache
        requests = (list(zip(files, names, stats.values())) if len(stats) == len(files)
                    else [(p, n, stats[p]) for p, n in zip(files, names) if p in stats])
        cached = index_cache._load(path, requests, real)
    else:
        cached = index_cache.load(path, stats)
    if cached and len(cached) == len(files):
        return [cached[p] for p in files]   # the usual warm open: nothing else to do

    fmap = run_files_map.RunFilesMap(
        path, stats={osp.basename(p): st for p, st in stats.items()
                     if osp.dirname(p) == path})
    fis, skipped = file_indexes(files, fmap, cached, parallelize=parallelize, stats=stats)
    if not fis:
        raise NoUsableFilesError("All HDF5 files specified are unusable", skipped)
    if run_files_map.writing_enabled():
        try:
            fmap.save(fis)
        except Exception:
            pass
    if len(cached) < len(fis):  # something was scanned: remember it
        try:
            index_cache.save(path, fis)
        except Exception:
            pass
    return fis
