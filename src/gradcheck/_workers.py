"""Workers: the Python engine on several threads at once, each on its own copy of theta.

Threads, not processes: numpy releases the GIL inside its kernels, so a numpy f runs on
every core from threads; f is never pickled, theta is never sent anywhere, and an error in
f arrives as the very exception f raised. Measured on a 2-core machine (a 784-128-64-10
numpy MLP, batch 64, BLAS at one thread, 4,052 coordinates): serial 2.86 s, 2 threads
1.55 s, 2 forked processes 1.45 s; the processes' 7% did not buy the pickling.

Each worker owns a copy of theta and f's views of it (its own structure), perturbs only
that copy and restores it bitwise, exactly as the serial engine does with the shared buffer:
every point is evaluated on the same bits, so the results are those of the serial engine.
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
# half a second the most threads could save is a quarter of a second on 2 cores, not worth
# that risk.
WORKERS_SECONDS = 0.5
# workers=None makes no more copies of theta than fit in this much memory (each worker
# holds one): on a many-core machine a model of 10^7 float64 parameters would otherwise
# take 80 MB a core.
WORKERS_BYTES = 1 << 30
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
