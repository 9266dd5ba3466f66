"""Virtual overview files: one HDF5 file presenting a whole run.

This module finds, checks and writes overview files (FORMAT.md section 4).
An overview file is a :class:`~xfeldata.writer.VirtualFileWriter` file of the
whole run plus ``.source_files/{names,sizes}`` (the run's file names and
sizes when it was written) and the root attribute
``virtual_overview_version``. ``RunDirectory``/``open_run`` use it only while
the run's ``*.h5`` files still match those names and sizes.

Writing is atomic: the file is written under a temporary name beside the
target and renamed over it when complete. Virtual datasets name source files
in the overview's own folder relative to it, so ``<run>/overview.h5`` keeps
working if the run folder moves.

Command line: ``xfeldata voview RUN_DIR [--check] [--overview-file PATH]``.
"""
from __future__ import annotations

import os
import os.path as osp
import re

import numpy as np

from .writer import VirtualFileWriter

__all__ = ['VOVIEW_VERSION', 'voview_paths_for_run', 'check_sources', 'find_file_read',
           'find_file_valid', 'find_file_write', 'VirtualOverviewFileWriter', 'write_atomic',
           'write_for_run', 'check_file', 'main']

VOVIEW_VERSION = 1

_MAXWELL_RE = re.compile(r'.+/(raw|proc)/(\w+)/(\d{6})/(p\d{6})/(r\d{4})/?$')
_ONLINE_RE = re.compile(r'^.+/(\w+)/(\d{6})/(p\d{6})/(raw|proc)/(r\d{4})/?$')


def voview_paths_for_run(directory, *, _real=None) -> list:
    """Candidate overview file paths for a run directory, in the order tried."""
    from .read_machinery import data_root_dir
    paths = [osp.join(directory, 'overview.h5')]
    real = osp.realpath(directory) if _real is None else _real
    m = _MAXWELL_RE.match(real)
    if m:
        cls, instr, cycle, prop, run = m.groups()
    else:
        m = _ONLINE_RE.match(real)
        if not m:
            return paths
        instr, cycle, prop, cls, run = m.groups()
    usr = osp.join(data_root_dir(), instr, cycle, prop, 'usr')
    if osp.isdir(usr):
        paths.append(osp.join(usr, '.extra_data', f'{cls.upper()}-{run.upper()}-OVERVIEW.h5'))
    return paths


def check_sources(overview_file, run_dir) -> bool:
    """True if the overview records exactly the run's ``*.h5`` files, with their sizes."""
    g = overview_file.get('.source_files')
    if g is None or 'names' not in g or 'sizes' not in g:
        return False
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in g['names'][()]]
    sizes = np.asarray(g['sizes'][()])
    if len(names) != len(sizes):
        return False
    actual = {n for n in os.listdir(run_dir)
              if n.endswith('.h5') and n.lower() != 'overview.h5'}
    if set(names) != actual:
        return False
    for n, size in zip(names, sizes):
        try:
            if os.stat(osp.join(run_dir, n)).st_size != int(size):
                return False
        except OSError:
            return False
    return True


def find_file_read(run_dir):
    for p in voview_paths_for_run(run_dir):
        if osp.isfile(p):
            return p
    return None


def find_file_valid(run_dir, *, _real=None, _in_dir=True):
    """The FileAccess of a valid overview file for ``run_dir``, or None.

    ``_real``: the resolved directory, when the caller (opening) has it;
    ``_in_dir=False``: the caller's listing of ``run_dir`` has no
    ``overview.h5`` (the first candidate), which then is not looked for.
    """
    import h5py
    from .file_access import FileAccess
    paths = voview_paths_for_run(run_dir, _real=_real)
    for p in paths if _in_dir else paths[1:]:
        if not osp.isfile(p):
            continue
        try:
            with h5py.File(p, 'r') as f:
                version = int(f.attrs.get('virtual_overview_version', 0))
                if version > VOVIEW_VERSION or not check_sources(f, run_dir):
                    continue
            return FileAccess(p)
        except Exception:
            continue
    return None


# -- writing --------------------------------------------------------------------------------

def find_file_write(run_dir) -> str:
    """The first candidate path where an overview file can be created.

    A candidate is usable if a probe file ``<path>.check`` can be created
    (and removed) there; the ``usr/.extra_data`` folder is created if needed.

    Raises
    ------
    PermissionError
        No candidate is writable.
    """
    tried = []
    for p in voview_paths_for_run(run_dir):
        folder = osp.dirname(p)
        try:
            os.makedirs(folder, exist_ok=True)
            probe = p + '.check'
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            os.unlink(probe)
            return p
        except FileExistsError:
            return p    # a leftover probe from another writer: the folder is writable
        except OSError as e:
            tried.append(f"{p}: {e.strerror or e}")
    raise PermissionError("No writable location for a virtual overview file; tried:\n  "
                          + "\n  ".join(tried))


