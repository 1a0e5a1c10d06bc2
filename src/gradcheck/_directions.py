"""Directional checks per block, and the search that localises a failing block's bug.

A direction check compares ``v . grad`` with ``(f(x + h v) - f(x - h v)) / 2h`` for random
Gaussian ``v`` supported on one block: two evaluations, whatever the block's size. When a
block fails, its coordinate range is halved and each half tested with a direction of its
own, recursively, down to single coordinates: about 4 log2(n) evaluations per wrong
coordinate, where a coordinate check of the block would cost 2n. The entries the search
pins down are confirmed by a coordinate check of their own and a look for kinks before the
report names them. The one entry point is :func:`run`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from . import _plan, _policy
from ._chance import Spread
from ._compare import with_directions
from ._estimate import estimate
from ._refine import at_default_step, examine, kinks_of
from ._results import Kink, Note, Verdict

if TYPE_CHECKING:
    from ._context import Check, Findings


@dataclass(frozen=True)
class DirectionResult:
    difference: float  # relative difference of the k directional derivatives
    verdict: Verdict
    found: tuple[int, ...]  # flat indices the search pinned down
    numeric: np.ndarray  # (finite) directional differences of f ...
    predicted: np.ndarray  # ... and what the analytic gradient predicts for them
    tol: tuple[float, float]  # the thresholds applied
    note: str | None = None  # why the verdict is what it is, when not plain
    cut: bool = False  # the deadline stopped the search before it was done
    spread: Spread | None = None  # how the directions weigh the block's entries (_reach)
    blind: int = 0  # directions along which f was not finite (not in numeric)


# Evaluations the confirmation of one entry the search found may cost: its coordinate
# check (2) and the look at smaller steps (4). The search keeps that much time for each.
CONFIRM_EVALUATIONS = 6


def run(check: Check, findings: Findings) -> Findings:
    """Check each block in scope along the selection's random directions.

    Directions are central differences whatever the method: a complex or one-sided step,
    or its thresholds, would misjudge them. Their step is the user's ``eps`` when one is
    given (absolute, as for the coordinates), else the central relative step. Past the
    deadline no block's directions are begun, the search stops and the confirmation
    checks no more entries; notes say what was not examined.
    """
    k = check.selection.directions
    if not k:
        return findings
    if check.bar is not None:
        check.bar.ahead(2 * k * len(check.selection.blocks))
    check = directional(check)
    so_far = findings.compared
    layout = check.problem.layout
    found, skipped = {}, []
    for b in check.selection.blocks:
        if not check.deadline.affords(2 * k):
            skipped.append(b)
            continue
        # Every block's directions first, the searches after: a long search must not
        # leave a later block unchecked when the budget runs out.
        found[b] = check_block(check, layout.offsets[b], layout.offsets[b + 1], k)
    found, k = _more(check, so_far, found, k)
    for b, r in found.items():
        if r.verdict == Verdict.FAIL and check.options.localize > 0:
            lo, hi = int(layout.offsets[b]), int(layout.offsets[b + 1])
            hits, stopped = _search(check, lo, hi)
            found[b] = replace(r, found=hits, cut=stopped)
    # A block that neither coordinates nor directions looked at leaves the check unjudged.
    blind = [b for b in skipped if not so_far.blocks[b].checked]
    names = [layout.blocks[b].name for b in skipped]
    cut = [*((_skipped_note(names, blind),) if skipped else ())]
    cut += [
        Note(
            f"the budget cut the directional search of {layout.blocks[b].name} short "
            f"after {_entries(len(r.found))}: the rest of the block was not searched"
        )
        for b, r in found.items()
        if r.cut
    ]
    found, kinks, unconfirmed = _confirm(check, found)
    found = {b: _explained(check, b, r) for b, r in found.items()}
    if unconfirmed:
        cut.append(
            Note(
                f"the budget ran out before {_entries(unconfirmed)} the search pointed to "
                "could be confirmed: they are not named"
            )
        )
    comparison = with_directions(so_far, layout, found, k)
    along = {b: (r.numeric, r.predicted) for b, r in found.items()}
    found_all = replace(findings, comparison=comparison, along=along)
    return found_all.with_kinks(kinks).with_notes(cut)


def _more(check: Check, so_far, found: dict, k: int) -> tuple[dict, int]:
    """Under a budget, a check that fails nowhere spends the time its plan left on more
    rounds of directions (one more per block each, up to ``MORE_DIRECTIONS`` in all), so
    that what it could have missed shrinks: whole rounds only, each begun when the
    deadline affords it and the one after it, so every block has as many.
    """
    deadline = check.deadline
    layout = check.problem.layout
    failing = any(so_far.blocks[b].verdict == Verdict.FAIL for b in check.selection.blocks)
    unsure = (Verdict.FAIL, Verdict.INCONCLUSIVE)
    failing = failing or any(r.verdict in unsure for r in found.values())
    if deadline.end == math.inf or failing or not found:
        return found, k
    per_round = 2 * len(found)
    # Each round leaves room for the localisation of what it may flag, as the first did.
    reserved = deadline.earlier(deadline.per_search * deadline.per_call)
    while k < _policy.MORE_DIRECTIONS and reserved.affords(2 * per_round):
        more = {}
        for b, r in found.items():
            lo, hi = int(layout.offsets[b]), int(layout.offsets[b + 1])
            more[b] = _one_more(check, r, lo, hi)
        found, k = more, k + 1
        if any(r.verdict == Verdict.FAIL for r in found.values()):
            break  # the search takes it from here
    return found, k


def _one_more(s: Check, r: DirectionResult, lo: int, hi: int) -> DirectionResult:
    """``r`` with one more direction over [lo, hi), judged again with the others."""
    if hi == lo:
        return r
    n, p = _one_direction(s, lo, hi)
    numeric, predicted, blind = r.numeric, r.predicted, r.blind
    if np.isfinite(n):
        numeric, predicted = np.append(numeric, n), np.append(predicted, p)
    else:
        blind += 1
    d, verdict, block_tol = s.judge.directional(numeric, predicted, blind)
    return replace(
        r,
        difference=d,
        verdict=verdict,
        numeric=numeric,
        predicted=predicted,
        tol=block_tol,
        blind=blind,
    )


def directional(check: Check) -> Check:
    """The check as its directions see it: central differences' thresholds, and each
    evaluation counted at the cost of a direction's point.
    """
    return replace(
        check,
        judge=check.judge.for_directions(check.options.method),
        deadline=check.deadline.for_directions(),
    )


def _entries(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"


def _skipped_note(names: list, blind: list) -> Note:
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    text = f"the budget ran out before the directions of {shown}: not examined by them"
    if blind:
        text = f"inconclusive: {text}, and {len(blind)} of them had no coordinate checked either"
    return Note(text, floor=Verdict.INCONCLUSIVE if blind else Verdict.PASS)


def check_block(s: Check, lo: int, hi: int, k: int) -> DirectionResult:
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
    blind = int(k - ok.sum())
    d, verdict, block_tol = s.judge.directional(numeric[ok], predicted[ok], blind)
    if not ok.any():
        empty = numeric[:0]
        return DirectionResult(d, verdict, (), empty, empty, block_tol, blind=blind)
    spread = Spread.of(s.problem.theta[lo:hi], s.problem.analytic[lo:hi], s.options.eps is not None)
    return DirectionResult(
        d, verdict, (), numeric[ok], predicted[ok], block_tol, spread=spread, blind=blind
    )


def _explained(s: Check, b: int, r: DirectionResult) -> DirectionResult:
    """The block's result with its confirmed entries named only if they stand out.

    The search goes depth first, the lower half first: when the entries it confirms fill
    most of the stretch of the block it went through and it stopped at its limit, every
    entry it reached was wrong. Those are the first in memory order and no more wrong than
    the rest of the block: naming them would read as the bug's place.
    """
    if len(r.found) < max(s.options.localize, 2) or r.verdict != Verdict.FAIL:
        return r
    layout = s.problem.layout
    lo = int(layout.offsets[b])
    span = max(r.found) - lo + 1
    if not s.judge.widespread(len(r.found), span):
        return r
    name = layout.blocks[b].name
    note = (
        f"the error is spread over {name}: the search confirmed {len(r.found)} wrong "
        f"entries among the first {span} of the block (every entry it reached), so no "
        "entry is named; a coordinate check (sample=) counts the wrong entries"
    )
    return replace(r, found=(), note=note)


def _one_direction(s: Check, lo: int, hi: int) -> tuple[float, float]:
    """(numeric, analytic) derivative along one random direction over buffer[lo:hi].

    Both are measured over the displacement the stored points actually span, so rounding of
    the points to the storage dtype cancels out of the comparison.
    """
    theta, eps = s.problem.theta[lo:hi], s.options.eps
    if eps is None:
        rel_step = _plan.relative_step("central", s.problem.dtype, s.problem.dtype)
        plus, minus = _plan.direction(theta, rel_step, _rng(s))
    else:  # the user's step, as the coordinates take it
        plus, minus = _plan.direction(theta, eps, _rng(s), absolute=True)
    f_plus, f_minus = s.evaluator.segments([(lo, hi, plus), (lo, hi, minus)])
    span = plus.astype(np.float64) - minus.astype(np.float64)
    return float(f_plus - f_minus), float(s.problem.analytic[lo:hi] @ span)


def _rng(s: Check) -> np.random.Generator:
    if s.streams.directions is None:
        raise ValueError("a check with directions needs their random stream")
    return s.streams.directions


def _search(s: Check, lo: int, hi: int) -> tuple[tuple[int, ...], bool]:
    """Depth-first halving of [lo, hi) towards wrong coordinates; at most ``localize``.

    Also whether the deadline cut it short: it keeps time to confirm what it found.
    """
    found: list[int] = []
    pending = [(lo, hi)]
    while pending and len(found) < s.options.localize:
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


def _confirm(s: Check, found: dict) -> tuple[dict, tuple[Kink, ...], int]:
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
        localize = s.options.localize
        kept = {k: _kept(r, set(), set(), set(), localize, unconfirmed) for k, r in found.items()}
        return kept, (), len(unconfirmed)
    problem = s.problem
    plan = _plan.make(
        problem.theta,
        idx,
        method="central",
        eps=s.options.eps,
        loss_dtype=problem.loss_dtype,
        seed=0,
        rel_step=_plan.relative_step("central", problem.dtype, problem.dtype),
    )
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
    seen = examine(s, plan, est, np.flatnonzero(wrong_pair), eps=s.options.eps)
    # A step too large hides a wrong entry as well as it blames a right one: those that
    # still disagree at the default step are wrong (as the coordinates' refine pass has it).
    _, still, _ = at_default_step(s, plan, est, list(seen.kinds))
    wrong = set(idx[wrong_pair & ~seen.mask].tolist()) | set(idx[still].tolist())
    large = {int(idx[pos]) for pos, kind in seen.kinds if kind == "truncation"} - wrong
    at_kinks = set(idx[seen.mask].tolist()) - large
    localize = s.options.localize
    return (
        {k: _kept(r, wrong, at_kinks, large, localize, unconfirmed) for k, r in found.items()},
        kinks_of(s, plan, est, seen.kinds),
        len(unconfirmed),
    )


def _kept(
    r: DirectionResult, wrong: set, at_kinks: set, large: set, localize: int, unconfirmed: set
) -> DirectionResult:
    """The search's result with only its confirmed entries; ``at_kinks``: the found ones
    that sit at kinks, ``large``: those the step was too large for.
    """
    kept = tuple(i for i in r.found if i in wrong)
    if unconfirmed.intersection(r.found) and not kept:
        return replace(r, found=kept)  # a note of the check says the budget ran out
    if r.found and not kept and r.verdict == Verdict.FAIL:
        if large.issuperset(r.found):
            note = (
                "the directions disagree, but the finite differences of each entry the "
                "search pinned down settle only at smaller steps: the step is too large for "
                "the parameters or the curvature of f (truncation dominates); not judged, "
                "check with a smaller step"
            )
            r = replace(r, verdict=Verdict.INCONCLUSIVE, note=note)
        elif len(r.found) < localize and at_kinks.issuperset(r.found):
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
