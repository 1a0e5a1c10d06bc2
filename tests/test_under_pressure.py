"""Verdicts under pressure: exact zeros by symmetry, blocks wrong everywhere, a forgotten
regularisation term, a step chosen too large by hand.
"""

import numpy as np
import pytest

import gradcheck

# ---------------------------------------------------------------- zeros by symmetry

_X = np.linspace(-np.pi, np.pi, 2000)


def _legendre():
    """y = a + b P3(c + d x) fitted to sin(x) at a=0, b=-1, c=0, d=0.3: dL/da and dL/dc
    are 0 by symmetry (the residual is odd in x), which rounding leaves at ~1e-15 on the
    analytic side and ~1e-10 on the numeric one.
    """

    def p3(z):
        return 0.5 * (5 * z**3 - 3 * z)

    def unpack(p):
        return p["a"], p["b"], p["c"], p["d"]

    def loss(p):
        a, b, c, d = unpack(p)
        return float(np.sum((a + b * p3(c + d * _X) - np.sin(_X)) ** 2))

    def grad(p):
        a, b, c, d = unpack(p)
        z = c + d * _X
        r = 2 * (a + b * p3(z) - np.sin(_X))
        dz = r * b * 0.5 * (15 * z**2 - 3)
        # Summed in another order than the loss: the symmetric zeros come out as rounding.
        return {
            "a": np.array(r[::-1].sum()),
            "b": np.array((r * p3(z)).sum()),
            "c": np.array(dz[::-1].sum()),
            "d": np.array((dz * _X).sum()),
        }

    params = {"a": np.array(0.0), "b": np.array(-1.0), "c": np.array(0.0), "d": np.array(0.3)}
    return loss, params, grad(params)


@pytest.mark.parametrize("tol", [None, (1e-7, 1e-5)])
def test_a_zero_by_symmetry_is_agreement_whatever_tol(tol):
    loss, params, grads = _legendre()
    r = gradcheck.check(loss, params, grads, seed=1, tol=tol)
    assert r.verdict == "pass", str(r)
    below = {name: b.untested for name, b in r.blocks.items()}
    assert below["a"] == 1
    assert below["b"] == below["d"] == 0
    assert "below what the finite differences resolve" in str(r)
    assert "lower the noise" not in str(r)


def test_a_wrong_gradient_below_resolution_elsewhere_still_fails():
    # The rule needs every entry of the block below resolution: a wrong entry beside a
    # symmetric zero still fails its block.
    loss, params, grads = _legendre()
    grads = {**grads, "a": np.array(1.0)}
    assert gradcheck.check(loss, params, grads, seed=1).failing == ("a",)


# ---------------------------------------------------------------- blocks wrong everywhere

_RNG = np.random.default_rng(0)
_XS = _RNG.standard_normal((30, 12))
_YS = _RNG.standard_normal((30, 3))
_REG = 0.1


def _mlp():
    """A course MLP with an L2 term, its parameters and its gradient's parts."""
    p = {"W1": _RNG.standard_normal((12, 10)) * 0.3, "W2": _RNG.standard_normal((10, 3)) * 0.3}

    def loss(p):
        out = np.tanh(_XS @ p["W1"]) @ p["W2"]
        l2 = np.sum(p["W1"] ** 2) + np.sum(p["W2"] ** 2)
        return 0.5 * np.sum((out - _YS) ** 2) + 0.5 * _REG * l2

    def grad(p, *, l2=True, tanh_slope=None):
        h = np.tanh(_XS @ p["W1"])
        d = h @ p["W2"] - _YS
        slope = (1 - h**2) if tanh_slope is None else tanh_slope(h)
        g = {"W1": _XS.T @ (d @ p["W2"].T * slope), "W2": h.T @ d}
        if l2:
            g = {k: v + _REG * p[k] for k, v in g.items()}
        return g

    return loss, p, grad


