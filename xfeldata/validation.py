"""Check EuXFEL files and runs for index problems (``xfeldata validate``).

The validator uses the reader's own pieces, so there is one definition of a
valid index: files are opened by the reader's scan (:mod:`xfeldata._scan`:
the same tier-0 record and the same errors as ``H5File``), INDEX groups are
read by the same function (:func:`xfeldata._scan.read_index_group`), and the
run-level conflict check is the reader's (:func:`xfeldata.core.runindex.find_conflicts`).
The checks themselves are pure functions in :mod:`xfeldata.core.checks`.

File checks (skippable by name): ``train_ids_nonzero``, ``train_ids_order``,
``index_control``, ``index_instrument``, ``control_timestamps_order``.
Run checks: ``run_json_cache`` (EXtra-data's run files map agrees with the
files) and ``source_conflicts`` (xfeldata: the same source and train in two
places, which makes ``RunDirectory`` refuse the run).

Examples
--------
>>> import tempfile
>>> from xfeldata.testing import make_demo_run
>>> d = tempfile.mkdtemp()
>>> _ = make_demo_run(d)
>>> RunValidator(d, processes=1).run_checks()
[]
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

import h5py
import numpy as np

from .core import checks
from .core.checks import problem

__all__ = ['ValidationError', 'FileValidator', 'RunValidator', 'problem', 'file_check',
           'run_check', 'main']


class ValidationError(Exception):
    """Problems found by a validator; ``.problems`` is the list of problem dicts."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__(self.problems)

    def __str__(self):
        return format_problems(self.problems)


def format_problems(problems) -> str:
    """Problems as text: grouped by file, one block per problem."""
    lines = []
    last_file = object()
    for p in problems:
        f = p.get('file')
        if f != last_file:
            lines.append(f"\n{f}:" if f is not None else "\n(run):")
            last_file = f
        head_key = 'dataset' if 'dataset' in p else 'source' if 'source' in p else None
        lines.append(f"  {p['msg']}" + (f"\n    in {p[head_key]}" if head_key else ''))
        for k, v in p.items():
            if k in ('msg', 'file', head_key):
                continue
            lines.append(f"    {k}: {v}")
    n = len(problems)
    return f"Validation found {n} problem{'s' if n != 1 else ''}:" + '\n'.join(lines)


# -- registries ------------------------------------------------------------------

FILE_CHECKS = []
RUN_CHECKS = []


def file_check(func):
    """Register a method of FileValidator as a named, skippable file check."""
    FILE_CHECKS.append(func)
    return func


def run_check(func):
    """Register a method of RunValidator as a named, skippable run check."""
    RUN_CHECKS.append(func)
    return func


def _check_skips(skip_checks, known):
    skip = set([skip_checks] if isinstance(skip_checks, str) else skip_checks)
    unknown = skip - set(known)
    if unknown:
        raise ValueError(f"Unknown check name(s): {', '.join(sorted(map(str, unknown)))}. "
                         f"Known checks: {', '.join(known)}")
    return skip


def _datasets_below(grp) -> list:
    """``(path below grp, shape)`` of every dataset below an h5py group, sorted by path.

    Uses h5py's low-level calls: a control source can have thousands of keys,
    and the high-level objects cost more than the HDF5 work.
    """
    names = []

    def visitor(name, info, _dataset=h5py.h5o.TYPE_DATASET):
        if info.type == _dataset:
            names.append(name)
    h5py.h5o.visit(grp.id, visitor, info=True)
    out = []
    for name in sorted(names):
        try:
            shape = h5py.h5d.open(grp.id, name).shape
        except Exception:   # noqa: BLE001 - e.g. a dangling external link
            continue
        out.append((name.decode('utf-8', 'surrogateescape') if isinstance(name, bytes)
                    else name, shape))
    return out


def _read_dataset(grp, name):
    """All of a (small, 1-D) dataset below ``grp``, read with low-level calls."""
    dsid = h5py.h5d.open(grp.id, name.encode('utf-8', 'surrogateescape'))
    out = np.empty(dsid.shape, dtype=dsid.dtype)
    if out.size:
        dsid.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
    return out


# -- one file ----------------------------------------------------------------------

