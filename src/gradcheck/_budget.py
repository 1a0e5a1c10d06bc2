"""Budget: the deadline a check's passes respect, and the coordinate pass run against it.

``check(budget=...)`` holds the whole call to its budget: the first call, the timing and the
noise probe are paid from it, the plan is fitted to what is left less a reserve for the
passes after it (kink re-checks, the directional search, its confirmation), and each of
those passes stops adding evaluations once its deadline is past. What a pass did not get to
is reported as not examined, in a note, never guessed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ._plan import Plan, direction, relative_step
from ._results import Note

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


@dataclass(frozen=True)
class Deadline:
    """When the passes must stop adding evaluations, and what one evaluation costs."""

    end: float  # time.perf_counter() value; inf without a budget
    per_call: float  # seconds per evaluation (0 without a budget)
    per_point: float = 0.0  # seconds per point of a direction over the largest block
    per_round: float = 0.0  # evaluations one random direction over every block costs

    def for_directions(self) -> Deadline:
        """The deadline counting each evaluation at the cost of a direction's point."""
        return replace(self, per_call=max(self.per_call, self.per_point))

    @classmethod
    def none(cls) -> Deadline:
        return cls(math.inf, 0.0)

    def left(self) -> float:
        """Seconds left before the deadline (inf without a budget)."""
        return self.end - time.perf_counter()

    def affords(self, evaluations: int) -> bool:
        """Whether ``evaluations`` more fit before the deadline."""
        return self.end == math.inf or evaluations * self.per_call <= self.left()

    def how_many(self, cost: int, wanted: int) -> int:
        """How many of ``wanted`` items costing ``cost`` evaluations each still fit."""
        if self.end == math.inf:
            return wanted
        return int(min(wanted, max(0.0, self.left()) // max(cost * self.per_call, 1e-12)))

    def earlier(self, seconds: float) -> Deadline:
        """A deadline ``seconds`` earlier: time kept for what comes after."""
        return replace(self, end=self.end - seconds)

    def keeping(self, directions: int) -> Deadline:
        """The deadline that keeps the time of ``directions`` rounds of directions."""
        return self.earlier(directions * self.per_round * self.per_call)


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


# ---------------------------------------------------------------- the monitor's cost model
# Before any check is measured: one evaluation of f is taken to cost this many training
# steps, and a check this many seconds besides its evaluations.
FIRST_STEPS_PER_EVAL = 0.5
FIXED_SECONDS = 0.002
# With f timed once at params, an evaluation inside a check is taken to cost this many
# times that call: the check's own work per point (drawing directions, writing the points
# in, restoring them) comes on top of f, and f itself runs on colder caches after a large
# block was rewritten (on the 1.86M-parameter MLP: 7 ms inside a check, 1.5 ms in a loop).
OVERHEAD_PER_EVAL = 5.0
# Evaluations of f a check spends besides its coordinates and directions (the first call,
# the noise probe, the refinement of flagged entries), for the estimate before any check ran.
EXTRA_EVALUATIONS = 24
# Timings of f at most before the first check is measured (each costs two calls).
TIMINGS = 3
# Recent checks remembered per kind of check: their median is the estimate.
RECENT = 5


class CostModel:
    """What a monitor's checks cost, in training steps, learned from the checks it ran.

    Costs are kept in training steps, so that a machine that slows down slows the estimate
    with it. The estimate is the median of the recent checks of the same kind, not their
    maximum: one slow check (a hiccup, a busy core) must not starve the monitor for the rest
    of the run. The first check of a kind pays one-time costs (imports, a numba compile,
    cold caches); it is used only until a second check of that kind has been measured.
    """

    def __init__(self, options: dict):
        self._options = options
        self._costs: dict[Any, list] = {}  # kind -> [first, recent...] in training steps
        self._per_eval: list[float] = []  # training steps per evaluation, recent checks
        self._nominal: dict[Any, int] = {}
        self._guess = FIRST_STEPS_PER_EVAL  # steps per evaluation before any check ran
        self._timed = False
        self._timings, self._last_timed = 0, None

    def wants_timing(self, step: int, every: int) -> bool:
        """Whether to time f now: until a check is measured, at most TIMINGS times, at
        least ``every`` steps apart (timing on every look would spend the credit it waits
        for).
        """
        if self._per_eval or self._timings >= TIMINGS:
            return False
        if self._last_timed is not None and step - self._last_timed < every:
            return False
        self._last_timed, self._timings = step, self._timings + 1
        return True

    def calibrate(self, seconds: float, unit: float) -> None:
        """Base the first estimates on a timed call of f (``seconds``), not on a guess.

        Until a check is measured, each call may lower the guess (the least timing so far):
        a timing caught in a busy moment must not put every check off for good.
        """
        if unit > 0:
            guess = OVERHEAD_PER_EVAL * seconds / unit
            first = self._guess == FIRST_STEPS_PER_EVAL and not self._timed
            self._guess = guess if first else min(self._guess, guess)
            self._timed = True

    def estimate(self, kind, config, sizes, unit: float) -> float:
        """Seconds a check of ``kind`` (``config`` on blocks of ``sizes``) should cost.

        The median of the recent checks of ``kind`` after its first; with only the first,
        no more than the prior (what its evaluations should cost): the excess of a first
        check over that is taken for one-time costs, and the next check of the kind
        measures again.
        """
        recent = self._costs.get(kind)
        if recent and len(recent) > 1:
            return float(np.median(recent[1:])) * unit
        nominal = self._nominal.get(kind)
        if nominal is None:
            nominal = self._nominal[kind] = evaluations(config, sizes, self._options)
        # What one evaluation costs, in training steps: the median of the checks after the
        # first, else no more than the guess (from f timed once, or half a training step:
        # a forward pass and a backward pass cost about three evaluations).
        per_eval = self._guess
        if len(self._per_eval) > 1:
            per_eval = float(np.median(self._per_eval[1:]))
        elif self._per_eval:
            per_eval = min(per_eval, self._per_eval[0])
        prior = per_eval * nominal * unit + FIXED_SECONDS
        return min(recent[0] * unit, prior) if recent else prior

    def learn(self, kind, seconds: float, nfev: int, unit: float) -> None:
        """Remember what a check of ``kind`` cost, when a training step costs ``unit``."""
        if unit <= 0:
            return
        steps = seconds / unit
        recent = self._costs.setdefault(kind, [])
        # Index 0 keeps the first check (one-time costs); the rest is a window of RECENT.
        recent.append(steps)
        if len(recent) > RECENT + 1:
            del recent[1]
        if nfev:
            self._per_eval.append(steps / nfev)
            if len(self._per_eval) > 4 * RECENT + 1:
                del self._per_eval[1]


def time_call(f, params, clock=None) -> float:
    """Seconds ``f(params)`` takes: the lesser of two calls, as the first may pay one-time
    costs (a compile, cold caches). ``clock`` is the monitor's ``perf_counter``.
    """
    clock = clock or time.perf_counter
    timed = []
    for _ in range(2):
        began = clock()
        f(params)
        timed.append(clock() - began)
    return min(timed)


def evaluations(config, sizes, options: dict) -> int:
    """Evaluations of f a check of ``config`` on blocks of ``sizes`` should take, roughly."""
    from ._plan import sample_sizes

    sample, directions = config
    n = int(sum(sizes))
    if sample is None:
        coords = 0 if directions else n
    else:
        coords = int(sample_sizes(np.array(sizes), sample).sum())
    noise = EXTRA_EVALUATIONS if options.get("noise", True) else 4
    return 1 + noise + 2 * coords + 2 * (directions or 0) * len(sizes)


def words(config, target, names) -> str:
    """A monitor's kind of check in words, for its log and its history's ``why``."""
    what = "every block" if len(target) == len(names) > 1 else f"block {target[0]}"
    return what + (" with one direction" if config == (None, 1) else "")
