"""The Dask engine: slices of a plan on the workers of a ``dask.distributed`` client.

theta is scattered once per call; each task perturbs a private copy of it with the serial
Python or numba engine and the results are put back in plan order. Imported only when
``engine="dask"`` runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _engine


def client(given: Any = None) -> Any:
    """``given``, or the current ``dask.distributed`` client; a clear error when none."""
    if given is not None:
        return given
    try:
        from distributed import get_client
    except ImportError as exc:
        raise ValueError(
            "engine='dask' needs dask.distributed: pip install 'gradcheck[dask]'"
        ) from exc
    try:
        return get_client()
    except ValueError as exc:
        raise ValueError(
            "engine='dask' needs a dask.distributed Client: pass client=, or create one first"
        ) from exc


def run(dask_client: Any, problem: Any, buffer: np.ndarray, plan: Any, progress=None):
    """``F[j, k]`` for every coordinate of ``plan``, computed on the workers."""
    from distributed import as_completed

    # hash=False: a key of its own, so a later scatter of the same values cannot release it.
    theta = dask_client.scatter(buffer, broadcast=True, hash=False)
    workers = max(1, sum(dask_client.nthreads().values()))
    m = plan.idx.size
    pieces = max(1, min(m, 4 * workers))
    bounds = [(p * m // pieces, (p + 1) * m // pieces) for p in range(pieces)]
    numba = _engine.numba_unsuitable(problem, buffer) is None
    futures = {
        dask_client.submit(
            _task, problem.f, problem.layout, problem.call, numba, theta,
            plan.idx[lo:hi], plan.values[lo:hi], pure=False,
        ): (lo, hi)
        for lo, hi in bounds
        if hi > lo
    }  # fmt: skip
    out = np.empty(plan.values.shape)
    for future in as_completed(futures):
        lo, hi = futures[future]
        out[lo:hi] = future.result()
        if progress:
            progress(hi - lo)
    return out


def segments(dask_client: Any, problem: Any, buffer: np.ndarray, points: list) -> np.ndarray:
    """F at each ``(lo, hi, v)`` point, in one task on a worker."""
    future = dask_client.submit(
        _segment_task, problem.f, problem.layout, problem.call, buffer, points, pure=False
    )
    return future.result()


def _task(f, layout, call, numba, theta, idx, values):
    # Runs on a worker: perturb a private copy of the scattered theta, never theta itself.
    buffer = theta.copy()
    if numba:
        return _engine.numba_engine(f, buffer, idx, values)
    return _engine.python_engine(
        _engine.caller(f, layout.structure(buffer), call), buffer, idx, values
    )


def _segment_task(f, layout, call, theta, points):
    # A few points: f called one by one, a jitted f as any other.
    buffer = theta.copy()
    return _engine.segment_engine(_engine.caller(f, layout.structure(buffer), call), buffer, points)
