"""Judge: the verdict rules of a check, in one place.

A check's :class:`Judge` is built once, after the noise of f is known, from the thresholds to
start from (the user's, or the dtype's adaptive defaults) and that noise. Every pass asks it:
the per-entry allowance and scores, the verdict on a block's relative difference, on a set
of directional derivatives, how a block's coordinate and directional verdicts combine, and
the check's final verdict. The constants are ``_policy``'s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from . import _policy
from ._norms import segment_differences
from ._results import BlockResult, Note, Verdict


def judge(difference: float, tol: tuple[float, float], e_pred: float = 0.0) -> Verdict:
    """The verdict on one relative difference.

    ``tol`` is the (pass, fail) pair the dtype (or the user) sets; ``e_pred`` the relative
    difference the noise of f alone could produce (``resolution``): with it the thresholds
    rise to what the arithmetic resolves (``adapt``; pass e_pred=0 for fixed thresholds).
    The observed agreement counts as evidence: a difference at or below the dtype's pass
    threshold passes however noisy f is, since noise would have shown as disagreement.
    """
    passes, fails = adapt(tol, e_pred)
    # Written so that NaN fails: `d > tol` would be False for NaN.
    if not difference <= fails:
        return Verdict.FAIL
    if difference <= tol[0]:
        return Verdict.PASS
    # Within what noise explains: a pass only while a 5% error in every entry (COARSEST)
    # would still stand out above it.
    if difference <= passes and passes < _policy.COARSEST:
        return Verdict.PASS
    # Between the thresholds: a warning, as long as the (raised) fail threshold still
    # catches a 5% error, or the difference is below the dtype's own fail threshold.
    if fails <= _policy.COARSEST or difference <= tol[1]:
        return Verdict.WARN
    # Above what a correct gradient shows, yet within what the noise could make.
    return Verdict.INCONCLUSIVE


def resolution(norm_error_bound: float, norm_a: float, norm_b: float) -> float:
    """e_pred: the relative difference that the noise of f alone could produce.

    Both sides exactly zero leave nothing to resolve: 0 (their agreement is exact, and a
    wrong analytic value would have made them differ). Unlike ``_norms.ratio`` it is not
    clipped at 1: a bound above 1 says the noise could make any difference.
    """
    total = float(norm_a) + float(norm_b)
    if total == 0.0:
        return 0.0
    return float(norm_error_bound) / total


def adapt(tol: tuple[float, float], e_pred: float) -> tuple[float, float]:
    """The thresholds raised to what the arithmetic can resolve (see ``_policy``).

    Never above 1: the relative difference cannot exceed it, and a threshold there says
    nothing.
    """
    return (
        min(1.0, max(tol[0], _policy.ADAPT_PASS * e_pred)),
        min(1.0, max(tol[1], _policy.RESOLVE * e_pred)),
    )


@dataclass(frozen=True)
class Judge:
    """The verdict rules of one check.

    ``tol`` is the (pass, fail) pair to start from; ``adaptive``: it rises to what the
    noise of f lets a comparison resolve (no ``tol`` given); ``noise_f``: the noise of f the
    error model assumes; ``dtype``: the precision the gradient is judged at.
    """

    tol: tuple[float, float]
    adaptive: bool
    noise_f: float
    dtype: np.dtype

    @classmethod
    def build(
        cls,
        dtype: np.dtype,
        method: str,
        tol: tuple[float, float] | None,
        noise_f: float,
        *,
        widened: bool = False,
    ) -> Judge:
        """The judge of a check of ``method`` at ``dtype``; ``tol`` the user's or None;
        ``widened``: a float32 gradient against differences of f on float64 copies.
        """
        if tol is not None:
            return cls(tol, False, noise_f, np.dtype(dtype))
        table = _policy.COMPLEX_THRESHOLDS if method == "complex" else _policy.THRESHOLDS
        start = table[dtype]
        if widened and method != "complex":
            start = _policy.WIDENED_THRESHOLDS
        return cls(start, True, noise_f, np.dtype(dtype))

    def for_directions(self, method: str) -> Judge:
        """The judge of directional checks: central differences whatever the method, so a
        complex step's adaptive thresholds are the real ones.
        """
        if self.adaptive and method == "complex":
            return replace(self, tol=_policy.THRESHOLDS[self.dtype])
        return self

    @property
    def rtol(self) -> float:
        """The relative tolerance of one entry at the check's dtype."""
        return _policy.RTOL[self.dtype]

    def allowance(self, a: np.ndarray, b: np.ndarray, fd_error: np.ndarray) -> np.ndarray:
        """What two values may differ by: a relative tolerance of their size, plus what
        the noise of f makes in the difference (``fd_error``).
        """
        with np.errstate(over="ignore", invalid="ignore"):
            return self.rtol * (np.abs(a) + np.abs(b)) + _policy.NOISE * fd_error

    def scores(self, a: np.ndarray, b: np.ndarray, fd_error: np.ndarray) -> np.ndarray:
        """Per-entry disagreement: |a - b| over the allowance. Above 1 an entry disagrees;
        NaN entries score inf.
        """
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            err = np.abs(a - b)
            score = np.where(err == 0, 0.0, err / self.allowance(a, b, fd_error))
        return np.where(np.isnan(score), np.inf, score)

    def least_errors(
        self,
        a: np.ndarray,
        b: np.ndarray,
        fd_error: np.ndarray,
        norms: tuple[float, float, float],
        t: float,
    ) -> np.ndarray:
        """Per checked entry, the smallest absolute error ``|e|`` (``a_i -> a_i + e``) that
        fails its block at fail threshold ``t``: by the single-entry rule (a score above
        ``ENTRY_FAIL``) or by the block's difference (``norms`` its ``(|a|, |b|, |a - b|)``),
        whichever needs less, with ``REACH_MARGIN`` to spare; inf where the thresholds leave
        nothing to fail. What the check could have missed rests on it (``_reach``).

        Entry rule, the inverse of :meth:`scores`: the planted error is at least
        ``|e| - |a_i - b_i|`` and the allowance at most ``allowance_i + rtol |e|``, so a
        score above F is sure when ``|e| (1 - F rtol) > F allowance_i + |a_i - b_i|``.
        Block rule: the planted difference is at least ``|e| - |a - b|`` over at most
        ``|a| + |e| + |b|``.
        """
        na, nb, nd = norms
        fail = _policy.ENTRY_FAIL
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            by_entry = (fail * self.allowance(a, b, fd_error) + np.abs(a - b)) / (
                1 - fail * self.rtol
            )
            by_block = (nd + t * (na + nb)) / (1 - t) if t < 1 else np.inf
            e = _policy.REACH_MARGIN * np.minimum(by_entry, by_block)
        return np.where(np.isfinite(e), e, np.inf)

    def block(
        self, difference: float, fd_norm: float, norm_a: float, norm_b: float
    ) -> tuple[Verdict, tuple[float, float]]:
        """The verdict on a block's relative difference, and the thresholds it was held to.

        ``fd_norm`` is the norm of what the noise of f can make the differences wrong by.
        Fixed thresholds are the user's, shown as given (``adapt`` would clip them at 1).
        """
        if not self.adaptive:
            return judge(difference, self.tol), self.tol
        e_pred = resolution(fd_norm, norm_a, norm_b)
        return judge(difference, self.tol, e_pred), adapt(self.tol, e_pred)

    def directional(
        self, numeric: np.ndarray, predicted: np.ndarray, blind: int = 0
    ) -> tuple[float, Verdict, tuple[float, float]]:
        """``(difference, verdict, thresholds)`` of directional derivatives (finite), with
        ``blind`` more directions along which f was not finite.

        A difference of two values of f is uncertain by about twice its noise, whatever
        the direction. A direction that saw nothing leaves the block inconclusive unless
        the others fail it.
        """
        m = int(numeric.size)
        if not m:
            return math.nan, Verdict.INCONCLUSIVE, self.tol
        norms, diffs = segment_differences(predicted, numeric, np.array([0, m]))
        d = float(diffs[0])
        verdict, tol = self.block(d, 2 * self.noise_f * np.sqrt(m), norms[0, 0], norms[0, 1])
        if blind and verdict != Verdict.FAIL:
            verdict = Verdict.INCONCLUSIVE
        return d, verdict, tol

    def disagrees(self, numeric: float, predicted: float) -> bool:
        """Whether one directional pair fails, by the block's rules."""
        return self.directional(np.array([numeric]), np.array([predicted]))[1] == Verdict.FAIL

    @staticmethod
    def below_resolution(below: int, zeros: int, counted: int, reach: float, scale: float) -> bool:
        """Whether a block agrees by resolution alone: each of its ``counted`` entries has
        both sides below what the finite differences resolve (``below``) or exactly 0
        (``zeros``), some are not 0, and what they resolve (``reach``, in units of the
        gradient) is tiny next to the check's resolved entries (``scale``: the largest
        ``|a| + |b|`` among them).

        Such a block is agreement, whatever ``tol`` says: its relative difference divides
        rounding by rounding (a derivative 0 by symmetry, 1e-15 against 1e-10, differs by
        ~1), and a wrong value above the resolution would have shown. Where the noise of f
        drowns the gradient itself there is no resolved scale to be zero against, and the
        block stays unjudged.
        """
        return below > 0 and below + zeros == counted and reach <= _policy.ZERO_AGAINST * scale

    @staticmethod
    def widespread(disagreeing: int, counted: int) -> bool:
        """Whether a failing block is wrong throughout rather than in a few entries: at
        least WIDESPREAD of its checked entries disagree. Its report then describes the
        block, not the one entry that scores highest.
        """
        return counted > 1 and disagreeing >= _policy.WIDESPREAD * counted

    @staticmethod
    def unjudged_for_step(verdict: Verdict, large: int) -> bool:
        """Whether a block that does not fail on its other entries is unjudged because the
        step was too large for ``large`` of them: their error falls as h^2 at smaller
        steps without reaching agreement, so neither a pass nor a diagnosis can be built
        on them.
        """
        return large > 0 and verdict != Verdict.FAIL

    @staticmethod
    def combined(coordinates: Verdict, directions: Verdict) -> Verdict:
        """A block's verdict from its coordinates' and its directions': the worse of those
        that looked at it.
        """
        return Verdict.worst(v for v in (coordinates, directions) if v != Verdict.UNTESTED)

    @staticmethod
    def final(blocks: Iterable[BlockResult], notes: Iterable[Note]) -> Verdict:
        """The check's verdict: the worst block's. A note's floor lifts a passing verdict
        (f not deterministic: "inconclusive"); it never softens a failure.
        """
        return Verdict.worst([*(b.verdict for b in blocks), *(n.floor for n in notes)])
