"""Reproduce: nothing is concluded from the workers' values that a serial evaluation does
not give again.

The python engine's workers each call f on their own copy of theta, but anything else f
touches is shared: an f that writes its parameters into an object (the course's
``model.params = p; model.loss(X, y)``) or caches on ``self`` races with itself, and its
values mix up the perturbations. So, right after the coordinates are compared, the entries
every later conclusion rests on (per block the worst PER_BLOCK that disagree, which the
kink pass examines and the report names, and the REPRODUCE_MOST worst-scoring) are
evaluated again serially at the same steps (``Evaluator.redo``). If a value differs, f is
not thread-safe: every point the workers evaluated is evaluated again serially and compared
again, and the evaluator's note (``Evaluator.why``, which this pass adds to the findings)
says so. Every pass after this one evaluates serially
(``Evaluator.settle``): a raced value there could make a wrong entry look like a kink.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from . import _budget, _compare, _policy
from ._estimate import estimate, merged
from ._refine import flagged_positions

if TYPE_CHECKING:
    from ._context import Check, Findings


def run(check: Check, findings: Findings) -> Findings:
    """The findings, with what the workers evaluated evaluated again serially where f did
    not give the same values there; every evaluation after this pass is serial.
    """
    evaluator, plan = check.evaluator, findings.plan
    redo = evaluator.redo(plan.idx[suspects(check, findings)])
    if redo.size:
        positions = np.flatnonzero(np.isin(plan.idx, redo))
        part = _budget.subplan(plan, positions)
        again = estimate(part, evaluator.run(part), check.problem.f0)
        evaluator.verify()
        found = replace(findings, estimate=merged(findings.est, positions, again))
        findings = _compare.run(check, found)
    evaluator.settle()
    # Whether the plan ran on workers or serially, when that was decided on evidence.
    why = evaluator.why
    return findings if why is None else findings.with_notes((why,))


def suspects(check: Check, findings: Findings) -> np.ndarray:
    """Positions in the plan whose values a conclusion will rest on: per block, the worst
    PER_BLOCK entries that disagree, and the REPRODUCE_MOST worst-scoring of the plan.
    """
    plan, est, judge = findings.plan, findings.est, check.judge
    if plan.method == "complex" or not plan.idx.size:
        return np.empty(0, dtype=np.int64)
    a = check.problem.analytic[plan.idx]
    score = judge.scores(a, est.gradapprox, judge.noise_f * est.sensitivity)
    score[est.bad] = np.inf  # f not finite there: a value to see again too
    offsets = check.problem.layout.offsets
    flagged = [p[: _policy.PER_BLOCK] for p in flagged_positions(plan, offsets, score)]
    worst = np.argsort(-score, kind="stable")[: _policy.REPRODUCE_MOST]
    return np.unique(np.concatenate([worst, *flagged]))
