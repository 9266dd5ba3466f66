"""``xfeldata check-readable`` (EXtra-data's ``extra-data-readable``): can these files be read now?

Each ``.h5`` file is probed in a separate process with a timeout, in three
stages: its dCache locality (tape-only or unavailable files are not opened:
that would hang), ``os.stat``, then opening it as HDF5 and reading its train
IDs the reader's way. A probe that does not finish in time is killed and
reported as a timeout, so one hanging file cannot stall the check.

Progress characters (stderr): ``.`` readable, ``T`` timeout, ``E`` error,
``X`` unavailable (not on disk). Then the average and maximum access time and
a table of the problem files. Exit status 0 if every file is readable, 1 if
not, 2 for bad arguments (including no files found).

The worker count is ``min(32, available cores)``, at least 1 (EXtra-data's
``cpu_count() // 4`` is 0 on machines with fewer than 4 cores, and crashes).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import os.path as osp
import sys
import time

__all__ = ['main', 'probe_file', 'n_workers', 'find_files']

STATUS_CHARS = {'ok': '.', 'timeout': 'T', 'error': 'E', 'unavailable': 'X'}


def n_workers(cores=None) -> int:
    """Processes to probe with: ``min(32, cores)``, never fewer than 1."""
    if cores is None:
        from ..utils import available_cpu_cores
        cores = available_cpu_cores()
    return max(1, min(32, int(cores or 1)))


def find_files(inputs, all_files=False, recursive=False) -> list:
    """The files to probe: given files as they are; ``*.h5`` in given folders.

    ``all_files``: every file in folders, not only ``*.h5``; ``recursive``:
    descend into sub-folders.
    """
    out = []
    for inp in inputs:
        inp = os.fspath(inp)
        if osp.isdir(inp):
            walker = os.walk(inp) if recursive else [(inp, [], os.listdir(inp))]
            for dirpath, _, names in walker:
                for n in sorted(names):
                    p = osp.join(dirpath, n)
                    if n.startswith('.(') or not osp.isfile(p):
                        continue   # dCache magic files are not data
                    if all_files or n.endswith('.h5'):
                        out.append(p)
        else:
            out.append(inp)
    return out


def probe_file(path, on_stage=None):
    """(status, stage, seconds, message) for one file; runs in a worker process.

    ``on_stage(name)`` is called as each stage (locality, stat, open) starts,
    so a probe that hangs can be reported with the stage it hung in.
    """
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    from ..locality import UNAVAIL, get_locality, locality_code
    on_stage = on_stage or (lambda name: None)
    t0 = time.perf_counter()
    try:
        on_stage('locality')
        _, loc = get_locality(path)
        code = locality_code(loc)
        if code & 4 == 0:   # not on disk: opening would wait for tape, or fail
            state = 'unavailable' if code in (UNAVAIL, 0) or code & 2 else 'error'
            return state, 'locality', time.perf_counter() - t0, loc
        on_stage('stat')
        st = os.stat(path)
        on_stage('open')
        from .. import _scan
        fi = _scan.scan_file_index_at(osp.abspath(path), st)
        return 'ok', 'open', time.perf_counter() - t0, f"{len(fi.train_ids)} trains"
    except Exception as e:   # noqa: BLE001 - the probe reports, never raises
        return 'error', 'open', time.perf_counter() - t0, f"{type(e).__name__}: {e}"


def _worker_loop(conn):
    """Worker process: probe the paths sent through ``conn`` until None arrives."""
    from .. import _scan  # noqa: F401 - import before saying ready (not timed)
    conn.send(('ready',))
    while True:
        path = conn.recv()
        if path is None:
            return
        result = probe_file(path, lambda stage: conn.send(('stage', stage)))
        conn.send(('done', path, result))


class _Worker:
    """One probing process; a hung one is killed and replaced."""

    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_loop, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.task = None
        self.t0 = None
        self.stage = None

    def give(self, path):
        self.task, self.t0, self.stage = path, time.monotonic(), 'start'
        self.conn.send(path)

    def stop(self, kill=False):
        if kill:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                pass
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def _probe_all(files, timeout, workers, progress):
    """{path: (status, stage, seconds, message)}; probes in worker processes with a timeout."""
    from multiprocessing.connection import wait as conn_wait
    ctx = mp.get_context('spawn')
    todo = list(files)[::-1]
    results = {}

    def note(path, result):
        results[path] = result
        if progress:
            print(STATUS_CHARS[result[0]], end='', file=sys.stderr, flush=True)

    pool = [_Worker(ctx) for _ in range(workers)]
    try:
        while len(results) < len(files):
            pool = [w for w in pool if w is not None] or ([_Worker(ctx)] if todo else [])
            for w in pool:
                if w.ready and w.task is None and todo:
                    w.give(todo.pop())
            live = [w for w in pool if w.task is not None or not w.ready]
            if not live:
                break
            for conn in conn_wait([w.conn for w in live], timeout=0.1):
                w = next(w for w in live if w.conn is conn)
                try:
                    msg = conn.recv()
                except (EOFError, OSError):   # the worker died
                    msg = ('died',)
                if msg[0] == 'ready':
                    w.ready = True
                elif msg[0] == 'stage':
                    w.stage = msg[1]
                elif msg[0] == 'done':
                    note(msg[1], msg[2])
                    w.task = None
                else:
                    if w.task is not None:
                        note(w.task, ('error', 'worker', time.monotonic() - w.t0,
                                      'probe process died'))
                    w.stop(kill=True)
                    pool[pool.index(w)] = _Worker(ctx) if todo else None
            now = time.monotonic()
            for i, w in enumerate(pool):
                if w is not None and w.task is not None and now - w.t0 > timeout:
                    note(w.task, ('timeout', w.stage, now - w.t0,
                                  f"no answer within {timeout:g} s"))
                    w.stop(kill=True)
                    pool[i] = _Worker(ctx) if todo else None
    finally:
        for w in pool:
            if w is not None:
                w.stop(kill=w.task is not None)
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog='xfeldata check-readable',
        description='Check that EuXFEL files can be opened now: each file is probed in a '
                    'separate process (locality, stat, open) with a timeout.',
        epilog='Progress: . readable, T timeout, E error, X unavailable. Exit status: 0 all '
               'readable, 1 some not, 2 bad arguments or no files.')
    ap.add_argument('inputs', nargs='+', metavar='INPUT', help='files or folders')
    ap.add_argument('-a', '--all', action='store_true',
                    help='check every file in folders, not only *.h5')
    ap.add_argument('-r', '--recursive', action='store_true', help='descend into sub-folders')
    ap.add_argument('--timeout', type=float, default=5.0, metavar='SECS',
                    help='seconds to wait for each file (default 5)')
    ap.add_argument('-j', '--processes', type=int, default=None, metavar='N',
                    help='worker processes (default: min(32, available cores))')
    ap.add_argument('-q', '--quiet', action='store_true', help='no progress characters')
    args = ap.parse_args(argv)
    if args.timeout <= 0:
        print("xfeldata check-readable: error: --timeout must be positive", file=sys.stderr)
        return 2
    if args.processes is not None and args.processes < 1:
        print("xfeldata check-readable: error: --processes must be at least 1",
              file=sys.stderr)
        return 2
    missing = [i for i in args.inputs if not osp.exists(i)]
    if missing:
        print(f"xfeldata check-readable: error: not found: {', '.join(missing)}",
              file=sys.stderr)
        return 2
    files = find_files(args.inputs, args.all, args.recursive)
    if not files:
        print("xfeldata check-readable: error: no files to check", file=sys.stderr)
        return 2
    workers = n_workers(args.processes) if args.processes else n_workers()
    workers = min(workers, len(files))
    progress = not args.quiet and sys.stderr.isatty()
    try:
        results = _probe_all(files, args.timeout, workers, progress)
    except KeyboardInterrupt:
        print("\nCheck cancelled (Ctrl-C).", file=sys.stderr)
        return 130
    if progress:
        print(file=sys.stderr)

    times = [r[2] for r in results.values() if r[0] == 'ok']
    n_ok = len(times)
    print(f"{n_ok} of {len(files)} files readable")
    if times:
        print(f"Access time: average {sum(times) / len(times):.3f} s, max {max(times):.3f} s")
    bad = [(p, r) for p, r in sorted(results.items()) if r[0] != 'ok']
    if bad:
        print(f"\n{'status':<12} {'stage':<9} file: detail")
        for p, (status, stage, _, msg) in bad:
            print(f"{status:<12} {stage:<9} {p}: {msg}")
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
