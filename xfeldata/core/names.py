"""Pure string helpers: EuXFEL file names, data paths, globs and run arguments.

Nothing here touches the filesystem: every function takes strings (or path
objects, only ever converted with their ``__fspath__``) and returns values. The
effectful lookups (``find_proposal``, data root from the environment) live in
:mod:`xfeldata.read_machinery`.

See FORMAT.md sections 1.1-1.3 for the conventions parsed here.
"""

from __future__ import annotations

import numbers
import re
from typing import Any, NamedTuple

PathLike = Any  # anything with __fspath__; the core never imports os


def _fspath(p) -> str:
    """A str, or what ``__fspath__`` returns (the core does not import os)."""
    if isinstance(p, str):
        return p
    if hasattr(p, '__fspath__'):
        r = p.__fspath__()
        return r.decode('utf-8', 'surrogateescape') if isinstance(r, bytes) else r
    if isinstance(p, bytes):
        return p.decode('utf-8', 'surrogateescape')
    raise TypeError(f"expected str or path-like, not {type(p).__name__}")


def _basename(path: str) -> str:
    return path.rsplit('/', 1)[-1]

import numpy as np

__all__ = [
    "DETECTOR_NAMES",
    "DETECTOR_SOURCE_RE",
    "FILENAME_RE",
    "FileNameParts",
    "FilenameInfo",
    "PathInfo",
    "glob_wildcards_re",
    "is_int_like",
    "normalise_proposal",
    "normalise_run",
    "parse_filename",
    "parse_path_metadata",
    "proposal_is_path",
]

#: Aggregator name prefixes of the multi-module detectors written one file per module.
#: A frozenset (EXtra-data has a plain set) so the module constant cannot be mutated.
DETECTOR_NAMES = frozenset({"AGIPD", "DSSC", "LPD"})

#: Instrument source names of multi-module detector modules, e.g.
#: ``SPB_DET_AGIPD1M-1/DET/0CH0:xtdf``: group 1 is the detector prefix, group 2 the module.
DETECTOR_SOURCE_RE = re.compile(r"(.+/(?:DET|CORR))/(\d+)CH")

#: EuXFEL file name: category, run, aggregator, optional sequence (FORMAT.md 1.3).
#: The dot is escaped here (the published pattern leaves it as "any character").
FILENAME_RE = re.compile(r"([A-Z]+)-R(\d{4})-(\w+)(?:-S(\d{5}))?\.h5")

# Aggregator split into leading letters and a number: DA01, AGIPD07, LPD15, JNGFR02.
_AGGREGATOR_RE = re.compile(r"([A-Z]+)(\d+)")


# --------------------------------------------------------------------------- ints


def is_int_like(x: Any) -> bool:
    """Return True if *x* is an integer: Python int, numpy integer or 0-d int array.

    Booleans are deliberately *not* int-like: ``select_trains(True)`` selecting
    train position 1 would hide a bug (EXtra-data treats bools as integers).

    Parameters
    ----------
    x : object
        Anything.

    Returns
    -------
    bool

    Examples
    --------
    >>> import numpy as np
    >>> is_int_like(3), is_int_like(np.uint64(3)), is_int_like(np.array(3))
    (True, True, True)
    >>> is_int_like(3.0), is_int_like(True), is_int_like(np.array([3]))
    (False, False, False)
    """
    if isinstance(x, (bool, np.bool_)):
        return False
    if isinstance(x, (numbers.Integral, np.integer)):
        return True
    return (
        isinstance(x, np.ndarray)
        and x.ndim == 0
        and np.issubdtype(x.dtype, np.integer)
    )


# --------------------------------------------------------------------------- globs


def glob_wildcards_re(pattern: str) -> re.Pattern:
    """Compile a glob *pattern* into a regex whose wildcard parts are groups.

    ``*`` becomes ``(.*)``, ``?`` becomes ``(.)`` and ``[...]`` / ``[!...]``
    become one-character groups, so ``match.groups()`` gives what each wildcard
    matched (e.g. the module number in a detector source pattern). The regex is
    case-sensitive and must match the whole string, like ``fnmatchcase``.

    Parameters
    ----------
    pattern : str
        A glob pattern.

    Returns
    -------
    re.Pattern

    Examples
    --------
    >>> r = glob_wildcards_re('SPB_DET_AGIPD1M-1/DET/*CH0:xtdf')
    >>> r.match('SPB_DET_AGIPD1M-1/DET/11CH0:xtdf').groups()
    ('11',)
    >>> r.match('SPB_DET_AGIPD1M-1/DET/11CH0:xtdfX') is None
    True
    """
    parts = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            parts.append("(.*)")
        elif c == "?":
            parts.append("(.)")
        elif c == "[":
            # Find the closing bracket as fnmatch does: a ']' right after '[' or
            # '[!' is a literal member of the set.
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                parts.append(re.escape(c))  # unclosed '[' is a literal, as in fnmatch
                continue
            members = pattern[i:j]
            i = j + 1
            negate = members.startswith("!")
            if negate:
                members = members[1:]
            members = members.replace("\\", "\\\\").replace("^", "\\^")
            if not members:
                # '[]' cannot be written in fnmatch (']' would be a member); '[!]'
                # likewise; keep a regex that never/always matches one char.
                parts.append("(.)" if negate else "(?!)")
            else:
                parts.append("([%s%s])" % ("^" if negate else "", members))
        else:
            parts.append(re.escape(c))
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


