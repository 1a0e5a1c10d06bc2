"""The benchmark workloads are correct: each hand-written gradient passes gradcheck, the three
forms of each loss agree, and the course loop reproduces the course's numbers.
"""

import numpy as np
import pytest
from benchmarks import contenders, workloads

import gradcheck

from . import course_case

ALL = (*workloads.NAMES, workloads.LARGE)


@pytest.fixture(scope="module", params=ALL)
def workload(request):
    return workloads.make(request.param, "smoke")


def test_hand_written_gradient_passes(workload):
    w = workload
    report = gradcheck.check(w.loss, w.params, w.grad(w.params), engine="python", seed=0)
    assert report.verdict == "pass", str(report)
    assert report.checked == w.n


def test_batched_form_passes_and_matches_the_loss(workload):
    w = workload
    rng = np.random.default_rng(1)
    stack = {k: v[None] + 0.01 * rng.standard_normal((3, *v.shape)) for k, v in w.params.items()}
    rows = [w.loss({k: v[r] for k, v in stack.items()}) for r in range(3)]
    np.testing.assert_allclose(w.batched(stack), rows, rtol=1e-12)
    report = gradcheck.check(w.batched, w.params, w.grad(w.params), batched=True, seed=0)
    assert report.verdict == "pass", str(report)


def test_jitted_flat_form_passes_and_matches_the_loss(workload):
    w = workload
    theta = w.theta()
    np.testing.assert_allclose(w.flat(theta), w.loss(w.params), rtol=1e-12)
    np.testing.assert_allclose(w.flat_numpy(theta), w.loss(w.params), rtol=0)
    report = gradcheck.check(w.flat, theta, w.flat_grad(), engine="numba", seed=0)
    assert report.verdict == "pass", str(report)


def test_flat_views_share_memory_with_theta(workload):
    theta = workload.theta()
    for view in workload.unflatten(theta).values():
        assert np.shares_memory(view, theta)


def test_a_wrong_gradient_fails(workload):
    w = workload
    grads = {k: np.array(v, copy=True) for k, v in w.grad(w.params).items()}
    key = next(k for k in grads if k.lstrip("d") == w.keys[-1])
    grads[key].reshape(-1)[0] += 1.0
    assert not gradcheck.check(w.loss, w.params, grads, engine="python", seed=0).passed


def test_course_loop_reproduces_the_course_numbers():
    w = workloads.make("course net")
    theta = w.theta()
    # On the course's own values (its losses and gradients, tests/course_case.py) the loop's
    # quotients are exact; its np.linalg.norm sums by BLAS in the order of the CPU's kernel,
    # which decides the last digit or two: a few ulps.
    loss = course_case.recorded_loss()
    for planted, expected in ((False, course_case.COURSE_FIXED), (True, course_case.COURSE_BUGGY)):
        grads = course_case.gradient(planted)
        g = np.concatenate([grads["d" + k].reshape(-1) for k in w.keys])
        got = contenders.course_loop(loss, w.unflatten, theta, g)
        assert abs(got - expected) <= 4 * np.spacing(expected), (planted, got)
    # The workload is the demo's network: where this machine's BLAS computes the course's
    # values, bit for bit, its gradient is the course's too.
    if course_case.rounds_like_the_course():
        assert w.flat_grad().tolist() == list(course_case.GRAD_FIXED)


def test_counted_stops_at_its_budget():
    f = contenders.Counted(lambda x: float(x @ x), limit=3)
    for _ in range(3):
        f(np.ones(2))
    with pytest.raises(contenders.BudgetExhausted):
        f(np.ones(2))
    assert f.calls == 3


def test_full_evaluation_counts_of_the_scipy_peers():
    # The documented counts (forward: n + 1, central: 2n + 1), found by counting.
    assert contenders.full_evaluations("scipy approx_fprime") == (1, 1)
    assert contenders.full_evaluations("scipy approx_derivative 3-point") == (2, 1)


def test_full_sizes_are_those_of_the_issue():
    sizes = {name: workloads.SIZES["full"][name]().n for name in ALL}
    assert sizes["course net"] == 47
    assert sizes["mlp-small"] == 6_570
    assert sizes["mlp-medium"] == 109_386
    assert sizes["logistic"] == 20_000
    assert abs(sizes["large"] - 1_000_000) < 1_000
