"""How noisy is f? Its rounding noise and whether it is deterministic.

The finite-difference error of each coordinate is at least the noise of f over the step;
thresholds that ignore it fail correct gradients of noisy losses (inner solvers, long sums,
float32). Two probes, about twenty evaluations in all:

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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Points on the line (the middle one is params itself) and attempts at a usable spacing.
POINTS = 9
ATTEMPTS = 3
FIRST_SPACING = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-3}


@dataclass(frozen=True)
class Noise:
    level: float  # the noise of f used for the error model: max(estimate, u |f0|)
    spread: float  # max - min of repeated f(params)
    evaluations: int


def measure(
    evaluate: Callable[[list], np.ndarray],
    buffer: np.ndarray,
    f0: float,
    rounding: float,
    rng: np.random.Generator,
    dtype: np.dtype,
) -> Noise:
    """Probe f around ``buffer``; ``evaluate(points)`` as for the directional checks.

    ``dtype`` is the coarser of the parameters' and the loss's: it sets the first spacing.
    """
    n = buffer.size
    repeats = evaluate([(0, n, buffer), (0, n, buffer)])
    values = np.append(repeats, f0)
    spread = float(values.max() - values.min()) if np.isfinite(values).all() else np.inf
    spent = 2
    direction = rng.standard_normal(n)
    direction /= np.linalg.norm(direction)
    x = buffer.astype(np.float64)
    spacing = FIRST_SPACING.get(np.dtype(dtype), 1e-9) * max(1.0, float(np.abs(x).max()))

    def on_line(spacing):
        offsets = (np.arange(POINTS) - POINTS // 2) * spacing
        points = [(0, n, (x + t * direction).astype(buffer.dtype)) for t in offsets if t != 0]
        return np.insert(evaluate(points), POINTS // 2, f0), len(points)

    estimated = None
    for _ in range(ATTEMPTS):
        line, count = on_line(spacing)
        spent += count
        estimated, verdict = ecnoise(line)
        if verdict == "ok":
            break
        spacing = spacing * 100 if verdict == "too small" else spacing / 100
        estimated = None
    if estimated is not None:
        # Noise keeps its level at a spacing 100 times smaller; a kink on the line (ReLU
        # units at 0 at params) or an unresolved trend shrinks with the spacing, and leaves
        # no plateau there ("too large"): keep the smaller reading. A finer line that is
        # flat ("too small") shows f moving in steps, which is what the coarse line read.
        line, count = on_line(spacing / 100)
        spent += count
        finer, verdict = ecnoise(line)
        if verdict == "ok":
            estimated = min(estimated, finer)
        elif verdict == "too large":
            estimated = None
    level = max(rounding, estimated or 0.0, spread)
    return Noise(level, spread, spent)


def ecnoise(values) -> tuple[float | None, str]:
    """The noise level of equally spaced ``values`` of f: (level, "ok"), or (None, why).

    Nine numbers: plain Python floats are faster here than numpy arrays.
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
    if max(values) - min(values) > 0.1 * max(abs(v) for v in values):
        return None, "too large"  # f changes too much along the line: not noise
    table = [b - a for a, b in itertools.pairwise(values)]
    if sum(d == 0.0 for d in table) > len(table) / 2:
        return None, "too small"  # mostly identical values: below the resolution of f
    gamma = 1.0
    levels, signs_change = [], []
    for k in range(1, len(values)):
        gamma *= k / (2 * (2 * k - 1))  # (k!)^2 / (2k)!
        levels.append(math.sqrt(gamma * sum(d * d for d in table) / len(table)))
        signs_change.append(max(table) > 0 > min(table))
        table = [b - a for a, b in itertools.pairwise(table)]
    # The first order from which three levels agree within a factor of 4 and the differences
    # change sign: smooth trends have died out and what remains is noise.
    for k in range(len(levels) - 2):
        trio = levels[k : k + 3]
        if max(trio) <= 4 * min(trio) and signs_change[k]:
            return levels[k] * scale, "ok"
    return None, "too large"
