"""Hypothesis profiles for the property tests.

Choose with ``HYPOTHESIS_PROFILE=thorough pytest properties`` (default: ``ci``).
"""

import os
import tempfile

from hypothesis import settings

# As in tests/conftest.py: never write caches into the user's real cache folder.
os.environ.setdefault('XFELDATA_CACHE', tempfile.mkdtemp(prefix='xfeldata-test-cache-'))
os.environ.setdefault('XFELDATA_NO_RUN_MAP_WRITE', '1')

# CI has 2 cores and a 20-minute budget for the whole suite (DESIGN.md decision 7).
settings.register_profile("ci", max_examples=25, deadline=None)
# Local hunting for counterexamples: many more examples, still no timing flakiness.
settings.register_profile("thorough", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
