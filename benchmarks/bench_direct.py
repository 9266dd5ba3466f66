"""The direct-chunk read path against the raw limit (plain h5py reading the same rows).

    python benchmarks/bench_direct.py [--frames 400] [--reps 5] [--codecs gzip-1,lz4,...]

Writes one synthetic AGIPD module (raw frames (2, 512, 128) uint16, one frame
per chunk, Poisson noise so the data compress like real frames, about 2.4x)
once per codec: gzip level 1, shuffle + gzip level 1, uncompressed chunked,
and, when hdf5plugin and lz4 are installed (the ``compress`` extra), LZ4 and
bitshuffle + LZ4 (hdf5plugin's defaults). Then times, alternately in one
process and with the page cache warm:

* h5py: ``read_direct`` of the same rows into one preallocated array (HDF5
  decodes, in one thread, under its global lock; hdf5plugin's decoders for
  LZ4 and bitshuffle);
* xfeldata ``kd.ndarray()`` (``read_path='auto'``) with 1 and 2 decoding
  threads (``EXTRA_NUM_THREADS``), and with the standard library's zlib
  instead of python-isal (``XFELDATA_INFLATE=zlib``) when isal is installed;
  for LZ4 and bitshuffle ``read_path='direct'`` (``'auto'`` leaves bitshuffle,
  and LZ4 with one thread, to h5py).

Prints median times, throughput of decoded bytes, and speed-ups over h5py
(h5py time / xfeldata time: above 1 is faster; also from the fastest of each).
Timings are reported, never asserted.

    python benchmarks/bench_direct.py --chunk-cache [--cc-trains 250] [--cc-frames 352]

measures instead what the on-disk chunk tables (xfeldata._chunk_cache) save a
new process: a 16-module raw AGIPD run (small frames, gzip, one frame per
chunk: ``trains x frames`` chunks per module, 88,000 by default as in a real
sequence file) is opened and its first train of ``image.data`` read with
``read_path='direct'`` in fresh processes, alternately with the chunk cache
files present and removed (the index cache warm in both).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np


def write_module(directory, frames_total, filters):
    from xfeldata.testing import REAL_FRAME_SHAPES, Aggregator, RunSpec, write_run, xtdf_module
    per_train = 16
    n_trains = max(1, frames_total // per_train)
    mod = xtdf_module(modno=0, frames=per_train, frame_shape=REAL_FRAME_SHAPES['AGIPD'])
    spec = RunSpec(np.arange(10000, 10000 + n_trains), [Aggregator('AGIPD00', [mod])])
    m = write_run(directory, spec)
    # Noise instead of the writer's pattern: realistic compression ratios.
    rng = np.random.default_rng(0)
    path = m.files[0].path
    name = 'INSTRUMENT/SPB_DET_AGIPD1M-1/DET/0CH0:xtdf/image/data'
    with h5py.File(path, 'r') as f:
        shape = f[name].shape
    with h5py.File(path, 'r+') as f:
        del f[name]
        f.create_dataset(name, shape=shape, dtype='u2', chunks=(1,) + shape[1:],
                         maxshape=(None,) + shape[1:], **filters)
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


def measure(run_dir, label, reps, read_path='auto'):
    import xfeldata
    from xfeldata import compression
    run = xfeldata.RunDirectory(run_dir)
    kd = run['SPB_DET_AGIPD1M-1/DET/0CH0:xtdf', 'image.data']
    plan = kd.plan()
    raw = h5py_reader(plan)
    want = raw()
    variants = [('1 thread', {'EXTRA_NUM_THREADS': '1'}),
                ('2 threads', {'EXTRA_NUM_THREADS': '2'})]
    if read_path != 'auto':
        variants = [(f'{name}, {read_path}', env) for name, env in variants]
    if compression.inflate_name() == 'isal' and 'gzip' in label:
        variants.append(('2 threads, zlib', {'EXTRA_NUM_THREADS': '2',
                                             'XFELDATA_INFLATE': 'zlib'}))
    rows = []
    for name, env in variants:
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            assert np.array_equal(kd.ndarray(read_path=read_path), want)
            t_raw, t_ours = [], []
            for _ in range(reps):      # alternate: same conditions for both
                t_raw.append(median_time(raw, 1))
                t_ours.append(median_time(lambda: kd.ndarray(read_path=read_path), 1))
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        r, o = statistics.median(t_raw), statistics.median(t_ours)
        rows.append((f'{label}, {name}', r, o, plan.nbytes, min(t_raw) / min(t_ours)))
    return rows


def codecs():
    """``{label: (h5py create_dataset filter options, read path)}`` of the codecs to time."""
    gzip = {'compression': 'gzip', 'compression_opts': 1}
    out = {'gzip-1': (gzip, 'auto'),
           'shuffle+gzip-1': ({**gzip, 'shuffle': True}, 'auto'),
           'uncompressed': ({}, 'auto')}
    try:
        import hdf5plugin
        import lz4.block  # noqa: F401
    except ImportError:
        print("hdf5plugin or lz4 not installed: LZ4 and bitshuffle skipped")
        return out
    out['lz4'] = (dict(hdf5plugin.LZ4()), 'direct')      # 'auto': h5py with 1 thread
    out['bitshuffle+lz4'] = (dict(hdf5plugin.Bitshuffle(cname='lz4')), 'direct')
    return out


_FIRST_READ = """
import sys, time
t0 = time.perf_counter()
import numpy as np, xfeldata
from xfeldata import _direct
_direct.MIN_CHUNK_BYTES = 0     # the small test frames compress below the threshold
t1 = time.perf_counter()
run = xfeldata.RunDirectory(sys.argv[1])
t2 = time.perf_counter()
for m in range(16):
    kd = run['SPB_DET_AGIPD1M-1/DET/%dCH0:xtdf' % m, 'image.data']
    kd[:1].ndarray(read_path='direct')
