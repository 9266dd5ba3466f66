"""The Karabo bridge messages as pure functions (FORMAT.md section 6).

A train is a dict ``{source: {key: value}}`` plus per-source metadata. This
module prepares it for the wire (protocol check, per-source metadata, dummy
timestamps, object arrays dropped); :mod:`xfeldata.bridge_wire` serialises it
into the frames of one ZeroMQ multipart message and back with msgpack; the
sockets live in :mod:`xfeldata.export`. Nothing here reads a clock: the dummy
timestamps take the current time as an argument.

The frame layout of both protocol versions is described in
:mod:`xfeldata.bridge_wire`.
"""
from __future__ import annotations

import numpy as np

__all__ = ['PROTOCOLS', 'check_protocol', 'train_metadata', 'dummy_timestamp',
           'stream_train']

#: Protocol versions the encoder writes.
PROTOCOLS = ('2.2', '1.0')


def check_protocol(protocol_version) -> str:
    """The protocol version as a string, or ValueError for an unknown one.

    >>> check_protocol(2.2), check_protocol('1.0')
    ('2.2', '1.0')
    """
    v = str(protocol_version)
    if v not in PROTOCOLS:
        raise ValueError(f"Karabo bridge protocol version {protocol_version!r} is not "
                         f"supported; use one of {', '.join(PROTOCOLS)}")
    return v


# -- per-train metadata --------------------------------------------------------------------

def train_metadata(source: str, train_id) -> dict:
    """The file streamer's metadata of one source in one train.

    >>> train_metadata('SA1_XTD2_XGM/DOOCS/MAIN', 10000)
    {'source': 'SA1_XTD2_XGM/DOOCS/MAIN', 'timestamp.tid': 10000}
    """
    return {'source': source, 'timestamp.tid': int(train_id)}


def dummy_timestamp(now: float) -> dict:
    """The ``timestamp`` fields for Unix time ``now`` (FORMAT.md 6.3, 6.4).

    ``timestamp.sec`` and ``timestamp.frac`` split the decimal text of
    ``now``; the fraction is right-padded with zeros to 18 digits
    (attoseconds).

    >>> dummy_timestamp(1709294400.25)
    {'timestamp': 1709294400.25, 'timestamp.sec': '1709294400', 'timestamp.frac': '250000000000000000'}
    """
    now = float(now)
    text = repr(now)
    if 'e' in text or 'E' in text or '.' not in text:
        text = f'{now:.9f}'
    sec, frac = text.split('.', 1)
    return {'timestamp': now, 'timestamp.sec': sec, 'timestamp.frac': frac.ljust(18, '0')[:18]}


def _is_object_array(v) -> bool:
    return isinstance(v, np.ndarray) and v.dtype.hasobject


def stream_train(train: dict, now=None):
    """What the file streamer sends for one train dict of ``trains()``, or None.

    Returns a new dict (``train`` is not changed): per source, object-dtype
    arrays (string arrays) are dropped, together with the matching
    ``.timestamp`` key when the dropped key ends in ``.value``; the source's
    ``metadata`` entry is a new dict, with the dummy timestamp fields when
    ``now`` (Unix time) is given. It stays in the data dict, so protocol 2.2
    also carries it in the body, as EXtra-data's streamer does. None when no
    source has any data key left (the train is skipped).

    >>> t = {'A': {'metadata': {'source': 'A', 'timestamp.tid': 5},
    ...            'x.value': np.array(['a'], dtype=object), 'x.timestamp': 3, 'y': 1}}
    >>> stream_train(t)
    {'A': {'metadata': {'source': 'A', 'timestamp.tid': 5}, 'y': 1}}
    >>> stream_train({'A': {'metadata': {'source': 'A', 'timestamp.tid': 5}}}) is None
    True
    """
    stamp = None if now is None else dummy_timestamp(now)
    out, any_data = {}, False
    for src, values in train.items():
        drop = set()
        for k, v in values.items():
            if _is_object_array(v):
                drop.add(k)
                if k.endswith('.value'):
                    drop.add(k[:-len('value')] + 'timestamp')
        d = {k: v for k, v in values.items() if k not in drop}
        meta = dict(d.get('metadata') or {'source': src})
        if stamp is not None:
            meta.update(stamp)
        d['metadata'] = meta
        any_data = any_data or any(k != 'metadata' for k in d)
        out[src] = d
    return out if any_data else None
