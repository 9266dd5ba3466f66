"""The direct-chunk read path decodes hdf5plugin's LZ4 and bitshuffle filters exactly.

Random datasets (element types of both byte orders, shapes, chunk shapes
that split rows and inner axes, edge chunks and chunks whose element count is
not a multiple of 8), random pipelines (LZ4 with any block size, byte shuffle
+ LZ4, bitshuffle with any block size without and with LZ4, and fletcher32 +
LZ4, which the direct path leaves to h5py), chunks left unallocated, and
random plans are read with ``read_path='h5py'`` (hdf5plugin's decoders),
``'auto'`` and, where it applies, ``'direct'``: the bytes are identical.
Skipped when hdf5plugin or lz4 is not installed (the ``compress`` extra).
"""
import itertools
import os
import tempfile

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

hdf5plugin = pytest.importorskip('hdf5plugin')
pytest.importorskip('lz4.block')

from test_direct_laws import _plan, plans  # the same random plans as the codec laws

from xfeldata import _direct
from xfeldata._execute import execute

_DIR = tempfile.mkdtemp(prefix='xfeldata-plugin-laws-')
_N = itertools.count()

DTYPES = ['u1', '<u2', '>u2', '<i4', '>i4', '<f4', '>f8', '<u8', '<c8', '>c16']
PIPELINES = ('lz4', 'shuffle+lz4', 'bitshuffle', 'bitshuffle+lz4', 'fletcher32+lz4')
DIRECT = ('lz4', 'shuffle+lz4', 'bitshuffle', 'bitshuffle+lz4')


@pytest.fixture(autouse=True)
def small_chunks_go_direct(monkeypatch):
    monkeypatch.setattr(_direct, 'MIN_CHUNK_BYTES', 0)
    monkeypatch.setattr(_direct, 'TASK_BYTES', 64)      # many tasks, in the pool
    monkeypatch.setenv('EXTRA_NUM_THREADS', '2')


