"""Habits users bring from other tools: scipy's argument order and flat lists, cs231n's
backward functions that return tuples, torch's and jax's keyword arguments."""

import re

import numpy as np
import pytest

import gradcheck

# ---------------------------------------------------------------- scipy (item 6)


def test_a_flat_list_of_numbers_is_one_vector_as_in_scipy():
    seen = []

    def f(x):
        seen.append(type(x))
        return x @ x  # a list of 0-d arrays would not multiply

    report = gradcheck.check(f, [1.0, -2.0, 3.0, 0.5, 4], lambda x: 2 * x, seed=0)
    assert report.verdict == "pass"
    assert list(report.blocks) == ["params"]
    assert report.blocks["params"].shape == (5,)
    assert set(seen) == {np.ndarray}
    assert report.gradapprox.shape == (5,)


def test_a_list_of_arrays_stays_a_list_of_blocks():
    params = [np.ones(2), np.full(3, 2.0)]
    report = gradcheck.check(
        lambda p: p[0] @ p[0] + p[1] @ p[1], params, [2 * np.ones(2), np.full(3, 4.0)], seed=0
    )
    assert list(report.blocks) == ["[0]", "[1]"]


def test_scipys_argument_order_gets_a_message_saying_the_order():
    def f(x):
        return x @ x

    def grad(x):
        return 2 * x

    with pytest.raises(TypeError) as info:
        gradcheck.check(f, grad, np.ones(3))
    text = str(info.value)
    assert "check(f, params, grad)" in text
    assert "check_grad(func, grad, x0)" in text
    assert "<function" not in text


# ---------------------------------------------------------------- cs231n tuples (item 7)


def _batchnorm():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3))
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)

    def forward(x, gamma, beta):
        mu = x.mean(0)
        var = x.var(0)
        xhat = (x - mu) / np.sqrt(var + 1e-5)
        return gamma * xhat + beta

    def backward(dout, x, gamma):  # cs231n's batchnorm_backward: (dx, dgamma, dbeta)
        n = x.shape[0]
        mu, var = x.mean(0), x.var(0)
        inv = 1 / np.sqrt(var + 1e-5)
        xhat = (x - mu) * inv
        dxhat = dout * gamma
        dx = inv / n * (n * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0))
        return dx, (dout * xhat).sum(0), dout.sum(0)

    return x, gamma, beta, forward, backward


def test_check_vjp_takes_a_tuple_by_position_for_dict_inputs():
    x, gamma, beta, forward, backward = _batchnorm()
    inputs = {"x": x, "gamma": gamma, "beta": beta}
    report = gradcheck.check_vjp(
        lambda p: forward(p["x"], p["gamma"], p["beta"]),
        inputs,
        lambda p, dout: backward(dout, p["x"], p["gamma"]),
        seed=0,
    )
    assert report.verdict == "pass", report
    assert list(report.blocks) == ["x", "gamma", "beta"]


def test_check_vjp_takes_a_tuple_by_position_for_tuple_inputs():
    x, gamma, beta, forward, backward = _batchnorm()

    def wrong(p, dout):
        dx, dgamma, dbeta = backward(dout, p[0], p[1])
        return [dx, dgamma, 2 * dbeta]  # a list, and a planted bug in dbeta

    report = gradcheck.check_vjp(lambda p: forward(*p), (x, gamma, beta), wrong, seed=0)
    assert report.failing == ("[2]",)


def test_a_vjp_that_does_not_mirror_the_inputs_is_named_and_not_dumped():
    x, gamma, beta, forward, backward = _batchnorm()
    inputs = {"x": x, "gamma": gamma, "beta": beta}
    with pytest.raises((TypeError, ValueError)) as info:
        gradcheck.check_vjp(
            lambda p: forward(p["x"], p["gamma"], p["beta"]),
            inputs,
            lambda p, dout: backward(dout, p["x"], p["gamma"])[:2],  # one short
            seed=0,
        )
    text = str(info.value)
    assert text.startswith("`vjp(inputs, cotangent)`"), text
    assert "`grad`" not in text
    assert "array(" not in text
    assert "3 inputs" in text or "'beta'" in text, text


