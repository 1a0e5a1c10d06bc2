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
