"""Compare: relative differences and verdicts, per block and per entry.

The verdict is taken per block and the global verdict is the worst of them: a global norm
dilutes one bad block (one wrong coordinate among 1e6 moves it by only ~5e-4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from . import _policy, _reach
from ._context import Check, Comparison, Estimate, Findings, Marks
from ._judge import Judge
from ._layout import Block, Layout
from ._norms import rms, segment_differences, segment_norms
from ._plan import Plan
from ._problem import Problem
from ._results import BlockResult, Entry, Verdict


@dataclass(frozen=True)
class _Left:
    """How many of one block's entries the kink pass left out of its verdict."""

    kinked: int = 0  # at or across a kink
    on_kink: int = 0  # of the kinked, the ones sitting on one
    smooth: int = 0  # resolved at a smaller step (truncation, no kink)
    large: int = 0  # the step too large for them: not judged


@dataclass(frozen=True)
class _Judged:
    """The entries that count in the block verdicts, and what each block makes of them.

    Per-block numbers are computed once for all blocks (plain Python lists): a block's
    result is then assembled without further array work.
    """

    idx: np.ndarray
    a: np.ndarray
    b: np.ndarray
    err: np.ndarray
    score: np.ndarray
    seg: list  # block k is [seg[k], seg[k + 1]) of these arrays
    norms: list  # (||a||, ||b||, ||a - b||) per block
    diffs: list
    fd_norms: list  # the norm of what noise in f allows, per block
    worst_at: list  # position of the largest |error| (NaN first), -1 for an empty block
    untested: list  # entries where both sides lie below what the differences resolve
    zeros: list  # entries exactly 0 on both sides
    disagree: list  # entries whose score is above 1
    top_at: list  # position of the highest score, -1 for an empty block
    reach: list  # the most the differences cannot resolve in each block (NOISE * fd_error)
    fd: np.ndarray  # what noise in f can make each difference wrong by
    analytic: np.ndarray  # the whole flat gradient under test (not a copy)
    scale: float  # the largest |a| + |b| among the resolved entries of every block
    theta: np.ndarray  # the flat parameters (not a copy), for the diagnosis


def run(check: Check, findings: Findings) -> Findings:
    """The compare pass: judge the plan's finite differences against the gradient."""
    comparison = compare(check.problem, findings.plan, findings.est, check.judge)
    return replace(findings, comparison=comparison)


def compare(
    problem: Problem, plan: Plan, est: Estimate, judge: Judge, marks: Marks | None = None
) -> Comparison:
    """Judge the analytic gradient at ``plan.idx`` against the finite differences.

    ``marks`` come from the kink pass. Every block of the layout is judged; the plan's
    coordinates say which hold checked entries.
    """
    layout = problem.layout
    analytic = problem.analytic[plan.idx]
    fd_all = noise_of(problem, plan, est, judge)
    ok = ~est.bad
    any_bad = bool(est.bad.any())
    if any_bad or marks is not None:
        counted = ok if marks is None else ok & ~marks.kinks
        j = _judged(
            problem,
            plan.idx[counted],
            analytic[counted],
            est.gradapprox[counted],
            fd_all[counted],
            judge,
        )
    else:  # every entry counts: no copies
        j = _judged(problem, plan.idx, analytic, est.gradapprox, fd_all, judge)
    seg_all = np.searchsorted(plan.idx, layout.offsets).tolist()
    blocks = []
    for k, block in enumerate(layout.blocks):
        mine = slice(seg_all[k], seg_all[k + 1])
        skipped = plan.idx[mine][est.bad[mine]] if any_bad else plan.idx[:0]
        # Entries left out of the verdict: at or across a kink, of those the ones sitting
        # on one, and the ones a smaller step resolved (truncation, no kink).
        left = _Left()
        if marks is not None:
            out = marks.kinks[mine] & ok[mine]
            smooth = int((marks.smooth[mine] & out).sum())
            large = int((marks.large[mine] & out).sum())
            left = _Left(
                kinked=int(out.sum()) - smooth - large,
                on_kink=int(marks.on_kink[mine][ok[mine]].sum()),
                smooth=smooth,
                large=large,
            )
        checked = seg_all[k + 1] - seg_all[k] - int(skipped.size)
        blocks.append(_block(block, k, j, judge, skipped, checked, left))
    # The global numbers get a pass of their own rather than a hypot of the block norms, so
    # that a check set up like the classic exercise reproduces its digits; kinks count here.
    a_all, b_all = (analytic, est.gradapprox) if not any_bad else (analytic[ok], est.gradapprox[ok])
    difference = (
        segment_differences(a_all, b_all, np.array([0, a_all.size]))[1][0]
        if a_all.size
        else math.nan
    )
    worst = _worst(layout, j.idx, j.a, j.b, j.err, j.score)
    return Comparison(float(difference), tuple(blocks), worst)


