"""The direct-chunk read path against the raw limit (plain h5py reading the same rows).

    python benchmarks/bench_direct.py [--frames 400] [--reps 5]

Writes one synthetic AGIPD module (raw frames (2, 512, 128) uint16, one frame
per chunk, Poisson noise so the data compress like real frames, about 2.4x)
three times: gzip level 1, shuffle + gzip level 1, and uncompressed chunked.
Then times, alternately in one process and with the page cache warm:

* h5py: ``read_direct`` of the same rows into one preallocated array (HDF5
  decodes, in one thread, under its global lock);
* xfeldata ``kd.ndarray()`` (``read_path='auto'``) with 1 and 2 decoding
  threads (``EXTRA_NUM_THREADS``), and with the standard library's zlib
  instead of python-isal (``XFELDATA_INFLATE=zlib``) when isal is installed.

Prints median times, throughput of decoded bytes, and speed-ups over h5py
(h5py time / xfeldata time: above 1 is faster). Timings are reported, never
asserted.
"""
import argparse
import os
import shutil
import statistics
import tempfile
import time

import h5py
import numpy as np


def write_module(directory, frames_total, compression, shuffle):
    from xfeldata.testing import REAL_FRAME_SHAPES, Aggregator, RunSpec, write_run, xtdf_module
    per_train = 16
    n_trains = max(1, frames_total // per_train)
    mod = xtdf_module(modno=0, frames=per_train, frame_shape=REAL_FRAME_SHAPES['AGIPD'],
                      compression='gzip' if compression else None,
                      compression_opts=1 if compression else None)
    spec = RunSpec(np.arange(10000, 10000 + n_trains), [Aggregator('AGIPD00', [mod])])
    m = write_run(directory, spec)
    # Noise instead of the writer's pattern: realistic compression ratios.
    rng = np.random.default_rng(0)
    path = m.files[0].path
    name = 'INSTRUMENT/SPB_DET_AGIPD1M-1/DET/0CH0:xtdf/image/data'
    with h5py.File(path, 'r') as f:
        shape, chunks = f[name].shape, f[name].chunks
    with h5py.File(path, 'r+') as f:
        del f[name]
        f.create_dataset(name, shape=shape, dtype='u2', chunks=chunks,
                         compression='gzip' if compression else None,
                         compression_opts=1 if compression else None,
                         shuffle=shuffle, maxshape=(None,) + shape[1:])
        ds = f[name]
        for a in range(0, shape[0], 64):
            b = min(a + 64, shape[0])
            ds[a:b] = rng.poisson(40, (b - a,) + shape[1:]).astype('u2')
    return directory


def h5py_reader(plan):
    files = {s.path: h5py.File(s.path, 'r') for s in plan.steps}

    def read():
        out = np.empty(plan.shape, plan.dtype)
        for s in plan.steps:
            files[s.path][s.dataset].read_direct(out, np.s_[s.src_start:s.src_stop],
                                                 np.s_[s.dst_start:s.dst_stop])
        return out
    return read


def median_time(fn, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def measure(run_dir, label, reps):
    import xfeldata
    from xfeldata import compression
    run = xfeldata.RunDirectory(run_dir)
    kd = run['SPB_DET_AGIPD1M-1/DET/0CH0:xtdf', 'image.data']
    plan = kd.plan()
    raw = h5py_reader(plan)
    want = raw()
    variants = [('1 thread', {'EXTRA_NUM_THREADS': '1'}),
                ('2 threads', {'EXTRA_NUM_THREADS': '2'})]
    if compression.inflate_name() == 'isal':
        variants.append(('2 threads, zlib', {'EXTRA_NUM_THREADS': '2',
                                             'XFELDATA_INFLATE': 'zlib'}))
    rows = []
    for name, env in variants:
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            assert np.array_equal(kd.ndarray(), want)
            t_raw, t_ours = [], []
            for _ in range(reps):      # alternate: same conditions for both
                t_raw.append(median_time(raw, 1))
                t_ours.append(median_time(kd.ndarray, 1))
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        r, o = statistics.median(t_raw), statistics.median(t_ours)
        rows.append((f'{label}, {name}', r, o, plan.nbytes))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--frames', type=int, default=400)
    ap.add_argument('--reps', type=int, default=5)
    args = ap.parse_args(argv)
    os.environ.setdefault('XFELDATA_CACHE', tempfile.mkdtemp(prefix='xfeldata-bench-cache-'))
    os.environ['XFELDATA_NO_RUN_MAP_WRITE'] = '1'
    from xfeldata import compression
    print(f"deflate decoder: {compression.inflate_name()}; cores: {os.cpu_count()}")
    rows = []
    for label, comp, shuffle in (('gzip-1', True, False), ('shuffle+gzip-1', True, True),
                                 ('uncompressed', False, False)):
        d = tempfile.mkdtemp(prefix='xfeldata-bench-direct-')
        try:
            write_module(d, args.frames, comp, shuffle)
            rows += measure(d, label, args.reps)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    print(f"\n{'case':34} {'h5py':>9} {'xfeldata':>9} {'MB/s':>7} {'speed-up':>9}")
    for name, r, o, nbytes in rows:
        print(f"{name:34} {r * 1e3:7.1f}ms {o * 1e3:7.1f}ms {nbytes / o / 1e6:7.0f} {r / o:8.2f}x")
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
