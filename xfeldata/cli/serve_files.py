"""``xfeldata serve-files PATH PORT``: stream a run folder or a file over the Karabo bridge.

EXtra-data's ``karabo-bridge-serve-files``. PORT is a port number (binds
``tcp://*:PORT``; ``0`` picks a free port, printed at start) or a full
ZeroMQ endpoint. Exit codes: 0 when every train was sent or on Ctrl-C
("Stopped."), 1 for an error (port in use, no client within ``--timeout``,
missing dependencies), 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import importlib
import sys

INSTALL_HINT = ("streaming needs pyzmq and msgpack; install them with:\n"
                "    pip install 'xfeldata[bridge]'")


def add_stream_options(ap: argparse.ArgumentParser):
    """The options serve-files and serve-run share."""
    ap.add_argument('--append-detector-modules', action='store_true',
                    help='combine the modules of a multi-module detector into one '
                         '<detector>/DET/APPEND source, as the live bridge sends them')
    ap.add_argument('--dummy-timestamps', action='store_true',
                    help='add timestamp metadata (time of sending) to every source')
    ap.add_argument('--use-infiniband', action='store_true',
                    help='bind to the address of the ib0 interface (if it has one)')
    ap.add_argument('-z', '--socket-type', default='REP', type=str.upper,
                    choices=['PUB', 'PUSH', 'REP'],
                    help='ZeroMQ socket: REP answers "next" requests (default), PUB '
                         'broadcasts, PUSH hands each train to one PULL client')
    ap.add_argument('--protocol', default='2.2', choices=['2.2', '1.0'],
                    help='Karabo bridge protocol version (default 2.2)')
    ap.add_argument('--timeout', type=float, metavar='SECS',
                    help='stop with an error when no client takes a train for SECS '
                         'seconds (default: wait for clients)')
    ap.add_argument('-q', '--quiet', action='store_true',
                    help='print nothing while streaming (no endpoint, rate or summary line)')


def check_dependencies(prog) -> bool:
    """True if the streaming dependencies import; else print the install hint."""
    for mod in ('zmq', 'msgpack'):
        try:
            importlib.import_module(mod)
        except ImportError:
            print(f"{prog}: {INSTALL_HINT}", file=sys.stderr)
            return False
    return True


def run_stream(prog, data, port, args) -> int:
    """Stream ``data`` with the shared options; the exit code."""
    from ..export import serve_data
    try:
        serve_data(data, port, append_detector_modules=args.append_detector_modules,
                   dummy_timestamps=args.dummy_timestamps,
                   use_infiniband=args.use_infiniband, sock=args.socket_type,
                   protocol_version=args.protocol, timeout=args.timeout, quiet=args.quiet)
    except KeyboardInterrupt:
        print("\nStopped.", file=sys.stderr)
        return 0
    except (OSError, TimeoutError, NotImplementedError, ValueError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    return 0


def parse_port(text):
    """A port number or an endpoint string, as serve_data takes it."""
    if text.isdigit():
        return int(text)
    if '://' in text:
        return text
    raise argparse.ArgumentTypeError(
        f"{text!r} is neither a port number nor a ZeroMQ endpoint (like tcp://*:4545)")


def main(argv=None) -> int:
    prog = 'xfeldata serve-files'
    ap = argparse.ArgumentParser(
        prog=prog,
        description='Stream a run folder or an EuXFEL HDF5 file in the Karabo bridge '
                    'protocol (ZeroMQ), one train per message.')
    ap.add_argument('path', help='run folder or .h5 file')
    ap.add_argument('port', type=parse_port,
                    help='TCP port to bind (0 for a free one) or a ZeroMQ endpoint')
    ap.add_argument('--source', default='*', metavar='GLOB',
                    help='stream only sources matching GLOB')
    ap.add_argument('--key', default='*', metavar='GLOB',
                    help='stream only keys matching GLOB')
    add_stream_options(ap)
    args = ap.parse_args(argv)
    if not check_dependencies(prog):
        return 1

    import os
    from .. import H5File, RunDirectory
    try:
        data = RunDirectory(args.path) if os.path.isdir(args.path) else H5File(args.path)
        data = data.select(args.source, args.key)
    except KeyboardInterrupt:
        print("\nStopped.", file=sys.stderr)
        return 0
    except Exception as e:
        print(f"{prog}: cannot open {args.path}: {e}", file=sys.stderr)
        return 1
    return run_stream(prog, data, args.port, args)


if __name__ == '__main__':
    sys.exit(main())
