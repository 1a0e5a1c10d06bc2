"""The context every pass reads (:class:`Check`) and the record the passes extend
(:class:`Findings`).

A pass is a function ``pass(check, findings) -> Findings``: it reads the check's facts and
rules from ``check``, what the passes before it found from ``findings``, and returns them
with its own findings added. The passes evaluate f only through ``check.evaluator`` (the
:class:`Evaluator` protocol), so a pass never imports an engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from ._deadline import Deadline
from ._judge import Judge
from ._options import Options
from ._plan import Plan
from ._problem import Problem
from ._progress import Bar
from ._results import BlockResult, Entry, Kink, Note
from ._sample import Selection


class Evaluator(Protocol):
    """What the passes ask of an evaluator: f at the points of a plan, counted.

    Every evaluation adds to ``nfev``; ``verify`` raises when f changed its input.
    """

    problem: Problem
    nfev: int

    @property
    def engine(self) -> str:
        """The name of the engine in use."""
        ...

    @property
    def workers(self) -> int:
        """Threads the main plan ran on."""
        ...

    def run(self, plan: Plan) -> np.ndarray:
        """Evaluate f at each point of ``plan``: (m, K) values."""
        ...

    def segments(self, points: list) -> np.ndarray:
        """Evaluate f with ``theta[lo:hi]`` set to ``values``, for each ``(lo, hi, values)``."""
        ...

    def complex(self, idx: np.ndarray, step: np.ndarray) -> np.ndarray:
        """Evaluate f at ``theta + i step_j e_j`` for each ``idx[j]`` (the complex step)."""
        ...

    def time_one(self) -> float:
        """Seconds one evaluation of f at params takes (counted)."""
        ...

    def verify(self, who: str = "f") -> None:
        """Raise ``ValueError`` when f changed its input since the check began."""
        ...

    def redo(self, idx: np.ndarray) -> np.ndarray:
        """The coordinates to evaluate again serially: none when a serial evaluation gives
        what the workers gave at ``idx``, else every coordinate the workers evaluated.
        """
        ...

    def settle(self) -> None:
        """Evaluate serially from now on."""
        ...

    @property
    def why(self) -> Note | None:
        """Why the plan ran serially or on workers, when decided on evidence."""
        ...


@dataclass(frozen=True)
class Streams:
    """One random stream each for the noise probe, the sample and the directions (None
    when unused), so that turning one on or off leaves what the others draw unchanged.
    """

    noise: np.random.Generator | None
    sample: np.random.Generator | None
    directions: np.random.Generator | None


@dataclass(frozen=True)
class Check:
    """What every pass of one check reads; set up once, before the passes.

    ``options`` are the caller's, as validated; what was decided from them is beside them:
    the ``seed`` used (drawn when none was given) and the ``selection`` (the coordinates,
    the directions per block fitted to a budget, the blocks in scope).
    """

    problem: Problem
    evaluator: Evaluator
    judge: Judge
    deadline: Deadline
    options: Options
    seed: int
    selection: Selection
    streams: Streams
    bar: Bar | None = None  # the progress bar, when one is shown


@dataclass(frozen=True)
class Estimate:
    """The finite differences of a plan (what the coordinate pass found)."""

    gradapprox: np.ndarray  # float64 (m,), aligned with plan.idx
    bad: np.ndarray  # bool (m,): f was not finite at one of the coordinate's points
    sensitivity: np.ndarray  # float64 (m,): error of gradapprox per unit of noise in f
    one_sided: np.ndarray  # float64 (m, 2): (left, right) slopes; NaN where not available


@dataclass(frozen=True)
class Marks:
    """Entries the kink pass left out of the verdicts (bool, aligned with ``plan.idx``)."""

    kinks: np.ndarray  # at or across a kink: counted in the global difference only
    on_kink: np.ndarray  # of those, the ones sitting on one (only seen between its slopes)
    smooth: np.ndarray  # of those, the ones a smaller step resolved (truncation, no kink)
    # of those, the ones whose error falls as h^2 at smaller steps without agreeing yet:
    # the step is too large for them, and they are not judged
    large: np.ndarray


@dataclass(frozen=True)
class Comparison:
    """The gradient against its finite differences: globally, per block, the worst entries."""

    difference: float
    blocks: tuple[BlockResult, ...]  # every block of the layout, in layout order
    worst: tuple[Entry, ...]


@dataclass(frozen=True)
class Findings:
    """What the passes found so far, in the order they ran."""

    plan: Plan  # what the coordinate pass checked (cut short at a budget's deadline)
    estimate: Estimate | None = None
    comparison: Comparison | None = None
    kinks: tuple[Kink, ...] = ()
    notes: tuple[Note, ...] = ()
    marks: Marks | None = None  # the entries the kink pass left out of the comparison
    # per block index, the directions' (numeric, predicted) derivatives, as judged
    along: Mapping[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def est(self) -> Estimate:
        """The finite differences of the plan (the coordinate pass ran)."""
        if self.estimate is None:
            raise RuntimeError("the coordinate pass has not run")
        return self.estimate

    @property
    def compared(self) -> Comparison:
        """The comparison so far (the compare pass ran)."""
        if self.comparison is None:
            raise RuntimeError("the compare pass has not run")
        return self.comparison

    def with_notes(self, notes: Iterable[Note]) -> Findings:
        """These findings and ``notes`` after their own."""
        return replace(self, notes=(*self.notes, *notes))

    def with_kinks(self, kinks: Iterable[Kink]) -> Findings:
        """These findings and the ``kinks`` not already listed (by entry name): the
        coordinates and the directions may both meet one kink.
        """
        named = {k.name for k in self.kinks}
        return replace(self, kinks=(*self.kinks, *(k for k in kinks if k.name not in named)))
