"""Reach: what a check could have missed, per block, from what it actually did.

A green check is worth what it could have caught. From a block's checked entries (their
values, what their noise allows, the thresholds the judge held the block to), its random
directions and how many of its entries were looked at, this module works out:

- the smallest factor error on the whole block (``grad -> (1 + c) grad``) that fails it
  whatever the noise did: a bound from the triangle inequality on the block's own norms;
- the smallest relative error on one checked entry that fails the block, entry by entry
  (by the single-entry rule and by the block's difference), reported for the median
  entry, and the chance that a given entry was among those checked;
- the smallest fraction of the block's entries, each off by ``_policy.REACH_ERROR``, that
  the coordinates and the directions together catch with probability at least
  ``_policy.REACH_PROBABILITY``.

The judge's rules fix every number: a planted error of the stated size fails the block
when the comparison runs again (``_control`` does exactly that).
"""

from __future__ import annotations

import math

import numpy as np

from . import _policy
from ._results import Reach


def factor(norm_a: float, norm_b: float, norm_err: float, t: float) -> float:
    """The smallest ``|c|`` with ``(1 + c) a`` against ``b`` over fail threshold ``t``.

    The planted difference is at least ``|c| |a| - |a - b|`` over at most
    ``(1 + |c|) |a| + |b|``: it fails when ``|c| |a| (1 - t) > |a - b| + t (|a| + |b|)``.
    Inf when the threshold leaves nothing to fail (``t >= 1``); NaN for a block whose
    gradient is 0 on both sides (a factor changes nothing there).
    """
    if not norm_a > 0:
        return math.nan
    if not t < 1:
        return math.inf
    return _policy.REACH_MARGIN * (norm_err + t * (norm_a + norm_b)) / (norm_a * (1 - t))


def entries(
    a: np.ndarray,
    b: np.ndarray,
    allowance: np.ndarray,
    norms: tuple[float, float, float],
    t: float,
    rtol: float,
) -> np.ndarray:
    """Per checked entry, the smallest relative error ``|x|`` (``a_i -> (1 + x) a_i``)
    that fails the block: by the single-entry rule (score above ``ENTRY_FAIL``) or by the
    block's difference, whichever needs less. Inf where ``a_i`` is 0 (no relative error
    moves it) or the thresholds leave nothing to fail.

    Entry rule: the planted error is at least ``|x| |a_i| - |a_i - b_i|`` and the
    allowance at most ``allowance_i + rtol |x| |a_i|``, so a score above F is sure when
    ``|x| |a_i| (1 - F rtol) > F allowance_i + |a_i - b_i|``. Block rule: as for
    :func:`factor`, with ``|x| |a_i|`` in place of ``|c| |a|``.
    """
    na, nb, nd = norms
    size = np.abs(a)
    fail = _policy.ENTRY_FAIL
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        by_entry = (fail * allowance + np.abs(a - b)) / (size * (1 - fail * rtol))
        by_block = (nd + t * (na + nb)) / (size * (1 - t)) if t < 1 else np.full(a.shape, np.inf)
        x = _policy.REACH_MARGIN * np.minimum(by_entry, by_block)
    return np.where((size > 0) & np.isfinite(x), x, np.inf)


def typical(x: np.ndarray, a: np.ndarray) -> float:
    """The error that fails the median checked entry among those not 0 (inf when more
    than half of them can fail at no size; NaN when every checked entry is 0).
    """
    x = x[a != 0]
    return float(np.median(x)) if x.size else math.nan


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


def fraction_miss(n: int, checked: float, k: int, t: float, bad: int, error: float = 1.0) -> float:
    """The chance that a bug in ``bad`` of ``n`` entries, each off by ``error`` times its
    own size, goes unseen by ``checked`` entries checked one by one (those that fail at
    that error) and ``k`` directions at fail threshold ``t``.

    Such a bug's error has a norm of about ``error sqrt(bad / n)`` times the block's
    gradient; the coordinates' and the directions' chances multiply.
    """
    if n <= 0 or bad <= 0:
        return 1.0
    miss = hypergeometric_miss(n, checked, bad)
    if k and miss > 0:
        miss *= directions_miss(k, error * math.sqrt(min(bad, n) / n), t)
    return miss


def fraction(n: int, checked: float, k: int, t: float, error: float) -> float:
    """The smallest fraction of ``n`` entries, each off by ``error``, that is caught with
    probability at least ``REACH_PROBABILITY``; NaN when not even all of them are.
    """
    target = 1 - _policy.REACH_PROBABILITY
    if n <= 0 or fraction_miss(n, checked, k, t, n, error) > target:
        return math.nan
    lo, hi = 0, n  # miss(lo) > target >= miss(hi); the chance falls as bad grows
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fraction_miss(n, checked, k, t, mid, error) <= target:
            hi = mid
        else:
            lo = mid
    return hi / n


def coordinates(
    size: int,
    checked: int,
    x: np.ndarray,
    a: np.ndarray,
    norms: tuple[float, float, float],
    t: float,
) -> Reach:
    """What a block's coordinates could have missed: ``x`` are the checked entries'
    smallest failing errors (:func:`entries`) and ``a`` their analytic values, ``norms``
    the block's ``(|a|, |b|, |a - b|)``, ``t`` its fail threshold.
    """
    error = _policy.REACH_ERROR
    # A relative error moves no entry that is 0: the share is of those that are not.
    nonzero = a != 0
    caught = float((x[nonzero] <= error).mean()) if nonzero.any() else 0.0
    whole = factor(*norms, t)
    first = float(x.min()) if x.size else math.inf
    if math.isfinite(first):
        # A factor moves every entry by itself: the first entry to fail fails the block.
        whole = first if whole != whole else min(whole, first)
    return Reach(
        factor=whole,
        entry=typical(x, a),
        seen=checked / size if size else 0.0,
        fraction=fraction(size, checked * caught, 0, 1.0, error),
        caught=caught,
        error=error,
    )


def with_directions(
    reach: Reach | None,
    size: int,
    k: int,
    numeric: np.ndarray,
    predicted: np.ndarray,
    t: float,
    checked: int,
) -> Reach:
    """``reach`` (the coordinates', None when no coordinate was checked) with what ``k``
    directions add: a factor they catch (from their own norms and threshold) and their
    share in catching a fraction of wrong entries.
    """
    error = _policy.REACH_ERROR
    if numeric.size:
        from ._norms import segment_differences

        norms, diffs = segment_differences(predicted, numeric, np.array([0, numeric.size]))
        na, nb = float(norms[0, 0]), float(norms[0, 1])
        d = float(diffs[0])
        along = factor(na, nb, d * (na + nb), t)
        t_seen = min(1.0, t + (d if d == d else 1.0))  # what is already there raises the bar
    else:
        along, t_seen = math.nan, 1.0
    base = reach or Reach(math.nan, math.nan, 0.0, math.nan, 0.0, error)
    whole = base.factor
    if along == along and not whole <= along:
        whole = along
    share = checked * base.caught
    return Reach(
        factor=whole,
        entry=base.entry,
        seen=base.seen,
        fraction=fraction(size, share, k if numeric.size else 0, t_seen, error),
        caught=base.caught,
        error=error,
    )
