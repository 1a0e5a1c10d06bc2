"""The Dask engine: slices of a plan on the workers of a ``dask.distributed`` client.

theta is scattered once per call; each task perturbs a private copy of it with the serial
Python or numba engine and the results are put back in plan order. Imported only when
``engine="dask"`` runs. Each worker process unpickles its own f, so an f that shares state
between calls is safe here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _engine
from ._problem import Problem


class DaskEngine:
    """An engine (see ``_engine``) on the workers of a dask client, found on first use."""

    name = "dask"

    def __init__(self, problem: Problem, buffer: np.ndarray, given: Any = None):
        self.problem = problem
        self.buffer = buffer
        self._given = given
        self._client: Any = None
        self._call = _engine.caller(problem.f, problem.layout.structure(buffer), problem.call)

    def run(self, idx: np.ndarray, points: np.ndarray, tick: _engine.Progress) -> np.ndarray:
        return run(self.client(), self.problem, self.buffer, idx, points, tick)

    def points(self, points: list) -> np.ndarray:
        return segments(self.client(), self.problem, self.buffer, points)

    def at_params(self) -> None:
        self._call()  # here, not on a worker: the time of f itself

    def buffers(self) -> tuple[np.ndarray, ...]:
        return (self.buffer,)

    def client(self) -> Any:
        if self._client is None:
            self._client = client(self._given)
        return self._client


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


def run(
    dask_client: Any,
    problem: Problem,
    buffer: np.ndarray,
    idx: np.ndarray,
    values: np.ndarray,
    progress: _engine.Progress = None,
) -> np.ndarray:
    """``F[j, k]`` for every coordinate ``idx[j]`` set to ``values[j, k]``, on the workers."""
    from distributed import as_completed

    # hash=False: a key of its own, so a later scatter of the same values cannot release it.
    theta = dask_client.scatter(buffer, broadcast=True, hash=False)
    workers = max(1, sum(dask_client.nthreads().values()))
    m = idx.size
    pieces = max(1, min(m, 4 * workers))
    bounds = [(p * m // pieces, (p + 1) * m // pieces) for p in range(pieces)]
    numba = _engine.numba_unsuitable(problem, buffer) is None
    futures = {}
    for lo, hi in bounds:
        if hi > lo:
            future = dask_client.submit(
                _task,
                problem.f,
                problem.layout,
                problem.call,
                numba,
                theta,
                idx[lo:hi],
                values[lo:hi],
                pure=False,
            )
            futures[future] = (lo, hi)
    out = np.empty(values.shape)
    for future in as_completed(futures):
        lo, hi = futures[future]
        out[lo:hi] = future.result()
        if progress:
            progress(hi - lo)
    return out


def segments(dask_client: Any, problem: Problem, buffer: np.ndarray, points: list) -> np.ndarray:
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
