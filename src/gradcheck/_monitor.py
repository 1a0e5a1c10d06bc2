"""Monitor: budgeted spot checks of the parameter blocks, inside a training loop.

Every ``every`` steps the monitor checks a few coordinates and random directions of every
block when its budget allows (of one block in rotation when it does not), times itself
against the training time it sees between its calls, and confirms a failure at once with a
second check on fresh draws: it alerts when a block fails both (a single failure may be a
kink crossing). Its cost model lives in ``_monitor_cost``. See reference/numerics.md
section 6.4.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from . import _check, _layout, _monitor_cost, _options
from ._judge import Judge
from ._monitor_cost import ONE_DIRECTION, Scheme
from ._report import Report

__all__ = ["GradientAlert", "GradientError", "Monitor"]

logger = logging.getLogger("gradcheck")

ALERTS = ("log", "warn", "raise")
# A block alerts after this many consecutive failed checks.
ALERT_AFTER = 2
# A check runs only when the budget's unspent credit covers its estimated cost times this:
# a margin for a check dearer than its estimate (the first ones rest on f timed in the
# loop), not more: each unit of margin delays every check by a check's cost over the budget.
SAFETY = 1.5
# A deferred check looks again once this many times the steps the credit needs have passed.
MARGIN = 1.25
# Options of `check` a monitor passes on: not those it sets itself, nor ``batched`` (the
# training loop hands over f as it trains, a loss of one point).
_CHECK_OPTIONS = _options.NAMES - {"sample", "directions", "seed", "budget", "batched"}
_HISTORY_FIELDS: tuple[str, ...] = ("step", "block", "difference", "verdict", "seconds", "checked")
_HISTORY_FIELDS += ("directions", "nfev", "reduced", "seed", "why")


class GradientAlert(UserWarning):
    """Warned by :class:`Monitor` (``on_alert="warn"``) when a block fails twice in a row
    (its check and the confirmation that follows at once).
    """


class GradientError(AssertionError):
    """Raised by :class:`Monitor` (``on_alert="raise"``) when a block fails twice in a row.

    Attributes
    ----------
    block : str
        The failing block.
    step : int
        The training step of the second failed check.
    report : Report
        That check's report; the message is its table.
    """

    def __init__(self, message: str, *, block: str, step: int, report: Report):
        super().__init__(message)
        self.block = block
        self.step = step
        self.report = report


class Monitor:
    """Spot-check a hand-written gradient every few hundred steps of a training run.

    Call :meth:`step` once per training step with the loss, the parameters and the gradient
    just computed. Every ``every`` steps the monitor checks every parameter block (a
    top-level item of ``params``) on ``sample`` coordinates in all and ``directions`` random
    directions per block, and keeps its own cost under ``budget`` times the training time
    it measures between its calls. When checking every block does not fit the budget, it
    checks every block along one direction each, else one block in rotation (the
    configured check, else one direction). A block that fails is checked again at once, at
    the same step, on other coordinates and directions; when it fails again the monitor
    alerts, so an alert comes at the first check after a bug. The confirmation runs
    whatever the budget (it is what the monitor is for); its cost is counted, and later
    checks wait until the credit covers them again.

    Parameters
    ----------
    every : int
        Steps between checks: the first is due at the first multiple of ``every`` at or
        after the first step seen, each next one ``every`` steps after the previous check
        (later when the budget is short).
    budget : float or None
        The monitor's time as a fraction of the training time (0.01: 1%). A check runs only
        when the time budgeted so far, less what the monitor already spent, covers 1.5 times
        its estimated cost: the median of the recent checks of the same kind, in training
        steps (the first check of a kind, which pays one-time costs such as imports and
        compiles, counts only until a second one is measured). When no kind of check fits
        the check waits for a later step. None: no limit.
    sample : int or float or None
        Coordinates of the block to check one by one (see :func:`gradcheck.check`).
    directions : int or None
        Random directions per block (2 evaluations of ``f`` each, whatever its size).
    on_alert : {"log", "warn", "raise"} or callable
        What to do when a block fails its check and the confirmation: log an error on the
        ``"gradcheck"`` logger, warn with :class:`GradientAlert`, raise
        :class:`GradientError` (its message is the report's table), or call
        ``on_alert(block_name, report)``.
    seed : int, optional
        Seeds the sequence of checks (each check's own seed is in the history).
    **options
        Other keyword arguments of :func:`gradcheck.check` (``eps``, ``method``, ``tol``,
        ``noise``, ``engine``, ...), passed to every check. ``localize`` defaults to 0 here:
        the search for the wrong entries of a failing block costs about ``4 log2(n)``
        evaluations per entry, and an alert needs only the verdict.

    Attributes
    ----------
    checks : int
        Checks run so far.
    deferred : int
        Due checks the budget put off to a later step.
    alerts : list of dict
        One entry (``step``, ``block``, ``difference``) per alert raised.

    Each check is logged at INFO on the ``"gradcheck"`` logger (a deferral too), with what
    it covered and why; :meth:`history` keeps the same reason in ``why``.
    last_report : Report or None
        The report of the latest check.

    Notes
    -----
    The check runs on the minibatch ``f`` closes over, with the gradient computed for it; it
    must be deterministic (fix dropout masks and the batch-norm mode) or the check says
    "inconclusive". The parameters and gradients are copied by the check and never modified.
    On ``examples/train_large_with_monitor.py`` (a 1.86M-parameter MLP, minibatches of 32)
    a check of every block costs some 10 to 20 training steps: at 5%, one every few hundred
    steps. Failing checks cost more (flagged entries are evaluated again, and confirmed).

    Examples
    --------
    >>> import numpy as np, gradcheck
    >>> X = np.arange(12.0).reshape(4, 3) / 10
    >>> y = np.array([1.0, 0.0, 2.0, 1.0])
    >>> params = {"w": np.zeros(3), "b": np.zeros(1)}
    >>> monitor = gradcheck.Monitor(every=10, budget=None, sample=3, directions=1, seed=0)
    >>> for step in range(1, 41):
    ...     r = X @ params["w"] + params["b"] - y
    ...     grads = {"w": X.T @ r / 4, "b": np.array([r.mean()])}
    ...     def loss(p):
    ...         e = X @ p["w"] + p["b"] - y
    ...         return 0.5 * e @ e / 4
    ...     _ = monitor.step(step, loss, params, grads)
    ...     params = {k: v - 0.1 * grads[k] for k, v in params.items()}
    >>> [(h["step"], h["block"], h["verdict"]) for h in monitor.history()][:4]
    [(10, 'w', 'pass'), (10, 'b', 'pass'), (20, 'w', 'pass'), (20, 'b', 'pass')]
    """

    def __init__(
        self,
        every: int = 500,
        budget: float | None = 0.01,
        sample: int | float | None = 16,
        directions: int | None = 2,
        *,
        on_alert: str | Callable[[str, Report], Any] = "warn",
        seed: int | None = None,
        **options: Any,
    ):
        _options.integer("every", every, what="a positive integer (steps)")
        _options.positive("budget", budget, "a positive fraction of the training time or None")
        if not callable(on_alert) and on_alert not in ALERTS:
            raise ValueError(
                f"`on_alert` must be one of {ALERTS} or a callable(block, report), got {on_alert!r}"
            )
        unknown = sorted(set(options) - _CHECK_OPTIONS)
        if unknown:
            raise TypeError(
                f"unknown option(s) {unknown}: Monitor passes on only these keyword arguments "
                f"of gradcheck.check: {sorted(_CHECK_OPTIONS)}"
            )
        # No directional search for the wrong entries by default: it costs about
        # 4 log2(n) evaluations per entry, and an alert only needs the verdict.
        self._options = _options.validate(
            sample=sample, directions=directions, seed=seed, **{"localize": 0, **options}
        )
        self.every = int(every)
        self.budget = None if budget is None else float(budget)
        self.sample = sample
        self.directions = None if directions is None else int(directions)
        self.on_alert = on_alert
        self.checks = 0
        self.deferred = 0
        self.alerts: list[dict[str, Any]] = []
        self.last_report: Report | None = None
        self._rng = np.random.default_rng(seed)
        self._records: list[dict[str, Any]] = []
        self._train = 0.0  # seconds between calls of step(): the training
        self._spent = 0.0  # seconds inside step()
        self._last_exit: float | None = None
        self._next_due: int | None = None
        self._deferring = False
        self._turn = 0  # index of the next block in the rotation
        self._streak: dict[str, int] = {}
        # Routine checks skip the noise probe (see _check): their cost model knows it.
        self._costs = _monitor_cost.CostModel(replace(self._options, noise=False))
        self._why_waiting: str | None = None  # why the check now due was put off
        self._calls = 0  # training steps timed
        self._calls_since = 0  # ... since the last check
        self._train_since = 0.0

    # ---------------------------------------------------------------- the training loop
    def step(self, step: int, f: Callable[[Any], Any], params: Any, grad: Any = None):
        """Record one training step, and check one block when a check is due.

        Parameters
        ----------
        step : int
            The training step (increasing; need not start at 0 or be consecutive).
        f : callable
            The loss at this step as a function of the parameters (same minibatch as
            ``grad``), or a function returning ``(loss, grads)`` when ``grad`` is None.
        params : ndarray, or dict / list / tuple of ndarrays
            The current parameters; a dict's or sequence's top-level items are the blocks
            checked in rotation, a single array is one block. Never modified.
        grad : same structure as ``params``, callable, or None
            The gradient under test (``dW1``-style keys accepted), as for
            :func:`gradcheck.check`. Never modified.

        Returns
        -------
        Report or None
            The report of the check run at this step, if one ran.

        Raises
        ------
        GradientError
            With ``on_alert="raise"``, when a block has failed two consecutive checks.
        ValueError, TypeError
            A bad ``step``, or parameters or gradients that :func:`gradcheck.check` refuses.
        """
        entered = time.perf_counter()
        if self._last_exit is not None:
            self._train += entered - self._last_exit
            self._train_since += entered - self._last_exit
            self._calls += 1
            self._calls_since += 1
        try:
            return self._step(step, f, params, grad, entered)
        finally:
            self._last_exit = time.perf_counter()
            self._spent += self._last_exit - entered

    def _step(self, step, f, params, grad, entered):
        if not _options.is_integer(step):
            raise TypeError(f"`step` must be an integer, got {type(step).__name__}: {step!r}")
        step = int(step)
        if self._next_due is None:
            self._next_due = -(-step // self.every) * self.every  # a multiple, at or after
        if step < self._next_due:
            return None
        scopes = _layout.groups(params)
        names = list(scopes)
        if self.budget is not None and self._costs.wants_timing(step, self.every):
            # One call of f, timed, sizes the first check better than a guess: a guess
            # that is too high puts the first check off for hundreds of steps.
            seconds = _monitor_cost.time_call(f, params, time.perf_counter)
            self._costs.calibrate(seconds, self._step_seconds())
        scheme, target, wait, why = self._choose(names, scopes, entered)
        if scheme is None:
            if not self._deferring:
                self.deferred += 1
                self._deferring = True
            self._why_waiting = why
            logger.info("gradcheck monitor: step %d: check put off (%s)", step, why)
            self._next_due = step + wait  # look again when the credit should suffice
            return None
        if self._deferring:
            why = f"{why}; put off before: {self._why_waiting}"
        self._deferring = False
        report = self._check(step, f, params, grad, scopes, scheme, target, why)
        self._next_due = step + self.every
        if len(target) < len(names):
            self._turn = names.index(target[-1]) + 1
        failed = [n for n in target if self._streak.get(n) == 1]
        if failed:
            # Confirm at once, on other coordinates and directions, at the same step: a
            # single failure may be a kink crossing, and waiting for the rotation to come
            # back would multiply the delay by the number of blocks.
            report = self._check(
                step,
                f,
                params,
                grad,
                scopes,
                scheme,
                tuple(failed),
                f"confirming the failure of {', '.join(failed)}",
                confirming=True,
            )
        return report

    def _check(
        self,
        step: int,
        f: Callable[[Any], Any],
        params: Any,
        grad: Any,
        scopes: dict[str, _layout.Group],
        scheme: Scheme,
        target: tuple[str, ...],
        why: str,
        *,
        confirming: bool = False,
    ) -> Report:
        """Run one check of ``scheme`` on the blocks ``target`` and record it.

        Only a ``confirming`` check probes f's noise (20 evaluations, most of a routine
        check): what a routine check fails is judged again, noise measured, before any alert.
        """
        started = time.perf_counter()
        seed = int(self._rng.integers(2**63))
        options = replace(
            self._options,
            sample=scheme.sample,
            directions=scheme.directions,
            seed=seed,
            noise=self._options.noise and confirming,
        )
        indices = tuple(sorted(k for name in target for k in scopes[name].blocks))
        # The same passes as any check, over the whole problem, limited to those blocks'
        # entries: the other blocks stay as they are.
        report = _check.run(f, params, grad, options, blocks=indices)
        seconds = time.perf_counter() - started
        self._costs.learn(scheme, target, seconds, report.nfev, self._step_seconds())
        self._train_since, self._calls_since = 0.0, 0
        self.checks += 1
        self.last_report = report
        reduced = scheme != Scheme(self.sample, self.directions)
        results = list(report.blocks.values())
        where = {k: i for i, k in enumerate(indices)}
        for name in target:
            mine = [results[where[k]] for k in scopes[name].blocks]
            verdict = Judge.final(mine, ())
            differences = [b.difference for b in mine if b.difference == b.difference]
            self._records.append(
                {
                    "step": step,
                    "block": name,
                    "difference": float(max(differences, default=math.nan)),
                    "verdict": str(verdict),
                    "seconds": seconds,
                    "checked": int(sum(b.checked for b in mine)),
                    "directions": int(report.directions),
                    "nfev": int(report.nfev),
                    "reduced": reduced,
                    "seed": seed,
                    "why": why,
                }
            )
            logger.info(
                "gradcheck monitor: step %d, %s: %s (difference %.3g; %s)",
                step,
                name,
                verdict,
                self._records[-1]["difference"],
                why,
            )
            self._after(step, name, verdict, report)
        return report

    # ---------------------------------------------------------------- budget
    def _choose(self, names, scopes, entered):
        """``(scheme, target, 0, why)``: the check to run now on the blocks ``target``; or
        ``(None, (), steps, why)``: wait that many steps.

        Every block at once when that fits (the directions make it cheap: two evaluations a
        block), else one block in rotation; the configured check, else a reduced one (one
        direction, no coordinates).
        """
        full, every = Scheme(self.sample, self.directions), tuple(names)
        if self.budget is None:
            return full, every, 0, "every block (no budget)"
        one = (names[self._turn % len(names)],)
        credit = self.budget * self._train - (self._spent + time.perf_counter() - entered)
        unit = self._step_seconds()
        tried = []
        for scheme, target in dict.fromkeys(
            ((full, every), (ONE_DIRECTION, every), (full, one), (ONE_DIRECTION, one))
        ):
            sizes = [scopes[n].size for n in target]
            needed = SAFETY * self._costs.estimate(scheme, target, sizes, unit)
            if credit >= needed:
                what = "every block" if len(target) == len(names) > 1 else f"block {target[0]}"
                reduced = ", reduced to one direction" if scheme != full else ""
                because = f": {'; '.join(tried)}" if tried else ""
                return scheme, target, 0, f"{what}{reduced}{because}"
            kind = _monitor_cost.words(scheme, target, names)
            tried.append(f"{kind} would cost {needed:.3g} s of {max(credit, 0):.3g} s of credit")
        # Each training step adds budget * unit seconds of credit. Wait a little past the
        # point where the credit should suffice, and never less than a tenth of the
        # period: looking costs time too, and polling every step or two just as the credit
        # comes near the need would spend it as fast as training adds it.
        steps = MARGIN * (needed - credit) / (self.budget * unit) if unit > 0 else 1
        floor = max(1, self.every // 10)
        return None, (), int(min(max(floor, math.ceil(steps)), self.every)), tried[-1]

    def _step_seconds(self) -> float:
        """Training seconds per step, over the steps since the last check."""
        if self._calls_since:
            return self._train_since / self._calls_since
        return self._train / max(self._calls, 1)

    # ---------------------------------------------------------------- alerts
    def _after(self, step, name, verdict, report) -> None:
        streak = self._streak[name] = self._streak.get(name, 0) + 1 if verdict == "fail" else 0
        if streak == ALERT_AFTER:
            self._alert(step, name, report)

    def _alert(self, step, name, report) -> None:
        steps = [r["step"] for r in self._records if r["block"] == name][-ALERT_AFTER:]
        # The block's own difference (the one its history row shows), not the check's.
        difference = self._records[-1]["difference"]
        self.alerts.append({"step": step, "block": name, "difference": difference})
        headline = (
            f"gradcheck monitor: block {name} failed {ALERT_AFTER} consecutive checks "
            f"(steps {', '.join(map(str, steps))}); difference {difference:.3g}"
        )
        if callable(self.on_alert):
            self.on_alert(name, report)
        elif self.on_alert == "log":
            logger.error("%s\n%s", headline, report)
        elif self.on_alert == "warn":
            warnings.warn(f"{headline}\n{report}", GradientAlert, stacklevel=6)
        else:
            raise GradientError(f"{headline}\n{report}", block=name, step=step, report=report)

    # ---------------------------------------------------------------- results
    @property
    def training_seconds(self) -> float:
        """Wall time spent between calls of :meth:`step`: the training."""
        return self._train

    @property
    def monitor_seconds(self) -> float:
        """Wall time spent inside :meth:`step`, checks included."""
        return self._spent

    @property
    def overhead(self) -> float:
        """``monitor_seconds / training_seconds`` (nan before any training time)."""
        return self._spent / self._train if self._train > 0 else math.nan

    def history(self, block: str | None = None) -> list[dict[str, Any]]:
        """The checks run so far, oldest first.

        Parameters
        ----------
        block : str, optional
            Only this block's checks.

        Returns
        -------
        list of dict
            One dict per block and check (a check of every block gives a row per block, with
            the same ``step``): ``step``, ``block``, ``difference``, ``verdict``,
            ``seconds``, ``checked`` (the block's coordinates), ``directions``, ``nfev``
            (``seconds`` and ``nfev`` are the whole check's), ``reduced`` (the budget shrank
            the check), ``seed`` (replays it) and ``why``: what the check covered and why
            (every block, or which kinds of check the credit could not pay for, and what
            put it off before), or the failure it confirms.
        """
        return [dict(r) for r in self._records if block is None or r["block"] == block]

    def plot(self, ax: Any = None) -> Any:
        """Draw each block's difference against the training step (needs matplotlib).

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new figure when None.

        Returns
        -------
        matplotlib.axes.Axes
            One line per block on a log scale, failed checks marked with a cross, the fail
            threshold dashed and each alert a dotted vertical line.

        Raises
        ------
        ImportError
            matplotlib is not installed: ``pip install "gradcheck[plot]"``.
        """
        from ._plot import plot_monitor

        return plot_monitor(self, ax=ax)

    def to_csv(self, path: str | os.PathLike) -> str | os.PathLike:
        """Write :meth:`history` to a CSV file, one row per check, with a header.

        Parameters
        ----------
        path : str or path-like
            Where to write; overwritten.

        Returns
        -------
        str or path-like
            ``path``.
        """
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=_HISTORY_FIELDS)
            writer.writeheader()
            for record in self._records:
                writer.writerow(
                    {k: repr(v) if isinstance(v, float) else v for k, v in record.items()}
                )
        return path

    def __repr__(self) -> str:
        return (
            f"Monitor(every={self.every}, budget={self.budget}, sample={self.sample}, "
            f"directions={self.directions}, checks={self.checks}, alerts={len(self.alerts)})"
        )