def test_a_block_wrong_everywhere_is_described_as_a_block():
    loss, p, grad = _mlp()
    # tanh's slope written as 1 - h instead of 1 - h^2: every entry of W1 moves.
    r = gradcheck.check(loss, p, grad(p, tanh_slope=lambda h: 1 - h), seed=0)
    w1 = r.blocks["W1"]
    assert r.failing == ("W1",)
    assert w1.disagreeing >= 0.9 * w1.checked
    assert "checked entries of W1 disagree" in w1.diagnosis or "every checked" in w1.diagnosis
    assert " is wrong:" not in w1.diagnosis
    assert r.blocks["W2"].disagreeing == 0


def test_the_search_names_no_entries_of_a_block_wrong_everywhere():
    loss, p, grad = _mlp()
    bad = grad(p, tanh_slope=lambda h: 1 - h)
    r = gradcheck.check(loss, p, bad, seed=0, directions=4, sample=8)
    assert r.failing == ("W1",)
    assert r.blocks["W1"].localized == ()
    assert "W1[0, 0]" not in str(r)
    # W2 left to the directions alone (two sampled coordinates fall in W1): the search's
    # own sentence says why no entry is named.
    spread = grad(p)
    spread["W2"] = spread["W2"] + 0.3 * np.abs(spread["W2"])
    alone = gradcheck.check(loss, p, spread, seed=0, directions=4, sample=2)
    w2 = alone.blocks["W2"]
    assert (w2.checked, w2.verdict, w2.localized) == (0, "fail", ())
    assert "the error is spread over W2" in w2.diagnosis


def test_one_wrong_entry_is_still_named_with_its_count():
    loss, p, grad = _mlp()
    one = grad(p)
    one["W1"] = one["W1"].copy()
    one["W1"][3, 8] *= 1.1
    r = gradcheck.check(loss, p, one, seed=0)
    assert r.blocks["W1"].disagreeing == 1
    assert "W1[3, 8] is wrong" in r.blocks["W1"].diagnosis
    assert "the only checked entry that disagrees" in r.blocks["W1"].diagnosis
    searched = gradcheck.check(loss, p, one, seed=0, directions=4, sample=8)
    assert searched.blocks["W1"].localized == ("W1[3, 8]",)


def test_a_transposed_adjoint_is_a_block_wrong_everywhere():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((6, 6))
    y = rng.standard_normal(6)

    def loss(p):
        return 0.5 * np.sum((a @ p["x"] - y) ** 2) + np.sum(p["W"] * a)

    p = {"x": rng.standard_normal(6), "W": rng.standard_normal((6, 6))}
    r = gradcheck.check(loss, p, {"x": a.T @ (a @ p["x"] - y), "W": a.T.copy()}, seed=0)
    assert r.failing == ("W",)
    assert "disagree" in r.blocks["W"].diagnosis
    assert "transposed" in r.blocks["W"].diagnosis


# ---------------------------------------------------------------- a forgotten L2 term


def test_a_forgotten_regularisation_term_is_named():
    loss, p, grad = _mlp()
    r = gradcheck.check(loss, p, grad(p, l2=False), seed=0)
    assert r.failing == ("W1", "W2")
    assert "dW1 misses 0.1 x W1" in r.blocks["W1"].diagnosis
    assert "regularisation" in str(r)
    doubled = {k: v + _REG * p[k] for k, v in grad(p).items()}
    again = gradcheck.check(loss, p, doubled, seed=0)
    assert "dW2 adds 0.1 x W2" in again.blocks["W2"].diagnosis


# ---------------------------------------------------------------- a step too large


def _sines():
    x = np.random.default_rng(3).standard_normal(5)
    return (lambda x: float(np.sin(x).sum())), x, np.cos(x)


def test_a_step_too_large_blames_the_step_not_the_gradient():
    f, x, g = _sines()
    r = gradcheck.check(f, x, g, eps=10.0, seed=0)
    text = str(r)
    assert r.verdict == "inconclusive"  # never a pass on such differences either
    assert r.failing == ()
    assert "is too large for the parameters or the curvature" in text
    assert "factor" not in (r.blocks["params"].diagnosis or "")
    assert r.kinks == ()
    assert "kink" not in text.replace("no factor or kink can be read", "")
    # At a sound step the same gradient passes.
    assert gradcheck.check(f, x, g, eps=1e-4, seed=0).verdict == "pass"


