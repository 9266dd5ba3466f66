"""The deterministic value rule of synthetic files, and timestamps.

Every number the writer puts in a data dataset is a pure function of
``(source, key, train ID, entry index within the train)`` so a test can
recompute what a reader must return without keeping the data around.

The rule (``fill='pattern'``, the default)::

    v = train_id * 1000 + entry + salt(source, key) + flat_index

* ``entry`` is the position of the entry inside its train (0 for control
  data, 0..count-1 for instrument data), so values do not depend on how a run
  is split into files;
* ``salt`` is ``zlib.crc32(f"{source}/{key}") % 1000``: reading the wrong key
  or source gives different numbers;
* ``flat_index`` is ``0 .. prod(shape)-1`` laid out C-ordered over the entry
  shape (0 for scalar entries).

``v`` is an exact Python/int64 integer; it is then cast to the dataset dtype
with numpy ``astype`` (integers wrap modulo 2**bits, floats round to nearest,
bool takes ``v % 2``, vlen strings take ``str(v)``, structured dtypes give
field number ``i`` the value ``v + i``).

Other fills (see :class:`xfeldata.testing.Key`): ``'train_id'`` (v = train ID),
``'entry'`` (v = entry), ``'count'`` (v = entries of this train in the key's
own index group), ``'count:<group>'`` (entries of another index group of the
same source), ``'index'`` (v = flat_index), ``'zeros'``, or a constant (a number or an
array broadcast to the entry shape).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

__all__ = [
    "EPOCH_NS",
    "TRAIN_PERIOD_NS",
    "as_dtype",
    "control_timestamps",
    "expected_values",
    "is_string_dtype",
    "key_salt",
    "string_dtype",
    "train_timestamps",
    "values_for_rows",
]

#: INDEX/timestamp of the reference train: 2024-03-01T12:00:00Z in ns.
EPOCH_NS = 1_709_294_400 * 10**9
#: Trains come every 100 ms.
TRAIN_PERIOD_NS = 100_000_000


def string_dtype(encoding: str = "utf-8") -> np.dtype:
    """A numpy dtype h5py writes as a variable-length string.

    Built by hand (it is exactly what ``h5py.string_dtype`` returns) so the
    records stay free of h5py.
    """
    if encoding == "utf-8":
        return np.dtype("O", metadata={"vlen": str})
    if encoding == "ascii":
        return np.dtype("O", metadata={"vlen": bytes})
    raise ValueError(f"unknown string encoding {encoding!r}")


def is_string_dtype(dt: np.dtype) -> bool:
    """True for the vlen string dtypes made by :func:`string_dtype`."""
    return dt.kind == "O" and bool(dt.metadata) and "vlen" in dt.metadata


def string_encoding(dt: np.dtype) -> str:
    return "utf-8" if dt.metadata["vlen"] is str else "ascii"


def as_dtype(x: Any) -> np.dtype:
    """Coerce a dtype-like; ``str`` -> vlen UTF-8, ``bytes`` -> vlen ASCII."""
    if x is str:
        return string_dtype("utf-8")
    if x is bytes:
        return string_dtype("ascii")
    if isinstance(x, np.dtype):
        if x.kind == "O" and not is_string_dtype(x):
            raise TypeError("object dtypes other than vlen strings cannot be written")
        return x
    dt = np.dtype(x)
    if dt.kind in "OUSV" and dt.names is None:
        raise TypeError(f"unsupported dtype {dt!r}: use str/bytes for strings")
    return dt


def key_salt(source: str, key: str) -> int:
    """Per-(source, key) offset in 0..999 added to pattern values.

    >>> key_salt('SA1_XTD2_XGM/DOOCS/MAIN', 'pulseEnergy.photonFlux.value')
    812
    """
    return zlib.crc32(f"{source}/{key}".encode()) % 1000


def _cast(v: np.ndarray, dt: np.dtype) -> np.ndarray:
    """Cast exact int64 values to the target dtype following the rule."""
    if is_string_dtype(dt):
        out = np.empty(v.shape, dtype=object)
        flat = out.reshape(-1)
        conv = str if string_encoding(dt) == "utf-8" else (lambda x: str(x).encode())
        for i, x in enumerate(v.reshape(-1).tolist()):
            flat[i] = conv(x)
        return out
    if dt.names is not None:
        out = np.zeros(v.shape, dtype=dt)
        for i, name in enumerate(dt.names):
            out[name] = _cast(v + i, dt.fields[name][0])
        return out
    if dt.kind == "b":
        return (v % 2).astype(bool)
    # astype is a C cast: modular for integers, round-to-nearest for floats.
    return v.astype(dt)


def values_for_rows(
    source: str,
    key: str,
    dtype: np.dtype,
    shape: tuple[int, ...],
    fill: Any,
    row_tids: np.ndarray,
    row_entry: np.ndarray,
    row_count: np.ndarray,
    row_other_count: np.ndarray | None = None,
) -> np.ndarray:
    """Values of the data rows described by per-row train ID, entry and count.

    ``row_other_count`` is needed only for ``fill='count:<group>'``.
    """
    n = len(row_tids)
    size = int(np.prod(shape, dtype=np.int64))
    tids = np.asarray(row_tids, dtype=np.uint64).astype(np.int64)
    entry = np.asarray(row_entry, dtype=np.int64)
    if isinstance(fill, str):
        if fill == "pattern":
            base = tids * 1000 + entry + key_salt(source, key)
            idx = np.arange(size, dtype=np.int64).reshape(shape)
            v = base.reshape((n,) + (1,) * len(shape)) + idx
        elif fill == "train_id":
            v = tids
        elif fill == "entry":
            v = entry
        elif fill == "count":
            v = np.asarray(row_count, dtype=np.int64)
        elif fill.startswith("count:"):
            if row_other_count is None:
                raise ValueError(f"fill {fill!r} needs the other group's counts")
            v = np.asarray(row_other_count, dtype=np.int64)
        elif fill == "index":
            v = np.broadcast_to(np.arange(size, dtype=np.int64).reshape(shape), (n,) + shape)
        elif fill == "zeros":
            v = np.zeros(n, dtype=np.int64)
        else:
            raise ValueError(f"unknown fill {fill!r}")
    else:
        # A constant: a number, or an array broadcast to the entry shape.
        const = np.broadcast_to(np.asarray(fill), shape)
        if const.dtype.kind not in "iub":
            return np.ascontiguousarray(np.broadcast_to(const, (n,) + shape)).astype(dtype)
        v = np.broadcast_to(const.astype(np.int64), (n,) + shape)
    v = np.broadcast_to(v.reshape(v.shape + (1,) * (len(shape) + 1 - v.ndim)), (n,) + shape)
    return _cast(np.ascontiguousarray(v), dtype)


def rows_of_trains(train_ids, counts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row (train ID, entry index, train count) for trains with counts."""
    tids = np.asarray(train_ids, dtype=np.uint64)
    counts = np.broadcast_to(np.asarray(counts, dtype=np.int64), tids.shape)
    total = int(counts.sum())
    firsts = np.cumsum(counts) - counts
    row_tids = np.repeat(tids, counts)
    row_entry = np.arange(total, dtype=np.int64) - np.repeat(firsts, counts)
    row_count = np.repeat(counts, counts)
    return row_tids, row_entry, row_count


