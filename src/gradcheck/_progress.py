"""Progress: a tqdm bar on stderr for checks long enough to want one (tqdm imported lazily).

The bar counts evaluations of f through every pass that evaluates (the main plan, the kink
re-checks, the directions). The engines report to it by time, not by count: ``Pace`` looks
at the clock every few coordinates and reports what finished since, so a slow f moves the
bar as often as a fast one, and the loops never call tqdm once per coordinate.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

# Show a progress bar by default when a check should take longer than this.
PROGRESS_SECONDS = 3.0
# The engine loops look at the clock (and report to the bar) about this often: as many
# coordinates as fit in this time, measured as they go. tqdm redraws at most every 0.1 s
# (its mininterval), so the bar moves several times a second whatever f costs, and a
# nearly free f pays one clock read per many coordinates.
LOOK_SECONDS = 0.05


class Pace:
    """How many coordinates an engine loop runs between looks at the clock, and the report.

    ``done(n)`` after each stride of ``n`` coordinates; ``stride`` is then the number that
    should take about ``LOOK_SECONDS``. Without ``report`` the stride is ``most`` and the
    clock is never read.
    """

    __slots__ = ("looked", "most", "report", "stride")

    def __init__(self, report: Callable[[int], None] | None, most: int):
        self.report = report
        self.most = most
        self.stride = 1 if report else most
        self.looked = time.perf_counter() if report else 0.0

    def done(self, n: int) -> None:
        if self.report is None or n == 0:
            return
        now = time.perf_counter()
        per = (now - self.looked) / n
        self.looked = now
        self.stride = self.most if per <= 0 else max(1, min(self.most, int(LOOK_SECONDS / per)))
        self.report(n)


def wanted(progress: bool | None, per_call: float | None, expected: int) -> bool:
    """Whether to show a bar: as asked, else for long checks on a terminal with tqdm."""
    if progress is not None:
        return progress
    if per_call is None or per_call * expected < PROGRESS_SECONDS:
        return False
    return sys.stderr.isatty() and _has_tqdm()


def _has_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


class Bar:
    """The shown bar, counting evaluations of f; its total grows when a pass needs more."""

    def __init__(self, shown):
        self.shown = shown

    def expect(self, n: int) -> None:
        """``n`` evaluations are about to run: make room for them if the total has none."""
        shown = self.shown
        if shown.n + n > shown.total:
            shown.total = shown.n + n
            shown.refresh()

    def ahead(self, n: int) -> None:
        """From now on about ``n`` more evaluations are planned (a pass about to start)."""
        self.shown.total = self.shown.n + n
        self.shown.refresh()

    def update(self, n: int) -> None:
        self.shown.update(n)
