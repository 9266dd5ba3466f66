"""Streaming in the Karabo bridge protocol (API.md 9, FORMAT.md 6): a real client on loopback.

A synthetic run is streamed through every socket type and both protocol
versions to karabo-bridge's ``Client``; every received value is compared
with the values the synthetic writer put into the files (its manifest), and
every metadata field with the train ID. Then a corpus file, the robustness
cases (garbage requests, a client leaving mid-stream, a slow client, no
client at all, a port in use), the deprecated ZMQStreamer and the command
line (in a subprocess, stopped with SIGINT). Servers bind port 0 (a free
port) so tests can run in parallel; every wait has a timeout.
"""
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

import xfeldata
from xfeldata import export
from xfeldata import bridge_wire
from xfeldata.export import BridgeServer, stream_collection
from xfeldata.testing import (Aggregator, ControlSource, InstrumentSource, RunSpec, write_run,
                              xtdf_module)

karabo_bridge = pytest.importorskip('karabo_bridge')

N = 10
FIRST = 5000
TIDS = np.arange(FIRST, FIRST + N, dtype=np.uint64)
CTRL = 'TST_CTRL/MOTOR/A'
CAM = 'TST_CAM/CAM/A:daqOutput'
MULTI = [0, 1, 2, 3, 0, 1, 2, 3, 1, 1]
CORPUS = Path('/work/shared/corpus')


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    d = tmp_path_factory.mktemp('stream_run')
    ctrl = ControlSource(CTRL, {'pos': np.float64, 'vec': (np.float32, (3,)), 'state': str,
                                'count': np.uint64, 'flag': np.bool_})
    cam = InstrumentSource(CAM, {'data.image': (np.uint16, (16, 24)), 'data.f': np.float32,
                                 'names.value': str, 'names.timestamp': np.uint64,
                                 'multi.x': (np.int16, (2,))},
                           groups={'data': 1, 'names': 2, 'multi': MULTI})
    spec = RunSpec(TIDS, [Aggregator('DA01', [ctrl], sequence_starts=(4,)),
                          Aggregator('DA02', [cam], sequence_starts=(6,))])
    manifest = write_run(d, spec)
    return d, manifest


@pytest.fixture(scope='module')
def run(synthetic):
    return xfeldata.RunDirectory(synthetic[0])


class Served:
    """stream_collection in a thread on a fresh loopback port."""

    def __init__(self, data, sock='REP', timeout=10, **kw):
        self.server = BridgeServer('tcp://127.0.0.1:0', sock, timeout=timeout)
        self.result = {}
        self.thread = threading.Thread(target=self._run, args=(data, kw), daemon=True)

    def _run(self, data, kw):
        try:
            self.result['n'] = stream_collection(data, self.server, quiet=True, **kw)
        except BaseException as e:        # checked by the test
            self.result['error'] = e

    @property
    def endpoint(self):
        return f'tcp://127.0.0.1:{self.server.port}'

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.stop()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the streaming thread did not end"
        self.server.close(0)

    def finish(self, timeout=10):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the streaming thread did not end"
        if 'error' in self.result:
            raise self.result['error']
        return self.result['n']


CLIENT_SOCK = {'REP': 'REQ', 'PUSH': 'PULL', 'PUB': 'SUB'}


def receive(client, n=None, timeout_ok=False):
    got = []
    while n is None or len(got) < n:
        try:
            got.append(client.next())
        except TimeoutError:
            if timeout_ok:
                break
            raise
    return got


def _as_str(v):
    return v.decode() if isinstance(v, bytes) else v


