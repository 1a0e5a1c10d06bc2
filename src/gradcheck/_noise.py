"""How noisy is f? Its rounding noise and whether it is deterministic.

The finite-difference error of each coordinate is at least the noise of f over the step;
thresholds that ignore it fail correct gradients of noisy losses (inner solvers, long sums,
float32). Two probes, about twenty evaluations in all, through the check's engine:

- repeat: f(params) twice more; any change means f is not deterministic (dropout, data
  order, atomics), and no finite difference of it can be trusted.
- ECnoise (Moré & Wild, "Estimating computational noise", SIAM J. Sci. Comput. 33(3),
  2011): f at 9 equally spaced points along a random direction; the k-th differences of a
  smooth function shrink with k while those of noise settle at a level set by the noise,
  which the scaled difference table reads off. The reading is repeated at a spacing 100
  times smaller: noise keeps its level, a kink on the line does not.
"""

from __future__ import annotations

import itertools
import math
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _policy
from ._results import Note, Verdict


@dataclass(frozen=True)
class Noise:
    """What the probe found."""

    level: float  # the noise of f for the error model: max(estimate, u |f0|, repeats' spread)
    note: Note | None = None  # f is not deterministic: no finite difference can be trusted


def rounding(f0: float, dtype: np.dtype) -> float:
    """How far rounding alone can move a computed value of f near ``f0``: u |f0|."""
    return float(np.finfo(dtype).eps / 2 * abs(f0))


def measure(problem: Any, evaluator: Any, rng: np.random.Generator, lo: int = 0, hi=None):
    """Probe f around params through ``evaluator.segments``; the line lies in [lo, hi).

    The problem's coarser dtype sets the first spacing and the rounding floor.
    """
    u_f = rounding(problem.f0, problem.dtype)
    theta = problem.theta
    hi = theta.size if hi is None else hi
    whole = theta[lo:hi].copy()
    repeats = evaluator.segments([(lo, hi, whole), (lo, hi, whole)])
    values = np.append(repeats, problem.f0)
    spread = float(values.max() - values.min()) if np.isfinite(values).all() else np.inf
    # Nondeterminism is the same call on the same memory giving another value: the two
    # repeats. f(params) from the first call ran on another copy of the parameters, and a
    # long sum's rounding can follow the memory's alignment (BLAS splits a dot product
    # where the SIMD lanes start): that difference is noise the differences see, not a
    # random f.
    repeated = float(abs(repeats[0] - repeats[1])) if np.isfinite(repeats).all() else np.inf
    direction = rng.standard_normal(hi - lo)
    direction /= np.linalg.norm(direction)
    x = whole.astype(np.float64)
    first = _policy.NOISE_FIRST_SPACING.get(np.dtype(problem.dtype), 1e-9)
    spacing = first * max(1.0, float(np.abs(x).max()))
    respace = _policy.NOISE_RESPACE
    points = _policy.NOISE_POINTS

    steps = np.delete(np.arange(points) - points // 2, points // 2).astype(np.float64)

    def on_line(spacing):
        rows = (x[None, :] + (steps * spacing)[:, None] * direction[None, :]).astype(theta.dtype)
        found = evaluator.segments([(lo, hi, row) for row in rows]).tolist()
        return [*found[: points // 2], problem.f0, *found[points // 2 :]]

    estimated, flat = None, True
    for _ in range(_policy.NOISE_ATTEMPTS):
        line = on_line(spacing)
        flat = not crosses_zero(line)
        estimated, verdict = ecnoise(line, flat)
        if verdict == "ok":
            break
        spacing = spacing * respace if verdict == "too small" else spacing / respace
        estimated = None
    if estimated is not None:
        # Noise keeps its level at a spacing NOISE_RESPACE times smaller; a kink on the line
        # (ReLU units at 0 at params) or an unresolved trend shrinks with the spacing, and
        # leaves no plateau there ("too large"): keep the smaller reading. A finer line that
        # is flat ("too small") shows f moving in steps, which is what the coarse line read.
        finer, verdict = ecnoise(on_line(spacing / respace), flat)
        if verdict == "ok":
            assert finer is not None, "ecnoise gives a level with 'ok'"
            estimated = min(estimated, finer)
        elif verdict == "too large":
            estimated = None
    note = None
    if repeated > _policy.NONDETERMINISTIC * u_f:
        note = Note(
            f"inconclusive: f is not deterministic: f(params) changed by {repeated:.3g} "
            "between two calls at params (dropout, random batches, nondeterministic "
            "kernels?); fix its randomness before checking",
            floor=Verdict.INCONCLUSIVE,
        )
    return Noise(max(u_f, estimated or 0.0, spread), note)


def ecnoise(values, flat: bool = True) -> tuple[float | None, str]:
    """The noise level of equally spaced ``values`` of f: (level, "ok"), or (None, why).

    ``flat``: a line along which f moves by more than ECNOISE_FLAT of |f| is refused (see
    ``crosses_zero`` for when |f| sets no scale). Nine numbers: plain Python floats are
    faster here than numpy arrays.
    """
    values = [float(v) for v in values]
    if not all(math.isfinite(v) for v in values):
        return None, "too large"
    scale = max(abs(v) for v in values)
    if scale == 0.0:
        return None, "too small"
    # Work relative to the largest value (an exact power of two), so squares cannot overflow.
    scale = math.ldexp(1.0, math.frexp(scale)[1])
    values = [v / scale for v in values]
    if flat and max(values) - min(values) > _policy.ECNOISE_FLAT * max(abs(v) for v in values):
        return None, "too large"  # f changes too much along the line: not noise
    table = [b - a for a, b in itertools.pairwise(values)]
    if sum(d == 0.0 for d in table) > len(table) / 2:
        return None, "too small"  # mostly identical values: below the resolution of f
    bends = [b - a for a, b in itertools.pairwise(table)]
    if not flat and sum(d == 0.0 for d in bends) > len(bends) / 2:
        # Where |f| sets no scale, a line mostly straight to the last bit shows f's slope
        # moving in steps of its rounding, as identical values show a flat f's.
        return None, "too small"
    gamma = 1.0
    levels, signs_change = [], []
    agree = _policy.ECNOISE_AGREE
    for k in range(1, len(values)):
        gamma *= k / (2 * (2 * k - 1))  # (k!)^2 / (2k)!
        levels.append(math.sqrt(gamma * sum(map(operator.mul, table, table)) / len(table)))
        signs_change.append(max(table) > 0 > min(table))
        table = [b - a for a, b in itertools.pairwise(table)]
        # The first order from which three levels agree within ECNOISE_AGREE and the
        # differences change sign: smooth trends have died out and what remains is noise.
        if len(levels) >= 3:
            first = len(levels) - 3
            trio = levels[first:]
            if max(trio) <= agree * min(trio) and signs_change[first]:
                return levels[first] * scale, "ok"
    return None, "too large"


def crosses_zero(values) -> bool:
    """Whether f changes sign along a line: then |f| sets no scale for ECnoise's flatness
    rule, on this line or on the finer one that confirms it.

    f ~ 0 where the terms of a sum cancel (an odd function of points symmetric about 0):
    its slope spans any line the entries resolve, and its rounding, set by the terms and
    not by |f|, is all that remains of f on the finer line. The table's differences of
    order 2 and more do not see the slope, and its plateau and sign-change rules still
    refuse a trend or a kink; with the rule, the probe read nothing and a correct gradient
    failed on the entries whose differences that rounding dominates.
    """
    return min(values) < 0.0 < max(values)
