"""The Taylor test: a right gradient's remainder falls like h^2 and a wrong one's like h, over
a range of steps the test finds itself; with an hvp, h^3 against h^2. When no range
converges (a loss at machine precision, a kink) it says so instead of guessing."""

import json

import matplotlib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import gradcheck
from gradcheck import _policy

RNG = np.random.default_rng(7)
N = 12
A = RNG.standard_normal((N, N)) / np.sqrt(N)
B = RNG.standard_normal((5, N)) / np.sqrt(N)
Y = RNG.standard_normal(5)
X0 = RNG.standard_normal(N)
S = A @ A.T + np.eye(N)  # symmetric positive definite


def sines(x):
    return np.sum(np.sin(x)) + 0.5 * np.sum(x * x)


def sines_grad(x):
    return np.cos(x) + x


def softplus_sum(x):
    # In the params' own dtype: float32 params make a float32 loss.
    return np.sum(np.logaddexp(0, A.astype(x.dtype) @ x))


def softplus_grad(x):
    return A.T @ (1 / (1 + np.exp(-(A @ x))))


def regression(p):
    r = np.tanh(B @ p["w"]) * p["s"] - Y
    return 0.5 * r @ r


def regression_grad(p):
    t = np.tanh(B @ p["w"])
    r = t * p["s"] - Y
    return {"w": B.T @ (r * p["s"] * (1 - t * t)), "s": np.array(r @ t)}


def solve_loss(x):
    """A linear-solve loss, as an adjoint user writes one: u = S^-1 x, J = sum(u^3) / 3."""
    u = np.linalg.solve(S, x)
    return np.sum(u**3) / 3


def solve_grad(x):
    u = np.linalg.solve(S, x)
    return np.linalg.solve(S.T, u**2)


SMOOTH = {
    "sines": (sines, lambda: X0.copy(), sines_grad),
    "softplus": (softplus_sum, lambda: X0.copy(), softplus_grad),
    "regression": (
        regression,
        lambda: {"w": X0.copy(), "s": np.array(1.3)},
        regression_grad,
    ),
    "linear solve": (solve_loss, lambda: X0.copy(), solve_grad),
}


def _cast(tree, dtype):
    if isinstance(tree, dict):
        return {k: _cast(v, dtype) for k, v in tree.items()}
    return np.asarray(tree, dtype=dtype)


