"""Budget: what a check looks at within its budget, the deadline its passes respect, and
the coordinate pass run against it.

``check(budget=...)`` holds the whole call to its budget: the first call, the timing and the
noise probe are paid from it, the plan is fitted to what is left less a reserve for the
passes after it (kink re-checks, the directional search, its confirmation), and each of
those passes stops adding evaluations once its deadline is past. What a pass did not get to
is reported as not examined, in a note, never guessed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from . import _policy, _sample
from ._deadline import Deadline
from ._options import Options
from ._plan import METHODS, Plan, direction, relative_step
from ._results import BlockResult, Note, Verdict
from ._sample import Selection

if TYPE_CHECKING:
    from ._context import Evaluator

# Of the time left once the plan is fitted, this fraction is kept for the passes after it:
# on a failing gradient the kink re-checks and the directional search spend it.
RESERVE = 0.2
# The coordinate pass runs in slices of at most this fraction of the budget, so that it
# can stop near its deadline when f turns out slower than its timing said.
SLICE = 0.03
MAX_SLICES = 64
# The first slice is this small: the cost it measures sizes the next ones.
FIRST_SLICE = 8
# A budget spends first on what catches most per evaluation: the directions of every block
# (2 evaluations each, whatever its size), then the localisation of what they flag (about
# 4 log2(n) evaluations per wrong entry, and its confirmation), and only then sampled
# coordinates (2 each, one entry at a time). Time is kept for the localisation of this
# many entries before any coordinate is sampled.
SEARCHED = 1
# Evaluations the confirmation of one entry found by the search costs (as in _directions).
CONFIRM = 6


def time_point(evaluator: Evaluator, scope: Iterable[int]) -> float:
    """Seconds one point of a random direction over the largest block in ``scope`` costs:
    drawing the direction (a throwaway stream, so the check's own draws stay the same),
    writing it in and evaluating f there. Counted in ``evaluator.nfev``.
    """
    problem = evaluator.problem
    offsets = problem.layout.offsets
    k = max(scope, key=lambda j: int(offsets[j + 1] - offsets[j]))
    lo, hi = int(offsets[k]), int(offsets[k + 1])
    if hi == lo:
        return evaluator.time_one()
    started = time.perf_counter()
    rel = relative_step("central", problem.theta.dtype, problem.loss_dtype)
    plus, _ = direction(problem.theta[lo:hi], rel, np.random.default_rng(0))
    evaluator.segments([(lo, hi, plus)])
    return max(time.perf_counter() - started, 1e-9)


def select(
    evaluator: Evaluator,
    options: Options,
    rng: np.random.Generator | None,
    blocks: Sequence[int] | None,
    started: float,
) -> tuple[Selection, Deadline]:
    """What to check, fitted to ``options.budget`` when there is one, and the deadline
    the passes respect (none without a budget).

    The budget counts from ``started``: the first call and the timing are paid from it, and
    a reserve is kept for the passes after the plan (``RESERVE``).
    """
    layout = evaluator.problem.layout
    sample, directions, deadline = options.sample, options.directions, Deadline.none()
    if options.budget is not None:
        # The middle of three timings: one call alone can catch a cold cache or a hiccup.
        per_call = sorted(evaluator.time_one() for _ in range(3))[1]
        scope = range(len(layout.blocks)) if blocks is None else blocks
        sizes = [layout.blocks[k].size for k in scope]
        point = time_point(evaluator, scope)
        # One direction over every block: two points each, the overhead of a point
        # growing with its block's size (largest block measured, the others scaled).
        extra = max(0.0, point / per_call - 1)
        per_round = 2 * len(sizes) + 2 * extra * sum(sizes) / max(max(sizes), 1)
        per_search = search_cost(max(sizes, default=0), options.localize) * max(
            1.0, point / per_call
        )
        # The noise probe ran already (see _check.run): what it cost is in the elapsed time.
        # ... and the localisation of what the directions flag comes before coordinates.
        seconds = plan_seconds(options.budget, time.perf_counter() - started)
        seconds = max(0.0, seconds - per_search * per_call)
        sample, directions = fit_budget(
            seconds,
            sizes,
            sample,
            directions,
            per_call=per_call,
            per_round=per_round,
            method=options.method,
        )
        deadline = Deadline(started + options.budget, per_call, point, per_round, per_search)
    return _sample.select(layout, sample, directions, rng, blocks), deadline


def fit_budget(
    budget: float,
    sizes: Sequence[int],
    sample: int | float | None,
    directions: int | None,
    *,
    per_call: float,
    per_round: float,
    method: str,
) -> tuple[int | float | None, int | None]:
    """``(sample, directions)`` (those given stay) so the check takes ``budget`` seconds.

    ``per_call``: seconds one evaluation of f takes; ``per_round``: evaluations one random
    direction over every block in scope costs (at least 2 a block; more on a large block,
    where drawing the direction and writing it in are not free). ``sizes`` are those of the
    blocks in scope; a coordinate costs as many evaluations as ``method`` has points.
    The caller keeps the time of localising what the directions flag out of ``budget``
    (``search_cost``): sampled coordinates get what is left after the directions and it.
    """
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


def unseen(blocks: Iterable[BlockResult]) -> tuple[Note, ...]:
    """A note, "inconclusive", naming the blocks a budget left too thinly checked to have
    seen a bug in ``_policy.BUDGET_FRACTION`` of their entries, with the chance it was
    missed; none when every block was looked at closely enough (or failed anyway).
    """
    p = _policy.BUDGET_FRACTION
    # A block with neither coordinates nor directions has its note already (_directions).
    thin = [
        (b, b.miss_probability(p))
        for b in blocks
        if b.verdict in (Verdict.PASS, Verdict.WARN, Verdict.UNTESTED)
        and b.size
        and (b.checked or b.directions)
    ]
    thin = [(b, miss) for b, miss in thin if miss > _policy.BUDGET_MISS]
    if not thin:
        return ()
    told = "; ".join(
        f"{b.name} ({b.checked:,} of {b.size:,} coordinates, {b.directions} "
        f"direction{'' if b.directions == 1 else 's'}): missed with probability {miss:.2f}"
        for b, miss in thin[:5]
    )
    more = f"; and {len(thin) - 5} more blocks" if len(thin) > 5 else ""
    return (
        Note(
            f"inconclusive: the budget left too little to see a bug in {p:.0%} of the "
            f"entries of {told}{more}; raise budget=, or check fewer blocks",
            floor=Verdict.INCONCLUSIVE,
        ),
    )


def search_cost(size: int, localize: int) -> float:
    """Evaluations the localisation of ``SEARCHED`` wrong entries of a block of ``size``
    costs: two halves of one direction each per halving (4 evaluations), and the entry's
    confirmation.
    """
    entries = min(SEARCHED, localize)
    if size <= 1 or not entries:
        return 0.0
    return float(entries * (4 * math.ceil(math.log2(size)) + CONFIRM))


def plan_seconds(budget: float, elapsed: float) -> float:
    """Seconds the plan (coordinates and directions) may take of what ``budget`` leaves."""
    return max(0.0, (budget - elapsed) * (1 - RESERVE))


def evaluate_within(
    evaluator: Evaluator, plan: Plan, deadline: Deadline
) -> tuple[Plan, np.ndarray, Note | None]:
    """``(plan, values, note)``: the plan evaluated, cut short at ``deadline``.

    Without a budget the whole plan is evaluated at once. With a deadline, the plan is
    evaluated in slices, each a stride through the whole plan (so through every block),
    sized from the cost per evaluation measured so far; the slices not reached when the
    deadline passed are dropped from the plan: the report counts only what was checked,
    and the note says what was left out.
    """
    m = plan.idx.size
    if deadline.end == math.inf or m == 0:
        return plan, evaluator.run(plan), None
    # Strided order: position p goes in round p % MAX_SLICES, so any prefix of the order
    # spreads over the whole plan.
    order = np.argsort(np.arange(m) % MAX_SLICES, kind="stable")
    per_coordinate = plan.values.shape[1]
    slice_seconds = SLICE * max(deadline.left(), 1e-3)
    values = np.empty(plan.values.shape)
    per_eval, done = deadline.per_call, 0
    while done < m:
        if done and deadline.left() <= 0:
            break
        size = int(max(1, min(m - done, slice_seconds / max(per_eval * per_coordinate, 1e-9))))
        if not done:
            size = min(size, FIRST_SLICE)  # measured before trusted: the timing may be off
        part = np.sort(order[done : done + size])
        began = time.perf_counter()
        values[part] = evaluator.run(subplan(plan, part))
        # What this slice really cost per evaluation sizes the next one.
        per_eval = max(per_eval, (time.perf_counter() - began) / (size * per_coordinate))
        done += size
    if done == m:
        return plan, values, None
    kept = np.sort(order[:done])
    cut = subplan(plan, kept)
    note = Note(
        f"the budget ran out during the coordinate pass: {kept.size:,} of {m:,} planned "
        "coordinates checked; the others were not examined"
    )
    return cut, values[kept], note


def subplan(plan: Plan, positions: np.ndarray) -> Plan:
    """The plan restricted to ``positions`` (sorted): the same steps, fewer coordinates."""
    return replace(
        plan,
        idx=plan.idx[positions],
        base=plan.base[positions],
        values=np.ascontiguousarray(plan.values[positions]),
        width=plan.width[positions],
        step=plan.step[positions],
    )
