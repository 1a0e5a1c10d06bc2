"""Core figures: the Python engine's overhead per coordinate and the numba engine's threads.

Run for real with ``pytest benchmarks --benchmark-enable``; in the normal test
run each body runs once (``--benchmark-disable``), so the benchmarks never rot.
"""

import numba
import numpy as np
import pytest

import gradcheck

N_FREE = 100_000
COURSE_SUBSET = 1_000  # the course loop is timed on this many coordinates of the same vector


@pytest.fixture(scope="module")
def free():
    x = np.random.default_rng(0).standard_normal(N_FREE)
    g = np.zeros(N_FREE)
    g[:2] = 1.0
    return x, g


def nearly_free(x):
    return x[0] + x[1]


def test_python_engine_nearly_free_f(benchmark, free):
    x, g = free
    benchmark.group = "overhead per coordinate, n=100,000"
    benchmark.extra_info["coordinates"] = N_FREE
    report = benchmark(gradcheck.check, nearly_free, x, g, engine="python")
    assert report.verdict == "pass"


def test_python_engine_nearly_free_f_serial(benchmark, free):
    """The same check on one thread: what each coordinate costs beyond f (the figure with
    workers divides it by the threads, and hid a serial regression)."""
    x, g = free
    benchmark.group = "overhead per coordinate, n=100,000"
    benchmark.extra_info["coordinates"] = N_FREE
    report = benchmark(gradcheck.check, nearly_free, x, g, engine="python", workers=1)
    assert report.verdict == "pass"
    assert report.workers == 1


def test_calls_of_f_alone(benchmark, free):
    """What 2n calls of the same f cost without any checker around them."""
    x, _ = free
    benchmark.group = "overhead per coordinate, n=100,000"
    benchmark.extra_info["coordinates"] = N_FREE

    def calls():
        for _ in range(2 * N_FREE):
            nearly_free(x)

    benchmark(calls)


def test_course_loop_copies_theta(benchmark, free):
    x, _ = free
    benchmark.group = "overhead per coordinate, n=100,000"
    benchmark.extra_info["coordinates"] = COURSE_SUBSET

    def course():
        approx = np.empty(COURSE_SUBSET)
        for i in range(COURSE_SUBSET):
            plus, minus = x.copy(), x.copy()
            plus[i] += 1e-7
            minus[i] -= 1e-7
            approx[i] = (nearly_free(plus) - nearly_free(minus)) / 2e-7
        return approx

    benchmark(course)


NI, NH, NS = 20, 32, 64


@pytest.fixture(scope="module")
def jitted_mlp():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((NI, NS))
    y = rng.standard_normal(NS)
    n1 = NH * NI

    @numba.njit
    def loss(theta):
        W1 = theta[:n1].reshape((NH, NI))
        b1 = theta[n1 : n1 + NH]
        W2 = theta[n1 + NH : n1 + 2 * NH]
        total = 0.0
        for s in range(NS):
            out = theta[n1 + 2 * NH]
            for j in range(NH):
                z = b1[j]
                for i in range(NI):
                    z += W1[j, i] * X[i, s]
                out += W2[j] * np.tanh(z)
            total += 0.5 * (out - y[s]) ** 2
        return total

    theta = rng.standard_normal(n1 + 2 * NH + 1) * 0.3
    grad = np.zeros_like(theta)
    gradcheck.check(loss, theta, grad, engine="numba")  # compile outside the timed region
    return loss, theta, grad


@pytest.mark.parametrize("threads", [1, 2])
def test_numba_engine_threads(benchmark, jitted_mlp, threads):
    loss, theta, grad = jitted_mlp
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("fewer cores")
    benchmark.group = f"numba engine, jitted MLP, n={theta.size}"
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        report = benchmark(gradcheck.check, loss, theta, grad, engine="numba")
    finally:
        numba.set_num_threads(before)
    assert report.engine == "numba"


# --- the fixed cost of a small check: the course net, numba engine ------------------------------
# One group, one run: the whole check, its evaluations of f alone (the kernel on the same plan
# plus the first call and the noise probe's calls, one at a time), and the course loop. The
# fixed cost is the first minus the second; the target is at most 250 us, so that the numba
# engine is at least 7x the course loop.
FIXED = "small-check fixed cost, course net (n=47)"


@pytest.fixture(scope="module")
def course_flat():
    from .workloads import course_net

    w = course_net()
    theta, g = w.theta(), w.flat_grad()
    gradcheck.check(w.flat, theta, g, engine="numba", seed=0)  # compile outside the timing
    return w, theta, g


def test_small_check_whole(benchmark, course_flat):
    w, theta, g = course_flat
    benchmark.group = FIXED
    report = benchmark.pedantic(
        gradcheck.check, (w.flat, theta, g), {"engine": "numba", "seed": 0}, rounds=300
    )
    assert report.engine == "numba"
    benchmark.extra_info["nfev"] = report.nfev


def test_small_check_evaluations_alone(benchmark, course_flat):
    from gradcheck import _jit, _plan

    w, theta, g = course_flat
    benchmark.group = FIXED
    report = gradcheck.check(w.flat, theta, g, engine="numba", seed=0)
    plan = _plan.make(
        theta,
        np.arange(theta.size),
        method="central",
        eps=None,
        loss_dtype=np.dtype(np.float64),
        seed=0,
    )
    kernel = _jit.compiled("evaluate_flat", parallel=True)
    f = _jit.first_class(w.flat)
    out = np.empty(plan.values.shape)
    singles = report.nfev - plan.values.size  # the first call and the noise probe's

    def evaluations():
        kernel(f, theta, plan.idx, plan.values, out, 4 * numba.get_num_threads())
        for _ in range(singles):
            w.flat(theta)

    benchmark.pedantic(evaluations, rounds=300)


def test_small_check_course_loop(benchmark, course_flat):
    from gradcheck import _demo

    w, theta, g = course_flat
    benchmark.group = FIXED
    difference = benchmark.pedantic(
        _demo.course_loop, (w.loss, theta, g), {"unflatten": w.unflatten}, rounds=100
    )
    assert difference < 1e-5