def check_against_files(data, meta, manifest, protocol):
    """Every source/key/value of one received train against the writer's truth."""
    tid = meta[CTRL]['timestamp.tid']
    assert sorted(data) == [CAM, CTRL]
    for src in (CTRL, CAM):
        assert meta[src] == {'source': src, 'timestamp.tid': tid}
        # FORMAT.md 6.4 quirk: the body carries the metadata too.
        assert data[src]['metadata'] == meta[src]
    i = int(tid - FIRST)
    want_ctrl = {f'{k}.{p}' for k in ('pos', 'vec', 'state', 'count', 'flag')
                 for p in ('value', 'timestamp')}
    assert set(data[CTRL]) - {'metadata'} == want_ctrl
    # names.* (2 strings per train: an object array) is dropped with its twin.
    want_cam = {'data.image', 'data.f', 'data.trainId', 'names.trainId'}
    if MULTI[i]:
        want_cam |= {'multi.x', 'multi.trainId'}
    assert set(data[CAM]) - {'metadata'} == want_cam
    for src in (CTRL, CAM):
        for key, got in data[src].items():
            if key == 'metadata':
                continue
            want = manifest.expected(src, key, [tid])
            if src == CTRL or len(want) == 1:
                want = want[0]
            if key == 'state.value':
                assert _as_str(got) == want
                continue
            if isinstance(want, np.ndarray):
                assert isinstance(got, np.ndarray) and got.dtype == want.dtype, key
                np.testing.assert_array_equal(got, want)
            else:
                if protocol == '1.0' and not isinstance(want, (np.float64, np.bool_)):
                    # msgpack-numpy keeps numpy scalars (float64 is a Python float)
                    assert got.dtype == want.dtype, key
                assert got == want, key


@pytest.mark.parametrize('protocol', ['2.2', '1.0'])
@pytest.mark.parametrize('sock', ['REP', 'PUSH'])
def test_every_train_reaches_the_client(run, synthetic, sock, protocol):
    manifest = synthetic[1]
    with Served(run, sock, protocol_version=protocol) as s:
        c = karabo_bridge.Client(s.endpoint, sock=CLIENT_SOCK[sock], timeout=10)
        got = receive(c, N)
        assert s.finish() == N
    assert [m[CTRL]['timestamp.tid'] for _, m in got] == TIDS.tolist()
    for data, meta in got:
        check_against_files(data, meta, manifest, protocol)


@pytest.mark.parametrize('protocol', ['2.2', '1.0'])
def test_pub_waits_for_a_subscriber_then_broadcasts(run, synthetic, protocol):
    with Served(run, 'PUB', protocol_version=protocol) as s:
        time.sleep(0.3)
        assert s.thread.is_alive()    # nobody subscribed yet: nothing sent
        c = karabo_bridge.Client(s.endpoint, sock='SUB', timeout=0.5)
        got = receive(c, timeout_ok=True)
        assert s.finish() == N
    tids = [m[CTRL]['timestamp.tid'] for _, m in got]
    # A lagging subscriber loses trains (HWM 1, as the live bridge); the
    # first always arrives, and what arrives is in order and intact.
    assert tids[0] == FIRST and tids == sorted(set(tids)) and set(tids) <= set(TIDS.tolist())
    for data, meta in got:
        check_against_files(data, meta, synthetic[1], protocol)


def test_selection_and_dummy_timestamps(run):
    sel = run.select(CAM, 'data.*').select_trains(np.s_[2:5])
    t0 = time.time()
    with Served(sel, 'REP', dummy_timestamps=True) as s:
        c = karabo_bridge.Client(s.endpoint, timeout=10)
        got = receive(c, 3)
        assert s.finish() == 3
    for k, (data, meta) in enumerate(got):
        m = meta[CAM]
        assert sorted(data) == [CAM]
        assert sorted(data[CAM]) == ['data.f', 'data.image', 'data.trainId', 'metadata']
        assert m['timestamp.tid'] == FIRST + 2 + k
        assert t0 <= m['timestamp'] <= time.time()
        assert len(m['timestamp.frac']) == 18 and m['timestamp.sec'].isdigit()
        assert abs(float(f"{m['timestamp.sec']}.{m['timestamp.frac']}") - m['timestamp']) < 1e-6
        assert data[CAM]['metadata'] == m