class FileValidator:
    """Check one file's INDEX and CONTROL timestamps.

    Parameters
    ----------
    file : FileAccess
        The file (``xfeldata.FileAccess(path)``).
    skip_checks : iterable of str
        Names of checks not to run (see :attr:`check_funcs`); unknown names
        raise ValueError.
    """

    check_funcs = FILE_CHECKS

    def __init__(self, file, skip_checks=()):
        from .file_access import FileAccess
        if not isinstance(file, FileAccess):
            raise TypeError(f"FileValidator needs a FileAccess, not {type(file).__name__} "
                            "(use xfeldata.FileAccess(path))")
        self.file = file
        self.filename = file.filename
        self.skip_checks = _check_skips(skip_checks, [f.__name__ for f in self.check_funcs])
        self.problems = []

    def _base(self):
        return osp.basename(self.filename)

    def validate(self):
        """Run the checks; raise :class:`ValidationError` if there are problems."""
        problems = self.run_checks()
        if problems:
            raise ValidationError(problems)

    def run_checks(self) -> list:
        """Run every check not skipped; returns (and stores in ``.problems``) the problems."""
        self.problems = []
        for func in self.check_funcs:
            if func.__name__ in self.skip_checks:
                continue
            self.problems += func(self)
        return self.problems

    # -- readers (the reader's scan) ------------------------------------------------
    def _h5(self):
        return self.file.file

    def _raw_train_ids(self):
        from ._scan import _read_1d
        return _read_1d(self._h5(), 'INDEX/trainId')

    def _n_trains(self) -> int:
        return len(self.file.index.train_ids)

    def _index_group(self, grp_path):
        """(first, count, problems): the whole arrays, or problems saying why not."""
        from ._scan import read_index_group
        from .exceptions import FileStructureError
        f = self._h5()
        try:
            first, count = read_index_group(f, grp_path)
            return first, count, []
        except FileStructureError as e:
            shapes = {}
            grp = f.get(grp_path)
            for name in ('first', 'count'):
                obj = grp.get(name) if isinstance(grp, h5py.Group) else None
                if isinstance(obj, h5py.Dataset):
                    shapes[name] = obj.shape
            if len(shapes) == 2 and any(len(s) != 1 for s in shapes.values()):
                return None, None, [problem("Index first and count are not 1D",
                                            dataset=grp_path, file=self._base(),
                                            first_shape=shapes['first'],
                                            count_shape=shapes['count'])]
            return None, None, [problem("Index could not be read", dataset=grp_path,
                                        file=self._base(), error=e.problem)]

    def _check_group(self, grp_path, data_grp_path, first_only):
        first, count, out = self._index_group(grp_path)
        if first is None:
            return out
        n = self._n_trains()
        f = self._h5()
        data_grp = f.get(data_grp_path)
        if isinstance(data_grp, h5py.Group):
            end = checks.index_end(first, count, n)
            lengths = [(f"{data_grp_path}/{name}", shape[0] if shape else 0)
                       for name, shape in _datasets_below(data_grp)]
            out += checks.data_outside_index(end, lengths, self._base(),
                                             first_only=first_only)
        out += checks.index_group(first, count, n, grp_path, self._base())
        return out

    # -- checks -------------------------------------------------------------------
    @file_check
    def train_ids_nonzero(self):
        return checks.train_ids_nonzero(self._raw_train_ids(), self._base())

    @file_check
    def train_ids_order(self):
        return checks.train_ids_order(self._raw_train_ids(), self._base())

    @file_check
    def index_control(self):
        out = []
        f = self._h5()
        for src in sorted(self.file.control_sources):
            if not isinstance(f.get(f'CONTROL/{src}'), h5py.Group):
                out.append(problem("Source listed in METADATA has no CONTROL group",
                                   dataset=f'CONTROL/{src}', file=self._base()))
                continue
            out += self._check_group(f'INDEX/{src}', f'CONTROL/{src}', first_only=True)
        return out

    @file_check
    def index_instrument(self):
        out = []
        f = self._h5()
        legacy = self.file.legacy_sources
        for src in sorted(self.file.instrument_sources):
            if src in legacy:
                continue   # a soft link to its canonical source, checked under that name
            grp = f.get(f'INDEX/{src}')
            if not isinstance(grp, h5py.Group):
                out.append(problem("Source listed in METADATA has no INDEX group",
                                   dataset=f'INDEX/{src}', file=self._base()))
                continue
            for name in sorted(grp):
                if isinstance(grp.get(name), h5py.Group):
                    out += self._check_group(f'INDEX/{src}/{name}',
                                             f'INSTRUMENT/{src}/{name}', first_only=False)
        return out

    @file_check
    def control_timestamps_order(self):
        out = []
        f = self._h5()
        for src in sorted(self.file.control_sources):
            grp = f.get(f'CONTROL/{src}')
            if not isinstance(grp, h5py.Group):
                continue   # reported by index_control
            for name, shape in _datasets_below(grp):
                if name.rsplit('/', 1)[-1] != 'timestamp' or len(shape) != 1:
                    continue
                try:
                    ts = _read_dataset(grp, name)
                except Exception as e:
                    out.append(problem("Timestamps could not be read",
                                       dataset=f'CONTROL/{src}/{name}', file=self._base(),
                                       error=str(e)))
                    continue
                out += checks.timestamps_order(ts, f'CONTROL/{src}/{name}', self._base())
        return out


