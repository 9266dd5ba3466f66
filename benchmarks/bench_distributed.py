"""A distributed sum against the eager sum on the same machine.

    python benchmarks/bench_distributed.py [--modules 4] [--workers 2] [--reps 3]

Writes a synthetic detector run (``--modules`` AGIPD modules, 50 trains x 16
frames of (2, 256, 128) uint16, gzip level 1, noise; about 100 MB per module) and times, alternately,
with the page cache warm:

eager
    ``sum(kd.ndarray().sum() for each module)`` in this process;
distributed
    the same sums as one graph of the modules' ``dask_array()`` computed on a
    ``distributed.LocalCluster`` of ``--workers`` worker processes (one thread
    each), started before the timing (a cluster is long-lived).

Prints median times and the ratio distributed / eager. Timings are reported,
never asserted.
"""
import argparse
import os
import shutil
import statistics
import tempfile
import time

import h5py
import numpy as np


def write(directory, n_modules):
    from xfeldata.testing import Aggregator, RunSpec, write_run, xtdf_module
    aggs = [Aggregator(f'AGIPD{m:02d}', [xtdf_module(modno=m, frames=16, frame_shape=(256, 128),
                                                     compression='gzip', compression_opts=1)])
            for m in range(n_modules)]
    m = write_run(directory, RunSpec(np.arange(10000, 10050), aggs))
    rng = np.random.default_rng(0)
    for f in m.files:
        with h5py.File(f.path, 'r+') as h:
            for name in [n for n in _datasets(h) if n.endswith('image/data')]:
                ds = h[name]
                for a in range(0, ds.shape[0], 256):
                    b = min(a + 256, ds.shape[0])
                    ds[a:b] = rng.integers(0, 64, (b - a,) + ds.shape[1:], dtype=ds.dtype)


def _datasets(h):
    out = []
    h.visititems(lambda n, o: out.append(n) if isinstance(o, h5py.Dataset) else None)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--modules', type=int, default=4)
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--reps', type=int, default=3)
    args = ap.parse_args(argv)
    os.environ.setdefault('XFELDATA_CACHE', tempfile.mkdtemp(prefix='xfeldata-bench-cache-'))
    os.environ['XFELDATA_NO_RUN_MAP_WRITE'] = '1'
    import dask.array as da
    from distributed import Client, LocalCluster

    import xfeldata
    d = tempfile.mkdtemp(prefix='xfeldata-bench-dist-')
    try:
        t0 = time.perf_counter()
        write(d, args.modules)
        print(f"wrote {args.modules} modules in {time.perf_counter() - t0:.1f} s")
        run = xfeldata.RunDirectory(d)
        keys = [run[s, 'image.data'] for s in sorted(run.instrument_sources)
                if s.endswith(':xtdf')]
        nbytes = sum(k.nbytes for k in keys)

        def eager():
            return sum(int(k.ndarray().sum(dtype=np.uint64)) for k in keys)

        with LocalCluster(n_workers=args.workers, threads_per_worker=1,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            def distributed():
                total = da.stack([k.dask_array().sum(dtype=np.uint64) for k in keys]).sum()
                return int(client.compute(total).result())

            want = eager()
            assert distributed() == want          # also warms the workers' file handles
            t_e, t_d = [], []
            for _ in range(args.reps):
                t0 = time.perf_counter()
                eager()
                t_e.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                distributed()
                t_d.append(time.perf_counter() - t0)
        e, dt = statistics.median(t_e), statistics.median(t_d)
        print(f"\nsum of {nbytes / 1e6:.0f} MB  eager {e:.2f}s  distributed "
              f"({args.workers} workers) {dt:.2f}s  ratio {dt / e:.2f}")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
