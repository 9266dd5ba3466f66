"""EXtra-data-compatible ``read_machinery`` module (API.md section 5).

The pure pieces live in :mod:`xfeldata.core.trains` and :mod:`xfeldata.core.names`
and are re-exported here under their EXtra-data names. This module adds the few
helpers that look at the environment or the filesystem: the data roots and the
proposal directory lookup.
"""

from __future__ import annotations

import glob
import os
from typing import Any

from .core.names import (
    DETECTOR_NAMES,
    DETECTOR_SOURCE_RE,
    FilenameInfo,
    glob_wildcards_re,
    is_int_like,
    normalise_proposal,
    proposal_is_path,
)
from .core.trains import (
    by_id,
    by_index,
    roi_shape,
    select_train_ids,
    split_trains,
)

__all__ = [
    "DATA_ROOT_DIR",
    "DETECTOR_NAMES",
    "DETECTOR_SOURCE_RE",
    "FilenameInfo",
    "ProposalNotFoundError",
    "by_id",
    "by_index",
    "data_root_dir",
    "find_proposal",
    "glob_wildcards_re",
    "is_int_like",
    "roi_shape",
    "select_train_ids",
    "split_trains",
    "sw_root_dir",
]

_DEFAULT_DATA_ROOT = "/gpfs/exfel/exp"
_DEFAULT_SW_ROOT = "/gpfs/exfel/sw"


def data_root_dir() -> str:
    """Root folder searched for proposals, read from the environment at each call.

    ``$XFELDATA_DATA_ROOT`` wins if set, then ``$EXTRA_DATA_DATA_ROOT`` (so
    settings made for EXtra-data keep working), else ``/gpfs/exfel/exp``.

    Returns
    -------
    str

    Examples
    --------
    >>> data_root_dir().startswith('/')  # default: '/gpfs/exfel/exp'
    True
    """
    return (os.environ.get("XFELDATA_DATA_ROOT")
            or os.environ.get("EXTRA_DATA_DATA_ROOT")
            or _DEFAULT_DATA_ROOT)


#: The data root at import time. Kept for compatibility with EXtra-data;
#: prefer :func:`data_root_dir`, which follows later changes of the environment.
DATA_ROOT_DIR = data_root_dir()


def sw_root_dir() -> str:
    """Root of the EuXFEL software area (alias templates): ``$EXTRA_DATA_SW_ROOT``.

    Returns
    -------
    str
        The variable's value, else ``/gpfs/exfel/sw``.

    Examples
    --------
    >>> sw_root_dir().startswith('/')  # default: '/gpfs/exfel/sw'
    True
    """
    return os.environ.get("EXTRA_DATA_SW_ROOT") or _DEFAULT_SW_ROOT


from .exceptions import ProposalNotFoundError  # noqa: E402  (one class, defined there)


def find_proposal(propno: Any) -> str:
    """Find the folder of a proposal: ``<data root>/<INSTRUMENT>/<CYCLE>/pNNNNNN``.

    Parameters
    ----------
    propno : int, str or os.PathLike
        A proposal number (``2173``, ``'2173'``, ``'p002173'``), or a path (any
        string containing ``/``, or a path object), which is returned as is.

    Returns
    -------
    str
        The proposal directory. When several instrument/cycle folders hold the
        proposal, the first in sorted order is taken (EXtra-data takes the
        first one ``glob`` happens to list).

    Raises
    ------
    ProposalNotFoundError
        (an ``Exception``) ``"Couldn't find proposal dir for 'pNNNNNN'"``.

    Examples
    --------
    >>> find_proposal('/gpfs/exfel/exp/SPB/201901/p002173')  # a path is returned as is
    '/gpfs/exfel/exp/SPB/201901/p002173'
    """
    if proposal_is_path(propno):
        return os.fspath(propno)
    name = normalise_proposal(propno)
    root = data_root_dir()
    # glob.escape: a data root containing '[' must still be taken literally.
    hits = sorted(glob.glob(os.path.join(glob.escape(root), "*", "*", name)))
    for path in hits:
        if os.path.isdir(path):
            return path
    raise ProposalNotFoundError(name, root)


# ---------------------------------------------------------------------------
# RESERVED FOR THE READER MODULE (another engineer): `same_run`, `DataChunk`
# and `trains_files_index` (API.md section 5) are added here by the reader
# work, re-exported from where they are implemented. Do not implement them in
# this module's pure-helper part above.
# ---------------------------------------------------------------------------