def test_trains_without_data_are_skipped(synthetic):
    # Only multi.*: trains where the group has no entries carry no data.
    sel = xfeldata.RunDirectory(synthetic[0]).select(CAM, 'multi.x')
    with Served(sel, 'PUSH') as s:
        c = karabo_bridge.Client(s.endpoint, sock='PULL', timeout=10)
        got = receive(c, sum(1 for n in MULTI if n))
        assert s.finish() == sum(1 for n in MULTI if n)
    assert [m[CAM]['timestamp.tid'] for _, m in got] == \
        [FIRST + i for i, n in enumerate(MULTI) if n]
    assert [d[CAM]['multi.x'].shape for d, _ in got] == [(n, 2) if n > 1 else (2,)
                                                        for n in MULTI if n]


@pytest.mark.skipif(not (CORPUS / 'fxe_control_v1.2').is_dir(), reason='no corpus')
def test_corpus_file_matches_trains():
    path = next((CORPUS / 'fxe_control_v1.2').glob('*.h5'))
    f = xfeldata.H5File(path).select_trains(np.s_[:100])
    truth = list(f.trains())
    with Served(f, 'REP') as s:
        c = karabo_bridge.Client(s.endpoint, timeout=10)
        got = receive(c, len(truth))
        assert s.finish() == len(truth)
    dropped = 0
    assert len(truth) == 100
    for (tid, want), (data, meta) in zip(truth, got):
        assert sorted(data) == sorted(want)
        for src, values in want.items():
            assert meta[src] == {'source': src, 'timestamp.tid': tid}
            obj = {k for k, v in values.items()
                   if isinstance(v, np.ndarray) and v.dtype == object}
            obj |= {k[:-5] + 'timestamp' for k in obj if k.endswith('.value')}
            dropped += len(obj)
            assert set(data[src]) == set(values) - obj
            for k in set(values) - obj - {'metadata'}:
                v, g = values[k], data[src][k]
                if isinstance(v, np.ndarray):
                    assert g.dtype == v.dtype and g.shape == v.shape, (src, k)
                    np.testing.assert_array_equal(g, v)
                else:
                    assert g == v, (src, k)
    # The XGM state strings are one bytes value per train: sent, not dropped.
    assert dropped == 0
    assert any(isinstance(v, bytes) for d, _ in got for sd in d.values() for v in sd.values())


# -- robustness --------------------------------------------------------------------------------

def _req(endpoint):
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, 10000)
    s.connect(endpoint)
    return s


def test_garbage_request_gets_an_error_and_serving_goes_on(run):
    with Served(run, 'REP') as s:
        r = _req(s.endpoint)
        r.send(b'hello')
        assert r.recv() == b'Error: bad request hello'
        r.send_multipart([b'\xff\x00', b'more'])
        assert r.recv_multipart() == [b'Error: bad request \xff\x00 more']
        r.send(b'next')
        data, meta = bridge_wire.decode(r.recv_multipart())
        assert meta[CTRL]['timestamp.tid'] == FIRST     # no train lost to the garbage
        r.close()
        # An oversized request drops that client only.
        big = _req(s.endpoint)
        big.setsockopt(zmq.RCVTIMEO, 300)
        big.send(b'x' * (export.MAX_REQUEST_BYTES + 10))
        with pytest.raises(zmq.Again):
            big.recv()
        big.close()
        c = karabo_bridge.Client(s.endpoint, timeout=10)
        got = receive(c, N - 1)
        assert s.finish() == N
    assert [m[CTRL]['timestamp.tid'] for _, m in got] == TIDS[1:].tolist()


def test_client_leaving_mid_stream(run):
    with Served(run, 'REP') as s:
        r = _req(s.endpoint)
        for _ in range(3):
            r.send(b'next')
            r.recv_multipart()
        r.send(b'next')          # ... and leave without reading the answer
        r.close()
        time.sleep(0.2)
        c = karabo_bridge.Client(s.endpoint, timeout=10)
        got = receive(c, N - 4)
        assert s.finish() == N
    # The train answering the abandoned request is lost; the rest arrive.
    assert [m[CTRL]['timestamp.tid'] for _, m in got] == TIDS[4:].tolist()


