"""``xfeldata make-virtual-cxi``: a virtual CXI file of a run's multi-module detector.

EXtra-data's ``extra-data-make-virtual-cxi``, with the same options::

    xfeldata make-virtual-cxi RUN_DIR [-o OUT] [--min-modules N] [--n-modules N]
                              [--fill-value DS V]... [--exc-suspect-trains] [-q]

The detector is found in the run (exactly one multi-module detector must be
there, :func:`~xfeldata.components.identify_multimod_detectors`); corrected
(``/CORR/``) sources are preferred to raw ones. Without ``-o`` the file goes
to ``<proposal>/scratch/rNNNN_<raw|proc>_detectors_virt.cxi``, which needs
``RUN_DIR`` to end in ``/raw/rNNNN`` or ``/proc/rNNNN``. The old form
``PROPOSAL_DIR RUN_NUMBER`` reads ``<proposal>/proc/rNNNN`` and writes
``<proposal>/scratch/rNNNN_detectors_virt.cxi``.

Exit codes: 0 written; 1 the run cannot be read, has no single detector, or
the file cannot be written (message on stderr, no traceback); 2 bad
arguments (including no ``-o`` for a folder not named like a run folder).
Progress messages go to stderr through ``logging`` (``-q`` silences them).
"""
from __future__ import annotations

import argparse
import logging
import os
import os.path as osp
import re
import sys
import warnings

__all__ = ['main', 'default_output', 'parse_fill_value']

log = logging.getLogger('xfeldata.cli.make_virtual_cxi')

_RUN_DIR_RE = re.compile(r'^(?P<prop>.+)/(?P<kind>raw|proc)/r(?P<run>\d{4})$')


def default_output(run_dir: str) -> str | None:
    """``<proposal>/scratch/rNNNN_<raw|proc>_detectors_virt.cxi`` for a run folder, or None.

    >>> default_output('/gpfs/exfel/exp/SPB/202401/p002173/raw/r0012/')
    '/gpfs/exfel/exp/SPB/202401/p002173/scratch/r0012_raw_detectors_virt.cxi'
    >>> default_output('/data/somewhere') is None
    True
    """
    path = osp.abspath(run_dir).rstrip('/')
    m = _RUN_DIR_RE.match(path)
    if m is None:
        return None
    return osp.join(m['prop'], 'scratch', f"r{m['run']}_{m['kind']}_detectors_virt.cxi")


def parse_fill_value(text: str):
    """A fill value from the command line: an integer (``0x``/``0o``/``0b`` prefixes) or a float.

    >>> parse_fill_value('0xffffffff'), parse_fill_value('-1'), parse_fill_value('nan')
    (4294967295, -1, nan)
    """
    try:
        return int(text, 0)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid fill value {text!r}: give a number (e.g. 0, -1, nan, 0xffffffff)"
        ) from None


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog='xfeldata make-virtual-cxi',
        description="Write a virtual CXI file (for CrystFEL etc.) of a run's multi-module "
                    "detector (AGIPD, DSSC, LPD, JUNGFRAU). No detector data are copied: the "
                    "file points into the run's files.")
    ap.add_argument('run_dir', help='run folder (e.g. .../p002173/proc/r0012)')
    ap.add_argument('run', nargs='?', type=int, help=argparse.SUPPRESS)   # legacy form
    ap.add_argument('-o', '--output',
                    help='file to write (default: <proposal>/scratch/'
                         'rNNNN_<raw|proc>_detectors_virt.cxi)')
    ap.add_argument('--min-modules', type=int, metavar='N',
                    help='keep trains with data from at least N modules (default: half the '
                         "detector's modules plus one; 1 for JUNGFRAU without --n-modules)")
    ap.add_argument('--n-modules', type=int, metavar='N',
                    help='number of modules of a JUNGFRAU detector (default: the highest '
                         'module number found)')
    ap.add_argument('--fill-value', nargs=2, action='append', metavar=('DATASET', 'VALUE'),
                    default=[],
                    help='value for slots without data in DATASET (data, gain, mask, cellId); '
                         'VALUE is an integer (0x.. hex, 0o.. octal, 0b.. binary) or a float; '
                         'repeatable')
    ap.add_argument('--exc-suspect-trains', action='store_true',
                    help='leave out trains flagged as suspect')
    ap.add_argument('-q', '--quiet', action='store_true', help='no progress messages')
    return ap


