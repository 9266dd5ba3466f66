"""EXtra-data-compatible ``read_machinery`` module (API.md section 5).

The pure pieces live in :mod:`xfeldata.core.trains`, :mod:`xfeldata.core.names`
and :mod:`xfeldata.core.plan` and are re-exported here under their EXtra-data
names. This module adds the helpers that look at the environment or the
filesystem (the data roots, the proposal lookup), the :class:`DataChunk`
handle and :func:`trains_files_index`.

Semantics decided where EXtra-data's documentation is terse
-------------------------------------------------------------
* :class:`DataChunk` is a frozen value: ``train_ids`` and ``counts`` are
  read-only ``uint64`` arrays, ``file`` is always a
  :class:`~xfeldata.file_access.FileAccess` (a ``FileIndex`` record or a path
  given to the constructor is converted), two chunks are equal when they name
  the same file, dataset, first row and trains with the same counts. Its
  ``dataset`` and ``source_file_paths`` properties open the file (like
  ``FileAccess``, a handle object, it is allowed to); everything else answers
  from the values.
* ``DataChunk.source_file_paths`` maps the chunk's rows through a virtual
  dataset's mappings (only sources whose rows overlap the chunk count); a
  plain dataset, or a virtual one without overlapping mappings, gives the
  chunk's own file.
* :func:`key_data_chunks` cuts a ``KeyData`` selection into chunks as
  :func:`xfeldata.core.plan.chunk_table` does: runs of selected (and, when
  suspect trains are excluded, valid) trains at consecutive positions of one
  file, also split where the INDEX is not contiguous, so that ``chunk.slice``
  is always exactly the chunk's rows; ordered by first train ID, then path.
  The read plan's steps are these chunks minus the empty ones.
* :func:`trains_files_index` answers, for each train ID, the position in
  ``files`` of the **first** file holding it (only valid trains count when
  ``inc_suspect_trains`` is False), or -1; ``int64``, aligned with the given
  train IDs in their given order.
* :func:`contiguous_regions` here takes a boolean mask (EXtra-data's form) and
  returns ``[start, stop)`` pairs; :func:`xfeldata.core.plan.contiguous_regions`
  takes sorted positions.
* ``same_run`` is defined in :mod:`xfeldata.reader` and re-exported lazily
  (module ``__getattr__``), because ``reader`` imports this module.
"""

from __future__ import annotations

import glob
import os
import os.path as osp
from pathlib import Path
from typing import Any

import numpy as np

from .core.names import (
    DETECTOR_NAMES,
    DETECTOR_SOURCE_RE,
    FilenameInfo,
    glob_wildcards_re,
    is_int_like,
    normalise_proposal,
    proposal_is_path,
)
from .core.records import readonly
from .core.trains import (
    by_id,
    by_index,
    roi_shape,
    select_train_ids,
    split_trains,
)

__all__ = [
    "DATA_ROOT_DIR",
    "DataChunk",
    "DETECTOR_NAMES",
    "DETECTOR_SOURCE_RE",
    "FilenameInfo",
    "ProposalNotFoundError",
    "by_id",
    "by_index",
    "contiguous_regions",
    "data_root_dir",
    "find_proposal",
    "glob_wildcards_re",
    "is_int_like",
    "key_data_chunks",
    "roi_shape",
    "same_run",  # noqa: F822  (module __getattr__)
    "select_train_ids",
    "split_trains",
    "sw_root_dir",
    "trains_files_index",
]

_DEFAULT_DATA_ROOT = "/gpfs/exfel/exp"
_DEFAULT_SW_ROOT = "/gpfs/exfel/sw"


def data_root_dir() -> str:
    """Root folder searched for proposals, read from the environment at each call.

    ``$XFELDATA_DATA_ROOT`` wins if set, then ``$EXTRA_DATA_DATA_ROOT`` (so
    settings made for EXtra-data keep working), else ``/gpfs/exfel/exp``.

    Returns
    -------
    str

    Examples
    --------
    >>> data_root_dir().startswith('/')  # default: '/gpfs/exfel/exp'
    True
    """
    return (os.environ.get("XFELDATA_DATA_ROOT")
            or os.environ.get("EXTRA_DATA_DATA_ROOT")
            or _DEFAULT_DATA_ROOT)


#: The data root at import time. Kept for compatibility with EXtra-data;
#: prefer :func:`data_root_dir`, which follows later changes of the environment.
DATA_ROOT_DIR = data_root_dir()


def sw_root_dir() -> str:
    """Root of the EuXFEL software area (alias templates): ``$EXTRA_DATA_SW_ROOT``.

    Returns
    -------
    str
        The variable's value, else ``/gpfs/exfel/sw``.

    Examples
    --------
    >>> sw_root_dir().startswith('/')  # default: '/gpfs/exfel/sw'
    True
    """
    return os.environ.get("EXTRA_DATA_SW_ROOT") or _DEFAULT_SW_ROOT


from .exceptions import ProposalNotFoundError  # noqa: E402  (one class, defined there)