def _filter_options(pipeline, block):
    if pipeline == 'lz4':
        return dict(hdf5plugin.LZ4(nbytes=block))
    if pipeline == 'shuffle+lz4':
        return dict(hdf5plugin.LZ4(nbytes=block), shuffle=True)
    if pipeline == 'fletcher32+lz4':
        return dict(hdf5plugin.LZ4(nbytes=block), fletcher32=True)
    cname = 'lz4' if pipeline == 'bitshuffle+lz4' else 'none'
    return dict(hdf5plugin.Bitshuffle(nelems=block // 8 * 8, cname=cname))


@st.composite
def datasets(draw):
    n_inner = draw(st.integers(0, 2))
    inner = tuple(draw(st.integers(1, 7)) for _ in range(n_inner))
    rows = draw(st.integers(1, 30))
    chunks = (draw(st.integers(1, 9)),) + tuple(draw(st.integers(1, d)) for d in inner)
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    pipeline = draw(st.sampled_from(PIPELINES))
    # LZ4 block bytes / bitshuffle block elements (0: the filter's default).
    block = draw(st.sampled_from([0, 0, 1, 8, 16, 24, 100, 1000]))
    spread = draw(st.sampled_from([2, 16, 256]))        # how well the data compress
    written = draw(st.sampled_from(['all', 'all', 'all', 'head', 'none']))
    return rows, inner, chunks, dtype, pipeline, block, spread, written


def _euxfel_skeleton(f):
    """Just enough of the EuXFEL layout for xfeldata to open the file."""
    f['INDEX/trainId'] = np.array([10000], np.uint64)
    for k in ('dataSourceId', 'root', 'deviceId'):
        f[f'METADATA/dataSources/{k}'] = np.array([], dtype=h5py.string_dtype())


def _write(spec):
    rows, inner, chunks, dtype, pipeline, block, spread, written = spec
    path = os.path.join(_DIR, f'f{next(_N)}.h5')
    rng = np.random.default_rng(len(path) + block)
    # Values from a palette of ``spread`` random ones: every bit varies, yet
    # few distinct values compress well. Floats finite, so conversions agree.
    if dtype.kind in 'ui':
        palette = np.frombuffer(rng.bytes(spread * dtype.itemsize), dtype)
    else:
        palette = rng.normal(0, 1e3, spread).astype(dtype)
    data = palette[rng.integers(0, spread, (rows,) + inner)]
    with h5py.File(path, 'w') as f:
        ds = f.create_dataset('d', shape=data.shape, dtype=dtype, chunks=chunks,
                              maxshape=(None,) + inner, **_filter_options(pipeline, block))
        _euxfel_skeleton(f)
        n = {'all': rows, 'head': rows // 2, 'none': 0}[written]   # the rest: unallocated
        if n:
            ds[:n] = data[:n]
    return path


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(spec=datasets(), data=st.data())
def test_plugin_pipelines_read_byte_identical(spec, data):
    rows, inner, chunks, dtype, pipeline, _, _, written = spec
    path = _write(spec)
    steps, n_out = data.draw(plans(rows))
    plan = _plan(path, steps, n_out, dtype, inner)
    want = execute(plan, read_path='h5py')
    got = execute(plan, read_path='auto')
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    n_written = {'all': rows, 'head': rows // 2, 'none': 0}[written]
    c0 = chunks[0]
    allocated = all((r // c0) * c0 < n_written for a, b, _ in steps for r in range(a, b))
    with h5py.File(path, 'r') as f:
        table = _direct.storage_chunks(f['d'].id, path, '/d')
    if n_written == 0:
        assert isinstance(table, _direct.Unwritten)
    else:
        assert (not isinstance(table, str)) == (pipeline in DIRECT), table
    if (pipeline in DIRECT and allocated) or n_written == 0:
        assert execute(plan, read_path='direct').tobytes() == want.tobytes()
    else:
        with pytest.raises(ValueError, match="read_path='direct'"):
            execute(plan, read_path='direct')
    other = np.dtype('f8') if dtype.kind != 'c' else np.dtype('c16')
    o1 = execute(plan, np.empty(plan.shape, other), read_path='h5py')
    o2 = execute(plan, np.empty(plan.shape, other), read_path='direct' if (
        pipeline in DIRECT and allocated) else 'auto')
    assert o1.tobytes() == o2.tobytes()


@settings(max_examples=40, deadline=None)
@given(elem=st.sampled_from([1, 2, 3, 4, 5, 8, 12, 16]), n=st.integers(1, 3000),
       block=st.sampled_from([0, 8, 16, 64, 104, 2048]), lz4=st.booleans(),
       spread=st.sampled_from([2, 256]))
def test_bitshuffle_stream_decoder_matches_the_filter(elem, n, block, lz4, spread):
    # The stream decoder alone, on every element size (also ones no numpy
    # type has), against what hdf5plugin's filter wrote.
    rng = np.random.default_rng(n * 31 + elem)
    dtype = np.dtype(f'u{elem}') if elem in (1, 2, 4, 8) else np.dtype((np.void, elem))
    arr = np.frombuffer(rng.integers(0, spread, n * elem, dtype=np.uint8).tobytes(), dtype)
    path = os.path.join(_DIR, f'bs{next(_N)}.h5')
    with h5py.File(path, 'w') as f:
        f.create_dataset('d', data=arr, chunks=(n,), **hdf5plugin.Bitshuffle(
            nelems=block, cname='lz4' if lz4 else 'none'))
    with h5py.File(path, 'r') as f:
        mask, raw = f['d'].id.read_direct_chunk((0,))
        options = f['d'].id.get_create_plist().get_filter(0)[2]
    _direct.codec_reason(((32008, options),), ('bitunshuffle-lz4',))   # imports lz4
    got = _direct._bitshuffle_decode(raw, options, lz4, n * elem)
    assert mask == 0 and got.tobytes() == arr.tobytes()
