import os
import time

import pytest
from hypothesis import settings

from .clock import FakeClock

# Hypothesis profiles: the default keeps CI quick; HYPOTHESIS_PROFILE=thorough digs deeper.
settings.register_profile("default", max_examples=60, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def fake_clock(monkeypatch):
    """A FakeClock in place of ``time.perf_counter`` for the test (tests/clock.py)."""
    fake = FakeClock()
    monkeypatch.setattr(time, "perf_counter", fake)
    return fake