# -- opening, shared by the CLI and the run validator ------------------------------------

def open_problem(path, exc) -> dict:
    """The problem record for a file that cannot be opened: access vs HDF5 failure."""
    try:
        with open(path, 'rb') as f:
            f.read(16)
    except OSError as e:
        return problem("Could not access file", file=osp.basename(path),
                       error=f"{type(e).__name__}: {e}")
    return problem("Could not open HDF5 file", file=osp.basename(path),
                   error=f"{type(exc).__name__}: {exc}")


def validate_file(path, skip_checks=()):
    """``(FileIndex or None, problems)`` for one file: open it the reader's way, then check it.

    Tier 0 is scanned afresh (not from any cache or memo), so the run check
    can compare caches with what the file holds now.
    """
    from . import _scan
    from .file_access import FileAccess
    path = osp.abspath(path)
    try:
        fi = _scan.scan_file_index_at(path, os.stat(path))
        fa = FileAccess(path, _cache_info=fi)
    except Exception as e:   # noqa: BLE001 - every open failure is a reported problem
        return None, [open_problem(path, e)]
    try:
        file_skips = set(skip_checks) & {f.__name__ for f in FILE_CHECKS}
        problems = FileValidator(fa, skip_checks=file_skips).run_checks()
    except Exception as e:   # noqa: BLE001 - e.g. a dataset that HDF5 cannot read
        problems = [problem("Could not check file", file=osp.basename(path),
                            error=f"{type(e).__name__}: {e}")]
    finally:
        fa.close()
    return fi, problems


def _validate_file_job(args):
    path, skip = args
    return path, *validate_file(path, skip)


# -- a run ---------------------------------------------------------------------------

