"""Hypothesis profiles for the property tests.

Choose with ``HYPOTHESIS_PROFILE=thorough pytest properties`` (default: ``ci``).
"""

import os

from hypothesis import settings

# CI has 2 cores and a 20-minute budget for the whole suite (DESIGN.md decision 7).
settings.register_profile("ci", max_examples=25, deadline=None)
# Local hunting for counterexamples: many more examples, still no timing flakiness.
settings.register_profile("thorough", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
