"""Plan: the values the checked coordinates are set to, and the steps taken (which
coordinates are checked is ``_sample``'s).

Steps follow the dtype and the scale of each parameter: ``h_i = r * max(1, |x_i|)`` with
``r = eps**(1/3)`` for central and ``eps**(1/2)`` for forward differences, ``eps`` that of the
coarser of the parameter and loss dtypes. The perturbed values are rounded to the storage
dtype here, once, and the divisor is the step those stored values actually span. A step the
user gives is absolute and divides by its nominal width, as the classic exercise does, as
long as the stored values represent it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _policy


@dataclass(frozen=True)
class Method:
    """Where a method evaluates f, in units of the step h, and how it differences."""

    offsets: tuple[float, ...]  # points x + o h (complex step: x + i h)
    pairs: tuple[tuple[int, int | None], ...]  # (i, j): F_i - F_j, or F_i - f(x) when j is None
    exponent: float  # default step: h = eps**exponent * max(1, |x|)


METHODS = {
    "central": Method((1.0, -1.0), ((0, 1),), 1 / 3),
    "forward": Method((1.0,), ((0, None),), 1 / 2),
    # Richardson: central differences at h and h/2 combined to cancel the h^2 term.
    "richardson": Method((1.0, -1.0, 0.5, -0.5), ((0, 1), (2, 3)), 1 / 5),
    "complex": Method((1.0,), ((0, None),), math.nan),
}


class StepTooSmall(ValueError):
    """A step the user gave vanishes at some parameter: ``x + eps`` rounds to ``x - eps``."""


@dataclass(frozen=True)
class Plan:
    """What the engines evaluate: f at theta with theta[idx[j]] set to values[j, k].

    For the complex step ``values`` is the real part of the one point, ``base``, and the
    imaginary part is ``step``.
    """

    method: str
    idx: np.ndarray  # int64 (m,): flat indices of the checked coordinates
    base: np.ndarray  # float64 (m,): their values at params
    values: np.ndarray  # float64 (m, K): perturbed values, representable in the buffer dtype
    width: np.ndarray  # float64 (m, P): the divisor of each difference of the method
    step: np.ndarray  # float64 (m,): nominal step h_i
    rel_step: float | None  # r, or None when the user gave an absolute step
    seed: int


def coarser(*dtypes: np.dtype) -> np.dtype:
    """The dtype with the largest machine epsilon."""
    return max((np.dtype(d) for d in dtypes), key=lambda d: np.finfo(d).eps)


def relative_step(method: str, dtype: np.dtype, loss_dtype: np.dtype) -> float:
    """The relative step r of h_i = r * max(1, |x_i|), from the coarser dtype's epsilon."""
    coarse = coarser(dtype, loss_dtype)
    if method == "complex":
        return _policy.COMPLEX_STEP[coarse]
    return float(np.finfo(coarse).eps ** METHODS[method].exponent)


def make(
    theta: np.ndarray,
    idx: np.ndarray,
    *,
    method: str,
    eps: float | None,
    loss_dtype: np.dtype,
    seed: int,
    rel_step: float | None = None,
) -> Plan:
    """Plan the coordinates ``idx`` (sorted flat indices) of ``theta``, the flat buffer.

    ``rel_step`` overrides the method's default relative step (a step sweep uses it).
    """
    spec = METHODS[method]
    x = theta[idx].astype(np.float64)
    if eps is None:
        rel_step = rel_step or relative_step(method, theta.dtype, loss_dtype)
        step = rel_step * np.maximum(1.0, np.abs(x))
    else:
        rel_step = None
        step = np.full(x.shape, float(eps))
    if method == "complex":
        # The imaginary step is exact in any dtype: no rounding to measure.
        return Plan(method, idx, x, x[:, None].copy(), step[:, None].copy(), step, rel_step, seed)
    # Round each perturbed value to the storage dtype, then measure in float64 the step the
    # stored values span: exact for float32 storage, and what f actually sees.
    values = np.stack([(x + o * step).astype(theta.dtype) for o in spec.offsets], axis=1)
    values = values.astype(np.float64)
    width = np.stack(
        [values[:, i] - (x if j is None else values[:, j]) for i, j in spec.pairs], axis=1
    )
    if eps is not None:
        # A user's step divides by its nominal width, as the classic exercise does, wherever
        # the stored values span it (NOMINAL_WIDTH); where they do not (float32, or
        # |x| >> eps) the nominal width would be wrong by up to 100%, so the step actually
        # taken is used there.
        offsets = spec.offsets
        nominal = np.stack(
            [(offsets[i] - (0.0 if j is None else offsets[j])) * step for i, j in spec.pairs],
            axis=1,
        )
        close = np.abs(width - nominal) <= _policy.NOMINAL_WIDTH * nominal
        width = np.where(close, nominal, width)
    return Plan(method, idx, x, np.ascontiguousarray(values), width, step, rel_step, seed)


def collapsed(plan: Plan) -> np.ndarray:
    """Positions j where a step vanished in the storage dtype (x + h == x - h)."""
    return np.flatnonzero((plan.width == 0).any(axis=1))


def refuse_collapsed(plan: Plan, layout: Any, theta: np.ndarray, eps: float | None) -> None:
    """Raise :class:`StepTooSmall` when the user's ``eps`` vanishes at a planned entry."""
    if eps is None:
        return
    gone = collapsed(plan)
    if gone.size:
        i = int(plan.idx[gone[0]])
        raise StepTooSmall(
            f"`eps`={eps!r} is below the resolution of {layout.entry_name(i)} = "
            f"{theta[i]!r}: x + eps and x - eps round to the same number"
        )


def direction(
    x: np.ndarray, rel_step: float, rng: np.random.Generator, *, absolute: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The two points of one central difference along a random direction over ``x``.

    The direction is Gaussian, scaled by max(1, |x_i|) like a coordinate step and normalised
    so that the derivative along it has the size of a coordinate's, and the step is the
    coordinate step ``rel_step``. Gaussian, not +-1 entries: Rademacher directions cancel a
    +delta/-delta error pair exactly half the time. Returns the points rounded to the
    storage dtype of ``x``. ``absolute``: ``rel_step`` is the user's absolute step ``eps``,
    taken as it is (no scaling by |x|), like a coordinate's.
    """
    z = rng.standard_normal(x.size)
    v = z if absolute else z * np.maximum(1.0, np.abs(x.astype(np.float64)))
    v *= rel_step / max(float(np.linalg.norm(z)), np.finfo(np.float64).tiny)
    x64 = x.astype(np.float64)
    return (x64 + v).astype(x.dtype), (x64 - v).astype(x.dtype)