def noise_of(problem: Problem, plan: Plan, est: Estimate, judge: Judge) -> np.ndarray:
    """What noise in f alone can make each of the plan's differences wrong by."""
    fd_all = judge.noise_f * est.sensitivity
    if plan.method == "complex":
        # Exact to the rounding of the evaluation.
        fd_all = fd_all + np.finfo(problem.dtype).eps * np.abs(est.gradapprox)
    return fd_all


def _judged(problem: Problem, idx, a, b, fd_error, judge: Judge) -> _Judged:
    seg = np.searchsorted(idx, problem.layout.offsets)
    norms, diffs = segment_differences(a, b, seg)
    fd_norms = segment_norms(fd_error, fd_error, seg)[:, 0]
    score = judge.scores(a, b, fd_error)
    with np.errstate(invalid="ignore", over="ignore"):
        size, err = np.abs(a) + np.abs(b), np.abs(a - b)
        # Both sides exactly 0 is agreement; both below what the differences resolve, and
        # not both 0, is agreement within resolution, counted apart (Judge.below_resolution).
        zero = size == 0
        untested = (size < _policy.NOISE * fd_error) & ~zero
    worst_at, top_at = _argmax_per_block(seg, err), _argmax_per_block(seg, score)
    reach = _policy.NOISE * fd_error
    resolved = size[~(untested | zero) & np.isfinite(size)]
    scale = float(resolved.max()) if resolved.size else 0.0
    untested_counts, zero_counts, disagree = _count_per_block(seg, untested, zero, score > 1)
    return _Judged(
        idx=idx,
        a=a,
        b=b,
        err=err,
        score=score,
        seg=seg.tolist(),
        norms=norms.tolist(),
        diffs=diffs.tolist(),
        fd_norms=fd_norms.tolist(),
        worst_at=worst_at,
        untested=untested_counts,
        zeros=zero_counts,
        disagree=disagree,
        top_at=top_at,
        reach=[float(reach[i]) if i >= 0 else 0.0 for i in _argmax_per_block(seg, reach)],
        fd=fd_error,
        analytic=problem.analytic,
        scale=scale,
        theta=problem.theta,
    )


def _argmax_per_block(seg: np.ndarray, values: np.ndarray) -> list:
    """Per block, where ``values`` is largest (NaN counts as infinite), -1 when empty; one
    array pass for all blocks, so that a report of many blocks stays cheap.
    """
    counts = np.diff(seg)
    full = counts > 0
    at = np.full(counts.size, -1, dtype=np.int64)
    starts = seg[:-1][full]
    if starts.size:
        key = np.where(np.isnan(values), np.inf, values)
        hits = np.flatnonzero(key == np.repeat(np.maximum.reduceat(key, starts), counts[full]))
        at[full] = hits[np.searchsorted(hits, starts)]
    return at.tolist()


def _count_per_block(seg: np.ndarray, *masks: np.ndarray) -> list:
    """Per block, how many entries each mask holds."""
    counts = np.diff(seg)
    full = counts > 0
    out = []
    for mask in masks:
        n = np.zeros(counts.size, dtype=np.int64)
        if full.any():
            n[full] = np.add.reduceat(mask, seg[:-1][full], dtype=np.int64)
        out.append(n.tolist())
    return out