def find_proposal(propno: Any) -> str:
    """Find the folder of a proposal: ``<data root>/<INSTRUMENT>/<CYCLE>/pNNNNNN``.

    Parameters
    ----------
    propno : int, str or os.PathLike
        A proposal number (``2173``, ``'2173'``, ``'p002173'``), or a path (any
        string containing ``/``, or a path object), which is returned as is.

    Returns
    -------
    str
        The proposal directory. When several instrument/cycle folders hold the
        proposal, the first in sorted order is taken (EXtra-data takes the
        first one ``glob`` happens to list).

    Raises
    ------
    ProposalNotFoundError
        (an ``Exception``) ``"Couldn't find proposal dir for 'pNNNNNN'"``.

    Examples
    --------
    >>> find_proposal('/gpfs/exfel/exp/SPB/201901/p002173')  # a path is returned as is
    '/gpfs/exfel/exp/SPB/201901/p002173'
    """
    if proposal_is_path(propno):
        return os.fspath(propno)
    name = normalise_proposal(propno)
    root = data_root_dir()
    # glob.escape: a data root containing '[' must still be taken literally.
    hits = sorted(glob.glob(os.path.join(glob.escape(root), "*", "*", name)))
    for path in hits:
        if os.path.isdir(path):
            return path
    raise ProposalNotFoundError(name, root)




def __getattr__(name):
    # reader imports this module (find_proposal), so same_run is fetched on use.
    if name == 'same_run':
        from .reader import same_run
        return same_run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- chunks of data ------------------------------------------------------------------


def _file_access(file):
    from .core.records import FileIndex
    from .file_access import FileAccess
    if isinstance(file, FileAccess):
        return file
    if isinstance(file, FileIndex):
        return FileAccess(file.path, _cache_info=file)
    return FileAccess(os.fspath(file))


class DataChunk:
    """A contiguous run of selected trains of one key in one file.

    Parameters
    ----------
    file : FileAccess, FileIndex or path
    dataset_path : str
        HDF5 path of the key's dataset in ``file``.
    first : int
        First row of the chunk in the dataset.
    train_ids : array_like
        The trains of the chunk (some may have no entries).
    counts : array_like
        Entries per train, aligned with ``train_ids``.

    Examples
    --------
    >>> from xfeldata.core.records import FileIndex
    >>> fi = FileIndex.build('/r/RAW-R0001-DA01-S00000.h5', 0, 0.0, [5, 6, 7], [1, 1, 1],
    ...                      ['A'], [])
    >>> c = DataChunk(fi, '/CONTROL/A/x/value', 10, [5, 6, 7], [1, 0, 2])
    >>> c.total_count, c.slice
    (3, slice(10, 13, None))
    """
    __slots__ = ('file', 'dataset_path', 'first', 'train_ids', 'counts')

    def __init__(self, file, dataset_path, first, train_ids, counts):
        tids = readonly(np.asarray(train_ids, dtype=np.uint64).reshape(-1))
        cnts = readonly(np.asarray(counts, dtype=np.uint64).reshape(-1))
        if len(tids) != len(cnts):
            raise ValueError(f"{len(tids)} train IDs but {len(cnts)} counts")
        object.__setattr__(self, 'file', _file_access(file))
        object.__setattr__(self, 'dataset_path', str(dataset_path))
        object.__setattr__(self, 'first', int(first))
        object.__setattr__(self, 'train_ids', tids)
        object.__setattr__(self, 'counts', cnts)

    def __setattr__(self, name, value):
        raise AttributeError("DataChunk is immutable")

    def __reduce__(self):
        return DataChunk, (self.file, self.dataset_path, self.first, self.train_ids,
                           self.counts)

    def _ident(self):
        return (self.file.filename, self.dataset_path, self.first,
                self.train_ids.tobytes(), self.counts.tobytes())

    def __eq__(self, other):
        if not isinstance(other, DataChunk):
            return NotImplemented
        return self._ident() == other._ident()

    def __hash__(self):
        return hash(self._ident())

    def __repr__(self):
        t = (f"trains {int(self.train_ids[0])}..{int(self.train_ids[-1])}"
             if len(self.train_ids) else "no trains")
        return (f"<DataChunk {osp.basename(self.file.filename)}:{self.dataset_path}"
                f"[{self.first}:{self.first + self.total_count}] {t}>")

    @property
    def total_count(self) -> int:
        """Number of entries (rows) in the chunk."""
        return int(self.counts.sum())

    @property
    def slice(self) -> slice:
        """The chunk's rows of the dataset: ``slice(first, first + total_count)``."""
        return slice(self.first, self.first + self.total_count)

    @property
    def dataset(self):
        """The ``h5py.Dataset`` (opens the file through the open-files limiter)."""
        return self.file.file[self.dataset_path]

    @property
    def source_file_paths(self) -> list:
        """Paths of the files really holding the chunk's rows (VDS mappings resolved)."""
        own = Path(self.file.filename)
        ds = self.dataset
        if not ds.is_virtual:
            return [own]
        lo, hi = self.first, self.first + self.total_count
        base = osp.dirname(self.file.filename)
        out = []
        for m in ds.virtual_sources():
            try:
                start, end = m.vspace.get_select_bounds()
            except Exception:
                start, end = (lo,), (hi - 1,)
            if start[0] < hi and end[0] >= lo:
                name = self.file.filename if m.file_name == '.' else m.file_name
                out.append(Path(osp.normpath(osp.join(base, name))))
        return list(dict.fromkeys(out)) or [own]


