"""Effects: which real files a virtual dataset maps to (memoised per process)."""
from __future__ import annotations

import functools
import os.path as osp

__all__ = ['virtual_source_files']


@functools.lru_cache(maxsize=4096)
def virtual_source_files(path: str, dataset: str) -> tuple:
    """Absolute paths of the files ``dataset`` in ``path`` maps to (file order)."""
    from ._tiers import h5file
    ds = h5file(path)[dataset]
    if not ds.is_virtual:
        return (path,)
    base = osp.dirname(path)
    out = []
    for m in ds.virtual_sources():
        name = m.file_name
        if name == '.':
            name = path
        out.append(osp.normpath(osp.join(base, name)))
    return tuple(dict.fromkeys(out))
