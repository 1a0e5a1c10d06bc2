"""Engines: evaluate f at the perturbed points they are given; nothing else.

Each engine is a class with the same four methods — ``run(idx, points, tick)`` (f with
coordinate ``idx[j]`` set to each ``points[j, k]``), ``points(points)`` (f with a range of
the buffer replaced, for the noise probe and the directions), ``at_params()`` (one call, to
time) and ``buffers()`` (every copy of theta it perturbs, for the evaluator's check that f
left its input alone) — over the check's one buffer, which the ``Evaluator``
(``_evaluator``) owns:

- ``PythonEngine``: any callable. Perturbs the shared flat buffer in place, one entry at a
  time, and writes back the saved value (bitwise); f sees views of that buffer in the
  user's structure. On worker threads, each with its own copy of theta, where that is safe
  and pays (``_workers``), and the complex step.
- ``NumbaEngine``: a jitted ``f(flat float64 array) -> float64``; one parallel kernel call
  evaluates a whole chunk of coordinates, each thread on its own copy of theta.
- ``BatchedEngine``: ``f`` takes a stack of parameter vectors; a kernel builds the stacks in
  chunks sized by a memory budget.
- ``DaskEngine`` (``_dask``): slices of the plan on the workers of a ``dask.distributed``
  client.

Engines return the raw values ``F[j, k]``; they decide no verdicts and count nothing
themselves: an evaluation beyond those asked for (the python engine's serial
re-evaluations) is reported to the evaluator through ``count``. A new engine is one class
with these methods, and one line in ``Evaluator.choose``.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from . import _jit, _policy, _progress, _workers
from ._layout import Layout
from ._problem import (
    Call,
    FunctionOutputError,
    Problem,
    batch_values,
    framework_scalar_dtype,
    is_scalar,
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
# What f returns in the usual case: nothing to check beyond the type.
_FLOATS = frozenset((float, np.float64))


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
    cell = buffer.data  # a memoryview: item access without creating numpy scalars
    pace = _progress.Pace(progress, PY_CHUNK)
    for start in range(0, m, PY_CHUNK):
        stop = min(start + PY_CHUNK, m)
        results: list = []
        lo = start
        while lo < stop:  # strides between looks at the clock (one stride: no bar)
            hi = min(lo + pace.stride, stop)
            _perturbed(call, cell, idx[lo:hi].tolist(), values[lo:hi], results)
            pace.done(hi - lo)
            lo = hi
        out[start * n_values : stop * n_values] = _as_floats(results, offset + start, n_values)
    return out.reshape(m, n_values)


def _perturbed(
    call: Callable[[], Any], cell: memoryview, coords: list, values: np.ndarray, results: list
) -> None:
    """Append ``call()`` with cell[coords[j]] set to each of values[j, :] in turn, and put
    each saved entry back (bitwise).

    This loop is the python engine's cost per coordinate beyond f (benchmarks/test_core.py
    holds it to a fraction of a microsecond): the values come as flat lists of Python
    floats, one per column, never as a list per coordinate, and the usual two points of a
    central difference are written out.
    """
    append = results.append
    if values.shape[1] == 2:
        for i, a, b in zip(coords, values[:, 0].tolist(), values[:, 1].tolist(), strict=True):
            saved = cell[i]
            cell[i] = a
            append(call())
            cell[i] = b
            append(call())
            cell[i] = saved
        return
    n_values = values.shape[1]
    flat = values.ravel().tolist()
    for j, i in enumerate(coords):
        saved = cell[i]
        for v in flat[j * n_values : (j + 1) * n_values]:
            cell[i] = v
            append(call())
        cell[i] = saved


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
    # A partial calls f without a Python frame of its own: a lambda here cost the python
    # engine a third of its overhead per coordinate on a cheap f.
    return functools.partial(f, struct)


def _item(value: Any) -> Any:
    # A size-1 array loss (a (1, 1) cost from np.dot) is one number; anything else is left
    # for the engine to refuse with the coordinate named.
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.item()
    return value.item() if framework_scalar_dtype(value) is not None else value


def _as_floats(results: list, start: int, n_values: int) -> np.ndarray:
    # f's type was checked at params; only if the bulk conversion fails is it checked again
    # point by point, to name where f returned something else.
    if _FLOATS.issuperset(map(type, results)):  # the usual case, converted as it is
        return np.fromiter(results, np.float64, len(results))
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


def numba_unsuitable(problem: Problem, buffer: np.ndarray) -> str | None:
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


class Engine(Protocol):
    """What the evaluator asks of an engine (see the module's docstring)."""

    name: str

    def run(self, idx: np.ndarray, points: np.ndarray, tick: Progress) -> np.ndarray: ...

    def points(self, points: list) -> np.ndarray: ...

    def at_params(self) -> None: ...

    def buffers(self) -> tuple[np.ndarray, ...]: ...


class PythonEngine:
    """Any callable: the buffer perturbed in place, serially or on worker threads.

    Workers are trusted only with values a serial evaluation gives again: with
    ``trial=True`` (``workers=None``) they are measured on a first slice of the plan before
    they are kept (``_on_workers``), ``redo`` evaluates chosen coordinates again serially,
    and ``settle`` makes every evaluation after the main plan serial. What was decided, and
    why, is in ``why``.
    """

    name = "python"

    def __init__(self, problem: Problem, buffer: np.ndarray, count: Callable[[int], None]):
        self.problem = problem
        self.buffer = buffer
        self.call = caller(problem.f, problem.layout.structure(buffer), problem.call)
        self._count = count  # evaluations beyond those asked for, told to the evaluator
        self.workers = 1  # threads the main plan runs on
        # Why the engine runs serially or on workers, when it was decided on evidence (the
        # trial, a race): one note, the last word.
        self.why: Note | None = None
        self._trial = False  # measure the workers before trusting them
        self._per_call = 0.0  # seconds an evaluation was expected to take, for the trial
        self._settled = False  # past the main plan: every evaluation serial
        # (coordinates, points, values) of every run on the workers, until settled
        self._ran: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._copies: list[tuple[np.ndarray, Callable[[], Any]]] = []  # each worker's own
        self._complex: tuple[np.ndarray, Callable[[], Any]] | None = None
        self._evaluations = 0  # the main plan's, for the trial's decision
        self._points_timed = (0.0, 0)  # seconds and count of the points evaluated

    def use_workers(
        self, workers: int, *, trial: bool, per_call: float = 0.0, evaluations: int = 0
    ) -> None:
        """Run the main plan on ``workers`` threads; with ``trial``, only once they have
        been measured faster than serial and giving the same values, and only if the plan's
        ``evaluations`` take longer than ``_workers.WORKERS_SECONDS`` at ``per_call``
        seconds each (or at what the points evaluated since, the noise probe's, cost).
        """
        self.workers = workers
        self._trial = trial and workers > 1
        self._per_call = per_call
        self._evaluations = evaluations

    def run(self, idx: np.ndarray, points: np.ndarray, tick: Progress) -> np.ndarray:
        if self.workers > 1 and idx.size > 1 and not self._settled:
            return self._on_workers(idx, points, tick)
        return python_engine(self.call, self.buffer, idx, points, tick)

    def points(self, points: list) -> np.ndarray:
        # Timed: the first call's time includes what f pays once (a compile, cold caches),
        # and the noise probe's points before the plan say what a call costs.
        began = time.perf_counter()
        values = segment_engine(self.call, self.buffer, points)
        seconds, count = self._points_timed
        self._points_timed = (seconds + time.perf_counter() - began, count + len(points))
        return values

    def at_params(self) -> None:
        self.call()

    def buffers(self) -> tuple[np.ndarray, ...]:
        return (self.buffer, *(b for b, _ in self._copies))

    def complex(self, idx: np.ndarray, steps: np.ndarray, tick: Progress) -> np.ndarray:
        """F at ``x + i h_j e_j`` for each coordinate ``idx[j]`` (complex when f kept it),
        on a complex copy of the buffer made on first use.
        """
        if self._complex is None:
            kind = np.complex128 if self.buffer.dtype == np.float64 else np.complex64
            cbuffer = self.buffer.astype(kind)
            struct = self.problem.layout.structure(cbuffer)
            self._complex = (cbuffer, caller(self.problem.f, struct, self.problem.call))
        cbuffer, call = self._complex
        return complex_engine(call, cbuffer, idx, steps, tick)

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
        seconds, count = self._points_timed
        if count:
            self._per_call = min(self._per_call, seconds / count)
        if self._per_call * self._evaluations <= _workers.WORKERS_SECONDS:
            self._trial, self.workers = False, 1  # short after all: threads save little
            return python_engine(self.call, self.buffer, idx, points, tick)
        per_row = self._per_call * points.shape[1]
        k = max(
            _workers.TRIAL_ROWS * many,
            math.ceil(_workers.TRIAL_SHARE * m),
            math.ceil(_workers.TRIAL_SECONDS / max(per_row, 1e-9)),
        )
        if 2 * k > m:  # too few to measure (a budget's first slice): serial, trial pending
            return python_engine(self.call, self.buffer, idx, points, tick)
        self._trial = False
        # What a process pays once (the workers' copies of theta, importing threadpoolctl)
        # is no part of what the threads cost per evaluation.
        self._worker_copies()
        with _workers.blas_one_thread():
            pass
        began = time.perf_counter()
        first = python_engine(self.call, self.buffer, idx[:k], points[:k], tick)
        serial = time.perf_counter() - began
        began = time.perf_counter()
        second = self._threaded(idx[k : 2 * k], points[k : 2 * k], tick)
        threaded = time.perf_counter() - began
        probe = np.unique(np.linspace(0, k - 1, min(k, _workers.TRIAL_REPRODUCE)).astype(int))
        if not self._same_serially(idx[k + probe], points[k + probe], second[probe]):
            self._unsafe(many)
            second = python_engine(self.call, self.buffer, idx[k : 2 * k], points[k : 2 * k])
            self._count(second.size)  # evaluated twice: once on the workers, once here
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
            third = python_engine(self.call, self.buffer, *rest, tick)
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
        if self._trial:  # the plan never grew large enough to measure: it ran serially
            self._trial = False
            self.workers = 1
        self._ran.clear()

    def _same_serially(self, idx: np.ndarray, points: np.ndarray, values: np.ndarray) -> bool:
        # BLAS on one thread, as on the workers: a pure f gives the same bits.
        with _workers.blas_one_thread():
            again = python_engine(self.call, self.buffer, idx, points)
        self._count(again.size)
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

    def _worker_copies(self) -> list:
        """Each worker's own copy of theta and f bound to its own views: made once, kept
        (each run leaves every copy restored bitwise, as ``verify`` checks).
        """
        layout, problem = self.problem.layout, self.problem
        while len(self._copies) < self.workers:
            own = self.buffer.copy()
            self._copies.append((own, caller(problem.f, layout.structure(own), problem.call)))
        return self._copies[: self.workers]


class NumbaEngine:
    """A jitted flat f: the parallel kernel for plans, f called directly at a few points."""

    name = "numba"

    def __init__(self, problem: Problem, buffer: np.ndarray):
        self.problem = problem
        self.buffer = buffer
        self._first_class: Any = None  # the jitted f as the kernels take it, made once

    def run(self, idx: np.ndarray, points: np.ndarray, tick: Progress) -> np.ndarray:
        if self._first_class is None:
            self._first_class = _jit.first_class(self.problem.f)
        return numba_engine(self._first_class, self.buffer, idx, points, tick)

    def points(self, points: list) -> np.ndarray:
        return _flat_points(self.problem.f, self.buffer, points)

    def at_params(self) -> None:
        self.problem.f(self.buffer)

    def buffers(self) -> tuple[np.ndarray, ...]:
        return (self.buffer,)


class BatchedEngine:
    """A batched f: stacks of perturbed vectors, a memory budget's worth at a time."""

    name = "batched"

    def __init__(self, problem: Problem, buffer: np.ndarray):
        self.problem = problem
        self.buffer = buffer

    def run(self, idx: np.ndarray, points: np.ndarray, tick: Progress) -> np.ndarray:
        return batched_engine(self.problem.f, self.problem.layout, self.buffer, idx, points, tick)

    def points(self, points: list) -> np.ndarray:
        return batched_segment_engine(self.problem.f, self.problem.layout, self.buffer, points)

    def at_params(self) -> None:
        batch_values(self.problem.f, self.problem.layout, self.buffer.reshape(1, -1), 1)

    def buffers(self) -> tuple[np.ndarray, ...]:
        return (self.buffer,)
