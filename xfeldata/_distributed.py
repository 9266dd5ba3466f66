"""Scale-out: apply a per-train function across a run with dask (``map_trains``).

A collection is a value: its index records and selection pickle small and
hold no open file, so a part of it (``split_trains``) travels to a dask worker
as it is, and the worker opens the files it needs through xfeldata's handle
cache without scanning them again (the records carry the index). Each task
iterates its part's trains with the batch engine (one read per key per file
block, :mod:`xfeldata._iterate`) and applies the function to every train.

With a ``distributed.Client`` the tasks run on its cluster (a LocalCluster, or
SLURM through dask-jobqueue: docs/scale-out.md); without one, on dask's local
scheduler; without dask installed, in this process. The results come back in
train order.
"""
from __future__ import annotations

import functools
import sys

__all__ = ['map_trains', 'DEFAULT_TRAINS_PER_TASK']

#: Trains per task when the caller does not say (a few hundred MB of detector data
#: at most for typical selections; enough trains that task overhead is small).
DEFAULT_TRAINS_PER_TASK = 50


def _run_part(part, func, iter_kwargs):
    """Task: ``func(train_id, data)`` for every train of one part, in order."""
    return [(int(tid), func(tid, data)) for tid, data in part.trains(**iter_kwargs)]


def _show_progress(progress) -> bool:
    if progress is None:
        return sys.stderr.isatty()
    return bool(progress)


def map_trains(dc, func, *, client=None, trains_per_task=None, progress=None,
               with_train_ids=False, **iter_kwargs) -> list:
    """``[func(train_id, data) for each selected train]``, computed in parallel.

    Parameters
    ----------
    dc : DataCollection
    func : callable
        ``func(train_id, data)`` with ``data`` the dict ``dc.trains()`` yields
        for that train. It must be picklable (a module-level function) when a
        distributed client runs it, and should be pure.
    client : distributed.Client, optional
        Run on this cluster; default: dask's local scheduler (threads) if dask
        is installed, else serially in this process.
    trains_per_task : int, optional
        Trains per task (default :data:`DEFAULT_TRAINS_PER_TASK`).
    progress : bool, optional
        Show a progress bar on stderr; default: when stderr is a terminal.
    with_train_ids : bool
        Return ``(train_id, result)`` pairs instead of bare results.
    **iter_kwargs
        Passed to ``trains()`` (``require_all``, ``flat_keys``, ``keep_dims``).

    Returns
    -------
    list
        ``func``'s results, in the order of the selected train IDs (trains
        skipped by ``require_all`` are absent).
    """
    n = DEFAULT_TRAINS_PER_TASK if trains_per_task is None else int(trains_per_task)
    if n < 1:
        raise ValueError(f"trains_per_task must be at least 1, got {trains_per_task}")
    parts = list(dc.split_trains(trains_per_part=n)) if len(dc.train_ids) else []
    show = _show_progress(progress)
    if client is not None:
        task = functools.partial(_run_part, func=func, iter_kwargs=iter_kwargs)
        futures = client.map(task, parts, pure=False)
        if show:
            from distributed import progress as dist_progress
            dist_progress(futures)
        chunks = client.gather(futures)
    else:
        try:
            import dask
        except ImportError:
            dask = None
        if dask is None:
            chunks = []
            for i, part in enumerate(parts):
                chunks.append(_run_part(part, func, iter_kwargs))
                if show:
                    print(f"\rmap_trains: {i + 1}/{len(parts)} parts", end='',
                          file=sys.stderr, flush=True)
            if show and parts:
                print(file=sys.stderr)
        else:
            tasks = [dask.delayed(_run_part, pure=False)(p, func, iter_kwargs) for p in parts]
            if show:
                from dask.diagnostics import ProgressBar
                with ProgressBar(out=sys.stderr):
                    chunks = list(dask.compute(*tasks))
            else:
                chunks = list(dask.compute(*tasks))
    pairs = [pair for chunk in chunks for pair in chunk]
    return pairs if with_train_ids else [r for _, r in pairs]
