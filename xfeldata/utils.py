"""Small process-level helpers (API.md section 18): CPU counts, progress text, lazy isinstance."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

__all__ = [
    "available_cpu_cores",
    "default_num_threads",
    "isinstance_no_import",
    "progress_bar",
]


def available_cpu_cores() -> int:
    """Number of CPU cores this process may run on (never 0).

    Uses the scheduler affinity mask where the OS has one (Linux: batch jobs and
    containers are often limited to a few cores of a large node). Elsewhere it
    falls back to ``min(os.cpu_count(), 8)``, because the total core count of a
    shared machine is a poor guide to what one process should use.

    Returns
    -------
    int

    Examples
    --------
    >>> available_cpu_cores() >= 1
    True
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity API (macOS, Windows)
        n = min(os.cpu_count() or 1, 8)
    return max(n, 1)


def default_num_threads(fixed_limit: int = 16) -> int:
    """Threads to use for parallel work such as decompression (never 0).

    The smallest of *fixed_limit*, :func:`available_cpu_cores` and the
    ``EXTRA_NUM_THREADS`` environment variable (if set to an integer; other
    values are ignored with a warning).

    Parameters
    ----------
    fixed_limit : int
        Upper bound whatever the machine.

    Returns
    -------
    int

    Examples
    --------
    >>> 1 <= default_num_threads(4) <= 4
    True
    """
    limits = [int(fixed_limit), available_cpu_cores()]
    env = os.environ.get("EXTRA_NUM_THREADS", "").strip()
    if env:
        try:
            limits.append(int(env))
        except ValueError:
            warnings.warn(f"Ignoring EXTRA_NUM_THREADS={env!r}: not an integer",
                          RuntimeWarning, stacklevel=2)
    return max(min(limits), 1)


def progress_bar(done: int, total: int, suffix: str = " ", *, width: int = 40) -> str:
    """Text progress bar for long loops, e.g. ``print(progress_bar(i, n), end='\\r')``.

    Parameters
    ----------
    done, total : int
        Progress so far and the end; ``total <= 0`` counts as complete and
        *done* is clamped to ``[0, total]`` for drawing.
    suffix : str
        Text appended after the counts.
    width : int
        Characters inside the brackets.

    Returns
    -------
    str

    Examples
    --------
    >>> progress_bar(5, 20, width=8)
    '[##      ] 5/20 25% '
    >>> progress_bar(0, 0, suffix='', width=4)
    '[####] 0/0 100%'
    """
    fraction = 1.0 if total <= 0 else min(max(done / total, 0.0), 1.0)
    filled = int(fraction * width)
    bar = "#" * filled + " " * (width - filled)
    return f"[{bar}] {done}/{total} {int(fraction * 100)}%{suffix}"


def isinstance_no_import(obj: Any, mod: str, cls: str) -> bool:
    """``isinstance(obj, mod.cls)`` without importing *mod*.

    If the module has not been imported, no object can be an instance of its
    classes, so the (possibly slow, possibly missing) import is skipped.

    Parameters
    ----------
    obj : object
    mod : str
        Module name, e.g. ``'xarray'``.
    cls : str
        Class name in that module, e.g. ``'DataArray'``.

    Returns
    -------
    bool

    Examples
    --------
    >>> import fractions
    >>> isinstance_no_import(fractions.Fraction(1, 2), 'fractions', 'Fraction')
    True
    >>> isinstance_no_import(1, 'a_module_never_imported', 'Thing')
    False
    """
    module = sys.modules.get(mod)
    if module is None:
        return False
    klass = getattr(module, cls, None)
    return isinstance(klass, type) and isinstance(obj, klass)
