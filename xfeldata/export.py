"""Stream data over ZeroMQ in the Karabo bridge protocol (API.md 9, FORMAT.md 6).

The messages are prepared by the pure :mod:`xfeldata.core.bridge` and framed by
:mod:`xfeldata.bridge_wire`; this module holds
the sockets and the reading:

* :class:`BridgeServer` binds one ZeroMQ socket (REP answering ``next``
  requests, PUB or PUSH) and sends messages given as frames, zero-copy.
* :func:`serve_data` streams a DataCollection: a reader thread reads the
  trains in batches with the bulk path of ``trains()`` (one read per key and
  file block, :mod:`xfeldata._iterate`) and keeps the next batch ready while
  the current one is sent.
* :func:`serve_files` opens a run folder or a file first;
  :class:`ZMQStreamer` is the deprecated queue-fed server thread.

Waiting never blocks for good: sockets are polled in short slices, so Ctrl-C
and :meth:`BridgeServer.stop` work at any time, and a ``timeout`` ends a
stream no client takes trains from with :class:`TimeoutError`.
"""
from __future__ import annotations

import errno
import queue
import socket
import sys
import threading
import time
import warnings

import zmq

from . import bridge_wire as _wire
from .core import bridge as _bridge

__all__ = ['ZMQStreamer', 'serve_files', 'serve_data']

#: Poll slice (seconds): how quickly a wait notices stop() and Ctrl-C.
POLL_SLICE = 0.1
#: Largest request a REP server accepts; a bigger one drops the client.
MAX_REQUEST_BYTES = 1 << 16
#: Seconds to keep flushing queued messages when closing (EXtra-data: forever).
CLOSE_LINGER = 10.0
#: Train batches for streaming: smaller than trains()'s so the first train
#: goes out sooner; still one read per key and file block.
STREAM_BATCH_BYTES = 1 << 25
STREAM_BATCH_TRAINS = 256

_SOCKET_TYPES = {'REP': zmq.REP, 'PUB': zmq.XPUB, 'PUSH': zmq.PUSH}