def _block(
    block: Block,
    k: int,
    j: _Judged,
    judge: Judge,
    skipped: np.ndarray,
    checked: int,
    left: _Left,
) -> BlockResult:
    """Block ``k``'s result from the judged entries ``j``; ``left``: what the kink pass
    left out of it.
    """
    kinked, on_kink, smooth, large = left.kinked, left.on_kink, left.smooth, left.large
    lo, hi = j.seg[k], j.seg[k + 1]
    na, nb, nd = j.norms[k]
    block_tol, note, by_resolution = judge.tol, None, False
    if hi > lo:
        d = j.diffs[k]
        verdict, block_tol = judge.block(d, j.fd_norms[k], na, nb)
        by_resolution = judge.below_resolution(
            j.untested[k], j.zeros[k], hi - lo, j.reach[k], j.scale
        )
        if by_resolution:
            verdict = Verdict.PASS
        elif verdict == Verdict.INCONCLUSIVE:
            note = _unresolved(d, judge.tol, block_tol)
        top = j.top_at[k]
        if verdict != Verdict.FAIL and j.score[top] > _policy.ENTRY_FAIL:
            verdict, note = Verdict.FAIL, None  # _failing names the entry
        elif skipped.size and verdict != Verdict.FAIL:
            verdict = Verdict.INCONCLUSIVE
            note = (
                f"f was not finite at {skipped.size} perturbed entries: fix f there, or "
                "check at another point"
            )
    elif skipped.size:
        d, verdict = math.nan, Verdict.INCONCLUSIVE  # every point was non-finite
        note = "f was not finite at the perturbed points of every checked entry"
    elif large:
        d, verdict = math.nan, Verdict.PASS  # judged below: every entry's step was too large
    elif kinked or smooth:
        d, verdict = math.nan, Verdict.PASS  # every entry agreed once the step missed the kink
        if on_kink == kinked and not smooth:
            # Lying between the one-sided slopes is all a value on a kink can show.
            verdict = Verdict.INCONCLUSIVE
            note = (
                "every checked entry sits on a kink of f; its analytic values lie between "
                "the one-sided slopes, which does not test them: check at another point"
            )
    else:
        # Not checked by coordinates: an empty block passes; otherwise directions judge.
        d, verdict = (0.0, Verdict.PASS) if block.size == 0 else (math.nan, Verdict.UNTESTED)
    if judge.unjudged_for_step(verdict, large):
        verdict = Verdict.INCONCLUSIVE
        note = (
            f"the step is too large for {large:,} entr{'y' if large == 1 else 'ies'} of "
            f"{block.name} (truncation dominates: see the note on the step); not judged"
        )
    if verdict == Verdict.FAIL and note is None:
        note = _failing(block, k, j, judge, d)
    at, max_err, reach = None, math.nan, None
    if hi > lo:
        m = j.worst_at[k]
        max_err, at = float(j.err[m]), block.entry_name(int(j.idx[m]))
        # A block that passes by resolution passes whatever its difference: only the entry
        # rule can fail it (a fail threshold of 1 leaves the difference nothing to fail).
        reach = _missed(block, j, k, judge, 1.0 if by_resolution else block_tol[1])
    return BlockResult(
        name=block.name,
        shape=block.shape,
        size=block.size,
        checked=checked,
        difference=float(d),
        verdict=verdict,
        norm_analytic=float(na),
        norm_numeric=float(nb),
        norm_error=float(nd),
        max_abs_error=max_err,
        max_abs_error_at=at,
        nonfinite=tuple(block.entry_name(int(i)) for i in skipped[: _policy.WORST]),
        tol=block_tol,
        kinks=kinked,
        untested=j.untested[k],
        zeros=j.zeros[k],
        disagreeing=j.disagree[k] if hi > lo else 0,
        diagnosis=note,
        reach=reach,
    )


def _missed(block: Block, j: _Judged, k: int, judge: Judge, t: float):
    """What block ``k``'s judged entries could have missed (``_reach``), at its fail
    threshold ``t``: those the kink pass left out would not have shown an error.
    """
    lo, hi = j.seg[k], j.seg[k + 1]
    a, b = j.a[lo:hi], j.b[lo:hi]
    norms = (j.norms[k][0], j.norms[k][1], j.norms[k][2])
    e = judge.least_errors(a, b, j.fd[lo:hi], norms, t)
    rms_g = rms(j.analytic[block.offset : block.offset + block.size])
    return _reach.coordinates(block.size, hi - lo, e, a, norms, t, rms_g)


