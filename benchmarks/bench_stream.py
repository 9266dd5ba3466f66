"""Streaming: xfeldata's Karabo bridge server against the raw limit.

    python benchmarks/bench_stream.py [--dir DIR] [--trains 200] [--reps 5] [--sock REP]

Writes a synthetic run unless given one: a camera with one (1024, 1024)
uint16 image per train (2 MiB) and a control device with a few scalar keys,
in two sequence files. Then times, alternately in one process (files in the
page cache on both sides):

xfeldata
    ``stream_collection(run, BridgeServer(...))`` in a thread (bulk reads
    with a prefetch thread, msgpack headers, zero-copy array frames) to a
    ``karabo_bridge.Client`` on loopback that receives and decodes every
    train.
raw
    plain h5py reading the same datasets (``read_direct`` of blocks of 64
    trains per key, the fastest plain way) in a thread, sending each
    train's arrays as frames (``copy=False``) over a raw ZeroMQ socket pair
    of the same type; the client only receives the frames.

Prints trains/s and MB/s of both and the ratio of times (xfeldata / raw).
Timings are reported, never asserted. Needs the ``karabo-bridge`` package.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

import h5py
import numpy as np
import zmq

CAM = 'BENCH_CAM/CAM/A:daqOutput'
CTRL = 'BENCH_CTRL/MOTOR/A'
CLIENT = {'REP': zmq.REQ, 'PUSH': zmq.PULL}


def write_run(directory, n_trains):
    from xfeldata.testing import Aggregator, ControlSource, InstrumentSource, RunSpec
    from xfeldata.testing import write_run as _write
    cam = InstrumentSource(CAM, {'data.image.pixels': (np.uint16, (1024, 1024))})
    ctrl = ControlSource(CTRL, {'pos': np.float64, 'speed': np.float32, 'count': np.int32})
    starts = (n_trains // 2,)
    spec = RunSpec(np.arange(10_000, 10_000 + n_trains),
                   [Aggregator('DA01', [cam], sequence_starts=starts),
                    Aggregator('DA02', [ctrl], sequence_starts=starts)])
    _write(directory, spec)


# -- raw: h5py + pyzmq ----------------------------------------------------------------------------

def raw_sources(run):
    """Per key: (file path, dataset path, first row, row count) per file, from the run."""
    out = []
    for src in sorted(run.all_sources):
        for key in sorted(run[src].keys()):
            kd = run[src, key]
            out.append([(s.path, s.dataset, s.src_start, s.src_stop - s.src_start)
                        for s in kd.plan().steps])
    return out


def raw_server(sock, keys, n_trains, block=64):
    files = {}

    def ds(path, name):
        if path not in files:
            files[path] = h5py.File(path, 'r')
        return files[path][name]

    def blocks(steps):
        for path, name, start, n in steps:
            d = ds(path, name)
            for a in range(0, n, block):
                b = min(a + block, n)
                buf = np.empty((b - a,) + d.shape[1:], d.dtype)
                d.read_direct(buf, np.s_[start + a:start + b])
                yield from buf

    gens = [blocks(steps) for steps in keys]
    try:
        for _ in range(n_trains):
            frames = [next(g) for g in gens]
            if sock.socket_type == zmq.REP:
                # Poll first: with HWM 1, a blocking recv() on REP can miss a
                # request that arrived while busy (seen with libzmq 4.3.5).
                sock.poll()
                sock.recv()
            sock.send_multipart(frames, copy=False)
    finally:
        for f in files.values():
            f.close()


def run_raw(run, sock_type, n_trains):
    ctx = zmq.Context()
    srv = ctx.socket(getattr(zmq, sock_type))
    for s in (srv,):
        s.setsockopt(zmq.SNDHWM, 1)
        s.setsockopt(zmq.RCVHWM, 1)
    port = srv.bind_to_random_port('tcp://127.0.0.1')
    cli = ctx.socket(CLIENT[sock_type])
    cli.setsockopt(zmq.RCVHWM, 1)
    cli.connect(f'tcp://127.0.0.1:{port}')
    keys = raw_sources(run)
    t0 = time.perf_counter()
    th = threading.Thread(target=raw_server, args=(srv, keys, n_trains))
    th.start()
    nbytes = 0
    for _ in range(n_trains):
        if sock_type == 'REP':
            cli.send(b'next')
        nbytes += sum(len(f) for f in cli.recv_multipart(copy=False))
    dt = time.perf_counter() - t0
    th.join()
    srv.close(0)
    cli.close(0)
    ctx.term()
    return dt, nbytes


# -- xfeldata --------------------------------------------------------------------------------------

def run_xfeldata(run, sock_type, n_trains):
    import karabo_bridge
    from xfeldata.export import BridgeServer, stream_collection
    server = BridgeServer('tcp://127.0.0.1:0', sock_type, timeout=30)
    client = karabo_bridge.Client(f'tcp://127.0.0.1:{server.port}',
                                  sock={'REP': 'REQ', 'PUSH': 'PULL'}[sock_type], timeout=30)
    t0 = time.perf_counter()
    th = threading.Thread(target=stream_collection, args=(run, server), kwargs={'quiet': True})
    th.start()
    nbytes = 0
    for _ in range(n_trains):
        data, _ = client.next()
        nbytes += sum(v.nbytes for d in data.values() for v in d.values()
                      if isinstance(v, np.ndarray))
    dt = time.perf_counter() - t0
    th.join()
    server.close(0)
    return dt, nbytes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dir', help='an existing run written by this script (default: write one)')
    ap.add_argument('--trains', type=int, default=200)
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--sock', default='REP', choices=['REP', 'PUSH'])
    args = ap.parse_args(argv)
    os.environ.setdefault('XFELDATA_CACHE', 'off')
    os.environ['XFELDATA_NO_RUN_MAP_WRITE'] = '1'
    written = None
    if args.dir is None:
        written = args.dir = tempfile.mkdtemp(prefix='xfeldata-bench-stream-')
        t0 = time.perf_counter()
        write_run(args.dir, args.trains)
        print(f"wrote {args.trains} trains of 2 MiB in {time.perf_counter() - t0:.1f} s: "
              f"{args.dir}")
    try:
        return measure(args.dir, args.sock, args.reps)
    finally:
        if written:
            shutil.rmtree(written, ignore_errors=True)


def measure(directory, sock_type, reps):
    import xfeldata
    run = xfeldata.RunDirectory(directory)
    n = len(run.train_ids)
    run_xfeldata(run, sock_type, n)          # warm the page cache and the handles
    run_raw(run, sock_type, n)
    tx, tr, bx, br = [], [], 0, 0
    for _ in range(reps):
        dt, bx = run_xfeldata(run, sock_type, n)
        tx.append(dt)
        dt, br = run_raw(run, sock_type, n)
        tr.append(dt)
    mx, mr = statistics.median(tx), statistics.median(tr)
    print(f"{n} trains, {sock_type}; xfeldata array bytes {bx / 1e6:.1f} MB, "
          f"raw frame bytes {br / 1e6:.1f} MB; median of {reps}")
    print(f"{'':<12}{'time':>10}{'trains/s':>12}{'MB/s':>10}")
    for name, t, b in (('xfeldata', mx, bx), ('raw', mr, br)):
        print(f"{name:<12}{t:>9.3f}s{n / t:>12.1f}{b / 1e6 / t:>10.1f}")
    print(f"ratio xfeldata / raw (time): {mx / mr:.2f}  (target <= 1.2)")
    return 0


if __name__ == '__main__':
    sys.exit(main())
