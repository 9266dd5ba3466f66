"""Opening a run of many files cold: worker processes against the raw limit.

    python benchmarks/bench_open_many.py [--files 2000] [--procs 2] [--reps 3]

Writes a synthetic run of ``--files`` small control files (one source, two
trains each; about 15 ms per file to write), then times, alternately, with
the page cache warm and no index cache or run files map:

* xfeldata ``RunDirectory`` scanning in ``--procs`` worker processes
  (``XFELDATA_SCAN_PROCESSES``), and in this process alone;
* raw: ``--procs`` fresh Python processes that import h5py and read every
  file's ``INDEX/trainId`` (their share of the files), and the same in this
  process alone.

Both sides start their processes inside the timing. Prints median times and
ratios (xfeldata / raw). Timings are reported, never asserted.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

RAW_WORKER = """
import sys, h5py
for p in sys.argv[1:]:
    with h5py.File(p, 'r') as f:
        f['INDEX/trainId'][()]
"""


def write(directory, n_files):
    from xfeldata.testing import (Aggregator, ControlSource, RunSpec, even_sequence_starts,
                                  write_run)
    srcs = [ControlSource('SA1_XTD2_XGM/DOOCS/MAIN', {'x': np.float32})]
    spec = RunSpec(np.arange(10000, 10000 + 2 * n_files),
                   [Aggregator('DA01', srcs,
                               sequence_starts=even_sequence_starts(2 * n_files, n_files))])
    write_run(directory, spec)


def raw(paths, procs):
    if procs <= 1:
        import h5py
        for p in paths:
            with h5py.File(p, 'r') as f:
                f['INDEX/trainId'][()]
        return
    per = -(-len(paths) // procs)
    running = [subprocess.Popen([sys.executable, '-c', RAW_WORKER] + paths[i * per:(i + 1) * per])
               for i in range(procs)]
    for p in running:
        if p.wait() != 0:
            raise RuntimeError('raw worker failed')


def ours(run_dir, procs):
    import xfeldata
    from xfeldata import _tiers
    os.environ['XFELDATA_SCAN_PROCESSES'] = str(procs if procs > 1 else 0)
    _tiers.MEMO.clear()
    run = xfeldata.RunDirectory(run_dir)
    return len(run.files)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--files', type=int, default=2000)
    ap.add_argument('--procs', type=int, default=2)
    ap.add_argument('--reps', type=int, default=3)
    args = ap.parse_args(argv)
    os.environ['XFELDATA_CACHE'] = 'off'
    os.environ['XFELDATA_NO_RUN_MAP_WRITE'] = '1'
    d = tempfile.mkdtemp(prefix='xfeldata-bench-many-')
    try:
        t0 = time.perf_counter()
        write(d, args.files)
        print(f"wrote {args.files} files in {time.perf_counter() - t0:.1f} s: {d}")
        paths = sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith('.h5'))
        rows = []
        for procs in (args.procs, 1):
            t_raw, t_ours = [], []
            for _ in range(args.reps):
                t0 = time.perf_counter()
                raw(paths, procs)
                t_raw.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                assert ours(d, procs) == len(paths)
                t_ours.append(time.perf_counter() - t0)
            rows.append((procs, statistics.median(t_ours), statistics.median(t_raw)))
        print(f"\n{'cold open, ' + str(args.files) + ' files':32} {'xfeldata':>9} "
              f"{'raw h5py':>9} {'ratio':>6}")
        for procs, o, r in rows:
            label = f"{procs} process{'es' if procs > 1 else ''}"
            print(f"{label:32} {o:8.2f}s {r:8.2f}s {o / r:6.2f}")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
