"""Frozen records describing what a synthetic file or run contains.

Nothing here touches the disk: records are built, compared and evolved
(``attrs.evolve``); :mod:`._writer` turns them into HDF5 files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np
from attrs import field as _field  # Key has a field named ``attrs``

from ._values import as_dtype

__all__ = [
    "FORMAT_VERSIONS",
    "SECTIONS",
    "ControlSource",
    "FileSpec",
    "InstrumentSource",
    "Key",
    "Source",
    "as_key",
]

#: Every format version the writer can produce.
FORMAT_VERSIONS = ("0.5", "1.0", "1.1", "1.2", "1.3")
#: Sections an instrument-like source can live in.
SECTIONS = ("INSTRUMENT", "REDUCTION", "ERRATA")
FILLS = ("pattern", "train_id", "entry", "count", "index", "zeros")


# -- helpers for array-valued fields -----------------------------------------

def _opt_array_eq(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return a.dtype == b.dtype and np.array_equal(a, b)


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr = np.array(arr)  # own copy: callers may keep mutating theirs
    arr.flags.writeable = False
    return arr


def _uint64_array(x) -> np.ndarray:
    return _readonly(np.asarray(x, dtype=np.uint64).reshape(-1))


def _opt_uint64_array(x):
    return None if x is None else _uint64_array(x)


def _opt_bool_array(x):
    return None if x is None else _readonly(np.asarray(x, dtype=bool).reshape(-1))


def _opt_int32_array(x):
    return None if x is None else _readonly(np.asarray(x, dtype=np.int32).reshape(-1))


_ARRAY_EQ = attrs.cmp_using(eq=np.array_equal)
_OPT_ARRAY_EQ = attrs.cmp_using(eq=_opt_array_eq)


# -- keys --------------------------------------------------------------------

def _dtype_eq(a: np.dtype, b: np.dtype) -> bool:
    # numpy ignores dtype metadata in ==, which is where vlen str/bytes differ.
    return a == b and (a.metadata or {}) == (b.metadata or {})


def _shape(x) -> tuple[int, ...]:
    return tuple(int(d) for d in x)


@attrs.frozen(eq=True, hash=False)
class Key:
    """One dataset (one key) of a source.

    Parameters
    ----------
    dtype : dtype-like
        numpy dtype; ``str`` gives vlen UTF-8, ``bytes`` vlen ASCII strings;
        structured (compound) dtypes with numeric fields are allowed.
    shape : tuple of int
        Shape of one entry (``()`` for scalars).
    fill : str or number
        Value rule (see :mod:`xfeldata.testing._values`): ``'pattern'``,
        ``'train_id'``, ``'entry'``, ``'count'``, ``'count:<group>'``,
        ``'index'``, ``'zeros'``, or a constant (number or array broadcast
        to the entry shape).
    attrs : mapping
        HDF5 attributes; for control keys they go on the property group, for
        instrument keys on the dataset (units: ``unitSymbol``, ``unitName``,
        ``metricPrefixSymbol``, ``metricPrefixName``...).
    value_attrs : mapping
        Control keys only: attributes of the ``value`` dataset.
    chunks : tuple of int, optional
        HDF5 chunk shape (including axis 0); default: h5py's guess.
    compression, compression_opts, shuffle
        ``'gzip'`` (deflate) with its level, optionally after byte shuffle.
    resizable : bool
        ``maxshape=(None,)+shape`` (raw DAQ style) if True, else
        ``maxshape == shape`` (corrected detector data).

    Examples
    --------
    >>> import numpy as np
    >>> from xfeldata.testing import Key
    >>> Key(np.float32, (1000,), attrs={'unitSymbol': 'J'}).shape
    (1000,)
    """

    dtype: np.dtype = _field(converter=as_dtype, eq=attrs.cmp_using(eq=_dtype_eq))
    shape: tuple[int, ...] = _field(default=(), converter=_shape)
    fill: Any = _field(
        default="pattern", converter=lambda f: f.tolist() if isinstance(f, np.ndarray) else f
    )
    attrs: Mapping[str, Any] = _field(factory=dict, converter=dict)
    value_attrs: Mapping[str, Any] = _field(factory=dict, converter=dict)
    chunks: tuple[int, ...] | None = _field(
        default=None, converter=lambda c: None if c is None else _shape(c)
    )
    compression: str | None = _field(default=None)
    compression_opts: Any = None
    shuffle: bool = False
    resizable: bool = True

    @compression.validator
    def _check_compression(self, attribute, value):
        if value not in (None, "gzip"):
            raise ValueError(f"compression must be None or 'gzip', got {value!r}")

    @fill.validator
    def _check_fill(self, attribute, value):
        if isinstance(value, str):
            if value not in FILLS and not value.startswith("count:"):
                raise ValueError(f"unknown fill {value!r}")
        else:
            arr = np.asarray(value)
            if arr.dtype.kind not in "iubf":
                raise TypeError(f"fill must be a rule name or numbers, not {value!r}")


KeyLike = Key | Any | tuple


def as_key(x: KeyLike) -> Key:
    """Coerce ``Key | dtype | (dtype, shape) | (dtype, shape, attrs)`` to a Key.

    >>> as_key(('u2', (4,))).shape
    (4,)
    """
    if isinstance(x, Key):
        return x
    if isinstance(x, tuple):
        if len(x) == 2:
            return Key(x[0], x[1])
        if len(x) == 3:
            return Key(x[0], x[1], attrs=x[2])
        raise ValueError(f"key tuple must be (dtype, shape[, attrs]), got {x!r}")
    return Key(x)


def _keys(mapping: Mapping[str, KeyLike]) -> dict[str, Key]:
    out = {}
    for name, spec in dict(mapping).items():
        if not name or name.startswith(".") or name.endswith(".") or ".." in name:
            raise ValueError(f"bad key name {name!r}")
        out[name] = as_key(spec)
    return out


def _control_keys(mapping: Mapping[str, KeyLike]) -> dict[str, Key]:
    out = {}
    for name, key in _keys(mapping).items():
        # Accept the reader's spelling 'prop.value' as well as 'prop'.
        name = name.removesuffix(".value")
        if name.endswith(".timestamp"):
            raise ValueError(f"control key {name!r}: timestamps are written automatically")
        out[name] = key
    return out


# -- sources -----------------------------------------------------------------

@attrs.frozen(eq=True, hash=False)
class ControlSource:
    """A slow-data (Karabo device) source: CONTROL + RUN + INDEX/<name>.

    Parameters
    ----------
    name : str
        Device ID, e.g. ``'SA1_XTD2_XGM/DOOCS/MAIN'`` (no ``:``).
    keys : mapping
        Property path (dotted, without ``.value``) -> :class:`Key` or
        dtype-like or ``(dtype, shape)``. Each becomes
        ``CONTROL/<name>/<path>/{value,timestamp}`` with one entry per
        train and ``RUN/<name>/<path>/{value,timestamp}`` with one entry.
    run_only : bool
        Write the keys to RUN only; ``CONTROL/<name>`` stays an empty group
        and INDEX keeps count 1 per train (as in the reference mock files).
    no_data : bool
        The device saved nothing: count 0 for every train and CONTROL
        datasets of length 0 (RUN values are still written).
    run_keys : mapping
        Extra RUN-only properties with literal values (``str`` is written as
        vlen ASCII, numbers/arrays as given).
    device_class : str, optional
        Written as ``RUN/<name>/classId/value``.

    Examples
    --------
    >>> import numpy as np
    >>> from xfeldata.testing import ControlSource
    >>> xgm = ControlSource('SA1_XTD2_XGM/DOOCS/MAIN',
    ...                     {'beamPosition.ixPos': np.float32, 'state': str},
    ...                     device_class='DoocsXGM')
    >>> sorted(xgm.key_names())
    ['beamPosition.ixPos.timestamp', 'beamPosition.ixPos.value', 'state.timestamp', 'state.value']
    """

    name: str
    keys: Mapping[str, Key] = attrs.field(factory=dict, converter=_control_keys)
    run_only: bool = False
    no_data: bool = False
    run_keys: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)
    device_class: str | None = None

    def __attrs_post_init__(self):
        if not self.name or ":" in self.name or self.name.startswith("/"):
            raise ValueError(f"bad control source name {self.name!r}")
        if self.run_only and self.no_data:
            raise ValueError("a source cannot be both run_only and no_data")

    # Plain class attributes (not fields) so code can treat sources alike.
    section = "CONTROL"
    legacy_names = ()

    @property
    def index_groups(self) -> tuple[str, ...]:
        return ("",)

    def key_names(self) -> frozenset[str]:
        """Keys a reader lists under CONTROL (none for a RUN-only source)."""
        if self.run_only:
            return frozenset()
        return frozenset(k + s for k in self.keys for s in (".value", ".timestamp"))

    def run_key_names(self) -> frozenset[str]:
        """Property paths (dotted, no suffix) present in RUN."""
        names = set(self.keys) | set(self.run_keys)
        if self.device_class is not None:
            names.add("classId")
        return frozenset(names)

    def counts_for(self, group: str, n_trains: int) -> np.ndarray:
        if group != "":
            raise KeyError(group)
        return np.full(n_trains, 0 if self.no_data else 1, dtype=np.uint64)


def _counts(x) -> int | np.ndarray:
    if isinstance(x, (int, np.integer)):
        if x < 0:
            raise ValueError("counts must be >= 0")
        return int(x)
    arr = np.asarray(x)
    if arr.ndim != 1 or (arr.size and (arr.dtype.kind not in "iu" or arr.min() < 0)):
        raise ValueError(f"counts must be an int or a 1-D array of ints >= 0, got {x!r}")
    return _readonly(arr.astype(np.uint64))


def _groups(mapping) -> dict[str, int | np.ndarray]:
    out = {}
    for g, c in dict(mapping).items():
        if not g or "/" in g or "." in g:
            raise ValueError(f"bad index group name {g!r}")
        out[g] = _counts(c)
    return out


def _groups_eq(a: Mapping, b: Mapping) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(np.asarray(a[g]), np.asarray(b[g])) and type(a[g]) is type(b[g])
        for g in a
    )


@attrs.frozen(eq=True, hash=False)
class InstrumentSource:
    """A fast-data source (output channel): ``<section>/<name>/<group>/...``.

    Parameters
    ----------
    name : str
        ``'device:channel'`` (auxiliary sections may omit the channel).
    keys : mapping
        Dotted key (first component = index group) -> :class:`Key` or
        dtype-like or ``(dtype, shape)``.
    groups : mapping
        Index group -> entries per train, an int or a per-train sequence (0
        allowed). Groups of keys not listed get 1 entry per train.
    section : str
        ``'INSTRUMENT'`` (listed in ``dataSources``), ``'REDUCTION'`` or
        ``'ERRATA'`` (listed in ``METADATA/auxiliarySources``).
    legacy_names : tuple of str
        Old names written as HDF5 soft links to this source (INSTRUMENT only).
    extra_rows : int
        Datasets get this many zero rows beyond the indexed data.
    train_id_keys : bool, optional
        Add a ``<group>.trainId`` uint64 key per group (default: True in
        INSTRUMENT, False in the auxiliary sections, like the mock files).

    Examples
    --------
    >>> import numpy as np
    >>> from xfeldata.testing import InstrumentSource
    >>> cam = InstrumentSource('SPB_IRU_CAM/CAM/SIDEMIC:daqOutput',
    ...                        {'data.image.pixels': ('u2', (8, 6))},
    ...                        groups={'data': [1, 0, 1]})
    >>> sorted(cam.all_keys())
    ['data.image.pixels', 'data.trainId']
    """

    name: str
    keys: Mapping[str, Key] = attrs.field(factory=dict, converter=_keys)
    groups: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_groups, eq=attrs.cmp_using(eq=_groups_eq)
    )
    section: str = "INSTRUMENT"
    legacy_names: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    extra_rows: int = 0
    train_id_keys: bool | None = None

    def __attrs_post_init__(self):
        if self.section not in SECTIONS:
            raise ValueError(f"section must be one of {SECTIONS}, got {self.section!r}")
        if not self.name or self.name.startswith("/") or self.name.endswith("/"):
            raise ValueError(f"bad source name {self.name!r}")
        if self.section == "INSTRUMENT":
            device, sep, channel = self.name.partition(":")
            if not sep or not device or not channel:
                raise ValueError(f"instrument source {self.name!r} must be 'device:channel'")
        if self.legacy_names and self.section != "INSTRUMENT":
            raise ValueError("legacy names exist only for INSTRUMENT sources")
        for leg in self.legacy_names:
            if ":" not in leg or leg == self.name:
                raise ValueError(f"bad legacy name {leg!r}")
        if self.extra_rows < 0:
            raise ValueError("extra_rows must be >= 0")

    @property
    def index_groups(self) -> tuple[str, ...]:
        """Index groups, sorted."""
        return tuple(sorted(set(self.groups) | {k.split(".", 1)[0] for k in self.keys}))

    def all_keys(self) -> dict[str, Key]:
        """Keys as written, including the automatic ``<group>.trainId`` ones."""
        keys = dict(self.keys)
        add = self.train_id_keys
        if add is None:
            add = self.section == "INSTRUMENT"
        if add:
            for g in self.index_groups:
                keys.setdefault(f"{g}.trainId", Key(np.uint64, fill="train_id"))
        return keys

    def key_names(self) -> frozenset[str]:
        return frozenset(self.all_keys())

    def counts_for(self, group: str, n_trains: int) -> np.ndarray:
        """Entries per train of ``group`` for a file of ``n_trains`` trains."""
        if group not in self.index_groups:
            raise KeyError(group)
        c = self.groups.get(group, 1)
        if isinstance(c, int):
            return np.full(n_trains, c, dtype=np.uint64)
        if len(c) != n_trains:
            raise ValueError(
                f"{self.name}/{group}: {len(c)} counts given for {n_trains} trains"
            )
        return np.asarray(c, dtype=np.uint64)

    def take_trains(self, positions) -> InstrumentSource:
        """The same source restricted to some trains (per-train counts sliced)."""
        groups = {
            g: (c if isinstance(c, int) else np.asarray(c)[positions])
            for g, c in self.groups.items()
        }
        return attrs.evolve(self, groups=groups)


Source = ControlSource | InstrumentSource


# -- one file ----------------------------------------------------------------

def _sources(x) -> tuple:
    srcs = tuple(x)
    for s in srcs:
        if not isinstance(s, (ControlSource, InstrumentSource)):
            raise TypeError(f"not a source record: {s!r}")
    return srcs


@attrs.frozen(eq=True, hash=False)
class FileSpec:
    """Everything needed to write one EuXFEL HDF5 file.

    Parameters
    ----------
    train_ids : array_like of uint64
        ``INDEX/trainId`` rows as written (zeros or out-of-order IDs allowed,
        to make invalid files).
    sources : sequence of ControlSource / InstrumentSource
    format_version : str
        One of ``FORMAT_VERSIONS``.
    flag : array_like of bool, optional
        Validity per train (True = train ID from the time server). Encoded
        per version: ``INDEX/flag`` = 1/0, inverted (0 = valid) for 1.1. Not
        allowed for 0.5 (no flag dataset). Default: all valid.
    raw_flag : array_like of int32, optional
        Exact ``INDEX/flag`` values (overrides ``flag``).
    timestamps : bool or array_like
        ``INDEX/timestamp``: True -> epoch + (tid - origin) * 100 ms,
        False -> zeros (unknown), or explicit values. Ignored for 0.5.
    timestamp_origin : int, optional
        Train ID stamped with the epoch (default: the smallest non-zero ID).
    old_index : bool
        Write ``first/last/status`` instead of ``first/count``.
    pad_trainids_to : int, optional
        Pad ``INDEX/trainId`` (and timestamp/flag/origin) with zeros.
    pad_source_index : bool
        Pad the per-source index arrays to the same length too.
    run, proposal, sequence : int
    category : str
        ``'RAW'`` or ``'CORR'``.
    aggregator : str
        e.g. ``'DA01'``, ``'AGIPD00'``.
    source_list_multiple : int
        Pad source lists with empty strings to a multiple of this.
    aux_list : bool, optional
        Write ``METADATA/auxiliarySources`` (default: only if there are
        auxiliary sources).
    unlisted_index : tuple of str
        Control-style ``INDEX/<name>/{first,count}`` entries for sources not
        listed anywhere (as in mock JUNGFRAU module files).

    Examples
    --------
    >>> import numpy as np
    >>> from xfeldata.testing import FileSpec, ControlSource
    >>> spec = FileSpec(np.arange(10000, 10010), [ControlSource('A/B/C', {'x': 'f8'})],
    ...                 format_version='1.0', run=5, aggregator='DA02')
    >>> spec.filename
    'RAW-R0005-DA02-S00000.h5'
    """

    train_ids: np.ndarray = attrs.field(converter=_uint64_array, eq=_ARRAY_EQ)
    sources: tuple = attrs.field(default=(), converter=_sources)
    format_version: str = "1.2"
    flag: np.ndarray | None = attrs.field(
        default=None, converter=_opt_bool_array, eq=_OPT_ARRAY_EQ
    )
    raw_flag: np.ndarray | None = attrs.field(
        default=None, converter=_opt_int32_array, eq=_OPT_ARRAY_EQ
    )
    timestamps: Any = attrs.field(
        default=True,
        converter=lambda t: t if isinstance(t, bool) else _uint64_array(t),
        eq=attrs.cmp_using(eq=lambda a, b: np.array_equal(np.asarray(a), np.asarray(b))),
    )
    timestamp_origin: int | None = None
    old_index: bool = False
    pad_trainids_to: int | None = None
    pad_source_index: bool = False
    run: int = 1
    proposal: int = 700000
    sequence: int = 0
    category: str = "RAW"
    aggregator: str = "DA01"
    source_list_multiple: int = 32
    aux_list: bool | None = None
    unlisted_index: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    run_type: str = "Test DAQ"
    sample: str = "No Sample"
    creation_date: str = "20240301T120000Z"
    update_date: str = "20240301T120500Z"
    daq_library: str = "1.9.0"
    karabo_framework: str = "2.7.0"

    def __attrs_post_init__(self):
        n = len(self.train_ids)
        if self.format_version not in FORMAT_VERSIONS:
            raise ValueError(
                f"format_version must be one of {FORMAT_VERSIONS}, got {self.format_version!r}"
            )
        for name, arr in (("flag", self.flag), ("raw_flag", self.raw_flag)):
            if arr is not None:
                if self.format_version == "0.5":
                    raise ValueError(f"{name}: format 0.5 files have no INDEX/flag")
                if len(arr) != n:
                    raise ValueError(f"{name} has {len(arr)} entries for {n} trains")
        if not isinstance(self.timestamps, bool) and len(self.timestamps) != n:
            raise ValueError(f"timestamps has {len(self.timestamps)} entries for {n} trains")
        if self.pad_trainids_to is not None and self.pad_trainids_to < n:
            raise ValueError(f"pad_trainids_to={self.pad_trainids_to} < {n} trains")
        if self.category not in ("RAW", "CORR") and not self.category.isupper():
            raise ValueError(f"bad category {self.category!r}")
        seen: dict[tuple[str, str], str] = {}
        for src in self.sources:
            # CONTROL and INSTRUMENT names never collide (':'), but the same
            # name twice in one section, or a legacy alias of an existing
            # source, would write two sources into one HDF5 group.
            section = "INSTRUMENT" if src.section == "INSTRUMENT" else src.section
            for nm in (src.name,) + tuple(src.legacy_names):
                if (section, nm) in seen:
                    raise ValueError(f"source name {nm!r} used twice in {section}")
                seen[(section, nm)] = src.name
            for g in src.index_groups:
                src.counts_for(g, n)  # raises if per-train counts do not fit
            if isinstance(src, InstrumentSource):
                for k, key in src.all_keys().items():
                    if (isinstance(key.fill, str) and key.fill.startswith("count:")
                            and key.fill[6:] not in src.index_groups):
                        raise ValueError(f"{src.name}.{k}: no group {key.fill[6:]!r}")
        # Aux sources share INDEX with regular ones: names must not clash.
        index_names = [s.name for s in self.sources] + list(self.unlisted_index)
        for s in self.sources:
            index_names.extend(s.legacy_names)
        if len(set(index_names)) != len(index_names):
            raise ValueError("two sources would share an INDEX group")

    @property
    def filename(self) -> str:
        """``<CATEGORY>-R<run:04d>-<AGG>-S<seq:05d>.h5``."""
        return f"{self.category}-R{self.run:04d}-{self.aggregator}-S{self.sequence:05d}.h5"

    @property
    def n_trains(self) -> int:
        return len(self.train_ids)
