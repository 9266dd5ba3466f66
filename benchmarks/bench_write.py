"""Writing: DataCollection.write / write_virtual, speed and peak memory.

    python benchmarks/bench_write.py [--trains 100 400] [--dir DIR] [--keep]

For each run size (``make_benchmark_run`` with that many trains: 16 AGIPD
modules x 10 frames (2, 64, 64) u2 per train = 2.6 MB per train, plus 150
control sources in 12 files), each measurement runs in a fresh subprocess so
its peak memory is its own:

write
    ``RunDirectory(d).write(out)``: wall and CPU time, tracemalloc peak (numpy's buffers
    are traced) and the process's peak RSS (``ru_maxrss``) minus its RSS
    before the write.
write_virtual
    ``RunDirectory(d).write_virtual(out)``: time and memory.
h5py copy (baseline)
    The same datasets copied with plain h5py: ``h5py.Group.copy`` (H5Ocopy,
    raw chunk copy, no decompression) of every CONTROL/INSTRUMENT/INDEX group
    of every file into one output file (one group per input file, so no
    concatenation). This is the raw limit of copying the bytes.

The memory figures should stay flat as the run grows (the writer copies each
key in blocks of at most ``xfeldata.writer.BLOCK_BYTES`` = 64 MiB; large
compressed keys as stored chunks). CPU time is shown beside wall time because wall time
on a shared machine varies a lot. Timings and memory are reported, never
asserted.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

CHILD = r'''
import json, os, resource, sys, time, tracemalloc
mode, run_dir, out = sys.argv[1:4]
def rss_kb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0
import h5py, numpy as np, xfeldata
run = xfeldata.RunDirectory(run_dir, _use_voview=False)
before = rss_kb()
tracemalloc.start()
r0 = resource.getrusage(resource.RUSAGE_SELF)
t = time.perf_counter()
if mode == 'write':
    run.write(out, progress=False)
elif mode == 'write_virtual':
    run.write_virtual(out, progress=False)
else:
    with h5py.File(out, 'w') as fo:
        for fa in run.files:
            with h5py.File(fa.filename, 'r') as fi:
                g = fo.create_group(os.path.basename(fa.filename))
                for name in ('INDEX', 'CONTROL', 'INSTRUMENT'):
                    if name in fi:
                        g.copy(fi[name], g, name=name)
dt = time.perf_counter() - t
r1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({'time': dt, 'cpu': cpu, 'traced_peak_mib': peak / 2**20,
                  'rss_growth_mib': max(0, maxrss - before) / 1024,
                  'out_mib': os.path.getsize(out) / 2**20}))
'''


def measure(mode, run_dir, out):
    if os.path.exists(out):
        os.unlink(out)
    r = subprocess.run([sys.executable, '-c', CHILD, mode, run_dir, out],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--trains', type=int, nargs='+', default=[100, 400])
    ap.add_argument('--dir', help='work folder (default: a temporary one)')
    ap.add_argument('--keep', action='store_true', help='keep the written runs')
    args = ap.parse_args(argv)
    from xfeldata.testing import make_benchmark_run
    base = args.dir or tempfile.mkdtemp(prefix='xfeldata-bench-write-')
    os.makedirs(base, exist_ok=True)
    rows = []
    try:
        for n in args.trains:
            run_dir = os.path.join(base, f'run{n}')
            if not os.path.isdir(run_dir):
                make_benchmark_run(run_dir, n_trains=n)
            size = sum(os.path.getsize(os.path.join(run_dir, f)) for f in os.listdir(run_dir))
            for mode in ('h5py_copy', 'write', 'write_virtual'):
                res = measure(mode, run_dir, os.path.join(base, f'out-{mode}-{n}.h5'))
                rows.append((n, size / 2**20, mode, res))
                os.unlink(os.path.join(base, f'out-{mode}-{n}.h5'))
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    print(f"{'trains':>6} {'run MiB':>8} {'mode':>14} {'wall s':>7} {'vs h5py':>8} "
          f"{'cpu s':>6} {'vs h5py':>8} {'traced peak MiB':>16} {'RSS growth MiB':>15} "
          f"{'out MiB':>8}")
    base = {}
    for n, size, mode, r in rows:
        if mode == 'h5py_copy':
            base[n] = r
        b = base.get(n, {'time': float('nan'), 'cpu': float('nan')})
        print(f"{n:>6} {size:>8.0f} {mode:>14} {r['time']:>7.2f} {r['time'] / b['time']:>8.2f} "
              f"{r['cpu']:>6.2f} {r['cpu'] / max(b['cpu'], 1e-9):>8.2f} "
              f"{r['traced_peak_mib']:>16.1f} {r['rss_growth_mib']:>15.1f} {r['out_mib']:>8.0f}")


if __name__ == '__main__':
    main()
