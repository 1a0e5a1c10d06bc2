"""Known answers: the classic 3-layer network, buggy and fixed, and exact polynomials."""

import numpy as np
import pytest

import gradcheck
from gradcheck import _demo

from . import course_case as course
from .reference import flat, reference_gradapprox, reference_relative_difference


@pytest.fixture
def network():
    X, Y, params = _demo.example()
    _, cache = _demo.forward(X, Y, params)
    return X, Y, params, cache


def _course_loop(X, Y, params, grads, eps):
    """The exercise's own loop: copy theta per coordinate, np.linalg.norm at the end.

    Returns the difference and the flat gradapprox.
    """
    keys = ["W1", "b1", "W2", "b2", "W3", "b3"]
    theta = np.concatenate([params[k].reshape(-1) for k in keys])

    def unflatten(t):
        out, o = {}, 0
        for k in keys:
            out[k] = t[o : o + params[k].size].reshape(params[k].shape)
            o += params[k].size
        return out

    grad = np.concatenate([grads["d" + k].reshape(-1) for k in keys])
    approx = np.empty_like(theta)
    for i in range(theta.size):
        plus, minus = theta.copy(), theta.copy()
        plus[i] += eps
        minus[i] -= eps
        approx[i] = (_demo.loss(X, Y, unflatten(plus)) - _demo.loss(X, Y, unflatten(minus))) / (
            2 * eps
        )
    difference = np.linalg.norm(grad - approx) / (np.linalg.norm(grad) + np.linalg.norm(approx))
    return difference, approx


COURSE = [(True, course.COURSE_BUGGY), (False, course.COURSE_FIXED)]


@pytest.mark.parametrize(("planted", "expected"), COURSE)
def test_course_numbers_to_the_last_digit_from_the_course_values(planted, expected):
    # Exact on any machine: given the losses and the gradient the course's machine computed
    # (tests/course_case.py), the quotients and the norms are gradcheck's own arithmetic.
    _, _, params, _ = course.example()
    grads = course.gradient(planted)
    report = gradcheck.check(course.recorded_loss(), params, grads, eps=course.EPS)
    assert report.difference == expected


@pytest.mark.parametrize(("planted", "expected"), COURSE)
def test_check_and_course_loop_agree_on_this_machine(network, planted, expected):
    X, Y, params, cache = network
    grads = _demo.backward(X, Y, cache, planted=planted)
    report = gradcheck.check(lambda p: _demo.loss(X, Y, p), params, grads, eps=1e-7)
    loop, approx = _course_loop(X, Y, params, grads, 1e-7)
    # Exact: the same losses at the same points (whatever this machine's BLAS makes of
    # them) and the same quotient, (f(x + eps) - f(x - eps)) / (2 eps).
    assert flat(report.gradapprox, params).tobytes() == approx.tobytes()
    # A few ulps: np.linalg.norm sums its squares by BLAS, in the order of the CPU's kernel,
    # gradcheck in its own (2 ulps apart with OpenBLAS's Haswell kernel, 0 with Sandybridge).
    assert abs(report.difference - loop) <= 4 * np.spacing(loop), (report.difference, loop)
    if course.rounds_like_the_course():
        # This machine's BLAS computes the course's values, bit for bit: the course's
        # numbers exactly (the test above, on this machine's own evaluations).
        assert report.difference == expected


def test_planted_mistakes_are_named(network):
    X, Y, params, cache = network
    grads = _demo.backward(X, Y, cache, planted=True)
    report = gradcheck.check(lambda p: _demo.loss(X, Y, p), params, grads)
    assert report.verdict == "fail"
    assert not report.passed
    assert set(report.failing) == {"W2", "b1"}
    # dW2 is doubled: relative difference (2g - g)/(2|g| + |g|) = 1/3; db1 quadrupled: 3/5.
    assert report.blocks["W2"].difference == pytest.approx(1 / 3, rel=1e-6)
    assert report.blocks["b1"].difference == pytest.approx(3 / 5, rel=1e-6)
    for name in ("W1", "b2", "W3", "b3"):
        assert report.blocks[name].verdict == "pass"
    assert report.worst[0].block in {"W2", "b1"}
    assert report.worst[0].name.startswith(("W2[", "b1["))


def test_fixed_network_passes_with_default_step(network):
    X, Y, params, cache = network
    grads = _demo.backward(X, Y, cache)
    report = gradcheck.check(lambda p: _demo.loss(X, Y, p), params, grads, noise=False)
    assert report.verdict == "pass"
    assert report.difference < 1e-7
    assert report.nfev == 1 + 2 * 47
    expected = reference_gradapprox(lambda p: _demo.loss(X, Y, p), params)
    got = flat(report.gradapprox, params)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    ref = reference_relative_difference(flat(grads, params), expected)
    assert report.difference == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("method", ["central", "forward"])
def test_polynomials_of_the_methods_order_are_exact(method):
    # Central differences are exact for quadratics, forward for linear functions, up to
    # rounding: with eps a power of two and small integers nothing rounds at all.
    x = np.array([1.0, -2.0, 3.0])
    c = np.array([2.0, -1.0, 0.5])
    if method == "central":
        report = gradcheck.check(lambda x: c @ x**2, x, 2 * c * x, eps=2.0**-4, method=method)
    else:
        report = gradcheck.check(lambda x: c @ x + 4.0, x, c, eps=2.0**-4, method=method)
    assert report.difference == 0.0
    assert report.verdict == "pass"