def _wrong(g):
    """The gradient with a wrong factor on its first block (1.5 x): a wrong adjoint."""
    if isinstance(g, dict):
        first = next(iter(g))
        return {k: v * 1.5 if k == first else v for k, v in g.items()}
    out = np.array(g, dtype=np.float64)
    out[: max(1, out.size // 2)] *= 1.5
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(SMOOTH))
def test_a_right_gradient_gives_rate_two_and_a_wrong_one_rate_one(name, dtype):
    f, point, grad = SMOOTH[name]
    params = _cast(point(), dtype)
    g = grad(_cast(params, np.float64))
    right = gradcheck.taylor_test(f, params, g, seed=1)
    assert right.verdict == "pass", str(right)
    for d in right.directions:
        assert abs(d.rate - 2) < 0.1, str(right)
    wrong = gradcheck.taylor_test(f, params, _wrong(g), seed=1)
    assert wrong.verdict == "fail", str(wrong)
    assert abs(wrong.directions[0].rate - 1) < 0.1, str(wrong)


def test_a_float32_loss_near_zero_by_cancellation_gets_its_noise_not_u_times_f():
    # sum(sin x) over a symmetric grid is ~0: rounding of the terms (~u32), not u32 |f|,
    # limits the remainder. Judged by u |f|, the smallest steps (which move only the entry
    # at 0, absorbed by the sum) would read as a rate-1 remainder: a false failure.
    x = np.linspace(-1, 1, 5).astype(np.float32)
    result = gradcheck.taylor_test(lambda v: np.sum(np.sin(v)), x, np.cos(x), seed=0)
    assert result.verdict == "pass", str(result)
    assert abs(result.directions[0].rate - 2) < 0.1


def test_the_block_with_the_wrong_gradient_is_named():
    params = {"w": X0.copy(), "s": np.array(1.3)}
    g = regression_grad(params)
    g["s"] = g["s"] * 2 + 0.1
    result = gradcheck.taylor_test(regression, params, g, seed=3)
    assert result.failing == ("whole", "s")
    assert result.blocks["w"].verdict == "pass"
    assert abs(result.blocks["w"].rate - 2) < 0.1
    assert abs(result.blocks["s"].rate - 1) < 0.1
    assert "s " in str(result)
    assert "the gradient is wrong" in str(result)


def test_a_hessian_vector_product_gives_rate_three_and_a_wrong_cross_term_rate_two():
    # f = 1/2 x^T S x + sum(sin x): H = S - diag(sin x).
    def f(x):
        return 0.5 * x @ S @ x + np.sum(np.sin(x))

    def grad(x):
        return S @ x + np.cos(x)

    def hvp(x, v):
        return S @ v - np.sin(x) * v

    def hvp_wrong(x, v):
        out = hvp(x, v)
        out[0] += 0.3 * v[1]  # a wrong cross term
        return out

    right = gradcheck.taylor_test(f, X0, grad, hvp=hvp, seed=0)
    assert right.order == 3
    assert right.verdict == "pass", str(right)
    assert abs(right.directions[0].rate - 3) < 0.1
    wrong = gradcheck.taylor_test(f, X0, grad, hvp=hvp_wrong, seed=0)
    assert wrong.verdict == "fail", str(wrong)
    assert abs(wrong.directions[0].rate - 2) < 0.1
    assert "Hessian-vector product is wrong" in wrong.directions[0].reason


def test_a_loss_at_machine_precision_has_no_converging_range():
    # 1 + 1e-17 |x|^2 is 1.0 in float64 at every step: nothing to measure a rate on.
    result = gradcheck.taylor_test(lambda x: 1.0 + 1e-17 * (x @ x), X0, 2e-17 * X0, seed=0)
    assert result.verdict == "inconclusive"
    assert np.isnan(result.directions[0].rate)
    assert result.directions[0].range is None
    assert "no converging range" in result.directions[0].reason
    assert "machine precision" in str(result)
    assert result.nfev <= 1 + 3 * _policy.NOISE_POINTS + _policy.TAYLOR_STOP_AFTER


@pytest.mark.parametrize("offset", [0.0, 1e-6])
def test_a_kink_has_no_converging_range(offset):
    # |x| summed, one entry at its kink (the subgradient 0 there) or a hair from it (the
    # gradient right at x, but the steps cross the kink): the remainder falls like h, as a
    # wrong gradient's would, but so does its even part.
    x = X0.copy()
    x[3] = offset
    g = np.sign(x)
    result = gradcheck.taylor_test(lambda v: np.sum(np.abs(v)), x, g, seed=0)
    assert result.verdict == "inconclusive", str(result)
    assert "no converging range" in result.directions[0].reason
    assert "kink" in result.directions[0].reason


def test_a_wrong_gradient_near_a_kink_still_fails():
    # A hair from the kink the gradient of |x_3| is 1; 0 is wrong there, and the smallest
    # steps, which do not reach the kink, show it.
    x = X0.copy()
    x[3] = 1e-6
    g = np.sign(x)
    g[3] = 0.0
    result = gradcheck.taylor_test(lambda v: np.sum(np.abs(v)), x, g, seed=0)
    assert result.verdict == "fail", str(result)
    assert abs(result.directions[0].rate - 1) < 0.1


def test_a_linear_loss_with_its_gradient_passes_with_the_remainder_at_rounding():
    c = RNG.standard_normal(N)
    result = gradcheck.taylor_test(lambda x: c @ x, X0, c, seed=0)
    assert result.verdict == "pass"
    assert "linear along this direction" in result.directions[0].reason
    assert gradcheck.taylor_test(lambda x: c @ x, X0, 1.01 * c, seed=0).verdict == "fail"


@settings(max_examples=25)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40))
def test_any_quadratic_gives_rate_two(seed, n):
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((n, n))
    h = m @ m.T + np.eye(n)
    x = rng.standard_normal(n) * 10
    b = rng.standard_normal(n)
    result = gradcheck.taylor_test(lambda v: 0.5 * v @ h @ v + b @ v, x, h @ x + b, seed=seed)
    assert result.verdict == "pass", str(result)
    assert abs(result.directions[0].rate - 2) < 0.1


