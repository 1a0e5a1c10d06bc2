"""Control: a negative control on request, planting errors of the reported size in a copy
of the gradient and judging them again.

A green check is worth what it would have caught. For each block that does not fail, the
pass plants, each in its own copy of the gradient under test (the user's arrays are never
touched): one checked entry off by the block's ``reach.entry`` (the entry whose smallest
failing error is the median one, so the plant is of the stated size), and the whole block
times ``1 + reach.factor``. Each is judged by running the comparison again over the finite
differences the check already has, the kink pass's marks and the directions' values
included: no evaluation of f. The one entry point is :func:`run`.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from . import _reach
from ._compare import compare, noise_of
from ._context import Check, Findings
from ._results import BlockResult, Control, Verdict


def run(check: Check, findings: Findings) -> Findings:
    """Plant and judge the controls of every block in scope that does not fail."""
    if not check.options.control:
        return findings
    comparison = findings.compared
    blocks = list(comparison.blocks)
    for k in check.selection.blocks:
        b = blocks[k]
        if b.verdict == Verdict.FAIL or not b.size or b.reach is None:
            continue  # a failing block needs no control; an empty one has nothing to plant
        controls = (*_entry(check, findings, k, b), *_factor(check, findings, k, b))
        blocks[k] = replace(b, controls=controls)
    return replace(findings, comparison=replace(comparison, blocks=tuple(blocks)))


def _counted(check: Check, findings: Findings, k: int) -> np.ndarray:
    """The positions in the plan of block ``k``'s entries that count in its verdict."""
    plan, est, marks = findings.plan, findings.est, findings.marks
    offsets = check.problem.layout.offsets
    lo, hi = np.searchsorted(plan.idx, offsets[k : k + 2]).tolist()
    keep = ~est.bad[lo:hi]
    if marks is not None:
        keep &= ~marks.kinks[lo:hi]
    return lo + np.flatnonzero(keep)


def _entry(check: Check, findings: Findings, k: int, b: BlockResult) -> tuple[Control, ...]:
    """One checked entry off by ``reach.entry``: the one whose own smallest failing error
    is the largest not above it.
    """
    reach = b.reach
    if reach is None or not math.isfinite(reach.entry):
        return ()
    problem, plan, est, judge = check.problem, findings.plan, findings.est, check.judge
    pos = _counted(check, findings, k)
    if not pos.size:
        return ()
    a = problem.analytic[plan.idx[pos]]
    numeric = est.gradapprox[pos]
    noise = noise_of(problem, plan, est, judge)[pos]
    norms = (b.norm_analytic, b.norm_numeric, b.norm_error)
    e = judge.least_errors(a, numeric, noise, norms, b.tol[1])
    x = _reach.relative(e, a)
    fits = np.flatnonzero((x <= reach.entry) & (a != 0))
    if not fits.size:
        return ()
    at = int(fits[np.argmax(x[fits])])
    flat = int(plan.idx[pos[at]])
    planted = np.array(problem.analytic)
    planted[flat] *= 1 + reach.entry
    name = problem.layout.entry_name(flat)
    verdict = _judged(check, findings, k, planted, None)
    return (Control(f"{name} x (1 + {reach.entry:.3g})", "entry", reach.entry, verdict),)


def _factor(check: Check, findings: Findings, k: int, b: BlockResult) -> tuple[Control, ...]:
    """The whole block times ``1 + reach.factor``."""
    reach = b.reach
    if reach is None or not math.isfinite(reach.factor):
        return ()
    offsets = check.problem.layout.offsets
    lo, hi = int(offsets[k]), int(offsets[k + 1])
    planted = np.array(check.problem.analytic)
    planted[lo:hi] *= 1 + reach.factor
    verdict = _judged(check, findings, k, planted, 1 + reach.factor)
    return (Control(f"{b.name} x (1 + {reach.factor:.3g})", "factor", reach.factor, verdict),)


def _judged(
    check: Check, findings: Findings, k: int, planted: np.ndarray, scale: float | None
) -> str:
    """Block ``k``'s verdict with ``planted`` as the gradient under test: its coordinates
    compared again and, for a factor ``scale`` on the whole block, its directions'
    predictions scaled by it (one entry's change along a direction is not known without
    the direction, so its coordinates alone judge it).
    """
    planted.flags.writeable = False
    problem = replace(check.problem, analytic=planted)
    again = compare(problem, findings.plan, findings.est, check.judge, findings.marks)
    verdict = Verdict(again.blocks[k].verdict)
    numeric, predicted = findings.along.get(k, (np.empty(0), np.empty(0)))
    if scale is not None and numeric.size and verdict != Verdict.FAIL:
        judge = check.judge.for_directions(check.options.method)
        along = judge.directional(numeric, predicted * scale)[1]
        verdict = check.judge.combined(verdict, along)
    return str(verdict)
