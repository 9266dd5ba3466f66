"""Multi-module detector reads: xfeldata against plain h5py into one preallocated array.

    python benchmarks/bench_detector.py [--dir DIR] [--reps 15] [--trains 32]
                                        [--frames 32] [--frame-shape 64 64]

Writes a synthetic raw AGIPD-1M run unless given one: 16 modules, each in
2 sequence files, ``--frames`` frames of (2, ss, fs) u2 per train (default
32 trains x 32 frames x (2, 64, 64): 16 MiB per module, 256 MiB in all).
Then times, alternately in one process with the files open on both sides:

ndarray
    ``det['image.data'].ndarray()`` for all trains: per module, the
    KeyData's read plan re-targeted at the detector's frame rows, executed
    into that module's slice of one ``(16, frames, 2, ss, fs)`` array.
get_array
    ``det.get_array('image.data')``: the same read, labelled and unstacked
    to ``(module, train, pulse, ...)`` (a reshape when every train has the
    same pulses).
raw
    plain h5py: per module and file, the INDEX rows of the trains
    (``first``/``count``), one ``read_direct`` per file into the module's
    slice of one preallocated array.

Prints median times and the ratios ours/raw. Timings are reported, never
asserted (the issue's targets: ndarray within 1.1x, get_array within 1.3x).
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

DET = 'SPB_DET_AGIPD1M-1'


def write_detector_run(directory, n_trains=32, frames=32, frame_shape=(64, 64)):
    from xfeldata.testing import Aggregator, write_run, xtdf_module
    tids = np.arange(10000, 10000 + n_trains)
    aggs = [Aggregator(f'AGIPD{m:02d}',
                       [xtdf_module(DET, m, frames=frames, frame_shape=tuple(frame_shape))],
                       sequence_starts=(n_trains // 2,) if n_trains > 1 else ())
            for m in range(16)]
    write_run(directory, train_ids=tids, aggregators=aggs)


def raw_reader(directory, n_modules=16):
    """A function reading every module's image.data rows with plain h5py."""
    per_module = []
    total = None
    files = []
    for m in range(n_modules):
        src = f'{DET}/DET/{m}CH0:xtdf'
        parts = []
        for fn in sorted(os.listdir(directory)):
            if f'AGIPD{m:02d}' not in fn:
                continue
            f = h5py.File(os.path.join(directory, fn), 'r')
            files.append(f)
            first = f[f'INDEX/{src}/image/first'][:]
            count = f[f'INDEX/{src}/image/count'][:]
            ds = f[f'INSTRUMENT/{src}/image/data']
            a, n = int(first[0]), int(count.sum())
            parts.append((ds, a, n))
        per_module.append(parts)
        rows = sum(n for _, _, n in parts)
        total = rows if total is None else total
        shape, dtype = parts[0][0].shape[1:], parts[0][0].dtype

    def read():
        out = np.empty((n_modules, total) + shape, dtype)
        for m, parts in enumerate(per_module):
            dst = 0
            for ds, a, n in parts:
                ds.read_direct(out[m], np.s_[a:a + n], np.s_[dst:dst + n])
                dst += n
        return out
    return read, files




def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dir', help='an existing run written by this script')
    ap.add_argument('--reps', type=int, default=15)
    ap.add_argument('--trains', type=int, default=32)
    ap.add_argument('--frames', type=int, default=32)
    ap.add_argument('--frame-shape', type=int, nargs=2, default=(64, 64))
    args = ap.parse_args(argv)
    os.environ.setdefault('XFELDATA_CACHE', 'off')
    os.environ['XFELDATA_NO_RUN_MAP_WRITE'] = '1'
    written = None
    run_dir = args.dir
    if run_dir is None:
        run_dir = written = tempfile.mkdtemp(prefix='xfeldata-bench-det-')
        t0 = time.perf_counter()
        write_detector_run(run_dir, args.trains, args.frames, args.frame_shape)
        print(f"wrote the detector run in {time.perf_counter() - t0:.1f} s: {run_dir}")
    try:
        return _measure(run_dir, args.reps)
    finally:
        if written:
            shutil.rmtree(written, ignore_errors=True)


def _measure(run_dir, reps):
    import xfeldata
    from xfeldata.components import AGIPD1M
    det = AGIPD1M(xfeldata.RunDirectory(run_dir), raw=True)
    kd = det['image.data']
    raw, files = raw_reader(run_dir)
    try:
        ours = kd.ndarray()
        if not np.array_equal(ours, raw()):
            raise AssertionError("xfeldata and h5py disagree")
        labelled = det.get_array('image.data')
        if not np.array_equal(labelled.values.reshape(ours.shape), ours):
            raise AssertionError("get_array and ndarray disagree")
        t_nd, t_ga, t_raw = alternate(reps, kd.ndarray, lambda: det.get_array('image.data'),
                                      raw)
    finally:
        for f in files:
            f.close()
    mib = ours.nbytes / 2**20
    print(f"{len(det.train_ids)} trains, {ours.shape[1]} frames per module, "
          f"{ours.shape} {ours.dtype}, {mib:.0f} MiB")
    print(f"\n{'operation':<34}{'time':>12}{'ratio':>8}{'target':>8}")
    print(f"{'raw h5py (16 modules)':<34}{t_raw * 1e3:>10.1f}ms")
    print(f"{'det[image.data].ndarray()':<34}{t_nd * 1e3:>10.1f}ms{t_nd / t_raw:>8.2f}{1.1:>8.2f}")
    print(f"{'det.get_array(image.data)':<34}{t_ga * 1e3:>10.1f}ms{t_ga / t_raw:>8.2f}{1.3:>8.2f}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
