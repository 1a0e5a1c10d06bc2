"""The difference across a range of steps: where finite differences can be trusted."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._check import check
from ._plan import StepTooSmall


@dataclass(frozen=True)
class StepSweep:
    """The relative difference at each step of a sweep (see :func:`step_sweep`)."""

    steps: np.ndarray  # absolute steps, largest first
    differences: np.ndarray  # NaN where a step was below the parameters' resolution
    method: str
    tol: tuple[float, float] | None = None  # the (pass, fail) thresholds the checks applied

    @property
    def passes(self) -> bool:
        """Whether some step brings the difference down to the pass threshold.

        When none does, the bottom of the curve is no advice on the step: the gradient, not
        the step, is what disagrees.
        """
        return self.tol is None or self.best_difference <= self.tol[0]

    @property
    def best(self) -> int:
        """Position of the step with the smallest difference."""
        return int(np.nanargmin(self.differences))

    @property
    def best_step(self) -> float:
        return float(self.steps[self.best])

    @property
    def best_difference(self) -> float:
        return float(self.differences[self.best])

    def __str__(self) -> str:
        """A table of step against difference, the best step marked, and what it means."""
        if self.tol is None:
            head = f"step sweep ({self.method}): best step {self.best_step:.1e}"
        elif self.passes:
            head = (
                f"step sweep ({self.method}): best step {self.best_step:.1e}, difference "
                f"{self.best_difference:.2e} (pass <= {self.tol[0]:.3g}, fail > {self.tol[1]:.3g})"
            )
        else:
            head = (
                f"step sweep ({self.method}): no step passes (smallest difference "
                f"{self.best_difference:.2e} at h = {self.best_step:.1e}, pass <= "
                f"{self.tol[0]:.3g}): the gradient disagrees whatever the step"
            )
        lines = [head, "", f"{'step':>9}  {'difference':>11}"]
        for i, (h, d) in enumerate(
            zip(self.steps.tolist(), self.differences.tolist(), strict=True)
        ):
            shown = "-" if d != d else f"{d:.3e}"
            mark = "  <- best" if i == self.best and self.passes else ""
            mark = mark or ("  <- smallest" if i == self.best else "")
            lines.append(f"{h:>9.1e}  {shown:>11}{mark}")
        return "\n".join(lines)

    def plot(self, ax: Any = None, label: str | None = None, thresholds: bool = True) -> Any:
        """Plot the V-shaped curve of difference against step, best step marked.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new figure when None. Several sweeps can share one.
        label : str, optional
            The curve's legend entry; default: the method.
        thresholds : bool
            Draw the pass and fail thresholds the checks applied (once per axes). False
            suits several sweeps with different thresholds on one axes.

        Returns
        -------
        matplotlib.axes.Axes
            The curve on log-log axes with the pass and fail thresholds; the best step is
            starred when its difference passes, and marked as the smallest difference
            reached, not a step to use, when none passes.
        """
        from ._plot import plot_step_sweep

        return plot_step_sweep(self, ax=ax, label=label, thresholds=thresholds)


def step_sweep(
    f: Callable[..., Any],
    params: Any,
    grad: Any = None,
    steps: Any = None,
    *,
    method: str = "central",
    **options: Any,
) -> StepSweep:
    """Check a gradient at a range of absolute steps: the V-shaped curve of finite differences.

    Too large a step and truncation error grows (like h^2 for central differences, on the
    right of the curve); too small and rounding in f takes over (like 1/h, on the left).
    The bottom of the V is the most a finite-difference check can resolve for this f.

    Parameters
    ----------
    f, params, grad
        As for :func:`gradcheck.check`.
    steps : array_like, optional
        Absolute steps to try. Default: half decades from 1e-1 down to 1e-12.
    method : str
        As for :func:`gradcheck.check`.
    **options
        Passed on to :func:`gradcheck.check` (``sample``, ``seed``, ``engine``, ...); each
        step is a check of its own, without the noise probe, and float32 parameters are
        evaluated in float32 (``evaluate="native"``): the curve of f in its own dtype.

    Returns
    -------
    StepSweep
        ``steps``, ``differences``, ``best_step``, ``best_difference``, ``tol`` (the
        thresholds the checks applied), ``passes`` (whether any step passes: when none
        does, the gradient is wrong whatever the step) and ``plot()``.

    Examples
    --------
    >>> import numpy as np, gradcheck
    >>> x = np.array([0.3, -1.2, 2.0])
    >>> sweep = gradcheck.step_sweep(lambda x: np.sum(np.sin(x)), x, np.cos(x))
    >>> 1e-7 < sweep.best_step < 1e-3
    True
    """
    if steps is None:
        steps = 10.0 ** -np.arange(1.0, 12.25, 0.5)
    steps = np.asarray(steps, dtype=np.float64).reshape(-1)
    if steps.size == 0 or not (np.isfinite(steps).all() and (steps > 0).all()):
        raise ValueError(f"`steps` must be positive finite numbers, got {steps!r}")
    steps = np.sort(steps)[::-1]
    options.setdefault("noise", False)
    # The curve of f in its own dtype: float32 parameters are not evaluated in float64 here
    # (pass evaluate="auto" to see the curve the default check would use).
    options.setdefault("evaluate", "native")
    differences = np.empty(steps.size)
    tol = None
    for i, h in enumerate(steps.tolist()):
        try:
            report = check(f, params, grad, eps=h, method=method, **options)
            differences[i], tol = report.difference, tol or report.tol
        except StepTooSmall:
            differences[i] = math.nan  # x + h == x - h for some parameter
    if np.isnan(differences).all():
        raise ValueError("every step in `steps` is below the resolution of the parameters")
    return StepSweep(steps, differences, method, tol)
