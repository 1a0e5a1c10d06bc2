"""A clock in which only f takes time, for testing what a budget buys on any machine.

A budget's logic (what it plans, when each pass stops, what the report says it left out) is
arithmetic on time.perf_counter. On the real clock it depends on the machine's speed and
load: a test of it there is a benchmark. Installed in place of ``time.perf_counter`` (the
``fake_clock`` fixture), this clock moves only when a model spends from it in ``f``, and by a
microsecond each time it is read (the check's own work is never quite free), so the same
check plans, cuts and concludes the same on every machine.
"""

from __future__ import annotations

import threading


class FakeClock:
    """``time.perf_counter`` for a check whose evaluations of f cost what f says."""

    TICK = 1e-6  # seconds each reading costs

    def __init__(self, start: float = 1000.0):
        self.now = start
        # f may be called from several threads (the python engine's workers).
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.now += self.TICK
            return self.now

    def spend(self, seconds: float) -> None:
        """What an evaluation of f costs: called by f."""
        with self._lock:
            self.now += seconds
