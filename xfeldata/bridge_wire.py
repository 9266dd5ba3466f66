"""Karabo bridge frames: msgpack serialisation of trains (FORMAT.md section 6).

The messages are prepared by the pure :mod:`xfeldata.core.bridge`; this
module turns a train into the frames of one ZeroMQ multipart message and back
(:func:`encode`, :func:`decode`), with msgpack.

Protocol 2.2 (default)
    Per source, in sorted order: a msgpack header ``{'source', 'content':
    'msgpack', 'metadata'}`` and a msgpack body with every value that is
    not an array (numpy scalars as Python numbers); then, for each array,
    a header ``{'source', 'content': 'array', 'path', 'dtype', 'shape'}``
    and the raw C-ordered bytes. The array frames are memoryviews of the
    arrays themselves (a copy only for a non-contiguous array), so a socket
    can send them without copying.
Protocol 1.0
    One frame: ``{source: {key: value, ..., 'metadata': {...}}}`` with
    arrays and numpy scalars in the msgpack-numpy convention.

Decisions where the format is silent (docs/compat.md, "Streaming"):

* numpy scalars msgpack cannot hold as Python values (complex, structured,
  datetime) go out in 2.2 as 0-d arrays;
* a structured dtype's header ``dtype`` is ``str(dtype)`` as for any dtype;
  :func:`decode` reads it back, karabo-bridge's client cannot;
* arrays decoded from 2.2 frames are read-only views of the received bytes.
"""
from __future__ import annotations

import ast

import msgpack
import numpy as np

from .core.bridge import check_protocol

__all__ = ['encode', 'decode', 'frames_nbytes']

#: Largest bin/str the decoder accepts (as karabo-bridge's client).
_MAX_LEN = 0x7fffffff


# -- encoding -----------------------------------------------------------------------------

def _contiguous_bytes(arr: np.ndarray) -> memoryview:
    """A byte memoryview over ``arr``'s data in C order (copied only if needed)."""
    a = np.ascontiguousarray(arr)          # at least 1-d; same bytes for a 0-d array
    return memoryview(a.reshape(-1).view(np.uint8))


def _scalar_fits_msgpack(v: np.generic) -> bool:
    return v.dtype.kind in 'biufSU'


def _default_22(obj):
    # Values nested in lists/dicts of a 2.2 body.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot send a value of type {type(obj).__name__} over the Karabo "
                    "bridge")


def _np_map(obj):
    """The msgpack-numpy form of an array or numpy scalar (protocol 1.0)."""
    dt = obj.dtype
    if dt.names is not None:
        kind, typ = b'V', dt.descr
    else:
        kind, typ = b'', dt.str
    if isinstance(obj, np.ndarray):
        return {b'nd': True, b'type': typ, b'kind': kind, b'shape': list(obj.shape),
                b'data': _contiguous_bytes(obj)}
    return {b'nd': False, b'type': typ, b'kind': kind,
            b'data': memoryview(np.asarray(obj).reshape(1).view(np.uint8))}


def _default_10(obj):
    if isinstance(obj, (np.ndarray, np.generic)):
        if obj.dtype.hasobject:
            raise TypeError("cannot send an object-dtype array over the Karabo bridge")
        return _np_map(obj)
    raise TypeError(f"cannot send a value of type {type(obj).__name__} over the Karabo "
                    "bridge")


def _source_metadata(data, metadata, src):
    if metadata is not None and src in metadata:
        return metadata[src]
    m = data[src].get('metadata') if isinstance(data[src], dict) else None
    return m if m is not None else {}


def encode(data: dict, metadata=None, protocol_version='2.2') -> list:
    """The frames of one Karabo bridge message for a train.

    Parameters
    ----------
    data : dict
        ``{source: {key: value}}``. Values: numpy arrays (any non-object
        dtype, any shape incl. zero-size, contiguous or not), numpy scalars,
        and what msgpack holds (str, bytes, int, float, bool, None, lists,
        dicts).
    metadata : dict, optional
        ``{source: dict}``; a source missing here takes its data dict's
        ``'metadata'`` entry (or ``{}``).
    protocol_version : {'2.2', '1.0'}

    Returns
    -------
    list
        2.2: ``bytes`` for msgpack parts and ``memoryview`` s over the array
        buffers (send them with ``copy=False``); 1.0: one ``bytes`` frame.

    Examples
    --------
    >>> frames = encode({'A': {'x': np.arange(3, dtype='u2'), 'n': np.int32(4)}})
    >>> len(frames), bytes(frames[3])
    (4, b'\\x00\\x00\\x01\\x00\\x02\\x00')
    >>> decode(frames)
    ({'A': {'n': 4, 'x': array([0, 1, 2], dtype=uint16)}}, {'A': {}})
    """
    v = check_protocol(protocol_version)
    if v == '1.0':
        return [_encode_10(data, metadata)]
    return _encode_22(data, metadata)


