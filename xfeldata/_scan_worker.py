"""Effects: scan files' tier 0 in worker processes (for runs of many files).

HDF5 serialises every call in a process behind one lock, so threads cannot
scan files in parallel; processes can. The workers are plain subprocesses
(``python -m xfeldata._scan_worker``) fed a length-prefixed pickled list of
paths on stdin and answering a pickled list on stdout: no ``multiprocessing`` start method is
involved, so a user's script is never re-imported in a worker (a script
without an ``if __name__ == '__main__'`` guard is safe) and no process forks
while HDF5 files are open.

Each answer is ``(path, FileIndex or None, reason or None, warnings)``;
warnings raised while scanning are re-issued by the parent, in file order.
"""
from __future__ import annotations

import math
import os
import pickle
import subprocess
import sys

__all__ = ['scan_in_processes', 'n_scan_processes', 'MIN_FILES_PER_PROCESS']

#: Files per worker process below which starting one costs more than it saves.
MIN_FILES_PER_PROCESS = 250
#: Upper bound on scan processes (metadata servers, not cores, limit beyond this).
MAX_PROCESSES = 8


def n_scan_processes(n_files: int) -> int:
    """Worker processes for scanning ``n_files`` (0: scan in this process).

    ``XFELDATA_SCAN_PROCESSES`` overrides (0 turns processes off); else one
    per usable core, at most :data:`MAX_PROCESSES`, and only as many as give
    each at least :data:`MIN_FILES_PER_PROCESS` files. Never negative.
    """
    env = os.environ.get('XFELDATA_SCAN_PROCESSES', '').strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"XFELDATA_SCAN_PROCESSES must be an integer, got {env!r}") from None
        return max(0, min(n, n_files))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    n = min(max(1, cores), MAX_PROCESSES, n_files // MIN_FILES_PER_PROCESS)
    return n if n >= 2 else 0


def scan_in_processes(paths, n_procs: int) -> list:
    """Scan ``paths`` in ``n_procs`` subprocesses; answers in the order of ``paths``.

    Raises RuntimeError if a worker fails as a whole (the caller then scans
    in its own process).
    """
    paths = list(paths)
    n_procs = max(1, min(n_procs, len(paths)))
    per = math.ceil(len(paths) / n_procs)
    batches = [paths[i * per:(i + 1) * per] for i in range(n_procs)]
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    procs = [subprocess.Popen([sys.executable, '-m', 'xfeldata._scan_worker'],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env)
             for _ in batches]
    try:
        for p, batch in zip(procs, batches):
            # Length-prefixed, so each worker starts at once (communicate()
            # closes stdin later, worker by worker).
            data = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
            p.stdin.write(len(data).to_bytes(8, 'little') + data)
            p.stdin.flush()
        answers = []
        for p in procs:
            out, err = p.communicate()      # reads both pipes, waits, closes them
            if p.returncode != 0:
                raise RuntimeError(f"scan worker failed ({p.returncode}): "
                                   f"{err.decode(errors='replace')[-500:]}")
            answers.extend(pickle.loads(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return answers


def _scan_all(paths) -> list:
    import warnings

    from ._scan import scan_file_index_at
    out = []
    for path in paths:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            try:
                fi = scan_file_index_at(path, os.stat(path))
                reason = None
            except Exception as e:  # reported by the parent, file by file
                fi, reason = None, f"{type(e).__name__}: {e}"
        out.append((path, fi, reason,
                    [(str(w.message), w.category.__name__) for w in caught]))
    return out


def main() -> int:
    n = int.from_bytes(sys.stdin.buffer.read(8), 'little')
    paths = pickle.loads(sys.stdin.buffer.read(n))
    sys.stdout.buffer.write(pickle.dumps(_scan_all(paths), protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
