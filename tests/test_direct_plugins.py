"""The direct-chunk path with hdf5plugin's LZ4 and bitshuffle filters (the ``compress`` extra).

Which path ``'auto'`` takes for each codec, what happens when a decoder is
missing, damaged or unusual streams, and a detector key read end to end.
The byte-identity law over random datasets is in
properties/test_direct_plugin_laws.py.
"""
import struct

import h5py
import numpy as np
import pytest

hdf5plugin = pytest.importorskip('hdf5plugin')
pytest.importorskip('lz4.block')

import xfeldata
from xfeldata import _direct
from xfeldata._execute import execute
from xfeldata.core.plan import ReadPlan, ReadStep
from xfeldata.exceptions import FileStructureError
from xfeldata.testing import Aggregator, RunSpec, write_run, xtdf_module

SOURCE = 'SPB_DET_AGIPD1M-1/DET/0CH0:xtdf'
DATA = f'INSTRUMENT/{SOURCE}/image/data'
CODECS = {
    'lz4': dict(hdf5plugin.LZ4()),
    'lz4-blocks': dict(hdf5plugin.LZ4(nbytes=1000)),
    'bitshuffle': dict(hdf5plugin.Bitshuffle(cname='none')),
    'bitshuffle+lz4': dict(hdf5plugin.Bitshuffle(cname='lz4')),
}


@pytest.fixture(autouse=True)
def fresh_memo(monkeypatch):
    monkeypatch.setattr(_direct, '_memo', {})
    monkeypatch.setattr(_direct, 'MIN_CHUNK_BYTES', 0)


def _skeleton(f):
    f['INDEX/trainId'] = np.array([10000], np.uint64)
    for k in ('dataSourceId', 'root', 'deviceId'):
        f[f'METADATA/dataSources/{k}'] = np.array([], dtype=h5py.string_dtype())


def _file(tmp_path, codec, data, chunks, name='d.h5'):
    path = str(tmp_path / name)
    with h5py.File(path, 'w') as f:
        f.create_dataset('d', data=data, chunks=chunks, **CODECS[codec])
        _skeleton(f)
    return path


def _plan(path, data):
    n = data.shape[0]
    return ReadPlan(data.dtype, data.shape, (ReadStep(path, '/d', 0, n, 0, n),))


def _left_to_h5py(plan, force=False, threads=2):
    """Which datasets read_groups leaves to h5py."""
    out = np.empty(plan.shape, plan.dtype)
    with h5py.File(plan.steps[0].path, 'r') as f:
        groups = _direct.group_steps(plan.steps, lambda p, n: f[n].id)
        left = _direct.read_groups(groups, out, (), threads=threads, force=force)
    return [key for key, _ in left], out


@pytest.fixture
def frames():
    rng = np.random.default_rng(3)
    return rng.poisson(40, (12, 2, 64, 32)).astype('<u2')


def test_kd_ndarray_end_to_end(tmp_path, monkeypatch):
    # A detector module whose image.data is LZ4-compressed, read through KeyData.
    mod = xtdf_module(modno=0, frames=[4, 0, 3], frame_shape=(64, 32))
    write_run(tmp_path, RunSpec(np.arange(10000, 10003), [Aggregator('AGIPD00', [mod])]))
    path = str(next(tmp_path.glob('*AGIPD00*.h5')))
    with h5py.File(path, 'r+') as f:
        shape, dtype = f[DATA].shape, f[DATA].dtype
        want = np.random.default_rng(0).normal(0, 100, shape).astype(dtype)
        del f[DATA]
        f.create_dataset(DATA, data=want, chunks=(1,) + shape[1:], **CODECS['lz4'])
    kd = xfeldata.RunDirectory(tmp_path)[SOURCE, 'image.data']
    np.testing.assert_array_equal(kd.ndarray(read_path='h5py'), want)
    np.testing.assert_array_equal(kd.ndarray(read_path='direct'), want)
    np.testing.assert_array_equal(kd.ndarray(), want)
    assert _left_to_h5py(kd.plan())[0] == []          # 'auto' reads LZ4 directly
    monkeypatch.setenv('EXTRA_NUM_THREADS', '1')
    np.testing.assert_array_equal(kd.ndarray(read_path='direct'), want)