# ---------------------------------------------------------------- torch and jax habits (item 8)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("atol", 1e-5, "tol="),
        ("rtol", 1e-3, "tol="),
        ("fast_mode", True, "directions="),
        ("raise_exception", True, "assert_gradient"),
        ("nondet_tol", 0.0, "inconclusive"),
        ("epsilon", 1e-6, "eps="),
    ],
)
def test_torch_and_scipy_keywords_say_what_gradcheck_uses(name, value, says):
    with pytest.raises(TypeError) as info:
        gradcheck.check(lambda x: x @ x, np.ones(3), 2 * np.ones(3), **{name: value})
    text = str(info.value)
    assert f"`{name}`" in text
    assert says in text, text


def test_assert_gradient_and_check_vjp_say_it_too():
    with pytest.raises(TypeError, match=r"`atol`.*tol="):
        gradcheck.assert_gradient(lambda x: x @ x, np.ones(3), 2 * np.ones(3), atol=1e-5)
    with pytest.raises(TypeError, match=r"`rtol`.*tol="):
        gradcheck.check_vjp(np.tanh, np.ones(3), lambda x, c: c, rtol=1e-3)


def test_a_vector_valued_f_points_to_check_vjp():
    with pytest.raises(TypeError) as info:
        gradcheck.check(np.tanh, np.ones(3), np.ones(3))
    text = str(info.value)
    assert "check_vjp" in text
    assert "shape (3,)" in text


def test_jax_argnums_checks_only_those_arguments():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    import gradcheck.jax

    def loss(w, X, y):
        return jnp.sum((X @ w - y) ** 2)

    w = jnp.arange(3.0)
    X = jnp.reshape(jnp.arange(24.0), (8, 3)) / 10
    y = jnp.ones(8)
    with jax.enable_x64(True):
        w, X, y = (jnp.asarray(a, dtype=jnp.float64) for a in (w, X, y))
        report = gradcheck.jax.check(loss, (w, X, y), argnums=0, seed=0)
        assert list(report.blocks) == ["w"]
        assert report.n == 3
        both = gradcheck.jax.check(loss, (w, X, y), argnums=(0, 2), seed=0)
        assert list(both.blocks) == ["w", "y"]
        with pytest.raises(ValueError, match=re.escape("`argnums`")):
            gradcheck.jax.check(loss, (w, X, y), argnums=3)


# ---------------------------------------------------------------- sample mode's cost (item 5)


def _small_model():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((10, 6))
    params = {
        "W1": rng.standard_normal((6, 12)),
        "b1": rng.standard_normal(12),
        "W2": rng.standard_normal((12, 2)),
        "b2": rng.standard_normal(2),
    }

    def loss(p):
        h = np.tanh(X @ p["W1"] + p["b1"])
        return float(np.sum((h @ p["W2"] + p["b2"]) ** 2))

    h = np.tanh(X @ params["W1"] + params["b1"])
    out = h @ params["W2"] + params["b2"]
    dz = (2 * out @ params["W2"].T) * (1 - h**2)
    grads = {"W1": X.T @ dz, "b1": dz.sum(0), "W2": h.T @ (2 * out), "b2": (2 * out).sum(0)}
    return loss, params, grads


def test_sample_mode_on_a_model_smaller_than_the_sample_costs_no_more_than_full():
    loss, params, grads = _small_model()
    n = sum(v.size for v in params.values())
    assert n == 110
    from gradcheck.pytest_plugin import GradcheckOptions

    full = GradcheckOptions("full").check(loss, params, grads, seed=0)
    sampled = GradcheckOptions("sample").check(loss, params, grads, seed=0)
    assert sampled.checked == n
    assert sampled.verdict == full.verdict == "pass"
    assert sampled.nfev <= full.nfev


def test_large_blocks_get_a_share_in_proportion_to_their_size():
    from gradcheck import _sample

    take = _sample.sample_sizes(np.array([1_000_000, 1_000]), 500)
    assert take.sum() == 500
    # Beyond the floor of 4 every block gets, the rest goes by size: 1000:1.
    assert take[1] <= 5
    take = _sample.sample_sizes(np.array([10, 200_000, 31, 5_000_000]), 2000)
    assert take[0] == 10  # a bias is checked whole while that takes at most half the rest
    assert take[2] == 31
    assert 20 < take[3] / take[1] < 30  # sizes 25:1
