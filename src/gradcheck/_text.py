"""The report as text: the table that scales with the number of blocks, and its sentences."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ._results import BlockResult, Verdict

if TYPE_CHECKING:  # the report imports this module to draw itself
    from ._report import Report

_SHOWN_WORST = 5
# What the worst-entries table's last column means (the rule is _compare.scores).
SCORE_LEGEND = (
    "  score: |error| over what the entry's rounding noise and a relative tolerance allow; "
    "above 1 it disagrees"
)
_METHOD_WORDS = {"central": "central differences", "forward": "forward differences"}


_TABLE_BLOCKS = 20
_SHOWN_PASSING = 5


def _shown_blocks(r: Report, full: bool) -> tuple[list[BlockResult], str | None]:
    """The blocks the table lists, and the line that sums up the others (None: all shown)."""
    blocks = list(r.blocks.values())
    if full or len(blocks) <= _TABLE_BLOCKS:
        return blocks, None

    def badness(b):  # the most severe first, then the largest difference
        d = b.difference if b.difference == b.difference else math.inf
        return (-Verdict(b.verdict).severity, -d)

    bad = sorted((b for b in blocks if b.verdict not in ("pass", "untested")), key=badness)
    rest = sorted((b for b in blocks if b.verdict == "pass" and b.size), key=badness)
    shown = bad[:_TABLE_BLOCKS] + rest[:_SHOWN_PASSING]
    keep = {id(b) for b in shown}
    hidden = [b for b in blocks if id(b) not in keep]
    counts: dict[str, int] = {}
    for b in hidden:
        word = _verdict_cell(b).lower()
        counts[word] = counts.get(word, 0) + 1
    spread = ", ".join(f"{n:,} {word}" for word, n in counts.items())
    worst = max((b.difference for b in hidden if b.verdict == "pass"), default=math.nan)
    more = f" (largest passing difference {_num(worst)})" if worst == worst else ""
    line = (f"  ... {len(hidden):,} more blocks not listed: {spread}{more}; "
            "report.table(full=True) lists every block")  # fmt: skip
    return [b for b in blocks if id(b) in keep], line


def format_report(r: Report, full: bool = False) -> str:
    """The readable report; ``full`` lists every block (see :meth:`Report.table`)."""
    listed, summary = _shown_blocks(r, full)
    head = [
        _headline(r),
        f"  {_coverage(r)}, {_METHOD_WORDS.get(r.method, r.method)} ({r.step})",
        f"  {r.nfev:,} evaluations of f, {r.engine} engine"
        + (f", {r.workers} workers" if r.workers > 1 else "")
        + f", {r.seconds:.3g} s"
        + (f" (budget {r.budget:g} s)" if r.budget is not None else "")
        + f"; seed {r.seed}",
        f"  pass <= {r.tol[0]:.3g}, fail > {r.tol[1]:.3g}",
    ]
    sampled = r.checked < r.n
    columns = ["block", "shape", "checked", "difference", "verdict", "max |error|", "at"]
    if sampled:
        columns.insert(3, "P(miss 1%)")
    if r.directions:
        columns.insert(-3, "directions")
    rows = [tuple(columns)]
    for b in listed:
        cells = {
            "block": b.name,
            "shape": "x".join(map(str, b.shape)) or "scalar",
            "checked": f"{b.checked:,}",
            "P(miss 1%)": f"{b.miss_probability(0.01):.2g}" if b.size else "-",
            "difference": _num(b.difference) if b.checked else "-",
            "directions": _num(b.direction_difference) if b.size else "-",
            "verdict": _verdict_cell(b),
            # Directions alone compare no entry: no entry's error to show.
            "max |error|": _num(b.max_abs_error) if b.checked else "-",
            "at": b.max_abs_error_at or "-",
        }
        rows.append(tuple(cells[c] for c in columns))
    right = {i for i, c in enumerate(columns) if c not in ("block", "shape", "verdict", "at")}
    lines = [*head, "", *_table(rows, right=right), *((summary,) if summary else ())]
    raised = sum(b.tol != r.tol and b.tol == b.tol and b.size for b in r.blocks.values())
    if summary is not None and raised:
        # One line for all: with many blocks, a line each would bury the failures.
        lines.append(f"  thresholds raised for the noise in f ({r.noise:.3g}) in {raised:,} "
                     "blocks (the full table's rows say which)")  # fmt: skip
    for b in listed:
        lines += _block_lines(r, b, summary)
    if r.kinks:
        shown = ", ".join(f"{k.name} ({k.kind})" for k in r.kinks[:_SHOWN_WORST])
        more = f" and {len(r.kinks) - _SHOWN_WORST} more" if len(r.kinks) > _SHOWN_WORST else ""
        lines.append(
            f"  {len(r.kinks)} entries disagree only at kinks of f (ReLU at 0, ties in max) and "
            f"are left out of the verdicts: {shown}{more}"
        )
    for note in r.notes:
        lines.append(f"  {note}")
    bad = [b for b in listed if b.nonfinite]
    for b in bad:
        lines.append(
            f"  f was not finite at perturbed points of {b.name}: {', '.join(b.nonfinite)}"
        )
    if r.worst:
        rows = [("worst entries", "analytic", "numeric", "|error|", "score")]
        for e in r.worst[:_SHOWN_WORST]:
            rows.append(
                (e.name, _num(e.analytic), _num(e.numeric), _num(e.abs_error), _num(e.score))
            )
        lines += ["", *_table(rows, right={1, 2, 3, 4}), SCORE_LEGEND]
    lines += ["", _summary(r)]
    return "\n".join(lines)


def _block_lines(r: Any, b: BlockResult, summary: str | None) -> list[str]:
    """The sentences under the table for one block."""
    out: list[str] = []
    if b.diagnosis:
        out.append(f"  {b.name}: {b.diagnosis}")
    if b.localized:
        out.append(f"  {b.name}: the directional search found {', '.join(b.localized)}")
    if b.zeros:
        out.append(
            f"  {b.name}: {b.zeros:,} entr{'y is' if b.zeros == 1 else 'ies are'} exactly 0 "
            "on both sides (agreement: f does not move with them here)"
        )
    if b.untested:
        out.append(
            f"  {b.name}: {b.untested:,} entr{'y has' if b.untested == 1 else 'ies have'} "
            "both sides below what the finite differences resolve (agreement within "
            "resolution, counted apart from the entries the differences test)"
        )
    raised = b.tol != r.tol and b.tol == b.tol and b.size and summary is None
    if raised and b.tol[1] >= 1.0:
        out.append(
            f"  {b.name}: the noise in f ({r.noise:.3g}) is too large for any difference "
            "to fail here"
        )
    elif raised:
        out.append(
            f"  {b.name}: thresholds raised to pass <= {b.tol[0]:.3g}, fail > {b.tol[1]:.3g} "
            f"for the noise in f ({r.noise:.3g})"
        )
    return out


def _verdict_cell(b: BlockResult) -> str:
    if not b.size:
        return "empty"  # nothing to check: skipped, rather than a "pass" of nothing
    return b.verdict.upper() if b.verdict == "fail" else b.verdict


def _headline(r: Report) -> str:
    """The first line, which pytest's one-line summary shows: the verdict, the difference,
    and the blocks that decided a verdict other than pass.
    """
    line = f"gradcheck: {r.verdict.upper()}  difference = {r.difference!r}"
    fails = r.failing
    if fails:
        return line + f"  (failing: {_names(fails)})"
    unjudged = [name for name, b in r.blocks.items() if b.verdict == "inconclusive"]
    if unjudged:
        line += f"  (inconclusive: {_names(unjudged)})"
    return line


def _names(names, shown: int = _SHOWN_WORST) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _coverage(r: Report) -> str:
    blocks = f"{len(r.blocks)} block{'s' if len(r.blocks) > 1 else ''}"
    if r.checked == r.n:
        text = f"all {r.n:,} coordinates in {blocks}"
    else:
        text = f"checked {r.checked:,} of {r.n:,} coordinates in {blocks}"
    if r.directions:
        text += f", {r.directions} random direction{'s' if r.directions > 1 else ''} per block"
    return text


def _summary(r: Report) -> str:
    fails = r.failing
    if fails:
        return (
            f"{len(fails)} of {len(r.blocks)} blocks fail: {_names(fails, 20)}. "
            "Look at their backward pass first."
        )
    if r.verdict == "inconclusive":
        unjudged = [name for name, b in r.blocks.items() if b.verdict == "inconclusive"]
        if unjudged:
            return (
                f"No block fails, but {', '.join(unjudged)} could not be judged: "
                "each says why above, and what to do."
            )
        return "No block fails, but the check is inconclusive: see the notes above."
    if r.verdict == "warn":
        return "No block fails; some differences lie between the pass and fail thresholds."
    return "Every block passes."


def _table(rows, right=frozenset()):
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [
            cell.rjust(widths[c]) if c in right else cell.ljust(widths[c])
            for c, cell in enumerate(row)
        ]
        out.append("  " + "  ".join(cells).rstrip())
    return out


def _num(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.3e}"


