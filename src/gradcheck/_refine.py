"""Refine: look again at entries that disagree, to tell a kink from a bug.

A central difference that straddles a kink (ReLU at 0, a tie in max, |x|) mixes two slopes
and disagrees with any one-sided derivative, however right the gradient. Each disagreeing
entry is evaluated again at h/10 and h/100 (4 evaluations):

- the disagreement vanishes at a smaller step: a kink lay within the step ("crossed");
- it persists, the left and right slopes differ as much at h/10 as at h (a jump, not the
  f'' h of a smooth function) and the analytic value lies between them: the point sits on
  a kink and the analytic value is one of its valid one-sided derivatives ("at");
- otherwise the entry is wrong.

Kinks are reported by name and left out of the verdicts; bugs stay failures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import _plan
from ._compare import NOISE, RTOL
from ._estimate import Estimate, estimate
from ._plan import Plan

# Smaller steps, as fractions of the first one.
SHRINK = (0.1, 0.01)
# The worst this many disagreeing entries of a block are looked at first (4 evaluations
# each); the rest only if every one of them was a kink: one bug already fails the block.
PER_BLOCK = 64


@dataclass(frozen=True)
class Kink:
    """An entry that disagrees only because of a kink of f near params."""

    name: str
    kind: str  # "crossed": a kink lies within the step; "at": params sits on one
    analytic: float
    numeric: float
    left: float  # slope of f to the left ...
    right: float  # ... and to the right, over the first step


def examine(
    evaluate: Callable[[Plan], np.ndarray],
    buffer: np.ndarray,
    plan: Plan,
    est: Estimate,
    analytic: np.ndarray,
    flagged: np.ndarray,
    *,
    f0: float,
    loss_dtype: np.dtype,
    noise_f: float,
    eps: float | None,
) -> tuple[np.ndarray, list[tuple[int, str]], int]:
    """Classify the ``flagged`` positions of ``plan``: (kink mask, [(position, kind)], nfev).

    ``evaluate(sub_plan)`` runs the check's engine on a smaller plan.
    """
    mask = np.zeros(plan.idx.size, dtype=bool)
    if flagged.size == 0:
        return mask, [], 0
    dtype = _plan.coarser(buffer.dtype, loss_dtype)
    rtol = RTOL[dtype]
    a = analytic[flagged]
    first_error = np.abs(a - est.gradapprox[flagged])
    agrees = np.zeros(flagged.size, dtype=bool)
    spent = 0
    finite = np.isfinite(a)  # an infinite or NaN analytic value is wrong, never a kink
    sides, slacks, valid = [], [], []
    for factor in SHRINK:
        sub = _plan.make(
            buffer,
            plan.idx[flagged],
            method="central",
            eps=None if eps is None else eps * factor,
            loss_dtype=loss_dtype,
            seed=plan.seed,
            rel_step=None if plan.rel_step is None else plan.rel_step * factor,
        )
        values = evaluate(sub)
        spent += values.size
        # A step the user gave may vanish at a tenth or a hundredth of itself (x + h == x):
        # such a step neither decides nor needs to show anything.
        spans = (sub.width != 0).all(axis=1)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            smaller = estimate(sub, values, f0)
            b = smaller.gradapprox
            err = np.abs(a - b)
            noise = NOISE * noise_f * smaller.sensitivity
            # A smaller step tells only while the noise it amplifies stays below a tenth of
            # the first error; the finest step that still tells decides. "Agrees" asks the
            # error to fall within tolerance and to a tenth of what it was: an entry just
            # over the tolerance whose error stays put is a small bug, not a kink.
            resolves = spans & (noise <= 0.1 * first_error)
            fits = (err <= rtol * (np.abs(a) + np.abs(b)) + noise) & (err <= 0.1 * first_error)
            span = np.abs(sub.values[:, 0] - sub.base)
            slack = rtol * np.abs(smaller.one_sided).sum(axis=1) + NOISE * 2 * noise_f / span
        agrees = np.where(resolves, fits & finite, agrees)
        sides.append(smaller.one_sided)
        slacks.append(slack)
        valid.append(spans)
    kinds = []
    # On a kink the left and right slopes differ by its jump at any step; on a smooth f
    # they differ by about f'' h, ten times less at a tenth of the step. The analytic value
    # must lie between them at h/10, and at h/100 too unless that step vanished.
    left, right = est.one_sided[flagged, 0], est.one_sided[flagged, 1]
    gap = np.abs(right - left)
    at = ~agrees & finite & valid[0]
    for k, (near, slack, ok) in enumerate(zip(sides, slacks, valid, strict=True)):
        low, high = np.minimum(near[:, 0], near[:, 1]), np.maximum(near[:, 0], near[:, 1])
        straddles = (a >= low - slack) & (a <= high + slack)
        if k == 0:
            straddles &= (high - low > 0.5 * gap) & (high - low > 10 * slack)
        at &= straddles | ~ok
    for pos, crossed, on in zip(flagged.tolist(), agrees.tolist(), at.tolist(), strict=True):
        if crossed or on:
            mask[pos] = True
            kinds.append((pos, "crossed" if crossed else "at"))
    return mask, kinds, spent


def in_rounds(examine, per_block: list[np.ndarray]):
    """Run ``examine(positions)`` on the worst PER_BLOCK flagged entries of each block, then
    on the rest of the blocks whose examined entries were all kinks: one bug already fails a
    block, and a correct ReLU layer may cross more kinks than one round takes.

    Returns what ``examine`` does, for all the entries examined: (mask, kinds, nfev).
    """
    first = [p[:PER_BLOCK] for p in per_block]
    mask, kinds, spent = examine(np.sort(np.concatenate(first)))
    rest = [
        p[PER_BLOCK:]
        for p, head in zip(per_block, first, strict=True)
        if p.size > head.size and mask[head].all()
    ]
    if rest:
        more, more_kinds, more_spent = examine(np.sort(np.concatenate(rest)))
        mask |= more
        kinds = sorted(kinds + more_kinds)
        spent += more_spent
    return mask, kinds, spent


def flagged_positions(plan: Plan, offsets: np.ndarray, score: np.ndarray) -> list[np.ndarray]:
    """Per block, the positions in ``plan`` whose score exceeds 1, worst first."""
    bounds = np.searchsorted(plan.idx, offsets)
    flagged = []
    for k in range(bounds.size - 1):
        lo, hi = bounds[k], bounds[k + 1]
        over = lo + np.flatnonzero(score[lo:hi] > 1)
        flagged.append(over[np.argsort(-score[over], kind="stable")])
    return flagged
