"""Effects: execute read plans against HDF5 files.

One preallocated output. The plan's steps are grouped into read calls by the
pure :func:`~xfeldata.core.plan.read_blocks`; each call is one ``H5Dread``
made through h5py's low-level API (no high-level selection objects per step):

* a *direct* block reads the union of its steps' hyperslabs straight into its
  output rows (what ``read_direct`` does, without its per-call overhead);
* a *gather* block reads the rows covering its steps (small gaps included)
  into scratch memory and copies the wanted rows out with one fancy index.

Each file is looked up once per plan and each dataset opened once per file;
the dataset's length is checked against the INDEX before reading.

A region of interest made of integers, slices with a positive step and
``Ellipsis`` becomes part of the hyperslab, so only the region is read. Any
other numpy index (arrays, ``None``, negative steps) is applied with numpy to
whole rows, read a bounded number of rows at a time. Variable-length string
data goes through h5py's high-level reader and is decoded to ``str``.
"""
from __future__ import annotations

import os

import h5py
import numpy as np

from . import _direct
from .core.plan import ReadPlan, read_blocks, roi_from_key
from .exceptions import FileStructureError

__all__ = ['execute']

#: Rows read at a time (in bytes of whole entries) when an roi is applied with numpy.
FALLBACK_BLOCK_BYTES = 1 << 26

# What h5py raises for a dataset it cannot open (missing, not a dataset, ...)
# and for data it cannot read (damaged chunks, failing filters).
_OPEN_ERRORS = (KeyError, ValueError, TypeError, OSError, RuntimeError)
_READ_ERRORS = (OSError, RuntimeError)


def _decode_strings(arr):
    """vlen strings come back from h5py as bytes objects: decode once, here."""
    flat = arr.reshape(-1)
    for i, v in enumerate(flat):
        if isinstance(v, bytes):
            flat[i] = v.decode('utf-8', 'surrogateescape')
    return arr


def _hyperslab_roi(roi, inner_shape):
    """(start, count, stride) per inner axis, or None if numpy must apply ``roi``.

    Integers (negative allowed), slices with a positive step and one
    ``Ellipsis`` map onto a hyperslab; an integer axis is kept with count 1
    (the memory space has the output's shape, so the element counts match).
    """
    if any(not (r is Ellipsis or isinstance(r, (slice, int, np.integer))) or
           isinstance(r, (bool, np.bool_)) for r in roi):
        return None
    if sum(r is Ellipsis for r in roi) > 1:
        return None
    if Ellipsis in roi:
        k = roi.index(Ellipsis)
        fill = len(inner_shape) - (len(roi) - 1)
        roi = roi[:k] + (slice(None),) * fill + roi[k + 1:]
    if len(roi) > len(inner_shape):
        return None
    roi = roi + (slice(None),) * (len(inner_shape) - len(roi))
    start, count, stride = [], [], []
    for r, dim in zip(roi, inner_shape):
        if isinstance(r, slice):
            if r.step is not None and r.step <= 0:
                return None
            a, b, c = r.indices(dim)
            start.append(a)
            count.append(len(range(a, b, c)))
            stride.append(c)
        else:
            i = int(r)
            if not -dim <= i < dim:
                return None     # numpy raises the IndexError
            start.append(i % dim)
            count.append(1)
            stride.append(1)
    return tuple(start), tuple(count), tuple(stride)


def _missing(path, name):
    # A KeyError, as EXtra-data gives: keys are listed from one file of a
    # source, and another file of the same source may lack one of them.
    return KeyError(f"{path}: no dataset {name} (the key is listed for this source "
                    "but this file does not have it)")


def _dataset(fa, name) -> tuple:
    """``(DatasetID, shape)`` of dataset ``name`` of a FileAccess (kept open with its file)."""
    try:
        return fa.dataset(name)
    except _OPEN_ERRORS:
        raise _missing(fa.filename, name) from None


def _select(dsid, ranges, slab):
    """File space with the union of row ranges x the inner hyperslab selected."""
    start, count, stride = slab
    space = dsid.get_space()
    op = h5py.h5s.SELECT_SET
    for a, b in ranges:
        space.select_hyperslab((a,) + start, (b - a,) + count, (1,) + stride, op=op)
        op = h5py.h5s.SELECT_OR
    return space


def _read_into(dsid, space, dest):
    dsid.read(h5py.h5s.create_simple(dest.shape), space, dest)


