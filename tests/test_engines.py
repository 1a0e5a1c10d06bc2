"""The same cases through every engine: same gradapprox, same verdicts."""

import threading

import numba
import numpy as np
import pytest

import gradcheck

from . import models
from .reference import flat, reference_gradapprox


@pytest.fixture(scope="module")
def mlp():
    X, y, params = models.mlp_data()
    return X, y, params, models.mlp_grad(params, X, y)


def test_python_engine_matches_reference_on_nested_structures(mlp):
    X, y, params, grads = mlp
    nested = {"layer1": {"W": params["W1"], "b": params["b1"]}, "out": [params["W2"], params["b2"]]}

    def f(q):
        p = {"W1": q["layer1"]["W"], "b1": q["layer1"]["b"], "W2": q["out"][0], "b2": q["out"][1]}
        return models.mlp_loss(p, X, y)

    g = {"layer1": {"W": grads["dW1"], "b": grads["db1"]}, "out": [grads["dW2"], grads["db2"]]}
    report = gradcheck.check(f, nested, g, engine="python")
    assert report.engine == "python"
    assert report.verdict == "pass"
    assert list(report.blocks) == ["layer1.W", "layer1.b", "out[0]", "out[1]"]
    np.testing.assert_allclose(
        flat(report.gradapprox, nested), reference_gradapprox(f, nested), rtol=1e-12
    )


def _engines_on_flat_mlp(X, y, params, grads):
    theta = models.flatten(params)
    grad = models.flatten({k: grads["d" + k] for k in models.SHAPES})
    loss = models.mlp_flat_factory(X, y)
    python = gradcheck.check(loss, theta, grad, engine="python", seed=3)
    fast = gradcheck.check(loss, theta, grad, engine="numba", seed=3)

    def rowwise(T):
        return np.array([loss(np.ascontiguousarray(row)) for row in T])

    batched = gradcheck.check(rowwise, theta, grad, batched=True, seed=3)
    return python, fast, batched


def test_every_engine_gives_the_same_gradapprox(mlp):
    python, fast, batched = _engines_on_flat_mlp(*mlp)
    assert (python.engine, fast.engine, batched.engine) == ("python", "numba", "batched")
    np.testing.assert_array_equal(fast.gradapprox, python.gradapprox)
    np.testing.assert_array_equal(batched.gradapprox, python.gradapprox)
    assert python.difference == fast.difference == batched.difference
    assert python.verdict == fast.verdict == batched.verdict == "pass"
    assert python.nfev == fast.nfev == batched.nfev


def test_every_engine_fails_the_same_bug(mlp):
    X, y, params, grads = mlp
    wrong = dict(grads, db1=-grads["db1"])
    reports = _engines_on_flat_mlp(X, y, params, wrong)
    for r in reports:
        assert r.verdict == "fail"
        assert r.failing == ("params",)
        assert r.worst[0].name.startswith("params[")


def test_numba_engine_is_independent_of_thread_count():
    theta = np.linspace(-2, 2, 301)
    results = []
    before = numba.get_num_threads()
    try:
        for threads in (1, before):
            numba.set_num_threads(threads)
            r = gradcheck.check(models.cubic_flat, theta, models.cubic_grad(theta), engine="numba")
            results.append(r.gradapprox)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(results[0], results[1])
    expected = reference_gradapprox(models.cubic_flat, theta)
    np.testing.assert_allclose(results[0], expected, rtol=1e-12, atol=0)


def test_numba_engine_from_a_worker_thread_runs_serially():
    theta = np.linspace(-1, 1, 50)
    out = {}

    def work():
        out["r"] = gradcheck.check(
            models.cubic_flat, theta, models.cubic_grad(theta), engine="numba"
        )

    t = threading.Thread(target=work)
    t.start()
    t.join()
    main = gradcheck.check(models.cubic_flat, theta, models.cubic_grad(theta), engine="numba")
    np.testing.assert_array_equal(out["r"].gradapprox, main.gradapprox)


def test_batched_engine_with_a_structure_and_small_memory_budget(mlp, monkeypatch):
    X, y, params, grads = mlp
    from gradcheck import _engine

    # A budget of three rows forces many chunks, the last one partial.
    n = sum(p.size for p in params.values())
    monkeypatch.setattr(_engine, "BATCH_BYTES", 3 * 8 * n)
    calls = []

    def f(P):
        calls.append(P["W1"].shape[0])
        return models.mlp_batched(P, X, y)

    report = gradcheck.check(f, params, grads, batched=True, noise=False)
    serial = gradcheck.check(lambda p: models.mlp_loss(p, X, y), params, grads)
    assert report.engine == "batched"
    assert max(calls) == 3
    assert sum(calls) == 1 + 2 * n
    for k in params:
        np.testing.assert_allclose(report.gradapprox[k], serial.gradapprox[k], rtol=1e-7)
    assert report.verdict == serial.verdict == "pass"


def test_auto_engine_keeps_small_checks_off_the_compiler(monkeypatch):
    from gradcheck import _evaluator, _jit

    monkeypatch.setattr(_jit, "is_compiled", lambda *a, **k: False)
    theta = np.linspace(-1, 1, 10)
    r = gradcheck.check(models.cubic_flat, theta, models.cubic_grad(theta))
    assert r.engine == "python"
    # A check estimated to take longer than a compile goes to numba.
    monkeypatch.setattr(_evaluator, "AUTO_NUMBA_SECONDS", 0.0)
    r = gradcheck.check(models.cubic_flat, theta, models.cubic_grad(theta))
    assert r.engine == "numba"


@models.needs_jit
def test_auto_engine_for_plain_python_functions_is_python():
    A, b, x = models.quad_data()
    r = gradcheck.check(lambda x: models.quad_loss(x, A, b), x, models.quad_grad(x, A, b))
    assert r.engine == "python"
    assert r.verdict == "pass"


def test_float32_parameters_pass_with_default_settings():
    A, b, x = models.quad_data(n=20)
    A32, b32, x32 = A.astype(np.float32), b.astype(np.float32), x.astype(np.float32)

    def f(x):
        return np.float32(0.5) * x @ A32 @ x + b32 @ x

    grad = A.astype(np.float64) @ x32.astype(np.float64) + b32
    r = gradcheck.check(f, x32, grad, evaluate="native")
    assert r.tol == (1e-3, 1e-2)
    assert r.verdict == "pass"
    np.testing.assert_allclose(r.gradapprox, reference_gradapprox(f, x32), rtol=1e-12)
    # The float64 thresholds and steps would have failed it.
    assert (
        gradcheck.check(f, x32, grad, eps=1e-6, tol=(1e-7, 1e-5), evaluate="native").verdict
        == "fail"
    )
    # By default f, which follows its input's dtype, is evaluated on float64 copies: the
    # differences are float64's, the thresholds a float32 gradient's against them.
    wide = gradcheck.check(f, x32, grad)
    assert wide.tol == (1e-4, 1e-3)
    assert wide.verdict == "pass"
    np.testing.assert_allclose(
        wide.gradapprox, reference_gradapprox(f, x32.astype(np.float64)), rtol=1e-12
    )
