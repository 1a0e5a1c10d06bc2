"""Modes and orders for the adapters: which derivatives a check tests, and one report of them.

``modes`` names them as ``jax.test_util.check_grads`` does: "rev" (the reverse rule, a
``backward`` or ``custom_vjp``, through a projection), "fwd" (the forward rule, a ``jvp``
or ``custom_jvp``, along one tangent per input), and "auto": reverse, plus forward where
the function defines a forward rule of its own. Where both rules are checked, the adjoint
identity ``<J t, c> = <t, J^T c>`` is checked too: no finite differences, exact up to
rounding, a line of its own. ``order=2`` checks the derivative of the derivative: the
reverse rule of the function's own VJP (double backward).

The reports of the modes become one: the reverse check's blocks under their names, the
forward check's as ``"x (fwd)"``, the identity as ``"adjoint"``; the verdict is the worst.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from . import _policy
from ._jvp import TangentReport
from ._projection import ProjectedReport
from ._report import Report
from ._results import BlockResult, Verdict

MODES = ("rev", "fwd")
ORDERS = (1, 2)
# The key of the inner cotangent of order 2 (the VJP whose own derivative is checked), in
# the cotangents' stream: apart from the outer projections' 0, 1, ...
INNER_COTANGENT = 1 << 20
# The forward check's blocks are named after the inputs with this suffix.
FWD_SUFFIX = " (fwd)"
ADJOINT = "adjoint"
# The adjoint identity's block, its line in the notes, and its two sides.
Adjoint = tuple[BlockResult, str, tuple[float, float]]


@dataclass(frozen=True)
class ModesReport(ProjectedReport):
    """A :class:`Report` of several derivatives of one function, combined.

    Attributes
    ----------
    modes : Mapping[str, Report]
        Each mode's own report: ``"rev"``, ``"fwd"`` (its blocks named after the inputs).
    adjoint : tuple of float, or None
        ``(<J t, c>, <t, J^T c>)``, the two sides of the adjoint identity, when both rules
        were checked.
    order : int
        1, or 2 for the derivative of the derivative.
    """

    modes: Mapping[str, Report] | None = None
    adjoint: tuple[float, float] | None = None
    order: int = 1


@dataclass(frozen=True)
class Modes:
    """What an adapter call checks: "auto" or a tuple of modes, and the order."""

    modes: str | tuple[str, ...]
    order: int


def validate(modes: Any, order: Any) -> Modes:
    """``modes`` and ``order`` validated; the errors name the argument."""
    if isinstance(order, bool) or order not in ORDERS:
        raise ValueError(f"`order` must be 1 or 2, got {order!r}")
    if modes == "auto":
        chosen: str | tuple[str, ...] = "auto"
    else:
        items = (modes,) if isinstance(modes, str) else modes
        if not isinstance(items, Sequence) or not items or any(m not in MODES for m in items):
            raise ValueError(
                f"`modes` must be 'auto', 'rev', 'fwd' or a sequence of them, got {modes!r}"
            )
        chosen = tuple(dict.fromkeys(items))
    if order == 2 and chosen not in ("auto", ("rev",)):
        raise ValueError(
            f"order=2 checks the reverse derivative of the backward (double backward); "
            f"`modes`={modes!r} asks for forward mode, which is checked at order 1"
        )
    return Modes(chosen, int(order))


def resolve(modes: Modes, has_forward_rule: bool) -> tuple[str, ...]:
    """The modes to run: "auto" is reverse, plus forward where the function has a rule."""
    if isinstance(modes.modes, tuple):  # validate leaves "auto" as the only string
        return modes.modes
    return ("rev", "fwd") if has_forward_rule and modes.order == 1 else ("rev",)


def adjoint_block(forward: float, reverse: float, dtype: np.dtype) -> tuple[BlockResult, str]:
    """The adjoint identity as a block of its own, and the line that reports it.

    Both sides are the same bilinear form, computed by the two rules: they agree to
    rounding when the rules are each other's transpose. Rounding of a long contraction is
    far below the finite-difference thresholds of the dtype, which are used here: the
    identity then never fails right rules, and a sign slip or a missing term is off by
    a relative difference of order one.
    """
    total = abs(forward) + abs(reverse)
    difference = 0.0 if total == 0 else abs(forward - reverse) / total
    tol = _policy.THRESHOLDS[np.dtype(np.float32) if dtype == np.float32 else np.dtype(np.float64)]
    if not math.isfinite(difference) or difference > tol[1]:
        verdict = Verdict.FAIL
    elif difference > tol[0]:
        verdict = Verdict.WARN
    else:
        verdict = Verdict.PASS
    block = BlockResult(
        name=ADJOINT,
        shape=(),
        size=1,
        checked=1,
        difference=difference,
        verdict=str(verdict),
        norm_analytic=abs(forward),
        norm_numeric=abs(reverse),
        norm_error=abs(forward - reverse),
        max_abs_error=abs(forward - reverse),
        max_abs_error_at=ADJOINT,
        nonfinite=(),
        tol=tol,
    )
    line = (
        f"adjoint identity (no finite differences): <J t, c> = {forward:.17g} by the "
        f"forward rule, <t, J^T c> = {reverse:.17g} by the reverse rule, relative "
        f"difference {difference:.3g}: {verdict}"
    )
    return block, line


def run(
    chosen: tuple[str, ...],
    order: int,
    reverse: Callable[[], Report],
    forward: Callable[[], TangentReport],
    identity: Callable[[TangentReport], Adjoint],
) -> Report:
    """The modes ``chosen`` checked (``reverse()``, ``forward()``), and where both are, the
    adjoint identity on the forward check's tangent and cotangent: one report.
    """
    parts: dict[str, Report] = {}
    if "rev" in chosen:
        parts["rev"] = reverse()
    fwd = forward() if "fwd" in chosen else None
    if fwd is not None:
        parts["fwd"] = fwd
    adjoint = identity(fwd) if "rev" in parts and fwd is not None else None
    return combine(parts, adjoint, order)


def combine(
    parts: dict[str, Report],
    adjoint: Adjoint | None,
    order: int,
) -> Report:
    """One report of the modes' reports: blocks side by side, the worst verdict."""
    if len(parts) == 1 and adjoint is None:
        (only,) = parts.values()
        if order == 1:
            return only
        return _as_modes(only, parts, None, order, only.notes)
    first = parts.get("rev") or parts["fwd"]
    blocks: dict[str, BlockResult] = {}
    worst = []
    notes = list(first.notes)
    for mode, report in parts.items():
        suffix = FWD_SUFFIX if mode == "fwd" else ""
        for name, b in report.blocks.items():
            blocks[name + suffix] = replace(b, name=name + suffix)
        worst += [replace(e, name=e.name + suffix, block=e.block + suffix) for e in report.worst]
        if report is not first:
            notes += [f"{mode}: {n}" for n in report.notes]
    if adjoint is not None:
        blocks[ADJOINT] = adjoint[0]
        notes.append(adjoint[1])
    worst.sort(key=lambda e: -e.score if e.score == e.score else -math.inf)
    differences = [r.difference for r in parts.values()]
    if adjoint is not None:
        differences.append(adjoint[0].difference)
    combined = replace(
        first,
        blocks=blocks,
        verdict=str(Verdict.worst(b.verdict for b in blocks.values())),
        difference=max(differences, key=lambda d: math.inf if d != d else d),
        worst=tuple(worst[: _policy.WORST]),
        nfev=sum(r.nfev for r in parts.values()),
        n=sum(r.n for r in parts.values()) + (adjoint is not None),
        checked=sum(r.checked for r in parts.values()) + (adjoint is not None),
        kinks=tuple(k for r in parts.values() for k in r.kinks),
        notes=tuple(notes),
    )
    return _as_modes(combined, parts, adjoint, order, combined.notes)


def _as_modes(report: Report, parts, adjoint, order: int, notes) -> ModesReport:
    base = {f.name: getattr(report, f.name) for f in fields(Report)}
    base["notes"] = tuple(notes)
    if order == 2:
        base["notes"] += (
            "order 2: the check is of the function's VJP (its backward) as a function of "
            "the inputs, projected on a random cotangent: double backward is under test",
        )
    return ModesReport(
        **base,
        cotangent=getattr(report, "cotangent", None),
        projections=getattr(report, "projections", 1),
        modes=dict(parts),
        adjoint=None if adjoint is None else adjoint[2],
        order=order,
    )
