"""Plan: which coordinates are checked, the values they are set to, and the steps taken.

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


@dataclass(frozen=True)
class Selection:
    """What a check looks at: coordinates one by one, directions per block, which blocks."""

    idx: np.ndarray  # sorted flat indices checked one by one
    sample: int | float | None
    directions: int | None
    blocks: tuple[int, ...]  # the blocks in scope (a monitor checks one at a time)


def select(layout: Any, sample, directions, rng: np.random.Generator, blocks=None) -> Selection:
    """The coordinates to check: a stratified sample, none (directions only), or all.

    ``blocks`` limits the check to those blocks (indices into ``layout.blocks``).
    """
    scope = tuple(range(len(layout.blocks))) if blocks is None else tuple(blocks)
    sizes = np.diff(layout.offsets)
    if len(scope) < len(layout.blocks):
        sizes = np.where(np.isin(np.arange(sizes.size), scope), sizes, 0)
    if sample is not None:
        idx = draw_sample(layout.offsets, sizes, sample, rng)
    elif directions is not None:
        idx = np.empty(0, dtype=np.int64)
    elif len(scope) == len(layout.blocks):
        idx = np.arange(layout.n, dtype=np.int64)
    else:
        idx = np.concatenate(
            [np.arange(layout.offsets[k], layout.offsets[k + 1], dtype=np.int64) for k in scope]
        )
    return Selection(idx, sample, directions, scope)


def fit_budget(budget, costs, sizes, sample, directions, *, method):
    """``(sample, directions)`` (those given stay) so the check takes ``budget`` seconds.

    ``costs`` is ``(per_call, per_round)``: seconds one evaluation of f takes, and
    evaluations one random direction over every block in scope costs (at least 2 a block;
    more on a large block, where drawing the direction and writing it in are not free).
    ``sizes`` are those of the blocks in scope; a coordinate costs as many evaluations as
    ``method`` has points.
    """
    per_call, per_round = costs
    affordable = int(budget / per_call)
    n_blocks, n = len(sizes), int(sum(sizes))
    per_coordinate = len(METHODS[method].offsets)
    if sample is None and directions is None and per_coordinate * n <= affordable:
        return None, None  # a full check fits
    if directions is None:
        # Up to 4 directions per block, on at most half the budget; at least one.
        directions = int(min(4, max(1, affordable // (2 * per_round))))
    if sample is None:
        left = affordable - per_round * directions
        fits = left // per_coordinate
        sample = int(fits) if fits >= n_blocks else None
    return sample, directions


def sample_sizes(sizes: np.ndarray, sample: float) -> np.ndarray:
    """How many coordinates of each block a sample of ``sample`` checks (expected counts).

    The per-block counts of :func:`strata`, a pool's count apportioned to its blocks in
    proportion to their sizes (largest remainders); :func:`draw_sample` draws a pool's
    coordinates at random over the whole pool, so its blocks' counts vary around these.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    groups, take = strata(sizes, sample)
    out = np.zeros(sizes.size, dtype=np.int64)
    for group, m in zip(groups, take.tolist(), strict=True):
        out[group] = _apportion(sizes[group], m)
    return out


