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

import numpy as np

from . import _policy
from ._chance import Spread, fraction_miss
from ._norms import segment_differences
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
    smallest failing absolute errors (``Judge.least_errors``) and ``a`` their analytic values,
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
    numeric: np.ndarray,
    predicted: np.ndarray,
    t: float,
    spread: Spread | None,
) -> Reach:
    """``reach`` (the coordinates', None when no coordinate was checked) with what the
    directions add (``numeric``, ``predicted``: those along which f was finite): a factor
    they catch (from their own norms and threshold) and their share in catching a fraction
    of wrong entries (weighted by ``spread``).
    """
    error = _policy.REACH_ERROR
    if numeric.size:
        norms, diffs = segment_differences(predicted, numeric, np.array([0, numeric.size]))
        na, nb = float(norms[0, 0]), float(norms[0, 1])
        d = float(diffs[0])
        along = factor(na, nb, d * (na + nb), t)
        t_seen = min(1.0, t + (d if d == d else 1.0))  # what is already there raises the bar
    else:
        along, t_seen = math.inf, 1.0  # every direction was blind: they catch no factor
    base = reach or Reach(math.nan, math.nan, 0.0, 0.0, math.nan, 0.0, error)
    whole = base.factor
    if along == along and not whole <= along:
        whole = along
    share = base.seen * size * base.caught  # the judged entries such an error fails
    k_seen = int(numeric.size)  # a direction along which f was not finite saw nothing
    return Reach(
        factor=whole,
        entry=base.entry,
        seen=base.seen,
        single=1 - fraction_miss(size, share, k_seen, t_seen, 1, error, spread),
        fraction=fraction(size, share, k_seen, t_seen, error, spread),
        caught=base.caught,
        error=error,
    )