def test_the_result_reads_replays_and_serialises():
    params = {"w": X0.copy(), "s": np.array(1.3)}
    before = {k: v.copy() for k, v in params.items()}
    result = gradcheck.taylor_test(regression, params, regression_grad, directions=2, seed=5)
    assert [d.name for d in result.directions] == ["whole 1", "whole 2", "w", "s"]
    assert all(np.array_equal(params[k], before[k]) for k in params)
    again = gradcheck.taylor_test(regression, params, regression_grad, directions=2, seed=5)
    assert again.rates == result.rates
    assert again.nfev == result.nfev
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["verdict"] == "pass"
    assert data["order"] == 2
    assert len(data["directions"]) == 4
    assert set(result.rates) == {"whole 1", "whole 2", "w", "s"}
    text = str(result)
    assert text.startswith("taylor test: PASS  expected rate 2")
    assert "remainders" in text
    assert "would not bend the rate" in text
    assert 0 < result.directions[0].resolution < 1e-5


def test_given_steps_are_all_used():
    steps = [1e-1, 5e-2, 2.5e-2, 1.25e-2, 6.25e-3]
    result = gradcheck.taylor_test(sines, X0, sines_grad(X0), steps=steps, seed=0)
    assert result.directions[0].steps.tolist() == steps
    assert result.verdict == "pass"


def test_the_plot_draws_remainders_and_reference_slopes():
    result = gradcheck.taylor_test(sines, X0, sines_grad(X0), hvp=None, seed=0)
    ax = result.plot()
    labels = [line.get_label() for line in ax.get_lines()]
    assert "slope 1" in labels
    assert "slope 2" in labels
    assert "rounding level" in labels
    assert ax.get_xscale() == "log"
    assert ax.get_yscale() == "log"
    plt.close("all")


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"directions": 0}, ValueError, "`directions` must be a positive integer"),
        ({"steps": [1e-2, 1e-3]}, ValueError, "`steps` must be at least"),
        ({"steps": [1, 0.5, -0.1, 0.01]}, ValueError, "`steps` must be"),
        ({"seed": -1}, ValueError, "`seed` must be"),
        ({"hvp": 3}, TypeError, "`hvp` must be callable"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs, error, words):
    with pytest.raises(error, match=words):
        gradcheck.taylor_test(sines, X0, sines_grad(X0), **kwargs)


def test_a_gradient_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="grad"):
        gradcheck.taylor_test(sines, X0, np.ones(3))


def test_step_sweep_reads_as_a_table():
    x = np.array([0.3, -1.2, 2.0])
    sweep = gradcheck.step_sweep(lambda v: np.sum(np.sin(v)), x, np.cos(x), steps=[1e-2, 1e-5])
    text = str(sweep)
    assert text.startswith("step sweep (central): best step 1.0e-05")
    assert "<- best" in text
    assert "StepSweep(" not in text
    wrong = gradcheck.step_sweep(lambda v: np.sum(np.sin(v)), x, 2 * np.cos(x), steps=[1e-3])
    assert "no step passes" in str(wrong)
    assert "<- smallest" in str(wrong)
