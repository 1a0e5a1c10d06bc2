"""Workers: the Python engine on several threads at once, each on its own copy of theta.

Threads, not processes: numpy releases the GIL inside its kernels, so a numpy f runs on
every core from threads; f is never pickled, theta is never sent anywhere, and an error in
f arrives as the very exception f raised. Measured on a 2-core machine (a 784-128-64-10
numpy MLP, batch 64, BLAS at one thread, 4,052 coordinates): serial 2.86 s, 2 threads
1.55 s, 2 forked processes 1.45 s; the processes' 7% did not buy the pickling.

Each worker owns a copy of theta and f's views of it (its own structure), perturbs only
that copy and restores it bitwise, exactly as the serial engine does with the shared buffer:
every point is evaluated on the same bits, so the results are those of the serial engine.

Threads are only as safe as f: an f that writes its parameters into an object
(``model.params = p; model.loss(X, y)``) or caches on ``self`` shares that object between
the threads, and the values come out of a race. So ``workers=None`` (the default) does not
trust threads on sight: it measures a first slice of the plan serially and the next on the
workers, has a few of the workers' values evaluated again serially, and keeps the workers
only when they gave the same values and were faster (``Trial``); the check then has the
entries that disagree evaluated again serially before anything is concluded from them
(``Evaluator.redo``). Forked processes would give each worker its own copy of the
user's objects, but they cannot be used by default: forking a process that runs threads
(numba's, BLAS's, a framework's) can deadlock, Python 3.12 warns against it, and elsewhere
than Linux a process must be sent a pickled f, which a closure over a model is not.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

import numpy as np

# workers=None runs on every core only when the serial run is expected to take longer than
# this (the first call's time x the points of the plan). Starting the threads and copying
# theta costs milliseconds, but an f that holds the GIL (pure Python, or numpy on tiny
# arrays) gains nothing from threads and loses some time to switching between them; below
# a second the most threads could save is half a second on 2 cores, and the trial below
# (a twentieth of the check run both ways) would be a large share of the check.
WORKERS_SECONDS = 1.0
# workers=None makes no more copies of theta than fit in this much memory (each worker
# holds one): on a many-core machine a model of 10^7 float64 parameters would otherwise
# take 80 MB a core.
WORKERS_BYTES = 1 << 30
# workers=None measures before it trusts the workers: a first slice of the plan this share
# of it (at least TRIAL_ROWS rows a worker, so every worker gets pieces, and TRIAL_SECONDS
# of evaluations, so that starting the threads and a loaded machine's scheduling do not
# decide) is run serially,
# the next as large on the workers; the workers are kept only when that was faster by the
# factor PAYS (timings on a loaded machine wobble by several percent, and a wrong choice
# costs more than the gain it was after). A plan too small for two such slices runs
# serially: it is short (see WORKERS_SECONDS) and threads could save little.
TRIAL_SHARE = 0.05
TRIAL_ROWS = 4
TRIAL_SECONDS = 0.05
PAYS = 1.15
# Of the slice the workers ran, this many points are evaluated again serially before the
# workers are trusted with the rest (see Evaluator.redo for the rule).
TRIAL_REPRODUCE = 4
# Pieces per worker, handed out as workers become free: a few per worker balance uneven
# costs (an f slower on some blocks) without making the pieces so small their bookkeeping
# shows.
PIECES = 8
# How often the caller's thread passes the workers' finished counts on to the progress bar.
POLL_SECONDS = 0.1


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pays(serial: float, threaded: float) -> bool:
    """Whether workers that took ``threaded`` seconds on a slice the serial engine took
    ``serial`` seconds for (as large) are worth keeping for the rest of the plan.
    """
    return threaded * PAYS < serial


def blas_one_thread():
    """A context holding BLAS to one thread (threadpoolctl, when installed), so that the
    workers do not each start a full set of BLAS threads; without threadpoolctl, BLAS is
    left as it is.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def run(
    engine: Callable[..., np.ndarray],
    copies: list[tuple[np.ndarray, Callable[[], Any]]],
    idx: np.ndarray,
    values: np.ndarray,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """``engine`` (the serial Python engine) on pieces of the plan, one thread per copy.

    ``copies`` holds each worker's ``(buffer, call)``; the pieces go to whichever worker is
    free and their results into their own rows of the output. The first exception f raises
    is raised here, after the other workers finish the piece they are on.
    """
    m = idx.size
    if m == 0:
        return np.empty(values.shape)
    count = min(len(copies), m)
    pieces = min(m, PIECES * count)
    bounds = iter([(p * m // pieces, (p + 1) * m // pieces) for p in range(pieces)])
    out = np.empty(values.shape)
    finished = [0] * count  # coordinates done, per worker (each writes only its own slot)
    lock, stop = threading.Lock(), threading.Event()

    def work(w: int) -> None:
        buffer, call = copies[w]

        def tick(n: int) -> None:
            finished[w] += n

        while not stop.is_set():
            with lock:
                lo, hi = next(bounds, (0, 0))
            if hi == lo:
                return
            out[lo:hi] = engine(
                call, buffer, idx[lo:hi], values[lo:hi], tick if progress else None, lo
            )

    with blas_one_thread(), ThreadPoolExecutor(count, thread_name_prefix="gradcheck") as pool:
        futures = [pool.submit(work, w) for w in range(count)]
        try:
            _follow(futures, finished, progress)
        finally:
            stop.set()  # on an error (or Ctrl-C here) the others take no further pieces
    return out


def _follow(futures: list, finished: list[int], progress) -> None:
    """Wait for the workers, passing their progress on from this thread; raise f's error."""
    told, pending = 0, set(futures)
    while pending:
        _, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_EXCEPTION)
        if progress:
            now = sum(finished)
            progress(now - told)
            told = now
        failed = next((f for f in futures if f.done() and f.exception() is not None), None)
        if failed is not None:
            failed.result()