def test_pull_client_leaving_then_timeout(run):
    with Served(run, 'PUSH', timeout=0.5) as s:
        ctx = zmq.Context.instance()
        p = ctx.socket(zmq.PULL)
        p.setsockopt(zmq.LINGER, 0)
        p.setsockopt(zmq.RCVHWM, 1)
        p.connect(s.endpoint)
        bridge_wire.decode(p.recv_multipart())
        p.close()
        t0 = time.monotonic()
        # The server never hangs: either the remaining trains fit in ZeroMQ's
        # and the kernel's buffers before the client left (timing-dependent),
        # or nobody takes the next one and the timeout ends the stream.
        try:
            s.finish()
        except TimeoutError as e:
            assert 'no client took a train for 0.5 s' in str(e)
        assert time.monotonic() - t0 < 5


def test_slow_client_gets_every_train(run):
    with Served(run.select(CTRL), 'PUSH') as s:
        c = karabo_bridge.Client(s.endpoint, sock='PULL', timeout=10)
        got = []
        for _ in range(N):
            got.append(c.next())
            time.sleep(0.05)
        assert s.finish() == N
    assert [m[CTRL]['timestamp.tid'] for _, m in got] == TIDS.tolist()


def test_no_client_times_out(run):
    t0 = time.monotonic()
    with Served(run, 'REP', timeout=0.3) as s:
        with pytest.raises(TimeoutError, match='no client asked for a train'):
            s.finish()
    assert time.monotonic() - t0 < 5


def test_stop_ends_a_waiting_stream(run):
    with Served(run, 'REP') as s:
        time.sleep(0.2)
        s.server.stop()
        assert s.finish(5) == 0


def test_reader_error_reaches_the_sender(run, monkeypatch):
    from xfeldata import _iterate

    def broken(*a, **k):
        raise OSError('disk on fire')
    monkeypatch.setattr(_iterate, 'read_batch', broken)
    with Served(run, 'REP') as s:
        with pytest.raises(OSError, match='disk on fire'):
            s.finish()


def test_port_in_use(run):
    with BridgeServer('tcp://127.0.0.1:0') as first:
        with pytest.raises(OSError, match='already in use') as e:
            BridgeServer(f'tcp://127.0.0.1:{first.port}')
        assert e.value.errno == errno.EADDRINUSE
        with pytest.raises(OSError, match='already in use'):
            export.serve_data(run, f'tcp://127.0.0.1:{first.port}', quiet=True)


def test_bad_arguments(run):
    with pytest.raises(ValueError, match='socket type'):
        export.serve_data(run, 0, sock='DEALER', quiet=True)
    with pytest.raises(ValueError, match='protocol version'):
        export.serve_data(run, 0, protocol_version='2.0', quiet=True)
    with pytest.raises(ValueError, match='port must be'):
        export.serve_data(run, 'nowhere', quiet=True)
    assert export.bind_endpoint('4545') == 'tcp://*:4545'
    assert export.find_infiniband_ip() == '*' or export.find_infiniband_ip().count('.') == 3
    assert export.bind_endpoint(1, use_infiniband=True).endswith(':1')


def test_serve_files_on_an_endpoint(synthetic, capsys):
    port = _free_port()
    res = {}
    t = threading.Thread(target=lambda: res.setdefault('n', export.serve_files(
        str(synthetic[0]), f'tcp://127.0.0.1:{port}', CTRL, 'pos.*', sock='PUSH',
        timeout=10)), daemon=True)
    t.start()
    c = karabo_bridge.Client(f'tcp://127.0.0.1:{port}', sock='PULL', timeout=10)
    got = receive(c, N)
    t.join(10)
    assert res['n'] == N
    assert all(sorted(d[CTRL]) == ['metadata', 'pos.timestamp', 'pos.value'] for d, _ in got)
    out, err = capsys.readouterr()
    assert f'on tcp://127.0.0.1:{port}' in out and 'Done. Sent 10 trains' in err


# -- the deprecated ZMQStreamer -----------------------------------------------------------------

