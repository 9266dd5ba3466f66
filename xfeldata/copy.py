"""Copy the structure of EuXFEL files without their bulk data (FORMAT.md section 8.3).

``copy_structure(input, output)`` clones one HDF5 file, or every HDF5 file in
a folder, into the existing folder ``output``: every group, attribute and link
is reproduced; datasets are created with the same type, shape and creation
properties (chunks, filters, fill value) but no data is written, so they
take almost no space. ``METADATA`` and ``INDEX`` are copied with their data,
``RUN`` and ``CONTROL`` too on request; ``INSTRUMENT`` (and the auxiliary
``REDUCTION``/``ERRATA`` sections) stay empty. The clones open as runs (the
index is there) and read as fill values, which makes them small stand-ins
for tests and for reproducing problems with a file's layout.

Links: soft links stay soft links (same target path), external links stay
external links, and an object reached by several hard links is created once
and linked again. Each output file is written under a temporary name and
renamed when complete; an input file is never written.

Command line: ``xfeldata copy INPUT OUTPUT_DIR [--run-data] [--control-data]``.
"""
from __future__ import annotations

import os
import os.path as osp
import sys

import h5py

__all__ = ['copy_structure']

#: Top-level groups copied with their data (always).
_DATA_GROUPS = ('METADATA', 'INDEX')


def progress(done: int, total: int, name: str = '', stream=None):
    """Print a one-line progress display (files done of total) to stderr."""
    from .utils import progress_bar
    stream = sys.stderr if stream is None else stream
    stream.write('\r' + progress_bar(done, total, f' {name}'[:60].ljust(60)))
    if done >= total:
        stream.write('\n')
    stream.flush()


def _copy_attrs(src, dst):
    """Copy every attribute with its HDF5 type and shape (vlen/fixed strings kept)."""
    for name in src.attrs:
        try:
            aid = h5py.h5a.open(src.id, name.encode('utf-8', 'surrogateescape'))
            value = src.attrs[name]
            dst.attrs.create(name, value, shape=aid.shape, dtype=aid.dtype)
        except (OSError, TypeError, ValueError):
            try:
                dst.attrs[name] = src.attrs[name]
            except Exception:   # an attribute h5py cannot express; keep going
                pass


def _lcpl():
    lcpl = h5py.h5p.create(h5py.h5p.LINK_CREATE)
    lcpl.set_char_encoding(h5py.h5t.CSET_UTF8)
    return lcpl


class Cloner:
    """Clone the structure of one HDF5 file into ``output`` (a file path).

    Parameters
    ----------
    input : h5py.File
        Open for reading.
    output : h5py.File
        Open for writing (empty).
    run_data, control_data : bool
        Also copy the data of ``RUN`` / ``CONTROL``.
    """

    def __init__(self, input, output, *, run_data=False, control_data=False):
        self.input = input
        self.output = output
        self.with_data = set(_DATA_GROUPS)
        if run_data:
            self.with_data.add('RUN')
        if control_data:
            self.with_data.add('CONTROL')
        self.visited = {}   # object address in input -> path in output

    def run(self):
        _copy_attrs(self.input, self.output)
        self._clone_group(self.input, self.output, top=True)

    def _clone_group(self, src: h5py.Group, dst: h5py.Group, top=False):
        for name in src:
            link = src.get(name, getlink=True)
            if isinstance(link, h5py.SoftLink):
                dst[name] = h5py.SoftLink(link.path)
                continue
            if isinstance(link, h5py.ExternalLink):
                dst[name] = h5py.ExternalLink(link.filename, link.path)
                continue
            obj = src[name]
            addr = h5py.h5o.get_info(obj.id).addr
            known = self.visited.get(addr)
            if known is not None:
                dst[name] = self.output[known]     # another hard link to the same object
                continue
            out_path = f'{dst.name.rstrip("/")}/{name}'
            self.visited[addr] = out_path
            if top and name in self.with_data:
                dst.copy(obj, dst, name=name)      # H5Ocopy: data, attributes, links
                self._note_copied(obj, out_path)
            elif isinstance(obj, h5py.Group):
                g = dst.create_group(name)
                _copy_attrs(obj, g)
                self._clone_group(obj, g)
            elif isinstance(obj, h5py.Dataset):
                dsid = h5py.h5d.create(dst.id, name.encode('utf-8', 'surrogateescape'),
                                       obj.id.get_type(), obj.id.get_space(),
                                       dcpl=obj.id.get_create_plist(), lcpl=_lcpl())
                _copy_attrs(obj, h5py.Dataset(dsid))
            else:   # a committed datatype
                dst.copy(obj, dst, name=name)

    def _note_copied(self, obj, out_path):
        """Remember the objects H5Ocopy copied, so later hard links reuse them."""
        if not isinstance(obj, h5py.Group):
            return

        def visit(name, child):
            try:
                self.visited.setdefault(h5py.h5o.get_info(child.id).addr,
                                        f'{out_path}/{name}')
            except Exception:
                pass
        obj.visititems(visit)


