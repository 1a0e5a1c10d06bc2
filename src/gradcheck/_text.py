"""The report as text: the table that scales with the number of blocks, and its sentences."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from . import _policy
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
    line = (
        f"  ... {len(hidden):,} more blocks not listed: {spread}{more}; "
        "report.table(full=True) lists every block"
    )
    return [b for b in blocks if id(b) in keep], line


def format_report(r: Report, full: bool = False) -> str:
    """The readable report; ``full`` lists every block (see :meth:`Report.table`)."""
    listed, summary = _shown_blocks(r, full)
    head = [
        _headline(r),
        # The difference to the last digit (the classic exercise's numbers), once.
        f"  difference = {r.difference!r} (pass <= {r.tol[0]:.3g}, fail > {r.tol[1]:.3g})",
        f"  {_coverage(r)}, {_METHOD_WORDS.get(r.method, r.method)} ({r.step})",
        f"  {r.nfev:,} evaluations of f, {r.engine} engine"
        + (f", {r.workers} workers" if r.workers > 1 else "")
        + f", {r.seconds:.3g} s"
        + (f" (budget {r.budget:g} s)" if r.budget is not None else "")
        + f"; seed {r.seed}",
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
        lines.append(
            f"  thresholds raised for the noise in f ({r.noise:.3g}) in {raised:,} "
            "blocks (the full table's rows say which)"
        )
    for b in listed:
        lines += _block_lines(r, b, summary)
    lines += _zeros_line(listed)
    lines += _reach_lines(listed)
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
    # A passing report's closest entries agree: a table of them would say "pass" again.
    if r.worst and r.verdict != "pass":
        rows = [("worst entries", "analytic", "numeric", "|error|", "score")]
        for e in r.worst[:_SHOWN_WORST]:
            rows.append(
                (e.name, _num(e.analytic), _num(e.numeric), _num(e.abs_error), _num(e.score))
            )
        lines += ["", *_table(rows, right={1, 2, 3, 4}), SCORE_LEGEND]
    closing = _summary(r)
    lines += ["", closing] if closing else []
    return "\n".join(lines)


def _block_lines(r: Any, b: BlockResult, summary: str | None) -> list[str]:
    """The sentences under the table for one block."""
    out: list[str] = []
    if b.diagnosis:
        # "b1 = 4.00 x numeric" names its block already.
        named = b.diagnosis.startswith(f"{b.name} ")
        out.append(f"  {b.diagnosis}" if named else f"  {b.name}: {b.diagnosis}")
    if b.localized:
        out.append(f"  {b.name}: the directional search found {', '.join(b.localized)}")
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


def _zeros_line(listed: list[BlockResult]) -> list[str]:
    """One sentence for the entries exactly 0 on both sides, every block's count in it."""
    counts = [(b.name, b.zeros) for b in listed if b.zeros]
    if not counts:
        return []
    where = ", ".join(f"{name} {n:,}" for name, n in counts[:_TABLE_BLOCKS])
    extra = len(counts) - _TABLE_BLOCKS
    more = f" and {extra:,} more blocks" if extra > 0 else ""
    return [f"  entries exactly 0 on both sides (agreement; f is flat there): {where}{more}"]


def _reach_lines(listed: list[BlockResult]) -> list[str]:
    """What the check could have missed: one line for the blocks checked whole, one per
    block checked in part (up to five), one for the negative controls.
    """
    blocks = [b for b in listed if b.reach is not None and b.verdict != "fail"]
    whole = [b for b in blocks if b.checked == b.size]
    part = [b for b in blocks if b.checked < b.size]
    out = []
    if whole:
        out.append(f"  could have missed: {_whole_reach(whole, len(listed) > 1)}")
    for b in part[:_SHOWN_WORST]:
        alone = "" if b.checked else " (no entry checked one by one)"
        out.append(f"  {b.name}{alone} could have missed: {_part_reach(b)}")
    if len(part) > _SHOWN_WORST:
        out.append(
            f"  ... and {len(part) - _SHOWN_WORST:,} more blocks checked in part "
            "(report.blocks[name].reach)"
        )
    out += _control_line(listed)
    return out


def _factor(c: float) -> str:
    if c != c:
        return "no factor (the gradient is 0)"
    if math.isinf(c):
        return "any factor (the thresholds let every difference through)"
    return f"a factor within {c:.3g} of 1"


def _percent(x: float) -> str:
    return f"{100 * x:.2g}%"


def _whole_reach(blocks: list[BlockResult], named: bool) -> str:
    """The blocks checked whole: the least sensitive block's factor and median entry
    (``named``: which block that is, when the report has several).
    """
    reach = {b.name: b.reach for b in blocks if b.reach is not None}
    factors = {n: r.factor for n, r in reach.items() if r.factor == r.factor}
    entries = {n: r.entry for n, r in reach.items() if r.entry == r.entry}
    parts = []
    if factors:
        name = max(factors, key=lambda n: factors[n])
        where = f" ({name})" if named else ""
        parts.append(f"{_factor(factors[name])}{where}")
    if entries:
        name = max(entries, key=lambda n: entries[n])
        where = f", {name}" if named else ""
        if math.isinf(entries[name]):
            parts.append(f"an entry off by any amount{where}")
        else:
            parts.append(f"an entry off by < {_percent(entries[name])} (median{where})")
    return "; ".join(parts) or "nothing was compared"


