"""Selections as values: recipes built with plain functions, applied to any run.

A recipe says *what* to select (sources and keys by glob or name, trains by
position or ID, trains with data) without a run. It compares and hashes by
value, pickles small, and is a callable: ``recipe(run)`` calls the run's
``select``/``deselect``/``select_trains``/``union`` methods in order, so it
gives exactly what the chain of method calls gives. ``r1 >> r2`` is r1 then
r2; ``r1 | r2`` applies both to the same input and unions the results. Being
plain callables, recipes also work with ``toolz.pipe`` and ``toolz.compose``.

See docs/pipelines.md for the pipeline style.

Examples
--------
>>> import tempfile, toolz
>>> from xfeldata import RunDirectory, by_id
>>> from xfeldata.testing import make_demo_run
>>> run = RunDirectory(make_demo_run(tempfile.mkdtemp()).directory)
>>> xgm = select('*XGM*') >> select_trains(by_id[10010:10020])
>>> xgm
select('*XGM*') >> select_trains(by_id[10010:10020])
>>> sel = xgm(run)
>>> sorted(sel.all_sources), len(sel.train_ids)
(['SA1_XTD2_XGM/DOOCS/MAIN', 'SA1_XTD2_XGM/DOOCS/MAIN:output'], 10)
>>> sel == run.select('*XGM*').select_trains(by_id[10010:10020])
True
>>> toolz.pipe(run, select('*XGM*'), select_trains(by_id[10010:10020])) == sel
True
"""
from __future__ import annotations

from functools import reduce
from typing import Any

from .core.recipe import (
    IDENTITY,
    Deselect,
    Recipe,
    Require,
    Select,
    SelectTrains,
    selection_target,
    train_selector,
    union_of,
)

__all__ = ['Recipe', 'chain', 'deselect', 'identity', 'require_all', 'require_any',
           'select', 'select_trains', 'union']

#: The recipe with no steps: ``identity(data)`` returns ``data`` itself.
identity: Recipe = IDENTITY


def _target(seln: Any, key_glob: str):
    """Data objects become the dict form their ``select`` would use; the rest is canonical."""
    from .keydata import KeyData
    from .reader import DataCollection, selection_argument
    from .sourcedata import SourceData
    if isinstance(seln, (DataCollection, SourceData, KeyData)):
        seln = selection_argument(seln)
    return selection_target(seln, key_glob)


def select(seln_or_source_glob: Any, key_glob: str = '*', require_all: bool = False,
           require_any: bool = False, *, warn_drop_trains_frac: float = 1.0) -> Recipe:
    """Recipe for ``data.select(...)``, with the same arguments.

    Parameters
    ----------
    seln_or_source_glob : str, iterable, dict, DataCollection, SourceData or KeyData
        A source glob (with ``key_glob``); an iterable of source globs and
        ``(source glob, key glob)`` pairs; a dict ``{source: set of keys or
        None}``; or a data object, whose selection is taken now (as a dict),
        so the recipe does not hold the object.
    key_glob : str
        Key glob for a single source glob.
    require_all, require_any : bool
        Then keep only trains where all / any selected source has data:
        the recipe is ``select(...) >> require_all()`` (or ``require_any()``).
    warn_drop_trains_frac : float
        With ``require_all``, warn about a source that drops at least this
        fraction of the remaining trains.

    Returns
    -------
    Recipe

    Raises
    ------
    TypeError
        For argument types ``select`` never accepts. Patterns that match
        nothing raise ``ValueError`` when the recipe is applied.

    Examples
    --------
    >>> select('*XGM*')
    select('*XGM*')
    >>> select(['*XGM*', ('*CAM*', 'data.*')])
    select([('*CAM*', 'data.*'), ('*XGM*', '*')])
    >>> select('*XGM*') == select([('*XGM*', '*')])
    True
    >>> select({'SA1_XTD2_XGM/DOOCS/MAIN': {'pulseEnergy.photonFlux'}}, require_all=True)
    select({'SA1_XTD2_XGM/DOOCS/MAIN': {'pulseEnergy.photonFlux'}}) >> require_all()
    """
    steps = [Select(_target(seln_or_source_glob, key_glob))]
    if require_all or require_any:
        # As in DataCollection.select, require_all wins when both are given.
        steps.append(Require(bool(require_all), float(warn_drop_trains_frac)
                             if require_all else 1.0))
    return Recipe(steps)


