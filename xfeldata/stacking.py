"""Stack the modules of one train into one array (EXtra-data's ``stacking``).

``stack_data`` stacks ``train[source][key]`` for the sources of a train dict
(ordered by the numbers in their names); ``stack_detector_data`` places each
module's array at its module number along a new axis, filling missing
modules, or returns a lazy :class:`StackView`.
"""
from __future__ import annotations

import re

import numpy as np

__all__ = ['stack_data', 'stack_detector_data', 'StackView']


def _numbers(name):
    return tuple(int(x) for x in re.findall(r'\d+', name))


def stack_data(train, data, axis=-3, xcept=()):
    """Stack ``train[src][data]`` over the train's sources (not in ``xcept``).

    Sources are ordered by the integers in their names. Missing modules cannot
    be filled; use :func:`stack_detector_data` for that.

    Raises
    ------
    ValueError
        Every source is excluded, or the arrays have different dtypes.
    """
    sources = sorted((s for s in train if s not in xcept), key=lambda s: (_numbers(s), s))
    if not sources:
        raise ValueError("No sources left to stack (all excluded by xcept)")
    arrays = [np.asarray(train[s][data]) for s in sources]
    dtypes = {a.dtype for a in arrays}
    if len(dtypes) > 1:
        raise ValueError(f"Cannot stack arrays of different dtypes: {sorted(map(str, dtypes))}")
    return np.stack(arrays, axis=axis)


def _fill_for(dtype, fillvalue):
    dtype = np.dtype(dtype)
    if fillvalue is None:
        return np.nan if dtype.kind in 'fc' else 0
    try:
        if dtype.kind in 'iub':
            ok = float(fillvalue) == int(fillvalue) and \
                np.can_cast(np.min_scalar_type(int(fillvalue)), dtype)
        else:
            ok = np.isnan(fillvalue) or np.array(fillvalue).astype(dtype) == fillvalue
    except (ValueError, TypeError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"fillvalue {fillvalue!r} cannot be represented as {dtype}")
    return fillvalue


def _modules(train, data, modules, pattern, starts_at):
    """{module number: array}, the common dtype and per-module shape."""
    if not train:
        raise ValueError("No data")
    rx = re.compile(pattern)
    arrays = {}
    dtype = shape = None
    for src, d in train.items():
        if data not in d:
            continue
        m = rx.search(src)
        if m is None:
            raise ValueError(f"Source {src!r} does not match the module pattern {pattern!r}")
        modno = int(m.group(1)) - starts_at
        arr = np.asarray(d[data])
        if dtype is None:
            dtype = arr.dtype
        elif arr.dtype != dtype:
            raise ValueError(f"Modules have different dtypes: {dtype} and {arr.dtype} "
                             f"({src})")
        if arr.size == 0 and arr.ndim and arr.shape[0] == 0:
            continue  # no data for this module in this train: treated as missing
        if shape is None:
            shape = arr.shape
        elif arr.shape != shape:
            raise ValueError(f"Modules have different shapes: {shape} and {arr.shape} "
                             f"({src})")
        if not 0 <= modno < modules:
            raise IndexError(f"Module {modno} (from {src!r}) is out of range for "
                             f"{modules} modules")
        arrays[modno] = arr
    if dtype is None:
        raise ValueError(f"No source in the train has {data!r}")
    if shape is None:
        raise ValueError(f"No data for {data!r}: every module's array is empty")
    return arrays, dtype, shape


def _stack_axis(axis, ndim):
    n = ndim + 1
    if not -n <= axis < n:
        raise np.exceptions.AxisError(axis, n)
    return axis % n