def _read_path(read_path) -> str:
    choice = read_path if read_path is not None else (
        os.environ.get('XFELDATA_READ_PATH', '').strip().lower() or 'auto')
    if choice not in _direct.READ_PATHS:
        raise ValueError(f"read_path must be one of {_direct.READ_PATHS}, got {choice!r}")
    return choice


def execute(plan: ReadPlan, out=None, *, decode_strings=True, read_path=None,
            **block_options) -> np.ndarray:
    """Read everything ``plan`` describes into one array (``out`` if given).

    Parameters
    ----------
    plan : ReadPlan
    out : numpy.ndarray, optional
        Must have exactly ``plan.shape``; its dtype may differ (HDF5 converts).
    decode_strings : bool
        Variable-length strings as ``str`` (default) or as the ``bytes`` h5py
        reads (train dicts keep bytes, as EXtra-data's do).
    read_path : {'auto', 'direct', 'h5py'}, optional
        ``'auto'`` reads compressed chunked datasets through the direct-chunk
        path (:mod:`xfeldata._direct`: decoding in threads, outside HDF5's
        lock) where it gives exactly h5py's result, and the rest with h5py;
        ``'h5py'`` reads everything with h5py; ``'direct'`` is ``'auto'`` but
        raises ValueError for a dataset the direct path cannot read. Default:
        the ``XFELDATA_READ_PATH`` environment variable, else ``'auto'``.
    **block_options
        ``max_gap_bytes``, ``max_scratch_bytes``, ``max_hyperslabs`` for
        :func:`~xfeldata.core.plan.read_blocks`: they change how many read
        calls are made, never the result.

    Returns
    -------
    numpy.ndarray
        ``out``, or a new array of ``plan.shape`` and ``plan.dtype``.

    Raises
    ------
    ValueError
        ``out`` has another shape.
    KeyError
        A file of the source lacks the dataset (names file and dataset).
    TypeError
        The INDEX points past the end of the dataset (as in EXtra-data).
    FileStructureError
        A dataset cannot be read.

    Examples
    --------
    >>> import tempfile, xfeldata
    >>> from xfeldata.testing import make_demo_run
    >>> d = tempfile.mkdtemp(); _ = make_demo_run(d)
    >>> kd = xfeldata.RunDirectory(d)['SPB_IRU_MOTORS/MOTOR/X', 'actualPosition']
    >>> execute(kd.plan()).shape
    (100,)
    """
    if out is None:
        out = np.empty(plan.shape, dtype=plan.dtype)
    elif out.shape != plan.shape:
        raise ValueError(f"requires output array of shape {plan.shape}, got {out.shape}")
    if not plan.steps or out.size == 0:
        return out
    roi = roi_from_key(plan.roi) if plan.roi else ()
    from ._tiers import file_access
    strings = plan.dtype.hasobject or out.dtype.hasobject
    path = _read_path(read_path)
    steps = plan.steps
    handles = {}    # FileAccess per file: one lookup (and stat) per file, not per read
    dsids = {}      # (DatasetID, shape) per dataset, shared by both paths

    def opened(p, name):
        d = dsids.get((p, name))
        if d is None:
            fa = handles.get(p)
            if fa is None:
                fa = handles[p] = file_access(p)
                fa.file   # open, and the most recently used for the open-files limiter
            d = dsids[(p, name)] = _dataset(fa, name)
        return d

    def dataset(p, name):
        return opened(p, name)[0]

    # 'auto' leaves a read smaller than one chunk worth a thread (one train of
    # a control key, say) to h5py: the direct path could only add its checks.
    if path != 'h5py' and not strings and not (
            path == 'auto' and out.nbytes < _direct.MIN_CHUNK_BYTES):
        if roi and path == 'direct':
            raise ValueError("read_path='direct' reads whole entries: use 'auto' with a roi")
        left = _direct.read_groups(_direct.group_steps(steps, dataset), out, roi,
                                   force=path == 'direct')
        if len(left) != len({(s.path, s.dataset) for s in steps}):
            steps = tuple(sorted((s for _, (_, part) in left for s in part),
                                 key=lambda s: s.dst_start))
    for block in read_blocks(steps, plan.entry_nbytes, **block_options):
        part = steps[block.step_start:block.step_stop]
        try:
            if strings:
                fa = handles.get(block.path)
                if fa is None:
                    fa = handles[block.path] = file_access(block.path)
                _read_high_level(fa.file, block, part, roi, out)
            else:
                _read_block(*opened(block.path, block.dataset), block, part, roi, out)
        except _READ_ERRORS as e:
            raise FileStructureError(
                f"cannot read {block.dataset} rows {block.src_start}:{block.src_stop}: {e}",
                block.path) from None
    if strings and decode_strings:
        _decode_strings(out)
    return out