def deselect(seln_or_source_glob: Any, key_glob: str = '*') -> Recipe:
    """Recipe for ``data.deselect(...)``, with the same arguments.

    Parameters
    ----------
    seln_or_source_glob : str, iterable, dict, DataCollection, SourceData or KeyData
        As for :func:`select`.
    key_glob : str
        Key glob for a single source glob.

    Returns
    -------
    Recipe

    Examples
    --------
    >>> deselect('*AGIPD*') >> deselect('*XGM*', 'pulseEnergy.*')
    deselect('*AGIPD*') >> deselect('*XGM*', 'pulseEnergy.*')
    """
    return Recipe((Deselect(_target(seln_or_source_glob, key_glob)),))


def select_trains(train_range: Any) -> Recipe:
    """Recipe for ``data.select_trains(train_range)`` (any selector of API.md 2.4).

    Positional selectors are stored as ``by_index[...]`` (same meaning), so
    ``select_trains(np.s_[:10]) == select_trains(by_index[:10])``. A bool
    DataArray is stored as ``by_id`` of the train IDs where it is True. This is
    the one step that also applies to SourceData and KeyData.

    Parameters
    ----------
    train_range : selector
        slice, int, list or array of positions, bool array, ``by_index[...]``,
        ``by_id[...]`` or a bool ``xarray.DataArray`` with a ``trainId``
        coordinate.

    Returns
    -------
    Recipe

    Raises
    ------
    TypeError
        For selector types ``select_trains`` never accepts (float, str, tuple...).

    Examples
    --------
    >>> import numpy as np
    >>> from xfeldata import by_id, by_index
    >>> select_trains(np.s_[:10])
    select_trains(by_index[:10])
    >>> select_trains([0, 2]) == select_trains(by_index[np.array([0, 2])])
    True
    >>> select_trains(by_id[10000:10050:5])
    select_trains(by_id[10000:10050:5])
    """
    return Recipe((SelectTrains(train_selector(train_range)),))


def require_all(*, warn_drop_trains_frac: float = 1.0) -> Recipe:
    """Recipe keeping only trains where every selected source has data.

    Same rule as ``select(..., require_all=True)``: each selected
    (source, index group) must have data; RUN-only sources are ignored.

    Parameters
    ----------
    warn_drop_trains_frac : float
        Warn about a source that drops at least this fraction of the
        remaining trains (default 1: only if it drops all of them).

    Returns
    -------
    Recipe

    Examples
    --------
    >>> require_all()
    require_all()
    >>> select('*CAM*') >> require_all() == select('*CAM*', require_all=True)
    True
    """
    return Recipe((Require(True, float(warn_drop_trains_frac)),))


def require_any() -> Recipe:
    """Recipe keeping only trains where at least one selected source has data.

    Returns
    -------
    Recipe

    Examples
    --------
    >>> select('*CAM*', require_any=True)
    select('*CAM*') >> require_any()
    """
    return Recipe((Require(False),))


def union(*recipes: Recipe) -> Recipe:
    """Recipe applying each recipe to the same input and unioning the results.

    ``union(r1, r2)(data)`` is ``r1(data).union(r2(data))``; ``r1 | r2`` is
    the same. Nested unions are flattened, and a single recipe is returned
    as it is.

    Parameters
    ----------
    *recipes : Recipe
        At least one.

    Returns
    -------
    Recipe

    Raises
    ------
    TypeError
        No recipes, or something that is not a Recipe.

    Examples
    --------
    >>> both = union(select('*XGM*'), select('*CAM*'))
    >>> both
    union(select('*XGM*'), select('*CAM*'))
    >>> both == select('*XGM*') | select('*CAM*')
    True
    """
    return union_of(recipes)


def chain(*recipes: Recipe) -> Recipe:
    """The recipes one after the other: ``chain(a, b, c) == a >> b >> c``.

    ``chain()`` is :data:`identity`.

    Parameters
    ----------
    *recipes : Recipe

    Returns
    -------
    Recipe

    Examples
    --------
    >>> import numpy as np
    >>> chain(select('*XGM*'), select_trains(np.s_[:5])) == (
    ...     select('*XGM*') >> select_trains(np.s_[:5]))
    True
    >>> chain() == identity == Recipe()
    True
    """
    for r in recipes:
        if not isinstance(r, Recipe):
            raise TypeError(f"chain takes recipes, not {type(r).__name__}")
    return reduce(lambda a, b: a >> b, recipes, IDENTITY)
