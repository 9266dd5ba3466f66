"""Timing shared by the benchmarks (run as scripts: ``from _timing import alternate``)."""
import statistics
import time


def alternate(reps, *fns):
    """Median time of each function, the functions run alternately.

    Each runs once untimed first, to warm the page cache and the handles on
    every side; then ``reps`` rounds call them in turn, so that all see the
    same machine load.
    """
    times = [[] for _ in fns]
    for fn in fns:
        fn()
    for _ in range(reps):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]
