"""Aliases: short names for sources and (source, key) pairs (API.md section 19).

An alias set is a plain value: a mapping of normalised alias names (lower
case, ``_`` written as ``-``) to either a source name (``str``) or a
``(source, key)`` tuple. A DataCollection keeps it as a sorted tuple of
``(name, value)`` pairs beside its selection, so aliases follow every
selection and are merged by unions.

The functions here are pure except :func:`read_alias_file` and
:func:`load_default_aliases`, which read files. ``DataCollection``'s
``alias``, ``with_aliases``, ``only_aliases`` and ``drop_aliases`` delegate
to them.

Examples
--------
>>> parse_aliases({'My_XGM': 'SA1_XTD2_XGM/DOOCS/MAIN',
...                'beam_x': ['SA1_XTD2_XGM/DOOCS/MAIN', 'beamPosition.ixPos']})
{'my-xgm': 'SA1_XTD2_XGM/DOOCS/MAIN', 'beam-x': ('SA1_XTD2_XGM/DOOCS/MAIN', 'beamPosition.ixPos')}
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from .exceptions import AliasError, SourceNameError

__all__ = ['AliasIndexer', 'normalise_alias', 'parse_aliases', 'read_alias_file',
           'merge_aliases', 'with_aliases', 'only_aliases', 'drop_aliases',
           'alias_selection', 'load_default_aliases', 'ALIAS_FILE_EXTENSIONS']

#: File name extensions of alias files and their formats.
ALIAS_FILE_EXTENSIONS = {'.json': 'JSON', '.yaml': 'YAML', '.yml': 'YAML', '.toml': 'TOML'}

#: Where alias files under /gpfs can be opened in a browser (Maxwell's JupyterHub).
JHUB_URL = 'https://max-jhub.desy.de/hub/user-redirect/lab/tree{}'

_RED_CROSS = '\x1b[31m\u2717\x1b[0m'   # ✗ in red, as in EXtra-data's listing


def normalise_alias(name: str) -> str:
    """Aliases are case-insensitive and treat ``-`` and ``_`` alike.

    >>> normalise_alias('My_XGM')
    'my-xgm'
    """
    return name.lower().replace('_', '-')


def _describe(value) -> str:
    if isinstance(value, str):
        return f"source {value!r}"
    return f"key {value[1]!r} of source {value[0]!r}"


def _is_name(x) -> bool:
    return isinstance(x, str) and x != ''


def _alias_value(alias, value, origin):
    """A definition's value as stored: a source str or a (source, key) tuple."""
    if _is_name(value):
        return value
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(_is_name(v) for v in value)):
        return (value[0], value[1])
    raise ValueError(
        f"Bad definition for alias {alias!r}{origin}: expected a source name or a "
        f"[source, key] pair (or, nested, source: {{alias: key}}), got {value!r}")


def _add(out: dict, name, value, origin):
    if not _is_name(name):
        raise ValueError(f"Alias names must be non-empty strings, got {name!r}{origin}")
    norm = normalise_alias(name)
    if norm in out and out[norm] != value:
        raise ValueError(f"conflicting alias definition for {norm!r}{origin}: "
                         f"{_describe(out[norm])} and {_describe(value)}")
    out[norm] = value


