"""Reading data: xfeldata against the raw limit (plain h5py doing the same reads).

    python benchmarks/bench_read.py [--dir DIR] [--long-dir DIR] [--reps 21]

Writes two synthetic runs unless given: the benchmark run of
``xfeldata.testing.make_benchmark_run`` (76 files, 100 trains, 16 AGIPD
modules of 10 frames (2, 64, 64) u2 per train) and a long control-only run
(50,000 trains in 20 sequence files, about 2 s to write). Then times,
alternately in one process, with the files already open on both sides
(xfeldata's handle cache is warm; h5py holds its ``File`` objects):

control key (a)
    ``run[src, 'value'].ndarray()`` over all trains (plan + read) against
    ``h5py`` ``read_direct`` of the same rows, one call per file, into one
    preallocated array. On the benchmark run (100 trains, 4 files) and on the
    long run (50,000 trains, 20 files).
detector module (b)
    ``run[module, 'image.data'].ndarray()`` (16 MB in 4 files) against
    ``read_direct`` of the same rows.
split_trains (c)
    ``list(run.split_trains(trains_per_part=16))`` on the long run (3125
    DataCollections); time only.
planning
    ``kd.plan()`` on the long run for all trains and for every other train
    (25,000 steps); time only.

Prints a table of median times and ratios (xfeldata / raw). Timings are
reported, never asserted.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import h5py
import numpy as np


def _write_long_run(directory, n_trains=50_000, n_files=20):
    from xfeldata.testing import (Aggregator, ControlSource, RunSpec, even_sequence_starts,
                                  write_run)
    keys = {'value': np.float64, 'vector': (np.float32, (4,))}
    srcs = [ControlSource(f'LONG_CTRL/DEV/D{i}', keys) for i in range(3)]
    starts = even_sequence_starts(n_trains, n_files)
    spec = RunSpec(np.arange(100_000, 100_000 + n_trains),
                   [Aggregator('DA01', srcs, sequence_starts=starts)])
    write_run(directory, spec)


def raw_reader(plan):
    """A function doing the plan's reads with plain h5py (one read_direct per step)."""
    files = {s.path: h5py.File(s.path, 'r') for s in plan.steps}
    steps = [(s.path, s.dataset, np.s_[s.src_start:s.src_stop], np.s_[s.dst_start:s.dst_stop])
             for s in plan.steps]

    def read():
        out = np.empty(plan.shape, plan.dtype)
        for path, dataset, src, dst in steps:
            files[path][dataset].read_direct(out, src, dst)
        return out
    return read, files


def alternate(reps, a, b):
    """Median times of a() and b(), run alternately."""
    ta, tb = [], []
    a(), b()   # warm the page cache and the handles on both sides
    for _ in range(reps):
        for fn, out in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def timed(reps, fn):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def compare(reps, kd):
    """(xfeldata time, raw time) for kd.ndarray(), checking both give the same array."""
    read, files = raw_reader(kd.plan())
    try:
        if not np.array_equal(kd.ndarray(), read()):
            raise AssertionError(f"xfeldata and h5py disagree for {kd}")
        return alternate(reps, kd.ndarray, read)
    finally:
        for f in files.values():
            f.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dir', help='an existing benchmark run (default: write one)')
    ap.add_argument('--long-dir', help='an existing long control run (default: write one)')
    ap.add_argument('--reps', type=int, default=21)
    args = ap.parse_args(argv)
    # Reads do not use the index cache; leave no cache files behind.
    os.environ.setdefault('XFELDATA_CACHE', 'off')
    os.environ['XFELDATA_NO_RUN_MAP_WRITE'] = '1'
    written = []

    from xfeldata.testing import make_benchmark_run
    run_dir = args.dir or _write('benchmark run', make_benchmark_run, written)
    long_dir = args.long_dir or _write('long run', _write_long_run, written)
    try:
        return _measure(run_dir, long_dir, args.reps)
    finally:
        for d in written:
            shutil.rmtree(d, ignore_errors=True)


def _write(what, writer, written):
    d = tempfile.mkdtemp(prefix='xfeldata-bench-')
    written.append(d)
    t0 = time.perf_counter()
    writer(d)
    print(f"wrote {what} in {time.perf_counter() - t0:.1f} s: {d}")
    return d


def _measure(run_dir, long_dir, reps):
    import xfeldata
    run = xfeldata.RunDirectory(run_dir)
    long = xfeldata.RunDirectory(long_dir)
    ctrl = sorted(s for s in run.control_sources if s.startswith('BENCH_CTRL'))[0]
    module = sorted(run.detector_sources)[0]
    kd_ctrl, kd_det = run[ctrl, 'value'], run[module, 'image.data']
    kd_long = long['LONG_CTRL/DEV/D0', 'value']
    print(f"benchmark run: {len(run.files)} files, {len(run.train_ids)} trains; "
          f"long run: {len(long.files)} files, {len(long.train_ids)} trains")

    rows = []
    tx, tr = compare(reps, kd_ctrl)
    rows.append((f'(a) control key, {len(kd_ctrl.train_ids)} trains', tx, tr, 1.5))
    tx, tr = compare(reps, kd_long)
    rows.append((f'(a) control key, {len(kd_long.train_ids)} trains', tx, tr, 1.5))
    tx, tr = compare(reps, kd_det)
    rows.append((f'(b) {kd_det.key}, {kd_det.nbytes / 2**20:.0f} MiB', tx, tr, 1.05))
    t = timed(max(3, reps // 4), lambda: list(long.split_trains(trains_per_part=16)))
    rows.append(('(c) split_trains 50k into 16s', t, None, None))
    t = timed(reps, kd_long.plan)
    rows.append(('plan, 50k trains', t, None, None))
    every_other = kd_long.select_trains(np.s_[::2])
    t = timed(max(3, reps // 4), every_other.plan)
    rows.append((f'plan, every 2nd ({every_other.plan().n_reads} steps)', t, None, None))
    t = timed(max(3, reps // 4), every_other.ndarray)
    rows.append(('read, every 2nd train', t, None, None))

    print(f"\n{'operation':<36}{'xfeldata':>12}{'raw h5py':>12}{'ratio':>8}{'target':>8}")
    for name, tx, tr, target in rows:
        raw = f"{tr * 1e3:>10.2f}ms" if tr is not None else f"{'':>12}"
        ratio = f"{tx / tr:>8.2f}" if tr is not None else f"{'':>8}"
        tgt = f"{target:>8.2f}" if target is not None else f"{'':>8}"
        print(f"{name:<36}{tx * 1e3:>10.2f}ms{raw}{ratio}{tgt}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