class RunValidator:
    """Check every ``*.h5`` file of a run folder, then the run as a whole.

    Files are checked in parallel worker processes, at most one per CPU core
    available to this process (and never fewer than one).

    Parameters
    ----------
    run_dir : str or path-like
    term_progress : bool
        Draw a progress bar on stderr while files are checked.
    skip_checks : iterable of str
        File or run check names not to run.
    processes : int, optional
        Worker processes (default: the cores available, at most the number
        of files; 1 checks in this process).
    """

    check_funcs = RUN_CHECKS

    def __init__(self, run_dir, term_progress=False, skip_checks=(), *, processes=None):
        run_dir = os.fspath(run_dir)
        if not osp.isdir(run_dir):
            raise NotADirectoryError(f"Not a run directory: {run_dir}")
        self.run_dir = osp.abspath(run_dir)
        self.term_progress = term_progress
        known = [f.__name__ for f in FILE_CHECKS] + [f.__name__ for f in RUN_CHECKS]
        self.skip_checks = _check_skips(skip_checks, known)
        self.processes = processes
        self.filenames = sorted(n for n in os.listdir(self.run_dir) if n.endswith('.h5'))
        self.file_indexes = []   # FileIndex of every file that opened
        self.problems = []

    def validate(self):
        """Run the checks; raise :class:`ValidationError` if there are problems."""
        problems = self.run_checks()
        if problems:
            raise ValidationError(problems)

    def run_checks(self) -> list:
        """Check the files, then the run; returns (and stores) the problems."""
        self.problems = []
        self.file_indexes = []
        self.check_files()
        if not self.file_indexes:
            self.problems.append(problem("No usable files found", directory=self.run_dir))
            return self.problems
        for func in self.check_funcs:
            if func.__name__ not in self.skip_checks:
                self.problems += func(self)
        return self.problems

    def _n_workers(self, n_files) -> int:
        from .utils import available_cpu_cores
        n = self.processes if self.processes is not None else available_cpu_cores()
        return max(1, min(int(n), n_files))

    def check_files(self):
        paths = [osp.join(self.run_dir, n) for n in self.filenames]
        jobs = [(p, tuple(self.skip_checks)) for p in paths]
        results = {}
        n_workers = self._n_workers(len(jobs))
        if n_workers <= 1 or len(jobs) <= 1:
            it = map(_validate_file_job, jobs)
            pool = None
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor
            # spawn: the workers share no state (threads, open HDF5 files) with us.
            pool = ProcessPoolExecutor(n_workers, mp_context=mp.get_context('spawn'))
            it = pool.map(_validate_file_job, jobs, chunksize=max(1, len(jobs) // (4 * n_workers)))
        try:
            for i, (path, fi, probs) in enumerate(it, 1):
                results[path] = (fi, probs)
                if self.term_progress:
                    from .utils import progress_bar
                    print('\r' + progress_bar(i, len(jobs), suffix=' files checked'),
                          end='', file=sys.stderr, flush=True)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            if self.term_progress and jobs:
                print(file=sys.stderr)
        for path in paths:
            fi, probs = results[path]
            self.problems += probs
            if fi is not None:
                self.file_indexes.append(fi)

    @run_check
    def run_json_cache(self):
        """Entries of EXtra-data's run files map that disagree with their files."""
        from .run_files_map import RunFilesMap
        out = []
        try:
            fmap = RunFilesMap(self.run_dir)
        except OSError:
            return out
        for fi in self.file_indexes:
            entry = fmap.get(fi.path)
            if entry is None:
                continue
            for p in checks.run_map_entry(entry, fi.train_ids, fi.control_sources,
                                          fi.instrument_sources, osp.basename(fi.path)):
                p['cache_file'] = fmap.cache_file
                out.append(p)
        return out

    @run_check
    def source_conflicts(self):
        """The reader's conflict check: a source with the same train in two places."""
        from .core.runindex import RunIndex, find_conflicts
        files = [fi for fi in self.file_indexes
                 if osp.basename(fi.path).lower() != 'overview.h5']
        ri = RunIndex.build(files, inc_suspect_trains=True, check_conflicts=False)
        legacy = ri.legacy_sources
        srcs = {s: ix for s, ix in ri.source_files.items() if s not in legacy}
        return checks.conflicts(find_conflicts(ri.files, srcs, True), osp.basename)


# -- command line -----------------------------------------------------------------------

def _all_check_names():
    return [f.__name__ for f in FILE_CHECKS] + [f.__name__ for f in RUN_CHECKS]


def main(argv=None) -> int:
    """``xfeldata validate PATH``: exit 0 if no problems, 1 if problems, 2 on usage errors."""
    ap = argparse.ArgumentParser(
        prog='xfeldata validate',
        description='Check an EuXFEL HDF5 file, or every file of a run folder and the run '
                    'as a whole, for index problems.',
        epilog='Exit status: 0 no problems, 1 problems found (or unknown --skip name), '
               '2 bad arguments or missing path, 130 interrupted.')
    ap.add_argument('path', nargs='?', help='a .h5 file or a run folder')
    ap.add_argument('-l', '--list', action='store_true', help='list the check names and exit')
    ap.add_argument('--skip', action='append', default=[], metavar='NAME',
                    help='do not run this check (repeatable)')
    ap.add_argument('-q', '--quiet', action='store_true', help='no progress bar')
    ap.add_argument('-j', '--processes', type=int, default=None, metavar='N',
                    help='worker processes for a run (default: the available cores)')
    args = ap.parse_args(argv)

    if args.list:
        print("File checks:")
        for f in FILE_CHECKS:
            print(f"  {f.__name__}")
        print("Run checks:")
        for f in RUN_CHECKS:
            print(f"  {f.__name__}")
        return 0
    if args.path is None:
        ap.print_usage(sys.stderr)
        print("xfeldata validate: error: a PATH is required (or --list)", file=sys.stderr)
        return 2
    unknown = set(args.skip) - set(_all_check_names())
    if unknown:
        print(f"Unknown check name(s) to skip: {', '.join(sorted(unknown))}. "
              "Use --list to see the checks.", file=sys.stderr)
        return 1
    if args.processes is not None and args.processes < 1:
        print("xfeldata validate: error: --processes must be at least 1", file=sys.stderr)
        return 2
    path = args.path
    if not osp.exists(path):
        print(f"xfeldata validate: error: no such file or folder: {path}", file=sys.stderr)
        return 2

    progress = not args.quiet and sys.stderr.isatty()
    try:
        if osp.isdir(path):
            v = RunValidator(path, term_progress=progress, skip_checks=args.skip,
                             processes=args.processes)
            print(f"Checking run folder {path} ({len(v.filenames)} files)", file=sys.stderr)
            problems = v.run_checks()
        else:
            _, problems = validate_file(path, args.skip)
    except KeyboardInterrupt:
        print("\nValidation cancelled (Ctrl-C).", file=sys.stderr)
        return 130
    if problems:
        print(format_problems(problems))
        return 1
    print("No problems found")
    return 0


if __name__ == '__main__':
    sys.exit(main())
