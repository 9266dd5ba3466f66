"""Opening a run: xfeldata against the raw limit (plain h5py on the same files).

    python benchmarks/bench_open.py [--dir DIR] [--reps 7] [--new-process-reps 15]

Writes a synthetic benchmark run (76 files: 16 detector modules x 4 sequences
plus 3 control aggregators x 4 sequences holding 150 control sources) unless
``--dir`` points to one, then times, alternately in one process:

cold open
    xfeldata ``RunDirectory`` with no cache and an empty in-process memo,
    against h5py opening every file and reading ``INDEX/trainId`` and the
    source list.
warm open
    ``RunDirectory`` with xfeldata's index cache present (fresh process memo),
    against stat-ing the files and loading the cache file with msgpack (its
    header, then the body of entries the header carries as bytes).
warm open, new process
    the same two, each timed inside a new Python process (after importing
    xfeldata, h5py and msgpack, untimed): what a script opening a cached run
    pays, first calls included. ``--new-process-reps`` pairs of processes.
list keys
    the keys of every source (``run[src].keys()``, fresh memo) against
    ``h5py.h5o.visit`` over the same source groups.

Prints a table of median times and ratios (xfeldata / raw). Timings are
reported, never asserted.
"""
import argparse
import gc
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import h5py
import msgpack


def _fresh_process_state():
    """Forget every in-process memo and open handle, as in a new process."""
    from xfeldata import _tiers, index_cache
    from xfeldata.file_access import FileAccess, open_files_limiter
    _tiers.MEMO.clear()
    index_cache.forget_runs()
    for fa in list(FileAccess._registry.values()):
        fa.close()
    FileAccess._registry.clear()
    with open_files_limiter._lock:
        open_files_limiter._lru.clear()
    gc.collect()


def _h5_files(run_dir):
    return sorted(os.path.join(run_dir, n) for n in os.listdir(run_dir) if n.endswith('.h5'))


def raw_cold(run_dir):
    for p in _h5_files(run_dir):
        with h5py.File(p, 'r') as f:
            f['INDEX/trainId'][()]
            f['METADATA/dataSources/dataSourceId'][()]


def xfd_cold(run_dir):
    import xfeldata
    os.environ['XFELDATA_CACHE'] = 'off'
    try:
        run = xfeldata.RunDirectory(run_dir)
        run.train_ids, run.all_sources
    finally:
        os.environ['XFELDATA_CACHE'] = CACHE_DIR


def raw_warm(run_dir, cache_file):
    for p in _h5_files(run_dir):
        os.stat(p)
    with open(cache_file, 'rb') as f:
        head = msgpack.unpackb(f.read(), raw=False, strict_map_key=False)
    # The file is a small header whose 'body' (bytes, guarded by a CRC) holds
    # the entries: loading the cache means unpacking that too.
    msgpack.unpackb(head['body'], raw=False, strict_map_key=False)


def xfd_warm(run_dir):
    import xfeldata
    run = xfeldata.RunDirectory(run_dir)
    run.train_ids, run.all_sources


# Children of the new-process row: each prints the seconds its open took.
_CHILD_SETUP = """
import os, sys, time
import h5py, msgpack, xfeldata
run_dir, cache_file = sys.argv[1], sys.argv[2]
"""
_CHILD_XFD = _CHILD_SETUP + """
t0 = time.perf_counter()
run = xfeldata.RunDirectory(run_dir)
run.train_ids, run.all_sources
print(time.perf_counter() - t0)
"""
_CHILD_RAW = _CHILD_SETUP + """
t0 = time.perf_counter()
for p in sorted(os.path.join(run_dir, n) for n in os.listdir(run_dir) if n.endswith('.h5')):
    os.stat(p)
with open(cache_file, 'rb') as f:
    head = msgpack.unpackb(f.read(), raw=False, strict_map_key=False)
msgpack.unpackb(head['body'], raw=False, strict_map_key=False)
print(time.perf_counter() - t0)
"""


def new_process_warm(run_dir, cache_file, reps):
    """Median seconds of a warm open and of its reference, each in new processes."""
    env = dict(os.environ)
    env.pop('PYTHONDONTWRITEBYTECODE', None)   # as installed: compiled modules are cached
    times = {_CHILD_XFD: [], _CHILD_RAW: []}
    for i in range(reps + 1):
        for code, out in times.items():
            res = subprocess.run([sys.executable, '-c', code, run_dir, str(cache_file)],
                                 env=env, capture_output=True, text=True, check=True)
            if i:   # the first pair writes the bytecode caches, if needed
                out.append(float(res.stdout))
    return statistics.median(times[_CHILD_XFD]), statistics.median(times[_CHILD_RAW])


