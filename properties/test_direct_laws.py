"""The direct-chunk read path gives byte for byte what h5py gives.

Random datasets (element types of both byte orders, shapes, chunk shapes
that split rows and inner axes, edge chunks), random filter pipelines (none,
deflate at any level, shuffle, shuffle + deflate, fletcher32, which the
direct path leaves to h5py), chunks left unallocated, and random plans (row
ranges in any order, gaps, repeats) are read with ``read_path='h5py'`` and
``'auto'`` (and ``'direct'`` where it applies): the bytes are identical, also
into an output of another type, and with both deflate decoders. Datasets never
written read as their fill value on both paths.
"""
import itertools
import os
import tempfile

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xfeldata import _direct, compression
from xfeldata._execute import execute
from xfeldata.core.plan import ReadPlan, ReadStep

_DIR = tempfile.mkdtemp(prefix='xfeldata-direct-laws-')
_N = itertools.count()

DTYPES = ['u1', '<u2', '>u2', '<i4', '>i4', '<f4', '>f8', '<u8', '<c8']
PIPELINES = {
    'gzip': dict(compression='gzip'),
    'shuffle+gzip': dict(compression='gzip', shuffle=True),
    'shuffle': dict(shuffle=True),
    'fletcher32+gzip': dict(compression='gzip', fletcher32=True),
    'none': {},
}


@pytest.fixture(autouse=True)
def small_chunks_go_direct(monkeypatch):
    # Tiny test chunks would be left to h5py as not worth threads.
    monkeypatch.setattr(_direct, 'MIN_CHUNK_BYTES', 0)
    monkeypatch.setattr(_direct, 'TASK_BYTES', 64)      # many tasks, in the pool
    monkeypatch.setenv('EXTRA_NUM_THREADS', '2')


@st.composite
def datasets(draw):
    n_inner = draw(st.integers(0, 2))
    inner = tuple(draw(st.integers(1, 6)) for _ in range(n_inner))
    rows = draw(st.integers(1, 30))
    chunks = (draw(st.integers(1, 8)),) + tuple(draw(st.integers(1, d)) for d in inner)
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    pipeline = draw(st.sampled_from(sorted(PIPELINES)))
    level = draw(st.integers(0, 9))
    written = draw(st.sampled_from(['all', 'all', 'all', 'head', 'none']))
    fill = draw(st.sampled_from([None, 7]))
    return rows, inner, chunks, dtype, pipeline, level, written, fill


def _euxfel_skeleton(f):
    """Just enough of the EuXFEL layout for xfeldata to open the file."""
    f['INDEX/trainId'] = np.array([10000], np.uint64)
    f['METADATA/dataSources/dataSourceId'] = np.array([], dtype=h5py.string_dtype())
    f['METADATA/dataSources/root'] = np.array([], dtype=h5py.string_dtype())
    f['METADATA/dataSources/deviceId'] = np.array([], dtype=h5py.string_dtype())