def _check_length(shape, block, part, path):
    n = shape[0] if shape else 0
    stop = max(s.src_stop for s in part)
    if stop > n:
        # TypeError is what EXtra-data raises here (h5py cannot broadcast the
        # short read into the output); the message says what is wrong.
        raise TypeError(
            f"{path}: INDEX points past the end of {block.dataset}: rows "
            f"{block.src_start}:{stop} of {n}; the file's index is inconsistent "
            "(xfeldata validate reports it)")


def _read_block(dsid, shape, block, part, roi, out):
    _check_length(shape, block, part, block.path)
    inner = shape[1:]
    slab = _hyperslab_roi(roi, inner) if roi else ((0,) * len(inner), inner, (1,) * len(inner))
    if slab is None:
        _read_numpy_roi(dsid, block, part, roi, out, inner)
        return
    d0, d1 = part[0].dst_start, part[-1].dst_stop
    dest = out[d0:d1]
    direct = dest.flags.c_contiguous and dest.flags.writeable
    if not block.gather:
        target = dest if direct else np.empty(dest.shape, out.dtype)
        _read_into(dsid, _select(dsid, [(s.src_start, s.src_stop) for s in part], slab), target)
        if not direct:
            dest[...] = target
        return
    scratch = np.empty((block.src_stop - block.src_start,) + dest.shape[1:], out.dtype)
    _read_into(dsid, _select(dsid, [(block.src_start, block.src_stop)], slab), scratch)
    dest[...] = scratch[_gather_index(part, block.src_start)]


def _gather_index(part, origin):
    """Rows of the scratch buffer holding each step's rows, in output order."""
    a = np.fromiter((s.src_start for s in part), np.int64, len(part)) - origin
    n = np.fromiter((s.n_rows for s in part), np.int64, len(part))
    offsets = np.concatenate([[0], np.cumsum(n)[:-1]])
    return np.repeat(a - offsets, n) + np.arange(int(n.sum()), dtype=np.int64)


def _read_numpy_roi(dsid, block, part, roi, out, inner):
    """Read whole rows a bounded block at a time and apply ``roi`` with numpy."""
    row_bytes = max(1, int(np.prod(inner, dtype=np.int64)) * dsid.dtype.itemsize)
    per = max(1, FALLBACK_BLOCK_BYTES // row_bytes)
    full = ((0,) * len(inner), inner, (1,) * len(inner))
    sel = (slice(None),) + roi
    moved = _moved_axes(roi)
    for s in part:
        for a in range(s.src_start, s.src_stop, per):
            b = min(a + per, s.src_stop)
            rows = np.empty((b - a,) + tuple(inner), out.dtype)
            _read_into(dsid, _select(dsid, [(a, b)], full), rows)
            d = s.dst_start + (a - s.src_start)
            picked = rows[sel]
            out[d:d + (b - a)] = np.moveaxis(picked, moved, 0) if moved else picked


def _moved_axes(roi) -> int:
    """Where numpy puts the row axis when ``(slice(None),) + roi`` indexes rows.

    The roi applies to each entry, and the output is ``(rows,) + entry result``.
    When the roi's advanced indices (arrays, and integers beside them) are not
    next to each other, numpy moves their broadcast dimensions to the front,
    before the row axis; the row axis then sits at this position (else 0).
    """
    arrays = [r for r in roi if isinstance(r, np.ndarray) and r.ndim > 0]
    if not arrays:
        return 0
    adv = [i for i, r in enumerate(roi)
           if (isinstance(r, np.ndarray)) or isinstance(r, (int, np.integer))]
    if adv == list(range(adv[0], adv[0] + len(adv))):
        return 0
    return max(1 if r.dtype == bool else r.ndim for r in arrays)


def _read_high_level(f, block, part, roi, out):
    """Object (vlen string) data: h5py's reader makes the Python objects."""
    ds = f.get(block.dataset)
    if not isinstance(ds, h5py.Dataset):
        raise _missing(block.path, block.dataset)
    _check_length(ds.shape, block, part, block.path)
    moved = _moved_axes(roi)
    for s in part:
        rows = ds[s.src_start:s.src_stop]
        if roi:
            rows = rows[(slice(None),) + roi]
            rows = np.moveaxis(rows, moved, 0) if moved else rows
        out[s.dst_start:s.dst_stop] = rows
