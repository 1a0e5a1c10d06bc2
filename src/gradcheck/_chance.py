"""The chance that a check misses a bug: sampled coordinates (drawn without replacement)
and random directions (Gaussian, weighted as the directions weigh a block's entries).

Pure arithmetic on counts and norms, below the records that report it
(``BlockResult.miss_probability``) and the reach of a block (``_reach``) that uses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _policy


@dataclass(frozen=True)
class Spread:
    """How a block's random directions weigh its entries, for the chance they miss errors.

    A direction is Gaussian scaled entrywise by ``D_i = max(1, |x_i|)`` (see
    ``_plan.direction``): an error ``e`` shows along it as ``|D e|`` against the gradient's
    ``|D g|``, not as ``|e|`` against ``|g|``. An error of the same size ``s rms(g)`` on
    ``bad`` entries at ``i`` has ``|D e| / |D g| = s sqrt(bad / n) w_i`` with
    ``w_i = D_i rms(g) / rms(D g)``; ``mean`` is the root mean square of the ``w_i``
    (what many wrong entries see) and ``quantiles`` the ``w_i`` at evenly spaced ranks
    (what a few wrong entries may see).
    """

    mean: float
    quantiles: tuple[float, ...]

    @classmethod
    def of(cls, x: np.ndarray, g: np.ndarray, absolute: bool) -> Spread:
        """The spread of directions over parameters ``x`` with gradient ``g``;
        ``absolute``: the user's step, no scaling by ``|x|``.
        """
        if absolute or not x.size:
            return cls(1.0, (1.0,))
        scale = np.maximum(1.0, np.abs(x.astype(np.float64)))
        top = float(np.abs(g).max())
        if top == 0.0 or not math.isfinite(top):
            return cls(1.0, (1.0,))
        gs = g / top  # scaled: no overflow in the squares
        dg = scale * gs
        rms_dg = math.sqrt(float(dg @ dg))
        if rms_dg == 0.0:
            return cls(1.0, (1.0,))
        ratio = math.sqrt(float(gs @ gs)) / rms_dg  # of the sums: the 1 / n cancels
        mean = ratio * math.sqrt(float(scale @ scale) / scale.size)
        # The ranked weights from evenly strided entries: sixteen quantiles need no more
        # than a few thousand of them, and a block of millions is not sorted for them.
        stride = max(1, scale.size // _policy.REACH_SPREAD_SAMPLE)
        ranks = (np.arange(_policy.REACH_QUANTILES) + 0.5) / _policy.REACH_QUANTILES
        quantiles = np.quantile(scale[::stride], ranks) * ratio
        return cls(mean, tuple(float(q) for q in quantiles))


def hypergeometric_miss(n: int, m: float, bad: int) -> float:
    """The chance that ``m`` entries drawn from ``n`` without replacement hold none of
    ``bad``: ``C(n - bad, m) / C(n, m)`` (in logs; ``m`` may be fractional, a share of the
    checked entries, through the gamma function).
    """
    if bad <= 0 or m <= 0:
        return 1.0
    if m > n - bad:
        return 0.0
    log_p = (
        math.lgamma(n - bad + 1)
        - math.lgamma(n - bad - m + 1)
        - math.lgamma(n + 1)
        + math.lgamma(n - m + 1)
    )
    return min(1.0, math.exp(log_p))


def directions_miss(k: int, ratio: float, t: float) -> float:
    """The chance that ``k`` Gaussian directions miss an error ``e`` of norm ``ratio``
    times the gradient's ``g``, at fail threshold ``t``.

    Along ``k`` directions ``V``, ``Ve`` and ``Vg`` are independent normal vectors (``e``
    taken orthogonal to ``g``, as an error scattered over a few entries nearly is), and
    the block misses the error while ``|Ve| / (|V(g + e)| + |Vg|) <= t``; the denominator
    is at most ``2 |Vg| + |Ve|``, so a miss needs ``|Ve|^2 / |Vg|^2 <= r^2`` with
    ``r = 2 t / ((1 - t) ratio)``. ``W = |Ve|^2 / (|Ve|^2 + |Vg|^2)`` is Beta(k/2, k/2), so
    the chance is at most ``I_w(k/2, k/2)`` at ``w = r^2 / (1 + r^2)``; one direction gives
    ``(2 / pi) atan(r)``.
    """
    if k <= 0 or not t < 1 or not ratio > 0:
        return 1.0
    r = 2 * t / ((1 - t) * ratio)
    w = r * r / (1 + r * r)
    return betainc(k / 2, k / 2, w)


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function ``I_x(a, b)`` (continued fraction,
    modified Lentz), for the few calls a report makes; no scipy needed.
    """
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast on this side only
        return 1.0 - betainc(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return min(1.0, max(0.0, front * h / a))


def fraction_miss(
    n: int,
    checked: float,
    k: int,
    t: float,
    bad: int,
    error: float = 1.0,
    spread: Spread | None = None,
) -> float:
    """The chance that a bug in ``bad`` of ``n`` entries, each off by ``error`` times the
    block's root-mean-square entry, goes unseen by ``checked`` entries checked one by one
    (those that fail at that error) and ``k`` directions at fail threshold ``t``.

    Such a bug's error has a norm of ``error sqrt(bad / n)`` times the block's gradient,
    as the directions see it weighted by ``spread`` (isotropic when None): a few wrong
    entries by each of its quantiles in turn (the chance averaged over them), many by its
    mean. The coordinates' and the directions' chances multiply.
    """
    if n <= 0 or bad <= 0:
        return 1.0
    miss = hypergeometric_miss(n, checked, bad)
    if k and miss > 0:
        rho = error * math.sqrt(min(bad, n) / n)
        if spread is None:
            miss *= directions_miss(k, rho, t)
        elif bad >= _policy.REACH_QUANTILES:
            miss *= directions_miss(k, rho * spread.mean, t)
        else:
            chances = [directions_miss(k, rho * w, t) for w in spread.quantiles]
            miss *= sum(chances) / len(chances)
    return miss
