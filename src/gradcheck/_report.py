"""Report: the frozen result of a check, its readable table (put together from ``_text``'s
pieces), its one-line repr, its HTML and its JSON form.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _plan
from ._results import BlockResult, Entry, Kink, Replay, Verdict
from ._text import (
    _SHOWN_WORST,
    _TABLE_BLOCKS,
    SCORE_LEGEND,
    _block_lines,
    _names,
    _num,
    _reach_lines,
    _table,
    _verdict_cell,
    _zeros_line,
)

if TYPE_CHECKING:
    from ._context import Check, Findings


@dataclass(frozen=True, repr=False)  # the repr is a summary: see __repr__
class Report:
    """The result of :func:`gradcheck.check`.

    Attributes
    ----------
    difference : float
        ``||grad - gradapprox|| / (||grad|| + ||gradapprox||)`` over every checked coordinate.
    verdict : str
        ``"pass"``, ``"warn"``, ``"inconclusive"`` or ``"fail"``: the worst block verdict.

    ``str(report)`` is a table that scales with the number of blocks: beyond 20, it lists
    the failing, inconclusive and warning blocks and the worst passing ones, and sums up
    the others in one line; ``report.table(full=True)`` (or ``format(report, "full")``)
    lists every block.
    blocks : Mapping[str, BlockResult]
        Per parameter block: its difference, verdict, norms and largest absolute error,
        and ``reach`` (a :class:`Reach`): the smallest errors its check would have caught.
    worst : tuple of Entry
        The entries that disagree most, worst first, by their ``score``: ``|error|`` over
        what the entry's rounding noise and a relative tolerance allow,
        ``|a - b| / (rtol (|a| + |b|) + 10 e_fd)`` with ``e_fd`` the error the noise of f
        makes in that entry's difference and ``rtol`` 1e-5 (1e-3 in float32). Above 1 the
        entry disagrees.
    gradapprox : same structure as ``params``
        The finite-difference gradient (read-only float64 arrays).
    nfev : int
        Evaluations of ``f`` spent.
    seed : int
        The seed of the plan, recorded so a check can be replayed.
    engine, method, step : str
        Which engine ran, the difference formula, and how the steps were chosen.
    n, checked : int
        Parameters in all, and how many of them were checked.
    loss : float
        ``f(params)``.
    tol : (float, float)
        The pass and fail thresholds that were applied.
    seconds : float
        Wall time of the whole check.
    directions : int
        Random directions checked per block (0: none).
    budget : float or None
        The time budget the check was fitted to, if one was given.
    noise : float
        The noise level of f assumed by the error model (measured, or rounding alone).
    notes : tuple of str
        Why a verdict is what it is, where the table alone does not say.
    kinks : tuple of Kink
        Entries that disagree only because f has a kink there (ReLU at 0, a tie in max),
        with ``name``, ``kind`` ("crossed" or "at"), ``analytic``, ``numeric`` and the
        ``left`` and ``right`` slopes; they are left out of the verdicts.
    replay : Replay or None
        The flat ``indices`` checked one by one and their ``steps``: with ``seed`` and the
        same options a check draws them again.
    """

    difference: float
    verdict: str
    blocks: Mapping[str, BlockResult]
    worst: tuple[Entry, ...]
    gradapprox: Any
    nfev: int
    seed: int
    engine: str
    method: str
    step: str  # how the steps were chosen, in words
    n: int
    checked: int
    loss: float
    tol: tuple[float, float]
    seconds: float
    directions: int = 0
    budget: float | None = None
    noise: float = 0.0
    notes: tuple[str, ...] = ()
    kinks: tuple[Kink, ...] = ()
    replay: Replay | None = None
    workers: int = 1

    @property
    def passed(self) -> bool:
        """True for "pass" and "warn"; false as soon as any block fails."""
        return self.verdict in ("pass", "warn")

    @property
    def failing(self) -> tuple[str, ...]:
        """Names of the blocks whose verdict is "fail"."""
        return tuple(name for name, b in self.blocks.items() if b.verdict == "fail")

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data.

        Returns
        -------
        dict
            Every field but ``gradapprox``, in strict JSON's types: blocks, worst entries and
            kinks as dicts, tuples as lists, and non-finite numbers (NaN, infinity) as None,
            which ``json.dumps`` writes as ``null``, so any JSON parser reads the result.
            ``notes``, ``kinks``, ``noise``, ``directions`` and ``budget`` say why a verdict
            is what it is (an inconclusive check among them); each block's ``reach`` what
            its check could have missed, and its ``controls`` the errors planted on
            request. ``replay`` holds the sampled ``indices`` and their ``steps`` (both None
            when every coordinate was checked, the steps then following ``step``).
        """
        return _jsonable(
            {
                "difference": self.difference,
                "verdict": self.verdict,
                "passed": self.passed,
                "blocks": {name: asdict(b) for name, b in self.blocks.items()},
                "worst": [asdict(e) for e in self.worst],
                "nfev": self.nfev,
                "seed": self.seed,
                "engine": self.engine,
                "method": self.method,
                "step": self.step,
                "n": self.n,
                "checked": self.checked,
                "loss": self.loss,
                "tol": list(self.tol),
                "seconds": self.seconds,
                "directions": self.directions,
                "budget": self.budget,
                "noise": self.noise,
                "notes": list(self.notes),
                "kinks": [asdict(k) for k in self.kinks],
                "replay": _replay(self),
                "workers": self.workers,
            }
        )

    def __str__(self) -> str:
        return format_report(self)

    def __repr__(self) -> str:
        """One line, what a REPL shows: the headline and how much was checked."""
        return format_repr(self)

    def _repr_html_(self) -> str:
        """What Jupyter shows: the headline, the blocks as a table, the closing sentence."""
        return format_html(self)

    def __format__(self, spec: str) -> str:
        """``f"{report}"`` is ``str(report)``; ``f"{report:full}"`` lists every block."""
        if spec not in ("", "full"):
            raise ValueError(f"unknown format {spec!r} for a Report: use '' or 'full'")
        return format_report(self, full=spec == "full")

    def table(self, full: bool = False) -> str:
        """The readable report.

        Parameters
        ----------
        full : bool
            List every block. By default, when there are more than 20 blocks, the table
            shows the failing, inconclusive and warning blocks (up to 20) and the 5 passing
            blocks with the largest differences, and sums up the rest in one line.

        Returns
        -------
        str
            ``str(report)`` when ``full`` is False.
        """
        return format_report(self, full=full)

    def plot(self, ax: Any = None) -> Any:
        """Plot each block's difference against the pass and fail thresholds.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new figure when None.

        Returns
        -------
        matplotlib.axes.Axes
            One bar per block (log scale) coloured by verdict, with the thresholds.

        Raises
        ------
        ImportError
            matplotlib is not installed: ``pip install "gradcheck[plot]"``.
        """
        from ._plot import plot_report

        return plot_report(self, ax=ax)

    def plot_errors(self, grad: Any, ax: Any = None) -> Any:
        """Plot a histogram of the per-element errors ``|grad - gradapprox|`` per block.

        Parameters
        ----------
        grad : same structure as the checked ``params``
            The gradient that was checked; the report does not keep it.
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new figure when None.

        Returns
        -------
        matplotlib.axes.Axes
            One step histogram per block on log-spaced bins.

        Raises
        ------
        ImportError
            matplotlib is not installed: ``pip install "gradcheck[plot]"``.
        """
        from ._plot import plot_errors

        return plot_errors(self, grad, ax=ax)


