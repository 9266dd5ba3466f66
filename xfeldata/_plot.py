"""``DataCollection.plot_missing_data``: which sources lack data for which trains.

The table (:func:`missing_data_rows`) comes from the index alone (INDEX
counts, no data read); :func:`missing_ranges` is a pure numpy function; only
:func:`plot_missing_data` imports matplotlib (the ``plot`` extra), lazily.
"""
from __future__ import annotations

import sys
import time

import attrs
import numpy as np

__all__ = ['MissingRow', 'missing_ranges', 'missing_data_rows', 'plot_missing_data']

#: print a notice when reading the counts takes longer than this (seconds)
SLOW_SCAN_S = 2.0


@attrs.frozen
class MissingRow:
    """One bar of the plot: a source (or one index group of it) and its gaps."""
    label: str
    n_missing: int
    saved_pct: float
    ranges: tuple          # ((first train position, number of trains), ...)


def missing_ranges(present) -> tuple:
    """Runs of False in a boolean array, as ``(start, length)`` pairs.

    >>> missing_ranges(np.array([True, False, False, True, False]))
    ((1, 2), (4, 1))
    >>> missing_ranges(np.array([], dtype=bool))
    ()
    """
    missing = ~np.asarray(present, dtype=bool)
    if not missing.any():
        return ()
    edges = np.diff(np.concatenate(([0], missing.view(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    return tuple(zip(starts.tolist(), (stops - starts).tolist()))


def _labels_by_source(dc) -> dict:
    """Source -> alias (the first alias naming the whole source), if any."""
    out = {}
    for alias, target in sorted(dc._aliases):
        if isinstance(target, str):
            out.setdefault(target, alias)
    return out


def missing_data_rows(dc, min_saved_pct=95, expand_instrument=False) -> list:
    """The rows :func:`plot_missing_data` draws, most missing trains first.

    A source (or, with ``expand_instrument``, an instrument source's index
    group) is listed when the share of selected trains holding data for it is
    at most ``min_saved_pct`` percent.
    """
    n = len(dc.train_ids)
    labels = _labels_by_source(dc)
    rows = []
    for src in sorted(dc.all_sources):
        sd = dc[src]
        groups = [None]
        if expand_instrument and sd.is_instrument:
            groups = sorted(sd.index_groups)
        for group in groups:
            present = np.asarray(sd.data_counts(labelled=False, index_group=group)) > 0
            saved = 100.0 * present.sum() / n if n else 100.0
            if saved > min_saved_pct:
                continue
            label = labels.get(src, src)
            if group is not None:
                label = f'{label} [{group}]'
            rows.append(MissingRow(label, int(n - present.sum()), saved,
                                   missing_ranges(present)))
    rows.sort(key=lambda r: (-r.n_missing, r.label))
    return rows


def _title(dc, n_rows: int, min_saved_pct) -> str:
    title = f'{n_rows} source(s) with <= {min_saved_pct}% of trains saved'
    try:
        meta = dc.run_metadata()
    except Exception:  # metadata is decoration: never fail the plot for it
        meta = {}
    prop, run = meta.get('proposalNumber'), meta.get('runNumber')
    if prop is not None and run is not None:
        title = f'p{int(prop):06d}, r{int(run):04d}: ' + title
    return title


def plot_missing_data(dc, min_saved_pct=95, expand_instrument=False):
    """Broken-bar plot of the trains each sparse source is missing.

    Returns the :class:`matplotlib.axes.Axes`. Needs matplotlib (the
    ``plot`` extra: ``pip install 'xfeldata[plot]'``).
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plot_missing_data needs matplotlib: "
                          "pip install 'xfeldata[plot]'") from None
    t0 = time.perf_counter()
    rows = missing_data_rows(dc, min_saved_pct, expand_instrument)
    if time.perf_counter() - t0 > SLOW_SCAN_S:
        print(f'Read the data counts of {len(dc.all_sources)} sources in '
              f'{time.perf_counter() - t0:.1f} s', file=sys.stderr)
    n = len(dc.train_ids)
    fig, ax = plt.subplots(figsize=(10, max(2.0, 0.4 * len(rows) + 1)))
    for i, row in enumerate(rows):
        ax.broken_barh(row.ranges, (i - 0.4, 0.8), color='tab:red')
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f'{r.label} ({r.saved_pct:.1f}%)' for r in rows])
    ax.set_ylim(-0.5 if rows else -1, len(rows) - 0.5 if rows else 1)
    ax.invert_yaxis()
    ax.set_xlim(0, max(n, 1))
    ax.set_xlabel(f'train index (of {n} trains)')
    ax.set_title(_title(dc, len(rows), min_saved_pct))
    fig.tight_layout()
    return ax
