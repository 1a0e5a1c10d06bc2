"""Directional checks per block, and the search that localises a failing block's bug.

A direction check compares ``v . grad`` with ``(f(x + h v) - f(x - h v)) / 2h`` for random
Gaussian ``v`` supported on one block: two evaluations, whatever the block's size. When a
block fails, its coordinate range is halved and each half tested with a direction of its
own, recursively, down to single coordinates: about 4 log2(n) evaluations per wrong
coordinate, where a coordinate check of the block would cost 2n.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import _plan
from ._compare import adapt, judge, resolution, segment_differences

# evaluate(points) -> f at each point, a point being (lo, hi, values of buffer[lo:hi]).
Evaluate = Callable[[list], np.ndarray]


@dataclass(frozen=True)
class DirectionResult:
    difference: float  # relative difference of the k directional derivatives
    verdict: str
    found: tuple[int, ...]  # flat indices the search pinned down
    evaluations: int
    numeric: np.ndarray  # (finite) directional differences of f ...
    predicted: np.ndarray  # ... and what the analytic gradient predicts for them
    tol: tuple[float, float]  # the thresholds applied
    note: str | None = None  # why the verdict is what it is, when not plain


def check_block(
    evaluate: Evaluate,
    buffer: np.ndarray,
    analytic: np.ndarray,
    lo: int,
    hi: int,
    *,
    k: int,
    rel_step: float,
    rng: np.random.Generator,
    tol: tuple[float, float],
    adaptive: bool,
    noise_f: float,
    localize: int,
) -> DirectionResult:
    """Check block [lo, hi) of the flat buffer along ``k`` directions; search if it fails.

    ``noise_f`` is the rounding noise of f: a difference of two values of f is uncertain by
    about twice that, whatever the direction. With ``adaptive``, thresholds rise to what
    that noise lets the comparison resolve.
    """
    numeric, predicted = np.empty(k), np.empty(k)
    for j in range(k):
        numeric[j], predicted[j] = _one_direction(evaluate, buffer, analytic, lo, hi, rel_step, rng)
    ok = np.isfinite(numeric)
    if not ok.any():
        empty = numeric[:0]
        return DirectionResult(np.nan, "inconclusive", (), 2 * k, empty, empty, tol)
    norms, diffs = segment_differences(predicted[ok], numeric[ok], np.array([0, int(ok.sum())]))
    d = float(diffs[0])
    e_pred = resolution(2 * noise_f * np.sqrt(ok.sum()), norms[0, 0], norms[0, 1])
    block_tol = adapt(tol, e_pred) if adaptive else tol
    verdict = judge(d, block_tol, e_pred)
    if verdict != "fail" and not ok.all():
        verdict = "inconclusive"
    found, spent = (), 0
    if verdict == "fail" and localize > 0:
        disagree = disagreement(tol, adaptive, noise_f)
        found, spent = _search(
            evaluate, buffer, analytic, lo, hi, rel_step, rng, disagree, localize
        )
    return DirectionResult(
        d,
        verdict,
        found,
        2 * k + spent,
        numeric[ok],
        predicted[ok],
        block_tol,
    )


def _one_direction(evaluate, buffer, analytic, lo, hi, rel_step, rng) -> tuple[float, float]:
    """(numeric, analytic) derivative along one random direction over buffer[lo:hi].

    Both are measured over the displacement the stored points actually span, so rounding of
    the points to the storage dtype cancels out of the comparison.
    """
    plus, minus = _plan.direction(buffer[lo:hi], rel_step, rng)
    f_plus, f_minus = evaluate([(lo, hi, plus), (lo, hi, minus)])
    span = plus.astype(np.float64) - minus.astype(np.float64)
    return float(f_plus - f_minus), float(analytic[lo:hi] @ span)


def disagreement(tol, adaptive, noise_f) -> Callable[[float, float], bool]:
    """Whether one directional pair (numeric, predicted) fails, by the block's rules."""

    def disagree(numeric: float, predicted: float) -> bool:
        norms, diffs = segment_differences(
            np.array([predicted]), np.array([numeric]), np.array([0, 1])
        )
        e_pred = resolution(2 * noise_f, norms[0, 0], norms[0, 1])
        return judge(float(diffs[0]), adapt(tol, e_pred) if adaptive else tol) == "fail"

    return disagree


def _search(evaluate, buffer, analytic, lo, hi, rel_step, rng, disagree, limit):
    """Depth-first halving of [lo, hi) towards wrong coordinates; at most ``limit`` found."""
    found: list[int] = []
    spent = 0
    pending = [(lo, hi)]
    while pending and len(found) < limit:
        a, b = pending.pop()
        if b - a == 1:
            found.append(a)  # a one-entry range is only pushed after it failed on its own
            continue
        mid = (a + b) // 2
        halves = ((a, mid), (mid, b))
        # One random direction can miss (the error nearly orthogonal to it); when neither
        # half fails although their union did, look once more with fresh directions.
        for _ in range(2):
            failing = []
            for c, d in halves:
                numeric, predicted = _one_direction(evaluate, buffer, analytic, c, d, rel_step, rng)
                spent += 2
                # A half where f is not finite counts as failing: it may hold the bug too,
                # and the coordinate check of what the search finds drops such entries.
                if disagree(numeric, predicted):
                    failing.append((c, d))
            if failing:
                break
        pending.extend(reversed(failing))
    return tuple(found), spent