def build(check: Check, findings: Findings, seconds: float) -> Report:
    """The frozen report of a check: what the passes found, and how it was looked for."""
    problem, evaluator, options, judge = check.problem, check.evaluator, check.options, check.judge
    layout, plan, c = problem.layout, findings.plan, findings.compared
    full = np.full(layout.n, np.nan)
    full[plan.idx] = findings.est.gradapprox
    full.flags.writeable = False
    rel_step = _plan.relative_step(options.method, problem.dtype, problem.dtype)
    step = (
        f"absolute step eps={options.eps!r}"
        if options.eps is not None
        else f"relative step {rel_step:.3g}*max(1,|x|)"
    )
    blocks = [c.blocks[k] for k in check.selection.blocks]
    verdict = judge.final(blocks, findings.notes)
    return Report(
        difference=c.difference,
        verdict=verdict,
        blocks=MappingProxyType({b.name: b for b in blocks}),
        worst=c.worst,
        gradapprox=layout.structure(full),
        nfev=evaluator.nfev,
        seed=check.seed,
        engine=evaluator.engine,
        workers=evaluator.workers,
        method=options.method,
        step=step,
        n=sum(b.size for b in blocks),
        checked=int(plan.idx.size),
        loss=problem.f0,
        tol=judge.tol,
        seconds=seconds,
        # A budget's spare time may have added rounds: every block in scope has as many.
        directions=max((b.directions for b in blocks), default=0)
        or (check.selection.directions or 0),
        budget=options.budget,
        noise=judge.noise_f,
        notes=tuple(n.text for n in findings.notes),
        kinks=findings.kinks,
        replay=Replay(_frozen(plan.idx), _frozen(plan.step)),
    )


def _frozen(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


def _replay(r: Report) -> dict | None:
    """The replay data as JSON: the indices are left out (None) when every coordinate of
    every block was checked, so a full check of a large model stays small.
    """
    if r.replay is None:
        return None
    every = r.checked == r.n
    return {
        "indices": None if every else r.replay.indices.tolist(),
        "steps": None if every else r.replay.steps.tolist(),
    }


# More blocks than this and the table shows only those worth reading (see Report.table):
# a report of 10,000 one-entry blocks must stay readable.
def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # strict JSON has no NaN or infinity
    return obj


# --- the report as text ---------------------------------------------------------------------

_METHOD_WORDS = {"central": "central differences", "forward": "forward differences"}
# Passing blocks listed (those with the largest differences) when the table is summed up.
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
