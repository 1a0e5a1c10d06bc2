"""Plan: which coordinates are checked, the values they are set to, and the steps taken.

Steps follow the dtype and the scale of each parameter: ``h_i = r * max(1, |x_i|)`` with
``r = eps**(1/3)`` for central and ``eps**(1/2)`` for forward differences, ``eps`` that of the
coarser of the parameter and loss dtypes. The perturbed values are rounded to the storage
dtype here, once, and the divisor is the step those stored values actually span. A step the
user gives is absolute and divides by its nominal width, as the classic exercise does, as
long as the stored values represent it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHODS = {
    # name: (offsets of the evaluations in units of h, exponent of eps for the step)
    "central": ((1.0, -1.0), 1 / 3),
    "forward": ((1.0,), 1 / 2),
}


@dataclass(frozen=True)
class Plan:
    """What the engines evaluate: f at theta with theta[idx[j]] set to values[j, k]."""

    method: str
    idx: np.ndarray  # int64 (m,): flat indices of the checked coordinates
    values: np.ndarray  # float64 (m, K): perturbed values, representable in the buffer dtype
    width: np.ndarray  # float64 (m,): the divisor of each difference
    step: np.ndarray  # float64 (m,): nominal step h_i
    rel_step: float | None  # r, or None when the user gave an absolute step
    seed: int


def coarser(*dtypes: np.dtype) -> np.dtype:
    """The dtype with the largest machine epsilon."""
    return max((np.dtype(d) for d in dtypes), key=lambda d: np.finfo(d).eps)


def make(
    theta: np.ndarray,
    *,
    method: str,
    eps: float | None,
    loss_dtype: np.dtype,
    seed: int,
) -> Plan:
    """Plan a full check of every coordinate of ``theta`` (the flat parameter buffer)."""
    offsets, exponent = METHODS[method]
    idx = np.arange(theta.size, dtype=np.int64)
    x = theta.astype(np.float64)
    if eps is None:
        rel_step = float(np.finfo(coarser(theta.dtype, loss_dtype)).eps ** exponent)
        step = rel_step * np.maximum(1.0, np.abs(x))
    else:
        rel_step = None
        step = np.full(x.shape, float(eps))
    # Round each perturbed value to the storage dtype, then measure in float64 the step the
    # stored values span: exact for float32 storage, and what f actually sees.
    values = np.stack([(x + o * step).astype(theta.dtype) for o in offsets], axis=1)
    values = values.astype(np.float64)
    width = values[:, 0] - (values[:, 1] if len(offsets) == 2 else x)
    if eps is not None:
        # A user's step divides by its nominal width, as the classic exercise does, wherever
        # the stored values span it to 1e-8 (float64 near |x| ~ 1: ~1e-9 off); where they do
        # not (float32, or |x| >> eps) the nominal width would be wrong by up to 100%, so the
        # step actually taken is used there.
        nominal = (offsets[0] - (offsets[1] if len(offsets) == 2 else 0.0)) * step
        width = np.where(np.abs(width - nominal) <= 1e-8 * nominal, nominal, width)
    return Plan(method, idx, np.ascontiguousarray(values), width, step, rel_step, seed)


def collapsed(plan: Plan, theta: np.ndarray) -> np.ndarray:
    """Positions j where the step vanished in the storage dtype (x + h == x - h)."""
    lo = plan.values[:, 1] if plan.values.shape[1] == 2 else theta[plan.idx]
    return np.flatnonzero(plan.values[:, 0] == lo)
