"""Engines and the evaluator: evaluate f at every perturbed point of a plan; nothing else.

- ``python``: any callable. Perturbs the shared flat buffer in place, one entry at a time, and
  writes back the saved value (bitwise); f sees views of that buffer in the user's structure.
- ``numba``: a jitted ``f(flat float64 array) -> float64``; one parallel kernel call evaluates
  a whole chunk of coordinates, each thread on its own copy of theta.
- ``batched``: ``f`` takes a stack of parameter vectors; a kernel builds the stacks in chunks
  sized by a memory budget.

- ``dask``: slices of the plan on the workers of a ``dask.distributed`` client (``_dask``).

Engines return the raw values ``F[j, k]``; they decide no verdicts. The ``Evaluator`` holds
the check's one mutable buffer, sends every evaluation to the chosen engine and counts them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _jit, _policy, _progress, _workers
from ._layout import Layout
from ._problem import (
    Call,
    FunctionOutputError,
    batch_values,
    framework_scalar_dtype,
    is_scalar,
    unchanged,
)
from ._results import Note

# Coordinates per Python-level batch: bounds the engine's temporary lists (a progress bar
# moves by time, see _progress.Pace).
PY_CHUNK = 1 << 12
# Memory for one stack of perturbed vectors in the batched engine.
BATCH_BYTES = 64 << 20


# Called with the number of coordinates just finished, when a progress bar is shown.
Progress = Callable[[int], None] | None

_BOOLS = frozenset((bool, np.bool_))


def python_engine(
    call: Callable[[], Any],
    buffer: np.ndarray,
    idx: np.ndarray,
    values: np.ndarray,
    progress: Progress = None,
    offset: int = 0,
) -> np.ndarray:
    """Evaluate ``call()`` (f applied to the views of ``buffer``) with buffer[idx[j]] set to
    each of values[j, :] in turn; ``offset`` is where ``idx`` starts in the whole plan (for
    the error message that names a perturbation).
    """
    m, n_values = values.shape
    out = np.empty(m * n_values)
    cell = memoryview(buffer)  # item access without creating numpy scalars
    pace = _progress.Pace(progress, PY_CHUNK)
    for start in range(0, m, PY_CHUNK):
        stop = min(start + PY_CHUNK, m)
        results = []
        lo = start
        while lo < stop:  # strides between looks at the clock (one stride: no bar)
            hi = min(lo + pace.stride, stop)
            for i, vs in zip(idx[lo:hi].tolist(), values[lo:hi].tolist(), strict=True):
                saved = cell[i]
                for v in vs:
                    cell[i] = v
                    results.append(call())
                cell[i] = saved
            pace.done(hi - lo)
            lo = hi
        out[start * n_values : stop * n_values] = _as_floats(results, offset + start, n_values)
    return out.reshape(m, n_values)


def complex_engine(
    call: Callable[[], Any],
    buffer: np.ndarray,
    idx: np.ndarray,
    steps: np.ndarray,
    progress: Progress = None,
) -> np.ndarray:
    """F at x + i h_j e_j for each checked coordinate j, ``buffer`` being complex.

    Returns what f returned, as a complex array when f carried the imaginary part through
    and as a real one when it dropped it: the caller decides what that means.
    """
    results = []
    pace = _progress.Pace(progress, PY_CHUNK)
    start = 0
    while start < idx.size:
        stop = min(start + pace.stride, idx.size)
        for i, h in zip(idx[start:stop].tolist(), steps[start:stop].tolist(), strict=True):
            saved = buffer[i]
            buffer[i] = complex(saved.real, h)
            results.append(call())
            buffer[i] = saved
        pace.done(stop - start)
        start = stop
    arr = np.array(results)
    if arr.shape != (idx.size,) or arr.dtype.kind not in "iufc":
        pos, r = next(
            ((p, r) for p, r in enumerate(results) if not isinstance(r, (complex, np.number))),
            (0, results[0] if results else None),
        )
        raise FunctionOutputError(
            f"`f` must return one number, but at perturbation {pos} it returned "
            f"{type(r).__name__}: {r!r:.80}"
        )
    return arr


def segment_engine(call: Callable[[], Any], buffer: np.ndarray, points: list) -> np.ndarray:
    """Evaluate ``call()`` with buffer[lo:hi] replaced by ``v`` for each (lo, hi, v)."""
    results = []
    for lo, hi, v in points:
        saved = buffer[lo:hi].copy()
        buffer[lo:hi] = v
        results.append(call())
        buffer[lo:hi] = saved
    return _as_floats(results, 0, 1)


def batched_segment_engine(f, layout: Layout, buffer: np.ndarray, points: list) -> np.ndarray:
    """As ``segment_engine``, for a batched ``f``: one stack holds all the points."""
    stack = np.repeat(buffer[None, :], len(points), axis=0)
    for row, (lo, hi, v) in enumerate(points):
        stack[row, lo:hi] = v
    return batch_values(f, layout, stack, len(points)).astype(np.float64)


def caller(f, struct, call: Call) -> Callable[[], Any]:
    """``f(struct)`` reduced to the loss, in the cheapest form the first call allows."""
    if call.pair and call.array_valued:
        return lambda: _item(f(struct)[0])
    if call.pair:
        return lambda: f(struct)[0]
    if call.array_valued:
        return lambda: _item(f(struct))
    return lambda: f(struct)


def _item(value: Any) -> Any:
    # A size-1 array loss (a (1, 1) cost from np.dot) is one number; anything else is left
    # for the engine to refuse with the coordinate named.
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.item()
    return value.item() if framework_scalar_dtype(value) is not None else value


def _as_floats(results: list, start: int, n_values: int) -> np.ndarray:
    # f's type was checked at params; only if the bulk conversion fails is it checked again
    # point by point, to name where f returned something else.
    try:
        arr = np.array(results)
    except (TypeError, ValueError):
        arr = None
    if (
        arr is not None
        and arr.shape == (len(results),)
        and arr.dtype.kind in "iuf"
        and not _BOOLS & set(map(type, results))  # numpy would read True as 1.0
    ):
        return arr.astype(np.float64, copy=False)
    pos, r = next((p, r) for p, r in enumerate(results) if not is_scalar(r))
    raise FunctionOutputError(
        f"`f` must return one real number, but at perturbation {start + pos // n_values} "
        f"it returned {type(r).__name__}: {r!r:.80}"
    )


def numba_engine(
    f: Any, buffer: np.ndarray, idx: np.ndarray, values: np.ndarray, progress: Progress = None
) -> np.ndarray:
    """Evaluate the jitted flat ``f`` at each perturbed point, a kernel call per slice."""
    # Parallel kernels must not be entered from two Python threads at once (numba's
    # workqueue layer aborts the process); from any thread but the main one, run serially.
    parallel = threading.current_thread() is threading.main_thread()
    threads = _jit.num_threads() if parallel else 1
    kernel = _jit.compiled("evaluate_flat", parallel=parallel)
    m = idx.size
    out = np.empty(values.shape)
    # One call does it all; with a progress bar, a few dozen calls report as they go.
    slices = 32 if progress else 1
    for s in range(slices):
        lo, hi = s * m // slices, (s + 1) * m // slices
        if hi == lo:
            continue
        # A few chunks per thread balance uneven costs; each chunk costs one copy of theta.
        nchunks = max(1, min(hi - lo, 4 * threads))
        kernel(f, buffer, idx[lo:hi], values[lo:hi], out[lo:hi], nchunks)
        if progress:
            progress(hi - lo)
    return out


def batched_engine(
    f: Callable[[Any], Any],
    layout: Layout,
    buffer: np.ndarray,
    idx: np.ndarray,
    values: np.ndarray,
    progress: Progress = None,
) -> np.ndarray:
    """Evaluate ``f`` on stacks of perturbed vectors, a memory budget's worth at a time."""
    m, n_values = values.shape
    rows = m * n_values
    per_row = max(1, buffer.size * buffer.itemsize)
    batch = int(max(1, min(rows, BATCH_BYTES // per_row)))
    stack = np.empty((batch, buffer.size), dtype=buffer.dtype)
    # Serial: the copy is memory-bound, and a parallel kernel's threads spin-wait after each
    # call (OpenMP), taking the cores the user's batched f (BLAS, torch, jax) needs next.
    build = _jit.compiled("build_batch", parallel=False)
    stored = values.astype(buffer.dtype)
    out = np.empty(rows)
    for start in range(0, rows, batch):
        count = min(batch, rows - start)
        part = stack[:count]
        build(buffer, idx, stored, start, part)
        out[start : start + count] = batch_values(f, layout, part, count)
        if progress:
            progress(count // n_values)
    return out.reshape(m, n_values)


def _flat_points(f: Any, buffer: np.ndarray, points: list) -> np.ndarray:
    """A jitted flat ``f`` at a few points (the noise probe, the directions' pairs), called
    one by one: entering a parallel kernel with a first-class function costs more. A point
    that spans the whole buffer is passed as it is; the others replace their range of the
    buffer and put it back, as ``segment_engine`` does.
    """
    n = buffer.size
    out = np.empty(len(points))
    for j, (lo, hi, v) in enumerate(points):
        if lo == 0 and hi == n:
            out[j] = f(v)
            continue
        saved = buffer[lo:hi].copy()
        buffer[lo:hi] = v
        out[j] = f(buffer)
        buffer[lo:hi] = saved
    return out


# engine="auto" compiles the numba kernel only when the Python engine would take longer than
# a first compile costs here (1-2 s), unless the kernel is already compiled in this process.
AUTO_NUMBA_SECONDS = 1.0


class Evaluator:
    """The one mutable part of a check: the buffer f is evaluated on, and the count.

    Every evaluation of f after the first call goes through ``run`` (a plan),
    ``segments`` (points that replace a range of the buffer), ``complex`` or ``time_one``,
    each with the engine chosen for the check, and each adds the points it evaluated to
    ``nfev``: the count is exact by construction. ``verify`` checks that f left its input
    as it was, bit for bit.

    The python engine's workers are trusted only with values a serial evaluation gives
    again: ``workers=None`` measures them on a first slice of the plan before keeping them
    (``_on_workers``), ``redo`` evaluates chosen coordinates again serially, and
    ``settle`` makes every evaluation after the main plan serial. What was decided, and
    why, is in ``why``.
    """

    def __init__(self, problem: Any, *, client: Any = None):
        self.problem = problem
        self.buffer = problem.theta.copy()
        self.nfev = problem.calls  # the first call, which built the problem
        self.engine = "batched" if problem.call.batched else "python"
        self.client = client
        self.workers = 1  # threads the python engine runs on (choose sets it)
        # Why the python engine runs serially or on workers, when it was decided on
        # evidence (the trial, a race): one note, the last word.
        self.why: Note | None = None
        self._trial = False  # workers=None: measure the workers before trusting them
        self._per_call = 0.0  # seconds an evaluation was expected to take, for the trial
        self._settled = False  # past the main plan: every evaluation serial
        # (coordinates, points, values) of every run on the workers, until settled
        self._ran: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.bar: Any = None  # the progress bar (_progress.Bar), while one is shown
        layout = problem.layout
        self._call = None
        self._cbuffer = self._ccall = None  # the complex step's buffer, made when needed
        self._first_class = None  # the jitted f as the numba kernels take it
        self._copies: list = []  # each worker's (buffer, call), made when first needed
        if not problem.call.batched:
            self._call = caller(problem.f, layout.structure(self.buffer), problem.call)

    # ------------------------------------------------------------- choosing
    def choose(
        self, requested: str, plan: Any, per_call: float | None, workers: int | None = 1
    ) -> str:
        """Pick the engine for ``requested`` ("auto" or a name) and use it from now on, and
        how many threads the python engine runs on (``workers``; None: every core when the
        check is long enough to repay them).
        """
        self.engine = self._pick(requested, plan, per_call)
        if self.engine != "python" or plan.method == "complex":
            self.workers = 1  # the other engines are parallel in their own way, or serial
        elif workers is not None:
            self.workers = workers
        else:
            seconds = (per_call or self.problem.seconds) * plan.values.size
            room = _workers.WORKERS_BYTES // max(1, self.buffer.nbytes)
            many = max(1, min(_workers.cores(), room))
            self.workers = many if seconds > _workers.WORKERS_SECONDS else 1
            self._trial = self.workers > 1
            self._per_call = per_call or self.problem.seconds
        return self.engine

    def _pick(self, requested, plan, per_call) -> str:
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
    def run(self, plan: Any) -> np.ndarray:
        """``F[j, k]``: f with coordinate ``plan.idx[j]`` set to ``plan.values[j, k]``."""
        engine, f, buffer = self.engine, self.problem.f, self.buffer
        tick = self._ticker(*plan.values.shape)
        if engine == "batched":
            values = batched_engine(f, self.problem.layout, buffer, plan.idx, plan.values, tick)
        elif engine == "numba":
            values = numba_engine(self._jitted(), buffer, plan.idx, plan.values, tick)
        elif engine == "dask":
            from . import _dask

            values = _dask.run(self._client(), self.problem, buffer, plan, tick)
        elif self.workers > 1 and plan.idx.size > 1 and not self._settled:
            values = self._on_workers(plan.idx, plan.values, tick)
        else:
            values = python_engine(self._call, buffer, plan.idx, plan.values, tick)
        self.nfev += plan.values.size
        return values

    def _on_workers(self, idx: np.ndarray, points: np.ndarray, tick: Progress) -> np.ndarray:
        """The python engine's values on the workers, once they have earned it.

        With ``workers=None`` the first plan large enough is the trial: a slice serially,
        the next on the workers, a few of the workers' points again serially. The workers
        keep the rest only when their values came back the same and they were faster by
        ``_workers.PAYS``; otherwise the rest runs serially and a note says why.
        """
        if not self._trial:
            return self._threaded(idx, points, tick)
        m, many = idx.size, self.workers
        per_row = self._per_call * points.shape[1]
        k = max(
            _workers.TRIAL_ROWS * many,
            math.ceil(_workers.TRIAL_SHARE * m),
            math.ceil(_workers.TRIAL_SECONDS / max(per_row, 1e-9)),
        )
        if 2 * k > m:  # too few to measure (a budget's first slice): serial, trial pending
            return python_engine(self._call, self.buffer, idx, points, tick)
        self._trial = False
        # What a process pays once (the workers' copies of theta, importing threadpoolctl)
        # is no part of what the threads cost per evaluation.
        self._worker_copies()
        with _workers.blas_one_thread():
            pass
        began = time.perf_counter()
        first = python_engine(self._call, self.buffer, idx[:k], points[:k], tick)
        serial = time.perf_counter() - began
        began = time.perf_counter()
        second = self._threaded(idx[k : 2 * k], points[k : 2 * k], tick)
        threaded = time.perf_counter() - began
        probe = np.unique(np.linspace(0, k - 1, min(k, _workers.TRIAL_REPRODUCE)).astype(int))
        if not self._same_serially(idx[k + probe], points[k + probe], second[probe]):
            self._unsafe(many)
            second = python_engine(self._call, self.buffer, idx[k : 2 * k], points[k : 2 * k])
            self.nfev += second.size  # evaluated twice: once on the workers, once here
        elif not _workers.pays(serial, threaded):
            self.workers = 1  # what the workers gave stays in _ran, to be reproduced
            self.why = Note(
                f"checked serially: {many} workers were not faster on this f "
                f"({serial / threaded:.2f}x serial on a slice of {k:,} coordinates; "
                "f holds the GIL, or its calls are too short to share); workers=N "
                "insists"
            )
        else:
            self.why = Note(
                f"{many} workers: {serial / threaded:.1f}x as fast as serial on a slice of "
                f"{k:,} coordinates, with the values a serial evaluation gives; workers=1 "
                "checks serially"
            )
        rest = (idx[2 * k :], points[2 * k :])
        if self.workers > 1:
            third = self._threaded(*rest, tick)
        else:
            third = python_engine(self._call, self.buffer, *rest, tick)
        return np.concatenate([first, second, third])

    def _threaded(self, idx: np.ndarray, points: np.ndarray, tick: Progress) -> np.ndarray:
        values = _workers.run(python_engine, self._worker_copies(), idx, points, tick)
        self._ran.append((idx, points, values))
        return values

    def redo(self, idx: np.ndarray) -> np.ndarray:
        """The coordinates to evaluate again, serially: none when f, evaluated serially,
        gives again what the workers gave at the coordinates ``idx`` (those of them the
        workers evaluated) to REPRODUCE_ULPS; else every coordinate the workers evaluated.

        When f does not give the same values, it is not safe to call from several threads
        (it shares state between calls): the evaluator runs serially from now on and a
        note says so.
        """
        none = np.empty(0, dtype=np.int64)
        if not self._ran:
            return none
        many = max(self.workers, len(self._copies))
        ran = [np.concatenate(parts) for parts in zip(*self._ran, strict=True)]
        where = np.isin(ran[0], idx)
        if not where.any() or self._same_serially(ran[0][where], ran[1][where], ran[2][where]):
            return none
        self._unsafe(many)
        return ran[0]

    def settle(self) -> None:
        """Evaluate serially from now on: the passes after the main plan (kink re-checks,
        directions) decide on a few points each, and a value from a race there could hide a
        wrong entry as a kink or name a right one.
        """
        self._settled = True
        self._ran.clear()

    def _same_serially(self, idx: np.ndarray, points: np.ndarray, values: np.ndarray) -> bool:
        # BLAS on one thread, as on the workers: a pure f gives the same bits.
        with _workers.blas_one_thread():
            again = python_engine(self._call, self.buffer, idx, points)
        self.nfev += again.size
        tol = _policy.REPRODUCE_ULPS * np.finfo(self.problem.dtype).eps
        with np.errstate(invalid="ignore"):
            same = (again == values) | (
                np.abs(again - values) <= tol * np.maximum(np.abs(again), np.abs(values))
            )
        return bool((same | (np.isnan(again) & np.isnan(values))).all())

    def _unsafe(self, many: int) -> None:
        self.workers = 1
        self._trial = False
        self._ran.clear()
        self.why = Note(
            f"f gave different values on {many} threads than serially: it shares state "
            "between calls (an object whose parameters it assigns, a cache on self); "
            "checked serially"
        )

    def segments(self, points: list) -> np.ndarray:
        """F at each point ``(lo, hi, v)``: the buffer with ``[lo:hi]`` replaced by ``v``."""
        if not points:
            return np.empty(0)
        engine = self.engine
        if engine == "batched":
            values = batched_segment_engine(
                self.problem.f, self.problem.layout, self.buffer, points
            )
        elif engine == "numba":
            values = _flat_points(self.problem.f, self.buffer, points)
        elif engine == "dask":
            from . import _dask

            values = _dask.segments(self._client(), self.problem, self.buffer, points)
        else:
            values = segment_engine(self._call, self.buffer, points)
        self.nfev += len(points)
        if self.bar is not None:
            self.bar.expect(len(points))
            self.bar.update(len(points))
        return values

    def complex(self, idx: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """F at ``x + i h_j e_j`` for each coordinate ``idx[j]`` (complex when f kept it)."""
        if self._cbuffer is None:
            kind = np.complex128 if self.buffer.dtype == np.float64 else np.complex64
            self._cbuffer = self.buffer.astype(kind)
            struct = self.problem.layout.structure(self._cbuffer)
            self._ccall = caller(self.problem.f, struct, self.problem.call)
        values = complex_engine(self._ccall, self._cbuffer, idx, steps, self._ticker(idx.size, 1))
        self.nfev += int(idx.size)
        return values

    def time_one(self) -> float:
        """Seconds one evaluation of f takes, at params."""
        started = time.perf_counter()
        if self._call is None:
            batch_values(self.problem.f, self.problem.layout, self.buffer.reshape(1, -1), 1)
        else:
            self._call()
        self.nfev += 1
        return max(time.perf_counter() - started, 1e-9)

    def verify(self, who: str = "f") -> None:
        """Raise ``ValueError`` if f changed its input (bitwise) since the check began."""
        for buffer in (self.buffer, *(b for b, _ in self._copies)):
            unchanged(self.problem.layout, buffer, self.problem.theta, who)

    def _ticker(self, m: int, per: int) -> Progress:
        """The bar's update for a run of ``m`` coordinates of ``per`` evaluations each."""
        bar = self.bar
        if bar is None:
            return None
        bar.expect(m * per)
        return lambda done: bar.update(done * per)

    def _worker_copies(self) -> list:
        """Each worker's own copy of theta and f bound to its own views: made once, kept
        (each run leaves every copy restored bitwise, as ``verify`` checks).
        """
        layout, problem = self.problem.layout, self.problem
        while len(self._copies) < self.workers:
            own = self.buffer.copy()
            self._copies.append((own, caller(problem.f, layout.structure(own), problem.call)))
        return self._copies[: self.workers]

    def _jitted(self):
        if self._first_class is None:
            self._first_class = _jit.first_class(self.problem.f)
        return self._first_class

    def _client(self):
        from . import _dask

        self.client = _dask.client(self.client)
        return self.client


def numba_unsuitable(problem: Any, buffer: np.ndarray) -> str | None:
    """Why the numba engine cannot run this check on (writable) ``buffer``, or None."""
    f, layout = problem.f, problem.layout
    block = layout.blocks[0]
    if not _jit.is_jitted(f):
        return f"`f` jitted with numba (numba.njit), got {type(f).__name__} {f!r:.60}"
    if len(layout.blocks) > 1 or block.path != () or len(block.shape) != 1:
        return f"`params` to be one 1-D array, got blocks {[b.name for b in layout.blocks]}"
    if buffer.dtype != np.float64 or block.dtype != np.float64:
        return f"`params` of dtype float64, got {block.dtype}"
    if hasattr(f, "overloads"):
        returns = _jit.return_type_name(f, buffer)
    else:  # the JIT is disabled: the first call showed what f returns
        plain = not (problem.call.pair or problem.call.array_valued)
        returns = str(problem.loss_dtype) if plain else "a pair or an array"
    if returns != "float64":
        return f"`f(params)` to return a float64 (and `grad` given separately), got {returns}"
    return None