def parse_aliases(defs: Mapping, origin: str = '') -> dict:
    """Read one alias definition (a dict, or the content of an alias file).

    Parameters
    ----------
    defs : Mapping
        ``{alias: source}``, ``{alias: (source, key)}`` (a list works too, as
        files give), or nested ``{source: {alias: key}}``.
    origin : str
        Where the definition came from, for error messages (e.g. a file path).

    Returns
    -------
    dict
        normalised alias -> source str or (source, key) tuple.

    Raises
    ------
    ValueError
        A value of another type, an empty or non-string name, or two different
        definitions of one alias (after normalisation).

    Examples
    --------
    >>> parse_aliases({'SA1_XTD2_XGM/DOOCS/MAIN': {'Beam_Y': 'beamPosition.iyPos'}})
    {'beam-y': ('SA1_XTD2_XGM/DOOCS/MAIN', 'beamPosition.iyPos')}
    """
    where = f" (in {origin})" if origin else ''
    if not isinstance(defs, Mapping):
        raise ValueError(f"Alias definitions must be a mapping of alias names{where}, "
                         f"got {type(defs).__name__}")
    out = {}
    for name, value in defs.items():
        if isinstance(value, Mapping):
            # Nested form: the outer name is a source, the inner values its keys.
            if not _is_name(name):
                raise ValueError(f"Bad source name {name!r} in nested alias definitions{where}")
            for alias, key in value.items():
                if not _is_name(key):
                    raise ValueError(f"Bad definition for alias {alias!r}{where}: nested "
                                     f"under source {name!r}, expected a key name, got {key!r}")
                _add(out, alias, (name, key), where)
        else:
            _add(out, name, _alias_value(name, value, where), where)
    return out


def read_alias_file(path) -> dict:
    """Read an alias file (``.json``, ``.yaml``/``.yml`` or ``.toml``).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
        normalised alias -> source str or (source, key) tuple. An empty YAML
        file defines no aliases.

    Raises
    ------
    ValueError
        An unknown extension (the message lists the supported ones), content
        that does not parse, or bad definitions (see :func:`parse_aliases`).
    FileNotFoundError
        No file at ``path``.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in ALIAS_FILE_EXTENSIONS:
        raise ValueError(f"Unknown alias file extension {ext or '(none)'!r} for {path}: "
                         f"supported are {', '.join(ALIAS_FILE_EXTENSIONS)}")
    kind = ALIAS_FILE_EXTENSIONS[ext]
    try:
        with open(path, 'rb') as f:
            raw = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(2, "Alias file not found", path) from None
    try:
        content = _parse_file_content(kind, raw)
    except ValueError as e:
        # JSONDecodeError and TOMLDecodeError are ValueErrors; YAML's are not
        # (converted in _parse_file_content). Name the file, keep the cause.
        raise ValueError(f"Could not read {kind} alias file {path}: {e}") from e
    if content is None and kind == 'YAML':
        content = {}
    return parse_aliases(content, origin=path)


def _parse_file_content(kind, raw: bytes):
    if kind == 'JSON':
        return json.loads(raw)
    if kind == 'TOML':
        try:
            import tomllib
        except ImportError:   # Python < 3.11: tomli is a dependency there
            import tomli as tomllib
        return tomllib.loads(raw.decode('utf-8'))
    import yaml
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ValueError(str(e)) from e


def merge_aliases(*alias_sets) -> dict:
    """Merge alias sets (mappings or iterables of pairs) into one dict.

    The same alias may appear in several sets with the same value; a
    different value is a conflict.

    Raises
    ------
    ValueError
        ``"conflicting alias definition for 'name': <old> and <new>"``.

    Examples
    --------
    >>> merge_aliases({'a': 'SRC'}, [('a', 'SRC'), ('b', ('SRC', 'k'))])
    {'a': 'SRC', 'b': ('SRC', 'k')}
    """
    out = {}
    for aliases in alias_sets:
        pairs = aliases.items() if isinstance(aliases, Mapping) else aliases
        for name, value in pairs:
            _add(out, name, _alias_value(name, value, ''), '')
    return out


def _stored(dc) -> dict:
    # A DataCollection built by its constructor with aliases= may hold names
    # or values that were never normalised: normalise on the way out.
    return merge_aliases(dc._aliases)


def _as_stored(aliases: dict) -> tuple:
    return tuple(sorted(aliases.items()))


# -- DataCollection methods ------------------------------------------------------------

def with_aliases(dc, *alias_defs):
    """``dc.with_aliases(*alias_defs)``: a new collection with these aliases added.

    Parameters
    ----------
    dc : DataCollection
    *alias_defs : dict, str or os.PathLike
        Dicts as :func:`parse_aliases` takes them, or alias file paths
        (:func:`read_alias_file`); files are remembered
        (``dc.alias.file_paths()``).

    Raises
    ------
    ValueError
        Bad definitions, unknown file extensions, or an alias defined with
        two different values (in these definitions or already on ``dc``).
    TypeError
        A definition that is neither a mapping nor a path.
    """
    merged = _stored(dc)
    files = list(dc._alias_files)
    for d in alias_defs:
        if isinstance(d, Mapping):
            new, origin = parse_aliases(d), ''
        elif isinstance(d, (str, os.PathLike)):
            path = os.path.abspath(os.fspath(d))
            new, origin = read_alias_file(path), f" (in {path})"
            files.append(path)
        else:
            raise TypeError("Alias definitions must be dicts or alias file paths "
                            f"(.json, .yaml, .yml, .toml), not {type(d).__name__}")
        for name, value in new.items():
            _add(merged, name, value, origin)
    # Adding names changes no data: a collection usable in `with` stays so.
    return dc._evolve(aliases=_as_stored(merged), alias_files=tuple(dict.fromkeys(files)),
                      ctx_closes=dc.ctx_closes)


def drop_aliases(dc):
    """``dc.drop_aliases()``: the same data without aliases or alias files."""
    return dc._evolve(aliases=(), alias_files=(), ctx_closes=dc.ctx_closes)


def _present(dc, value) -> bool:
    """Whether an alias target is in the collection's current selection."""
    # A (source, key) pair: DataCollection.__contains__ handles control '.value'.
    return value in dc