# --------------------------------------------------------------------------- file names


class FileNameParts(NamedTuple):
    """Fields of an EuXFEL file name ``<CAT>-R<RUN>-<AGG>[-S<SEQ>].h5``."""

    category: str
    run: int
    aggregator: str
    #: Sequence number; 0 for ``OVERVIEW`` files; None when the name has no ``-S`` part.
    sequence: int | None


def parse_filename(name: str | PathLike) -> FileNameParts | None:
    """Parse an EuXFEL data file name (a basename or a path).

    Parameters
    ----------
    name : str or path-like
        File name; only the last path component is used.

    Returns
    -------
    FileNameParts or None
        None if the name does not follow the convention.

    Examples
    --------
    >>> parse_filename('/data/r0002/RAW-R0002-AGIPD07-S00013.h5')
    FileNameParts(category='RAW', run=2, aggregator='AGIPD07', sequence=13)
    >>> parse_filename('RAW-R0002-OVERVIEW.h5').sequence
    0
    >>> parse_filename('notes.txt') is None
    True
    """
    base = _basename(_fspath(name))
    m = FILENAME_RE.fullmatch(base)
    if m is None:
        return None
    category, run, aggregator, seq = m.groups()
    if seq is not None:
        sequence: int | None = int(seq)
    elif aggregator == "OVERVIEW":
        sequence = 0  # virtual overview files stand for the whole run
    else:
        sequence = None
    return FileNameParts(category, int(run), aggregator, sequence)


class FilenameInfo:
    """What a file name says about its content, for listings (``lsxfel``).

    Decision for names that do not follow ``<CAT>-R<RUN>-<AGG>[-S<SEQ>].h5``:
    EXtra-data asserts that the name has four dash-separated parts; xfeldata
    never raises here. Such a file is described as ``'Unrecognised file name'``
    with ``is_detector=False`` and ``detector_name = detector_moduleno = None``,
    so a listing of a folder with stray files still works.

    The aggregator must be *exactly* letters then digits to be read as a
    detector module: ``AGIPD1MCTRL00`` (a control aggregator) is not module 1,
    unlike EXtra-data.

    Parameters
    ----------
    path : str or path-like
        File path or name (no file access).

    Examples
    --------
    >>> info = FilenameInfo('RAW-R0450-LPD03-S00001.h5')
    >>> info.is_detector, info.detector_name, info.detector_moduleno
    (True, 'LPD', 3)
    >>> info.description
    'LPD module 3'
    >>> FilenameInfo('RAW-R0450-DA01-S00000.h5').description
    'Aggregated data'
    >>> FilenameInfo('foo.h5').description
    'Unrecognised file name'
    """

    __slots__ = ("path", "basename", "parts", "is_detector", "detector_name",
                 "detector_moduleno", "description")

    def __init__(self, path: str | PathLike):
        set_ = object.__setattr__  # frozen: assignment is only allowed here
        set_(self, "path", _fspath(path))
        set_(self, "basename", _basename(self.path))
        parts = parse_filename(self.basename)
        set_(self, "parts", parts)
        is_detector, det_name, modno = False, None, None
        if parts is None:
            description = "Unrecognised file name"
        else:
            agg = parts.aggregator
            m = _AGGREGATOR_RE.fullmatch(agg)
            if agg == "OVERVIEW":
                description = "Virtual overview"
            elif m is not None and m.group(1) == "DA":
                description = "Aggregated data"
            elif m is not None and m.group(1) in DETECTOR_NAMES:
                is_detector, det_name, modno = True, m.group(1), int(m.group(2))
                description = f"{det_name} module {modno}"
            else:
                description = f"Unknown data source ({agg})"
        set_(self, "is_detector", is_detector)
        set_(self, "detector_name", det_name)
        set_(self, "detector_moduleno", modno)
        set_(self, "description", description)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self):
        return (type(self), (self.path,))

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self.path == other.path

    def __hash__(self):
        return hash((type(self).__name__, self.path))

    def __repr__(self):
        return f"FilenameInfo({self.path!r})"


# --------------------------------------------------------------------------- paths


class PathInfo(NamedTuple):
    """Run metadata encoded in a (resolved) run directory path."""

    #: ``raw``, ``proc``, ``usr``, ``red``... (the storage class of the folder)
    data_category: str
    instrument: str
    #: 6-digit cycle, e.g. ``'201901'``
    cycle: str
    proposal: int
    #: None for the virtual-overview folder ``.extra_data``
    run: int | None


