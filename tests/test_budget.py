"""``budget=`` holds the whole call, every pass included, on a failing gradient too."""

from __future__ import annotations

import time

import numpy as np
import pytest

import gradcheck
from gradcheck import _budget


class SleepyModel:
    """0.5 * sum(c x^2) over a million entries; every call sleeps 1 ms first.

    The sleep makes an evaluation's cost predictable (at least 1 ms whatever else runs on
    the machine), so that a budget test measures the check, not the machine's load.
    """

    def __init__(self, n=1_000_000, seed=0):
        rng = np.random.default_rng(seed)
        self.c = {"W": rng.uniform(0.5, 2.0, n), "b": rng.uniform(0.5, 2.0, 10)}
        self.params = {"W": rng.standard_normal(n), "b": rng.standard_normal(10)}

    def loss(self, p):
        time.sleep(1e-3)
        return 0.5 * sum(float(self.c[k] @ (p[k] * p[k])) for k in p)

    def grad(self, wrong=0.0):
        g = {k: self.c[k] * v for k, v in self.params.items()}
        if wrong:
            n = g["W"].size
            g["W"][np.random.default_rng(1).choice(n, int(wrong * n), replace=False)] *= 1.5
        return g


@pytest.fixture(scope="module")
def sleepy():
    return SleepyModel()


@pytest.mark.slow
@pytest.mark.parametrize("budget", [2.0, 5.0])
@pytest.mark.parametrize("wrong", [0.0, 0.01])
def test_the_budget_holds_with_every_pass(sleepy, budget, wrong):
    grad = sleepy.grad(wrong)
    started = time.perf_counter()
    r = gradcheck.check(sleepy.loss, sleepy.params, grad, budget=budget, seed=0)
    wall = time.perf_counter() - started
    assert wall <= 1.1 * budget + 0.3, (wall, r.notes)
    assert r.verdict == ("fail" if wrong else "pass")
    assert r.checked > 0


def test_a_pass_cut_short_says_what_it_left_out(monkeypatch):
    # The plan is fitted to a timing 100 times too fast: the coordinate pass must stop at
    # the deadline and say how much of the plan it checked.
    model = SleepyModel(n=10_000)
    from gradcheck import _engine

    def fast(self):
        self.nfev += 1
        return 1e-5

    monkeypatch.setattr(_engine.Evaluator, "time_one", fast)
    started = time.perf_counter()
    r = gradcheck.check(model.loss, model.params, model.grad(), budget=1.0, seed=0, noise=False)
    assert time.perf_counter() - started <= 1.1 * 1.0 + 0.3
    assert any("ran out during the coordinate pass" in n for n in r.notes)
    assert 0 < r.checked < r.replay.indices.size + 20_000
    assert r.checked == r.replay.indices.size  # the report counts what was checked


def test_a_deadline_bounds_what_fits():
    far = _budget.Deadline(time.perf_counter() + 10.0, 0.01)
    assert far.affords(500)
    assert not far.affords(2000)
    assert 900 <= far.how_many(1, 5000) <= 1000
    assert _budget.Deadline.none().how_many(4, 7) == 7
    assert _budget.plan_seconds(10.0, 1.0) == pytest.approx(9.0 * (1 - _budget.RESERVE))
