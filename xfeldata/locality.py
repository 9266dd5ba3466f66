"""dCache locality of files (where they are: disk, tape, unavailable).

On EuXFEL's dCache, a file's locality is the text of the magic file
``<dir>/.(get)(<name>)(locality)``; on a normal filesystem that file does not
exist and the file counts as on disk (``NOT_ON_DCACHE``). Files only on tape
make reads hang until they are staged, so check first:

- the ``lc_*`` functions are file filters for
  ``open_run(..., file_filter=lc_ondisk)``: they keep the files that can be
  read now and report the others on stderr;
- :func:`check_dir` and ``xfeldata locality RUN_DIR`` report a folder.

Examples
--------
>>> import os, tempfile
>>> d = tempfile.mkdtemp()
>>> for name, loc in [('a.h5', None), ('b.h5', 'NEARLINE')]:
...     open(os.path.join(d, name), 'w').close()
...     if loc:
...         with open(os.path.join(d, f'.(get)({name})(locality)'), 'w') as f:
...             _ = f.write(loc + '\\n')
>>> [os.path.basename(p) for p in lc_ondisk([os.path.join(d, 'a.h5')])]
['a.h5']
>>> sorted(partition([os.path.join(d, 'a.h5'), os.path.join(d, 'b.h5')]))
['NEARLINE', 'NOT_ON_DCACHE']
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
from multiprocessing.pool import ThreadPool

__all__ = ['UNAVAIL', 'ONTAPE', 'ONDISK', 'ANY', 'DC_LOC_RESP', 'LOCMSG', 'get_locality',
           'list_locality', 'partition', 'print_counts', 'silent', 'lc_match', 'lc_any',
           'lc_ondisk', 'lc_avail', 'locality_code', 'check_dir', 'main']

UNAVAIL = 1
ONTAPE = 2
ONDISK = 4
ANY = 7

#: dCache locality string -> bits of UNAVAIL / ONTAPE / ONDISK; any other string is 0 (unknown)
DC_LOC_RESP = {
    'UNAVAILABLE': UNAVAIL,
    'NEARLINE': ONTAPE,
    'ONLINE': ONDISK,
    'ONLINE_AND_NEARLINE': ONTAPE | ONDISK,
    'NOT_ON_DCACHE': ONDISK,
}

#: messages for locality codes (0 = unknown)
LOCMSG = {
    0: 'Unknown locality',
    UNAVAIL: 'Unavailable',
    ONTAPE: 'Only on tape',
    ONDISK: 'On disk',
    ONTAPE | ONDISK: 'On disk',
}

#: threads querying localities at once (each query reads one small magic file)
MAX_WORKERS = 16


def get_locality(path):
    """``(path, locality string)`` from the dCache magic file (``NOT_ON_DCACHE`` if absent)."""
    d, name = osp.split(os.fspath(path))
    try:
        with open(osp.join(d, f'.(get)({name})(locality)')) as f:
            return path, f.read().strip()
    except FileNotFoundError:
        return path, 'NOT_ON_DCACHE'


def locality_code(loc: str) -> int:
    """Bits of a locality string (:data:`DC_LOC_RESP`); 0 if unknown."""
    return DC_LOC_RESP.get(loc, 0)


def list_locality(files):
    """Yield ``(path, locality string)`` for ``files``, in the order the answers come.

    Queries run in a thread pool (each is a small read that may block on
    dCache); the order is not that of ``files``.
    """
    files = [os.fspath(f) for f in files]
    if len(files) <= 1:
        yield from map(get_locality, files)
        return
    with ThreadPool(max(1, min(MAX_WORKERS, len(files)))) as pool:
        yield from pool.imap_unordered(get_locality, files)


def silent(*args, **kwargs):
    """A display callback that shows nothing."""


def print_counts(counts, file=None):
    """Running counts of files per locality on one line (``\\r``-rewritten)."""
    file = sys.stderr if file is None else file
    text = ', '.join(f"{loc}: {n}" for loc, n in sorted(counts.items()))
    print(f"\r{text}", end='', file=file, flush=True)


def partition(files, cb_disp=silent) -> dict:
    """``{locality string: [paths]}`` for ``files``; ``cb_disp(counts)`` after each answer."""
    out = {}
    counts = {}
    for path, loc in list_locality(files):
        out.setdefault(loc, []).append(path)
        counts[loc] = counts.get(loc, 0) + 1
        cb_disp(counts)
    for paths in out.values():
        paths.sort()
    return out


def lc_match(files, accept=ONDISK):
    """Keep the files whose locality code has a bit of ``accept``; report the others.

    Skipped files are listed on stderr. Keeps the order of ``files``.
    """
    files = list(files)
    loc = dict(list_locality(files))
    kept = []
    for path in files:
        if locality_code(loc[os.fspath(path)]) & accept:
            kept.append(path)
        else:
            print(f"Skipping file {path} (locality: {loc[os.fspath(path)]})",
                  file=sys.stderr)
    return kept


def lc_any(files):
    """Keep every file (the default filter)."""
    return list(files)


def lc_ondisk(files):
    """Keep files that can be read from disk now."""
    return lc_match(files, ONDISK)


def lc_avail(files):
    """Keep files on disk or on tape (not unavailable)."""
    return lc_match(files, ONDISK | ONTAPE)


def _data_files(basedir):
    if osp.isfile(basedir):
        return [basedir]
    return sorted(osp.join(basedir, n) for n in os.listdir(basedir)
                  if n.endswith('.h5') and osp.isfile(osp.join(basedir, n)))


def check_dir(basedir, progress=None) -> int:
    """Report the locality of a folder's ``*.h5`` files; return a bitmask.

    Bits: 1 some files only on tape, 2 some unavailable, 4 some of unknown
    locality. Prints the totals and the files of each problem class on
    stdout; running counts on stderr when ``progress`` (default: stderr is
    a terminal).
    """
    files = _data_files(basedir)
    if progress is None:
        progress = sys.stderr.isatty()
    parts = partition(files, print_counts if progress else silent)
    if progress and files:
        print(file=sys.stderr)
    print(f"Checked {len(files)} files in {basedir}")
    for loc in sorted(parts):
        print(f"  {loc}: {len(parts[loc])} ({LOCMSG[locality_code(loc)]})")
    ret = 0
    for code, title, flag in ((ONTAPE, 'Only on tape', 1), (UNAVAIL, 'Unavailable', 2),
                              (0, 'Unknown locality', 4)):
        bad = sorted(p for loc, ps in parts.items() if locality_code(loc) == code for p in ps)
        if bad:
            print(f"\n{title} ({len(bad)}):")
            for p in bad:
                print(f"  {p}")
            ret |= flag
    return ret


def main(argv=None) -> int:
    """``xfeldata locality PATH``: exit status is :func:`check_dir`'s bitmask, 255 if no PATH."""
    ap = argparse.ArgumentParser(
        prog='xfeldata locality',
        description='Report where the files of a run folder are on dCache: on disk, only on '
                    'tape (reads would hang until staged) or unavailable.',
        epilog='Exit status: bitmask of 1 (some files only on tape), 2 (some unavailable), '
               '4 (some of unknown locality); 0 all on disk; 255 PATH does not exist.')
    ap.add_argument('path', metavar='PATH', help='run folder (or one file)')
    ap.add_argument('-q', '--quiet', action='store_true', help='no running counts')
    args = ap.parse_args(argv)
    if not osp.exists(args.path):
        print(f"xfeldata locality: error: no such file or folder: {args.path}",
              file=sys.stderr)
        return 255
    try:
        return check_dir(args.path, progress=False if args.quiet else None)
    except OSError as e:
        print(f"xfeldata locality: error: {e}", file=sys.stderr)
        return 255


if __name__ == '__main__':
    sys.exit(main())
