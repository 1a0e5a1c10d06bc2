"""Engines: evaluate f at every perturbed point of a plan; nothing else.

- ``python``: any callable. Perturbs the shared flat buffer in place, one entry at a time, and
  writes back the saved value (bitwise); f sees views of that buffer in the user's structure.
- ``numba``: a jitted ``f(flat float64 array) -> float64``; one parallel kernel call evaluates
  a whole chunk of coordinates, each thread on its own copy of theta.
- ``batched``: ``f`` takes a stack of parameter vectors; a kernel builds the stacks in chunks
  sized by a memory budget.

Engines return the raw values ``F[j, k]``; they decide no verdicts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _jit
from ._layout import Layout
from ._plan import Plan

# Coordinates handled per Python-level batch: bounds the temporary lists of the Python engine.
PY_CHUNK = 1 << 16
# Memory for one stack of perturbed vectors in the batched engine.
BATCH_BYTES = 64 << 20


_BOOLS = frozenset((bool, np.bool_))


class FunctionOutputError(TypeError):
    """f returned something that is not one real number (or one per row, batched)."""


def python_engine(call: Callable[[], Any], buffer: np.ndarray, plan: Plan) -> np.ndarray:
    """Evaluate ``call()`` (f applied to the views of ``buffer``) at each perturbed point."""
    m, n_values = plan.values.shape
    out = np.empty(m * n_values)
    cell = memoryview(buffer)  # item access without creating numpy scalars
    for start in range(0, m, PY_CHUNK):
        stop = min(start + PY_CHUNK, m)
        results = []
        for i, values in zip(
            plan.idx[start:stop].tolist(), plan.values[start:stop].tolist(), strict=True
        ):
            saved = cell[i]
            for v in values:
                cell[i] = v
                results.append(call())
            cell[i] = saved
        out[start * n_values : stop * n_values] = _as_floats(results, start, n_values)
    return out.reshape(m, n_values)


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
    pos, r = next((p, r) for p, r in enumerate(results) if not _is_scalar(r))
    raise FunctionOutputError(
        f"`f` must return one real number, but at perturbation {start + pos // n_values} "
        f"it returned {type(r).__name__}: {r!r:.80}"
    )


def _is_scalar(r: Any) -> bool:
    return isinstance(r, (int, float, np.integer, np.floating)) and not isinstance(
        r, (bool, np.bool_)
    )


def numba_engine(f: Any, buffer: np.ndarray, plan: Plan) -> np.ndarray:
    """Evaluate the jitted flat ``f`` at each perturbed point in one kernel call."""
    # Parallel kernels must not be entered from two Python threads at once (numba's
    # workqueue layer aborts the process); from any thread but the main one, run serially.
    parallel = threading.current_thread() is threading.main_thread()
    threads = _jit.num_threads() if parallel else 1
    kernel = _jit.compiled("evaluate_flat", parallel=parallel)
    m = plan.idx.size
    # A few chunks per thread balance uneven costs; each chunk costs one copy of theta.
    nchunks = max(1, min(m, 4 * threads))
    out = np.empty(plan.values.shape)
    kernel(f, buffer, plan.idx, plan.values, out, nchunks)
    return out


def batched_engine(
    f: Callable[[Any], Any], layout: Layout, buffer: np.ndarray, plan: Plan
) -> np.ndarray:
    """Evaluate ``f`` on stacks of perturbed vectors, a memory budget's worth at a time."""
    m, n_values = plan.values.shape
    rows = m * n_values
    per_row = max(1, buffer.size * buffer.itemsize)
    batch = int(max(1, min(rows, BATCH_BYTES // per_row)))
    stack = np.empty((batch, buffer.size), dtype=buffer.dtype)
    build = _jit.compiled("build_batch", parallel=True)
    values = plan.values.astype(buffer.dtype)
    out = np.empty(rows)
    for start in range(0, rows, batch):
        count = min(batch, rows - start)
        part = stack[:count]
        build(buffer, plan.idx, values, start, part)
        out[start : start + count] = batch_values(f, layout, part, count)
    return out.reshape(m, n_values)


def batch_values(f: Callable[[Any], Any], layout: Layout, stack: np.ndarray, count: int):
    """Call the batched ``f`` on ``stack`` (count, n) and check it gave ``count`` numbers."""
    result = f(layout.structure(stack, batch=count))
    arr = np.asarray(result)
    if arr.dtype.kind not in "iuf" or arr.size != count or arr.ndim > 2:
        raise FunctionOutputError(
            f"with batched=True, `f` must return {count} real numbers (one per row of its "
            f"(B, ...) input), but returned {type(result).__name__} of shape "
            f"{getattr(arr, 'shape', None)} and dtype {arr.dtype}"
        )
    return arr.reshape(count)
