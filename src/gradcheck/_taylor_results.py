"""The records of a Taylor test (:func:`gradcheck.taylor_test`) and their text."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._report import _jsonable


@dataclass(frozen=True)
class TaylorDirection:
    """The remainders along one direction, and what their rate says.

    Attributes
    ----------
    name : str
        ``"whole"`` (``"whole 2"``, ...) for a direction over every parameter, else the name
        of the block the direction lives on.
    block : str or None
        The block the direction is confined to; None for a whole direction.
    steps : ndarray
        The steps ``h`` taken, largest first (the direction is scaled entrywise by
        ``max(1, |x|)``, so ``h`` is relative).
    remainders : ndarray
        ``|f(x + h d) - f(x) - h <g, d>|`` (less ``h^2/2 <d, H d>`` with an hvp) at each
        step; NaN where ``f`` was not finite.
    floor : ndarray
        The rounding level of each remainder; at or below it a remainder says nothing.
    rates : ndarray
        The observed rate between consecutive steps; NaN where either remainder is at
        rounding.
    range : tuple of int, or None
        The first and last index of the converging range; None when there is none.
    rate : float
        The rate fitted over the converging range (NaN when none).
    verdict : str
        "pass", "fail" or "inconclusive".
    reason : str
        Why, in a sentence.
    resolution : float
        The smallest error in ``<g, d>``, relative to ``|<g, d>|``, that would have bent
        the rate at the range's smallest step (``r(h) / (h |<g, d>|)`` there): a gradient
        error below it along this direction would not show. NaN without a range.
    """

    name: str
    block: str | None
    steps: np.ndarray
    remainders: np.ndarray
    floor: np.ndarray
    rates: np.ndarray
    range: tuple[int, int] | None
    rate: float
    verdict: str
    reason: str
    resolution: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(
            {
                "name": self.name,
                "block": self.block,
                "steps": self.steps.tolist(),
                "remainders": self.remainders.tolist(),
                "floor": self.floor.tolist(),
                "rates": self.rates.tolist(),
                "range": None if self.range is None else list(self.range),
                "rate": self.rate,
                "verdict": self.verdict,
                "reason": self.reason,
                "resolution": self.resolution,
            }
        )


@dataclass(frozen=True)
class TaylorTest:
    """The result of :func:`gradcheck.taylor_test`.

    Attributes
    ----------
    verdict : str
        The worst verdict of the directions: "pass", "fail" or "inconclusive".
    order : int
        The rate a right derivative gives: 2, or 3 when an ``hvp`` was tested.
    directions : tuple of TaylorDirection
        The whole directions first, then one per block (when there are several blocks).
    nfev : int
        Evaluations of ``f``.
    seed : int
        The seed the directions were drawn from; the same seed replays the test.
    seconds : float
        Wall time of the test.
    """

    verdict: str
    order: int
    directions: tuple[TaylorDirection, ...]
    nfev: int
    seed: int
    seconds: float

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def failing(self) -> tuple[str, ...]:
        """Names of the directions (blocks, or ``"whole"``) whose verdict is "fail"."""
        return tuple(d.name for d in self.directions if d.verdict == "fail")

    @property
    def blocks(self) -> dict[str, TaylorDirection]:
        """The per-block directions by block name (empty for a single block)."""
        return {d.block: d for d in self.directions if d.block is not None}

    @property
    def rates(self) -> dict[str, float]:
        """The fitted rate of each direction by name (NaN where no range converged)."""
        return {d.name: d.rate for d in self.directions}

    def to_dict(self) -> dict[str, Any]:
        """The test as plain data in strict JSON's types (NaN and infinity as None)."""
        return _jsonable(
            {
                "verdict": self.verdict,
                "passed": self.passed,
                "order": self.order,
                "failing": list(self.failing),
                "nfev": self.nfev,
                "seed": self.seed,
                "seconds": self.seconds,
                "directions": [d.to_dict() for d in self.directions],
            }
        )

    def __str__(self) -> str:
        return format_taylor(self)

    def plot(self, ax: Any = None) -> Any:
        """Plot each direction's remainders against the step, log-log, with the reference
        slopes ``h``, ``h^2`` (and ``h^3`` with an hvp) and the converging ranges marked.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new figure when None.

        Returns
        -------
        matplotlib.axes.Axes
        """
        from ._plot import plot_taylor

        return plot_taylor(self, ax=ax)


def format_taylor(test: TaylorTest) -> str:
    """The readable text of a Taylor test: headline, one row per direction, the ranges."""
    what = "gradient" if test.order == 2 else "gradient and Hessian-vector product"
    lines = [
        f"taylor test: {test.verdict.upper()}  expected rate {test.order} ({what}); "
        f"{_plural(len(test.directions), 'direction')}, {test.nfev} evaluations, "
        f"seed {test.seed}",
        "",
        f"{'direction':<16} {'rate':>6}  {'range of h':<19}  {'verdict':<12} why",
    ]
    for d in test.directions:
        rate = "-" if d.rate != d.rate else f"{d.rate:.2f}"
        span = "-"
        if d.range is not None:
            span = f"{d.steps[d.range[0]]:.1e} .. {d.steps[d.range[1]]:.1e}"
        lines.append(f"{d.name:<16} {rate:>6}  {span:<19}  {d.verdict:<12} {d.reason}")
    lines.append("")
    for d in test.directions:
        if d.range is None:
            continue
        lo, hi = d.range
        remainders = " ".join(f"{r:.2e}" for r in d.remainders[lo : hi + 1])
        rates = " ".join(f"{r:.2f}" for r in d.rates[lo:hi])
        lines.append(f"{d.name}: remainders {remainders}; rates {rates}")
        if d.verdict == "pass" and d.resolution == d.resolution:
            lines.append(
                f"{'':<{len(d.name)}}  an error in <g, d> under {d.resolution:.1e} of it "
                "would not bend the rate at these steps"
            )
    return "\n".join(lines).rstrip()


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"
