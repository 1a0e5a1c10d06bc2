"""The report's text pieces: one block's lines and sentences (its verdict cell, what it
could have missed, its zeros and controls), tables and numbers. The report puts them
together (``_report``); the low-precision report uses the tables and numbers too.
"""

from __future__ import annotations

import math
from typing import Any

from . import _policy
from ._results import BlockResult

_SHOWN_WORST = 5
# Blocks listed one by one in the table (and named in a line) before the rest are summed up.
_TABLE_BLOCKS = 20
# What the worst-entries table's last column means (the rule is _compare.scores).
SCORE_LEGEND = (
    "  score: |error| over what the entry's rounding noise and a relative tolerance allow; "
    "above 1 it disagrees"
)


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


def _factor(c: float, who: str) -> str:
    if c != c:
        return f"no factor on {who} (its gradient is 0)"
    if math.isinf(c):
        return f"{who} off by any factor"
    return f"{who} off by a factor within {c:.3g} of 1"


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
        parts.append(_factor(factors[name], name if named else "the gradient"))
    if entries:
        name = max(entries, key=lambda n: entries[n])
        # The median entry's figure: "typical" says it is not every entry's.
        typical = f"a typical entry of {name}" if named else "a typical entry"
        if math.isinf(entries[name]):
            parts.append(f"{typical} off by any amount")
        else:
            parts.append(f"{typical} off by < {_percent(entries[name])}")
    return "; ".join(parts) or "nothing was compared"


def _part_reach(b: BlockResult) -> str:
    """One block checked in part: factor, one entry and the chance it was seen, and the
    smallest fraction of wrong entries caught with probability 0.95.
    """
    r = b.reach
    if r is None:
        return "everything (not checked)"
    error = _percent(r.error)
    parts = [_factor(r.factor, "the block")]
    if b.checked and r.entry == r.entry:  # NaN: every judged entry is 0
        entry = "any amount" if math.isinf(r.entry) else f"< {_percent(r.entry)}"
        unseen = b.size - b.checked
        parts.append(
            f"a typical checked entry off by {entry}, any error in the {unseen:,} of "
            f"{b.size:,} entries not checked one by one"
        )
    if r.factor != r.factor:
        # A gradient of 0: an error of a share of its RMS entry is no error at all.
        return "; ".join(parts)
    miss = 1 - r.single
    shown = "> 0.99" if miss > 0.99 else f"{miss:.2g}"
    missed = f"one wrong entry (off by {error} of the RMS entry) unseen with probability {shown}"
    if r.fraction != r.fraction:
        missed += ", and such errors in any share of its entries"
    elif round(r.fraction * b.size) > 1:
        chance = 1 - _policy.REACH_PROBABILITY
        missed += (
            f", such errors in {_percent(r.fraction)} of its entries unseen with "
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


def _names(names, shown: int = _SHOWN_WORST) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


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
