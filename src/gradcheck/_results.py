"""The records a user sees in a report: verdicts, entries, blocks, kinks and notes."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np


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

    def miss_probability(self, p: float = 0.01) -> float:
        """The chance that a bug touching a fraction ``p`` of this block's entries went
        unseen by both the checked coordinates and the random directions.

        Coordinates: the bug's ``ceil(p n)`` entries were in none of the ``m`` checked
        ones, sampling without replacement: ``C(n - bad, m) / C(n, m)``.

        Directions: a model, stated so that it can be judged. A bug that changes each
        entry it touches by about that entry's size has an error ``e`` of norm about
        ``sqrt(q) ||g||`` (``q = bad / n``). Along a Gaussian direction ``v``, ``v . e``
        and ``v . g`` are independent normals, and the direction misses the bug when
        ``|v . e| <= 2 t |v . g|`` (``t`` the block's fail threshold): their ratio is
        Cauchy, so that happens with probability ``(2 / pi) atan(2 t / sqrt(q))``. The
        ``k`` directions are taken as independent, and the coordinates' and the
        directions' chances multiply. A smaller error than the model's is missed more
        often; a coordinate check does not depend on the error's size.
        """
        bad = math.ceil(p * self.size)
        if self.size == 0 or (self.checked and self.checked > self.size - bad):
            return 0.0
        # C(n - bad, m) / C(n, m), in logs so that n in the millions does not overflow.
        n, m = self.size, self.checked
        log_p = (
            math.lgamma(n - bad + 1)
            - math.lgamma(n - bad - m + 1)
            - math.lgamma(n + 1)
            + math.lgamma(n - m + 1)
        )
        miss = math.exp(log_p)
        if self.directions:
            t = self.tol[1] if math.isfinite(self.tol[1]) else 1e-5
            one = min(1.0, 2 / math.pi * math.atan(2 * t / math.sqrt(bad / n)))
            miss *= one**self.directions
        return miss


@dataclass(frozen=True)
class Replay:
    """What a check looked at, to run it again: with the report's ``seed`` and options,
    ``gradcheck.check`` draws the same sample and directions.
    """

    indices: np.ndarray  # int64 (m,), read-only: flat indices checked one by one
    steps: np.ndarray  # float64 (m,), read-only: the nominal step h_i of each