@pytest.mark.parametrize('codec', sorted(CODECS))
def test_auto_path_per_codec(tmp_path, frames, codec):
    path = _file(tmp_path, codec, frames, (1, 2, 64, 32))
    plan = _plan(path, frames)
    left, _ = _left_to_h5py(plan)
    # Bitshuffle stays on h5py under 'auto' (hdf5plugin's decoder is faster),
    # and LZ4 too with one decoding thread; forced, the direct path reads both.
    assert left == ([(path, '/d')] if codec.startswith('bitshuffle') else [])
    assert _left_to_h5py(plan, threads=1)[0] == [(path, '/d')]
    for threads in (1, 2):
        left, out = _left_to_h5py(plan, force=True, threads=threads)
        assert left == [] and out.tobytes() == frames.tobytes()
    assert execute(plan).tobytes() == frames.tobytes()


def test_trailing_elements_and_odd_element_sizes(tmp_path):
    # 3-byte elements need the generic transposition; 1001 elements per chunk
    # leave a partial block and 1 element stored as it is.
    data = np.frombuffer(np.random.default_rng(1).integers(0, 4, 3 * 2002, dtype=np.uint8)
                         .tobytes(), 'V3')
    with h5py.File(tmp_path / 'v.h5', 'w') as f:
        f.create_dataset('d', data=data, chunks=(1001,), **CODECS['bitshuffle+lz4'])
        raw = f['d'].id.read_direct_chunk((1001,))[1]
        opts = f['d'].id.get_create_plist().get_filter(0)[2]
    _direct.codec_reason(((32008, opts),), ('bitunshuffle-lz4',))
    assert _direct._bitshuffle_decode(raw, opts, True, 3003).tobytes() == data[1001:].tobytes()


def test_bitshuffle_block_compressed_to_its_own_size(tmp_path):
    # Found by the property law: unlike the LZ4 filter, bitshuffle never
    # stores a block raw, even when LZ4 gives exactly as many bytes.
    data = np.array([[314830832, -1329202310]], '<i4')
    path = str(tmp_path / 'b.h5')
    with h5py.File(path, 'w') as f:
        ds = f.create_dataset('d', shape=(1, 2), dtype='<i4', chunks=(4, 2),
                              maxshape=(None, 2), **CODECS['bitshuffle+lz4'])
        ds[:] = data
        raw = ds.id.read_direct_chunk((0, 0))[1]
        _skeleton(f)
    assert struct.unpack_from('>QII', raw) == (32, 8192, 32)     # stored size == decoded
    assert execute(_plan(path, data), read_path='direct').tobytes() == data.tobytes()


def test_missing_decoder_leaves_the_dataset_to_h5py(tmp_path, frames, monkeypatch):
    path = _file(tmp_path, 'lz4', frames, (1, 2, 64, 32))
    plan = _plan(path, frames)
    monkeypatch.setitem(_direct._modules, 'lz4.block', None)     # lz4 not installed
    with h5py.File(path, 'r') as f:
        reason = _direct.storage_chunks(f['d'].id, path, '/d')
    assert "lz4 package (the 'compress' extra)" in reason
    with pytest.raises(ValueError, match='lz4 package'):
        execute(plan, read_path='direct')
    assert execute(plan).tobytes() == frames.tobytes()          # h5py reads it


def test_filter_unknown_to_hdf5_is_never_read_directly(tmp_path, frames, monkeypatch):
    # Without hdf5plugin, h5py cannot read the data: neither does the direct path.
    path = _file(tmp_path, 'bitshuffle+lz4', frames, (1, 2, 64, 32))
    monkeypatch.setattr(_direct, '_hdf5_has_filter', lambda fid: False)
    with pytest.raises(ValueError, match="filter 32008 is not available to HDF5.*hdf5plugin"):
        execute(_plan(path, frames), read_path='direct')


