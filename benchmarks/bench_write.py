"""Writing: DataCollection.write / write_virtual, speed and peak memory.

    python benchmarks/bench_write.py [--trains 100 400] [--repeat 3] [--dir DIR] [--keep]

For each run size (``make_benchmark_run`` with that many trains: 16 AGIPD
modules x 10 frames (2, 64, 64) u2 per train = 2.6 MB per train, stored one
frame per chunk, plus 150 control sources in 12 files; 1600 trains make the
4 GB run of issue 7's speed target), every measurement runs in a fresh
subprocess so that its memory figures are its own:

write
    ``RunDirectory(d).write(out)``: wall and CPU time, and the process's peak
    RSS (``ru_maxrss``) minus its RSS before the write.
write_virtual
    ``RunDirectory(d).write_virtual(out)``: the same figures.
h5py copy (baseline)
    The same datasets copied with plain h5py: ``h5py.Group.copy`` (H5Ocopy:
    stored chunks copied as they are, no decompression, no Python per chunk)
    of every CONTROL/INSTRUMENT/INDEX group of every file into one output
    file (one group per input file, so no concatenation and no new index).
    This is the raw limit of copying the bytes with HDF5.

The run is opened (``RunDirectory``) before the clock starts in every mode;
the baseline opens each input file inside its timing (about 1 ms a file).

The modes are timed in turn, ``--repeat`` rounds (h5py, write, write_virtual,
h5py, write, ...), so that all of them see the same machine load; the table
shows the median of the rounds and, per round, the ratio to that round's
h5py copy. Time is measured without tracemalloc (tracing every allocation
slows Python code several times and C code not at all, which would make the
ratios meaningless); the traced peak (numpy's buffers are traced) comes from
one more run of each mode with tracemalloc on. CPU time is shown beside wall
time because wall time on a shared machine varies a lot. Timings and memory
are reported, never asserted.

The memory figures should stay flat as the run grows: the writer holds at
most ``xfeldata.writer.BLOCK_BYTES`` = 64 MiB of one key, small keys are
copied in batches of at most that many bytes, and large chunked keys are
copied as stored chunks through a 1 MiB read buffer
(``xfeldata._write_fast.RAW_READ_BYTES``).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

CHILD = r'''
import json, os, resource, sys, time
mode, run_dir, out, trace = sys.argv[1:5]
trace = trace == '1'
def rss_kb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0
import h5py, numpy as np, xfeldata
run = xfeldata.RunDirectory(run_dir, _use_voview=False)
before = rss_kb()
if trace:
    import tracemalloc
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
peak = 0
if trace:
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({'time': dt, 'cpu': cpu, 'traced_peak_mib': peak / 2**20,
                  'rss_growth_mib': max(0, maxrss - before) / 1024,
                  'out_mib': os.path.getsize(out) / 2**20}))
'''

MODES = ('h5py_copy', 'write', 'write_virtual')


def measure(mode, run_dir, out, trace=False):
    if os.path.exists(out):
        os.unlink(out)
    try:
        r = subprocess.run([sys.executable, '-c', CHILD, mode, run_dir, out,
                            '1' if trace else '0'],
                           capture_output=True, text=True, check=True)
    finally:
        if os.path.exists(out):
            os.unlink(out)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--trains', type=int, nargs='+', default=[100, 400])
    ap.add_argument('--repeat', type=int, default=3,
                    help='timed rounds of all modes, alternating (default 3)')
    ap.add_argument('--dir', help='work folder (default: a temporary one)')
    ap.add_argument('--keep', action='store_true', help='keep the written runs')
    args = ap.parse_args(argv)
    from xfeldata.testing import make_benchmark_run
    base = args.dir or tempfile.mkdtemp(prefix='xfeldata-bench-write-')
    os.makedirs(base, exist_ok=True)
    table = []
    try:
        for n in args.trains:
            run_dir = os.path.join(base, f'run{n}')
            if not os.path.isdir(run_dir):
                make_benchmark_run(run_dir, n_trains=n)
            size = sum(os.path.getsize(os.path.join(run_dir, f)) for f in os.listdir(run_dir))
            rounds = []
            for _ in range(max(1, args.repeat)):
                rounds.append({m: measure(m, run_dir, os.path.join(base, f'out-{m}-{n}.h5'))
                               for m in MODES})
            traced = {m: measure(m, run_dir, os.path.join(base, f'out-{m}-{n}.h5'), True)
                      for m in MODES}
            table.append((n, size / 2**20, rounds, traced))
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    print(f"{'trains':>6} {'run MiB':>8} {'mode':>14} {'wall s':>7} {'vs h5py':>8} "
          f"{'cpu s':>6} {'vs h5py':>8} {'traced peak MiB':>16} {'RSS growth MiB':>15} "
          f"{'out MiB':>8}  wall ratio per round")
    for n, size, rounds, traced in table:
        med = {m: {k: statistics.median(r[m][k] for r in rounds)
                   for k in ('time', 'cpu', 'rss_growth_mib', 'out_mib')} for m in MODES}
        b = med['h5py_copy']
        for m in MODES:
            r = med[m]
            per_round = ' '.join(f"{x[m]['time'] / x['h5py_copy']['time']:.2f}" for x in rounds)
            print(f"{n:>6} {size:>8.0f} {m:>14} {r['time']:>7.2f} {r['time'] / b['time']:>8.2f} "
                  f"{r['cpu']:>6.2f} {r['cpu'] / max(b['cpu'], 1e-9):>8.2f} "
                  f"{traced[m]['traced_peak_mib']:>16.1f} {r['rss_growth_mib']:>15.1f} "
                  f"{r['out_mib']:>8.0f}  {per_round}")


if __name__ == '__main__':
    main()