def alias_selection(dc, aliases: Mapping, strict: bool = False) -> dict:
    """The ``select`` dict for the data the aliases point to.

    Aliased sources get all their (currently selected) keys; (source, key)
    aliases add single keys to sources not aliased as a whole.

    Parameters
    ----------
    dc : DataCollection
    aliases : Mapping
        normalised alias -> source or (source, key).
    strict : bool
        If true, an alias pointing at data not in ``dc`` is an error;
        otherwise it is left out.

    Raises
    ------
    ValueError
        ``strict`` and some aliases point at missing data (all are named).
    """
    missing = sorted(name for name, v in aliases.items() if not _present(dc, v))
    if missing and strict:
        raise ValueError("only_aliases(strict=True): these aliases point at data not in "
                         "this collection: " + '; '.join(
                             f"{n!r} -> {_describe(aliases[n])}" for n in missing))
    seln = {}
    for name, value in aliases.items():
        if name in missing:
            continue
        if isinstance(value, str):
            seln[value] = None
        elif seln.get(value[0], set()) is not None:
            seln.setdefault(value[0], set()).add(value[1])
    return seln


def only_aliases(dc, *alias_defs, strict=False, require_all=False):
    """``dc.only_aliases(...)``: add aliases, then select only the aliased data.

    All aliases of the result count, those already on ``dc`` included.

    Raises
    ------
    ValueError
        No aliases at all, or (with ``strict``) aliases pointing at data that
        is not in ``dc``; and whatever :func:`with_aliases` raises.
    """
    new = with_aliases(dc, *alias_defs)
    aliases = _stored(new)
    if not aliases:
        raise ValueError("only_aliases: no aliases have been loaded; pass alias "
                         "definitions or alias files")
    return new.select(alias_selection(new, aliases, strict), require_all=require_all)


