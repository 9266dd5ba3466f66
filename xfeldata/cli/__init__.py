"""The ``xfeldata`` command: one entry point, one subcommand per tool.

Each subcommand is a thin wrapper over a module-level ``main(argv)`` function
(the module paths users of EXtra-data know, under ``xfeldata``), so tests and
users can call them in-process. Later tools register here by adding a row to
:data:`SUBCOMMANDS`; modules are imported only when their subcommand runs.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .._version import __version__

#: subcommand -> ("module:function", one-line help)
SUBCOMMANDS = {
    'demo': ('xfeldata.cli.demo:main',
             'write a synthetic run to a temporary folder, open it and load a key'),
    'serve-files': ('xfeldata.cli.serve_files:main',
                    'stream a run folder or file over ZeroMQ, Karabo bridge protocol '
                    '(EXtra-data: karabo-bridge-serve-files)'),
    'serve-run': ('xfeldata.cli.serve_run:main',
                  'stream sources of a run (proposal, run number) over ZeroMQ '
                  '(EXtra-data: karabo-bridge-serve-run)'),
    'ls': ('xfeldata.cli.lsxfel:main',
           'summarise a run folder, a .h5 file or a proposal (EXtra-data: lsxfel)'),
    'validate': ('xfeldata.validation:main',
                 'check files or a run for index problems (EXtra-data: extra-data-validate)'),
    'check-readable': ('xfeldata.cli.check_readable:main',
                       'probe that files can be opened, each with a timeout '
                       '(EXtra-data: extra-data-readable)'),
    'locality': ('xfeldata.locality:main',
                 'report which files of a run are on disk, on tape or unavailable (dCache) '
                 '(EXtra-data: extra-data-locality)'),
    'voview': ('xfeldata.voview:main',
               "write or check a run's virtual overview file"),
    'copy': ('xfeldata.copy:main',
             'copy the structure of EuXFEL files without the (instrument) data'),
    'make-virtual-cxi': ('xfeldata.cli.make_virtual_cxi:main',
                         "write a virtual CXI file of a run's multi-module detector "
                         '(EXtra-data: extra-data-make-virtual-cxi)'),
}


def _load(target):
    mod, _, func = target.partition(':')
    return getattr(importlib.import_module(mod), func)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog='xfeldata',
        description='Tools for European XFEL run data (EuXFEL HDF5 files).')
    ap.add_argument('--version', action='version', version=f'xfeldata {__version__}')
    sub = ap.add_subparsers(dest='command', metavar='COMMAND')
    for name, (_, help_) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return ap


def main(argv=None) -> int:
    """Run ``xfeldata COMMAND [ARGS...]``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser()
    if not argv or argv[0] not in SUBCOMMANDS:
        # argparse handles --help, --version and unknown commands (exit code 2).
        args = ap.parse_args(argv)
        if args.command is None:
            ap.print_help()
            return 2
    name, rest = argv[0], argv[1:]
    func = _load(SUBCOMMANDS[name][0])
    rc = func(rest)
    return int(rc or 0)


if __name__ == '__main__':
    sys.exit(main())
