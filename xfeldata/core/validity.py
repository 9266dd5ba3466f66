"""Train validity: which train IDs of a file are trustworthy (pure).

Format 1.0 and later record it in ``INDEX/flag``; format 0.5 has no flag and
validity is guessed from the order of the IDs (FORMAT.md section 3.2).
"""
from __future__ import annotations

import numpy as np

__all__ = ['validity_from_flag', 'guess_validity', 'parse_source_list', 'aux_source_name']


def validity_from_flag(flag, format_version: str) -> np.ndarray:
    """Boolean validity from ``INDEX/flag``.

    Version 1.1 (pclayer 1.10.3-2.10.5) stored an index where the time server
    is 0, so validity is ``flag == 0`` there; otherwise ``flag != 0``.

    >>> validity_from_flag(np.array([1, 0, 1]), '1.0').tolist()
    [True, False, True]
    >>> validity_from_flag(np.array([0, 3, 0]), '1.1').tolist()
    [True, False, True]
    """
    flag = np.asarray(flag)
    if format_version == '1.1':
        return flag == 0
    return flag != 0


def guess_validity(train_ids) -> np.ndarray:
    """Guess which train IDs are valid from their order (format 0.5).

    Start with all valid. At each position where the ID does not increase
    (``tid[i+1] <= tid[i]``), either the earlier IDs ``>= tid[i+1]`` or the later
    IDs ``<= tid[i]`` are wrong: invalidate the smaller set (the later one on a
    tie). This keeps the longest increasing sequence with the fewest removals
    for the defects seen in practice (one ID far too high or too low).

    >>> guess_validity(np.array([1, 2, 90, 4, 5], np.uint64)).tolist()
    [True, True, False, True, True]
    >>> guess_validity(np.array([10, 11, 2, 13], np.uint64)).tolist()
    [True, True, False, True]
    """
    tids = np.asarray(train_ids)
    valid = np.ones(len(tids), dtype=bool)
    if len(tids) < 2:
        return valid
    # Only the downward jumps need work; there are few of them.
    for i in np.nonzero(tids[1:] <= tids[:-1])[0]:
        lo, hi = tids[i + 1], tids[i]
        earlier = np.nonzero(valid[:i + 1] & (tids[:i + 1] >= lo))[0]
        later = np.nonzero(valid[i + 1:] & (tids[i + 1:] <= hi))[0] + i + 1
        if len(earlier) < len(later):
            valid[earlier] = False
        else:
            valid[later] = False
    return valid


def parse_source_list(data_source_ids, path=None):
    """Split ``METADATA/dataSourceId`` entries into control and instrument sources.

    Returns ``(control_sources, {instrument_source: set of index groups})``.
    Empty entries (padding) and the 1.1 ``Karabo_TimerServer`` pseudo-row are
    skipped; any other category raises ValueError naming the entry.

    >>> ctrl, inst = parse_source_list(['CONTROL/A/B/C', 'INSTRUMENT/A/B/C:out/data', ''])
    >>> sorted(ctrl), inst
    (['A/B/C'], {'A/B/C:out': {'data'}})
    """
    control, instrument = set(), {}
    for entry in data_source_ids:
        if isinstance(entry, bytes):
            entry = entry.decode('utf-8', 'surrogateescape')
        if not isinstance(entry, str):
            where = f" in {path}" if path else ''
            raise ValueError(f"Source list entry {entry!r} is not a string{where}")
        if not entry or entry == 'Karabo_TimerServer':
            continue
        category, _, rest = entry.partition('/')
        if category == 'CONTROL':
            control.add(rest)
        elif category == 'INSTRUMENT':
            dev, sep, chan_group = rest.partition(':')
            chan, _, group = chan_group.partition('/')
            instrument.setdefault(dev + sep + chan, set()).add(group)
        else:
            where = f" in {path}" if path else ''
            raise ValueError(f"Unknown data category {category!r} in source list entry "
                             f"{entry!r}{where}")
    return control, instrument


def aux_source_name(entry: str, section: str) -> str:
    """Source of an auxiliary-section entry: between the section and the last ``/``.

    >>> aux_source_name('ERRATA/TRAINS_OUTSIDE_BUFFER_RANGE/event', 'ERRATA')
    'TRAINS_OUTSIDE_BUFFER_RANGE'
    """
    if isinstance(entry, bytes):
        entry = entry.decode('utf-8', 'surrogateescape')
    rest = entry[len(section) + 1:] if entry.startswith(section + '/') else entry
    return rest.rpartition('/')[0] or rest