def _paths(ap, args):
    """(run folder, output file) from the arguments, or a usage error."""
    if args.run is not None:                       # legacy: PROPOSAL_DIR RUN_NUMBER
        prop = osp.abspath(args.run_dir)
        run_dir = osp.join(prop, 'proc', f'r{args.run:04d}')
        out = args.output or osp.join(prop, 'scratch', f'r{args.run:04d}_detectors_virt.cxi')
        return run_dir, out
    run_dir = osp.abspath(args.run_dir)
    out = args.output or default_output(run_dir)
    if out is None:
        ap.error(f"{run_dir} does not end in /raw/rNNNN or /proc/rNNNN, so there is no "
                 "default output file: please give one with -o/--output")
    return run_dir, out


def _setup_logging(quiet: bool):
    """Progress messages of this run (the ``xfeldata`` loggers, INFO) on stderr."""
    if quiet:
        return None
    logger = logging.getLogger('xfeldata')
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter('%(message)s'))
    saved = (logger.level, logger.propagate)
    logger.addHandler(h)
    logger.setLevel(logging.INFO)
    logger.propagate = False        # shown once, here, even if the caller set up logging
    return h, saved


def _restore_logging(state):
    if state is None:
        return
    h, (level, propagate) = state
    logger = logging.getLogger('xfeldata')
    logger.removeHandler(h)
    logger.setLevel(level)
    logger.propagate = propagate


def main(argv=None) -> int:
    """Run the command; returns the exit code."""
    ap = _parser()
    args = ap.parse_args(argv)
    fills = {}
    for name, value in args.fill_value:
        try:
            fills[name] = parse_fill_value(value)
        except argparse.ArgumentTypeError as e:
            ap.error(str(e))
    if args.min_modules is not None and args.min_modules < 1:
        ap.error(f"--min-modules must be at least 1, got {args.min_modules}")
    if args.n_modules is not None and args.n_modules < 1:
        ap.error(f"--n-modules must be at least 1, got {args.n_modules}")
    run_dir, out = _paths(ap, args)
    state = _setup_logging(args.quiet)
    try:
        return _run(run_dir, out, args, fills)
    finally:
        _restore_logging(state)


def _fail(msg: str) -> int:
    print(f"xfeldata make-virtual-cxi: error: {msg}", file=sys.stderr)
    return 1


def _run(run_dir, out, args, fills) -> int:
    from .._write_util import check_target
    from ..components import JUNGFRAU, identify_multimod_detectors
    from ..exceptions import FileStructureError, NoUsableFilesError
    from ..reader import RunDirectory
    errors = (OSError, ValueError, KeyError, FileStructureError, NoUsableFilesError)
    if not osp.isdir(run_dir):
        return _fail(f"run folder {run_dir} does not exist")
    if not os.access(run_dir, os.R_OK | os.X_OK):
        return _fail(f"run folder {run_dir} is not readable")
    try:
        out = check_target(out)
    except (OSError, ValueError) as e:
        return _fail(f"{e}. Give another output file with -o")
    log.info("Opening run %s", run_dir)
    try:
        run = RunDirectory(run_dir, inc_suspect_trains=not args.exc_suspect_trains)
        name, cls = identify_multimod_detectors(run, single=True)
    except errors as e:
        return _fail(str(e))
    log.info("Found detector %s (%s)", name, cls.__name__)
    kw = {}
    if cls is JUNGFRAU:
        kw['n_modules'] = args.n_modules
        n_mod = args.n_modules
    else:
        if args.n_modules is not None:
            log.info("--n-modules is only used for JUNGFRAU; ignored")
        n_mod = cls._spec.n_modules
    min_modules = args.min_modules
    if min_modules is None:
        min_modules = n_mod // 2 + 1 if n_mod else 1
    try:
        with warnings.catch_warnings():
            # raw data when no corrected sources exist is what this command is for
            warnings.filterwarnings('ignore', 'No corrected', UserWarning)
            det = cls(run, name, min_modules=min_modules, **kw)
        log.info("%r: %d trains with data from >= %d modules", det, len(det.train_ids),
                 min_modules)
        path = det.write_virtual_cxi(out, fillvalues=fills or None)
    except errors as e:
        return _fail(str(e).strip('"'))
    log.info("Wrote %s", path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
