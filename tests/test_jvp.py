"""Forward mode: a Jacobian-vector product checked through the derivative of a projection
along one tangent per input (so the wrong input is named), and a Hessian-vector product as
the forward derivative of the gradient."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck

RNG = np.random.default_rng(3)
W = RNG.standard_normal((4, 3))
S = RNG.standard_normal((3, 3))
S = S @ S.T + np.eye(3)


def layer(p):
    """tanh(W x) * s, and the sum of x^2 as a second output."""
    return {"y": np.tanh(W @ p["x"]) * p["s"], "z": np.array(np.sum(p["x"] ** 2))}


def layer_jvp(p, t):
    y = np.tanh(W @ p["x"])
    return {
        "y": (1 - y**2) * (W @ t["x"]) * p["s"] + y * t["s"],
        "z": np.array(2 * p["x"] @ t["x"]),
    }


def layer_jvp_wrong_s(p, t):
    out = layer_jvp(p, t)
    out["y"] = out["y"] - 2 * np.tanh(W @ p["x"]) * t["s"]  # the sign slip: -y t_s
    return out


POINT = {"x": np.array([0.5, -1.0, 0.25]), "s": np.array(2.0)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_right_jvp_passes_and_a_wrong_rule_for_one_input_names_that_input(dtype):
    point = {k: v.astype(dtype) for k, v in POINT.items()}
    before = {k: v.copy() for k, v in point.items()}
    right = gradcheck.check_jvp(layer, point, layer_jvp, seed=0)
    assert right.verdict == "pass", str(right)
    assert list(right.blocks) == ["x", "s"]
    wrong = gradcheck.check_jvp(layer, point, layer_jvp_wrong_s, seed=0)
    assert wrong.failing == ("s",), str(wrong)
    assert wrong.blocks["x"].verdict == "pass"
    assert all(np.array_equal(point[k], before[k]) for k in point)


def test_the_tangent_and_cotangent_replay_the_check():
    report = gradcheck.check_jvp(layer, POINT, layer_jvp_wrong_s, seed=4)
    again = gradcheck.check_jvp(layer, POINT, layer_jvp_wrong_s, tangent=report.tangent, seed=4)
    assert again.blocks["s"].difference == report.blocks["s"].difference
    assert set(report.tangent) == {"x", "s"}
    assert set(report.cotangent) == {"y", "z"}
    assert "forward mode" in str(report)
    json.dumps(report.to_dict(), allow_nan=False)


def test_a_tangent_on_one_input_only_leaves_the_others_unchecked_as_zero():
    tangent = {"x": np.zeros(3), "s": np.array(1.0)}
    report = gradcheck.check_jvp(layer, POINT, layer_jvp, tangent=tangent, seed=0)
    assert report.verdict == "pass"


def _quadratic_sines(x):
    """f = 1/2 x S x + sum(sin x): its gradient and Hessian-vector product."""
    return S @ x + np.cos(x)


def _hvp(x, v):
    return S @ v - np.sin(x) * v


def _hvp_wrong_cross_term(x, v):
    out = _hvp(x, v)
    out[0] = out[0] + 0.05 * v[2]  # H[0, 2] off by 0.05, H[2, 0] left right
    return out


def test_check_hvp_fails_a_wrong_cross_term_and_passes_the_right_one():
    x = np.array([0.3, -0.7, 1.1])
    right = gradcheck.check_hvp(_quadratic_sines, x, _hvp, seed=0)
    assert right.verdict == "pass", str(right)
    wrong = gradcheck.check_hvp(_quadratic_sines, x, _hvp_wrong_cross_term, seed=0)
    assert wrong.verdict == "fail", str(wrong)
    assert "hvp(params, tangent)" in str(wrong)


def test_check_hvp_names_the_block_whose_tangent_meets_the_wrong_term():
    def grad(p):
        return {"a": S @ p["a"] + p["b"] * np.ones(3), "b": np.array(np.sum(p["a"]))}

    def hvp(p, v):
        return {"a": S @ v["a"] + v["b"] * np.ones(3), "b": np.array(np.sum(v["a"]))}

    def hvp_wrong(p, v):
        out = hvp(p, v)
        out["a"] = out["a"] + v["b"] * np.ones(3)  # d(grad a)/db doubled
        return out

    p = {"a": np.array([0.1, 0.2, -0.3]), "b": np.array(1.5)}
    assert gradcheck.check_hvp(grad, p, hvp, seed=1).verdict == "pass"
    assert gradcheck.check_hvp(grad, p, hvp_wrong, seed=1).failing == ("b",)


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: gradcheck.check_jvp(3, POINT, layer_jvp), TypeError, "`f` must be callable"),
        (lambda: gradcheck.check_jvp(layer, POINT, None), TypeError, "`jvp` must be callable"),
        (
            lambda: gradcheck.check_jvp(layer, POINT, layer_jvp, batched=True),
            ValueError,
            "batched=True",
        ),
        (
            lambda: gradcheck.check_jvp(layer, POINT, layer_jvp, method="complex"),
            ValueError,
            "method='complex'",
        ),
        (
            lambda: gradcheck.check_jvp(layer, POINT, layer_jvp, tangent={"x": np.ones(3)}),
            ValueError,
            "tangent",
        ),
        (
            lambda: gradcheck.check_jvp(layer, POINT, lambda p, t: {"y": np.ones(4)}),
            ValueError,
            "jvp",
        ),
        (lambda: gradcheck.check_hvp(_quadratic_sines, np.ones(3), 2), TypeError, "`hvp`"),
    ],
)
def test_bad_arguments_are_refused_by_name(call, error, words):
    with pytest.raises(error, match=words):
        call()


@settings(max_examples=25)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(1, 6))
def test_a_linear_map_passes_with_its_matrix_and_fails_with_one_entry_changed(seed, m, n):
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((m, n))
    wrong = matrix.copy()
    i, j = rng.integers(m), rng.integers(n)
    wrong[i, j] += 0.5 + abs(wrong[i, j])
    point = {"x": rng.standard_normal(n)}

    def f(p):
        return matrix @ p["x"]

    right = gradcheck.check_jvp(f, point, lambda p, t: matrix @ t["x"], seed=seed)
    assert right.verdict == "pass", str(right)
    # A wrong entry escapes a Gaussian tangent and cotangent with probability zero.
    bad = gradcheck.check_jvp(f, point, lambda p, t: wrong @ t["x"], seed=seed)
    assert bad.failing == ("x",), str(bad)
