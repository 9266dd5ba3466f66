"""``xfeldata serve-run PROPOSAL RUN --include 'SRC[KEY]'``: stream part of a run.

EXtra-data's ``karabo-bridge-serve-run``. Opens the run with
``open_run(proposal, run, data='all')`` (raw and proc together), selects the
``--include`` patterns (``SRC_GLOB`` or ``SRC_GLOB[KEY_GLOB]``) keeping
trains where every selected source has data (``--allow-partial``: any
source), and streams it. Without ``--include`` it lists the run's sources
and exits with an error: streaming a whole run is rarely what is wanted.
The port defaults to 0 (a free port, printed at start).
"""
from __future__ import annotations

import argparse
import sys

from .serve_files import add_stream_options, check_dependencies, parse_port, run_stream


def parse_include(pattern: str):
    """``'SRC[KEY]'`` -> ``('SRC', 'KEY')``; ``'SRC'`` -> ``('SRC', '*')``.

    >>> parse_include('*/XGM/*[*.i*Pos]'), parse_include('SPB_DET*')
    (('*/XGM/*', '*.i*Pos'), ('SPB_DET*', '*'))
    """
    if '[' in pattern:
        if not pattern.endswith(']'):
            raise ValueError(f"--include {pattern!r}: missing ']' (use SRC_GLOB[KEY_GLOB])")
        src, _, key = pattern[:-1].partition('[')
        return src, key
    return pattern, '*'


def main(argv=None) -> int:
    prog = 'xfeldata serve-run'
    ap = argparse.ArgumentParser(
        prog=prog,
        description='Stream sources of a run (found by proposal and run number) in the '
                    'Karabo bridge protocol (ZeroMQ).')
    ap.add_argument('proposal', help='proposal number')
    ap.add_argument('run', help='run number')
    ap.add_argument('--port', type=parse_port, default=0,
                    help='TCP port to bind (default 0: a free port) or a ZeroMQ endpoint')
    ap.add_argument('--include', action='append', default=[], metavar='SRC[KEY]',
                    help='source glob, optionally with a key glob in brackets; repeatable')
    ap.add_argument('--allow-partial', action='store_true',
                    help='send trains where any selected source has data (default: all)')
    add_stream_options(ap)
    args = ap.parse_args(argv)
    try:
        patterns = [parse_include(p) for p in args.include]
    except ValueError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    if not check_dependencies(prog):
        return 1

    from .. import open_run
    try:
        run = open_run(args.proposal, args.run, data='all')
    except KeyboardInterrupt:
        print("\nStopped.", file=sys.stderr)
        return 0
    except Exception as e:
        print(f"{prog}: cannot open run {args.run} of proposal {args.proposal}: {e}",
              file=sys.stderr)
        return 1
    if not patterns:
        print("Available sources:", file=sys.stderr)
        for s in sorted(run.all_sources):
            print(f"  {s}", file=sys.stderr)
        print(f"{prog}: choose what to stream with --include 'SRC_GLOB[KEY_GLOB]' "
              "(repeatable)", file=sys.stderr)
        return 1
    try:
        data = run.select(patterns, require_all=not args.allow_partial,
                          require_any=args.allow_partial)
    except Exception as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    return run_stream(prog, data, args.port, args)


if __name__ == '__main__':
    sys.exit(main())
