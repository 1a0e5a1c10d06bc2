"""A direction over a large block sees the rounding of every entry it moves.

The noise probe reads f's noise along a line over at most NOISE_SPAN entries; a direction
over a million entries redraws the rounding of a million terms of f, and a correct gradient
must pass by it however f sums them: BLAS on one thread or two, or a sum of our own whose
rounding is the same on every machine.
"""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import gradcheck
from gradcheck import _policy

N = 1_000_000


class LongSum:
    """0.5 * sum(c x^2) over a million-entry W and a 10-entry b.

    ``chunks``: W's terms are summed one after another in this many chunks (numpy's
    accumulate adds in order, so the rounding is the same on every machine and grows with
    each chunk's length, as a BLAS kernel's lanes do); None: by BLAS's dot product.
    """

    def __init__(self, chunks: int | None, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.c = {"W": rng.uniform(0.5, 2.0, N), "b": rng.uniform(0.5, 2.0, 10)}
        self.params = {"W": rng.standard_normal(N), "b": rng.standard_normal(10)}
        self.chunks = chunks

    def loss(self, p):
        b = float(self.c["b"] @ (p["b"] * p["b"]))
        if self.chunks is None:
            return 0.5 * (float(self.c["W"] @ (p["W"] * p["W"])) + b)
        terms = (self.c["W"] * p["W"] * p["W"]).reshape(self.chunks, -1)
        return 0.5 * (float(np.add.accumulate(terms, axis=1)[:, -1].sum()) + b)

    def grad(self):
        return {k: self.c[k] * v for k, v in self.params.items()}


@pytest.mark.slow
@pytest.mark.parametrize("chunks", [4, None], ids=["four-chunks", "blas-dot"])
@pytest.mark.parametrize("seed", [0, 3])
def test_directions_over_a_million_entries_pass_a_correct_gradient(chunks, seed):
    model = LongSum(chunks)
    with threadpool_limits(1, user_api="blas"):
        r = gradcheck.check(model.loss, model.params, model.grad(), directions=4, seed=seed)
    assert r.verdict == "pass", str(r)
    assert r.blocks["W"].localized == ()


def test_without_the_rounding_walk_the_same_check_warns(monkeypatch):
    # The rule at work: held to the probe's noise alone, the four chunks' rounding (~70 u|f|
    # in each value of f, against the 1 u|f| the probe reads) makes a correct W "warn".
    model = LongSum(4)
    monkeypatch.setattr(_policy, "ROUNDING_WALK", 0.0)
    r = gradcheck.check(model.loss, model.params, model.grad(), directions=4, seed=0)
    assert r.verdict == "warn", str(r)
    assert r.blocks["W"].verdict == "warn"


@pytest.mark.slow
@pytest.mark.parametrize("chunks", [4, None], ids=["four-chunks", "blas-dot"])
def test_directions_over_a_million_entries_still_fail_a_one_percent_bug(chunks):
    model = LongSum(chunks)
    grad = model.grad()
    wrong = np.random.default_rng(1).choice(N, N // 100, replace=False)
    grad["W"][wrong] *= 1.5
    with threadpool_limits(1, user_api="blas"):
        r = gradcheck.check(model.loss, model.params, grad, directions=4, seed=0)
    assert r.verdict == "fail", str(r)
    assert r.failing == ("W",)
    found = {int(name[2:-1]) for name in r.blocks["W"].localized}
    assert len(found) == 8  # the default bound
    assert found <= set(wrong.tolist())