def _input_files(input) -> tuple:
    """(input folder or None, list of HDF5 files to clone)."""
    if osp.isdir(input):
        files = sorted(osp.join(input, n) for n in os.listdir(input)
                       if osp.isfile(osp.join(input, n)) and h5py.is_hdf5(osp.join(input, n)))
        if not files:
            raise ValueError(f"no HDF5 files in {input}")
        return input, files
    if osp.isfile(input):
        if not h5py.is_hdf5(input):
            raise ValueError(f"{input} is not an HDF5 file")
        return None, [input]
    raise ValueError(f"{input} is not a file or a folder")


def copy_structure(input, output, *, run_data=False, control_data=False,
                   term_progress=False) -> list:
    """Clone the structure of ``input`` (a file, or every HDF5 file in a folder) into ``output``.

    Parameters
    ----------
    input : str or os.PathLike
        An HDF5 file or a folder.
    output : str or os.PathLike
        An existing folder, other than the input folder; files of the same
        names there are replaced.
    run_data, control_data : bool
        Also copy the data of the ``RUN`` / ``CONTROL`` sections.
    term_progress : bool
        Show progress (files done) on stderr.

    Returns
    -------
    list of str
        The files written.

    Raises
    ------
    ValueError
        ``output`` is not a folder, is the input's folder, or ``input`` is
        not an HDF5 file or a folder holding some.
    """
    from ._write_util import atomic_output
    input = osp.abspath(os.fspath(input))
    output = osp.abspath(os.fspath(output))
    if not osp.isdir(output):
        raise ValueError(f"output {output} is not a folder")
    in_dir, files = _input_files(input)
    for d in (in_dir, osp.dirname(files[0]) if in_dir is None else None):
        if d is not None and osp.samefile(d, output):
            raise ValueError(f"output folder {output} is the input folder; choose another")
    if not os.access(output, os.W_OK | os.X_OK):
        raise PermissionError(f"output folder {output} is not writable")
    written = []
    for i, path in enumerate(files):
        target = osp.join(output, osp.basename(path))
        if term_progress:
            progress(i, len(files), osp.basename(path))
        with atomic_output(target) as tmp:
            with h5py.File(path, 'r') as fin, h5py.File(tmp, 'w') as fout:
                Cloner(fin, fout, run_data=run_data, control_data=control_data).run()
        written.append(target)
    if term_progress:
        progress(len(files), len(files), 'done')
    return written


def main(argv=None) -> int:
    """``xfeldata copy INPUT OUTPUT_DIR [--run-data] [--control-data] [--progress]``."""
    import argparse
    ap = argparse.ArgumentParser(
        prog='xfeldata copy',
        description='Copy the structure of EuXFEL HDF5 files (groups, attributes, links, '
                    'empty datasets) plus METADATA and INDEX data into a folder.')
    ap.add_argument('input', help='an HDF5 file or a folder of them')
    ap.add_argument('output', help='existing output folder')
    ap.add_argument('--run-data', '--copy-run-data', action='store_true',
                    help='also copy the data of the RUN section')
    ap.add_argument('--control-data', '--copy-control-data', action='store_true',
                    help='also copy the data of the CONTROL section')
    ap.add_argument('--progress', action=argparse.BooleanOptionalAction, default=None,
                    help='show progress on stderr (default: when it is a terminal)')
    args = ap.parse_args(argv)
    from ._write_util import wants_progress
    try:
        written = copy_structure(args.input, args.output, run_data=args.run_data,
                                 control_data=args.control_data,
                                 term_progress=wants_progress(args.progress))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"Copied the structure of {len(written)} file(s) to {osp.abspath(args.output)}")
    return 0



if __name__ == "__main__":
    raise SystemExit(main())
