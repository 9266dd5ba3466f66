"""Exceptions raised by xfeldata.

The names, base classes and attributes match EXtra-data's (so ``except KeyError``
and ``except ValueError`` keep working in existing scripts). xfeldata adds a few
subclasses of those builtins that carry structured detail: which file, which
source, which trains.

Every lookup error names the thing that was not found and, where cheap, the
closest names that do exist.
"""
import difflib
from os.path import join as _join

__all__ = [
    'FileStructureError', 'SourceNameError', 'PropertyNameError', 'TrainIDError',
    'AliasError', 'MultiRunError', 'NoDataError', 'source_conflict_error',
    'FileOpenError', 'NoUsableFilesError', 'ProposalNotFoundError',
]


def _close_matches(name, candidates, n=3):
    try:
        return difflib.get_close_matches(str(name), sorted(candidates), n=n, cutoff=0.6)
    except TypeError:
        return []


def _did_you_mean(name, candidates):
    matches = _close_matches(name, candidates)
    if not matches:
        return ''
    return ' Did you mean: ' + ', '.join(repr(m) for m in matches) + '?'


class FileStructureError(Exception):
    """A file lacks what every EuXFEL file must have (INDEX/trainId, a source list).

    Attributes ``path`` (may be None) and ``problem``.
    """
    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = path
        self.problem = message

    def __str__(self):
        msg = self.args[0] if self.args else ''
        if self.path and str(self.path) not in msg:
            return f"{self.path}: {msg}"
        return msg


class FileOpenError(OSError):
    """A file could not be opened or read as HDF5 (missing, truncated, not HDF5, ...).

    Derives from OSError, which is what h5py raises for the same problems, so
    existing ``except OSError`` handlers keep working; the message names the
    file and the problem instead of showing HDF5's internal error stack.
    """
    def __init__(self, path, problem):
        super().__init__(f"Could not open HDF5 file {path}: {problem}")
        self.path = path
        self.problem = problem


class NoUsableFilesError(Exception):
    """None of the files given could be used ("All HDF5 files specified are unusable")."""
    def __init__(self, message, skipped=()):
        super().__init__(message)
        #: list of (path, reason) for the files that were skipped
        self.skipped = list(skipped)


class ProposalNotFoundError(Exception):
    """No proposal folder for a proposal number under the data root.

    A plain ``Exception`` subclass because EXtra-data raises a bare ``Exception``
    here: ``except Exception`` in existing scripts still catches it.
    """

    def __init__(self, proposal: str, root: str | None = None):
        self.proposal = proposal
        self.root = root
        message = f"Couldn't find proposal dir for {proposal!r}"
        if root is not None:
            message += f" (searched {_join(root, '*', '*', proposal)})"
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.proposal, self.root))


class SourceNameError(KeyError):
    """A source name that is not in the data."""
    def __init__(self, source=None, custom_message=None, candidates=()):
        self.source = source
        self.custom_message = custom_message
        self.candidates = frozenset(candidates)
        super().__init__(source)

    def __str__(self):
        if self.custom_message:
            return self.custom_message
        return (f"This data has no source named {self.source!r}."
                f"{_did_you_mean(self.source, self.candidates)}\n"
                "See data.all_sources for available sources.")


class PropertyNameError(KeyError):
    """A key (property) name that is not in a source."""
    def __init__(self, prop, source, candidates=()):
        self.prop = prop
        self.source = source
        self.candidates = frozenset(candidates)
        super().__init__(prop)

    def __str__(self):
        return (f"No property {self.prop!r} for source {self.source!r}."
                f"{_did_you_mean(self.prop, self.candidates)}")


class TrainIDError(KeyError):
    """A train ID that is not in the current selection."""
    def __init__(self, train_id):
        self.train_id = train_id
        super().__init__(train_id)

    def __str__(self):
        return f"Train ID {self.train_id} not found in this data"


class AliasError(KeyError):
    """An alias that is not defined."""
    def __init__(self, alias, candidates=()):
        self.alias = alias
        self.candidates = frozenset(candidates)
        super().__init__(alias)

    def __str__(self):
        if not self.candidates:
            return f"No alias {self.alias!r}: no aliases have been loaded."
        return (f"Alias {self.alias!r} not found."
                f"{_did_you_mean(self.alias, self.candidates)}")


class MultiRunError(ValueError):
    """Run-level information asked of data combined from several runs."""
    def __init__(self, message=None):
        super().__init__(message or (
            "The requested data is only available for a single run. This "
            "collection contains data from multiple runs or its origin is unknown."
        ))


class NoDataError(ValueError):
    """No data where one value was expected (e.g. ``as_single_value``)."""
    def __init__(self, source, key=None):
        self.source = source
        self.key = key
        super().__init__(source, key)

    def __str__(self):
        if self.key:
            return f"No data found for key {self.key!r} of source {self.source!r}"
        return f"No data found for source {self.source!r}"


def source_conflict_error(conflicts) -> ValueError:
    """The error for the same (source, train ID) found in more than one place.

    It is a plain ValueError, as in EXtra-data (scripts and the reference
    corpus match on that class), carrying structured detail: ``.conflicts``
    is a list of records ``(source, train_id, paths)``: for each conflicting
    source, the first duplicated train ID and the files holding it.
    """
    conflicts = list(conflicts)
    n = len({c[0] for c in conflicts})
    lines = [f"{n} sources have conflicting data (same train ID in different files):"]
    for src, tid, paths in conflicts[:10]:
        files = ', '.join(sorted({_basename(p) for p in paths}))
        where = f"in {files}" if len(paths) > 1 else f"twice in {files}"
        lines.append(f"  {src}: train {tid} {where}")
    if len(conflicts) > 10:
        lines.append(f"  ... and {len(conflicts) - 10} more")
    err = ValueError('\n'.join(lines))
    err.conflicts = conflicts
    return err


def _basename(p):
    s = str(p)
    return s.rsplit('/', 1)[-1]