def _encode_22(data, metadata):
    pack = msgpack.Packer(use_bin_type=True, default=_default_22).pack
    frames = []
    for src in sorted(data):
        values = data[src]
        body, arrays = {}, []
        for k, v in values.items():
            if isinstance(v, np.ndarray):
                arrays.append((k, v))
            elif isinstance(v, np.generic):
                if _scalar_fits_msgpack(v):
                    body[k] = v.item()
                else:
                    arrays.append((k, np.asarray(v)))
            else:
                body[k] = v
        frames.append(pack({'source': src, 'content': 'msgpack',
                            'metadata': _source_metadata(data, metadata, src)}))
        frames.append(pack(body))
        for k, arr in arrays:
            if arr.dtype.hasobject:
                raise TypeError(f"{src} {k}: cannot send an object-dtype array over the "
                                "Karabo bridge (the streamer drops them)")
            frames.append(pack({'source': src, 'content': 'array', 'path': k,
                                'dtype': str(arr.dtype), 'shape': list(arr.shape)}))
            frames.append(_contiguous_bytes(arr))
    return frames


def _encode_10(data, metadata):
    msg = {}
    for src in sorted(data):
        d = dict(data[src])
        d['metadata'] = _source_metadata(data, metadata, src)
        msg[src] = d
    return msgpack.packb(msg, use_bin_type=True, default=_default_10)


def frames_nbytes(frames) -> int:
    """Total bytes of a message's frames."""
    return sum(memoryview(f).nbytes for f in frames)


# -- decoding -------------------------------------------------------------------------------

def _dtype(spec):
    if isinstance(spec, str) and spec[:1] in '[{(':
        # str() of a structured dtype: a Python literal of its descr.
        spec = ast.literal_eval(spec)
    if isinstance(spec, list):
        spec = [tuple(_fix_descr(x) for x in item) for item in spec]
    return np.dtype(spec)


def _fix_descr(x):
    if isinstance(x, bytes):
        return x.decode()
    if isinstance(x, list):
        if x and isinstance(x[0], (list, tuple)):
            return [tuple(_fix_descr(y) for y in item) for item in x]
        return tuple(x)
    return x


def _np_hook(obj):
    if b'nd' not in obj:
        return obj
    dt = _dtype(obj[b'type'])
    buf = obj[b'data']
    if obj[b'nd']:
        return np.frombuffer(buf, dtype=dt).reshape(obj[b'shape'])
    return np.frombuffer(buf, dtype=dt)[0]


def _unpack(buf, **kw):
    return msgpack.unpackb(buf, raw=False, max_bin_len=_MAX_LEN, max_str_len=_MAX_LEN,
                           strict_map_key=False, **kw)


def _buffer(frame):
    # zmq.Frame exposes its bytes as .buffer; bytes/memoryview pass through.
    return getattr(frame, 'buffer', frame)


def decode(frames):
    """``(data, metadata)`` from the frames of one message (either protocol).

    A message of one frame is protocol 1.0, more is 2.2 (as karabo-bridge's
    client decides). Raises ValueError for a malformed message.
    """
    frames = [_buffer(f) for f in frames]
    if len(frames) < 2:
        if not frames:
            raise ValueError("empty Karabo bridge message")
        msg = _unpack(frames[0], object_hook=_np_hook)
        if not isinstance(msg, dict):
            raise ValueError("Karabo bridge 1.0 message is not a map of sources")
        meta = {src: (v.get('metadata', {}) if isinstance(v, dict) else {})
                for src, v in msg.items()}
        return msg, meta
    if len(frames) % 2:
        raise ValueError(f"Karabo bridge 2.2 message has an odd number of frames "
                         f"({len(frames)})")
    data, meta = {}, {}
    for i in range(0, len(frames), 2):
        header = _unpack(frames[i])
        if not isinstance(header, dict) or 'source' not in header:
            raise ValueError(f"frame {i} is not a Karabo bridge header")
        src, content = header['source'], header.get('content')
        if content == 'msgpack':
            body = _unpack(frames[i + 1])
            data[src] = body if isinstance(body, dict) else {'': body}
            meta[src] = header.get('metadata') or {}
        elif content == 'array':
            if src not in data:
                raise ValueError(f"array {header.get('path')!r} of {src!r} comes before "
                                 "its source's msgpack part")
            arr = np.frombuffer(frames[i + 1], dtype=_dtype(header['dtype']))
            data[src][header['path']] = arr.reshape(header['shape'])
        else:
            raise ValueError(f"unknown content {content!r} in a Karabo bridge message")
    return data, meta
