"""``xfeldata ls`` (EXtra-data's ``lsxfel``): summarise EuXFEL files, runs and proposals.

One path:

- a run folder (holding ``*.h5`` files): ``RunDirectory(path).info(...)``,
  preceded by "Showing n / N sources" when ``--source``/``--detail`` filter;
- a ``.h5`` file: ``H5File(path).info(...)``;
- a proposal folder (with ``raw/``) or a proposal data folder (with ``rNNNN``
  run folders): one summary line per run.

Several paths: one summary line each. The summaries come from the index
only (``info()`` opens no data), and the run index cache makes repeated
listings cheap.

Exit status: 0; 1 if a run or file could not be opened or no source matched;
2 for a path that is not recognised (missing, or not an EuXFEL file or folder).
"""
from __future__ import annotations

import argparse
import fnmatch
import os
import os.path as osp
import re
import sys
import warnings

__all__ = ['main']

_RUN_DIR_RE = re.compile(r'^r\d{4}$')


def _pattern(p: str) -> str:
    """``PAT`` without glob characters becomes ``*PAT*`` (a substring match)."""
    return p if any(c in p for c in '*?[') else f'*{p}*'


def _has_h5(path) -> bool:
    try:
        return any(n.endswith('.h5') for n in os.listdir(path))
    except OSError:
        return False


def _run_dirs(path) -> list:
    try:
        names = os.listdir(path)
    except OSError:
        return []
    return sorted(n for n in names if _RUN_DIR_RE.match(n) and osp.isdir(osp.join(path, n)))


def _default_aliases(run_dir):
    """The proposal's alias file for ``<proposal>/<raw|proc|...>/rNNNN``, if present."""
    from ..reader import DEFAULT_ALIASES_FILE
    run_dir = osp.realpath(run_dir)
    prop_dir = osp.dirname(osp.dirname(run_dir))
    if osp.basename(prop_dir).startswith('p'):
        path = DEFAULT_ALIASES_FILE.format(prop_dir)
        if osp.isfile(path):
            return path
    return None


def _apply_aliases(dc, run_dir, alias_file):
    if alias_file:
        return dc.with_aliases(alias_file)
    default = _default_aliases(run_dir) if run_dir else None
    if default:
        try:
            return dc.with_aliases(default)
        except Exception as e:   # noqa: BLE001 - a broken alias file must not hide the run
            print(f"Warning: ignoring alias file {default}: {e}", file=sys.stderr)
    return dc


def _show(dc, args) -> int:
    """Filter by --source/--detail and print info(); returns the exit code."""
    patterns = [_pattern(p) for p in (args.source or args.detail or [])]
    details = [_pattern(p) for p in args.detail]
    if patterns:
        every = sorted(dc.all_sources)
        keep = [s for s in every if any(fnmatch.fnmatchcase(s, p) for p in patterns)]
        if not keep:
            print(f"No sources match {', '.join(args.source or args.detail)}", file=sys.stderr)
            return 1
        n_all = len(dc.all_sources)
        dc = dc.select({s: None for s in keep})
        print(f"Showing {len(dc.all_sources)} / {n_all} sources")
    dc.info(details, counts=args.counts, group_sources=not args.no_group,
            with_aggregators=args.aggregators, with_auxiliary=args.auxiliary)
    return 0


def _run_summary(run_dir) -> str:
    """'Run of N trains, with d detector files and o others' from file names and tier 0.

    Trains are counted from the files of one aggregator (the one with the
    fewest sequence files, non-detector aggregators first), so only those
    files' indexes are read.
    """
    from .. import _open, _tiers
    from ..core.names import DETECTOR_NAMES, parse_filename
    files = _open.list_run_files(run_dir)
    if not files:
        return "Run with no data files"
    by_agg, n_det = {}, 0
    for p in files:
        parts = parse_filename(osp.basename(p))
        agg = parts.aggregator if parts else osp.basename(p)
        is_det = bool(parts) and any(agg.startswith(d) for d in DETECTOR_NAMES)
        n_det += is_det
        by_agg.setdefault((is_det, agg), []).append(p)
    _, paths = min(by_agg.items(), key=lambda kv: (kv[0][0], len(kv[1]), kv[0][1]))
    tids = set()
    for p in paths:
        tids.update(_tiers.file_index(p).train_ids.tolist())
    return (f"Run of {len(tids)} trains, with {n_det} detector files and "
            f"{len(files) - n_det} others")


