"""Train iteration: ``run.trains()`` against the raw limit (plain h5py bulk reads).

    python benchmarks/bench_trains.py [--dir DIR] [--reps 21] [--trains 40]

Writes the benchmark run of ``xfeldata.testing.make_benchmark_run`` unless
given one (76 files, 100 trains; about 3 s to write). Selects 10 control
sources (8 keys each: value and timestamp of 4 properties, in 3 aggregators)
and one AGIPD module (all 20 keys; 10 frames (2, 64, 64) u2 per train), then
times, alternately in one process, with files already open on both sides:

trains()
    ``for tid, data in sel.trains(): ...`` over the first N trains (default
    40): every train dict built, every value sliced out.
raw h5py, bulk
    the same datasets read with plain h5py: per key and file, the dataset
    looked up by name and one ``read_direct`` of the N trains' rows (found
    from the INDEX beforehand, not timed) into a preallocated array. No
    per-train work: the raw limit. A second row compares with the same reads
    through h5py Dataset objects made beforehand (untimed), a floor below
    what any reader looking datasets up by name can reach.
train_from_id, per train
    ``sel.train_from_id(tid)`` for each of the N trains: one small read per
    key per train, what iteration without bulk reads would cost (time only).

Also checks once that ``trains()`` yields the rows h5py reads. Prints a
table of median times and the ratio to the raw limit (target: within 2x).
Timings are reported, never asserted.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

import h5py
import numpy as np
from _timing import alternate


def raw_bulk_reader(sel, preopen=False):
    """A function reading every selected key of ``sel`` with plain h5py, in bulk.

    The rows come from each key's read plan (one step per file for these
    well-formed files); the reads themselves are plain ``read_direct`` calls.
    With ``preopen``, the h5py Dataset objects are made beforehand (not
    timed): the strictest floor, which no reader that looks datasets up by
    name can reach. Returns (read function, open h5py files).
    """
    jobs, files = [], {}
    for src in sorted(sel.all_sources):
        for key in sorted(sel[src].keys()):
            plan = sel[src, key].plan()
            for s in plan.steps:
                if s.path not in files:
                    files[s.path] = h5py.File(s.path, 'r')
            steps = [(files[s.path], s.dataset, np.s_[s.src_start:s.src_stop],
                      np.s_[s.dst_start:s.dst_stop]) for s in plan.steps]
            jobs.append(((src, key), plan.shape, plan.dtype, steps))

    if preopen:
        jobs = [(name, shape, dtype, [(f[dataset], src, dst) for f, dataset, src, dst in steps])
                for name, shape, dtype, steps in jobs]

        def read():
            out = {}
            for name, shape, dtype, steps in jobs:
                arr = out[name] = np.empty(shape, dtype)
                for ds, src, dst in steps:
                    ds.read_direct(arr, src, dst)
            return out
        return read, files

    def read():
        # Datasets are looked up by name here, as a script using h5py would.
        out = {}
        for name, shape, dtype, steps in jobs:
            arr = out[name] = np.empty(shape, dtype)
            for f, dataset, src, dst in steps:
                f[dataset].read_direct(arr, src, dst)
        return out
    return read, files


def check_same(sel, raw):
    """trains() must yield, train by train, the rows h5py read in bulk."""
    got = {}
    for tid, data in sel.trains(keep_dims=True):
        for src, d in data.items():
            for key, v in d.items():
                if key != 'metadata':
                    got.setdefault((src, key), []).append(np.atleast_1d(v) if
                                                          sel[src].is_control else v)
    for name, arr in raw.items():
        joined = np.concatenate(got[name]) if name in got else arr[:0]
        if not np.array_equal(joined.reshape(arr.shape), arr):
            raise AssertionError(f"trains() and h5py disagree for {name}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dir', help='an existing benchmark run (default: write one)')
    ap.add_argument('--reps', type=int, default=21)
    ap.add_argument('--trains', type=int, default=40)
    args = ap.parse_args(argv)
    # Reads do not use the index cache; leave no cache files behind.
    os.environ.setdefault('XFELDATA_CACHE', 'off')
    os.environ['XFELDATA_NO_RUN_MAP_WRITE'] = '1'
    written = None
    if args.dir is None:
        from xfeldata.testing import make_benchmark_run
        written = tempfile.mkdtemp(prefix='xfeldata-bench-')
        t0 = time.perf_counter()
        make_benchmark_run(written)
        print(f"wrote benchmark run in {time.perf_counter() - t0:.1f} s: {written}")
    try:
        return _measure(args.dir or written, args.reps, args.trains)
    finally:
        if written:
            shutil.rmtree(written, ignore_errors=True)


def _measure(run_dir, reps, n_trains):
    import xfeldata
    run = xfeldata.RunDirectory(run_dir)
    ctrl = sorted(s for s in run.control_sources if s.startswith('BENCH_CTRL'))[:10]
    module = sorted(run.detector_sources)[0]
    sel = run.select(ctrl + [module]).select_trains(np.s_[:n_trains])
    n_keys = sum(len(sel[s].keys()) for s in sel.all_sources)
    read_raw, files = raw_bulk_reader(sel)
    read_floor, _ = raw_bulk_reader(sel, preopen=True)
    try:
        raw = read_raw()
        check_same(sel, raw)
        nbytes = sum(a.nbytes for a in raw.values())
        n_reads = sum(len(sel[s, k].plan().steps) for s in sel.all_sources
                      for k in sel[s].keys())
        print(f"{len(sel.all_sources)} sources, {n_keys} keys, {len(sel.train_ids)} trains, "
              f"{nbytes / 2**20:.1f} MiB; raw side: {n_reads} read_direct calls")

        def iterate():
            for _tid, _data in sel.trains():
                pass

        def per_train():
            for tid in sel.train_ids:
                sel.train_from_id(tid)

        t_iter, t_raw, t_floor = alternate(reps, iterate, read_raw, read_floor)
        (t_single,) = alternate(max(3, reps // 4), per_train)
    finally:
        for f in files.values():
            f.close()

    rows = [(f'trains(), {n_trains} trains', t_iter, t_raw, 2.0),
            ('  vs datasets opened untimed', t_iter, t_floor, None),
            (f'train_from_id x {n_trains}', t_single, t_raw, None)]
    print(f"\n{'operation':<32}{'xfeldata':>12}{'raw h5py':>12}{'ratio':>8}{'target':>8}")
    for name, tx, tr, target in rows:
        tgt = f"{target:>8.2f}" if target is not None else f"{'':>8}"
        print(f"{name:<32}{tx * 1e3:>10.2f}ms{tr * 1e3:>10.2f}ms{tx / tr:>8.2f}{tgt}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
