"""xfeldata.stacking: stack_data, stack_detector_data, StackView."""
import numpy as np
import pytest

import xfeldata
from xfeldata.stacking import StackView, stack_data, stack_detector_data


def _train(mods=(0, 1, 3), shape=(5, 4, 3), dtype=np.float32,
           pattern='SPB_DET_AGIPD1M-1/DET/{}CH0:xtdf'):
    rng = np.random.default_rng(1)
    return {pattern.format(m): {'image.data': rng.integers(0, 100, shape).astype(dtype)}
            for m in mods}


def test_stack_detector_data_places_modules():
    tr = _train()
    out = stack_detector_data(tr, 'image.data', modules=4)
    assert out.shape == (5, 4, 4, 3)                      # module axis at -3
    for m in (0, 1, 3):
        src = f'SPB_DET_AGIPD1M-1/DET/{m}CH0:xtdf'
        np.testing.assert_array_equal(out[:, m], tr[src]['image.data'])
    assert np.isnan(out[:, 2]).all()
    out0 = stack_detector_data(tr, 'image.data', axis=0, modules=4, fillvalue=-1)
    assert out0.shape == (4, 5, 4, 3) and (out0[2] == -1).all()
    np.testing.assert_array_equal(np.moveaxis(out0, 0, -3), np.where(np.isnan(out), -1, out))
    assert xfeldata.stack_detector_data is stack_detector_data


def test_stack_detector_data_int_fill_and_pattern():
    tr = _train(mods=(1, 2), dtype=np.uint16, pattern='FXE_XAD_JF1M/DET/JNGFR{:02d}:daqOutput')
    out = stack_detector_data(tr, 'image.data', modules=3, pattern=r'/DET/JNGFR(\d+)',
                              starts_at=1)
    assert out.dtype == np.uint16 and (out[:, 2] == 0).all()
    np.testing.assert_array_equal(out[:, 0], tr['FXE_XAD_JF1M/DET/JNGFR01:daqOutput']['image.data'])
    with pytest.raises(ValueError):
        stack_detector_data(tr, 'image.data', modules=3, pattern=r'/DET/JNGFR(\d+)',
                            starts_at=1, fillvalue=np.nan)


def test_stack_detector_data_errors():
    with pytest.raises(ValueError, match='No data'):
        stack_detector_data({}, 'image.data')
    tr = _train()
    tr['SPB_DET_AGIPD1M-1/DET/1CH0:xtdf']['image.data'] = np.zeros((5, 4, 3), np.float64)
    with pytest.raises(ValueError):
        stack_detector_data(tr, 'image.data')
    tr = _train()
    tr['SPB_DET_AGIPD1M-1/DET/1CH0:xtdf']['image.data'] = np.zeros((6, 4, 3), np.float32)
    with pytest.raises(ValueError):
        stack_detector_data(tr, 'image.data')
    with pytest.raises(IndexError):
        stack_detector_data(_train(mods=(0, 5)), 'image.data', modules=4)
    tr = _train()
    tr['SA1_XTD2_XGM/DOOCS/MAIN:output'] = {'image.data': np.zeros((5, 4, 3), np.float32)}
    with pytest.raises(ValueError):
        stack_detector_data(tr, 'image.data')
    with pytest.raises(ValueError):
        stack_detector_data(_train(), 'other.key')


def test_zero_length_module_is_missing_and_other_sources_skipped():
    tr = _train(mods=(0, 1))
    tr['SPB_DET_AGIPD1M-1/DET/1CH0:xtdf']['image.data'] = np.zeros((0, 4, 3), np.float32)
    tr['SA1_XTD2_XGM/DOOCS/MAIN:output'] = {'data.x': np.zeros(3)}
    out = stack_detector_data(tr, 'image.data', modules=2)
    assert np.isnan(out[:, 1]).all() and not np.isnan(out[:, 0]).any()


def test_stack_view():
    tr = _train()
    real = stack_detector_data(tr, 'image.data', modules=4)
    view = stack_detector_data(tr, 'image.data', modules=4, real_array=False)
    assert isinstance(view, StackView)
    assert view.shape == real.shape and view.ndim == 4 and view.dtype == np.float32
    np.testing.assert_array_equal(view[:, 1], real[:, 1])
    np.testing.assert_array_equal(view[2:4, 3, 1], real[2:4, 3, 1])
    assert np.isnan(view[:, 2]).all()
    np.testing.assert_array_equal(view[..., :2], real[..., :2])
    np.testing.assert_array_equal(view.asarray(), real)
    with pytest.raises(Exception):
        view[:, 0:2]
    assert repr(view).startswith('<VirtualStack')
    one = stack_detector_data(_train(shape=(1, 4, 3)), 'image.data', modules=4,
                              real_array=False)
    sq = one.squeeze(axis=0)
    assert sq.shape == (4, 4, 3)
    np.testing.assert_array_equal(np.asarray(sq[1]), one[0, 1])
    with pytest.raises(ValueError):
        one.squeeze(axis=2)
    with pytest.raises(np.exceptions.AxisError):
        one.squeeze(axis=7)


def test_stack_data():
    tr = {f'A/DET/{m}CH0:x': {'k': np.full((2, 3), m)} for m in (10, 2, 1)}
    out = stack_data(tr, 'k', axis=0)
    assert out[:, 0, 0].tolist() == [1, 2, 10]
    out = stack_data(tr, 'k', xcept=('A/DET/2CH0:x',))
    assert out.shape == (2, 2, 3) and out[0, 0, 0] == 1 and out[1, 0, 0] == 10
    with pytest.raises(ValueError):
        stack_data(tr, 'k', xcept=tuple(tr))
    tr['A/DET/3CH0:x'] = {'k': np.zeros((2, 3), np.float32)}
    with pytest.raises(ValueError):
        stack_data(tr, 'k')