def key_data_chunks(key_data, nonempty: bool = False) -> list:
    """The :class:`DataChunk` list of a ``KeyData`` selection (answered from its records).

    Parameters
    ----------
    key_data : KeyData
    nonempty : bool
        Leave out chunks without entries.

    Returns
    -------
    list of DataChunk
        Ordered by first train ID, then path; see the module docstring.

    Examples
    --------
    >>> import tempfile, xfeldata
    >>> from xfeldata.testing import make_demo_run
    >>> d = tempfile.mkdtemp(); _ = make_demo_run(d)
    >>> kd = xfeldata.RunDirectory(d)['SA1_XTD2_XGM/DOOCS/MAIN', 'beamPosition.ixPos']
    >>> [(c.slice, len(c.train_ids)) for c in key_data_chunks(kd)]
    [(slice(0, 50, None), 50), (slice(0, 50, None), 50)]
    """
    from .core.plan import chunk_table
    records = {fi.path: fi for fi in key_data._files}
    t = chunk_table(key_data._file_key_indexes(), key_data._train_ids,
                    key_data.inc_suspect_trains)
    out = []
    dataset = key_data.hdf5_data_path
    for i, (fno, first, n) in enumerate(zip(t.file.tolist(), t.first_row.tolist(),
                                            t.n_rows.tolist())):
        if nonempty and n == 0:
            continue
        a, b = t.bounds[i], t.bounds[i + 1]
        path = t.files[fno].path
        out.append(DataChunk(records.get(path, path), dataset, first,
                             t.train_ids[a:b], t.counts[a:b]))
    return out


def contiguous_regions(mask) -> np.ndarray:
    """``[start, stop)`` pairs of the runs where a boolean mask is True.

    Parameters
    ----------
    mask : array_like of bool

    Returns
    -------
    numpy.ndarray
        Shape ``(n_regions, 2)``, int64.

    Examples
    --------
    >>> contiguous_regions([True, True, False, True]).tolist()
    [[0, 2], [3, 4]]
    """
    m = np.asarray(mask, dtype=bool).reshape(-1).astype(np.int8)
    d = np.diff(np.concatenate([[0], m, [0]]))
    return np.stack([np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]], axis=1).astype(np.int64)


def trains_files_index(train_ids, files, inc_suspect_trains=True) -> np.ndarray:
    """For each train ID, the position in ``files`` of the first file holding it.

    Parameters
    ----------
    train_ids : array_like of int
        In any order; the result is aligned with it.
    files : sequence of FileAccess or FileIndex
        Anything with ``train_ids`` and a validity array (``validity_flag`` or
        ``valid``).
    inc_suspect_trains : bool
        If False, a file holds only the trains it flags valid.

    Returns
    -------
    numpy.ndarray of int64
        -1 where no file holds the train.

    Examples
    --------
    >>> import numpy as np
    >>> from xfeldata.core.records import FileIndex
    >>> a = FileIndex.build('/r/a.h5', 0, 0.0, np.array([1, 2, 3], np.uint64),
    ...                     np.array([True, False, True]), (), ())
    >>> b = FileIndex.build('/r/b.h5', 0, 0.0, np.array([2, 4], np.uint64),
    ...                     np.array([True, True]), (), ())
    >>> trains_files_index([1, 2, 4, 5], [a, b]).tolist()
    [0, 0, 1, -1]
    >>> trains_files_index([1, 2, 4, 5], [a, b], inc_suspect_trains=False).tolist()
    [0, 1, 1, -1]
    """
    want = np.asarray(train_ids, dtype=np.uint64).reshape(-1)
    out = np.full(len(want), -1, dtype=np.int64)
    if len(want) == 0 or len(files) == 0:
        return out
    tids, fno = [], []
    for i, f in enumerate(files):
        t = np.asarray(f.train_ids, dtype=np.uint64)
        if not inc_suspect_trains:
            valid = getattr(f, 'validity_flag', None)
            if valid is None:
                valid = f.valid
            t = t[np.asarray(valid, dtype=bool)[:len(t)]]
        tids.append(t)
        fno.append(np.full(len(t), i, dtype=np.int64))
    tids, fno = np.concatenate(tids), np.concatenate(fno)
    # Sort by (train ID, file position): the first of each train ID wins.
    order = np.lexsort((fno, tids))
    tids, fno = tids[order], fno[order]
    first = np.ones(len(tids), dtype=bool)
    first[1:] = tids[1:] != tids[:-1]
    tids, fno = tids[first], fno[first]
    if len(tids) == 0:
        return out
    ix = np.minimum(np.searchsorted(tids, want), len(tids) - 1)
    hit = tids[ix] == want
    out[hit] = fno[ix[hit]]
    return out
