"""Virtual overview files: one HDF5 file presenting a whole run.

This module reads and checks overview files (FORMAT.md section 4); writing
them comes with the writers.
"""
from __future__ import annotations

import os
import os.path as osp
import re

import numpy as np

__all__ = ['VOVIEW_VERSION', 'voview_paths_for_run', 'check_sources', 'find_file_read',
           'find_file_valid']

VOVIEW_VERSION = 1

_MAXWELL_RE = re.compile(r'.+/(raw|proc)/(\w+)/(\d{6})/(p\d{6})/(r\d{4})/?$')
_ONLINE_RE = re.compile(r'^.+/(\w+)/(\d{6})/(p\d{6})/(raw|proc)/(r\d{4})/?$')


def voview_paths_for_run(directory) -> list:
    """Candidate overview file paths for a run directory, in the order tried."""
    from .read_machinery import data_root_dir
    paths = [osp.join(directory, 'overview.h5')]
    real = osp.realpath(directory)
    m = _MAXWELL_RE.match(real)
    if m:
        cls, instr, cycle, prop, run = m.groups()
    else:
        m = _ONLINE_RE.match(real)
        if not m:
            return paths
        instr, cycle, prop, cls, run = m.groups()
    usr = osp.join(data_root_dir(), instr, cycle, prop, 'usr')
    if osp.isdir(usr):
        paths.append(osp.join(usr, '.extra_data', f'{cls.upper()}-{run.upper()}-OVERVIEW.h5'))
    return paths


def check_sources(overview_file, run_dir) -> bool:
    """True if the overview records exactly the run's ``*.h5`` files, with their sizes."""
    g = overview_file.get('.source_files')
    if g is None or 'names' not in g or 'sizes' not in g:
        return False
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in g['names'][()]]
    sizes = np.asarray(g['sizes'][()])
    if len(names) != len(sizes):
        return False
    actual = {n for n in os.listdir(run_dir)
              if n.endswith('.h5') and n.lower() != 'overview.h5'}
    if set(names) != actual:
        return False
    for n, size in zip(names, sizes):
        try:
            if os.stat(osp.join(run_dir, n)).st_size != int(size):
                return False
        except OSError:
            return False
    return True


def find_file_read(run_dir):
    for p in voview_paths_for_run(run_dir):
        if osp.isfile(p):
            return p
    return None


def find_file_valid(run_dir):
    """The FileAccess of a valid overview file for ``run_dir``, or None."""
    import h5py
    from .file_access import FileAccess
    for p in voview_paths_for_run(run_dir):
        if not osp.isfile(p):
            continue
        try:
            with h5py.File(p, 'r') as f:
                version = int(f.attrs.get('virtual_overview_version', 0))
                if version > VOVIEW_VERSION or not check_sources(f, run_dir):
                    continue
            return FileAccess(p)
        except Exception:
            continue
    return None