def _write(spec):
    rows, inner, chunks, dtype, pipeline, level, written, fill = spec
    path = os.path.join(_DIR, f'f{next(_N)}.h5')
    rng = np.random.default_rng(len(path))
    data = (rng.normal(0, 1000, (rows,) + inner)).astype(dtype)
    if dtype.kind in 'ui':
        data = rng.integers(0, np.iinfo(dtype).max, (rows,) + inner,
                            dtype=dtype.newbyteorder('='), endpoint=True).astype(dtype)
    opts = dict(PIPELINES[pipeline])
    if 'compression' in opts:
        opts['compression_opts'] = level
    with h5py.File(path, 'w') as f:
        ds = f.create_dataset('d', shape=data.shape, dtype=dtype, chunks=chunks,
                              maxshape=(None,) + inner,
                              fillvalue=fill if dtype.kind != 'c' else None, **opts)
        _euxfel_skeleton(f)
        n = {'all': rows, 'head': rows // 2, 'none': 0}[written]   # the rest: unallocated
        if n:
            ds[:n] = data[:n]
    return path


@st.composite
def plans(draw, rows):
    n_steps = draw(st.integers(1, 6))
    steps, dst = [], 0
    for _ in range(n_steps):
        a = draw(st.integers(0, rows - 1))
        b = draw(st.integers(a + 1, rows))
        steps.append((a, b, dst))
        dst += b - a
    return steps, dst


def _plan(path, steps, n_out, dtype, inner):
    return ReadPlan(dtype, (n_out,) + inner,
                    tuple(ReadStep(path, '/d', a, b, d, d + b - a) for a, b, d in steps))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(spec=datasets(), data=st.data())
def test_direct_path_is_byte_identical_to_h5py(spec, data):
    rows, inner, _, dtype, pipeline, _, written, _ = spec
    path = _write(spec)
    steps, n_out = data.draw(plans(rows))
    plan = _plan(path, steps, n_out, dtype, inner)
    want = execute(plan, read_path='h5py')
    got = execute(plan, read_path='auto')
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    # The direct path takes every dataset it can decode exactly.
    with h5py.File(path, 'r') as f:
        table = _direct.storage_chunks(f['d'].id, path, '/d')
    # Direct unless a needed row's chunk was never written (rows // 2 written);
    # a dataset never written at all is answered with its fill value.
    c0 = spec[2][0]
    n_written = {'all': rows, 'head': rows // 2, 'none': 0}[written]
    allocated = all((r // c0) * c0 < n_written for a, b, _ in steps for r in range(a, b))
    direct_ok = ((pipeline in ('gzip', 'shuffle+gzip', 'shuffle') and allocated)
                 or n_written == 0)
    if n_written == 0:
        assert isinstance(table, _direct.Unwritten)
    else:
        assert (not isinstance(table, str)) == (pipeline in ('gzip', 'shuffle+gzip', 'shuffle'))
    if direct_ok:
        assert execute(plan, read_path='direct').tobytes() == want.tobytes()
        os.environ['XFELDATA_INFLATE'] = 'zlib'
        try:
            assert execute(plan, read_path='direct').tobytes() == want.tobytes()
        finally:
            del os.environ['XFELDATA_INFLATE']
    else:
        with pytest.raises(ValueError, match="read_path='direct'"):
            execute(plan, read_path='direct')
    # Into an output of another type (numpy converts on the direct path).
    other = np.dtype('f8') if dtype.kind != 'c' else np.dtype('c16')
    o1 = execute(plan, np.empty(plan.shape, other), read_path='h5py')
    o2 = execute(plan, np.empty(plan.shape, other), read_path='auto')
    assert o1.tobytes() == o2.tobytes()


def test_damaged_chunk_falls_back_to_h5py_which_reports_it(tmp_path):
    from xfeldata.exceptions import FileStructureError
    path = str(tmp_path / 'damaged.h5')
    with h5py.File(path, 'w') as f:
        f.create_dataset('d', data=np.arange(4000, dtype='<u2').reshape(10, 400),
                         chunks=(2, 400), compression='gzip')
        _euxfel_skeleton(f)
    with h5py.File(path, 'r') as f:
        info = f['d'].id.get_chunk_info(1)
    with open(path, 'r+b') as fh:         # our own test file: garble one chunk
        fh.seek(info.byte_offset + 2)
        fh.write(b'\xff' * 8)
    plan = _plan(path, [(0, 10, 0)], 10, np.dtype('<u2'), (400,))
    with pytest.raises(FileStructureError):
        execute(plan, read_path='auto')
    with pytest.raises(ValueError, match='could not decode'):
        execute(plan, read_path='direct')


def test_skipped_filter_in_a_chunk_mask(tmp_path):
    # A chunk written raw (filter mask bit set) among compressed ones.
    path = str(tmp_path / 'masked.h5')
    data = np.arange(3000, dtype='<u2').reshape(6, 500)
    with h5py.File(path, 'w') as f:
        ds = f.create_dataset('d', data=data, chunks=(2, 500), compression='gzip')
        ds.id.write_direct_chunk((2, 0), data[2:4].tobytes(), filter_mask=1)
        _euxfel_skeleton(f)
    plan = _plan(path, [(0, 6, 0)], 6, np.dtype('<u2'), (500,))
    assert execute(plan, read_path='direct').tobytes() == data.tobytes()
    assert execute(plan, read_path='h5py').tobytes() == data.tobytes()


def test_inflate_decoders_agree():
    import zlib
    raw = np.random.default_rng(1).integers(0, 50, 10000, dtype=np.uint8).tobytes()
    z = zlib.compress(raw, 6)
    assert bytes(compression.inflate(z)) == raw
    os.environ['XFELDATA_INFLATE'] = 'zlib'
    try:
        assert compression.inflate_name() == 'zlib'
        assert bytes(compression.inflate(z)) == raw
    finally:
        del os.environ['XFELDATA_INFLATE']
