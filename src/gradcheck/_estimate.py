"""Estimate: turn the engine's raw evaluations into finite-difference derivatives."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._plan import Plan


@dataclass(frozen=True)
class Estimate:
    gradapprox: np.ndarray  # float64 (m,), aligned with plan.idx
    bad: np.ndarray  # bool (m,): f was not finite at one of the coordinate's points


def estimate(plan: Plan, evaluations: np.ndarray, f0: float) -> Estimate:
    """Central ``(F+ - F-) / width`` or forward ``(F+ - f0) / width``."""
    if plan.method == "central":
        diff = evaluations[:, 0] - evaluations[:, 1]
    else:
        diff = evaluations[:, 0] - f0
    with np.errstate(invalid="ignore", over="ignore"):
        gradapprox = diff / plan.width
    bad = ~np.isfinite(evaluations).all(axis=1)
    return Estimate(gradapprox, bad)