def load_default_aliases(dc, aliases, prop_dir):
    """``open_run(aliases=...)``: attach the proposal's alias file, if any.

    Parameters
    ----------
    dc : DataCollection
    aliases : str, os.PathLike or dict
        A str is formatted with the proposal folder (``'{}'`` -> ``prop_dir``).
        The default, ``'{}/usr/extra-data-aliases.yml'``, may be absent: then
        no aliases are loaded. Any other missing file is an error.
    prop_dir : str
        The proposal folder.

    Raises
    ------
    FileNotFoundError
        A non-default alias file that does not exist.
    ValueError
        A str with other ``{...}`` fields, or a bad alias file.
    """
    from .reader import DEFAULT_ALIASES_FILE
    if isinstance(aliases, str):
        try:
            path = aliases.format(prop_dir)
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"aliases={aliases!r}: only '{{}}' (the proposal folder) may be "
                             f"used as a placeholder ({type(e).__name__}: {e})") from None
        if aliases == DEFAULT_ALIASES_FILE and not os.path.isfile(path):
            return dc
        aliases = path
    return with_aliases(dc, aliases)


# -- dc.alias --------------------------------------------------------------------------

def _escape_glob(name: str) -> str:
    # Source names are exact, but select() takes globs: wrap * ? [ in brackets.
    return re.sub(r'([*?[])', r'[\1]', name)


class AliasIndexer:
    """``dc.alias``: look up and select data by alias.

    ``dc.alias[name]`` gives a SourceData or KeyData, ``dc.alias[src_alias,
    key]`` a KeyData; ``name in dc.alias`` is true when the alias resolves in
    this data. ``repr`` lists the aliases by source.

    Examples
    --------
    >>> import tempfile, xfeldata
    >>> from xfeldata.testing import make_demo_run
    >>> d = tempfile.mkdtemp(); _ = make_demo_run(d)
    >>> run = xfeldata.RunDirectory(d).with_aliases({'xgm': 'SA1_XTD2_XGM/DOOCS/MAIN'})
    >>> run.alias['XGM']
    <xfeldata.SourceData source='SA1_XTD2_XGM/DOOCS/MAIN' for 100 trains>
    >>> str(run.alias)
    '<xfeldata.AliasIndexer with 1 aliases>'
    """
    __slots__ = ('data',)

    def __init__(self, data):
        self.data = data

    # -- lookups -------------------------------------------------------------------
    def _resolve(self, name):
        if not isinstance(name, str):
            raise TypeError(f"Aliases are strings, got {type(name).__name__} {name!r}")
        aliases = _stored(self.data)
        norm = normalise_alias(name)
        try:
            return aliases[norm]
        except KeyError:
            raise AliasError(norm, candidates=aliases) from None

    def _resolve_source(self, name):
        target = self._resolve(name)
        if not isinstance(target, str):
            raise ValueError(f"{name!r} is an alias for a key ({_describe(target)}), "
                             "not for a source")
        return target

    def _source(self, alias, source):
        try:
            return self.data[source]
        except SourceNameError as e:
            raise SourceNameError(source, custom_message=(
                f"Alias {alias!r} points to source {source!r}, which is not in this data."
                " See data.all_sources for available sources."),
                candidates=e.candidates) from None

    def __getitem__(self, item):
        if isinstance(item, str):
            target = self._resolve(item)
            if isinstance(target, str):
                return self._source(item, target)
            return self._source(item, target[0])[target[1]]
        if isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, str) for x in item):
            return self._source(item[0], self._resolve_source(item[0]))[item[1]]
        raise TypeError(f"Expected data.alias[alias] or data.alias[source_alias, key], "
                        f"got {item!r}")

    def __contains__(self, item):
        try:
            self[item]
        except (KeyError, ValueError, TypeError):
            return False
        return True

    def _ipython_key_completions_(self):
        return sorted(_stored(self.data))

    # -- selection -----------------------------------------------------------------
    def _pair(self, name, key_glob='*'):
        target = self._resolve(name)
        if isinstance(target, str):
            return (_escape_glob(target), key_glob)
        if key_glob != '*':
            raise ValueError(f"{name!r} is an alias for a key ({_describe(target)}); "
                             f"a key glob ({key_glob!r}) only goes with a source alias")
        return (_escape_glob(target[0]), _escape_glob(target[1]))

    def _translate(self, seln, key_glob):
        if isinstance(seln, str):
            return [self._pair(seln, key_glob)]
        if isinstance(seln, Mapping):
            return {self._resolve_source(a): keys for a, keys in seln.items()}
        try:
            items = list(seln)
        except TypeError:
            raise TypeError(f"Unknown alias selection type: {type(seln).__name__}") from None
        pairs = []
        for item in items:
            if isinstance(item, str):
                pairs.append(self._pair(item))
            elif (isinstance(item, tuple) and len(item) == 2
                  and all(isinstance(x, str) for x in item)):
                pairs.append((_escape_glob(self._resolve_source(item[0])), item[1]))
            else:
                raise TypeError(f"Unknown alias selection item {item!r}: expected an alias "
                                "or a (source alias, key glob) pair")
        return pairs

    def select(self, seln_or_alias, key_glob='*', require_all=False, require_any=False):
        """Select data by alias: like ``DataCollection.select`` with aliases for names.

        Accepts an alias (with a key glob for a source alias), an iterable of
        aliases and ``(source alias, key glob)`` pairs, or a dict
        ``{source alias: set of keys or None}``. Alias names are not globs.
        """
        return self.data.select(self._translate(seln_or_alias, key_glob), '*',
                                require_all=require_all, require_any=require_any)

    def deselect(self, seln_or_alias, key_glob='*'):
        """Deselect data by alias (the argument forms of :meth:`select`)."""
        return self.data.deselect(self._translate(seln_or_alias, key_glob), '*')

    # -- files -----------------------------------------------------------------------
    def file_paths(self) -> list:
        """The alias files loaded (sorted, without duplicates) as ``Path`` objects."""
        return sorted({Path(p) for p in self.data._alias_files})

    def jhub_links(self) -> dict:
        """``{path: URL}`` opening each alias file under /gpfs in Maxwell's JupyterHub."""
        return {p: JHUB_URL.format(p.as_posix()) for p in self.file_paths()
                if p.parts[:2] == ('/', 'gpfs')}

    # -- display ---------------------------------------------------------------------
    def __str__(self):
        return f"<xfeldata.AliasIndexer with {len(_stored(self.data))} aliases>"

    def __repr__(self):
        return _format_aliases(self.data, _stored(self.data), self.file_paths(),
                               self.jhub_links())


