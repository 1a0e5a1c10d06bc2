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
# At most this many entries of one block are looked at again (4 evaluations each); a block
# with more disagreeing entries than that has a bug, not kinks.
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
    sides = []
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
        smaller = estimate(sub, values, f0)
        b = smaller.gradapprox
        allowed = rtol * (np.abs(a) + np.abs(b)) + NOISE * noise_f * smaller.sensitivity
        # Agreement counts only where the smaller step still resolves a tenth of the first
        # error: below that, noise in f would make any gradient agree.
        agrees |= (np.abs(a - b) <= allowed) & (allowed <= 0.1 * first_error)
        sides.append(smaller.one_sided)
    kinds = []
    # On a kink the left and right slopes differ by its jump at any step; on a smooth f
    # they differ by about f'' h, ten times less at a tenth of the step.
    left, right = est.one_sided[flagged, 0], est.one_sided[flagged, 1]
    gap = np.abs(right - left)
    near = sides[0]
    low, high = np.minimum(near[:, 0], near[:, 1]), np.maximum(near[:, 0], near[:, 1])
    span = plan.values[flagged, 0] - plan.base[flagged]
    slack = rtol * (np.abs(low) + np.abs(high)) + NOISE * 2 * noise_f / np.abs(SHRINK[0] * span)
    persists = (high - low > 0.5 * gap) & (high - low > 10 * slack)
    at = (~agrees) & persists & (a >= low - slack) & (a <= high + slack)
    for pos, crossed, on in zip(flagged.tolist(), agrees.tolist(), at.tolist(), strict=True):
        if crossed or on:
            mask[pos] = True
            kinds.append((pos, "crossed" if crossed else "at"))
    return mask, kinds, spent


def flagged_positions(plan: Plan, offsets: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Positions in ``plan`` whose score exceeds 1, at most PER_BLOCK per block."""
    bounds = np.searchsorted(plan.idx, offsets)
    chosen = []
    for k in range(bounds.size - 1):
        lo, hi = bounds[k], bounds[k + 1]
        over = lo + np.flatnonzero(score[lo:hi] > 1)
        if over.size:
            worst_first = over[np.argsort(-score[over], kind="stable")][:PER_BLOCK]
            chosen.append(np.sort(worst_first))
    return np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64)