@pytest.mark.parametrize('protocol', ['2.2', '1.0'])
def test_zmqstreamer(protocol):
    with pytest.warns(DeprecationWarning, match='ZMQStreamer is deprecated'):
        streamer = export.ZMQStreamer(0, protocol_version=protocol, dummy_timestamps=True)
    arr = np.arange(12, dtype='>i4').reshape(3, 4)[:, ::2]
    with streamer:
        assert streamer.endpoint.endswith(f':{streamer.port}')
        c = karabo_bridge.Client(f'tcp://127.0.0.1:{streamer.port}', timeout=10)
        for i in range(3):
            streamer.feed({'SRC/A': {'x': arr + i, 'n': i}},
                          metadata={'SRC/A': {'source': 'SRC/A', 'timestamp.tid': i}})
        got = receive(c, 3)
    for i, (data, meta) in enumerate(got):
        np.testing.assert_array_equal(data['SRC/A']['x'], arr + i)
        assert data['SRC/A']['n'] == i
        assert meta['SRC/A']['timestamp.tid'] == i and 'timestamp.frac' in meta['SRC/A']


# -- command line -------------------------------------------------------------------------------

def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _cli(*args, env=None):
    return subprocess.Popen([sys.executable, '-m', 'xfeldata.cli', *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def test_cli_serve_files_ctrl_c(synthetic):
    port = _free_port()
    p = _cli('serve-files', str(synthetic[0]), str(port), '--source', CTRL)
    try:
        c = karabo_bridge.Client(f'tcp://127.0.0.1:{port}', timeout=15)
        got = receive(c, 2)
        assert [m[CTRL]['timestamp.tid'] for _, m in got] == TIDS[:2].tolist()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert 'Stopped.' in err and 'Traceback' not in err
    assert f':{port} (REP, protocol 2.2)' in out


def test_cli_serve_files_pull_to_the_end(synthetic):
    port = _free_port()
    p = _cli('serve-files', str(synthetic[0]), str(port), '-z', 'push', '--protocol', '1.0',
             '--dummy-timestamps', '--key', 'pos.*')
    try:
        c = karabo_bridge.Client(f'tcp://127.0.0.1:{port}', sock='PULL', timeout=15)
        got = receive(c, N)
        out, err = p.communicate(timeout=15)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert 'Done. Sent 10 trains' in err
    assert all('timestamp' in m[CTRL] and sorted(d) == [CTRL] for d, m in got)


def test_cli_port_in_use_and_bad_input(synthetic, capsys):
    from xfeldata.cli import main
    with BridgeServer('tcp://*:0') as first:
        assert main(['serve-files', str(synthetic[0]), str(first.port)]) == 1
    assert 'already in use' in capsys.readouterr().err
    assert main(['serve-files', str(synthetic[0] / 'missing.h5'), '0']) == 1
    assert 'cannot open' in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(['serve-files', str(synthetic[0]), 'notaport'])
    assert e.value.code == 2


def test_cli_install_hint(synthetic, capsys, monkeypatch):
    from xfeldata.cli import serve_files, serve_run
    monkeypatch.setitem(sys.modules, 'zmq', None)
    assert serve_files.main([str(synthetic[0]), '0']) == 1
    assert "pip install 'xfeldata[bridge]'" in capsys.readouterr().err
    assert serve_run.main(['1234', '1', '--include', 'X*']) == 1
    assert "pip install 'xfeldata[bridge]'" in capsys.readouterr().err


@pytest.fixture
def proposal(tmp_path, monkeypatch, synthetic):
    prop = tmp_path / 'SPB' / '202401' / 'p001234'
    (prop / 'raw').mkdir(parents=True)
    os.symlink(synthetic[0], prop / 'raw' / 'r0001')
    monkeypatch.setenv('XFELDATA_DATA_ROOT', str(tmp_path))
    return tmp_path


@pytest.mark.filterwarnings('ignore:No data available for this run')
def test_cli_serve_run(proposal, capsys):
    from xfeldata.cli import serve_run
    assert serve_run.main(['1234', '1']) == 1
    err = capsys.readouterr().err
    assert CTRL in err and CAM in err and '--include' in err
    assert serve_run.main(['1234', '1', '--include', 'TST*[pos']) == 2
    assert "missing ']'" in capsys.readouterr().err
    assert serve_run.parse_include('A*[b.*]') == ('A*', 'b.*')

    port = _free_port()
    p = _cli('serve-run', '1234', '1', '--port', str(port), '--include', f'{CAM}[multi.*]',
             '--include', f'{CTRL}[pos.*]', '-z', 'PUSH', '-q',
             env={'XFELDATA_DATA_ROOT': str(proposal)})
    try:
        c = karabo_bridge.Client(f'tcp://127.0.0.1:{port}', sock='PULL', timeout=15)
        n = sum(1 for m in MULTI if m)     # require_all: trains where multi.* has data
        got = receive(c, n)
        out, err = p.communicate(timeout=15)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert out == '' and 'Sent' not in err and 'Traceback' not in err     # -q
    assert [m[CAM]['timestamp.tid'] for _, m in got] == \
        [FIRST + i for i, m in enumerate(MULTI) if m]
    assert sorted(got[0][0][CTRL]) == ['metadata', 'pos.timestamp', 'pos.value']


# -- append_detector_modules ----------------------------------------------------------------------

DET = 'SPB_DET_AGIPD1M-1'
MODS = (0, 2, 5)
MISSING = 10002        # module 2 did not record this train


@pytest.fixture(scope='module')
def detector_run(tmp_path_factory):
    d = tmp_path_factory.mktemp('stream_det')
    tids = np.arange(10000, 10004)
    aggs = [Aggregator(f'AGIPD{m:02d}', [xtdf_module(DET, m, frames=3, frame_shape=(8, 4))],
                       train_ids=tids[tids != MISSING] if m == 2 else tids) for m in MODS]
    aggs.append(Aggregator('DA01', [ControlSource(CTRL, {'pos': np.float64})]))
    return d, write_run(d, RunSpec(tids, aggs))


def test_append_detector_modules(detector_run):
    d, manifest = detector_run
    run = xfeldata.RunDirectory(d)
    with Served(run, 'REP', append_detector_modules=True) as s:
        c = karabo_bridge.Client(s.endpoint, timeout=10)
        got = receive(c, 4)
        assert s.finish() == 4
    append = f'{DET}/DET/APPEND'
    for data, meta in got:
        assert sorted(data) == [append, CTRL]
        tid = meta[append]['timestamp.tid']
        assert meta[append] == {'source': append, 'timestamp.tid': tid}
        img = data[append]['image.data']
        assert img.shape == (3, 2, 16, 8, 4) and img.dtype == np.uint16
        want = np.zeros((3, 2, 16, 8, 4), np.uint16)     # missing modules: 0
        for m in MODS:
            if m == 2 and tid == MISSING:
                continue
            want[:, :, m] = manifest.expected(f'{DET}/DET/{m}CH0:xtdf', 'image.data', [tid])
        np.testing.assert_array_equal(img, want)
        # Other keys come from one module.
        np.testing.assert_array_equal(
            data[append]['image.pulseId'],
            manifest.expected(f'{DET}/DET/0CH0:xtdf', 'image.pulseId', [tid]))


def test_append_detector_modules_without_detector(run):
    with pytest.raises(ValueError, match='no multi-module XTDF detector'):
        export.serve_data(run, 0, append_detector_modules=True, quiet=True)


def test_push_send_after_the_client_left_does_not_hang(monkeypatch):
    """The client may leave between the poll that saw it and the send: a PUSH socket
    without peers must not block the send for good (it raised the timeout before)."""
    from xfeldata.export import BridgeServer
    server = BridgeServer('tcp://127.0.0.1:0', 'PUSH', timeout=0.3)
    real_wait, polls = server._wait, []

    def wait(flag, what):   # the first poll "sees" a client that is gone by the send
        polls.append(what)
        return True if len(polls) == 1 else real_wait(flag, what)
    monkeypatch.setattr(server, '_wait', wait)
    done = {}

    def send():
        try:
            done['sent'] = server.send([b'frame'])
        except TimeoutError as e:
            done['timeout'] = str(e)
    t = threading.Thread(target=send, daemon=True)
    t.start()
    t.join(5)
    server.stop()
    assert not t.is_alive(), "send blocked with no client"   # (its socket left open)
    server.close(0)
    assert 'no client took a train for 0.3 s' in done['timeout'] and len(polls) == 2
