"""Pure train selection: selector values, resolving them to trains, splitting runs.

Everything here works on sorted arrays of train IDs with numpy only (no files,
no clocks), vectorised so that a 50,000-train run costs microseconds, never a
Python loop per train.

The selector semantics follow API.md section 2.4 (EXtra-data's
``select_trains``):

=========================================  ==============================================
selector                                   meaning
=========================================  ==============================================
``slice``                                  positions in the current train list
int-like (incl. 0-d int arrays)            one position (negative counts from the end)
list / int ndarray                         positions, sorted, duplicates kept
bool ndarray                               mask over the current trains
``by_index[...]``                          unwrapped, then as above
``by_id[a:b:c]``                           train ID range, ends mapped to positions
``by_id[int]`` / ``by_id[list/array]``     train IDs, intersected with the current IDs
bool ``xarray.DataArray`` (trainId)        IDs where True, intersected
=========================================  ==============================================
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from .names import is_int_like

__all__ = [
    "by_id",
    "by_index",
    "roi_shape",
    "select_train_ids",
    "select_train_positions",
    "split_trains",
]

# Train IDs are uint64 on disk; anything outside this range cannot be a train ID.
_MAX_TRAIN_ID = np.iinfo(np.uint64).max


# --------------------------------------------------------------------------- selector values


def _value_key(value: Any) -> tuple:
    """Hashable, value-based key of a selector value (slices are unhashable before 3.12).

    Lists and arrays with the same elements get the same key, so ``by_id[[1, 2]]``
    equals ``by_id[np.array([1, 2])]``: they select the same trains.
    """
    if value is None:
        return ("none",)
    if value is Ellipsis:
        return ("ellipsis",)
    if isinstance(value, slice):
        return ("slice", _value_key(value.start), _value_key(value.stop),
                _value_key(value.step))
    if isinstance(value, (bool, np.bool_)):
        return ("bool", bool(value))
    if is_int_like(value):
        return ("int", int(value))
    if isinstance(value, (list, np.ndarray)):
        try:
            arr = _int_array(value)
        except TypeError:
            arr = np.zeros(0, dtype=object)  # ragged: compared element by element below
        if arr.dtype.kind in "biuf":
            return _array_key(arr)
        if arr.ndim == 0:
            return _value_key(arr.item())
        # Mixed lists (ints and slices...) or object arrays: element by element.
        return ("seq", tuple(_value_key(v) for v in value))
    if isinstance(value, tuple):
        return ("tuple", tuple(_value_key(v) for v in value))
    if isinstance(value, (float, str, bytes, complex)):
        return (type(value).__name__, value)
    # Anything else (e.g. a DataArray): identity is the only safe notion of equality.
    return ("object", id(value))


def _int_array(value: list | np.ndarray) -> np.ndarray:
    """``np.asarray(value)``, but lists of ints stay integer arrays.

    numpy turns ``[0, 2**63]`` into float64 (no common int dtype), which would
    lose IDs; such lists become uint64 (or, with negatives, stay object) arrays.
    """
    try:
        arr = np.asarray(value)
    except ValueError:  # ragged nested lists
        raise TypeError(f"Cannot use a ragged nested list as an index: {value!r:.60}") from None
    if isinstance(value, list) and arr.dtype.kind in "fO" and arr.size and all(
        is_int_like(v) for v in value
    ):
        ints = [int(v) for v in value]
        if min(ints) >= 0 and max(ints) <= _MAX_TRAIN_ID:
            return np.array(ints, dtype=np.uint64)
        return np.array(ints, dtype=object)
    return arr


def _array_key(arr: np.ndarray) -> tuple:
    """Key of a numeric array from its bytes: hashing 50,000 IDs then takes microseconds."""
    if arr.size == 0:
        return ("empty", arr.shape)  # [] is float64, but selects the same as empty int arrays
    if arr.ndim == 0:
        return _value_key(arr.item())
    kind = arr.dtype.kind
    if kind == "u" and arr.max() <= np.iinfo(np.int64).max:
        kind = "i"  # same numbers as a signed array: same key
    canonical = {"b": np.bool_, "i": np.int64, "u": np.uint64, "f": np.float64}[kind]
    data = np.ascontiguousarray(arr, dtype=canonical).tobytes()
    return ("array", kind, arr.shape, data)


def _render_part(x: Any) -> str:
    """Render one element of an index expression as it would be typed."""
    if x is Ellipsis:
        return "..."
    if isinstance(x, slice):
        parts = ["" if p is None else _render_part(p) for p in (x.start, x.stop)]
        if x.step is not None:
            parts.append(_render_part(x.step))
        return ":".join(parts)
    if is_int_like(x):
        return str(int(x))
    return repr(x)


class _SubscriptConstructor(type):
    """Metaclass letting ``by_id[...]`` construct an instance, like ``np.s_[...]``."""

    def __getitem__(cls, item):
        return cls(item)


class _TrainSelector(metaclass=_SubscriptConstructor):
    """Frozen wrapper of an index expression; compares and hashes by value."""

    __slots__ = ("value", "_key")

    def __init__(self, value: Any):
        if isinstance(value, np.ndarray):
            # Own a read-only copy so the selector cannot change under its hash.
            value = value.copy()
            value.flags.writeable = False
        elif isinstance(value, list):
            value = list(value)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "_key", None)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} objects are immutable")

    def __delattr__(self, name):
        raise AttributeError(f"{type(self).__name__} objects are immutable")

    def _get_key(self) -> tuple:
        # Computed on first use: building the key of a large ID array costs ms.
        if self._key is None:
            object.__setattr__(self, "_key", _value_key(self.value))
        return self._key

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self._get_key() == other._get_key()

    def __hash__(self):
        return hash((type(self).__name__, self._get_key()))

    def __reduce__(self):
        return (type(self), (self.value,))

    def __repr__(self):
        v = self.value
        if isinstance(v, tuple):
            inner = ", ".join(_render_part(x) for x in v)
            if len(v) == 1:
                inner += ","
        else:
            inner = _render_part(v)
        return f"{type(self).__name__}[{inner}]"


class by_id(_TrainSelector):
    """Select trains (or pulses) by ID: ``by_id[10000:10020:2]``, ``by_id[[10003, 10007]]``.

    Construct by subscription; the index expression is kept in ``.value``.
    Instances are immutable, hashable, equal when their values are equal, and
    pickle small.

    Examples
    --------
    >>> sel = by_id[10:20:2]
    >>> sel, sel.value
    (by_id[10:20:2], slice(10, 20, 2))
    >>> by_id[[1, 2]] == by_id[np.array([1, 2])]
    True
    """

    __slots__ = ()


class by_index(_TrainSelector):
    """Select trains (or pulses) by position: ``by_index[5:10]``, ``by_index[[0, 3]]``.

    Construct by subscription; the index expression is kept in ``.value``.

    Examples
    --------
    >>> by_index[..., 3, [1, 2]]
    by_index[..., 3, [1, 2]]
    >>> by_index[:5] == by_index[0:5]
    False
    """

    __slots__ = ()


# --------------------------------------------------------------------------- selection


def _as_train_ids(train_ids: Any) -> np.ndarray:
    arr = np.asarray(train_ids)
    if arr.ndim != 1:
        raise ValueError(f"train_ids must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.uint64)
    if arr.dtype.kind not in "ui":
        raise TypeError(f"train_ids must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "i" and arr.min() < 0:
        raise ValueError("train_ids must not be negative")
    arr = arr.astype(np.uint64, copy=False)
    # Sortedness is what makes searchsorted valid; checking costs one pass.
    if arr.size > 1 and not (arr[1:] >= arr[:-1]).all():
        raise ValueError("train_ids must be sorted in increasing order")
    return arr


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"{x.ndim}-d ndarray of dtype {x.dtype}"
    return type(x).__name__


def _type_error(sel: Any) -> TypeError:
    return TypeError(
        "Train selector must be a slice, an int, a list or array of ints, a bool array, "
        f"by_id[...], by_index[...] or a bool DataArray, not {_describe(sel)}"
    )


def _positions_from_index(n: int, sel: Any) -> np.ndarray:
    """Positions selected by a positional selector (slice, int, list, array)."""
    if isinstance(sel, slice):
        positions = np.arange(n)[sel]
        if sel.step is not None and sel.step < 0:
            positions = positions[::-1]  # the result is a set of trains: keep it sorted
        return positions
    if is_int_like(sel):
        i = int(sel)
        if not -n <= i < n:
            raise IndexError(f"Train index {i} out of range for {n} trains")
        return np.array([i + n if i < 0 else i], dtype=np.intp)
    if isinstance(sel, (list, np.ndarray)):
        arr = _int_array(sel)
        if isinstance(sel, list) and arr.dtype == object and arr.ndim == 1 and arr.size:
            # Only lists of ints beyond int64 get here: no such position exists.
            raise IndexError(f"Train index {max(sel, key=abs)} out of range for {n} trains")
        if arr.ndim == 0:
            raise _type_error(sel)  # 0-d int arrays were handled as int-like above
        if arr.size == 0 and (isinstance(sel, list) or arr.dtype.kind in "ui"):
            # [] converts to float64; an empty selection is still a valid selection.
            return np.zeros(0, dtype=np.intp)
        if arr.ndim != 1:
            raise ValueError(f"Train selection arrays must be 1-D, got shape {arr.shape}")
        if arr.dtype == np.bool_:
            if arr.shape[0] != n:
                raise ValueError(
                    f"Boolean train selection has length {arr.shape[0]}, "
                    f"but there are {n} trains"
                )
            return np.flatnonzero(arr)
        if arr.dtype.kind not in "ui":
            raise TypeError(
                f"Train positions must be integers or booleans, not dtype {arr.dtype}"
            )
        if arr.dtype.kind == "u":
            if arr.max() >= n:
                raise IndexError(f"Train index {int(arr.max())} out of range for {n} trains")
            return np.sort(arr.astype(np.intp))
        pos = arr.astype(np.int64)
        bad = (pos < -n) | (pos >= n)
        if bad.any():
            raise IndexError(
                f"Train index {int(pos[bad][0])} out of range for {n} trains"
            )
        pos = np.where(pos < 0, pos + n, pos)
        return np.sort(pos).astype(np.intp, copy=False)
    raise _type_error(sel)


def _id_bound(x: Any, which: str) -> int | None:
    if x is None:
        return None
    if not is_int_like(x):
        raise TypeError(f"by_id slice {which} must be an int train ID, not {type(x).__name__}")
    return int(x)


def _positions_by_id_slice(ids: np.ndarray, sel: slice) -> tuple[np.ndarray, str | None]:
    n = len(ids)
    start = _id_bound(sel.start, "start")
    stop = _id_bound(sel.stop, "stop")
    step = sel.step
    if step is not None:
        if not is_int_like(step):
            raise TypeError(f"by_id slice step must be an int, not {type(step).__name__}")
        if int(step) < 1:
            # ID ranges run forwards; EXtra-data would return a reversed/empty list.
            raise ValueError(f"by_id slice step must be positive, not {int(step)}")
        step = int(step)

    # searchsorted 'left' maps an ID to its own index, or to the first greater ID
    # when it is missing: exactly the end-mapping rules of API.md 2.4. IDs outside
    # the uint64 range are clamped first (numpy will not compare them).
    def position(train_id: int | None, default: int) -> int:
        if train_id is None:
            return default
        if train_id <= 0:
            return 0
        if train_id > _MAX_TRAIN_ID:
            return n
        return int(np.searchsorted(ids, np.uint64(train_id), side="left"))

    lo, hi = position(start, 0), position(stop, n)
    positions = np.arange(lo, max(lo, hi), step, dtype=np.intp)
    message = None
    if positions.size == 0:
        if n and start is not None and start > int(ids[-1]):
            message = (f"by_id start {start} is after the last train ID {int(ids[-1])}: "
                       "no trains selected")
        elif n and stop is not None and stop <= int(ids[0]):
            message = (f"by_id stop {stop} is before the first train ID {int(ids[0])}: "
                       "no trains selected")
        else:
            message = f"No trains selected by {by_id(sel)!r}"
    return positions, message


def _positions_by_id_values(
    ids: np.ndarray, requested: np.ndarray
) -> tuple[np.ndarray, str | None]:
    """Positions of the requested IDs present in *ids* (sorted, unique).

    *requested* is a 1-D integer array, or an object array of Python ints for
    values numpy cannot hold in one integer dtype.
    """
    n_requested = requested.size
    if n_requested == 0:
        return np.zeros(0, dtype=np.intp), None
    first_requested = int(requested[0])
    # Numbers outside the uint64 range are never train IDs (and cannot be cast).
    if requested.dtype == object:
        requested = np.array([v for v in requested.tolist() if 0 <= v <= _MAX_TRAIN_ID],
                             dtype=np.uint64)
    elif requested.dtype.kind == "i":
        requested = requested[requested >= 0]
    req = np.unique(requested.astype(np.uint64))
    idx = np.searchsorted(ids, req, side="left")
    hit = idx < len(ids)
    hit[hit] = ids[idx[hit]] == req[hit]
    positions = idx[hit].astype(np.intp, copy=False)
    message = None
    if positions.size == 0:
        if n_requested == 1:
            message = (f"Train ID {first_requested} is not in the current selection: "
                       "no trains selected")
        else:
            message = (f"None of the {n_requested} requested train IDs "
                       "are in the current selection: no trains selected")
    return positions, message


def _looks_like_dataarray(sel: Any) -> bool:
    # Duck-typed so the core never imports xarray; a Dataset's .values is a method.
    return (
        hasattr(sel, "dims") and hasattr(sel, "coords") and hasattr(sel, "values")
        and not callable(sel.values) and not isinstance(sel, np.ndarray)
    )


def _positions_by_id(ids: np.ndarray, value: Any) -> tuple[np.ndarray, str | None]:
    if isinstance(value, slice):
        return _positions_by_id_slice(ids, value)
    if is_int_like(value):
        return _positions_by_id_values(ids, np.array([int(value)], dtype=object))
    if isinstance(value, (list, np.ndarray)):
        arr = _int_array(value)
        if arr.size == 0 and (isinstance(value, list) or arr.dtype.kind in "uif"):
            return _positions_by_id_values(ids, np.zeros(0, dtype=np.uint64))
        if arr.ndim != 1:
            raise ValueError(f"by_id arrays must be 1-D, got shape {arr.shape}")
        if arr.dtype.kind not in "ui" and not (isinstance(value, list) and arr.dtype == object):
            raise TypeError(f"by_id train IDs must be integers, not dtype {arr.dtype}")
        return _positions_by_id_values(ids, arr)
    raise TypeError(
        "by_id[...] takes a slice of train IDs, a train ID, or a list or array of "
        f"train IDs, not {_describe(value)}"
    )


def _positions_by_dataarray(ids: np.ndarray, sel: Any) -> tuple[np.ndarray, str | None]:
    values = np.asarray(sel.values)
    if values.dtype != np.bool_:
        raise TypeError(
            f"A DataArray used to select trains must be boolean, not dtype {values.dtype}"
        )
    if "trainId" not in sel.coords:
        raise ValueError("A DataArray used to select trains needs a 'trainId' coordinate")
    tids = np.asarray(sel.coords["trainId"].values)
    if tids.dtype.kind not in "ui":
        raise TypeError(f"The 'trainId' coordinate must hold integers, not dtype {tids.dtype}")
    if values.ndim != 1 or tids.shape != values.shape:
        raise ValueError(
            "A DataArray used to select trains must be 1-D along its 'trainId' coordinate"
        )
    return _positions_by_id_values(ids, tids[values])


def _resolve(ids: np.ndarray, sel: Any) -> tuple[np.ndarray, str | None]:
    """Positions selected by *sel* plus an optional warning message (not yet warned)."""
    if isinstance(sel, by_index):
        return _resolve(ids, sel.value)
    if isinstance(sel, by_id):
        return _positions_by_id(ids, sel.value)
    if _looks_like_dataarray(sel):
        return _positions_by_dataarray(ids, sel)
    if isinstance(sel, (slice, list, np.ndarray)) or is_int_like(sel):
        return _positions_from_index(len(ids), sel), None
    raise _type_error(sel)


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


def select_train_positions(train_ids: Any, sel: Any, *, stacklevel: int = 2) -> np.ndarray:
    """Positions in *train_ids* of the trains selected by *sel*.

    Parameters
    ----------
    train_ids : array_like of uint64
        The current train IDs, sorted.
    sel : selector
        Any train selector of API.md 2.4 (see module docstring).
    stacklevel : int
        Passed to :func:`warnings.warn`, so face layers can point warnings at user code.

    Returns
    -------
    numpy.ndarray of intp
        Sorted, read-only positions (duplicates only for positional lists that
        repeat a position).

    Raises
    ------
    TypeError
        Unsupported selector type (float, tuple, str, None...) or dtype.
    IndexError
        Position out of range.
    ValueError
        Bool mask of the wrong length, non-1-D arrays, by_id step < 1, bool
        DataArray without a ``trainId`` coordinate.

    Warns
    -----
    UserWarning
        A ``by_id`` selection (or DataArray) that selects no trains.

    Examples
    --------
    >>> ids = np.arange(10000, 10010, dtype=np.uint64)
    >>> select_train_positions(ids, by_id[10003:10100:3])
    array([3, 6, 9])
    >>> select_train_positions(ids, [-1, 0])
    array([0, 9])
    """
    ids = _as_train_ids(train_ids)
    positions, message = _resolve(ids, sel)
    if message is not None:
        warnings.warn(message, UserWarning, stacklevel=stacklevel)
    return _readonly(np.ascontiguousarray(positions, dtype=np.intp))


def select_train_ids(train_ids: Any, sel: Any, *, stacklevel: int = 2) -> np.ndarray:
    """Train IDs selected from *train_ids* by the selector *sel*.

    Same rules, errors and warnings as :func:`~xfeldata.core.trains.select_train_positions`.

    Parameters
    ----------
    train_ids : array_like of uint64
        The current train IDs, sorted.
    sel : selector
        slice, int-like, list/array of positions, bool mask, ``by_index[...]``,
        ``by_id[...]`` or a bool ``xarray.DataArray`` with a ``trainId`` coordinate.
    stacklevel : int
        Passed to :func:`warnings.warn`.

    Returns
    -------
    numpy.ndarray of uint64
        Sorted, read-only selected train IDs.

    Examples
    --------
    >>> ids = np.arange(10000, 10010, dtype=np.uint64)
    >>> select_train_ids(ids, by_id[10003:10100:3])
    array([10003, 10006, 10009], dtype=uint64)
    >>> select_train_ids(ids, by_id[[10001, 20000, 10001]])
    array([10001], dtype=uint64)
    >>> select_train_ids(ids, np.s_[-2:])
    array([10008, 10009], dtype=uint64)
    >>> select_train_ids(ids, 4)
    array([10004], dtype=uint64)
    """
    ids = _as_train_ids(train_ids)
    positions, message = _resolve(ids, sel)
    if message is not None:
        warnings.warn(message, UserWarning, stacklevel=stacklevel)
    return _readonly(ids[positions])


# --------------------------------------------------------------------------- splitting


def _check_count(x: Any, name: str) -> int | None:
    if x is None:
        return None
    if not is_int_like(x):
        raise TypeError(f"{name} must be an int, not {type(x).__name__}")
    if int(x) < 1:
        # EXtra-data asserts here (AssertionError); a ValueError says what is wrong.
        raise ValueError(f"{name} must be at least 1, got {int(x)}")
    return int(x)


def split_trains(n_trains: int, parts: int | None = None,
                 trains_per_part: int | None = None) -> list[slice]:
    """Split ``n_trains`` positions into contiguous, nearly equal slices.

    ``n_parts = ceil(n_trains / trains_per_part)``, raised to ``min(parts, n_trains)``
    if both are given; with only ``parts`` it is ``min(parts, n_trains)``. Part
    ``i`` covers ``[i*n // n_parts, (i+1)*n // n_parts)``, so sizes differ by at
    most one.

    Parameters
    ----------
    n_trains : int
        Number of trains (>= 0); 0 gives an empty list.
    parts : int, optional
        Minimum number of parts.
    trains_per_part : int, optional
        Maximum trains in each part.

    Returns
    -------
    list of slice
        Slices with int ``start``/``stop`` and no step.

    Raises
    ------
    ValueError
        Neither ``parts`` nor ``trains_per_part`` given, or a value below 1.
    TypeError
        Non-integer arguments.

    Examples
    --------
    >>> split_trains(11, trains_per_part=8)
    [slice(0, 5, None), slice(5, 11, None)]
    >>> split_trains(5, parts=3)
    [slice(0, 1, None), slice(1, 3, None), slice(3, 5, None)]
    """
    parts = _check_count(parts, "parts")
    trains_per_part = _check_count(trains_per_part, "trains_per_part")
    if parts is None and trains_per_part is None:
        raise ValueError("Either parts or trains_per_part must be specified")
    if not is_int_like(n_trains):
        raise TypeError(f"n_trains must be an int, not {type(n_trains).__name__}")
    n = int(n_trains)
    if n < 0:
        raise ValueError(f"n_trains must not be negative, got {n}")
    if n == 0:
        return []

    n_parts = 0
    if trains_per_part is not None:
        n_parts = math.ceil(n / trains_per_part) if n < 2**52 else -(-n // trains_per_part)
    if parts is not None:
        n_parts = max(n_parts, min(parts, n))

    if n < 2**31:  # i * n stays far below the int64 limit
        bounds = ((np.arange(n_parts + 1, dtype=np.int64) * n) // n_parts).tolist()
    else:
        bounds = [i * n // n_parts for i in range(n_parts + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


# --------------------------------------------------------------------------- per-entry ROI


def roi_shape(orig_shape: tuple[int, ...], roi: Any) -> tuple[int, ...]:
    """Shape of one entry of shape *orig_shape* after indexing it with *roi*.

    Any numpy index expression works (ints, slices, Ellipsis, newaxis, int or
    bool arrays). The index is applied to a read-only broadcast view of a single
    byte (all strides 0), so basic indexing allocates nothing and bounds are
    checked exactly as for real data.

    Parameters
    ----------
    orig_shape : tuple of int
        Shape of one entry (without the train/pulse axis).
    roi : index expression
        A non-tuple index is wrapped in a 1-tuple.

    Returns
    -------
    tuple of int

    Examples
    --------
    >>> roi_shape((512, 128), np.s_[:, 10:20])
    (512, 10)
    >>> roi_shape((512, 128), 0)
    (128,)
    >>> roi_shape((16, 512, 128), (..., [1, 2]))
    (16, 512, 2)
    """
    if not isinstance(roi, tuple):
        roi = (roi,)
    dummy = np.broadcast_to(np.zeros((), dtype=np.uint8), tuple(orig_shape))
    return tuple(int(d) for d in dummy[roi].shape)