t3 = time.perf_counter()
print(t2 - t1, t3 - t2)
"""


def chunk_cache_bench(trains, frames, reps):
    """First direct read of 16 modules in fresh processes, with and without chunk tables."""
    from xfeldata import _chunk_cache
    from xfeldata.testing import Aggregator, RunSpec, write_run, xtdf_module
    d = tempfile.mkdtemp(prefix='xfeldata-bench-chunk-cache-')
    try:
        t = time.perf_counter()
        mods = [Aggregator(f'AGIPD{m:02d}', [xtdf_module(modno=m, frames=frames,
                                                         frame_shape=(16, 16),
                                                         compression='gzip',
                                                         compression_opts=1)])
                for m in range(16)]
        write_run(d, RunSpec(np.arange(10000, 10000 + trains), mods))
        print(f"wrote 16 modules x {trains * frames} chunks in {time.perf_counter() - t:.0f} s")
        chunks_dir = os.path.join(os.environ['XFELDATA_CACHE'],
                                  f'chunks-v{_chunk_cache.CACHE_VERSION}')

        def first_read():
            out = subprocess.run([sys.executable, '-c', _FIRST_READ, d], check=True,
                                 capture_output=True, text=True, env=os.environ).stdout
            return [float(x) for x in out.split()]
        first_read()       # warms the index cache and writes the chunk tables
        if not os.path.isdir(chunks_dir):
            print(f"no chunk tables written: fewer than {_chunk_cache.MIN_CHUNKS} chunks each")
            return
        size = sum(os.path.getsize(os.path.join(chunks_dir, f)) for f in os.listdir(chunks_dir))
        with_cache, without = [], []
        for _ in range(reps):
            with_cache.append(first_read())
            shutil.rmtree(chunks_dir)
            without.append(first_read())           # scans, and writes the tables again
        for label, ts in (('with chunk cache', with_cache), ('without', without)):
            o = statistics.median(t[0] for t in ts)
            r = statistics.median(t[1] for t in ts)
            print(f"{label:18} open {o * 1e3:7.1f} ms   first read of 16 modules {r * 1e3:7.1f} ms")
        print(f"chunk cache files: {size / 1e6:.2f} MB for 16 x {trains * frames} chunks")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--frames', type=int, default=400)
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--codecs', default='', help='comma-separated labels (default: all)')
    ap.add_argument('--chunk-cache', action='store_true',
                    help='measure the on-disk chunk tables instead')
    ap.add_argument('--cc-trains', type=int, default=250)
    ap.add_argument('--cc-frames', type=int, default=352)
    args = ap.parse_args(argv)
    if args.chunk_cache:
        os.environ.setdefault('XFELDATA_CACHE',
                              tempfile.mkdtemp(prefix='xfeldata-bench-cache-'))
        os.environ['XFELDATA_NO_RUN_MAP_WRITE'] = '1'
        chunk_cache_bench(args.cc_trains, args.cc_frames, args.reps)
        return 0
    os.environ.setdefault('XFELDATA_CACHE', tempfile.mkdtemp(prefix='xfeldata-bench-cache-'))
    os.environ['XFELDATA_NO_RUN_MAP_WRITE'] = '1'
    from xfeldata import compression
    print(f"deflate decoder: {compression.inflate_name()}; cores: {os.cpu_count()}")
    rows = []
    wanted = [c for c in args.codecs.split(',') if c]
    for label, (filters, read_path) in codecs().items():
        if wanted and label not in wanted:
            continue
        d = tempfile.mkdtemp(prefix='xfeldata-bench-direct-')
        try:
            write_module(d, args.frames, filters)
            rows += measure(d, label, args.reps, read_path)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    # best-of: fastest h5py over fastest xfeldata time, less sensitive to other
    # processes sharing the cores than the medians.
    print(f"\n{'case':34} {'h5py':>9} {'xfeldata':>9} {'MB/s':>7} {'speed-up':>9} {'best-of':>8}")
    for name, r, o, nbytes, best in rows:
        print(f"{name:34} {r * 1e3:7.1f}ms {o * 1e3:7.1f}ms {nbytes / o / 1e6:7.0f} {r / o:8.2f}x"
              f" {best:7.2f}x")
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
