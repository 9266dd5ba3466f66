"""Labelled outputs: xfeldata against the raw limit (plain h5py doing the same reads).

    python benchmarks/bench_outputs.py [--dir DIR] [--reps 21] [--keys 100]

Writes the benchmark run of ``xfeldata.testing.make_benchmark_run`` unless
given one (76 files; 150 control sources of 4 keys in 3 aggregators x 4
sequence files, 100 trains). Takes the first 100 one-value-per-train control
keys (``value``, ``setpoint``, ``status.code`` of the first 34 sources, in
sorted order) and times, alternately in one process, with the files already
open on both sides (xfeldata's handle cache is warm; h5py holds its ``File``
objects):

get_dataframe (a)
    ``selected.get_dataframe()`` on a collection holding just those keys
    (plan, read, join into a DataFrame) against ``h5py`` ``read_direct`` of the same rows of the
    same 100 datasets, one call per file, into preallocated arrays.
xarray (b)
    ``[run[src, key].xarray() for ...]`` (key lookup, plan, read, label)
    against the same h5py reads.
dask (c)
    ``run[src, key].dask_array().compute()`` for one detector module, against
    the same reads with h5py (single-threaded dask scheduler).

Prints a table of median times and ratios (xfeldata / raw) with the targets.
Timings are reported, never asserted.
"""
import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_read import alternate  # noqa: E402


def raw_reader(plans):
    """A function doing the plans' reads with plain h5py (one read_direct per step)."""
    files = {}
    jobs = []
    for plan in plans:
        for s in plan.steps:
            if s.path not in files:
                files[s.path] = h5py.File(s.path, 'r')
        steps = [(files[s.path], s.dataset, np.s_[s.src_start:s.src_stop],
                  np.s_[s.dst_start:s.dst_stop]) for s in plan.steps]
        jobs.append((plan.shape, plan.dtype, steps))

    def read():
        # Datasets are looked up at each read, as in bench_read.py: a script
        # using h5py would not keep thousands of dataset objects around.
        out = []
        for shape, dtype, steps in jobs:
            arr = np.empty(shape, dtype)
            for f, name, src, dst in steps:
                f[name].read_direct(arr, src, dst)
            out.append(arr)
        return out
    return read, files


def control_keys(run, n):
    """The first ``n`` (source, key) pairs of one value per train, sorted."""
    out = []
    for src in sorted(s for s in run.control_sources if s.startswith('BENCH_CTRL')):
        for key in sorted(run[src].keys(inc_timestamps=False)):
            if run[src, key].entry_shape == ():
                out.append((src, key))
            if len(out) == n:
                return out
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dir', help='an existing benchmark run (default: write one)')
    ap.add_argument('--reps', type=int, default=21)
    ap.add_argument('--keys', type=int, default=100)
    args = ap.parse_args(argv)
    # Reads do not use the index cache; leave no cache files behind.
    os.environ.setdefault('XFELDATA_CACHE', 'off')
    os.environ['XFELDATA_NO_RUN_MAP_WRITE'] = '1'
    written = None
    if args.dir:
        run_dir = args.dir
    else:
        from xfeldata.testing import make_benchmark_run
        run_dir = written = tempfile.mkdtemp(prefix='xfeldata-bench-')
        t0 = time.perf_counter()
        make_benchmark_run(run_dir)
        print(f"wrote benchmark run in {time.perf_counter() - t0:.1f} s: {run_dir}")
    try:
        return _measure(run_dir, args.reps, args.keys)
    finally:
        if written:
            shutil.rmtree(written, ignore_errors=True)


def _measure(run_dir, reps, n_keys):
    import xfeldata
    run = xfeldata.RunDirectory(run_dir)
    pairs = control_keys(run, n_keys)
    sel = {}
    for src, key in pairs:
        sel.setdefault(src, set()).add(key)
    plans = [run[src, key].plan() for src, key in pairs]
    n_reads = sum(p.n_reads for p in plans)
    print(f"benchmark run: {len(run.files)} files, {len(run.train_ids)} trains; "
          f"{len(pairs)} control keys of {len(sel)} sources, {n_reads} h5py reads")
    read, files = raw_reader(plans)
    rows = []
    try:
        selected = run.select(sel)

        def frame():
            return selected.get_dataframe()
        df, raw = frame(), read()
        for (src, key), arr in zip(pairs, raw):
            col = df[f"{src}/{key}"].to_numpy()
            if not np.array_equal(col, arr):
                raise AssertionError(f"get_dataframe and h5py disagree for {src} {key}")
        tx, tr = alternate(reps, frame, read)
        rows.append((f'(a) get_dataframe, {len(pairs)} keys', tx, tr, 2.0))

        def arrays():
            return [run[src, key].xarray() for src, key in pairs]
        for da, arr in zip(arrays(), raw):
            if not np.array_equal(da.values, arr):
                raise AssertionError(f"xarray and h5py disagree for {da.name}")
        tx, tr = alternate(reps, arrays, read)
        rows.append((f'(b) .xarray() x {len(pairs)} keys', tx, tr, 2.0))
    finally:
        for f in files.values():
            f.close()

    if importlib.util.find_spec('dask') is None:
        print("dask not installed: (c) skipped (pip install 'xfeldata[dask]')")
    else:
        module = sorted(run.detector_sources)[0]
        kd = run[module, 'image.data']
        read, files = raw_reader([kd.plan()])
        try:
            def lazy():
                return kd.dask_array().compute(scheduler='synchronous')
            if not np.array_equal(lazy(), read()[0]):
                raise AssertionError("dask and h5py disagree")
            tx, tr = alternate(max(3, reps // 2), lazy, read)
            rows.append((f'(c) dask_array().compute(), {kd.nbytes / 2**20:.0f} MiB', tx, tr,
                         None))
        finally:
            for f in files.values():
                f.close()

    print(f"\n{'operation':<40}{'xfeldata':>12}{'raw h5py':>12}{'ratio':>8}{'target':>8}")
    for name, tx, tr, target in rows:
        tgt = f"{target:>8.2f}" if target is not None else f"{'':>8}"
        print(f"{name:<40}{tx * 1e3:>10.2f}ms{tr * 1e3:>10.2f}ms{tx / tr:>8.2f}{tgt}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