def test_directions_take_the_users_step():
    x = np.random.default_rng(4).standard_normal(40)
    f, g = (lambda x: float(np.sin(x).sum())), np.cos(x)
    diffs = [
        gradcheck.check(f, x, g, eps=eps, seed=0, directions=2, sample=1)
        .blocks["params"]
        .direction_difference
        for eps in (0.5, 1e-2, 1e-4)
    ]
    # The truncation error along a direction falls as the square of the user's step.
    assert diffs[0] > 10 * diffs[1] > 100 * diffs[2]


def test_a_step_too_large_still_fails_a_wrong_gradient():
    # Doubled, the gradient is wrong: the entries the step is too large for are differenced
    # again at the default step, where they still disagree, so the check fails, and its
    # factor is read from those sound differences, not from eps=10's.
    f, x, g = _sines()
    r = gradcheck.check(f, x, 2 * g, eps=10.0, seed=0)
    assert r.failing == ("params",)
    assert "params = 2.00 x numeric" in r.blocks["params"].diagnosis
    assert "differenced again at the default relative step" in str(r)
    assert gradcheck.check(f, x, 2 * g, eps=1e-4, seed=0).failing == ("params",)


def test_a_step_too_large_near_a_kink_does_not_fail_a_right_gradient():
    # An L1 term whose kink lies within the default step of x[0]: differenced again at the
    # default step, that entry straddles the kink, which the kink check says; a right
    # gradient is not called wrong there, and the step stays blamed.
    x = np.array([1.0, 0.7, -0.5])
    kink = x.copy()
    kink[0] -= 1e-7

    def f(p):
        return float(np.sum(p**4) + 1e-3 * np.sum(np.abs(p - kink)))

    g = 4 * x**3 + 1e-3 * np.sign(x - kink)
    assert gradcheck.check(f, x, g, seed=0).verdict == "pass"
    assert gradcheck.check(f, x, g, eps=10.0, seed=0).failing == ()
    wrong = g.copy()
    wrong[0] *= 1.1
    assert gradcheck.check(f, x, wrong, eps=10.0, seed=0).failing == ("params",)


def test_a_step_too_large_fails_the_wrong_block_and_blames_the_step_in_the_right_one():
    rng = np.random.default_rng(0)
    p = {"a": rng.standard_normal(5), "b": rng.standard_normal(5)}

    def f(p):
        return float(np.sin(p["a"]).sum() + np.sin(p["b"]).sum())

    g = {"a": np.cos(p["a"]), "b": 1.1 * np.cos(p["b"])}  # b 10% off
    r = gradcheck.check(f, p, g, eps=10.0, seed=0)
    assert r.failing == ("b",)
    assert "b = 1.10 x numeric" in r.blocks["b"].diagnosis
    assert r.blocks["a"].verdict == "inconclusive"  # right, at a step too large for it
    assert "too large for the parameters or the curvature" in str(r)
    # The same gradient made right: the step alone is blamed, nothing fails.
    right = gradcheck.check(f, p, {k: np.cos(v) for k, v in p.items()}, eps=10.0, seed=0)
    assert right.verdict == "inconclusive"
    assert right.failing == ()


def test_directions_at_a_step_too_large_still_fail_a_wrong_gradient():
    # The search's finds are differenced again at the default step, where they disagree.
    x = np.random.default_rng(4).standard_normal(40)
    f, g = (lambda x: float(np.sin(x).sum())), np.cos(x)
    r = gradcheck.check(f, x, 2 * g, eps=10.0, seed=0, directions=4)
    assert r.failing == ("params",)


def test_directions_at_a_step_too_large_blame_the_step():
    x = np.random.default_rng(4).standard_normal(40)
    f, g = (lambda x: float(np.sin(x).sum())), np.cos(x)
    r = gradcheck.check(f, x, g, eps=10.0, seed=0, directions=4, sample=2)
    assert r.verdict == "inconclusive"
    assert r.blocks["params"].localized == ()
    assert r.kinks == ()
    assert "too large for the parameters or the curvature" in str(r)
