"""gradcheck's engines against the course loop and the peers, on the same workloads.

Timed for real with (see benchmarks/report.py for the table):

    python -m pytest benchmarks --benchmark-enable --benchmark-json=.benchmarks/run.json

In the normal test run (``--benchmark-disable``) every body runs once on small stand-ins of
the workloads, so this file stays quick and never rots.

One ``benchmark.group`` per workload; ``extra_info`` says what the timed call covered
(``kind``: full, subset [scaled by ``scale``], sampled, directional), how many coordinates
and evaluations of f, and why.
"""

import numba
import pytest

import gradcheck

from . import contenders
from .conftest import rounds_for
from .workloads import LARGE, NAMES, logistic

ALL_THREADS = numba.config.NUMBA_NUM_THREADS
SAMPLE = 1000  # coordinates checked one by one on the large workload
DIRECTIONS = 4  # random directions per block on the large workload


@pytest.fixture(scope="session")
def warm(mode):
    """Compile every kernel the timed checks use, outside the timed region (timed runs only).

    A loss of more coordinates than gradcheck's pure-Python norm threshold makes the norm
    kernel compile too; sampled and directional checks go through their own code paths.
    """
    if mode == "disabled":
        return
    w = logistic(40_000, 2, name="warm-up")
    grads, theta, g = w.grad(w.params), w.theta(), w.flat_grad()
    w.flat(theta)
    gradcheck.check(w.flat, theta, g, engine="numba")
    gradcheck.check(w.batched, w.params, grads, batched=True)
    gradcheck.check(w.loss, w.params, grads, engine="python", sample=100, directions=2)
    gradcheck.check(w.flat, theta, g, engine="numba", sample=100)
    gradcheck.check(w.batched, w.params, grads, batched=True, sample=100)


def timed(benchmark, workload, run):
    """Time ``run`` and label it; returns what the call returned (from its last round)."""
    benchmark.group = f"{workload.name} (n={workload.n:,})"
    benchmark.extra_info.update(run.extra_info(workload))
    return benchmark.pedantic(run.call, **rounds_for(run.estimate))


def _threads(threads):
    return ALL_THREADS if threads == "all" else threads


# --- gradcheck's engines, whole checks --------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_python(benchmark, get_workload, warm, name):
    w = get_workload(name)
    report = timed(benchmark, w, contenders.gradcheck_run(w, "python"))
    benchmark.extra_info["evaluations"] = report.nfev
    assert report.verdict == "pass", str(report)


@pytest.mark.parametrize("threads", [1, "all"])
@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_numba(benchmark, get_workload, warm, name, threads):
    w = get_workload(name)
    n_threads = _threads(threads)
    run = contenders.gradcheck_run(w, "numba", threads=n_threads)
    run.contender = f"gradcheck numba ({n_threads} thread{'s' * (n_threads > 1)})"
    before = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        report = timed(benchmark, w, run)
    finally:
        numba.set_num_threads(before)
    benchmark.extra_info["evaluations"] = report.nfev
    assert report.engine == "numba"
    assert report.verdict == "pass", str(report)


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_batched(benchmark, get_workload, warm, name):
    w = get_workload(name)
    report = timed(benchmark, w, contenders.gradcheck_run(w, "batched"))
    benchmark.extra_info["evaluations"] = report.nfev
    assert report.verdict == "pass", str(report)


# --- the course loop and the peers ------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_course_loop(benchmark, get_workload, subset_seconds, name):
    w = get_workload(name)
    difference = timed(benchmark, w, contenders.course_run(w, subset_seconds))
    assert difference < 1e-6  # the course's step on a correct gradient


@pytest.mark.parametrize("peer", list(contenders.PEERS))
@pytest.mark.parametrize("name", NAMES)
def test_peer(benchmark, get_workload, subset_seconds, name, peer):
    if peer in contenders.OPTIONAL:
        pytest.importorskip(contenders.OPTIONAL[peer])
    contenders.setup_optional(peer)
    w = get_workload(name)
    # peer_run's pilot call has warmed the peer up (JAX traces, torch loads its kernels).
    timed(benchmark, w, contenders.peer_run(peer, w, subset_seconds))


# --- the large workload: sampled and directional checks ---------------------------------------


@pytest.mark.parametrize(
    ("engine", "options"),
    [
        ("python", {"sample": SAMPLE}),
        ("numba", {"sample": SAMPLE}),
        ("batched", {"sample": SAMPLE}),
        ("python", {"directions": DIRECTIONS}),
    ],
    ids=["python-sample", "numba-sample", "batched-sample", "python-directions"],
)
def test_gradcheck_large(benchmark, get_workload, warm, engine, options):
    w = get_workload(LARGE)
    # Smoke sizes have fewer coordinates than SAMPLE: sample a third of them.
    options = {k: min(v, w.n // 3) if k == "sample" else v for k, v in options.items()}
    run = contenders.gradcheck_run(w, engine, threads=ALL_THREADS, **options)
    if engine == "numba":
        run.contender = f"gradcheck numba ({ALL_THREADS} threads)"
    report = timed(benchmark, w, run)
    benchmark.extra_info["evaluations"] = report.nfev
    benchmark.extra_info["coordinates"] = report.checked
    assert report.verdict == "pass", str(report)


@pytest.mark.parametrize(
    "peer", ["scipy approx_derivative 3-point", "torch gradcheck (fast)", "jax check_grads (rev)"]
)
def test_peer_large(benchmark, get_workload, subset_seconds, peer):
    if peer in contenders.OPTIONAL:
        pytest.importorskip(contenders.OPTIONAL[peer])
    contenders.setup_optional(peer)
    w = get_workload(LARGE)
    timed(benchmark, w, contenders.peer_run(peer, w, subset_seconds))


def test_course_loop_large(benchmark, get_workload, subset_seconds):
    w = get_workload(LARGE)
    assert timed(benchmark, w, contenders.course_run(w, subset_seconds)) < 1e-6
