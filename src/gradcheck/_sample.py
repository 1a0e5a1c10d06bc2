"""Sample: which coordinates a check looks at one by one, drawn stratified by need.

A sample of ``sample`` coordinates (a count, or a fraction) is shared among the blocks in
scope: every block gets a floor, the smallest blocks are pooled when there are too many for
that, and the rest is shared half equally and half by size (see :func:`strata`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import _policy
from ._layout import Layout


@dataclass(frozen=True)
class Selection:
    """What a check looks at: coordinates one by one, directions per block, which blocks."""

    idx: np.ndarray  # sorted flat indices checked one by one
    sample: int | float | None
    directions: int | None
    blocks: tuple[int, ...]  # the blocks in scope (a monitor checks one at a time)


def select(
    layout: Layout,
    sample: int | float | None,
    directions: int | None,
    rng: np.random.Generator | None,
    blocks: Sequence[int] | None = None,
) -> Selection:
    """The coordinates to check: a stratified sample, none (directions only), or all.

    ``blocks`` limits the check to those blocks (indices into ``layout.blocks``); ``rng``
    draws the sample (None only without one).
    """
    scope = tuple(range(len(layout.blocks))) if blocks is None else tuple(blocks)
    sizes = np.diff(layout.offsets)
    if len(scope) < len(layout.blocks):
        sizes = np.where(np.isin(np.arange(sizes.size), scope), sizes, 0)
    if sample is not None:
        if rng is None:
            raise ValueError("a sample is drawn from a random stream, and none was given")
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
