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

import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _jit
from ._layout import Layout

# Coordinates per Python-level batch: bounds the engine's temporary lists and sets how
# often a progress bar moves.
PY_CHUNK = 1 << 12
# Memory for one stack of perturbed vectors in the batched engine.
BATCH_BYTES = 64 << 20


# Called with the number of coordinates just finished, when a progress bar is shown.
Progress = Callable[[int], None] | None

_BOOLS = frozenset((bool, np.bool_))


class FunctionOutputError(TypeError):
    """f returned something that is not one real number (or one per row, batched)."""


def python_engine(
    call: Callable[[], Any],
    buffer: np.ndarray,
    idx: np.ndarray,
    values: np.ndarray,
    progress: Progress = None,
) -> np.ndarray:
    """Evaluate ``call()`` (f applied to the views of ``buffer``) with buffer[idx[j]] set to
    each of values[j, :] in turn.
    """
    m, n_values = values.shape
    out = np.empty(m * n_values)
    cell = memoryview(buffer)  # item access without creating numpy scalars
    for start in range(0, m, PY_CHUNK):
        stop = min(start + PY_CHUNK, m)
        results = []
        for i, vs in zip(idx[start:stop].tolist(), values[start:stop].tolist(), strict=True):
            saved = cell[i]
            for v in vs:
                cell[i] = v
                results.append(call())
            cell[i] = saved
        out[start * n_values : stop * n_values] = _as_floats(results, start, n_values)
        if progress:
            progress(stop - start)
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
    for start in range(0, idx.size, PY_CHUNK):
        stop = min(start + PY_CHUNK, idx.size)
        for i, h in zip(idx[start:stop].tolist(), steps[start:stop].tolist(), strict=True):
            saved = buffer[i]
            buffer[i] = complex(saved.real, h)
            results.append(call())
            buffer[i] = saved
        if progress:
            progress(stop - start)
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


def caller(f, struct, *, pair: bool, array_valued: bool) -> Callable[[], Any]:
    """``f(struct)`` reduced to the loss, in the cheapest form the first call allows."""
    if pair and array_valued:
        return lambda: _item(f(struct)[0])
    if pair:
        return lambda: f(struct)[0]
    if array_valued:
        return lambda: _item(f(struct))
    return lambda: f(struct)


def _item(value: Any) -> Any:
    # A size-1 array loss (a (1, 1) cost from np.dot) is one number; anything else is left
    # for the engine to refuse with the coordinate named.
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.item()
    return value.item() if framework_scalar_dtype(value) is not None else value


# Where torch tensors and jax arrays are defined: recognised by their type's module, so that
# gradcheck never imports either framework to find out.
_FRAMEWORKS = frozenset(("torch", "jax", "jaxlib"))
_FRAMEWORK_DTYPES = {"float64": np.dtype(np.float64), "float32": np.dtype(np.float32)}


def is_framework_value(value: Any) -> bool:
    """True for a torch tensor or a jax array (of any shape)."""
    return type(value).__module__.partition(".")[0] in _FRAMEWORKS and hasattr(value, "shape")


def framework_scalar_dtype(value: Any) -> np.dtype | None:
    """The numpy dtype of a one-element float32/float64 (or integer) torch tensor or jax
    array, else None.
    """
    if not is_framework_value(value):
        return None
    if math.prod(value.shape) != 1:
        return None
    # torch spells its dtypes "torch.float32", jax as numpy does, "float32".
    name = str(value.dtype).rpartition(".")[2]
    if name in _FRAMEWORK_DTYPES:
        return _FRAMEWORK_DTYPES[name]
    if name.startswith(("int", "uint")):
        return np.dtype(np.float64)
    return None


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
    build = _jit.compiled("build_batch", parallel=True)
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


def dask_engine(
    client: Any,
    f: Any,
    layout: Layout,
    buffer: np.ndarray,
    idx: np.ndarray,
    values: np.ndarray,
    *,
    how: dict,
    progress: Progress = None,
) -> np.ndarray:
    """Send slices of the plan to the workers of a ``dask.distributed`` client.

    theta is scattered once; each task runs the serial Python or numba engine on its slice
    (``how`` says which, and how to call f) and the results are put back in plan order.
    """
    from distributed import as_completed

    # hash=False: a key of its own, so a later scatter of the same values cannot release it.
    theta = client.scatter(buffer, broadcast=True, hash=False)
    workers = max(1, sum(client.nthreads().values()))
    m = idx.size
    pieces = max(1, min(m, 4 * workers))
    bounds = [(p * m // pieces, (p + 1) * m // pieces) for p in range(pieces)]
    futures = {
        client.submit(_dask_task, f, layout, theta, idx[lo:hi], values[lo:hi], how, pure=False): (
            lo,
            hi,
        )
        for lo, hi in bounds
        if hi > lo
    }
    out = np.empty(values.shape)
    for future in as_completed(futures):
        lo, hi = futures[future]
        out[lo:hi] = future.result()
        if progress:
            progress(hi - lo)
    return out


def _dask_task(f, layout, theta, idx, values, how):
    # Runs on a worker: perturb a private copy of the scattered theta, never theta itself.
    buffer = theta.copy()
    if how["engine"] == "numba":
        return numba_engine(f, buffer, idx, values)
    struct = layout.structure(buffer)
    call = caller(f, struct, pair=how["pair"], array_valued=how["array_valued"])
    return python_engine(call, buffer, idx, values)


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
