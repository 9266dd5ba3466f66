"""xfeldata.compression (EXtra-data's names) and choosing the read path."""
import h5py
import numpy as np
import pytest

import xfeldata
from xfeldata import compression
from xfeldata.testing import Aggregator, RunSpec, write_run, xtdf_module


@pytest.fixture
def dsets(tmp_path):
    data = np.random.default_rng(0).integers(0, 1000, (6, 8, 10)).astype('<u2')
    path = tmp_path / 'c.h5'
    with h5py.File(path, 'w') as f:
        f.create_dataset('deflate', data=data, chunks=(1, 8, 10), compression='gzip')
        f.create_dataset('shuffle', data=data, chunks=(1, 8, 10), compression='gzip',
                         shuffle=True)
        f.create_dataset('plain', data=data, chunks=(1, 8, 10))
        f.create_dataset('partial', shape=data.shape, dtype='<u2', chunks=(1, 8, 10),
                         compression='gzip', fillvalue=7)
        f['partial'][:3] = data[:3]
    with h5py.File(path, 'r') as f:
        yield f, data


def test_decompressor_choice(dsets):
    f, _ = dsets
    assert compression.filter_ids(f['shuffle']) == [2, 1]
    assert isinstance(compression.dataset_decompressor(f['deflate']),
                      compression.DeflateDecompressor)
    assert isinstance(compression.dataset_decompressor(f['shuffle']),
                      compression.ShuffleDeflateDecompressor)
    assert compression.dataset_decompressor(f['plain']) is None
    assert compression.multi_dataset_decompressor([f['deflate'], f['shuffle']]) is None
    assert compression.multi_dataset_decompressor([f['deflate'], f['partial']]) is not None


@pytest.mark.parametrize('name', ['deflate', 'shuffle', 'partial'])
def test_parallel_decompress_chunks(dsets, name):
    f, data = dsets
    ds = f[name]
    out = np.full(data.shape, 7, dtype=data.dtype)        # unallocated chunks keep this
    tasks = [(ds, (i, 0, 0), out[i:i + 1]) for i in range(data.shape[0])]
    compression.parallel_decompress_chunks(tasks, compression.dataset_decompressor(ds),
                                           threads=2)
    np.testing.assert_array_equal(out, ds[()])


def test_num_threads(monkeypatch):
    monkeypatch.setenv('EXTRA_NUM_THREADS', '3')
    assert compression.num_threads() == 3
    monkeypatch.setenv('EXTRA_NUM_THREADS', '0')
    assert compression.num_threads() == 1
    monkeypatch.setenv('EXTRA_NUM_THREADS', 'many')
    with pytest.raises(ValueError, match='EXTRA_NUM_THREADS'):
        compression.num_threads()
    monkeypatch.delenv('EXTRA_NUM_THREADS')
    assert 1 <= compression.num_threads() <= 16


def test_keydata_read_path(tmp_path, monkeypatch):
    mod = xtdf_module(modno=0, frames=[4, 0, 3], frame_shape=(64, 64), compression='gzip',
                      compression_opts=1)
    write_run(tmp_path, RunSpec(np.arange(10000, 10003), [Aggregator('AGIPD00', [mod])]))
    from xfeldata import _direct
    monkeypatch.setattr(_direct, 'MIN_CHUNK_BYTES', 0)   # the pattern data compress well
    run = xfeldata.RunDirectory(tmp_path)
    kd = run['SPB_DET_AGIPD1M-1/DET/0CH0:xtdf', 'image.data']
    want = kd.ndarray(read_path='h5py')
    assert want.shape == (7, 2, 64, 64) and want.any()
    np.testing.assert_array_equal(kd.ndarray(read_path='direct'), want)
    np.testing.assert_array_equal(kd.ndarray(), want)
    # A region of interest goes to h5py under 'auto'; 'direct' refuses it clearly.
    np.testing.assert_array_equal(kd.ndarray(roi=np.s_[0, :5]), want[:, 0, :5])
    with pytest.raises(ValueError, match='whole entries'):
        kd.ndarray(roi=np.s_[0], read_path='direct')
    # An uncompressed key cannot be forced onto the direct path.
    pulse = run['SPB_DET_AGIPD1M-1/DET/0CH0:xtdf', 'image.pulseId']
    with pytest.raises(ValueError, match='not compressed|not chunked'):
        pulse.ndarray(read_path='direct')
    monkeypatch.setenv('XFELDATA_READ_PATH', 'sideways')
    with pytest.raises(ValueError, match='read_path must be one of'):
        kd.ndarray()


def test_auto_leaves_reads_smaller_than_a_chunk_to_h5py(tmp_path, monkeypatch):
    from xfeldata import _direct
    mod = xtdf_module(modno=0, frames=[4, 0, 3], frame_shape=(64, 64), compression='gzip',
                      compression_opts=1)
    write_run(tmp_path, RunSpec(np.arange(10000, 10003), [Aggregator('AGIPD00', [mod])]))
    kd = xfeldata.RunDirectory(tmp_path)['SPB_DET_AGIPD1M-1/DET/0CH0:xtdf', 'image.data']
    want = kd.ndarray(read_path='h5py')
    asked = []
    real = _direct.storage_chunks
    monkeypatch.setattr(_direct, 'storage_chunks', lambda *a: asked.append(a[2]) or real(*a))
    monkeypatch.setattr(_direct, 'MIN_CHUNK_BYTES', 0)
    np.testing.assert_array_equal(kd.ndarray(read_path='auto'), want)
    assert len(asked) == 1 and asked[0].endswith('image/data')
    # The whole key (7 frames, 112 kB) is now smaller than the threshold:
    # h5py reads it and the chunk table is not consulted; forced, it is.
    monkeypatch.setattr(_direct, 'MIN_CHUNK_BYTES', 1 << 20)
    np.testing.assert_array_equal(kd.ndarray(read_path='auto'), want)
    assert len(asked) == 1
    np.testing.assert_array_equal(kd.ndarray(read_path='direct'), want)
    assert len(asked) == 2