def stack_detector_data(train, data, axis=-3, modules=16, fillvalue=None, real_array=True,
                        *, pattern=r'/DET/(\d+)CH', starts_at=0):
    """Stack one key of a detector's modules in a train, inserting a module axis.

    Module number = the first group of ``pattern`` in the source name minus
    ``starts_at``. Missing modules (and modules with zero-length arrays) are
    filled with ``fillvalue`` (NaN for float data, 0 otherwise).

    Returns
    -------
    numpy.ndarray, or StackView if ``real_array=False`` (no copy made).

    Raises
    ------
    ValueError
        Empty train, a source not matching ``pattern``, different dtypes or
        shapes, a fill value the dtype cannot hold.
    IndexError
        A module number >= ``modules``.
    """
    arrays, dtype, shape = _modules(train, data, modules, pattern, starts_at)
    fill = _fill_for(dtype, fillvalue)
    if not real_array:
        return StackView(arrays, modules, shape, dtype, fill, stack_axis=axis)
    ax = _stack_axis(axis, len(shape))
    out_shape = shape[:ax] + (modules,) + shape[ax:]
    out = np.empty(out_shape, dtype)
    view = np.moveaxis(out, ax, 0)
    for m in range(modules):
        if m in arrays:
            view[m] = arrays[m]
        else:
            view[m] = fill
    return out


class StackView:
    """A lazy stack of module arrays: index one module (or all) along the stack axis."""

    def __init__(self, data, nmodules, mod_shape, dtype, fillvalue, stack_axis=-3):
        self._data = data
        self.nmodules = nmodules
        self.mod_shape = tuple(mod_shape)
        self.dtype = np.dtype(dtype)
        self.fillvalue = fillvalue
        self._axis = _stack_axis(stack_axis, len(self.mod_shape))
        self.stack_axis = stack_axis

    @property
    def shape(self):
        s = self.mod_shape
        return s[:self._axis] + (self.nmodules,) + s[self._axis:]

    @property
    def ndim(self):
        return len(self.mod_shape) + 1

    def __repr__(self):
        return f"<VirtualStack (shape={self.shape}, {len(self._data)}/{self.nmodules} " \
               f"modules, dtype={self.dtype})>"

    def _module(self, m):
        if m in self._data:
            return self._data[m]
        return np.full(self.mod_shape, self.fillvalue, self.dtype)

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        if Ellipsis in key:
            i = key.index(Ellipsis)
            fill = self.ndim - (len(key) - 1 - sum(k is None for k in key))
            key = key[:i] + (slice(None),) * fill + key[i + 1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        item = key[self._axis]
        rest = key[:self._axis] + key[self._axis + 1:]
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            m = int(item)
            if m < 0:
                m += self.nmodules
            if not 0 <= m < self.nmodules:
                raise IndexError(f"module {item} out of range for {self.nmodules} modules")
            return self._module(m)[rest]
        if isinstance(item, slice) and item == slice(None):
            return self.asarray()[key]
        raise Exception("VirtualStack can only select a single module or all modules "
                        "along the stack axis")

    def asarray(self):
        out = np.empty(self.shape, self.dtype)
        view = np.moveaxis(out, self._axis, 0)
        for m in range(self.nmodules):
            view[m] = self._module(m)
        return out

    def __array__(self, dtype=None, copy=None):
        a = self.asarray()
        return a if dtype is None else a.astype(dtype)

    def squeeze(self, axis=None):
        """Drop length-1 axes (``axis`` must be of length 1)."""
        shape = self.shape
        if axis is None:
            axes = [i for i, n in enumerate(shape) if n == 1]
        else:
            axes = [axis] if isinstance(axis, (int, np.integer)) else list(axis)
            norm = []
            for a in axes:
                if not -len(shape) <= a < len(shape):
                    raise np.exceptions.AxisError(a, len(shape))
                a %= len(shape)
                if shape[a] != 1:
                    raise ValueError(f"cannot select an axis to squeeze out which has size "
                                     f"not equal to one (axis {a} has size {shape[a]})")
                norm.append(a)
            axes = norm
        if self._axis in axes:
            return self.asarray().squeeze(axis=tuple(axes))
        mod_axes = tuple(a if a < self._axis else a - 1 for a in axes)
        data = {m: a.squeeze(axis=mod_axes) for m, a in self._data.items()}
        new_shape = tuple(n for i, n in enumerate(self.mod_shape) if i not in mod_axes)
        new_axis = self._axis - sum(1 for a in mod_axes if a < self._axis)
        return StackView(data, self.nmodules, new_shape, self.dtype, self.fillvalue,
                         stack_axis=new_axis)
