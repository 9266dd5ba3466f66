"""Aliases: short names for sources and (source, key) pairs.

This module holds the lookup face (``dc.alias[...]``); loading alias files and
the alias selection methods come with the outputs issue.
"""
from __future__ import annotations

from .exceptions import AliasError

__all__ = ['AliasIndexer', 'normalise_alias', 'load_default_aliases']


def normalise_alias(name: str) -> str:
    """Aliases are case-insensitive and treat ``-`` and ``_`` alike.

    >>> normalise_alias('My_XGM')
    'my-xgm'
    """
    return name.lower().replace('_', '-')


class AliasIndexer:
    """``dc.alias[name]`` -> SourceData or KeyData."""
    def __init__(self, data):
        self.data = data

    def _resolve(self, name):
        aliases = dict(self.data._aliases)
        try:
            return aliases[normalise_alias(name)]
        except KeyError:
            raise AliasError(name, candidates=aliases) from None

    def __getitem__(self, item):
        if isinstance(item, str):
            target = self._resolve(item)
            return self.data[target] if isinstance(target, str) else self.data[tuple(target)]
        if isinstance(item, tuple) and len(item) == 2:
            target = self._resolve(item[0])
            if not isinstance(target, str):
                raise ValueError(f"{item[0]!r} is an alias for a key, not a source")
            return self.data[target, item[1]]
        raise TypeError(f"Expected alias or (source alias, key), got {item!r}")

    def __contains__(self, name):
        try:
            self[name]
        except (KeyError, ValueError, TypeError):
            return False
        return True


def load_default_aliases(dc, aliases, prop_dir):
    """Attach aliases from the proposal's alias file, if one exists (outputs issue)."""
    return dc
