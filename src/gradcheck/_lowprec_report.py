"""The low-precision comparison's report: its records (per result, the worst entries, the
whole) and how it reads (a headline, one row per result, its sentences).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import _policy
from ._report import Report, _jsonable
from ._text import _names, _num, _table


@dataclass(frozen=True)
class Sides:
    """One output or one input's gradient as each run gave it: float64 arrays of one shape.

    ``kernel`` is None when the kernel returned no gradient for the input (autograd's None);
    ``rounded`` is the truth rounded to the kernel's dtype and back, the best any result
    stored in that dtype can be.
    """

    truth: np.ndarray
    baseline: np.ndarray
    kernel: np.ndarray | None
    rounded: np.ndarray


@dataclass(frozen=True)
class Agreement:
    """How one output or one input's gradient of the kernel agrees with the truth.

    Errors are relative RMS errors against the truth, ``||x - t|| / ||t||`` (absolute when
    the truth is exactly 0). ``ratio`` is the kernel's error over the baseline's (at least
    ``floor``), allowed up to ``ratio_allowed`` (``factor`` widened for few entries, see
    ``_policy.RATIO_Z``); ``slope`` is ``<x, t> / <t, t> - 1``, the systematic part of an
    error, with ``slope_spread`` the scatter rounding alone gives it. ``problems`` say in
    words what fails (empty when it passes).
    """

    name: str
    kind: str  # "output" or "gradient"
    shape: tuple[int, ...]
    verdict: str
    error: float
    baseline_error: float
    floor: float
    ratio: float
    factor: float
    ratio_allowed: float  # factor, widened for the spread of an RMS over few entries
    max_abs_error: float
    max_abs_error_at: str | None
    baseline_max_abs_error: float
    slope: float
    baseline_slope: float
    slope_spread: float
    slope_allowed: float
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Worst:
    """One entry where the kernel lies far from the truth, named like ``dq[0, 3, 5, 1]``.

    ``score`` is its error over the baseline's largest error in the same result: above 1 it
    is worse than anything the reference in that dtype does there.
    """

    name: str
    block: str
    kernel: float
    truth: float
    baseline: float
    abs_error: float
    score: float


@dataclass(frozen=True)
class CompareReport:
    """The result of ``gradcheck.torch.compare`` / ``gradcheck.jax.compare``.

    Attributes
    ----------
    verdict : str
        "pass", "inconclusive" or "fail": the worst of the results' verdicts and of the
        reference's own check.
    blocks : Mapping[str, Agreement]
        Per output (``out``, ``out[1]``, a dict key) and per input's gradient (``dq``,
        ``dx``): ``error``, ``baseline_error``, ``ratio``, ``factor``, ``max_abs_error``
        and where, ``slope``, ``baseline_slope``, ``slope_spread``, ``slope_allowed``,
        ``verdict`` and the ``problems`` that fail it, in words.
    worst : tuple of Worst
        The entries farthest from the truth relative to the baseline's largest error in the
        same result, worst first.
    dtype : str
        The dtype the kernel and the baseline ran in.
    framework, device : str
        Where they ran.
    seed : int
        The seed of the cotangent (and of the dependence moves).
    cotangent : numpy arrays
        The cotangent every run used (the output's structure), already rounded to
        ``dtype``; not in ``to_dict()``.
    reference : Report or None
        gradcheck's finite-difference check of the reference's float64 gradient, when
        ``check_reference`` ran it.
    notes : tuple of str
        Why a verdict is what it is, where the table does not say.
    seconds : float
        Wall time.
    """

    verdict: str
    blocks: Mapping[str, Agreement]
    worst: tuple[Worst, ...]
    dtype: str
    framework: str
    device: str
    seed: int
    cotangent: Any = field(default=None, repr=False)
    reference: Report | None = None
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """True when the verdict is "pass"."""
        return self.verdict == "pass"

    @property
    def failing(self) -> tuple[str, ...]:
        """The failing results' names; "reference" first when the reference is wrong."""
        wrong = ("reference",) if reference_wrong(self.reference) else ()
        return wrong + tuple(n for n, a in self.blocks.items() if a.verdict == "fail")

    def to_dict(self) -> dict[str, Any]:
        """The report as strict JSON's types (non-finite numbers as None).

        Returns
        -------
        dict
            Every field but ``cotangent``; ``reference`` is the reference check's own
            ``to_dict()`` (or None).
        """
        return _jsonable(
            {
                "verdict": self.verdict,
                "passed": self.passed,
                "failing": list(self.failing),
                "blocks": {n: asdict(a) for n, a in self.blocks.items()},
                "worst": [asdict(w) for w in self.worst],
                "dtype": self.dtype,
                "framework": self.framework,
                "device": self.device,
                "seed": self.seed,
                "reference": None if self.reference is None else self.reference.to_dict(),
                "notes": list(self.notes),
                "seconds": self.seconds,
            }
        )

    def __str__(self) -> str:
        return format_compare(self)


def reference_wrong(reference: Report | None) -> bool:
    return reference is not None and reference.verdict == "fail"


# --- the statistics ----------------------------------------------------------------------------


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
