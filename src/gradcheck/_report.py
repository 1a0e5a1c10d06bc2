"""Report: the frozen result of a check, its readable table and its JSON form."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ._compare import BlockResult, Entry

_SHOWN_WORST = 5
_METHOD_WORDS = {"central": "central differences", "forward": "forward differences"}


@dataclass(frozen=True)
class Report:
    """The result of :func:`gradcheck.check`.

    Attributes
    ----------
    difference : float
        ``||grad - gradapprox|| / (||grad|| + ||gradapprox||)`` over every checked coordinate.
    verdict : str
        ``"pass"``, ``"warn"``, ``"inconclusive"`` or ``"fail"``: the worst block verdict.
    blocks : Mapping[str, BlockResult]
        Per parameter block: its difference, verdict, norms and largest absolute error.
    worst : tuple of Entry
        The entries that disagree most (by a score that allows for rounding), worst first.
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
            JSON-serialisable: blocks and worst entries as dicts, non-finite numbers as the
            strings ``"nan"``, ``"inf"``, ``"-inf"``. ``gradapprox`` is left out.
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
            }
        )

    def __str__(self) -> str:
        return format_report(self)


def format_report(r: Report) -> str:
    head = (
        f"gradcheck: {r.verdict.upper()}  difference = {r.difference!r}\n"
        f"  {r.checked:,} of {r.n:,} coordinates, {_METHOD_WORDS.get(r.method, r.method)} "
        f"({r.step}), {r.nfev:,} evaluations of f, {r.engine} engine, {r.seconds:.3g} s\n"
        f"  pass <= {r.tol[0]:.3g}, fail > {r.tol[1]:.3g}"
    )
    rows = [("block", "shape", "checked", "difference", "verdict", "max |error|", "at")]
    for b in r.blocks.values():
        rows.append(
            (
                b.name,
                "x".join(map(str, b.shape)) or "scalar",
                f"{b.checked:,}",
                _num(b.difference),
                b.verdict.upper() if b.verdict == "fail" else b.verdict,
                _num(b.max_abs_error),
                b.max_abs_error_at or "-",
            )
        )
    lines = [head, "", *_table(rows, right={2, 3, 5})]
    bad = [b for b in r.blocks.values() if b.nonfinite]
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
        lines += ["", *_table(rows, right={1, 2, 3, 4})]
    lines += ["", _summary(r)]
    return "\n".join(lines)


def _summary(r: Report) -> str:
    fails = r.failing
    if fails:
        return (
            f"{len(fails)} of {len(r.blocks)} blocks fail: {', '.join(fails)}. "
            "Look at their backward pass first."
        )
    if r.verdict == "inconclusive":
        return "No block fails, but some could not be judged (see above)."
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


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj
