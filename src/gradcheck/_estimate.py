"""Estimate: turn the engine's raw evaluations into finite-difference derivatives."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._plan import METHODS, Plan


@dataclass(frozen=True)
class Estimate:
    gradapprox: np.ndarray  # float64 (m,), aligned with plan.idx
    bad: np.ndarray  # bool (m,): f was not finite at one of the coordinate's points
    sensitivity: np.ndarray  # float64 (m,): error of gradapprox per unit of noise in f
    one_sided: np.ndarray  # float64 (m, 2): (left, right) slopes; NaN where not available


def estimate(plan: Plan, evaluations: np.ndarray, f0: float) -> Estimate:
    """Combine the evaluations as ``plan.method`` prescribes.

    central ``(F+ - F-) / width``; forward ``(F+ - f0) / width``; richardson
    ``(4 D(h/2) - D(h)) / 3`` from the central differences at h and h/2; complex
    ``Im f(x + ih) / h`` (the engine hands over the imaginary parts).
    """
    spec = METHODS[plan.method]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if plan.method == "complex":
            d = [evaluations[:, 0] / plan.width[:, 0]]
        else:
            d = [
                (evaluations[:, i] - (f0 if j is None else evaluations[:, j])) / plan.width[:, p]
                for p, (i, j) in enumerate(spec.pairs)
            ]
        # Each difference of two values of f can be off by twice f's noise, over its width.
        per_pair = [2.0 / np.abs(plan.width[:, p]) for p in range(plan.width.shape[1])]
        if plan.method == "richardson":
            gradapprox = (4.0 * d[1] - d[0]) / 3.0
            sensitivity = per_pair[0] / 3.0 + 4.0 * per_pair[1] / 3.0
        elif plan.method == "complex":
            gradapprox = d[0]
            sensitivity = np.zeros_like(d[0])  # no subtraction: no cancellation
        else:
            gradapprox = d[0]
            sensitivity = per_pair[0]
        one_sided = np.full((gradapprox.size, 2), np.nan)
        if plan.method == "central":
            x = plan.base
            one_sided[:, 0] = (f0 - evaluations[:, 1]) / (x - plan.values[:, 1])
            one_sided[:, 1] = (evaluations[:, 0] - f0) / (plan.values[:, 0] - x)
    bad = ~np.isfinite(evaluations).all(axis=1)
    return Estimate(gradapprox, bad, sensitivity, one_sided)
