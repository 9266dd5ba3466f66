"""dCache locality of files (where they are: disk, tape, unavailable).

On EuXFEL's dCache, a file's locality is read from the magic file
``<dir>/.(get)(<name>)(locality)``; on a normal filesystem that file does not
exist and the file counts as on disk. The ``lc_*`` functions are file filters
usable as ``open_run(..., file_filter=...)``.
"""
from __future__ import annotations

import os.path as osp
import sys

__all__ = ['UNAVAIL', 'ONTAPE', 'ONDISK', 'ANY', 'DC_LOC_RESP', 'get_locality',
           'lc_match', 'lc_any', 'lc_ondisk', 'lc_avail', 'silent']

UNAVAIL = 1
ONTAPE = 2
ONDISK = 4
ANY = 7

DC_LOC_RESP = {
    'UNAVAILABLE': UNAVAIL,
    'NEARLINE': ONTAPE,
    'ONLINE': ONDISK,
    'ONLINE_AND_NEARLINE': ONTAPE | ONDISK,
    'NOT_ON_DCACHE': ONDISK,
}


def get_locality(path):
    """``(path, locality string)`` from the dCache magic file (NOT_ON_DCACHE if absent)."""
    d, name = osp.split(path)
    try:
        with open(osp.join(d, f'.(get)({name})(locality)')) as f:
            return path, f.read().strip()
    except FileNotFoundError:
        return path, 'NOT_ON_DCACHE'


def silent(*args, **kwargs):
    pass


def lc_match(files, accept=ONDISK):
    """Keep the files whose locality code has a bit of ``accept``; report the others."""
    kept = []
    for path in files:
        _, loc = get_locality(path)
        if DC_LOC_RESP.get(loc, 0) & accept:
            kept.append(path)
        else:
            print(f"Skipping file {path} (locality: {loc})", file=sys.stderr)
    return kept


def lc_any(files):
    """Keep every file (the default filter)."""
    return list(files)


def lc_ondisk(files):
    """Keep files that can be read from disk now."""
    return lc_match(files, ONDISK)


def lc_avail(files):
    """Keep files on disk or on tape (not unavailable)."""
    return lc_match(files, ONDISK | ONTAPE)