def _unresolved(d: float, tol, raised) -> str:
    """Why a block is inconclusive, in words: what could not be resolved, what to do."""
    reach = (
        "any difference could come from the noise in f alone"
        if raised[1] >= 1.0
        else f"the noise in f alone can make up to {raised[1]:.3g}"
    )
    return (
        f"the difference {d:.3g} is above what a correct gradient shows (fail > {tol[1]:.3g}), "
        f"but {reach}: the finite differences cannot tell; lower the noise of f (compute "
        "the loss in float64; evaluate='float64' for float32 parameters) or try larger "
        "steps (eps=)"
    )


def _failing(block: Block, k: int, j: _Judged, judge: Judge, d: float) -> str | None:
    """What a failing block's error looks like, in words: most of its entries wrong (and
    their pattern), a pattern alone, or the one entry that stands out.
    """
    lo, hi = j.seg[k], j.seg[k + 1]
    idx = j.idx[lo:hi]
    pattern = diagnose(block, idx, j.a[lo:hi], j.b[lo:hi], j.theta[idx])
    counted, wrong = hi - lo, j.disagree[k]
    if counted and judge.widespread(wrong, counted):
        if wrong == counted:
            every = f"every checked entry of {block.name} disagrees ({wrong:,} of {counted:,})"
        else:
            every = f"{wrong:,} of {counted:,} checked entries of {block.name} disagree"
        if pattern is not None:
            return f"{every}: {pattern}"
        return (
            f"{every}; no factor, sign flip, transpose or multiple of {block.name} explains "
            "the error: look at the whole of its backward formula"
        )
    if pattern is not None or not counted or j.score[j.top_at[k]] <= _policy.ENTRY_FAIL:
        return pattern
    return _wrong_entry(block, j, j.top_at[k], d, wrong, counted)


def _wrong_entry(block, j: _Judged, top: int, d: float, wrong: int, counted: int) -> str:
    name = block.entry_name(int(j.idx[top]))
    others = (
        "the only checked entry that disagrees"
        if wrong <= 1
        else f"{wrong:,} of {counted:,} checked entries disagree"
    )
    return (
        f"{name} is wrong: analytic {float(j.a[top]):.6g}, numeric {float(j.b[top]):.6g} "
        f"(score {float(j.score[top]):.3g}, far beyond its noise, and no kink at a smaller "
        f"step; {others}); the block's difference is {d:.2g}"
    )


def diagnose(
    block, idx: np.ndarray, a: np.ndarray, b: np.ndarray, x: np.ndarray | None = None
) -> str | None:
    """A plain-words guess at what is wrong with a failing block's gradient: nothing
    there, a factor, a sign, an added multiple of the parameter ``x`` (its values at
    ``idx``), a transpose.
    """
    if a.size == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return None
    multiple = None if x is None else _multiple(block.name, a - b, np.asarray(x, np.float64))
    top = max(float(np.abs(a).max()), float(np.abs(b).max()))
    if top > 0:
        # Scale both by one power of two so the dot products neither overflow nor underflow.
        a, b = np.ldexp(a, -np.frexp(top)[1]), np.ldexp(b, -np.frexp(top)[1])
    aa, bb, ab = float(a @ a), float(b @ b), float(a @ b)
    if bb == 0.0:
        return f"the numeric gradient of {block.name} is zero: does f use {block.name}?"
    if aa == 0.0:
        return f"the analytic gradient of {block.name} is zero: a missing term?"
    scale = ab / bb
    left = math.sqrt(max(aa - 2 * scale * ab + scale * scale * bb, 0.0))
    error = math.sqrt(max(aa - 2 * ab + bb, 0.0))
    # "A factor" only when the factor explains the error: what it leaves is small both
    # against the gradient and against the error itself (an added term halved leaves most
    # of the error, whatever factor fits best).
    explains = left < _policy.FACTOR_RESIDUAL * math.sqrt(aa) and left <= (
        _policy.FACTOR_EXPLAINS * error
    )
    if explains and abs(scale - 1) > _policy.FACTOR_MIN:
        if abs(scale + 1) < _policy.SIGN_TOL:
            return f"sign flipped: {block.name} = -1.00 x numeric"
        return f"{block.name} = {scale:.2f} x numeric (a wrong factor)"
    if multiple is not None:
        return multiple
    shape = block.shape
    if len(shape) == 2 and shape[0] == shape[1] and idx.size == block.size:
        full_b = b.reshape(shape)
        if np.linalg.norm(a.reshape(shape) - full_b.T) < _policy.TRANSPOSE_TOL * math.sqrt(aa):
            return f"transposed: {block.name} matches the numeric gradient transposed"
    return None