def _part_reach(b: BlockResult) -> str:
    """One block checked in part: factor, one entry and the chance it was seen, and the
    smallest fraction of wrong entries caught with probability 0.95.
    """
    r = b.reach
    if r is None:
        return "everything (not checked)"
    error = _percent(r.error)
    parts = [_factor(r.factor)]
    if b.checked:
        entry = "any amount" if math.isinf(r.entry) else f"< {_percent(r.entry)} (median)"
        unseen = b.size - b.checked
        parts.append(f"an entry off by {entry}, or unchecked ({unseen:,} of {b.size:,})")
    miss = 1 - r.single
    shown = "> 0.99" if miss > 0.99 else f"{miss:.2g}"
    missed = f"one entry off by {error} RMS with probability {shown}"
    if r.fraction != r.fraction:
        missed += f", and errors of {error} RMS in any share of its entries"
    elif round(r.fraction * b.size) > 1:
        chance = 1 - _policy.REACH_PROBABILITY
        missed += (
            f", errors of {error} RMS in {_percent(r.fraction)} of its entries with "
            f"probability {chance:.2g}"
        )
    parts.append(missed)
    return "; ".join(parts)


def _control_line(listed: list[BlockResult]) -> list[str]:
    """The negative controls in one line: how many planted errors failed their block, and
    the ones that did not.
    """
    controls = [(b, c) for b in listed for c in b.controls]
    if not controls:
        return []
    failed = sum(c.verdict == "fail" for _, c in controls)
    missed = [c.planted for _, c in controls if c.verdict != "fail"]
    line = (
        f"  negative control: {failed} of {len(controls)} errors planted in a copy of the "
        "gradient fail their block"
    )
    if missed:
        line += f"; not caught: {_names(missed)}"
    # A block checked by directions alone has no entry's difference to plant one in.
    bare = [b.name for b in listed if b.controls and not b.checked]
    if bare:
        line += f" (no entry planted in {_names(bare)}: none checked one by one)"
    return [line]


def _verdict_cell(b: BlockResult) -> str:
    if not b.size:
        return "empty"  # nothing to check: skipped, rather than a "pass" of nothing
    return b.verdict.upper() if b.verdict == "fail" else b.verdict


def _headline(r: Report) -> str:
    """The first line, which pytest's one-line summary shows, cut at the terminal's width:
    the verdict, the blocks that decided it, then the difference (in full on the next line).
    """
    line = f"gradcheck: {r.verdict.upper()}"
    deciding = r.failing or [
        name for name, b in r.blocks.items() if b.verdict == r.verdict and r.verdict != "pass"
    ]
    if deciding:
        line += f" in {_names(deciding)}"
    return line + f" (difference {r.difference:.3g})"


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
    """The closing sentence: where to look first; none for a pass (the headline says it)."""
    fails = r.failing
    if fails:
        return _where_to_look(r, fails)
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
    return ""


def _where_to_look(r: Report, fails: tuple[str, ...]) -> str:
    """The failing blocks, and which to look at first.

    A wrong backward step corrupts the gradient of every block before it, so when blocks
    come in forward order (as ``named_parameters()`` and course dicts give them) the
    failing block nearest the output, the earliest in backprop order, localises the error.
    """
    names = list(r.blocks)
    if len(fails) == 1:
        return f"1 of {len(names)} blocks fails: {fails[0]}. Look at its backward pass first."
    head = f"{len(fails)} of {len(names)} blocks fail: {_names(fails, 20)}."
    last = fails[-1]
    after = names[names.index(last) + 1 :]
    if tuple(names[: len(fails)]) == fails and after:
        # Every block up to one fails and every one after it passes: one wrong step.
        return (
            f"{head} Every block up to {last} fails and none after it: a wrong backward step "
            "corrupts every block before it, so the earliest failing block in backprop order "
            f"({last}) localises it. Look first at the step between {last} and {after[0]}."
        )
    return (
        f"{head} Look first at {last}, the earliest failing block in backprop order (the "
        "last in the order of params), whose error may have reached the blocks before it."
    )


def format_repr(r: Report) -> str:
    """The one line a REPL shows; ``print(report)`` gives the whole table."""
    return (
        f"<{_headline(r).replace('gradcheck:', 'gradcheck Report:', 1)}; {_coverage(r)}, "
        f"{r.nfev:,} evaluations; print(report) for the table>"
    )


def format_html(r: Report, full: bool = False) -> str:
    """The report as HTML for Jupyter: the headline, the blocks' table (as the text's,
    summed up beyond 20 blocks), the sentences under it, and the worst entries.
    """
    from html import escape

    listed, summary = _shown_blocks(r, full)
    columns = ["block", "shape", "checked", "difference", "verdict", "max |error|", "at"]
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    rows = [f"<tr>{head}</tr>"]
    for b in listed:
        cells = [
            b.name,
            "x".join(map(str, b.shape)) or "scalar",
            f"{b.checked:,}",
            _num(b.difference) if b.checked else "-",
            _verdict_cell(b),
            _num(b.max_abs_error) if b.checked else "-",
            b.max_abs_error_at or "-",
        ]
        style = ' style="color:#b00;font-weight:bold"' if b.verdict == "fail" else ""
        rows.append(f"<tr{style}>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
    text = format_report(r, full).splitlines()
    # The lines under the table (every sentence, the worst entries), as the text has them.
    below = text[text.index("") + len(rows) + 1 + bool(summary) :]
    parts = [
        f"<p><b>{escape(_headline(r))}</b><br>",
        "<br>".join(escape(line.strip()) for line in text[1:4]) + "</p>",
        "<table>" + "".join(rows) + "</table>",
    ]
    if summary:
        parts.append(f"<p>{escape(summary.strip())}</p>")
    if below:
        parts.append("<pre>" + escape("\n".join(below)) + "</pre>")
    return "\n".join(parts)


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
