"""Shared test set-up.

Tests never write caches into data folders they did not create, nor into the
user's real cache folder: both caches are pointed at a temporary folder here.
"""
import os
import tempfile

_CACHE_DIR = tempfile.mkdtemp(prefix='xfeldata-test-cache-')
os.environ.setdefault('XFELDATA_CACHE', _CACHE_DIR)
os.environ.setdefault('XFELDATA_NO_RUN_MAP_WRITE', '1')
