"""Shared test set-up.

Tests never write caches into data folders they did not create, nor into the
user's real cache folder: both caches are pointed at a temporary folder here.
"""
import os
import tempfile

_CACHE_DIR = tempfile.mkdtemp(prefix='xfeldata-test-cache-')
os.environ.setdefault('XFELDATA_CACHE', _CACHE_DIR)
os.environ.setdefault('XFELDATA_NO_RUN_MAP_WRITE', '1')


import pytest  # noqa: E402


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A per-test index cache folder and an empty in-process memo, before and after."""
    from xfeldata import _tiers, index_cache
    monkeypatch.setenv('XFELDATA_CACHE', str(tmp_path / 'cache'))
    _tiers.MEMO.clear()
    index_cache.forget_runs()
    yield tmp_path / 'cache'
    _tiers.MEMO.clear()
    index_cache.forget_runs()


@pytest.fixture
def legacy_corr_run(tmp_path):
    """``make(n_modules=1)``: a CORR run of AGIPD modules whose old ``DET/..:xtdf`` names
    are soft links (legacy names) to ``CORR/..:output``, opened; 4 trains."""
    import xfeldata
    from xfeldata.testing import Aggregator, RunSpec, write_run, xtdf_module

    def make(n_modules=1):
        mods = [xtdf_module('SPB_DET_AGIPD1M-1', i, frames=2, raw=False, corr_names=True,
                            legacy=True, frame_shape=(4, 4)) for i in range(n_modules)]
        spec = RunSpec(train_ids=list(range(10000, 10004)), category='CORR',
                       aggregators=[Aggregator(f'AGIPD{i:02d}', [m])
                                    for i, m in enumerate(mods)])
        return xfeldata.RunDirectory(write_run(tmp_path / 'r0001', spec).directory)
    return make