def find_infiniband_ip() -> str:
    """The first IPv4 address of the ``ib0`` interface, or ``'*'`` if none."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        for addr in psutil.net_if_addrs().get('ib0', ()):
            if addr.family == socket.AF_INET:
                return addr.address
        return '*'
    try:   # Linux without psutil: ask the kernel directly (SIOCGIFADDR)
        import fcntl
        import struct
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            res = fcntl.ioctl(s.fileno(), 0x8915, struct.pack('256s', b'ib0'))
        return socket.inet_ntoa(res[20:24])
    except (ImportError, OSError):
        return '*'


def bind_endpoint(port, use_infiniband=False) -> str:
    """The endpoint to bind: ``tcp://{ib0 address or *}:port`` or ``port`` itself.

    >>> bind_endpoint(4545), bind_endpoint('4545'), bind_endpoint('ipc:///tmp/s')
    ('tcp://*:4545', 'tcp://*:4545', 'ipc:///tmp/s')
    """
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        host = find_infiniband_ip() if use_infiniband else '*'
        return f'tcp://{host}:{int(port)}'
    if isinstance(port, str) and '://' in port:
        return port
    raise ValueError(f"port must be a port number or a ZeroMQ endpoint such as "
                     f"'tcp://*:4545', not {port!r}")


def _socket_type(sock) -> str:
    name = str(sock).upper()
    if name not in _SOCKET_TYPES:
        raise ValueError(f"socket type must be one of REP, PUB, PUSH, not {sock!r}")
    return name


class BridgeServer:
    """One bound Karabo bridge server socket.

    Parameters
    ----------
    endpoint : str
        Where to bind (see :func:`bind_endpoint`); ``tcp://*:0`` picks a
        free port (see :attr:`port`).
    sock : {'REP', 'PUB', 'PUSH'}
        REP answers each ``next`` request with one train (anything else gets
        ``Error: bad request ...`` and the train waits for the next request);
        PUB broadcasts (it waits for its first subscriber before the first
        train, then drops trains for subscribers that lag, as the live bridge
        does); PUSH hands each train to one connected PULL client.
    timeout : float, optional
        Seconds :meth:`send` may wait for a client before raising
        :class:`TimeoutError` (default: wait until :meth:`stop`).

    Raises
    ------
    OSError
        The address is in use (``errno.EADDRINUSE``) or cannot be bound.
    """

    def __init__(self, endpoint, sock='REP', timeout=None):
        self.sock_type = _socket_type(sock)
        self.timeout = timeout
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        s = self._ctx.socket(_SOCKET_TYPES[self.sock_type])
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 1)
        s.setsockopt(zmq.RCVHWM, 1)
        if self.sock_type == 'REP':
            s.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        self._sock = s
        self._subscribed = False
        try:
            s.bind(endpoint)
        except zmq.ZMQError as e:
            s.close(0)
            self._ctx.term()
            if e.errno == errno.EADDRINUSE:
                raise OSError(errno.EADDRINUSE,
                              f"cannot stream on {endpoint}: the address is already in use "
                              "(another streamer? choose another port, or 0 for a free one)"
                              ) from None
            raise OSError(e.errno, f"cannot bind the Karabo bridge socket to {endpoint}: {e}"
                          ) from None
        self.bound_endpoint = s.getsockopt_string(zmq.LAST_ENDPOINT)

    # -- where ------------------------------------------------------------------------
    @property
    def port(self):
        """The bound TCP port (None for other transports)."""
        if not self.bound_endpoint.startswith('tcp://'):
            return None
        return int(self.bound_endpoint.rsplit(':', 1)[1])

    @property
    def endpoint(self) -> str:
        """An endpoint clients can connect to (host name for a wildcard bind)."""
        ep = self.bound_endpoint
        if ep.startswith('tcp://0.0.0.0:') or ep.startswith('tcp://[::]:'):
            return f'tcp://{socket.gethostname()}:{self.port}'
        return ep

    # -- sending ----------------------------------------------------------------------
    def stop(self):
        """Make any wait in :meth:`send` return False (thread-safe)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _wait(self, flag, what):
        """Poll until the socket is ready for ``flag``; False if stopped.

        Every recv/send follows a successful poll. Besides making waits
        interruptible, this matters for REP with HWM 1: a blocking ``recv()``
        there was seen to miss a request that arrived while the thread was
        busy (libzmq 4.3.5; see benchmarks/bench_stream.py).
        """
        waited = 0.0
        while not self._stop.is_set():
            if self._sock.poll(int(POLL_SLICE * 1000), flag):
                return True
            waited += POLL_SLICE
            if self.timeout is not None and waited >= self.timeout:
                raise TimeoutError(f"no client {what} for {self.timeout:g} s "
                                   f"({self.sock_type} socket on {self.endpoint})")
        return False

    def _wait_subscriber(self):
        while not self._subscribed:
            if not self._wait(zmq.POLLIN, 'subscribed'):
                return False
            self._drain_subscriptions()
        return True

    def _drain_subscriptions(self):
        while True:
            try:
                msg = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if msg[:1] == b'\x01':
                self._subscribed = True

    def send(self, frames) -> bool:
        """Send one message (list of frames), zero-copy for large frames.

        REP: waits for a ``next`` request first. Returns False if
        :meth:`stop` was called before the message went out.

        Raises
        ------
        TimeoutError
            No client took the message within ``timeout`` seconds.
        """
        s = self._sock
        if self.sock_type == 'REP':
            while True:
                if not self._wait(zmq.POLLIN, 'asked for a train'):
                    return False
                request = s.recv_multipart()
                if request == [b'next']:
                    break
                shown = b' '.join(request)[:100]
                s.send(b'Error: bad request ' + shown)
        elif self.sock_type == 'PUB':
            if not self._wait_subscriber():
                return False
            self._drain_subscriptions()
        elif not self._wait(zmq.POLLOUT, 'took a train'):
            return False
        # copy=False: frames above zmq.COPY_THRESHOLD go out from the array
        # buffers themselves; smaller ones are copied (cheaper for them).
        # NOBLOCK: a PUSH client that leaves between the poll and the send
        # leaves no peer, and a blocking send would wait for one for good,
        # deaf to stop() and the timeout. A message's parts go out together
        # once its first part is taken.
        while True:
            try:
                s.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                return True
            except zmq.Again:
                if not self._wait(zmq.POLLOUT, 'took a train'):
                    return False

    def close(self, linger=CLOSE_LINGER):
        """Close the socket, flushing queued messages for up to ``linger`` s."""
        if self._sock.closed:
            return
        self._sock.close(int(linger * 1000) if linger is not None else -1)
        self._ctx.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close(0 if exc[0] is not None else CLOSE_LINGER)


