"""The records a user sees in a report: verdicts, entries, blocks, kinks and notes."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from ._chance import fraction_miss


class Verdict(StrEnum):
    """A verdict, ordered by severity: ``untested < pass < warn < inconclusive < fail``.

    A ``str`` too, so ``report.verdict == "pass"`` holds, and JSON and ``repr`` write the
    word.
    """

    UNTESTED = "untested"  # a block left to the directions: no coordinate of it checked
    PASS = "pass"
    WARN = "warn"
    INCONCLUSIVE = "inconclusive"
    FAIL = "fail"

    def __repr__(self) -> str:
        # Shown as the plain word, as reports have always shown it.
        return repr(self.value)

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @classmethod
    def worst(cls, verdicts: Iterable[str]) -> Verdict:
        """The most severe of ``verdicts`` ("pass" when there are none)."""
        return max((cls(v) for v in verdicts), key=_SEVERITY.__getitem__, default=cls.PASS)


_SEVERITY = {v: k for k, v in enumerate(Verdict)}


@dataclass(frozen=True)
class Note:
    """A sentence for the report, and the mildest verdict the check may have with it.

    A note that says f is not deterministic makes a passing check "inconclusive": the note
    carries that floor, so no rule ever reads it back from the text.
    """

    text: str
    floor: Verdict = Verdict.PASS


@dataclass(frozen=True)
class Entry:
    """One checked coordinate, named like ``W1[3, 2]``."""

    name: str
    block: str
    analytic: float
    numeric: float
    abs_error: float
    score: float  # above 1: the entry disagrees beyond rounding and the relative tolerance


@dataclass(frozen=True)
class Kink:
    """An entry that disagrees only because of a kink of f near params."""

    name: str
    kind: str  # "crossed": a kink lies within the step; "at": params sits on one
    analytic: float
    numeric: float
    left: float  # slope of f to the left ...
    right: float  # ... and to the right, over the first step


@dataclass(frozen=True)
class Reach:
    """What a block's check could have missed: the smallest errors it would have caught.

    Worked out from what the check did (the entries it checked, their values and what their
    noise allows, its directions, the thresholds the block was held to); an error of the
    stated size fails the block, and ``check(..., control=True)`` shows it does.
    """

    # the smallest |c| for which the gradient (1 + c) x the block's fails it: whatever the
    # noise did, by the block's difference (or its directions'), or an entry's own rule
    factor: float
    # the smallest relative error of one checked entry that fails the block, for the median
    # checked entry that is not 0 (NaN: no coordinate checked)
    entry: float
    # the chance that a given entry of the block was among those checked one by one and
    # judged (not left out at a kink, or for a step too large for it)
    seen: float
    # the chance that one entry off by ``error`` times the block's root-mean-square entry,
    # wherever it is, fails the block: checked one by one, or seen by the directions
    single: float
    # the smallest fraction of the block's entries, each off by ``error`` times the block's
    # root-mean-square entry, that the coordinates and directions together catch with
    # probability >= 0.95 (NaN: not even all of them)
    fraction: float
    caught: float  # the share of the checked entries that such an error fails
    error: float  # the error per entry ``fraction`` assumes, in RMS entries (0.01)


@dataclass(frozen=True)
class Control:
    """A negative control: an error planted in a copy of the gradient, and what the check
    made of it (the comparison run again on the finite differences it already had).
    """

    planted: str  # what was planted, in words ("W1[2, 3] x (1 + 3.1e-04)")
    kind: str  # "entry" (one entry off by Reach.entry) or "factor" (the block x (1 + factor))
    size: float  # the relative error planted
    verdict: str  # the block's verdict with the error in place: "fail" when it was caught


@dataclass(frozen=True)
class BlockResult:
    """The check of one parameter block."""

    name: str
    shape: tuple[int, ...]
    size: int
    checked: int  # coordinates checked one by one
    difference: float  # over the checked coordinates, or along the directions if none
    verdict: str
    norm_analytic: float
    norm_numeric: float
    norm_error: float
    max_abs_error: float
    max_abs_error_at: str | None
    nonfinite: tuple[str, ...]  # entries where f was not finite at a perturbed point
    tol: tuple[float, float] = (math.nan, math.nan)  # thresholds applied to this block
    kinks: int = 0  # entries left out of the verdict: they disagree only at a kink
    untested: int = 0  # entries where both sides lie below what the differences resolve
    zeros: int = 0  # entries exactly 0 on both sides (agreement: f does not move with them)
    disagreeing: int = 0  # checked entries whose score is above 1 (kinks left out)
    diagnosis: str | None = None  # what a failing block's error looks like, in words
    directions: int = 0  # random directions checked
    direction_difference: float = math.nan
    localized: tuple[str, ...] = ()  # wrong entries found by the directional search
    reach: Reach | None = None  # what the check could have missed (None: not looked at)
    controls: tuple[Control, ...] = ()  # errors planted on request (check(control=True))

    def miss_probability(self, p: float = 0.01) -> float:
        """The chance that a bug touching a fraction ``p`` of this block's entries went
        unseen by both the checked coordinates and the random directions.

        Coordinates: the bug's ``ceil(p n)`` entries were in none of the ``m`` checked
        ones, sampling without replacement: ``C(n - bad, m) / C(n, m)``.

        Directions: a model, stated so that it can be judged. A bug that changes each
        entry it touches by about that entry's size has an error ``e`` of norm about
        ``sqrt(q) ||g||`` (``q = bad / n``). Along ``k`` Gaussian directions ``V``, ``Ve``
        and ``Vg`` are independent normal vectors, and the block's directions miss the bug
        while ``|Ve| <= 2 t |Vg| / (1 - t)`` (``t`` the block's fail threshold): the ratio
        of their squares makes ``|Ve|^2 / (|Ve|^2 + |Vg|^2)`` Beta(k/2, k/2), so that
        happens with probability ``I_w(k/2, k/2)``, ``w = r^2 / (1 + r^2)``,
        ``r = 2 t / ((1 - t) sqrt(q))``; for one direction ``(2 / pi) atan(r)``. The
        coordinates' and the directions' chances multiply. A smaller error than the
        model's is missed more often; a coordinate check does not depend on the error's
        size (see ``reach`` for errors of 1%).
        """
        if self.size == 0:
            return 0.0
        bad = math.ceil(p * self.size)
        t = self.tol[1] if math.isfinite(self.tol[1]) else 1e-5
        return fraction_miss(self.size, self.checked, self.directions, t, bad)


@dataclass(frozen=True)
class Replay:
    """What a check looked at, to run it again: with the report's ``seed`` and options,
    ``gradcheck.check`` draws the same sample and directions.
    """

    indices: np.ndarray  # int64 (m,), read-only: flat indices checked one by one
    steps: np.ndarray  # float64 (m,), read-only: the nominal step h_i of each
