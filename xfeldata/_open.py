"""Effects of opening: list a run's files and get their tier-0 index records.

Sources of a record, fastest first: the in-process memo, xfeldata's own index
cache, EXtra-data's run files map, a scan of the file. Unusable files are
skipped with a warning naming the file and the problem.
"""
from __future__ import annotations

import fnmatch
import os
import os.path as osp
import warnings

from .exceptions import NoUsableFilesError
from .file_access import FileAccess

__all__ = ['file_indexes', 'list_run_files', 'run_file_indexes']


def file_indexes(paths, files_map=None, cached=None, *, parallelize=True):
    """Tier-0 records for ``paths`` and the list of skipped ``(path, reason)``."""
    fis, skipped = [], []
    cached = cached or {}
    for p in paths:
        p = osp.abspath(p)
        fi = cached.get(p)
        if fi is None and files_map is not None:
            fi = files_map.file_index(p)
        if fi is None:
            try:
                fi = FileAccess(p).index
            except Exception as e:  # a bad file must not stop the others
                reason = f"{type(e).__name__}: {e}"
                warnings.warn(f"Skipping file {p} ({reason})", stacklevel=4)
                skipped.append((p, reason))
                continue
        else:
            FileAccess(p, _cache_info=fi)
        fis.append(fi)
    return fis, skipped


def list_run_files(path, include='*'):
    """Sorted paths of the ``*.h5`` files in ``path`` matching ``include``."""
    names = sorted(n for n in os.listdir(path)
                   if n.endswith('.h5') and n.lower() != 'overview.h5')
    return [osp.join(path, n) for n in names if fnmatch.fnmatch(n, include)]


def run_file_indexes(path, include='*', file_filter=None, *, parallelize=True,
                     use_voview=True) -> list:
    """Tier-0 records of a run folder's files (or of its valid overview file)."""
    from . import index_cache, run_files_map, voview
    path = osp.abspath(os.fspath(path))
    all_files = list_run_files(path, '*')
    files = list_run_files(path, include)
    if not files:
        raise FileNotFoundError(f"No HDF5 files found in {path} with glob pattern {include}")
    if file_filter is not None:
        files = list(file_filter(files))
    if use_voview and include == '*' and len(files) == len(all_files):
        vo = voview.find_file_valid(path)
        if vo is not None:
            return [vo.index]
    stats = {}
    for p in files:
        try:
            stats[p] = os.stat(p)
        except OSError:
            pass
    cached = index_cache.load(path, stats)
    fmap = run_files_map.RunFilesMap(path)
    fis, skipped = file_indexes(files, fmap, cached, parallelize=parallelize)
    if not fis:
        raise NoUsableFilesError("All HDF5 files specified are unusable", skipped)
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