# -- reading ahead ------------------------------------------------------------------------------

class _Prefetcher(threading.Thread):
    """Read batches of trains in a background thread, one batch ahead.

    Each item of the queue is a list of ``(train ID, train dict)`` made by
    the same functions as ``DataCollection.trains()``, or an exception.
    """

    def __init__(self, data, require_all=False, max_bytes=STREAM_BATCH_BYTES,
                 max_trains=STREAM_BATCH_TRAINS, ahead=1):
        super().__init__(name='xfeldata-stream-reader', daemon=True)
        from . import _iterate
        self._it = _iterate
        self._layout = _iterate.layout_of_collection(data)
        self._tids, self._tables, self._bounds = _iterate.plan_iteration(
            self._layout, data._selection.train_ids, require_all, max_bytes, max_trains)
        self.queue = queue.Queue(maxsize=max(1, ahead))
        self.cancel = threading.Event()

    def _put(self, item):
        while not self.cancel.is_set():
            try:
                self.queue.put(item, timeout=POLL_SLICE)
                return True
            except queue.Full:
                pass
        return False

    def run(self):
        it = self._it
        try:
            for a, b in self._bounds:
                if self.cancel.is_set():
                    return
                columns = it.read_batch(self._layout, self._tables, a, b)
                batch = list(it._train_dicts(self._layout, self._tids[a:b], columns,
                                             False, False))
                if not self._put(batch):
                    return
        except BaseException as e:     # handed to the sending thread
            self._put(e)
            return
        self._put(None)

    def __iter__(self):
        """Yield the batches (in the consuming thread), re-raising reader errors."""
        while True:
            item = self.queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self):
        self.cancel.set()


# -- progress -----------------------------------------------------------------------------------

class _Rate:
    """A rate line on stderr (only when it is a terminal), and a summary."""

    def __init__(self, quiet=False, stream=None):
        self.stream = sys.stderr if stream is None else stream
        self.quiet = quiet
        self.live = not quiet and getattr(self.stream, 'isatty', lambda: False)()
        self.t0 = time.monotonic()
        self.shown = self.t0
        self.trains = 0
        self.nbytes = 0

    def sent(self, nbytes):
        self.trains += 1
        self.nbytes += nbytes
        now = time.monotonic()
        if self.live and now - self.shown >= 0.5:
            self.shown = now
            self.stream.write('\r' + self.line(now) + '  ')
            self.stream.flush()

    def line(self, now=None):
        dt = max((now or time.monotonic()) - self.t0, 1e-9)
        return (f"Sent {self.trains} trains, {self.nbytes / 1e6:.1f} MB in {dt:.1f} s: "
                f"{self.trains / dt:.1f} trains/s, {self.nbytes / 1e6 / dt:.1f} MB/s")

    def done(self, what='Done'):
        if self.live:
            self.stream.write('\r')
        if not self.quiet:
            print(f"{what}. {self.line()}", file=self.stream, flush=True)


# -- streaming a collection -----------------------------------------------------------------------

#: Keys of the module sources that are stacked into the APPEND source.
APPEND_KEYS = ('image.data', 'image.gain', 'image.mask')


def _find_xtdf_detector(data):
    """The first XTDF detector class (AGIPD, DSSC, LPD) that constructs on ``data``."""
    try:
        from . import components
    except ImportError as e:      # pragma: no cover - part of the package
        raise NotImplementedError(
            "append_detector_modules needs xfeldata.components, which failed to import: "
            f"{e}") from e
    classes = [getattr(components, n, None)
               for n in ('AGIPD1M', 'AGIPD500K', 'DSSC1M', 'LPD1M', 'LPDSolo')]
    problems = []
    for cls in classes:
        if cls is None or not issubclass(cls, components.XtdfDetectorBase):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')     # e.g. "raw data used"
                return cls(data)
        except Exception as e:     # this class does not fit the data: try the next
            problems.append(f"{cls.__name__}: {e}")
    raise ValueError("append_detector_modules: no multi-module XTDF detector (AGIPD, DSSC, "
                     "LPD) found in the data" + (f" ({'; '.join(problems)})" if problems
                                                 else ""))


