"""Refine: look again at entries that disagree, to tell a kink from a bug.

A central difference that straddles a kink (ReLU at 0, a tie in max, |x|) mixes two slopes
and disagrees with any one-sided derivative, however right the gradient. Each disagreeing
entry is evaluated again at h/10 and h/100 (4 evaluations):

- the disagreement vanishes at a smaller step: a kink lay within the step ("crossed");
- it persists, the left and right slopes differ as much at h/10 as at h (a jump, not the
  f'' h of a smooth function) and the analytic value lies between them: the point sits on
  a kink and the analytic value is one of its valid one-sided derivatives ("at");
- otherwise the entry is wrong.

Kinks are reported by name and left out of the verdicts; bugs stay failures. The one entry
point is :func:`run`; :func:`examine` and :func:`at_default_step` also serve the directional
search's confirmation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import _plan, _policy
from ._compare import compare
from ._context import Check, Estimate, Findings, Marks
from ._deadline import Deadline
from ._estimate import estimate, merged
from ._plan import Plan
from ._results import Kink, Note, Verdict


@dataclass(frozen=True)
class Examined:
    """What smaller steps showed of some positions of a plan."""

    mask: np.ndarray  # bool, aligned with the plan: the entry disagrees only at a kink
    # (position, "crossed" | "at" | "smooth" | "truncation"), by position; "smooth": the
    # entry agrees at a smaller step, its first disagreement the truncation error of a
    # curved f; "truncation": it does not agree, but its finite difference moves far
    # beyond its noise at a tenth of the step and settles at smaller ones (the step is too
    # large for the parameters or the curvature).
    kinds: tuple[tuple[int, str], ...]
    # The finite difference at the check's step and at each smaller one, and the analytic
    # value, by position, for the "truncation" entries (for the report).
    moves: tuple[tuple[int, tuple[float, ...], float], ...] = ()


def run(check: Check, findings: Findings) -> Findings:
    """Examine the entries the comparison flags, worst first per block, and judge again.

    The worst PER_BLOCK flagged entries of each block are examined first; the rest only in
    the blocks whose examined entries were all kinks: one bug already fails a block, and a
    correct ReLU layer may cross more kinks than one round takes. Past the check's deadline
    no entry is examined: those left keep disagreeing, and a note says how many.
    """
    problem, judge, plan, est = check.problem, check.judge, findings.plan, findings.est
    if plan.method == "complex" or not plan.idx.size:
        return findings
    a = problem.analytic[plan.idx]
    score = judge.scores(a, est.gradapprox, judge.noise_f * est.sensitivity)
    score[est.bad] = 0.0
    if not (score > 1).any():
        return findings
    per_block = flagged_positions(plan, problem.layout.offsets, score)
    eps = check.options.eps
    head = [p[: _policy.PER_BLOCK] for p in per_block]
    wanted = _within(head, check.deadline)
    seen = examine(check, plan, est, wanted, eps=eps)
    mask, kinds, moves = seen.mask, list(seen.kinds), list(seen.moves)
    skipped = sum(h.size for h in head) - wanted.size
    rest = [
        p[_policy.PER_BLOCK :]
        for p, h in zip(per_block, head, strict=True)
        if p.size > h.size and mask[h].all()
    ]
    if rest:
        more_wanted = _within(rest, check.deadline)
        skipped += sum(r.size for r in rest) - more_wanted.size
        more = examine(check, plan, est, more_wanted, eps=eps)
        mask = mask | more.mask
        kinds = sorted(kinds + list(more.kinds))
        moves = sorted(moves + list(more.moves))
    cut: tuple[Note, ...] = ()
    if skipped:
        cut = (
            Note(
                f"the budget ran out during the kink re-checks: {skipped:,} disagreeing "
                "entr" + ("y was" if skipped == 1 else "ies were") + " not examined for "
                "kinks and count as disagreeing (a kink among them would show as a failure)"
            ),
        )
    if not mask.any():
        return findings.with_notes(cut)
    # A step too large hides a wrong gradient as well as it blames a right one: what the
    # default step says of those entries decides whether the gradient is wrong there.
    est, wrong, sound = at_default_step(check, plan, est, kinds)
    mask[wrong] = False
    judged = set(wrong.tolist())
    kinds = [(pos, kind) for pos, kind in kinds if pos not in judged]
    moves = [m for m in moves if m[0] not in judged]
    on_kink, smooth, large = np.zeros_like(mask), np.zeros_like(mask), np.zeros_like(mask)
    on_kink[[pos for pos, kind in kinds if kind == "at"]] = True
    smooth[[pos for pos, kind in kinds if kind == "smooth"]] = True
    large[[pos for pos, kind in kinds if kind == "truncation"]] = True
    marks = Marks(mask, on_kink, smooth, large)
    again = compare(problem, plan, est, judge, marks)
    notes = (
        *_smooth_note(check, plan, smooth),
        *_large_step_note(check, plan, moves),
        *_default_step_note(check, plan, wrong, sound),
        *cut,
    )
    refined = replace(findings, comparison=again, marks=marks, estimate=est)
    refined = refined.with_kinks(kinks_of(check, plan, est, kinds))
    return refined.with_notes(notes)


def _smooth_note(check: Check, plan: Plan, smooth: np.ndarray) -> tuple[Note, ...]:
    if not smooth.any():
        return ()
    names = [check.problem.layout.entry_name(int(i)) for i in plan.idx[smooth][:5]]
    more = f" and {int(smooth.sum()) - 5} more" if smooth.sum() > 5 else ""
    return (
        Note(
            f"{', '.join(names)}{more} agree at a tenth of the step: their first "
            "disagreement was the truncation error of a curved f, which falls with the "
            "square of the step (no kink); like kinks, they are left out of the verdicts"
        ),
    )


def _large_step_note(check: Check, plan: Plan, moves: list) -> tuple[Note, ...]:
    """What the entries whose finite differences settle only at smaller steps say of the
    step.
    """
    if not moves:
        return ()
    pos, (at_h, *smaller), analytic = moves[0]
    name = check.problem.layout.entry_name(int(plan.idx[pos]))
    eps = check.options.eps
    step = f"the step eps={eps!r}" if eps is not None else "the step"
    falls = ", ".join(
        f"{e:.3g} at h/{round(1 / f)}" for e, f in zip(smaller, _policy.SHRINK, strict=True)
    )
    more = f" ({len(moves)} entries alike)" if len(moves) > 1 else ""
    advice = "leave eps unset (a step relative to |x|)" if eps is not None else "pass a smaller eps"
    return (
        Note(
            f"{step} is too large for the parameters or the curvature of f: truncation "
            "dominates the finite differences, which move far beyond their noise at a "
            f"tenth of the step and settle at smaller steps ({name}: {at_h:.3g} at h, "
            f"{falls}; analytic {analytic:.3g}){more}; no factor or kink can be read from "
            f"them and the entries are not judged: {advice}",
            floor=Verdict.INCONCLUSIVE,
        ),
    )


def at_default_step(
    check: Check, plan: Plan, est: Estimate, kinds: list
) -> tuple[Estimate, np.ndarray, int]:
    """The entries whose given step is too large (kind "truncation"), differenced again at
    the default relative step (2 evaluations each, as the deadline allows).

    Returns the estimate with the disagreeing ones' differences replaced by the default
    step's (so that what is said of them is built on sound differences), their positions,
    and how many agreed there (the step alone was at fault). Only a user's step can be
    too large for the default to help: without ``eps`` nothing is redone.
    """
    none = np.empty(0, dtype=np.int64)
    if check.options.eps is None:
        return est, none, 0
    large = np.array(sorted(pos for pos, kind in kinds if kind == "truncation"), dtype=np.int64)
    large = large[: check.deadline.how_many(2, large.size)]
    if not large.size:
        return est, none, 0
    problem, judge = check.problem, check.judge
    sub = _plan.make(
        problem.theta,
        plan.idx[large],
        method="central",
        eps=None,
        loss_dtype=problem.loss_dtype,
        seed=plan.seed,
    )
    again = estimate(sub, check.evaluator.run(sub), problem.f0)
    a = problem.analytic[plan.idx[large]]
    score = judge.scores(a, again.gradapprox, judge.noise_f * again.sensitivity)
    wrong = (score > 1) & ~again.bad
    if wrong.any():
        # The default step may straddle a kink the given one hid: what disagrees only at a
        # kink there is not wrong, and the step stays blamed.
        kinked = examine(check, sub, again, np.flatnonzero(wrong), eps=None).mask
        wrong &= ~kinked
    if not wrong.any():
        return est, none, int(large.size)
    return merged(est, large[wrong], _subset(again, wrong)), large[wrong], int((~wrong).sum())


def _subset(est: Estimate, keep: np.ndarray) -> Estimate:
    return Estimate(est.gradapprox[keep], est.bad[keep], est.sensitivity[keep], est.one_sided[keep])


def _default_step_note(check: Check, plan: Plan, wrong: np.ndarray, sound: int) -> tuple[Note, ...]:
    """What the default step said of entries the given step was too large for."""
    if not wrong.size:
        return ()
    names = [check.problem.layout.entry_name(int(i)) for i in plan.idx[wrong][:5]]
    more = f" and {wrong.size - 5} more" if wrong.size > 5 else ""
    agreed = f"; {sound} agree there (the step alone was at fault)" if sound else ""
    return (
        Note(
            f"{', '.join(names)}{more}, differenced again at the default relative step "
            "because the given step is too large for them, still disagree there: the "
            f"gradient is wrong at them, and they are judged on those differences{agreed}"
        ),
    )


def _within(per_block: list, deadline: Deadline) -> np.ndarray:
    """The positions to examine (sorted): all of them, or as many as the deadline allows,
    taking each block's worst first, then each block's second worst, and so on.
    """
    every = np.concatenate(per_block) if per_block else np.empty(0, dtype=np.int64)
    allowed = deadline.how_many(2 * len(_policy.SHRINK), every.size)
    if allowed >= every.size:
        return np.sort(every)
    rank = np.concatenate([np.arange(p.size) for p in per_block])
    return np.sort(every[np.argsort(rank, kind="stable")[:allowed]])


def kinks_of(check: Check, plan: Plan, est: Estimate, kinds) -> tuple[Kink, ...]:
    """The report's records of the kinks ``kinds`` found among the positions of ``plan``."""
    problem = check.problem
    return tuple(
        Kink(
            problem.layout.entry_name(int(plan.idx[pos])),
            kind,
            float(problem.analytic[plan.idx[pos]]),
            float(est.gradapprox[pos]),
            float(est.one_sided[pos, 0]),
            float(est.one_sided[pos, 1]),
        )
        for pos, kind in kinds
        if kind not in ("smooth", "truncation")
    )


