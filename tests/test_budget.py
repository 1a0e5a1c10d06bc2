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
from gradcheck import _budget, _deadline
from gradcheck._results import BlockResult

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
    assert r.directions >= 1
    # Directions and the localisation of what they flag come first, sampled coordinates
    # get what is left: none of 2 s (100 evaluations of f), some of 5 s.
    assert (r.checked > 0) == (budget == 5.0)


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
    far = _deadline.Deadline(time.perf_counter() + 10.0, 0.01)
    assert far.affords(500)
    assert not far.affords(2000)
    assert 900 <= far.how_many(1, 5000) <= 1000
    assert _deadline.Deadline.none().how_many(4, 7) == 7
    assert _budget.plan_seconds(10.0, 1.0) == pytest.approx(9.0 * (1 - _budget.RESERVE))


class WideModel(CostlyModel):
    """A 2,000,000-entry W1 and two small blocks, with one wrong entry of W1."""

    def __init__(self, clock, cost):
        super().__init__(clock, n=2_000_000, cost=cost)
        rng = np.random.default_rng(3)
        self.c["W2"] = rng.uniform(0.5, 2.0, 300)
        self.params["W2"] = rng.standard_normal(300)
        self.c["W1"], self.params["W1"] = self.c.pop("W"), self.params.pop("W")

    def grad_one_wrong(self, at=1_234_567):
        # Off by about 1% of the block's norm: what a direction over the block resolves.
        g = {k: self.c[k] * v for k, v in self.params.items()}
        g["W1"][at] += 0.01 * np.linalg.norm(g["W1"])
        return g


@pytest.mark.parametrize("budget", [2.0, 5.0])
def test_a_budget_names_one_wrong_entry_of_a_large_block(fake_clock, budget):
    # The directions per block and the localisation of what they flag come before sampled
    # coordinates: one wrong entry among 2,000,000 is named within the budget.
    model = WideModel(fake_clock, cost=0.005)
    started = time.perf_counter()
    r = gradcheck.check(model.loss, model.params, model.grad_one_wrong(), budget=budget, seed=0)
    assert time.perf_counter() - started <= budget, r.notes
    assert r.failing == ("W1",), str(r)
    assert r.blocks["W1"].localized == ("W1[1234567]",), str(r)


@pytest.mark.parametrize("fast_calls", [3, 10, 28, 60])
def test_a_budget_on_f_slowed_tenfold_never_passes_one_percent_wrong(fake_clock, fast_calls):
    # f timed at 5 ms, then ten times slower from its fast_calls-th call: whatever the
    # budget buys, 1% of W wrong is never a pass. A block checked too thinly to have seen
    # it says so, with the chance it was missed, and the check is inconclusive.
    for budget in (0.5, 1.0, 2.0, 5.0):
        model = CostlyModel(fake_clock, cost=0.005, fast_calls=fast_calls, slowdown=10.0)
        r = gradcheck.check(model.loss, model.params, model.grad(0.01), budget=budget, seed=0)
        assert r.verdict != "pass", str(r)
        thin = [k for k, b in r.blocks.items() if b.miss_probability(0.01) > 0.5]
        if r.verdict == "inconclusive":
            assert any(n.startswith("inconclusive") for n in r.notes), r.notes
        for k in thin:
            if r.blocks[k].checked or r.blocks[k].directions:
                assert any(k in n and "missed with probability" in n for n in r.notes)


def test_a_thinly_checked_block_is_not_a_pass(fake_clock):
    # b gets one coordinate and no direction: 1% of it wrong would be missed 9 times in
    # 10, so a budget cannot call the check a pass.
    blocks = [_passing("W", 100, checked=0, directions=4), _passing("b", 10, checked=1)]
    (note,) = _budget.unseen(blocks)
    assert note.floor == "inconclusive"
    assert "b (1 of 10 coordinates, 0 directions): missed with probability 0.90" in note.text
    assert "W" not in note.text.split("entries of")[1]
    assert _budget.unseen(blocks[:1]) == ()


def _passing(name, size, *, checked, directions=0):
    return BlockResult(
        name,
        (size,),
        size,
        checked,
        0.0,
        "pass",
        1.0,
        1.0,
        0.0,
        0.0,
        None,
        (),
        tol=(1e-7, 1e-5),
        directions=directions,
    )
