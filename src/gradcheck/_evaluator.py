"""The evaluator: the one mutable part of a check, between the plan and the passes.

It owns the buffer f is evaluated on, picks the engine (``_engine``) and sends every
evaluation after the first call to it, counts them, checks that f left its input alone, and
shows the progress bar. The passes see only its methods: ``run`` (a plan), ``segments``
(points that replace a range of the buffer), ``complex``, ``time_one``, and, for the
python engine's workers, ``redo`` and ``settle``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import _jit, _progress, _workers
from ._engine import BatchedEngine, Engine, NumbaEngine, Progress, PythonEngine, numba_unsuitable
from ._plan import Plan
from ._problem import Problem, unchanged
from ._results import Note

# engine="auto" compiles the numba kernel only when the Python engine would take longer than
# a first compile costs here (1-2 s), unless the kernel is already compiled in this process.
AUTO_NUMBA_SECONDS = 1.0


class Evaluator:
    """The buffer f is evaluated on, the engine that evaluates it, and the count.

    Every evaluation goes through one of the methods below, with the engine chosen for the
    check, and each adds the points it evaluated to ``nfev`` (an engine reports the
    evaluations it adds of its own through ``_add``): the count is exact by construction.
    ``verify`` checks that f left its input as it was, bit for bit, in every copy an engine
    perturbs.
    """

    def __init__(self, problem: Problem, *, client: Any = None):
        self.problem = problem
        self.buffer = problem.theta.copy()
        self.nfev = problem.calls  # the first call, which built the problem
        self.client = client
        self._bar: _progress.Bar | None = None
        self._engine: Engine
        self._python: PythonEngine | None = None
        if problem.call.batched:
            self._engine = BatchedEngine(problem, self.buffer)
        else:
            self._python = PythonEngine(problem, self.buffer, self._add)
            self._engine = self._python

    @property
    def engine(self) -> str:
        """The name of the engine in use ("python", "numba", "batched" or "dask")."""
        return self._engine.name

    @property
    def workers(self) -> int:
        """Threads the python engine ran (or runs) the main plan on; 1 for the others."""
        return self._python.workers if self._engine is self._python and self._python else 1

    @property
    def why(self) -> Note | None:
        """Why the plan ran serially or on workers, when that was decided on evidence."""
        return self._python.why if self._python else None

    # ------------------------------------------------------------- choosing
    def choose(
        self, requested: str, plan: Plan, per_call: float | None, workers: int | None = 1
    ) -> str:
        """Pick the engine for ``requested`` ("auto" or a name) and use it from now on, and
        how many threads the python engine runs on (``workers``; None: every core when the
        check is long enough to repay them, once measured to pay).
        """
        name = self._pick(requested, plan, per_call)
        if name == "numba":
            self._engine = NumbaEngine(self.problem, self.buffer)
        elif name == "dask":
            from ._dask import DaskEngine

            self._engine = DaskEngine(self.problem, self.buffer, self.client)
        if name != "python" or plan.method == "complex" or self._python is None:
            return name  # the other engines are parallel in their own way, or serial
        if workers is not None:
            self._python.use_workers(workers, trial=False, per_call=0.0)
            return name
        per_call = per_call or self.problem.seconds
        room = _workers.WORKERS_BYTES // max(1, self.buffer.nbytes)
        many = max(1, min(_workers.cores(), room))
        long = per_call * plan.values.size > _workers.WORKERS_SECONDS
        self._python.use_workers(
            many if long else 1, trial=True, per_call=per_call, evaluations=plan.values.size
        )
        return name

    def _pick(self, requested: str, plan: Plan, per_call: float | None) -> str:
        if plan.method == "complex":
            return "python"  # the options were checked up front
        if self.problem.call.batched:
            if requested == "dask":
                raise ValueError("engine='dask' runs one point per call: use batched=False")
            return "batched"
        if requested in ("python", "dask"):
            return requested
        unsuitable = numba_unsuitable(self.problem, self.buffer)
        if requested == "numba":
            if unsuitable:
                raise ValueError(f"engine='numba' needs {unsuitable}")
            return "numba"
        if unsuitable or plan.idx.size == 0:
            return "python"
        if _jit.is_compiled("evaluate_flat", parallel=True):
            return "numba"
        if per_call is None:
            per_call = self.time_one()
        return "numba" if per_call * plan.values.size > AUTO_NUMBA_SECONDS else "python"

    # ------------------------------------------------------------- evaluating
    def run(self, plan: Plan) -> np.ndarray:
        """``F[j, k]``: f with coordinate ``plan.idx[j]`` set to ``plan.values[j, k]``."""
        values = self._engine.run(plan.idx, plan.values, self._ticker(*plan.values.shape))
        self.nfev += plan.values.size
        return values

    def segments(self, points: list) -> np.ndarray:
        """F at each point ``(lo, hi, v)``: the buffer with ``[lo:hi]`` replaced by ``v``."""
        if not points:
            return np.empty(0)
        values = self._engine.points(points)
        self.nfev += len(points)
        if self._bar is not None:
            self._bar.expect(len(points))
            self._bar.update(len(points))
        return values

    def complex(self, idx: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """F at ``x + i h_j e_j`` for each coordinate ``idx[j]`` (complex when f kept it)."""
        assert self._python is not None, "the complex step runs on the python engine"
        values = self._python.complex(idx, steps, self._ticker(idx.size, 1))
        self.nfev += int(idx.size)
        return values

    def time_one(self) -> float:
        """Seconds one evaluation of f takes, at params."""
        started = time.perf_counter()
        self._engine.at_params()
        self.nfev += 1
        return max(time.perf_counter() - started, 1e-9)

    def redo(self, idx: np.ndarray) -> np.ndarray:
        """The coordinates to evaluate again serially because the workers' values at
        ``idx`` were not reproduced (see ``PythonEngine.redo``); none for other engines.
        """
        if self._engine is not self._python or self._python is None:
            return np.empty(0, dtype=np.int64)
        return self._python.redo(idx)

    def settle(self) -> None:
        """Evaluate serially from now on (see ``PythonEngine.settle``)."""
        if self._python is not None:
            self._python.settle()

    def verify(self, who: str = "f") -> None:
        """Raise ``ValueError`` if f changed its input (bitwise) since the check began."""
        for buffer in self._engine.buffers():
            unchanged(self.problem.layout, buffer, self.problem.theta, who)

    # ------------------------------------------------------------- progress
    @contextlib.contextmanager
    def progress(self, show: bool, total: int) -> Iterator[_progress.Bar | None]:
        """While open, every evaluation advances a bar of ``total`` evaluations (tqdm, on
        stderr); yields the ``Bar`` (None when none is shown).
        """
        if not show or total == 0:
            yield None
            return
        try:
            from tqdm import tqdm
        except ImportError as exc:
            raise ValueError("progress=True needs tqdm: pip install 'gradcheck[progress]'") from exc
        shown = tqdm(total=total, unit="eval", desc="gradcheck", file=sys.stderr)
        self._bar = _progress.Bar(shown)
        try:
            yield self._bar
        finally:
            self._bar = None
            shown.close()

    def _ticker(self, m: int, per: int) -> Progress:
        """The bar's update for a run of ``m`` coordinates of ``per`` evaluations each."""
        bar = self._bar
        if bar is None:
            return None
        bar.expect(m * per)
        return lambda done: bar.update(done * per)

    def _add(self, evaluations: int) -> None:
        self.nfev += evaluations
