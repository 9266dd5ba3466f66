"""``xfeldata demo``: write a synthetic run, open it, print info() and load one key.

No EuXFEL data is needed: the run is made by :mod:`xfeldata.testing`.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog='xfeldata demo',
        description='Write a synthetic EuXFEL run to a temporary folder, open it, '
                    'print its summary and load one key.')
    ap.add_argument('--keep', metavar='DIR',
                    help='write the run into DIR and keep it (default: a temporary folder)')
    ap.add_argument('--format-version', default='1.2',
                    choices=['0.5', '1.0', '1.1', '1.2', '1.3'])
    args = ap.parse_args(argv)

    from .. import RunDirectory
    from ..testing import make_demo_run

    def run(directory):
        t0 = time.perf_counter()
        make_demo_run(directory, format_version=args.format_version)
        t1 = time.perf_counter()
        run = RunDirectory(directory)
        t2 = time.perf_counter()
        print(f"Synthetic run written to {directory} in {t1 - t0:.2f} s; "
              f"opened in {(t2 - t1) * 1000:.1f} ms\n")
        run.info()
        src = sorted(s for s in run.instrument_sources if 'XGM' in s) or \
            sorted(run.instrument_sources)
        source = src[0]
        key = sorted(run[source].keys())[0]
        for k in sorted(run[source].keys()):
            if run[source, k].ndim >= 2:
                key = k
                break
        kd = run[source, key]
        print(f"\nRead plan for {source} {key}:")
        print(kd.plan().explain())
        arr = kd.ndarray()
        print(f"\nLoaded {source} {key}: array of shape {arr.shape}, dtype {arr.dtype}, "
              f"{arr.nbytes / 1e6:.2f} MB")
        return 0

    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        return run(args.keep)
    with tempfile.TemporaryDirectory(prefix='xfeldata-demo-') as d:
        return run(d)


if __name__ == '__main__':
    raise SystemExit(main())