def _summary(path) -> tuple:
    """(text, recognised) for one path of a multi-path listing."""
    if osp.isfile(path):
        if not path.endswith('.h5'):
            return "Unrecognised file", False
        from .. import H5File
        dc = H5File(path)
        return (f"HDF5 file: {len(dc.train_ids)} trains, {len(dc.control_sources)} control "
                f"and {len(dc.instrument_sources)} instrument sources"), True
    if osp.isdir(path):
        if _has_h5(path):
            return _run_summary(path), True
        runs = _run_dirs(path)
        if runs:
            return f"Proposal data folder with {len(runs)} runs", True
        if osp.isdir(osp.join(path, 'raw')):
            return f"Proposal folder with {len(_run_dirs(osp.join(path, 'raw')))} raw runs", True
        return "Unrecognised folder", False
    return "Not found", False


def _list_runs(folder) -> int:
    for r in _run_dirs(folder):
        try:
            line = _run_summary(osp.join(folder, r))
        except Exception as e:   # noqa: BLE001 - one bad run must not stop the listing
            line = f"could not be read ({type(e).__name__}: {e})"
        print(f"{r}: {line}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog='xfeldata ls',
        description='Summarise EuXFEL data: a run folder, a .h5 file, or a proposal folder.',
        epilog='Patterns without * ? [ match anywhere in a source name. Exit status: 0 ok; '
               '1 open failure or no matching source; 2 unrecognised path.')
    ap.add_argument('paths', nargs='*', metavar='PATH', help='default: the current folder')
    ap.add_argument('-s', '--source', action='append', default=[], metavar='PAT',
                    help='show only sources matching PAT (repeatable)')
    ap.add_argument('-d', '--detail', action='append', default=[], metavar='PAT',
                    help='show keys and data counts of sources matching PAT (repeatable; '
                         'also selects sources when no --source is given)')
    ap.add_argument('-c', '--counts', action='store_true',
                    help='show data counts for every instrument source')
    ap.add_argument('--no-group', action='store_true',
                    help="list each source, don't group similar names")
    ap.add_argument('-g', '--aggregators', action='store_true',
                    help='show the aggregator of each source')
    ap.add_argument('-x', '--auxiliary', action='store_true',
                    help='also list auxiliary (REDUCTION / ERRATA) sources')
    ap.add_argument('--aliases', metavar='FILE',
                    help="alias file to show aliases from (default: the proposal's "
                         "usr/extra-data-aliases.yml, if the run is in a proposal folder)")
    args = ap.parse_args(argv)
    paths = args.paths or [os.getcwd()]

    if len(paths) > 1:
        rc = 0
        for p in paths:
            try:
                text, ok = _summary(p)
            except Exception as e:   # noqa: BLE001
                text, ok = f"could not be read ({type(e).__name__}: {e})", True
                rc = max(rc, 1)
            print(f"{p}: {text}")
            if not ok:
                rc = 2
        return rc

    path = paths[0]
    try:
        with warnings.catch_warnings():
            # Skipped files are reported once, briefly, rather than as warnings.
            warnings.simplefilter('ignore', UserWarning)
            if osp.isfile(path):
                if not path.endswith('.h5'):
                    print(f"{path}: Unrecognised file (not .h5)", file=sys.stderr)
                    return 2
                from .. import H5File
                print(f"{path}: HDF5 file")
                dc = _apply_aliases(H5File(path), None, args.aliases)
                return _show(dc, args)
            if osp.isdir(path):
                if _has_h5(path):
                    from .. import RunDirectory
                    print(f"{path}: Run directory")
                    print()
                    dc = _apply_aliases(RunDirectory(path), path, args.aliases)
                    return _show(dc, args)
                if _run_dirs(path):
                    print(f"{path}: Proposal data folder")
                    return _list_runs(path)
                if osp.isdir(osp.join(path, 'raw')):
                    print(f"{path}: Proposal folder; raw runs:")
                    return _list_runs(osp.join(path, 'raw'))
                print(f"{path}: Unrecognised folder (no .h5 files or rNNNN runs)",
                      file=sys.stderr)
                return 2
            print(f"{path}: not found", file=sys.stderr)
            return 2
    except BrokenPipeError:   # `xfeldata ls run | head`
        return 0
    except Exception as e:   # noqa: BLE001 - an open failure is reported, not a traceback
        print(f"xfeldata ls: {path}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