def expected_values(
    source: str,
    key: str,
    spec,
    train_ids,
    counts=1,
    other_counts=None,
) -> np.ndarray:
    """Data a reader must return for ``key`` of ``source`` over some trains.

    Parameters
    ----------
    source : str
        Canonical source name (for control sources the device ID).
    key : str
        Dotted key as a reader names it; control keys end with ``.value``.
    spec : Key or dtype-like
        The key description (dtype, entry shape, fill).
    train_ids : array_like
        Train IDs, in the order the entries are concatenated.
    counts : int or array_like
        Entries per train (1 for control data).
    other_counts : array_like, optional
        Counts of the group named by a ``'count:<group>'`` fill.

    Returns
    -------
    numpy.ndarray
        Shape ``(sum(counts),) + spec.shape``.

    Examples
    --------
    >>> from xfeldata.testing import Key, expected_values
    >>> v = expected_values('X/Y/Z:out', 'data.x', Key('u4', fill='entry'),
    ...                     [10000, 10001], counts=[2, 1])
    >>> v.tolist()
    [0, 1, 0]
    """
    from ._records import as_key

    spec = as_key(spec)
    tids = np.atleast_1d(np.asarray(train_ids, dtype=np.uint64))
    counts = np.broadcast_to(np.asarray(counts, dtype=np.int64), tids.shape)
    row_tids, row_entry, row_count = rows_of_trains(tids, counts)
    row_other = None
    if other_counts is not None:
        other = np.broadcast_to(np.asarray(other_counts, dtype=np.int64), tids.shape)
        row_other = np.repeat(other, counts)
    return values_for_rows(
        source, key, spec.dtype, spec.shape, spec.fill, row_tids, row_entry, row_count, row_other
    )


def train_timestamps(train_ids, origin_train: int, epoch_ns: int = EPOCH_NS) -> np.ndarray:
    """``INDEX/timestamp`` values: epoch + (tid - origin) * 100 ms; tid 0 -> 0.

    >>> train_timestamps([10000, 10002, 0], 10000).tolist()
    [1709294400000000000, 1709294400200000000, 0]
    """
    tids = np.asarray(train_ids, dtype=np.uint64)
    delta = tids.astype(np.int64) - np.int64(origin_train)
    ts = np.int64(epoch_ns) + delta * TRAIN_PERIOD_NS
    ts = np.where((tids == 0) | (ts < 0), 0, ts)
    return ts.astype(np.uint64)


def control_timestamps(train_ids, origin_train: int, epoch_ns: int = EPOCH_NS) -> np.ndarray:
    """``CONTROL/.../timestamp`` values of the rows of one file.

    The train timestamp with trains before the origin (and zero train IDs)
    clamped to the epoch, then a running maximum: always non-zero and
    non-decreasing along the file, as validation requires, even for files
    with bogus train IDs. For increasing train IDs >= origin it equals
    :func:`train_timestamps`.

    >>> control_timestamps([10001, 5, 10002], 10000).tolist()
    [1709294400100000000, 1709294400100000000, 1709294400200000000]
    """
    tids = np.asarray(train_ids, dtype=np.uint64)
    delta = np.maximum(tids.astype(np.int64) - np.int64(origin_train), 0)
    ts = (np.int64(epoch_ns) + delta * TRAIN_PERIOD_NS).astype(np.uint64)
    if len(ts):
        ts = np.maximum.accumulate(ts)
    return ts