@dataclass(frozen=True)
class _Smaller:
    """A flagged entry's evaluations at each smaller step."""

    agrees: np.ndarray  # the finest step that resolves it agrees with the analytic value
    fell: np.ndarray  # |error| at the first smaller step over |error| at the check's step
    sides: list  # one-sided slopes (m, 2) per step
    slacks: list  # what rounding allows the slopes to differ by, per step
    valid: list  # the step spanned something (a user's step may vanish), per step
    numerics: list  # the finite difference at the check's step, then at each smaller step
    fd_first: np.ndarray  # what the noise of f makes in the differences at the first one
    fd_last: np.ndarray  # ... and at the last one
    resolved: np.ndarray  # the noise stays below a tenth of the first error at every step


def examine(
    check: Check, plan: Plan, est: Estimate, flagged: np.ndarray, *, eps: float | None
) -> Examined:
    """Classify the ``flagged`` positions of ``plan`` as kinks ("crossed", "at") or not."""
    mask = np.zeros(plan.idx.size, dtype=bool)
    if flagged.size == 0:
        return Examined(mask, ())
    a = check.problem.analytic[plan.idx[flagged]]
    finite = np.isfinite(a)  # an infinite or NaN analytic value is wrong, never a kink
    s = _at_smaller_steps(check, plan, est, flagged, eps=eps)
    agrees = s.agrees & finite
    # On a kink the left and right slopes differ by its jump at any step; on a smooth f
    # they differ by about f'' h, ten times less at a tenth of the step. The analytic value
    # must lie between them at h/10, and at h/100 too unless that step vanished.
    left, right = est.one_sided[flagged, 0], est.one_sided[flagged, 1]
    gap = np.abs(right - left)
    at = ~agrees & finite & s.valid[0]
    for k, (near, slack, ok) in enumerate(zip(s.sides, s.slacks, s.valid, strict=True)):
        low, high = np.minimum(near[:, 0], near[:, 1]), np.maximum(near[:, 0], near[:, 1])
        straddles = (a >= low - slack) & (a <= high + slack)
        if k == 0:
            straddles &= (high - low > _policy.KINK_GAP * gap) & (
                high - low > _policy.KINK_SLACK * slack
            )
        at &= straddles | ~ok
    # An error that falls with the square of the step (a hundredfold at a tenth of it) is
    # the truncation error of a curved f, not a kink: a kink's error stays while the step
    # still crosses it, then vanishes at once.
    smooth = agrees & (s.fell <= 1.0 / _policy.TRUNCATION_FALL)
    # Not agreeing yet, but falling at each smaller step and by the square of it between
    # the last two: truncation dominates at the check's step, which is too large; a kink's
    # error keeps its size while a step crosses it, a bug's stays at the bug's size.
    b = s.numerics
    moved, then = np.abs(b[0] - b[1]), np.abs(b[1] - b[2])
    truncated = ~agrees & finite & s.resolved & s.valid[-1]
    # Still moving beyond noise at a hundredth, as truncation does: a kink the check's step
    # crossed and a smaller one does not leaves the difference still there (a bug beside
    # it is a bug).
    unstable = moved > _policy.ENTRY_FAIL * check.judge.allowance(b[0], b[1], s.fd_first)
    moving = then > check.judge.allowance(b[1], b[2], s.fd_last)
    truncated &= unstable & moving & (then * _policy.TRUNCATION_SETTLES <= moved)
    kinds = []
    rows = zip(
        flagged.tolist(),
        agrees.tolist(),
        at.tolist(),
        smooth.tolist(),
        truncated.tolist(),
        strict=True,
    )
    for pos, crossed, on, curved, large in rows:
        if large:
            mask[pos] = True
            kinds.append((pos, "truncation"))
        elif crossed or on:
            mask[pos] = True
            kinds.append((pos, "smooth" if curved else "crossed" if crossed else "at"))
    moves = tuple(
        (pos, tuple(float(v[i]) for v in b), float(a[i]))
        for i, pos in enumerate(flagged.tolist())
        if truncated[i]
    )
    return Examined(mask, tuple(kinds), moves)