def _multiple(name: str, error: np.ndarray, x: np.ndarray) -> str | None:
    """The error as a multiple of the parameter itself, ``c x``: a regularisation term's
    gradient left out (c < 0) or added where f has none (c > 0), the commonest course bug.
    """
    top = max(float(np.abs(x).max()), float(np.abs(error).max()))
    if top == 0.0 or not np.isfinite(top):
        return None
    # Scaled by one power of two, as for the factor: no overflow nor underflow in the sums.
    shift = -int(np.frexp(top)[1])
    e, x = np.ldexp(error, shift), np.ldexp(x, shift)
    xx = float(x @ x)
    if xx == 0.0:
        return None
    c = float(e @ x) / xx
    left = float(np.linalg.norm(e - c * x))
    if c == 0.0 or not left <= _policy.MULTIPLE_EXPLAINS * float(np.linalg.norm(e)):
        return None
    if c < 0:
        return (
            f"d{name} misses {-c:.3g} x {name} (the error is {c:.3g} x {name}): a "
            "regularisation term (weight decay) left out of the gradient?"
        )
    return (
        f"d{name} adds {c:.3g} x {name} (the error is {c:.3g} x {name}): a regularisation "
        "term counted twice, or one f does not have?"
    )


def _worst(layout, idx, a, b, err, score) -> tuple[Entry, ...]:
    k = min(_policy.WORST, score.size)
    if k == 0:
        return ()
    top = np.argpartition(-score, k - 1)[:k] if score.size > k else np.arange(score.size)
    top = top[np.argsort(-score[top], kind="stable")]
    # One search for the blocks of all ten, and plain floats: numpy scalars cost more.
    where = idx[top].tolist()
    owners = (np.searchsorted(layout.offsets, idx[top], side="right") - 1).tolist()
    values = (a[top].tolist(), b[top].tolist(), err[top].tolist(), score[top].tolist())
    rows = zip(*values, strict=True)
    entries = []
    for i, k, (x, y, e, s) in zip(where, owners, rows, strict=True):
        block = layout.blocks[k]
        entries.append(Entry(block.entry_name(i), block.name, x, y, e, s))
    return tuple(entries)


def with_directions(comparison: Comparison, layout: Layout, results: dict, k: int) -> Comparison:
    """Fold the direction results (``_directions.DirectionResult`` by block index) in."""
    blocks = list(comparison.blocks)
    for i, r in results.items():
        block = blocks[i]
        verdict = Judge.combined(Verdict(block.verdict), r.verdict)
        difference = block.difference if block.checked else r.difference
        blocks[i] = replace(
            block,
            verdict=verdict,
            difference=difference,
            tol=block.tol if block.checked else r.tol,
            directions=k,
            direction_difference=r.difference,
            localized=tuple(layout.entry_name(e) for e in r.found),
            diagnosis=block.diagnosis or r.note,
            reach=_reach.with_directions(
                block.reach,
                block.size,
                r.numeric,
                r.predicted,
                r.tol[1],
                r.spread,
            )
            if block.size
            else block.reach,
        )
    difference = comparison.difference
    if results and not any(b.checked for b in blocks):
        # Directions only: the same metric over every block's directional derivatives.
        predicted = np.concatenate([r.predicted for r in results.values()])
        numeric = np.concatenate([r.numeric for r in results.values()])
        difference = segment_differences(predicted, numeric, np.array([0, numeric.size]))[1][0]
    return replace(comparison, blocks=tuple(blocks), difference=float(difference))
