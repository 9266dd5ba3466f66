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