def test_bitshuffle_zstd_goes_to_h5py(tmp_path, frames):
    path = str(tmp_path / 'z.h5')
    with h5py.File(path, 'w') as f:
        f.create_dataset('d', data=frames, chunks=(1, 2, 64, 32),
                         **hdf5plugin.Bitshuffle(cname='zstd'))
        _skeleton(f)
    with h5py.File(path, 'r') as f:
        assert 'zstd' in _direct.storage_chunks(f['d'].id, path, '/d')
    assert execute(_plan(path, frames)).tobytes() == frames.tobytes()


def test_chunk_stored_without_its_filter(tmp_path, frames):
    # A chunk written raw (filter mask bit set) among LZ4 ones.
    path = _file(tmp_path, 'lz4', frames, (2, 2, 64, 32))
    with h5py.File(path, 'r+') as f:
        f['d'].id.write_direct_chunk((4, 0, 0, 0), frames[4:6].tobytes(), filter_mask=1)
    plan = _plan(path, frames)
    assert execute(plan, read_path='direct').tobytes() == frames.tobytes()
    assert execute(plan, read_path='h5py').tobytes() == frames.tobytes()


@pytest.mark.parametrize('codec', ['lz4', 'bitshuffle+lz4'])
def test_damaged_chunk_falls_back_to_h5py_which_reports_it(tmp_path, frames, codec):
    path = _file(tmp_path, codec, frames, (1, 2, 64, 32))
    with h5py.File(path, 'r') as f:
        info = f['d'].id.get_chunk_info(3)
    with open(path, 'r+b') as fh:          # our own test file: garble one chunk's blocks
        fh.seek(info.byte_offset + 12)
        fh.write(b'\x7f\xff\xff\xff' * 4)
    plan = _plan(path, frames)
    with pytest.raises(ValueError, match='could not decode'):
        execute(plan, read_path='direct')
    with pytest.raises(FileStructureError):
        execute(plan, read_path='auto')


def _stream(total, block, blocks, tail=b''):
    out = struct.pack('>QI', total, block)
    for b in blocks:
        out += struct.pack('>I', len(b)) + b
    return out + tail


def test_lz4_stream_checks():
    import lz4.block
    _direct.codec_reason(((32004, ()),), ('lz4',))
    data = bytes(range(200)) * 10
    good = _stream(2000, 1500, [lz4.block.compress(data[:1500], store_size=False),
                                data[1500:]])           # the last block stored raw
    assert bytes(_direct._lz4_decode(good, 4000)) == data
    assert bytes(_direct._lz4_decode(_stream(0, 0, []), 10)) == b''
    for bad in (good[:-1], good + b'\0', good[:10], _stream(10 ** 12, 1 << 20, [b'x']),
                _stream(2000, 0, [])):
        with pytest.raises(_direct._Unusable):
            _direct._lz4_decode(bad, 4000)
    with pytest.raises(_direct._Unusable):     # a header claiming more than the chunk
        _direct._lz4_decode(good, 1999)


def test_hdf5plugin_is_imported_when_a_read_needs_it(tmp_path, frames):
    # In a process that never imported hdf5plugin, h5py alone cannot read
    # LZ4 data; a read through 'auto' imports it and reads the data.
    import subprocess
    import sys
    path = _file(tmp_path, 'lz4', frames, (1, 2, 64, 32))
    code = f"""
import sys, numpy as np
from xfeldata._execute import execute
from xfeldata.core.plan import ReadPlan, ReadStep
from xfeldata.exceptions import FileStructureError
plan = ReadPlan(np.dtype('<u2'), {frames.shape}, (ReadStep({path!r}, '/d', 0, 12, 0, 12),))
assert 'hdf5plugin' not in sys.modules
try:
    execute(plan, read_path='h5py')
    raise SystemExit('h5py read LZ4 data without hdf5plugin')
except FileStructureError:
    pass
print(int(execute(plan).astype(np.int64).sum()), 'hdf5plugin' in sys.modules)
"""
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [str(int(frames.astype(np.int64).sum())), 'True']
