"""The low-precision comparison as text: a headline, one row per result, its sentences."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _policy
from ._text import _names, _num, _table

if TYPE_CHECKING:  # the report imports this module to draw itself
    from ._lowprec import CompareReport

_SHOWN_WORST = 5
WORST_LEGEND = (
    "  score: |error| over the baseline's largest |error| in the same result; above 1 the "
    "entry is worse than anything the reference does there in {dtype}"
)


def format_compare(r: CompareReport) -> str:
    """The readable comparison: what ran, the table of results, why each fails, the worst
    entries and a summary.
    """
    lines = [headline(r), *_setting(r), ""]
    columns = (
        "result",
        "shape",
        "error",
        "baseline",
        "ratio",
        "allowed ratio",
        "slope",
        "baseline slope",
        "allowed slope",
        "verdict",
        "max |error|",
        "at",
    )
    rows: list[tuple[str, ...]] = [columns]
    for a in r.blocks.values():
        rows.append(
            (
                a.name,
                "x".join(map(str, a.shape)) or "scalar",
                _num(a.error),
                _num(a.baseline_error),
                f"{a.ratio:.3g}",
                f"{a.ratio_allowed:.3g}",
                _signed(a.slope),
                _signed(a.baseline_slope),
                _num(a.slope_allowed),
                a.verdict.upper() if a.verdict == "fail" else str(a.verdict),
                _num(a.max_abs_error),
                a.max_abs_error_at or "-",
            )
        )
    lines += _table(rows, right={2, 3, 4, 5, 6, 7, 8, 10})
    for a in r.blocks.values():
        lines += [f"  {a.name}: {text}" for text in (*a.problems, *a.notes)]
    lines += [f"  {note}" for note in r.notes]
    if r.worst:
        rows = [("worst entries", "kernel", "truth", "baseline", "|error|", "score")]
        for w in r.worst[:_SHOWN_WORST]:
            cells = (w.kernel, w.truth, w.baseline, w.abs_error)
            rows.append((w.name, *map(_num, cells), f"{w.score:.3g}"))
        lines += ["", *_table(rows, right={1, 2, 3, 4, 5}), WORST_LEGEND.format(dtype=r.dtype)]
    lines += ["", _summary(r)]
    return "\n".join(lines)


def headline(r: CompareReport) -> str:
    """The first line, which pytest's one-line summary shows."""
    line = f"gradcheck compare: {r.verdict.upper()}  {r.dtype} kernel against float64"
    if r.failing:
        line += f"  (failing: {_names(list(r.failing))})"
    return line


def _setting(r: CompareReport) -> list[str]:
    factors = {a.kind: a.factor for a in r.blocks.values()}
    allowed = ", ".join(f"{f:g}x the baseline's for {kind}s" for kind, f in factors.items())
    lines = [
        f"  truth: the reference in float64; baseline: the reference in {r.dtype}; kernel: fn "
        f"in {r.dtype}",
        f"  {r.framework} on {r.device}, {r.seconds:.3g} s, seed {r.seed}",
        f"  pass: error at most {allowed} (widened for few entries);",
        f"    slope at most {_policy.SLOPE_FACTOR:g}x the baseline's plus {_policy.SLOPE_Z:g} of "
        "its own spreads",
    ]
    ref = r.reference
    if ref is None:
        lines.append("  the reference's gradient was not checked (check_reference=False)")
        return lines
    if ref.checked == ref.n:
        coverage = f"all {ref.n:,} coordinates"
    else:
        coverage = f"{ref.checked:,} of {ref.n:,} coordinates"
    if ref.directions:
        coverage += f" and {ref.directions} random directions per input"
    lines.append(
        f"  the reference's float64 gradient by finite differences: {ref.verdict.upper()}, "
        f"difference {_num(ref.difference)} ({coverage})"
    )
    return lines


def _summary(r: CompareReport) -> str:
    failing = r.failing
    if failing and failing[0] == "reference":
        blocks = ", ".join(r.reference.failing) if r.reference is not None else ""
        return (
            f"The reference is wrong: its float64 gradient of {blocks} fails gradcheck's "
            "finite-difference check, so the kernel cannot be judged against it. Fix the "
            "reference first."
        )
    if failing:
        return (
            f"{len(failing)} of {len(r.blocks)} results fail: {_names(list(failing), 20)}. "
            "Each says why above."
        )
    if r.verdict == "inconclusive":
        return "No result fails, but some could not be judged: see the notes above."
    return f"Every result is within what the reference itself reaches in {r.dtype}."


def _signed(x: float) -> str:
    return _num(x) if x != x or x < 0 else "+" + _num(x)