class VirtualOverviewFileWriter(VirtualFileWriter):
    """A :class:`~xfeldata.writer.VirtualFileWriter` file of a whole run plus ``.source_files``."""

    def record_source_files(self):
        """``.source_files/names`` (vlen ASCII basenames) and ``sizes`` (uint64).

        Sizes are those of the records the run was opened from (the stat taken
        when the file was read), so a file changed since is caught later.
        """
        import h5py
        files = self.data._index.files
        names = np.array([osp.basename(fi.path).encode('utf-8', 'surrogateescape')
                          for fi in files], dtype=object)
        sizes = np.array([fi.size for fi in files], dtype=np.uint64)
        g = self.file.create_group('.source_files')
        g.create_dataset('names', data=names, dtype=h5py.string_dtype('ascii'))
        g.create_dataset('sizes', data=sizes)

    def write(self):
        self.record_source_files()
        self.file.attrs['virtual_overview_version'] = np.int64(VOVIEW_VERSION)
        super().write()


def write_atomic(path, data, *, progress=None) -> str:
    """Write an overview file of ``data`` (a whole run) to ``path`` atomically.

    The file is written under a temporary name in ``path``'s folder and
    renamed over ``path`` when complete; on any error nothing is left behind
    and an existing file at ``path`` is untouched.
    """
    from ._write_util import Progress, atomic_output, check_target
    from .writer import _input_paths
    path = check_target(path, _input_paths(data))
    cls = VirtualOverviewFileWriter
    prog = Progress(0, 'Writing overview file', enabled=progress)
    with atomic_output(path) as tmp:
        with cls(tmp, data, progress=prog) as w:
            w.write()
        prog.close()
    return path


def write_for_run(run_dir, path=None, *, progress=None) -> str:
    """Write (or rewrite) the overview file of the run in ``run_dir``; return its path.

    ``path`` defaults to the first writable candidate (:func:`find_file_write`).
    The run is opened from its files, never from an existing overview file.
    """
    from .reader import RunDirectory
    run_dir = osp.abspath(os.fspath(run_dir))
    data = RunDirectory(run_dir, _use_voview=False)
    if path is None:
        path = find_file_write(run_dir)
    return write_atomic(path, data, progress=progress)


def check_file(path, run_dir) -> list:
    """Problems that stop ``path`` being used as the overview of ``run_dir`` ([] = usable)."""
    import h5py
    problems = []
    try:
        f = h5py.File(path, 'r')
    except OSError as e:
        return [f"cannot open {path} as HDF5: {e}"]
    with f:
        version = int(f.attrs.get('virtual_overview_version', 0))
        if version > VOVIEW_VERSION:
            problems.append(f"format version {version} is newer than supported "
                            f"({VOVIEW_VERSION})")
        g = f.get('.source_files')
        if g is None or 'names' not in g or 'sizes' not in g:
            return problems + ["no .source_files record (not an overview file)"]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in g['names'][()]]
        sizes = np.asarray(g['sizes'][()])
        if len(names) != len(sizes):
            return problems + [".source_files names and sizes differ in length"]
    actual = {n for n in os.listdir(run_dir) if n.endswith('.h5') and n.lower() != 'overview.h5'}
    for n in sorted(actual - set(names)):
        problems.append(f"new file not in the overview: {n}")
    for n in sorted(set(names) - actual):
        problems.append(f"file recorded in the overview is missing: {n}")
    for n, size in zip(names, sizes):
        if n in actual:
            st = os.stat(osp.join(run_dir, n)).st_size
            if st != int(size):
                problems.append(f"size of {n} changed: {int(size)} -> {st} bytes")
    return problems


def main(argv=None) -> int:
    """``xfeldata voview RUN_DIR [--check] [--overview-file PATH] [--quiet]``.

    Without ``--check``: write the run's overview file (atomically) and print
    its path. With ``--check``: report whether the overview file is usable
    (exit code 0) or why not (exit code 1).
    """
    import argparse
    import sys
    ap = argparse.ArgumentParser(
        prog='xfeldata voview',
        description='Write or check the virtual overview file of a run.')
    ap.add_argument('run_dir', help='run folder (holding the .h5 files)')
    ap.add_argument('--check', action='store_true',
                    help='check an existing overview file instead of writing one')
    ap.add_argument('--overview-file', metavar='PATH',
                    help='overview file to write or check (default: the standard locations)')
    ap.add_argument('-q', '--quiet', action='store_true', help='no progress display')
    args = ap.parse_args(argv)
    run_dir = osp.abspath(args.run_dir)
    if not osp.isdir(run_dir):
        print(f"error: {run_dir} is not a folder", file=sys.stderr)
        return 2
    if args.check:
        path = args.overview_file or find_file_read(run_dir)
        if path is None or not osp.isfile(path):
            print(f"No overview file found for {run_dir}")
            return 1
        problems = check_file(path, run_dir)
        if problems:
            print(f"{path} cannot be used:")
            for p in problems:
                print(f"  {p}")
            return 1
        print(f"{path} is valid for {run_dir}")
        return 0
    try:
        path = write_for_run(run_dir, args.overview_file,
                             progress=False if args.quiet else None)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"Wrote overview file {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