def module_appender(data):
    """A function replacing a train's detector modules by one ``<det>/DET/APPEND`` source.

    The detector is the first XTDF class that constructs on ``data``.
    ``image.data``, ``image.gain`` and ``image.mask`` (those present) are
    stacked with :func:`xfeldata.stacking.stack_detector_data` (module axis
    at -3, missing modules filled with NaN or 0); the other keys come from
    the first module present in the train. A key whose module arrays do not
    stack (different shapes) is left out of that train with a warning.
    """
    det = _find_xtdf_detector(data)
    from .stacking import stack_detector_data
    src_mod = dict(det.source_to_modno)
    n_modules = det.n_modules
    name = f'{det.detector_name}/DET/APPEND'
    warned = set()

    def merge(train):
        present = [s for s in src_mod if s in train]
        if not present:
            return train
        out = {s: v for s, v in train.items() if s not in src_mod}
        first = train[present[0]]
        merged = {k: v for k, v in first.items() if k not in APPEND_KEYS and k != 'metadata'}
        meta = dict(first.get('metadata', {}))
        meta['source'] = name
        merged['metadata'] = meta
        for key in APPEND_KEYS:
            mods = {f'/DET/{src_mod[s]}CH': train[s] for s in present if key in train[s]}
            if not mods:
                continue
            try:
                merged[key] = stack_detector_data(mods, key, modules=n_modules)
            except ValueError as e:
                if 'No data' in str(e) or 'No source' in str(e):
                    continue              # no module has entries for this key
                if key not in warned:
                    warned.add(key)
                    warnings.warn(f"{name} {key}: modules not stacked in train "
                                  f"{meta.get('timestamp.tid')} ({e}); warned once, "
                                  "such trains leave the key out", stacklevel=2)
        out[name] = merged
        return out
    return merge


def stream_collection(data, server: BridgeServer, *, protocol_version='2.2',
                      dummy_timestamps=False, append_detector_modules=False,
                      require_all=False, quiet=False, progress_stream=None) -> int:
    """Send every train of ``data`` that has data through ``server``.

    Returns the number of trains sent. Stops early (returning the count so
    far) when ``server.stop()`` is called; re-raises errors of the reading
    thread and :class:`TimeoutError` from the server.
    """
    version = _bridge.check_protocol(protocol_version)
    if callable(append_detector_modules):
        merge = append_detector_modules        # a module_appender made beforehand
    else:
        merge = module_appender(data) if append_detector_modules else None
    rate = _Rate(quiet, progress_stream)
    reader = _Prefetcher(data, require_all=require_all)
    reader.start()
    finished = False
    try:
        for batch in reader:
            for _tid, train in batch:
                if merge is not None:
                    train = merge(train)
                train = _bridge.stream_train(train, time.time() if dummy_timestamps else None)
                if train is None:
                    continue
                frames = _wire.encode(train, protocol_version=version)
                if not server.send(frames):
                    rate.done('Stopped')
                    return rate.trains
                rate.sent(_wire.frames_nbytes(frames))
        finished = True
    finally:
        reader.close()
        if finished:
            rate.done('Done')
        elif rate.live:
            rate.stream.write('\n')
    return rate.trains


def serve_data(data, port, append_detector_modules=False, dummy_timestamps=False,
               use_infiniband=False, sock='REP', *, protocol_version='2.2', timeout=None,
               quiet=False, require_all=False):
    """Stream the trains of a DataCollection in the Karabo bridge protocol.

    Parameters
    ----------
    data : DataCollection
    port : int, str
        A port number (binds ``tcp://*:port``, ``0`` for a free port) or a
        full ZeroMQ endpoint.
    append_detector_modules : bool
        Replace the modules of the first multi-module XTDF detector with one
        ``<detector>/DET/APPEND`` source of stacked module data.
    dummy_timestamps : bool
        Add ``timestamp``, ``timestamp.sec`` and ``timestamp.frac`` (time of
        sending) to each source's metadata.
    use_infiniband : bool
        Bind to the first IPv4 address of ``ib0`` (if any) instead of ``*``.
    sock : {'REP', 'PUB', 'PUSH'}
    protocol_version : {'2.2', '1.0'}
    timeout : float, optional
        Give up with :class:`TimeoutError` when no client takes a train for
        this many seconds (default: wait for clients as long as it takes).
    quiet : bool
        No endpoint line, rate line or summary.
    require_all : bool
        Passed to the train iteration (skip trains where a selected source
        has no data).

    Prints the endpoint clients connect to (stdout), a rate line while
    streaming (stderr, when a terminal) and a summary. Object-dtype (string)
    arrays are not sent.
    """
    endpoint = bind_endpoint(port, use_infiniband)
    _bridge.check_protocol(protocol_version)
    # Find the detector before binding: a clear error, no socket left open.
    merge = module_appender(data) if append_detector_modules else False
    server = BridgeServer(endpoint, sock, timeout=timeout)
    ok = False
    try:
        if not quiet:
            print(f"Streaming from {len(data.train_ids)} trains on {server.endpoint} "
                  f"({server.sock_type}, protocol {protocol_version})", flush=True)
        n = stream_collection(data, server, protocol_version=protocol_version,
                              dummy_timestamps=dummy_timestamps,
                              append_detector_modules=merge,
                              require_all=require_all, quiet=quiet)
        ok = True
        return n
    finally:
        server.close(CLOSE_LINGER if ok else 0)


