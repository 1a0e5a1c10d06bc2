"""``budget=`` holds the whole call, every pass included, on a failing gradient too.

On the ``fake_clock`` fixture (tests/clock.py): every evaluation of f costs a fixed time,
whatever else runs on the machine, so what a budget buys, where each pass stops and what
the report concludes are the same on every machine. How long the check's own work takes
on a real machine is a benchmark's question, not these tests'.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import gradcheck
from gradcheck import _budget

COST = 0.02  # seconds an evaluation of f costs on the clock


class CostlyModel:
    """0.5 * sum(c x^2) over a million entries and a 10-entry bias; every call of f costs
    ``cost`` seconds on ``clock``, ``slowdown`` times that after the first ``fast_calls``
    (a machine that got busy after the check timed f).

    The sums are einsum's, on one core: a BLAS dot product rounds by the number of threads
    BLAS runs on, and with one thread the correct gradient's direction over W differed by
    3.96e-05 (a warn), with two by 3.36e-06.
    """

    def __init__(self, clock, n=1_000_000, seed=0, cost=COST, fast_calls=None, slowdown=1.0):
        rng = np.random.default_rng(seed)
        self.c = {"W": rng.uniform(0.5, 2.0, n), "b": rng.uniform(0.5, 2.0, 10)}
        self.params = {"W": rng.standard_normal(n), "b": rng.standard_normal(10)}
        self.clock, self.cost, self.calls = clock, cost, 0
        self.fast_calls, self.slowdown = fast_calls, slowdown

    def loss(self, p):
        self.calls += 1
        slow = self.fast_calls is not None and self.calls > self.fast_calls
        self.clock.spend(self.cost * (self.slowdown if slow else 1.0))
        return 0.5 * sum(float(np.einsum("i,i->", self.c[k], p[k] * p[k])) for k in p)

    def grad(self, wrong=0.0):
        g = {k: self.c[k] * v for k, v in self.params.items()}
        if wrong:
            n = g["W"].size
            g["W"][np.random.default_rng(1).choice(n, int(wrong * n), replace=False)] *= 1.5
        return g


@pytest.mark.slow
@pytest.mark.parametrize("budget", [2.0, 5.0])
@pytest.mark.parametrize("wrong", [0.0, 0.01])
def test_the_budget_holds_with_every_pass(fake_clock, budget, wrong):
    model = CostlyModel(fake_clock)
    grad = model.grad(wrong)
    started = time.perf_counter()
    r = gradcheck.check(model.loss, model.params, grad, budget=budget, seed=0)
    # Timed exactly, f's cost the same at every call: the whole call fits, every pass
    # included (a failing gradient's kink re-checks and directional search too).
    assert time.perf_counter() - started <= budget, r.notes
    assert r.verdict == ("fail" if wrong else "pass"), str(r)
    assert r.failing == (("W",) if wrong else ())
    assert r.checked > 0
    assert r.directions >= 1


def test_a_pass_cut_short_says_what_it_left_out(fake_clock, monkeypatch):
    # The plan is fitted to a timing 100 times too fast: the coordinate pass must stop at
    # the deadline and say how much of the plan it checked.
    model = CostlyModel(fake_clock, n=10_000, cost=1e-3)
    from gradcheck import _evaluator

    def fast(self):
        self.nfev += 1
        return 1e-5

    monkeypatch.setattr(_evaluator.Evaluator, "time_one", fast)
    started = time.perf_counter()
    r = gradcheck.check(model.loss, model.params, model.grad(), budget=1.0, seed=0, noise=False)
    # Past the deadline by at most the slice that was running when it passed.
    assert time.perf_counter() - started <= 1.0 + _budget.SLICE * 1.0
    assert any("ran out during the coordinate pass" in n for n in r.notes)
    assert 0 < r.checked < r.replay.indices.size + 20_000
    assert r.checked == r.replay.indices.size  # the report counts what was checked


@pytest.mark.xfail(
    strict=False,
    reason="issue 20: a block whose directions the deadline cut passes on the coordinates "
    "checked, however few: here PASS on 18 of W's 1,000,000 coordinates and none of its "
    "4 planned directions, a 1% bug missed with probability 0.83",
)
def test_a_budget_never_passes_what_it_could_not_have_seen(fake_clock):
    # f timed at 5 ms, then 50 ms a call from its 29th: the machine got busy after the
    # timing. The coordinate pass and the time kept for the directions were sized on 5 ms;
    # the deadline comes during the coordinate pass, no direction runs, and W's bug (1% of
    # its entries) is in none of the few coordinates checked.
    model = CostlyModel(fake_clock, cost=0.005, fast_calls=28, slowdown=10.0)
    r = gradcheck.check(model.loss, model.params, model.grad(0.01), budget=2.0, seed=0)
    could_miss = {k: b.miss_probability(0.01) for k, b in r.blocks.items()}
    assert r.verdict != "pass" or max(could_miss.values()) < 0.5, (could_miss, r.notes)


def test_a_deadline_bounds_what_fits():
    far = _budget.Deadline(time.perf_counter() + 10.0, 0.01)
    assert far.affords(500)
    assert not far.affords(2000)
    assert 900 <= far.how_many(1, 5000) <= 1000
    assert _budget.Deadline.none().how_many(4, 7) == 7
    assert _budget.plan_seconds(10.0, 1.0) == pytest.approx(9.0 * (1 - _budget.RESERVE))
