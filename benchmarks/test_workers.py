"""The default (``workers=None``) against the serial engine (``workers=1``) on the patterns
users write, side by side in one group each.

The default must never be more than ~10% slower than serial (it measures the workers on a
slice of the plan before trusting them, and an f that shares state is caught and checked
serially), and should be 1.5x faster or more on 2 cores where f releases the GIL. Run for
real with ``python -m pytest benchmarks/test_workers.py --benchmark-enable``; the ratio of
each pair is the figure (``benchmarks/report.py`` prints it). BLAS runs on one thread
(conftest), so the serial engine is the plain single-core path.

The patterns:
- ``numpy-mlp``: a pure numpy function, a 784-128-64-10 MLP on a batch of 64;
- ``course-model``: the course's model object, ``model.params = p; model.loss(X, y)[0]``,
  whose forward pass caches on ``self`` (threads race on it: the default must find out);
- ``python-conv``: a naive convolution in Python loops (holds the GIL);
- ``big-matmul``: one large product and a tanh (numpy releases the GIL in both);
- ``numba-jitted``: a jitted flat f (the numba engine, where workers do not apply).
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from tests.course import course_problem

import gradcheck

from . import workloads

# Coordinates checked: a few seconds serially on a 2-core machine when timed, a handful in
# the normal test run (each body runs once there).
SAMPLE = {
    "numpy-mlp": 1_500,
    "course-model": 1_500,
    "python-conv": 1_500,
    "big-matmul": 400,
    "numba-jitted": 4_096,
}
ROUNDS = {"enabled": 3, "disabled": 1}


def _numpy_mlp():
    w = workloads.mlp((784, 128, 64, 10), 64, name="mnist-mlp")
    return w.loss, w.params, w.grad(w.params)


def _course_model():
    return course_problem((100, 80, 60, 10), n=40)


def _python_conv():
    rng = np.random.default_rng(0)
    image = rng.standard_normal((12, 12))
    params = {"k": rng.standard_normal((3, 3)), "w": rng.standard_normal((10, 10))}

    def conv(k):  # valid 3x3 convolution, the course's naive loops
        out = np.zeros((10, 10))
        for i in range(10):
            for j in range(10):
                out[i, j] = (image[i : i + 3, j : j + 3] * k).sum()
        return out

    def loss(p):
        return 0.5 * float(((conv(p["k"]) * p["w"]) ** 2).sum())

    def grad(p):
        c = conv(p["k"])
        r = c * p["w"] ** 2  # d loss / d conv
        dk = np.zeros((3, 3))
        for i in range(10):
            for j in range(10):
                dk += r[i, j] * image[i : i + 3, j : j + 3]
        return {"k": dk, "w": c**2 * p["w"]}

    return loss, params, grad(params)


def _big_matmul():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((512, 384)) / 16
    params = {"W": rng.standard_normal((384, 256)) / 16}

    def loss(p):
        return float(np.tanh(X @ p["W"]).sum())

    def grad(p):
        return {"W": X.T @ (1 - np.tanh(X @ p["W"]) ** 2)}

    return loss, params, grad(params)


def _numba_jitted():
    rng = np.random.default_rng(2)
    A = rng.standard_normal((64, 64)) / 8
    x = rng.standard_normal(4_096)

    @numba.njit
    def loss(v):
        total = 0.0
        for i in range(64):
            s = 0.0
            for j in range(64):
                s += A[i, j] * v[i * 64 + j]
            total += np.sin(s)
        return total

    def grad(v):
        s = (A * v.reshape(64, 64)).sum(axis=1)
        return (np.cos(s)[:, None] * A).ravel()

    return loss, x, grad(x)


PATTERNS = {
    "numpy-mlp": _numpy_mlp,
    "course-model": _course_model,
    "python-conv": _python_conv,
    "big-matmul": _big_matmul,
    "numba-jitted": _numba_jitted,
}


@pytest.fixture(scope="module")
def problems():
    return {name: make() for name, make in PATTERNS.items()}


# The pattern outermost: each pair runs back to back, under the same load.
@pytest.mark.parametrize("workers", [None, 1], ids=["default", "serial"])
@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_default_against_serial(benchmark, problems, mode, pattern, workers):
    loss, params, grad = problems[pattern]
    benchmark.group = f"workers default vs serial: {pattern}"
    sample = SAMPLE[pattern] if mode == "enabled" else 8
    options = {"sample": sample, "seed": 0, "workers": workers}
    report = benchmark.pedantic(
        gradcheck.check,
        (loss, params, grad),
        options,
        rounds=ROUNDS[mode],
        iterations=1,
        warmup_rounds=1 if mode == "enabled" else 0,
    )
    assert report.passed, str(report)
    benchmark.extra_info["workers"] = report.workers
    benchmark.extra_info["coordinates"] = report.checked
    benchmark.extra_info["notes"] = [n for n in report.notes if "workers" in n or "serially" in n]