def raw_keys(run_dir, groups):
    names = []
    for path, grps in groups.items():
        with h5py.File(path, 'r') as f:
            for g in grps:
                h5py.h5o.visit(f[g].id, lambda n, i: names.append(n), info=True)
    return names


def xfd_keys(run):
    os.environ['XFELDATA_CACHE'] = 'off'
    try:
        for src in run.all_sources:
            run[src].keys()
    finally:
        os.environ['XFELDATA_CACHE'] = CACHE_DIR


def alternate(reps, a, b):
    """Median times of a() and b(), run alternately; state is reset before each, untimed."""
    ta, tb = [], []
    for _ in range(reps):
        for fn, out in ((a, ta), (b, tb)):
            _fresh_process_state()
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


CACHE_DIR = tempfile.mkdtemp(prefix='xfeldata-bench-cache-')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dir', help='an existing run folder (default: write a synthetic one)')
    ap.add_argument('--reps', type=int, default=7)
    ap.add_argument('--new-process-reps', type=int, default=15,
                    help='pairs of new processes for the new-process row (0: skip it)')
    args = ap.parse_args(argv)
    os.environ['XFELDATA_CACHE'] = CACHE_DIR
    os.environ['XFELDATA_NO_RUN_MAP_WRITE'] = '1'

    run_dir = args.dir
    if run_dir is None:
        run_dir = tempfile.mkdtemp(prefix='xfeldata-bench-run-')
        t0 = time.perf_counter()
        from xfeldata.testing import make_benchmark_run
        make_benchmark_run(run_dir)
        print(f"wrote synthetic run in {time.perf_counter() - t0:.1f} s: {run_dir}")
    try:
        measure(run_dir, args.reps, args.new_process_reps)
    finally:
        # The synthetic run is some 300 MB: do not leave one behind per run.
        _fresh_process_state()
        if args.dir is None:
            shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(CACHE_DIR, ignore_errors=True)
    return 0


def measure(run_dir, reps, new_process_reps=15):
    import xfeldata
    from xfeldata import index_cache
    files = _h5_files(run_dir)
    if os.path.exists(os.path.join(run_dir, 'karabo_data_map.json')):
        # xfeldata would read tier 0 from EXtra-data's map: "cold" would not be.
        print("warning: the run folder has a karabo_data_map.json; 'open cold' uses it")
    run = xfeldata.RunDirectory(run_dir)
    print(f"{len(files)} files, {len(run.all_sources)} sources, {len(run.train_ids)} trains")

    # Key listing reference: every source's group in the first file holding it.
    groups = {}
    for src in run.all_sources:
        fi = run._index.files_for_source(src)[0]
        sect = 'CONTROL' if src in run.control_sources else 'INSTRUMENT'
        groups.setdefault(fi.path, []).append(f'{sect}/{src}')

    # Warm: make sure the cache holds every tier opening needs.
    _fresh_process_state()
    xfeldata.RunDirectory(run_dir)
    cache_file = index_cache.cache_path(run_dir)

    rows = []
    t_x, t_r = alternate(reps, lambda: xfd_cold(run_dir), lambda: raw_cold(run_dir))
    rows.append(('open cold', t_x, t_r, 1.5))
    t_x, t_r = alternate(reps, lambda: xfd_warm(run_dir),
                         lambda: raw_warm(run_dir, cache_file))
    rows.append(('open warm (index cache)', t_x, t_r, 2.0))
    if new_process_reps:
        t_x, t_r = new_process_warm(run_dir, cache_file, new_process_reps)
        rows.append(('  the same, new process', t_x, t_r, 2.0))
    t_x, t_r = alternate(reps, lambda: xfd_keys(run), lambda: raw_keys(run_dir, groups))
    rows.append(('list keys of all sources', t_x, t_r, 1.2))

    print(f"\n{'operation':<28}{'xfeldata':>12}{'raw h5py':>12}{'ratio':>8}{'target':>8}")
    for name, tx, tr, target in rows:
        print(f"{name:<28}{tx * 1e3:>10.1f}ms{tr * 1e3:>10.1f}ms{tx / tr:>8.2f}{target:>8.1f}")


if __name__ == '__main__':
    sys.exit(main())