def strata(sizes: np.ndarray, sample: float) -> tuple[list[np.ndarray], np.ndarray]:
    """``(groups, take)``: the strata a sample is drawn from, and how many from each.

    An int ``sample`` is a total, a float in (0, 1] a fraction of all coordinates; about
    that many are checked in all, whatever the number of blocks. Each block with entries is
    a stratum, unless there are too many for every one to get SAMPLE_FLOOR coordinates:
    then the smallest blocks are pooled into one stratum, sampled as a whole. Each stratum
    gets SAMPLE_FLOOR coordinates first (or all it has); then blocks of up to WHOLE_BLOCK
    entries (biases) are checked whole, smallest first, on at most half of what is left, so
    that the weights never starve; the rest is shared in proportion to size (a bug of a few
    entries hides better in a large block). No stratum is given more than it has.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    n = int(sizes.sum())
    # Rounded before the ceiling: 0.07 * 300 is 21.000000000000004 in binary, not 22 entries.
    total = math.ceil(round(sample * n, 6)) if isinstance(sample, float) else int(sample)
    live = np.flatnonzero(sizes > 0)
    if total >= n:
        return [np.array([k]) for k in live], sizes[live].copy()
    floor = _policy.SAMPLE_FLOOR
    order = live[np.argsort(sizes[live], kind="stable")]
    pooled = 0
    if order.size * floor > total:
        # The fewest smallest blocks whose pooling leaves strata that each get the floor.
        pooled = min(order.size, max(2, order.size + 1 - total // floor))
    groups = ([np.sort(order[:pooled])] if pooled else []) + [
        np.array([k]) for k in np.sort(order[pooled:])
    ]
    room = np.array([int(sizes[g].sum()) for g in groups], dtype=np.int64)
    take = np.minimum(room, min(floor, total))
    left = total - int(take.sum())
    spare = left // 2
    for k in np.argsort(room, kind="stable"):
        need = int(room[k] - take[k])
        if room[k] > _policy.WHOLE_BLOCK or need > spare:
            break
        take[k], spare = room[k], spare - need
    take = _fill(take, room, total - int(take.sum()), equal=False)
    return groups, take


def _fill(take: np.ndarray, room: np.ndarray, amount: int, *, equal: bool) -> np.ndarray:
    """Add ``amount`` to ``take`` (capped at ``room``): equal shares, or by what is left."""
    goal = int(take.sum()) + amount
    for _ in range(room.size + 1):
        # Water-filling: what a capped stratum cannot take goes round again to the others.
        free = room - take
        left = goal - int(take.sum())
        if left <= 0 or not free.any():
            break
        weight = (free > 0).astype(np.float64) if equal else free.astype(np.float64)
        exact = left * weight / weight.sum()
        share = np.floor(exact).astype(np.int64)
        extra = left - int(share.sum())
        if extra > 0:  # largest remainders get the units that flooring dropped
            share[np.argsort(-(exact - share), kind="stable")[:extra]] += 1
        take = np.minimum(room, take + share)
    return take


def _apportion(sizes: np.ndarray, m: int) -> np.ndarray:
    """``m`` split over ``sizes`` in proportion to them, by largest remainders."""
    exact = m * sizes / max(int(sizes.sum()), 1)
    out = np.floor(exact).astype(np.int64)
    extra = m - int(out.sum())
    out[np.argsort(-(exact - out), kind="stable")[:extra]] += 1
    return np.minimum(out, sizes)


def draw_sample(offsets: np.ndarray, sizes: np.ndarray, sample, rng) -> np.ndarray:
    """Sorted flat indices of a sample (see :func:`strata`) over blocks of ``sizes``.

    A stratum of one block draws its coordinates from that block; a pool draws them from
    the concatenation of its blocks' entries, so which small blocks are looked at is random.
    Blocks of size 0 (out of scope) draw nothing, so the stream stays the same.
    """
    groups, take = strata(sizes, sample)
    parts = []
    for group, m in zip(groups, take.tolist(), strict=True):
        if m == 0:
            continue
        starts = offsets[group].astype(np.int64)
        lengths = np.asarray(sizes)[group].astype(np.int64)
        size = int(lengths.sum())
        chosen = np.arange(size) if m >= size else np.sort(rng.choice(size, m, replace=False))
        # Position in the pool -> flat index: its block's start plus its place in the block.
        ends = np.cumsum(lengths)
        owner = np.searchsorted(ends, chosen, side="right")
        parts.append(starts[owner] + chosen - (ends[owner] - lengths[owner]))
    if not parts:
        return np.empty(0, dtype=np.int64)
    return np.sort(np.concatenate(parts)).astype(np.int64)


def direction(
    x: np.ndarray, rel_step: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The two points of one central difference along a random direction over ``x``.

    The direction is Gaussian, scaled by max(1, |x_i|) like a coordinate step and normalised
    so that the derivative along it has the size of a coordinate's, and the step is the
    coordinate step ``rel_step``. Gaussian, not +-1 entries: Rademacher directions cancel a
    +delta/-delta error pair exactly half the time. Returns the points rounded to the
    storage dtype of ``x``.
    """
    z = rng.standard_normal(x.size)
    v = z * np.maximum(1.0, np.abs(x.astype(np.float64)))
    v *= rel_step / max(float(np.linalg.norm(z)), np.finfo(np.float64).tiny)
    x64 = x.astype(np.float64)
    return (x64 + v).astype(x.dtype), (x64 - v).astype(x.dtype)