def serve_files(path, port, source_glob='*', key_glob='*', **kwargs):
    """Stream a run folder (``RunDirectory``) or a file (``H5File``).

    Selects ``source_glob``/``key_glob`` first; other arguments as
    :func:`serve_data`.
    """
    import os
    from .reader import H5File, RunDirectory
    data = RunDirectory(path) if os.path.isdir(path) else H5File(path)
    data = data.select(source_glob, key_glob)
    return serve_data(data, port, **kwargs)


# -- the deprecated queue-fed server thread ----------------------------------------------------

class ZMQStreamer:
    """A Karabo bridge server in a thread, fed train by train (deprecated).

    ``ZMQStreamer(port, sock='REP', maxlen=10, protocol_version='2.2',
    dummy_timestamps=False)`` binds ``tcp://*:<port>`` at once; ``start()``
    starts the sending thread, ``feed(data, metadata=None, block=True,
    timeout=None)`` queues one train (blocking while ``maxlen`` are
    pending; ``queue.Full`` when it cannot), ``stop()`` ends the thread and
    closes the socket. A context manager starts and stops it. Use
    :func:`serve_data` to stream a DataCollection.
    """

    def __init__(self, port, sock='REP', maxlen=10, protocol_version='2.2',
                 dummy_timestamps=False):
        warnings.warn("ZMQStreamer is deprecated: use xfeldata.export.serve_data to stream "
                      "a DataCollection", DeprecationWarning, stacklevel=2)
        self.protocol_version = _bridge.check_protocol(protocol_version)
        self.dummy_timestamps = dummy_timestamps
        self._server = BridgeServer(bind_endpoint(port), sock)
        self._queue = queue.Queue(maxsize=max(1, int(maxlen)))
        self._thread = None
        self.error = None

    @property
    def endpoint(self) -> str:
        return self._server.endpoint

    @property
    def port(self):
        return self._server.port

    def start(self):
        if self._thread is not None:
            raise RuntimeError("this ZMQStreamer was already started")
        self._thread = threading.Thread(target=self._run, name='xfeldata-zmqstreamer',
                                        daemon=True)
        self._thread.start()

    def feed(self, data, metadata=None, block=True, timeout=None):
        """Queue one train: ``data`` ``{source: {key: value}}``, optional metadata."""
        if self._server.stopped:
            raise RuntimeError("this ZMQStreamer is stopped")
        self._queue.put((data, metadata), block, timeout)

    def _next_item(self):
        while not self._server.stopped:
            try:
                return self._queue.get(timeout=POLL_SLICE)
            except queue.Empty:
                pass
        return None

    def _run(self):
        try:
            while True:
                item = self._next_item()
                if item is None:
                    return
                data, metadata = item
                if metadata is None:
                    metadata = {src: dict(v.get('metadata', {})) for src, v in data.items()}
                if self.dummy_timestamps:
                    stamp = _bridge.dummy_timestamp(time.time())
                    metadata = {src: {**metadata.get(src, {}), **stamp} for src in data}
                frames = _wire.encode(data, metadata, self.protocol_version)
                if not self._server.send(frames):
                    return
        except Exception as e:     # kept for stop() to report
            self.error = e

    def stop(self):
        self._server.stop()
        if self._thread is not None:
            self._thread.join()
        self._server.close(0)
        if self.error is not None:
            raise RuntimeError(f"the ZMQStreamer thread failed: {self.error}") from self.error

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
