"""Low-precision comparison: a kernel in bf16 (fp16, float32) against a float64 truth,
relative to what the reference itself reaches in the same dtype.

Finite differences cannot check a bf16 kernel: at bf16, ``x + h == x`` for every step small
enough to resolve a derivative. What can be checked is how far the kernel lies from the
truth (the reference in float64) compared with how far the reference lies from it when run
in the kernel's dtype (the baseline). Framework-neutral: numpy arrays in (already float64,
on the CPU), frozen records out; the adapters in ``gradcheck.torch`` and ``gradcheck.jax``
run the three sides and hand their results here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from . import _policy
from ._lowprec_report import Agreement, Sides, Worst, reference_wrong
from ._norms import rms
from ._report import Report
from ._results import Verdict

KINDS = ("output", "gradient")


def measure(name: str, kind: str, sides: Sides, *, unit: float, factor: float) -> Agreement:
    """The agreement of one result: errors, ratio, slopes, and the rules' verdict.

    ``unit`` is the unit roundoff of the kernel's dtype (2**-8 for bf16); ``factor`` the
    ratio allowed.
    """
    t, b, r = sides.truth, sides.baseline, sides.rounded
    k = np.zeros_like(t) if sides.kernel is None else sides.kernel
    problems, notes = _vacuous(name, kind, sides)
    scale = rms(t)
    absolute = not scale > 0  # the truth is exactly 0: errors are absolute
    scale = scale if scale > 0 else 1.0
    finite_b = bool(np.isfinite(b).all())
    if not finite_b:
        notes.append(
            f"the reference in the kernel's dtype is not finite at {_where(name, b)}: the "
            "kernel is judged against the truth's rounding alone"
        )
    error = rms(k - t) / scale
    base = rms(b - t) / scale if finite_b else math.inf
    floor = max(rms(r - t) / scale, 0.0 if absolute else _policy.EXACT_FLOOR * unit)
    ratio = _ratio(error, base if finite_b else 0.0, floor)
    slope, spread = _slope(k, t)
    b_slope, b_spread = _slope(b, t) if finite_b else (0.0, 0.0)
    n = max(t.size, 1)
    allowed = (
        _policy.SLOPE_FACTOR * max(abs(b_slope), b_spread, floor / math.sqrt(n))
        + _policy.SLOPE_Z * spread
    )
    if absolute:
        notes.append("the truth is exactly 0 here: its errors are absolute, not relative")
    # Non-vacuity failures speak for themselves; a truth that is not finite judges nothing.
    judged = not problems and bool(np.isfinite(t).all())
    ratio_allowed = factor * math.exp(_policy.RATIO_Z / math.sqrt(n))
    if judged and not ratio <= ratio_allowed:
        problems.append(
            f"its error is {_x(ratio)} the baseline's ({error:.3g} against {max(base, floor):.3g}"
            f"; allowed {ratio_allowed:.3g}x: {factor:g}x, widened for {t.size:,} entries)"
        )
    if judged and not absolute and not abs(slope) <= allowed:
        problems.append(
            f"a systematic error: it leans {slope:+.2e} along the truth (the baseline "
            f"{b_slope:+.2e}; allowed {allowed:.2e})"
        )
    at = _argmax_abs(k - t)
    return Agreement(
        name=name,
        kind=kind,
        shape=tuple(t.shape),
        verdict=_verdict(problems, t),
        error=error,
        baseline_error=base,
        floor=floor,
        ratio=ratio,
        factor=factor,
        ratio_allowed=ratio_allowed,
        max_abs_error=float(np.max(np.abs(k - t))) if k.size else 0.0,
        max_abs_error_at=None if at is None else _index(name, at, t.shape),
        baseline_max_abs_error=float(np.max(np.abs(b - t))) if b.size else 0.0,
        slope=slope,
        baseline_slope=b_slope,
        slope_spread=spread,
        slope_allowed=allowed,
        problems=tuple(problems),
        notes=tuple(notes),
    )


def _vacuous(name: str, kind: str, sides: Sides) -> tuple[list[str], list[str]]:
    """The non-vacuity rules: what makes a result fail whatever its error (and notes)."""
    t, k = sides.truth, sides.kernel
    problems: list[str] = []
    notes: list[str] = []
    if not np.isfinite(t).all():
        notes.append(
            f"the truth (the reference in float64) is not finite at {_where(name, t)}: "
            "this result cannot be judged"
        )
    if k is None and t.any():
        problems.append("the kernel returned no gradient (None) for this input")
    elif k is None:
        notes.append("the kernel returned no gradient (None): right, the truth is 0 here")
    elif not np.isfinite(k).all():
        problems.append(f"the kernel's result is not finite at {_where(name, k)}")
    elif not k.any() and np.isfinite(t).all() and t.any():
        what = "gradient" if kind == "gradient" else "output"
        problems.append(
            f"the kernel's {what} is all zero where the truth is not (its RMS {rms(t):.3g})"
        )
    return problems, notes


def _verdict(problems: list[str], truth: np.ndarray) -> Verdict:
    if problems:
        return Verdict.FAIL
    return Verdict.PASS if np.isfinite(truth).all() else Verdict.INCONCLUSIVE


def _ratio(error: float, base: float, floor: float) -> float:
    denominator = max(base, floor)
    if denominator > 0:
        return error / denominator
    return 0.0 if error == 0 else math.inf


def _slope(x: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """``<x, t> / <t, t> - 1`` and its spread: the scatter of the rows' shares of it (rows
    along the last axis, where a fused kernel's errors share their sums), at least what
    independent entries would give.
    """
    tt = float(np.vdot(t, t))
    if not np.isfinite(x).all() or not np.isfinite(tt):
        return math.nan, math.nan
    if not tt > 0:
        return 0.0, 0.0
    e = x - t
    slope = float(np.vdot(e, t)) / tt
    independent = rms(e) / math.sqrt(tt / t.size) / math.sqrt(t.size)
    if t.ndim < 2 or t.shape[-1] == 0:
        return slope, independent
    rows_e, rows_t = e.reshape(-1, t.shape[-1]), t.reshape(-1, t.shape[-1])
    m = rows_e.shape[0]
    if m < 2:
        return slope, independent
    shares = np.einsum("ij,ij->i", rows_e, rows_t) - slope * np.einsum("ij,ij->i", rows_t, rows_t)
    rows = math.sqrt(float(shares @ shares) * m / (m - 1)) / tt
    return slope, max(independent, rows)


def _argmax_abs(a: np.ndarray) -> int | None:
    if a.size == 0:
        return None
    bad = np.flatnonzero(~np.isfinite(a))
    return int(bad[0]) if bad.size else int(np.argmax(np.abs(a)))


def _index(name: str, flat: int, shape: tuple[int, ...]) -> str:
    if not shape:
        return name
    return f"{name}[{', '.join(map(str, np.unravel_index(flat, shape)))}]"


def _where(name: str, a: np.ndarray) -> str:
    """The first non-finite entries of ``a`` by name, with their values and their count."""
    bad = np.flatnonzero(~np.isfinite(a))
    flat = a.reshape(-1)
    shown = ", ".join(
        f"{_index(name, int(i), a.shape)} ({flat[i]})" for i in bad[: _policy.NONFINITE_SHOWN]
    )
    more = bad.size - _policy.NONFINITE_SHOWN
    return shown + (f" and {more:,} more" if more > 0 else "")


def _x(ratio: float) -> str:
    return f"{ratio:.3g}x" if math.isfinite(ratio) else "infinitely"


# --- rules that need more than one run ----------------------------------------------------------


def with_problem(a: Agreement, text: str) -> Agreement:
    """``a`` failing for one more reason."""
    return replace(a, problems=(*a.problems, text), verdict=Verdict.FAIL)


def with_note(a: Agreement, text: str) -> Agreement:
    return replace(a, notes=(*a.notes, text))


def dependence(moved_truth: np.ndarray, moved_kernel: np.ndarray, noise: float) -> float | None:
    """How much of the truth's move the kernel followed (the RMS of its move over the
    truth's), when the truth moved far beyond ``noise``, the kernel's RMS error there;
    None when that cannot be told.

    ``moved_truth`` and ``moved_kernel`` are the changes of one result when one input
    moved. A kernel that ignores that input does not move at all (0).
    """
    truth = rms(moved_truth)
    if not truth > _policy.DEPEND_RESOLVE * noise or not np.isfinite(moved_kernel).all():
        return None
    return rms(moved_kernel) / truth


def ignores(followed: float | None) -> bool:
    return followed is not None and followed < _policy.DEPEND_FRACTION


def worst_entries(blocks: Mapping[str, Agreement], sides: Mapping[str, Sides]) -> tuple:
    """The entries farthest from the truth, over the baseline's largest error in their
    result, worst first (at most ``_policy.WORST``).
    """
    found = []
    for name, s in sides.items():
        if s.kernel is None or not s.truth.size:
            continue
        err = np.abs(s.kernel - s.truth).reshape(-1)
        # A non-finite entry is the worst of all; its error stays what it is (NaN).
        rank = np.where(np.isfinite(err), err, np.inf)
        top = np.argsort(-rank, kind="stable")[: _policy.WORST]
        base = blocks[name].baseline_max_abs_error
        for i in top:
            if rank[i] == 0:
                continue
            score = rank[i] / base if base > 0 else math.inf
            found.append(
                Worst(
                    name=_index(name, int(i), s.truth.shape),
                    block=name,
                    kernel=float(s.kernel.reshape(-1)[i]),
                    truth=float(s.truth.reshape(-1)[i]),
                    baseline=float(s.baseline.reshape(-1)[i]),
                    abs_error=float(err[i]),
                    score=float(score),
                )
            )
    found.sort(key=lambda w: -w.score if w.score == w.score else 0.0)
    return tuple(found[: _policy.WORST])


def verdict_of(blocks: Mapping[str, Agreement], reference: Report | None) -> Verdict:
    """The worst block verdict; a wrong reference fails the comparison."""
    verdicts = [a.verdict for a in blocks.values()]
    if reference_wrong(reference):
        verdicts.append(Verdict.FAIL)
    return Verdict.worst(verdicts)


def default_factor(factor: Any) -> dict[str, float]:
    """``factor`` validated: None (the policy's), one number, or (outputs, gradients)."""
    if factor is None:
        return dict(_policy.COMPARE_FACTOR)
    pair = factor if isinstance(factor, (tuple, list)) else (factor, factor)
    ok = len(pair) == 2 and all(
        isinstance(f, (int, float)) and not isinstance(f, bool) and f >= 1 and math.isfinite(f)
        for f in pair
    )
    if not ok:
        raise ValueError(
            f"`factor` must be None, a number >= 1, or (outputs, gradients) of them, got {factor!r}"
        )
    return dict(zip(KINDS, map(float, pair), strict=True))
