"""Reach: what a check could have missed, per block, from what it actually did.

A green check is worth what it could have caught. From a block's checked entries (their
values, what their noise allows, the thresholds the judge held the block to), its random
directions and how many of its entries were looked at, this module works out:

- the smallest factor error on the whole block (``grad -> (1 + c) grad``) that fails it
  whatever the noise did: a bound from the triangle inequality on the block's own norms;
- the smallest relative error on one checked entry that fails the block, entry by entry
  (by the single-entry rule and by the block's difference), reported for the median
  entry, and the chance that a given entry was among those checked;
- the smallest fraction of the block's entries, each off by ``_policy.REACH_ERROR`` of
  the block's root-mean-square entry, that the coordinates and the directions together
  catch with probability at least ``_policy.REACH_PROBABILITY``.

The judge's rules fix every number: a planted error of the stated size fails the block
when the comparison runs again (``_control`` does exactly that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _policy
from ._results import Reach


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
    """Per checked entry, the smallest absolute error ``|e|`` (``a_i -> a_i + e``) that
    fails the block: by the single-entry rule (score above ``ENTRY_FAIL``) or by the
    block's difference, whichever needs less; inf where the thresholds leave nothing to
    fail. Over ``|a_i|`` it is the smallest relative error.

    Entry rule: the planted error is at least ``|e| - |a_i - b_i|`` and the allowance at
    most ``allowance_i + rtol |e|``, so a score above F is sure when
    ``|e| (1 - F rtol) > F allowance_i + |a_i - b_i|``. Block rule: as for
    :func:`factor`, with ``|e|`` in place of ``|c| |a|``.
    """
    na, nb, nd = norms
    fail = _policy.ENTRY_FAIL
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        by_entry = (fail * allowance + np.abs(a - b)) / (1 - fail * rtol)
        by_block = (nd + t * (na + nb)) / (1 - t) if t < 1 else math.inf
        e = _policy.REACH_MARGIN * np.minimum(by_entry, by_block)
    return np.where(np.isfinite(e), e, np.inf)


def relative(e: np.ndarray, a: np.ndarray) -> np.ndarray:
    """The smallest failing absolute errors ``e`` as errors relative to each entry's
    value ``a`` (inf where it is 0: no relative error moves it).
    """
    size = np.abs(a)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x = e / size
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


def fraction(
    n: int, checked: float, k: int, t: float, error: float, spread: Spread | None = None
) -> float:
    """The smallest fraction of ``n`` entries, each off by ``error`` RMS entries, that is
    caught with probability at least ``REACH_PROBABILITY``; NaN when not even all are.
    """
    target = 1 - _policy.REACH_PROBABILITY
    if n <= 0 or fraction_miss(n, checked, k, t, n, error, spread) > target:
        return math.nan
    lo, hi = 0, n  # miss(lo) > target >= miss(hi); the chance falls as bad grows
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fraction_miss(n, checked, k, t, mid, error, spread) <= target:
            hi = mid
        else:
            lo = mid
    return hi / n


def coordinates(
    size: int,
    checked: int,
    e: np.ndarray,
    a: np.ndarray,
    norms: tuple[float, float, float],
    t: float,
    rms: float,
) -> Reach:
    """What a block's coordinates could have missed: ``e`` are the checked entries'
    smallest failing absolute errors (:func:`entries`) and ``a`` their analytic values,
    ``norms`` the block's ``(|a|, |b|, |a - b|)`` over them, ``t`` its fail threshold,
    ``rms`` the root mean square of the block's whole gradient (what ``fraction``'s errors
    are measured in).
    """
    error = _policy.REACH_ERROR
    x = relative(e, a)
    caught = float((e <= error * rms).mean()) if e.size and rms > 0 else 0.0
    whole = factor(*norms, t)
    first = float(x.min()) if x.size else math.inf
    if math.isfinite(first):
        # A factor moves every entry by itself: the first entry to fail fails the block.
        whole = first if whole != whole else min(whole, first)
    return Reach(
        factor=whole,
        entry=typical(x, a),
        seen=checked / size if size else 0.0,
        single=1 - fraction_miss(size, checked * caught, 0, 1.0, 1, error),
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
    spread: Spread | None,
) -> Reach:
    """``reach`` (the coordinates', None when no coordinate was checked) with what ``k``
    directions add: a factor they catch (from their own norms and threshold) and their
    share in catching a fraction of wrong entries (weighted by ``spread``).
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
    base = reach or Reach(math.nan, math.nan, 0.0, 0.0, math.nan, 0.0, error)
    whole = base.factor
    if along == along and not whole <= along:
        whole = along
    share = checked * base.caught
    k_seen = k if numeric.size else 0
    return Reach(
        factor=whole,
        entry=base.entry,
        seen=base.seen,
        single=1 - fraction_miss(size, share, k_seen, t_seen, 1, error, spread),
        fraction=fraction(size, share, k_seen, t_seen, error, spread),
        caught=base.caught,
        error=error,
    )