def _format_aliases(dc, aliases: dict, files, links) -> str:
    if not aliases:
        lines = ['No aliases have been loaded.']
    else:
        by_source = {}
        for name, value in sorted(aliases.items()):
            src = value if isinstance(value, str) else value[0]
            by_source.setdefault(src, []).append((name, value))
        lines = [f"Aliases ({len(aliases)}), by source:"]
        any_mark = False
        for src in sorted(by_source):
            entries = [(n, v, _present(dc, v)) for n, v in by_source[src]]
            n_ok = sum(ok for _, _, ok in entries)
            mark = '  ' if n_ok == len(entries) else ('~ ' if n_ok else _RED_CROSS + ' ')
            any_mark |= n_ok != len(entries)
            lines.append(f"{mark}{src}")
            # Source aliases first, then key aliases by name.
            for name, value, ok in sorted(entries, key=lambda e: (not isinstance(e[1], str),
                                                                  e[0])):
                what = '(the source)' if isinstance(value, str) else f"-> {value[1]}"
                lines.append(f"  {'  ' if ok else _RED_CROSS + ' '}{name} {what}")
        if any_mark:
            lines += ['', f"{_RED_CROSS} = not in this data; "
                          "~ = some aliases of this source are not in this data"]
    if files:
        lines += ['', 'Alias files:']
        for p in files:
            lines.append(f"  {p}")
            if p in links:
                lines.append(f"    {links[p]}")
    return '\n'.join(lines)
