"""Report: the frozen result of a check, its readable table and its JSON form."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _plan
from ._results import BlockResult, Entry, Kink, Replay

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
        from ._text import format_report

        return format_report(self)

    def __repr__(self) -> str:
        """One line, what a REPL shows: the headline and how much was checked."""
        from ._text import format_repr

        return format_repr(self)

    def _repr_html_(self) -> str:
        """What Jupyter shows: the headline, the blocks as a table, the closing sentence."""
        from ._text import format_html

        return format_html(self)

    def __format__(self, spec: str) -> str:
        """``f"{report}"`` is ``str(report)``; ``f"{report:full}"`` lists every block."""
        if spec not in ("", "full"):
            raise ValueError(f"unknown format {spec!r} for a Report: use '' or 'full'")
        from ._text import format_report

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
        from ._text import format_report

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