def _at_smaller_steps(
    check: Check, plan: Plan, est: Estimate, flagged: np.ndarray, *, eps: float | None
) -> _Smaller:
    """Evaluate the flagged entries at each step of SHRINK, through the check's engine."""
    problem, judge = check.problem, check.judge
    noise_f = judge.noise_f
    a = problem.analytic[plan.idx[flagged]]
    first_error = np.abs(a - est.gradapprox[flagged])
    agrees = np.zeros(flagged.size, dtype=bool)
    sides, slacks, valid, falls = [], [], [], []
    numerics, resolved = [est.gradapprox[flagged]], np.ones(flagged.size, dtype=bool)
    fd_errors: list = []
    for factor in _policy.SHRINK:
        sub = _plan.make(
            problem.theta,
            plan.idx[flagged],
            method="central",
            eps=None if eps is None else eps * factor,
            loss_dtype=problem.loss_dtype,
            seed=plan.seed,
            rel_step=None if plan.rel_step is None else plan.rel_step * factor,
        )
        values = check.evaluator.run(sub)
        # A step the user gave may vanish at a tenth or a hundredth of itself (x + h == x):
        # such a step neither decides nor needs to show anything.
        spans = (sub.width != 0).all(axis=1)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            smaller = estimate(sub, values, problem.f0)
            b = smaller.gradapprox
            err = np.abs(a - b)
            fd_error = noise_f * smaller.sensitivity
            # A smaller step tells only while the noise it amplifies stays below a tenth of
            # the first error; the finest step that still tells decides. "Agrees" asks the
            # error to fall within tolerance and to a tenth of what it was (KINK_TENFOLD).
            tenth = _policy.KINK_TENFOLD * first_error
            resolves = spans & (_policy.NOISE * fd_error <= tenth)
            fits = (err <= judge.allowance(a, b, fd_error)) & (err <= tenth)
            # The one-sided slopes may differ by what the same rule allows two values: each
            # is a difference of two values of f over the step actually spanned.
            span = np.abs(sub.values[:, 0] - sub.base)
            left, right = smaller.one_sided[:, 0], smaller.one_sided[:, 1]
            slack = judge.allowance(left, right, 2 * noise_f / span)
            falls.append(err / first_error)
            fd_errors.append(fd_error)
        numerics.append(b)
        resolved &= resolves
        agrees = np.where(resolves, fits, agrees)
        sides.append(smaller.one_sided)
        slacks.append(slack)
        valid.append(spans)
    return _Smaller(
        agrees, falls[0], sides, slacks, valid, numerics, fd_errors[0], fd_errors[-1], resolved
    )


def flagged_positions(plan: Plan, offsets: np.ndarray, score: np.ndarray) -> list[np.ndarray]:
    """Per block, the positions in ``plan`` whose score exceeds 1, worst first."""
    bounds = np.searchsorted(plan.idx, offsets)
    flagged = []
    for k in range(bounds.size - 1):
        lo, hi = bounds[k], bounds[k + 1]
        over = lo + np.flatnonzero(score[lo:hi] > 1)
        flagged.append(over[np.argsort(-score[over], kind="stable")])
    return flagged
