"""The monitor's cost model: what its checks cost, in training steps, learned as it runs.

A :class:`~gradcheck.Monitor` spends a fraction of the training time on checks; before each
one it asks this model what the check would cost (:meth:`CostModel.estimate`), and after it
tells the model what it did cost (:meth:`CostModel.learn`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._options import Options
from ._sample import sample_sizes


@dataclass(frozen=True)
class Scheme:
    """What one check of a monitor looks at in each block: a sample of coordinates (None:
    none, or all when there are no directions) and random directions per block.
    """

    sample: int | float | None
    directions: int | None


# The reduced check the monitor falls back on when the configured one does not fit.
ONE_DIRECTION = Scheme(None, 1)
Kind = tuple[Scheme, tuple[str, ...]]

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

    def __init__(self, options: Options):
        self._options = options  # what the monitor's checks run with (a noise probe or not)
        # A kind of check: its scheme and the blocks it covers.
        self._costs: dict[Kind, list] = {}  # kind -> [first, recent...] in training steps
        self._per_eval: list[float] = []  # training steps per evaluation, recent checks
        self._nominal: dict[Kind, int] = {}
        self._guess = FIRST_STEPS_PER_EVAL  # steps per evaluation before any check ran
        self._timed = False
        self._timings = 0
        self._last_timed: int | None = None

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

    def estimate(
        self, scheme: Scheme, target: tuple[str, ...], sizes: Sequence[int], unit: float
    ) -> float:
        """Seconds a check of ``scheme`` on the blocks ``target`` (of ``sizes``) should cost,
        when a training step costs ``unit`` seconds.

        The median of the recent checks of ``kind`` after its first; with only the first,
        no more than the prior (what its evaluations should cost): the excess of a first
        check over that is taken for one-time costs, and the next check of the kind
        measures again.
        """
        kind = (scheme, target)
        recent = self._costs.get(kind)
        if recent and len(recent) > 1:
            return float(np.median(recent[1:])) * unit
        nominal = self._nominal.get(kind)
        if nominal is None:
            nominal = self._nominal[kind] = evaluations(scheme, sizes, self._options)
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

    def learn(
        self, scheme: Scheme, target: tuple[str, ...], seconds: float, nfev: int, unit: float
    ) -> None:
        """Remember what a check of ``scheme`` on ``target`` cost, when a training step
        costs ``unit``.
        """
        if unit <= 0:
            return
        steps = seconds / unit
        recent = self._costs.setdefault((scheme, target), [])
        # Index 0 keeps the first check (one-time costs); the rest is a window of RECENT.
        recent.append(steps)
        if len(recent) > RECENT + 1:
            del recent[1]
        if nfev:
            self._per_eval.append(steps / nfev)
            if len(self._per_eval) > 4 * RECENT + 1:
                del self._per_eval[1]


def time_call(
    f: Callable[[Any], Any], params: Any, clock: Callable[[], float] | None = None
) -> float:
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


def evaluations(scheme: Scheme, sizes: Sequence[int], options: Options) -> int:
    """Evaluations of f a check of ``scheme`` on blocks of ``sizes`` should take, roughly."""
    sample, directions = scheme.sample, scheme.directions
    n = int(sum(sizes))
    if sample is None:
        coords = 0 if directions else n
    else:
        coords = int(sample_sizes(np.array(sizes), sample).sum())
    noise = EXTRA_EVALUATIONS if options.noise else 4
    return 1 + noise + 2 * coords + 2 * (directions or 0) * len(sizes)


def words(scheme: Scheme, target: tuple[str, ...], names: Sequence[str]) -> str:
    """A monitor's kind of check in words, for its log and its history's ``why``."""
    what = "every block" if len(target) == len(names) > 1 else f"block {target[0]}"
    return what + (" with one direction" if scheme == ONE_DIRECTION else "")
