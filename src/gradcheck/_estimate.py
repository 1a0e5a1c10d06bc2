"""Estimate: evaluate a plan and turn the raw values into finite-difference derivatives.

The coordinate pass (:func:`run`) evaluates the check's plan, within the budget's deadline,
keeping the directions' share of the time.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import _budget, _policy
from ._context import Check, Estimate, Findings
from ._plan import METHODS, Plan
from ._results import Note, Verdict


def run(check: Check, findings: Findings) -> Findings:
    """Evaluate the plan with the check's engine and estimate the derivatives.

    With a deadline the plan may be cut short (``_budget.evaluate_within``): the findings
    then hold the plan as checked, and a note says what was left out.
    """
    plan, f0 = findings.plan, check.problem.f0
    if plan.method == "complex":
        est, notes = _complex_step(check, plan)
        return replace(findings, estimate=est).with_notes(notes)
    # The directions, fitted with the plan, keep their share of the time.
    deadline = check.deadline.keeping(check.selection.directions or 0)
    plan, values, cut = _budget.evaluate_within(check.evaluator, plan, deadline)
    found = replace(findings, plan=plan, estimate=estimate(plan, values, f0))
    return found.with_notes(() if cut is None else (cut,))


def _complex_step(check: Check, plan: Plan) -> tuple[Estimate, tuple[Note, ...]]:
    """The complex-step derivatives of ``plan``, and a note when f is not complex-safe."""
    problem, evaluator = check.problem, check.evaluator
    if not plan.idx.size:  # directions only: nothing to take the complex step on
        return estimate(plan, np.empty((0, 1)), problem.f0), ()
    values = evaluator.complex(plan.idx, plan.step)
    analytic = problem.analytic[plan.idx]
    if values.dtype.kind != "c" or (not values.imag.any() and analytic.any()):
        raise ValueError(
            "method='complex' needs f to carry complex input through to its result, but f "
            "returned no imaginary part: it drops it somewhere (np.abs, float(), .real, "
            "np.vdot or conjugation, a real-only kernel); use method='central'"
        )
    # Self-test: a complex-safe f gives the same Im f / h at a much smaller step.
    shrink, rtol, count = _policy.COMPLEX_SELF_TEST
    probe = np.argsort(-np.abs(analytic), kind="stable")[:count]
    again = evaluator.complex(plan.idx[probe], plan.step[probe] * shrink)
    first = values.imag[probe] / plan.step[probe]
    second = again.imag / (plan.step[probe] * shrink)
    notes: tuple[Note, ...] = ()
    if not np.allclose(first, second, rtol=rtol, atol=0):
        notes = (
            Note(
                "inconclusive: f is not complex-safe (Im f(x + ih) / h changes with h); "
                "a non-analytic operation (abs, conjugation, comparisons on complex values) "
                "breaks the complex step: use method='central'",
                floor=Verdict.INCONCLUSIVE,
            ),
        )
    return estimate(plan, values.imag[:, None], problem.f0), notes


def merged(est: Estimate, positions: np.ndarray, again: Estimate) -> Estimate:
    """``est`` with the entries at ``positions`` replaced by those of ``again``."""
    fields = {}
    for name in ("gradapprox", "bad", "sensitivity", "one_sided"):
        column = getattr(est, name).copy()
        column[positions] = getattr(again, name)
        fields[name] = column
    return Estimate(**fields)


def estimate(plan: Plan, evaluations: np.ndarray, f0: float) -> Estimate:
    """Combine the evaluations as ``plan.method`` prescribes.

    central ``(F+ - F-) / width``; forward ``(F+ - f0) / width``; richardson
    ``(4 D(h/2) - D(h)) / 3`` from the central differences at h and h/2; complex
    ``Im f(x + ih) / h`` (the engine hands over the imaginary parts).
    """
    spec = METHODS[plan.method]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if plan.method == "complex":
            d = [evaluations[:, 0] / plan.width[:, 0]]
        else:
            d = [
                (evaluations[:, i] - (f0 if j is None else evaluations[:, j])) / plan.width[:, p]
                for p, (i, j) in enumerate(spec.pairs)
            ]
        # Each difference of two values of f can be off by twice f's noise, over its width.
        per_pair = [2.0 / np.abs(plan.width[:, p]) for p in range(plan.width.shape[1])]
        if plan.method == "richardson":
            gradapprox = (4.0 * d[1] - d[0]) / 3.0
            sensitivity = per_pair[0] / 3.0 + 4.0 * per_pair[1] / 3.0
        elif plan.method == "complex":
            gradapprox = d[0]
            sensitivity = np.zeros_like(d[0])  # no subtraction: no cancellation
        else:
            gradapprox = d[0]
            sensitivity = per_pair[0]
        one_sided = np.full((gradapprox.size, 2), np.nan)
        if plan.method == "central":
            x = plan.base
            one_sided[:, 0] = (f0 - evaluations[:, 1]) / (x - plan.values[:, 1])
            one_sided[:, 1] = (evaluations[:, 0] - f0) / (plan.values[:, 0] - x)
    bad = ~np.isfinite(evaluations).all(axis=1)
    return Estimate(gradapprox, bad, sensitivity, one_sided)
