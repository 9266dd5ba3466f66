"""Selection recipes: run-independent selections as values (DESIGN.md decision 3).

A :class:`Recipe` is a tuple of *steps*, each a frozen record of one selection
operation with its arguments in a canonical, hashable form. It is built without
a run, compares and hashes structurally, pickles small, and is applied to a
DataCollection (or, for train selections, a SourceData or KeyData) by calling
the object's public methods in order. That makes "a recipe gives the same result
as the equivalent chain of method calls" true by construction, and keeps this
module free of files: the faces do the resolving.

=====================  ==========================================  ==========================
step                   holds                                       applied as
=====================  ==========================================  ==========================
:class:`Select`        :class:`Globs` or :class:`Names`            ``data.select(argument)``
:class:`Deselect`      :class:`Globs` or :class:`Names`            ``data.deselect(argument)``
:class:`Require`       ``all`` flag, ``warn_drop_trains_frac``     ``data.select(data.selection,
                                                                   require_all=..., ...)``
:class:`SelectTrains`  a ``by_id[...]`` or ``by_index[...]``       ``data.select_trains(sel)``
:class:`Union`         a tuple of recipes                          ``r0(data).union(r1(data),
                                                                   ...)``
=====================  ==========================================  ==========================

Canonical forms (so equivalent spellings compare and hash equal):

* glob forms of ``select``/``deselect`` (a glob and a key glob, a list of globs
  and pairs) become sorted, de-duplicated ``(source glob, key glob)`` pairs;
* the dict form becomes sorted ``(source, frozenset of keys or None)`` items,
  with ``None``, ``set()`` and ``{}`` all meaning "the current keys";
* ``select(..., require_all=True)`` is ``Select`` followed by ``Require``;
* train selectors are wrapped: plain positions in ``by_index``, a bool
  DataArray becomes ``by_id`` of its selected train IDs; lists of ints or bools
  become read-only arrays, numpy integers Python ints;
* nested unions are flattened (union is associative).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, TypeVar

import attrs
import numpy as np

from .names import is_int_like
from .selection import selection_pairs
from .trains import (
    _describe,
    _int_array,
    _looks_like_dataarray,
    _render_part,
    _type_error,
    by_id,
    by_index,
    select_train_ids,
)

__all__ = [
    'Deselect', 'Globs', 'IDENTITY', 'Names', 'Recipe', 'Require', 'Select',
    'SelectTrains', 'Union', 'selection_target', 'train_selector', 'union_of',
]

T = TypeVar('T')


# --------------------------------------------------------------------------- arguments


@attrs.frozen
class Globs:
    """``(source glob, key glob)`` pairs, sorted and without duplicates."""

    pairs: tuple = ()

    def argument(self) -> list:
        return list(self.pairs)

    def render(self) -> str:
        if len(self.pairs) == 1:
            src, key = self.pairs[0]
            return repr(src) if key == '*' else f"{src!r}, {key!r}"
        return repr(list(self.pairs))

    def describe(self) -> str:
        if not self.pairs:
            return "no patterns"
        return ", ".join(f"({s!r}, {k!r})" for s, k in self.pairs)


@attrs.frozen
class Names:
    """Exact source names -> frozenset of keys, or None for the current keys."""

    sources: tuple = ()

    def argument(self) -> dict:
        return {s: (None if k is None else set(k)) for s, k in self.sources}

    def render(self) -> str:
        items = (f"{s!r}: {_render_keys(k)}" for s, k in self.sources)
        return "{" + ", ".join(items) + "}"

    def describe(self) -> str:
        if not self.sources:
            return "no sources"
        return ", ".join(f"{s!r} ({'current keys' if k is None else _render_keys(k)})"
                         for s, k in self.sources)


def _render_keys(keys: frozenset | None) -> str:
    if keys is None:
        return 'None'
    return "{" + ", ".join(repr(k) for k in sorted(keys)) + "}"


def selection_target(seln: Any, key_glob: str = '*') -> Globs | Names:
    """Canonical form of the first arguments of ``select``/``deselect``.

    Parameters
    ----------
    seln : str, iterable or mapping
        A source glob (with ``key_glob``), an iterable of source globs and
        ``(source glob, key glob)`` pairs, or a mapping ``{source: set of keys
        or None}``. Data objects must already be turned into the mapping form.
    key_glob : str
        Key glob for a single source glob; ignored otherwise (as in ``select``).

    Returns
    -------
    Globs or Names

    Raises
    ------
    TypeError
        Any other argument, a non-string glob or name, or keys that are not a
        set (or None).

    Examples
    --------
    >>> selection_target('*XGM*') == selection_target([('*XGM*', '*')])
    True
    >>> selection_target({'A': set(), 'B': {'k'}})
    Names(sources=(('A', None), ('B', frozenset({'k'}))))
    """
    if isinstance(seln, Mapping):
        return Names(tuple(sorted(_names_item(s, k) for s, k in seln.items())))
    if isinstance(seln, str):
        if not isinstance(key_glob, str):
            raise TypeError(f"key_glob must be a str, not {type(key_glob).__name__}")
    elif isinstance(seln, (bytes, bytearray)) or not _is_iterable(seln):
        raise TypeError(f"Unknown selection type: {type(seln).__name__}")
    return Globs(tuple(sorted(set(selection_pairs(seln, key_glob)))))


def _names_item(source: Any, keys: Any) -> tuple:
    if not isinstance(source, str):
        raise TypeError(f"Source names must be str, not {type(source).__name__}")
    if keys is None or (isinstance(keys, (set, frozenset, dict)) and not keys):
        return (source, None)
    if not isinstance(keys, (set, frozenset)):
        raise TypeError(f"Keys for {source!r} must be a set or None, not {type(keys).__name__}")
    bad = [k for k in keys if not isinstance(k, str)]
    if bad:
        raise TypeError(f"Key names for {source!r} must be str, not {type(bad[0]).__name__}")
    return (source, frozenset(keys))


def _is_iterable(x: Any) -> bool:
    try:
        iter(x)
    except TypeError:
        return False
    return True


def train_selector(sel: Any) -> by_id | by_index:
    """Canonical, hashable form of a train selector (API.md 2.4).

    Positional selectors (slices, ints, lists, arrays) are wrapped in
    ``by_index``, which ``select_trains`` unwraps, so the meaning is unchanged.
    Lists of ints or bools become read-only arrays and numpy integers become
    ints. A bool DataArray with a ``trainId`` coordinate becomes ``by_id`` of
    the train IDs where it is True (it is checked here, with the errors
    ``select_trains`` would raise).

    Parameters
    ----------
    sel : selector
        slice, int-like, list or array of positions, bool array,
        ``by_index[...]``, ``by_id[...]`` or a bool ``xarray.DataArray``.

    Returns
    -------
    by_id or by_index

    Raises
    ------
    TypeError
        For selector types ``select_trains`` never accepts (float, str,
        tuple, None...). Errors that depend on the trains (an index out of
        range, a mask of the wrong length) come when the recipe is applied.

    Examples
    --------
    >>> train_selector(np.s_[:5])
    by_index[:5]
    >>> train_selector([0, 2]) == train_selector(np.array([0, 2])) == by_index[[0, 2]]
    True
    >>> train_selector(by_id[np.int64(10000)])
    by_id[10000]
    """
    if isinstance(sel, (by_id, by_index)):
        inner = sel.value
        if isinstance(inner, (by_id, by_index)) or _looks_like_dataarray(inner):
            return train_selector(inner)  # select_trains unwraps by_index[by_id[...]] too
        if not _plain_selector(inner):
            raise _type_error(inner)  # e.g. by_index[..., 3]: pulses, not trains
        return type(sel)(_canonical_value(inner))
    if _looks_like_dataarray(sel):
        return by_id[_dataarray_train_ids(sel)]
    if _plain_selector(sel):
        return by_index[_canonical_value(sel)]
    raise _type_error(sel)


def _plain_selector(value: Any) -> bool:
    return isinstance(value, (slice, list, np.ndarray)) or is_int_like(value)


def _canonical_value(value: Any) -> Any:
    if is_int_like(value):
        return int(value)
    if isinstance(value, slice):
        return slice(*(int(p) if is_int_like(p) else p
                       for p in (value.start, value.stop, value.step)))
    if isinstance(value, list):
        arr = _int_array(value)
        if arr.size == 0:
            # [] is float64 to numpy, but selects nothing like an empty int array.
            return np.zeros(arr.shape, dtype=np.int64)
        if arr.dtype.kind in 'biu':
            return arr  # select_trains turns lists into exactly this array
    return value  # anything else keeps its own meaning (and errors) for apply time


def _dataarray_train_ids(da: Any) -> np.ndarray:
    # select_train_ids checks the DataArray (bool values, 1-D trainId coordinate,
    # integer IDs) and intersects the IDs where it is True with the IDs given: with
    # the DataArray's own IDs that intersection is exactly those IDs.
    # (Negative IDs cannot be train IDs: they select nothing, with select_trains' warning.)
    own = np.zeros(0, dtype=np.uint64)
    if 'trainId' in da.coords:
        coord = np.unique(np.asarray(da.coords['trainId'].values))
        if coord.dtype.kind in 'ui':
            own = coord[coord >= 0].astype(np.uint64)
    return np.asarray(select_train_ids(own, da))


def _render_selector(sel: by_id | by_index) -> str:
    v = sel.value
    # Arrays print as lists: the repr then evaluates back to an equal recipe.
    inner = repr(v.tolist()) if isinstance(v, np.ndarray) else _render_part(v)
    return f"{type(sel).__name__}[{inner}]"


# --------------------------------------------------------------------------- steps


def _method(data: Any, name: str, step: Any, hint: str):
    fn = getattr(data, name, None)
    if not callable(fn):
        raise TypeError(f"Cannot apply {step.render()} to {_describe(data)}: it has no "
                        f".{name}() method ({hint})")
    return fn


_DC_ONLY = "this step applies to DataCollections; SourceData and KeyData take select_trains"


@attrs.frozen
class _SourcesStep:
    """A step calling ``data.<method>(target.argument())``; subclasses name the method."""

    target: Globs | Names
    _method_name = ''

    def apply(self, data: T) -> T:
        return _method(data, self._method_name, self, _DC_ONLY)(self.target.argument())

    def render(self) -> str:
        return f"{self._method_name}({self.target.render()})"

    def describe(self) -> str:
        what = "matching" if isinstance(self.target, Globs) else "named"
        return f"{self._method_name} sources/keys {what} {self.target.describe()}"


@attrs.frozen
class Select(_SourcesStep):
    """``data.select(target)``: keep only the matched sources and keys."""

    _method_name = 'select'


@attrs.frozen
class Deselect(_SourcesStep):
    """``data.deselect(target)``: remove the matched sources and keys."""

    _method_name = 'deselect'


@attrs.frozen
class Require:
    """Keep trains where all (``all=True``) or any selected source has data.

    Applied as ``data.select(data.selection, require_all=..., require_any=...)``:
    re-selecting the current selection changes nothing but the trains.
    ``warn_drop_trains_frac`` only matters for ``require_all`` (1.0 otherwise).
    """

    all: bool
    warn_drop_trains_frac: float = 1.0

    def apply(self, data: T) -> T:
        select = _method(data, 'select', self, _DC_ONLY)
        return select(data.selection, require_all=self.all, require_any=not self.all,
                      warn_drop_trains_frac=self.warn_drop_trains_frac)

    def render(self) -> str:
        if not self.all:
            return "require_any()"
        if self.warn_drop_trains_frac == 1.0:
            return "require_all()"
        return f"require_all(warn_drop_trains_frac={self.warn_drop_trains_frac!r})"

    def describe(self) -> str:
        if not self.all:
            return "require_any: keep trains where at least one selected source has data"
        return ("require_all: keep trains where every selected source has data (warn when "
                f"a source drops >= {self.warn_drop_trains_frac:.0%} of the trains)")


@attrs.frozen
class SelectTrains:
    """``data.select_trains(selector)``, with a canonical ``by_id``/``by_index``."""

    selector: by_id | by_index

    def apply(self, data: T) -> T:
        hint = "DataCollection, SourceData and KeyData have it"
        return _method(data, 'select_trains', self, hint)(self.selector)

    def render(self) -> str:
        return f"select_trains({_render_selector(self.selector)})"

    def describe(self) -> str:
        how = "IDs" if isinstance(self.selector, by_id) else "positions"
        return f"select_trains by train {how}: {_render_selector(self.selector)}"


@attrs.frozen
class Union:
    """Apply each recipe to the same input and union the results (in order)."""

    recipes: tuple = attrs.field(validator=lambda _, __, rs: _check_recipes(rs))

    def apply(self, data: T) -> T:
        first, *rest = [r(data) for r in self.recipes]
        hint = "unions apply to DataCollections"
        return _method(first, 'union', self, hint)(*rest)

    def render(self) -> str:
        return "union(" + ", ".join(r.render() for r in self.recipes) + ")"

    def describe(self) -> str:
        return f"union of {len(self.recipes)} recipes, each applied to this step's input:"


_STEP_TYPES = (Select, Deselect, Require, SelectTrains, Union)


def _check_steps(instance, attribute, steps):
    for s in steps:
        if not isinstance(s, _STEP_TYPES):
            raise TypeError(f"Recipe steps must be Select, Deselect, Require, SelectTrains "
                            f"or Union records, not {type(s).__name__}")


def _check_recipes(recipes: tuple) -> None:
    if not recipes or not all(isinstance(r, Recipe) for r in recipes):
        raise TypeError("Union holds a non-empty tuple of recipes")


# --------------------------------------------------------------------------- recipes


@attrs.frozen(repr=False)
class Recipe:
    """A run-independent selection: steps applied in order by calling the recipe.

    ``r1 >> r2`` is r1 then r2; ``r1 | r2`` applies both to the same input and
    unions the results. ``Recipe()`` (no steps) is the identity.

    Examples
    --------
    >>> r = Recipe((SelectTrains(by_index[:5]),)) >> Recipe((Select(Globs((('*', '*'),))),))
    >>> r
    select_trains(by_index[:5]) >> select('*')
    >>> Recipe() >> r == r
    True
    """

    steps: tuple = attrs.field(default=(), converter=tuple, validator=_check_steps)

    def __call__(self, data: T) -> T:
        for step in self.steps:
            data = step.apply(data)
        return data

    def __rshift__(self, other: 'Recipe') -> 'Recipe':
        if not isinstance(other, Recipe):
            return NotImplemented
        return Recipe(self.steps + other.steps)

    def __or__(self, other: 'Recipe') -> 'Recipe':
        if not isinstance(other, Recipe):
            return NotImplemented
        return union_of((self, other))

    def render(self) -> str:
        """Python expression building this recipe with :mod:`xfeldata.recipes` names."""
        if not self.steps:
            return "Recipe()"
        return " >> ".join(s.render() for s in self.steps)

    __repr__ = render

    def explain(self) -> str:
        """Text listing the steps in order, one per line (unions indented)."""
        return "\n".join(self._explain_lines(""))

    def _explain_lines(self, indent: str) -> list:
        n = len(self.steps)
        lines = [f"{indent}Recipe: {n} step{'' if n == 1 else 's'}"
                 + (" (identity)" if not n else "")]
        for i, step in enumerate(self.steps, 1):
            lines.append(f"{indent}  {i}. {step.describe()}")
            if isinstance(step, Union):
                for r in step.recipes:
                    lines.extend(r._explain_lines(indent + "     "))
        return lines


IDENTITY = Recipe()


def union_of(recipes: Iterable[Recipe]) -> Recipe:
    """One recipe applying each of *recipes* to the same input and unioning the results.

    Nested unions are flattened; a single recipe is returned as it is.

    Examples
    --------
    >>> a, b, c = (Recipe((SelectTrains(by_index[i]),)) for i in range(3))
    >>> union_of([a, union_of([b, c])]) == union_of([union_of([a, b]), c])
    True
    """
    parts = []
    for r in recipes:
        if not isinstance(r, Recipe):
            raise TypeError(f"union takes recipes, not {type(r).__name__}")
        if len(r.steps) == 1 and isinstance(r.steps[0], Union):
            parts.extend(r.steps[0].recipes)
        else:
            parts.append(r)
    if not parts:
        raise TypeError("union needs at least one recipe")
    if len(parts) == 1:
        return parts[0]
    return Recipe((Union(tuple(parts)),))
