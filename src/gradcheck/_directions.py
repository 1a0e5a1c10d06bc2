"""Directional checks per block, and the search that localises a failing block's bug.

A direction check compares ``v . grad`` with ``(f(x + h v) - f(x - h v)) / 2h`` for random
Gaussian ``v`` supported on one block: two evaluations, whatever the block's size. When a
block fails, its coordinate range is halved and each half tested with a direction of its
own, recursively, down to single coordinates: about 4 log2(n) evaluations per wrong
coordinate, where a coordinate check of the block would cost 2n. The entries the search
pins down are confirmed by a coordinate check of their own and a look for kinks before the
report names them. The one entry point is :func:`directions`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import _plan
from ._budget import Deadline
from ._compare import Comparison, with_directions
from ._estimate import estimate
from ._judge import Judge
from ._refine import examine, kinks_of
from ._results import Kink, Note, Verdict


@dataclass(frozen=True)
class DirectionResult:
    difference: float  # relative difference of the k directional derivatives
    verdict: str
    found: tuple[int, ...]  # flat indices the search pinned down
    numeric: np.ndarray  # (finite) directional differences of f ...
    predicted: np.ndarray  # ... and what the analytic gradient predicts for them
    tol: tuple[float, float]  # the thresholds applied
    note: str | None = None  # why the verdict is what it is, when not plain
    cut: bool = False  # the deadline stopped the search before it was done


@dataclass(frozen=True)
class Directed:
    """The comparison with the directions folded in, and kinks the confirmation met."""

    comparison: Comparison
    kinks: tuple[Kink, ...]
    cut: tuple[Note, ...] = ()  # what the budget's deadline left unexamined


NO_DEADLINE = Deadline.none()


@dataclass(frozen=True)
class Search:
    """What every direction of one check shares."""

    problem: Any
    evaluator: Any
    rel_step: float  # the coordinate step, relative to max(1, |x|)
    rng: np.random.Generator
    judge: Judge  # the check's, with central differences' thresholds
    localize: int  # at most this many wrong entries searched for per block
    deadline: Deadline = NO_DEADLINE  # no evaluation is added once it is past


# Evaluations the confirmation of one entry the search found may cost: its coordinate
# check (2) and the look at smaller steps (4). The search keeps that much time for each.
CONFIRM_EVALUATIONS = 6


def directions(
    problem: Any,
    evaluator: Any,
    options: Any,
    judge: Judge,
    so_far: Comparison,
    rng,
    scope: tuple[int, ...],
    deadline: Deadline | None = None,
) -> Directed:
    """Check each block in ``scope`` along ``options.directions`` random directions.

    Directions are central differences whatever the method: a complex or one-sided step,
    or its thresholds, would misjudge them. Past ``deadline`` no block's directions are
    begun, the search stops and the confirmation checks no more entries; notes say what
    was not examined.
    """
    deadline = (deadline or Deadline.none()).for_directions()
    search = Search(
        problem,
        evaluator,
        _plan.relative_step("central", problem.theta.dtype, problem.loss_dtype),
        rng,
        judge.for_directions(options.method),
        options.localize,
        deadline,
    )
    layout = problem.layout
    found, skipped = {}, []
    for k in scope:
        if not deadline.affords(2 * options.directions):
            skipped.append(k)
            continue
        # Every block's directions first, the searches after: a long search must not
        # leave a later block unchecked when the budget runs out.
        found[k] = check_block(search, layout.offsets[k], layout.offsets[k + 1],
                               options.directions)  # fmt: skip
    for k, r in found.items():
        if r.verdict == Verdict.FAIL and search.localize > 0:
            hits, stopped = _search(search, int(layout.offsets[k]), int(layout.offsets[k + 1]))
            found[k] = replace(r, found=hits, cut=stopped)
    # A block that neither coordinates nor directions looked at leaves the check unjudged.
    blind = [k for k in skipped if not so_far.blocks[k].checked]
    names = [layout.blocks[k].name for k in skipped]
    cut = [*((_skipped_note(names, blind),) if skipped else ())]
    cut += [Note(f"the budget cut the directional search of {layout.blocks[k].name} short "
                 f"after {len(r.found)} entr{'y' if len(r.found) == 1 else 'ies'}: the rest "
                 "of the block was not searched")
            for k, r in found.items() if r.cut]  # fmt: skip
    found, kinks, unconfirmed = _confirm(search, found)
    if unconfirmed:
        cut.append(Note(f"the budget ran out before {unconfirmed} entr"
                        f"{'y' if unconfirmed == 1 else 'ies'} the search pointed to could "
                        "be confirmed: they are not named"))  # fmt: skip
    comparison = with_directions(so_far, layout, found, options.directions)
    return Directed(comparison, kinks, tuple(cut))


def _skipped_note(names: list, blind: list) -> Note:
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    text = f"the budget ran out before the directions of {shown}: not examined by them"
    if blind:
        text = (f"inconclusive: {text}, and {len(blind)} of them had no coordinate checked "
                "either")  # fmt: skip
    return Note(text, floor=Verdict.INCONCLUSIVE if blind else Verdict.PASS)


def check_block(s: Search, lo: int, hi: int, k: int) -> DirectionResult:
    """Check block [lo, hi) of the flat buffer along ``k`` directions (no search: the
    caller searches the failing blocks once every block has its directions).
    """
    lo, hi = int(lo), int(hi)
    if hi == lo:
        # An empty block has nothing to perturb: no evaluations, and no say in the verdict.
        nothing = np.empty(0)
        return DirectionResult(0.0, Verdict.UNTESTED, (), nothing, nothing, s.judge.tol)
    numeric, predicted = np.empty(k), np.empty(k)
    for j in range(k):
        numeric[j], predicted[j] = _one_direction(s, lo, hi)
    ok = np.isfinite(numeric)
    if not ok.any():
        empty = numeric[:0]
        return DirectionResult(np.nan, Verdict.INCONCLUSIVE, (), empty, empty, s.judge.tol)
    d, verdict, block_tol = s.judge.directional(numeric[ok], predicted[ok])
    if verdict != Verdict.FAIL and not ok.all():
        verdict = Verdict.INCONCLUSIVE
    return DirectionResult(d, verdict, (), numeric[ok], predicted[ok], block_tol)


def _one_direction(s: Search, lo: int, hi: int) -> tuple[float, float]:
    """(numeric, analytic) derivative along one random direction over buffer[lo:hi].

    Both are measured over the displacement the stored points actually span, so rounding of
    the points to the storage dtype cancels out of the comparison.
    """
    plus, minus = _plan.direction(s.problem.theta[lo:hi], s.rel_step, s.rng)
    f_plus, f_minus = s.evaluator.segments([(lo, hi, plus), (lo, hi, minus)])
    span = plus.astype(np.float64) - minus.astype(np.float64)
    return float(f_plus - f_minus), float(s.problem.analytic[lo:hi] @ span)


def _search(s: Search, lo: int, hi: int) -> tuple[tuple[int, ...], bool]:
    """Depth-first halving of [lo, hi) towards wrong coordinates; at most ``localize``.

    Also whether the deadline cut it short: it keeps time to confirm what it found.
    """
    found: list[int] = []
    pending = [(lo, hi)]
    while pending and len(found) < s.localize:
        if not s.deadline.affords(4 + CONFIRM_EVALUATIONS * (len(found) + 1)):
            return tuple(found), True
        a, b = pending.pop()
        if b - a == 1:
            found.append(a)  # a one-entry range is only pushed after it failed on its own
            continue
        mid = (a + b) // 2
        halves = ((a, mid), (mid, b))
        # One random direction can miss (the error nearly orthogonal to it); when neither
        # half fails although their union did, look once more with fresh directions.
        for _ in range(2):
            # A half where f is not finite counts as failing: it may hold the bug too, and
            # the coordinate check of what the search finds drops such entries.
            failing = [(c, d) for c, d in halves if s.judge.disagrees(*_one_direction(s, c, d))]
            if failing:
                break
        pending.extend(reversed(failing))
    return tuple(found), False


def _confirm(s: Search, found: dict) -> tuple[dict, tuple[Kink, ...], int]:
    """Keep, of the entries the search found, those a coordinate check of their own (by
    the search's rule) and a look at smaller steps still call wrong.

    A search direction that straddles a kink disagrees just as a bug does. A failing block
    becomes "inconclusive" only when its search ran out of ranges before its limit and every
    entry it found turned out to be a kink; otherwise it still fails, and says why nothing
    was named. Also how many found entries the deadline left unconfirmed.
    """
    idx = np.array(sorted({i for r in found.values() for i in r.found}), dtype=np.int64)
    if not idx.size:
        return found, (), 0
    # What the deadline leaves room for; the others are not named, and not guessed at.
    fits = s.deadline.how_many(CONFIRM_EVALUATIONS, idx.size)
    unconfirmed = set(idx[fits:].tolist())
    idx = idx[:fits]
    if not idx.size:
        kept = {k: _kept(r, set(), set(), s.localize, unconfirmed) for k, r in found.items()}
        return kept, (), len(unconfirmed)
    problem = s.problem
    plan = _plan.make(problem.theta, idx, method="central", eps=None,
                      loss_dtype=problem.loss_dtype, seed=0, rel_step=s.rel_step)  # fmt: skip
    values = s.evaluator.run(plan)
    est = estimate(plan, values, problem.f0)
    numeric = values[:, 0] - values[:, 1]
    predicted = problem.analytic[idx] * (plan.values[:, 0] - plan.values[:, 1])
    wrong_pair = np.array(
        [
            bool(np.isfinite(n) and s.judge.disagrees(n, p))
            for n, p in zip(numeric, predicted, strict=True)
        ]
    )
    seen = examine(
        problem, s.evaluator, plan, est, np.flatnonzero(wrong_pair), judge=s.judge, eps=None
    )
    wrong = set(idx[wrong_pair & ~seen.mask].tolist())
    at_kinks = set(idx[seen.mask].tolist())
    return (
        {k: _kept(r, wrong, at_kinks, s.localize, unconfirmed) for k, r in found.items()},
        kinks_of(problem, plan, est, seen.kinds),
        len(unconfirmed),
    )


def _kept(r: DirectionResult, wrong: set, at_kinks: set, localize: int,
          unconfirmed: set) -> DirectionResult:  # fmt: skip
    kept = tuple(i for i in r.found if i in wrong)
    if unconfirmed.intersection(r.found) and not kept:
        return replace(r, found=kept)  # a note of the check says the budget ran out
    if r.found and not kept and r.verdict == Verdict.FAIL:
        if len(r.found) < localize and at_kinks.issuperset(r.found):
            note = (
                "the directions disagree, but each entry the search pinned down sits at "
                "or near a kink of f; check coordinates (sample=) to judge the block"
            )
            r = replace(r, verdict=Verdict.INCONCLUSIVE, note=note)
        else:
            note = (
                f"the directional search pinned down {len(r.found)} entries, none of "
                "which a coordinate check confirms (kinks of f, or points where f is not "
                "finite); raise localize= or check coordinates (sample=) to find the bug"
            )
            r = replace(r, note=note)
    return replace(r, found=kept)