_EXP_PATH_RE = re.compile(
    r"/gpfs/exfel/exp/(\w+)/(\d{6})/p(\d{6})/([a-z]+)/(?:r(\d{4})|\.extra_data)(?:/|\Z)"
)
_STORAGE_PATH_RE = re.compile(
    r"/(?:gpfs/exfel/d|gpfs/exfel/u|pnfs/xfel\.eu/exfel/archive/XFEL)"
    r"/([a-z]+)/(\w+)/(\d{6})/p(\d{6})/(?:r(\d{4})|\.extra_data)(?:/|\Z)"
)


def parse_path_metadata(dirpath: str | PathLike) -> PathInfo | None:
    """Parse storage class, instrument, cycle, proposal and run from a directory path.

    The path should already be resolved (symlinks followed) by the caller. Both
    layouts of FORMAT.md 1.1 are recognised; unlike EXtra-data, all six digits
    of the proposal number are kept for the ``/gpfs/exfel/d`` (and dCache) form.
    A path nested deeper than the run folder still matches.

    Parameters
    ----------
    dirpath : str or path-like
        Absolute directory path (not touched on disk).

    Returns
    -------
    PathInfo or None
        None if neither layout matches.

    Examples
    --------
    >>> parse_path_metadata('/gpfs/exfel/exp/SPB/201901/p002173/raw/r0012')
    PathInfo(data_category='raw', instrument='SPB', cycle='201901', proposal=2173, run=12)
    >>> parse_path_metadata('/gpfs/exfel/d/proc/MID/202130/p900203/r0007').proposal
    900203
    >>> parse_path_metadata('/tmp/r0007') is None
    True
    """
    path = _fspath(dirpath)
    m = _EXP_PATH_RE.match(path)
    if m is not None:
        instrument, cycle, prop, category, run = m.groups()
    else:
        m = _STORAGE_PATH_RE.match(path)
        if m is None:
            return None
        category, instrument, cycle, prop, run = m.groups()
    return PathInfo(category, instrument, cycle, int(prop),
                    None if run is None else int(run))


# --------------------------------------------------------------------------- open_run args


def proposal_is_path(proposal: Any) -> bool:
    """True if an ``open_run`` proposal argument names a directory, not a number.

    Examples
    --------
    >>> proposal_is_path('/gpfs/exfel/exp/SPB/201901/p002173'), proposal_is_path(2173)
    (True, False)
    """
    if hasattr(proposal, '__fspath__'):
        return True
    return isinstance(proposal, str) and "/" in proposal


def normalise_proposal(proposal: int | str | PathLike) -> str:
    """Turn an ``open_run`` proposal argument into ``pNNNNNN`` (or a path string).

    Integers (incl. numpy ints) give ``'p%06d'``; digit strings with or without
    a leading ``p`` are zero-padded the same way (EXtra-data pads only strings
    without the ``p``; padding both finds the same directory for ``'p2173'`` and
    ``'2173'``); strings containing ``/`` and path objects are returned as a
    path string unchanged.

    Raises
    ------
    TypeError
        For bools, floats and other types.
    ValueError
        For negative numbers and strings that are neither digits nor a path.

    Examples
    --------
    >>> normalise_proposal(2173), normalise_proposal('2173'), normalise_proposal('p002173')
    ('p002173', 'p002173', 'p002173')
    >>> normalise_proposal('/data/p002173')
    '/data/p002173'
    """
    if proposal_is_path(proposal):
        return _fspath(proposal)
    if is_int_like(proposal):
        number = int(proposal)
    elif isinstance(proposal, str):
        m = re.fullmatch(r"p?(\d+)", proposal.strip())
        if m is None:
            raise ValueError(
                f"Proposal must be a number, 'pNNNNNN' or a directory path, not {proposal!r}"
            )
        number = int(m.group(1))
    else:
        raise TypeError(
            f"Proposal must be an int, a str or a path, not {type(proposal).__name__}"
        )
    if number < 0:
        raise ValueError(f"Proposal number must not be negative: {proposal!r}")
    return "p%06d" % number


def normalise_run(run: int | str) -> str:
    """Turn an ``open_run`` run argument into its folder name ``rNNNN``.

    Raises
    ------
    TypeError
        For bools, floats, None and other types.
    ValueError
        For negative numbers and strings other than ``[r]digits``.

    Examples
    --------
    >>> normalise_run(243), normalise_run('243'), normalise_run('r0243'), normalise_run(12345)
    ('r0243', 'r0243', 'r0243', 'r12345')
    """
    if is_int_like(run):
        number = int(run)
    elif isinstance(run, str):
        m = re.fullmatch(r"r?(\d+)", run.strip())
        if m is None:
            raise ValueError(f"Run must be a number or 'rNNNN', not {run!r}")
        number = int(m.group(1))
    else:
        raise TypeError(f"Run must be an int or a str, not {type(run).__name__}")
    if number < 0:
        raise ValueError(f"Run number must not be negative: {run!r}")
    return "r%04d" % number
