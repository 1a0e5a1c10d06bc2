"""The passes one by one, against a fake evaluator, and rules that only a pass shows.

The fake evaluator evaluates f on a fresh copy of the parameters for every point (no
shared buffer, no engine) and logs each call: a pass that evaluated f any other way, or
counted wrongly, fails here.
"""

import numpy as np
import pytest

import gradcheck
from gradcheck import (
    _compare,
    _directions,
    _estimate,
    _options,
    _plan,
    _problem,
    _refine,
    _sample,
)
from gradcheck._context import Check, Findings, Streams
from gradcheck._deadline import Deadline
from gradcheck._judge import Judge

from .reference import (
    reference_complex_step,
    reference_directional,
    reference_gradapprox,
    reference_richardson,
)


class FakeEvaluator:
    """What the passes ask of an evaluator, computed the obvious way."""

    engine = "fake"

    def __init__(self, problem):
        self.problem = problem
        self.buffer = problem.theta.copy()  # never written to: every point is a fresh copy
        self.nfev = 1
        self.calls = []

    def _f(self, x):
        self.calls.append(x.copy())
        return float(self.problem.f(self.problem.layout.structure(x)))

    def run(self, plan):
        out = np.empty(plan.values.shape)
        for j, i in enumerate(plan.idx):
            for k, v in enumerate(plan.values[j]):
                x = self.problem.theta.copy()
                x[i] = v
                out[j, k] = self._f(x)
        self.nfev += plan.values.size
        return out

    def segments(self, points):
        out = []
        for lo, hi, v in points:
            x = self.problem.theta.copy()
            x[lo:hi] = v
            out.append(self._f(x))
        self.nfev += len(points)
        return np.array(out)

    def verify(self, who="f"):
        pass

    def redo(self, idx):  # one thread: nothing to reproduce
        return np.empty(0, dtype=np.int64)

    def settle(self):
        pass

    why = None


def _check(problem, fake, options, rng=None, judge=None):
    """The context of a check of ``problem`` through ``fake``; noise: rounding alone."""
    if judge is None:
        # The noise of f is taken as its rounding alone (noise=False in a check).
        rounding = float(np.finfo(problem.dtype).eps / 2 * abs(problem.f0))
        judge = Judge.build(problem.tol_dtype, "central", options.tol, rounding)
    idx = np.arange(problem.n) if options.directions is None else np.empty(0, dtype=np.int64)
    selection = _sample.Selection(idx, None, options.directions, (0,))
    streams = Streams(None, None, rng)
    return Check(problem, fake, judge, Deadline.none(), options, 0, selection, streams)


def _first_pass(f, x, grad, rng=None, **options):
    calls = []

    def counted(*args):  # every call of f, whoever makes it
        calls.append(None)
        return f(*args)

    problem = _problem.build(counted, x, grad, batched=False)
    fake = FakeEvaluator(problem)
    fake.every_call = calls  # the first call, then only what went through the fake
    check = _check(problem, fake, _options.validate(**options), rng)
    plan = _plan.make(
        problem.theta,
        check.selection.idx,
        method="central",
        eps=None,
        loss_dtype=problem.loss_dtype,
        seed=0,
    )
    found = _compare.run(check, _estimate.run(check, Findings(plan)))
    return check, fake, found


# ------------------------------------------------------------------ the kink pass
def _relu_problem():
    x = np.linspace(-1.0, 1.0, 12)
    x[0] = 1e-7  # within the step of the kink at 0: the difference crosses it
    x[1] = 0.0  # on the kink
    grad = (x > 0) + x
    grad[5] += 0.3  # a planted bug

    def f(v):
        return np.maximum(v, 0).sum() + 0.5 * v @ v

    return f, x, grad


def test_the_kink_pass_names_kinks_and_keeps_the_bug():
    f, x, grad = _relu_problem()
    check, fake, first = _first_pass(f, x, grad)
    assert first.compared.blocks[0].verdict == "fail"
    before = fake.nfev
    refined = _refine.run(check, first)
    assert {(k.name, k.kind) for k in refined.kinks} == {
        ("params[0]", "crossed"),
        ("params[1]", "at"),
    }
    # Three flagged entries, each evaluated at h/10 and h/100: 4 evaluations apiece, all
    # through the evaluator it was given.
    assert fake.nfev - before == 3 * 4
    assert len(fake.every_call) == 1 + len(fake.calls)  # no evaluation bypassed the fake
    assert refined.compared.blocks[0].verdict == "fail"
    assert refined.compared.blocks[0].kinks == 2
    assert refined.compared.worst[0].name == "params[5]"


def test_the_kink_pass_leaves_a_clean_comparison_alone():
    x = np.linspace(0.5, 1.5, 9)
    check, fake, first = _first_pass(lambda v: v @ v, x, 2 * x)
    before = fake.nfev
    refined = _refine.run(check, first)
    assert refined.comparison is first.comparison
    assert refined.kinks == ()
    assert fake.nfev == before


# ------------------------------------------------------------------ the directions pass
def test_the_directions_pass_finds_the_wrong_entry_through_the_evaluator():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(200)
    grad = 2 * x
    grad[37] += 0.5
    check, fake, first = _first_pass(
        lambda v: v @ v, x, grad, rng=np.random.default_rng(1), directions=2, localize=8
    )
    assert first.compared.blocks[0].verdict == "untested"
    before = fake.nfev
    directed = _directions.run(check, first)
    block = directed.compared.blocks[0]
    assert block.verdict == "fail"
    assert block.localized == ("params[37]",)
    assert block.directions == 2
    spent = fake.nfev - before
    assert len(fake.every_call) == 1 + len(fake.calls)  # no evaluation bypassed the fake
    # 2 per direction, a halving search of about 4 log2(200) ~ 31, the confirming
    # coordinate check (2) and its look at smaller steps (4).
    assert 2 * 2 + 2 + 4 < spent <= 2 * 2 + 2 * 2 * 8 * 2 + 2 + 4


def test_a_direction_is_the_central_difference_of_the_reference():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(30)
    grad = np.cos(x)

    def f(v):
        return float(np.sin(v).sum())

    problem = _problem.build(f, x, grad, batched=False)
    fake = FakeEvaluator(problem)
    rel_step = _plan.relative_step("central", problem.theta.dtype, problem.loss_dtype)
    judge = Judge((1e-7, 1e-5), True, 1e-16, problem.tol_dtype)
    options = _options.validate(localize=0, directions=3)
    check = _check(problem, fake, options, np.random.default_rng(7), judge)
    result = _directions.check_block(check, 10, 20, 3)
    again = np.random.default_rng(7)
    for j in range(3):
        plus, minus = _plan.direction(x[10:20], rel_step, again)
        numeric, span = reference_directional(f, x, 10, 20, plus, minus)
        assert result.numeric[j] == numeric
        assert result.predicted[j] == grad[10:20] @ span
    assert result.verdict == "pass"


# ------------------------------------------------------------------ methods vs the reference
def _smooth():
    rng = np.random.default_rng(5)
    params = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}

    def f(p):
        return np.sum(np.sin(p["W"]) * np.cos(p["b"])) + np.sum(p["b"] ** 3)

    grad = {
        "W": np.cos(params["W"]) * np.cos(params["b"]),
        "b": -np.sum(np.sin(params["W"]), axis=0) * np.sin(params["b"]) + 3 * params["b"] ** 2,
    }
    return f, params, grad


def test_richardson_equals_the_reference():
    f, params, grad = _smooth()
    r = gradcheck.check(f, params, grad, method="richardson", noise=False, seed=0)
    got = np.concatenate([r.gradapprox["W"].ravel(), r.gradapprox["b"].ravel()])
    np.testing.assert_allclose(got, reference_richardson(f, params), rtol=1e-12, atol=1e-14)


def test_the_complex_step_equals_the_reference():
    f, params, grad = _smooth()
    r = gradcheck.check(f, params, grad, method="complex", noise=False, seed=0)
    got = np.concatenate([r.gradapprox["W"].ravel(), r.gradapprox["b"].ravel()])
    np.testing.assert_allclose(got, reference_complex_step(f, params), rtol=1e-15, atol=0)
    assert r.verdict == "pass"


def test_central_equals_the_reference_through_every_pass():
    f, params, grad = _smooth()
    r = gradcheck.check(f, params, grad, seed=0, directions=2, sample=10)
    idx = r.replay.indices
    want = reference_gradapprox(f, params)[idx]
    got = np.concatenate([r.gradapprox["W"].ravel(), r.gradapprox["b"].ravel()])[idx]
    np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------ rules a pass carries
def test_a_nondeterministic_f_is_inconclusive_even_when_its_differences_pass():
    # The note's floor, not its text, lifts the verdict: with the floor gone the check
    # would say "pass" on differences of 1e-7 relative.
    calls = iter(range(10**6))
    x = np.linspace(0.5, 1.5, 20)

    def f(v):
        return 0.5 * v @ v + 1e-12 * (next(calls) % 2)

    r = gradcheck.check(f, x, x, seed=0)
    assert all(b.verdict in ("pass", "warn") for b in r.blocks.values())
    assert r.verdict == "inconclusive"
    assert not r.passed
    assert any("not deterministic" in n for n in r.notes)


def test_the_untested_and_zero_counts_are_per_block():
    # W[1]'s derivative (1e-30) is far below what the differences resolve: untested. W[2]
    # is 0 on both sides (f does not move with it at this point): agreement. b is tested.
    params = {"W": np.array([1.0, 0.0, 0.0]), "b": np.array([2.0, 3.0])}

    def f(p):
        w = p["W"]
        return w[0] ** 2 + 1e-30 * w[1] + w[1] ** 2 * w[2] ** 2 + p["b"] @ p["b"]

    grads = {"W": np.array([2.0, 1e-30, 0.0]), "b": 2 * params["b"]}
    r = gradcheck.check(f, params, grads, seed=0)
    assert (r.blocks["W"].untested, r.blocks["W"].zeros) == (1, 1)
    assert (r.blocks["b"].untested, r.blocks["b"].zeros) == (0, 0)
    assert r.verdict == "pass"


def test_an_f_that_changes_its_input_during_the_directions_is_caught():
    # f writes to block b while the directions perturb block a: the restore of a's range
    # cannot hide it, only the check after the directions can.
    calls = iter(range(10**6))
    params = {"a": np.linspace(1.0, 2.0, 5), "b": np.ones(3)}

    def f(p):
        if next(calls) == 2:  # the second point of a's direction
            p["b"][0] += 1.0
        return p["a"] @ p["a"] + p["b"] @ p["b"]

    grads = {"a": 2 * params["a"], "b": 2 * params["b"]}
    with pytest.raises(ValueError, match=r"f modified its input in place: b\[0\]"):
        gradcheck.check(f, params, grads, directions=1, noise=False, seed=0)
    assert np.array_equal(params["b"], np.ones(3))


def test_a_kink_the_coordinates_and_the_directions_both_meet_is_listed_once():
    params = {"a": np.array([0.0]), "w": np.linspace(-1.0, 1.0, 4)}

    def f(p):
        return np.maximum(p["a"], 0).sum() + 0.5 * p["w"] @ p["w"]

    grads = {"a": np.array([1.0]), "w": params["w"]}
    # Every coordinate (sample=5 of 5) and a direction per block: both passes meet a[0].
    r = gradcheck.check(f, params, grads, sample=5, directions=1, seed=0, noise=False)
    names = [k.name for k in r.kinks]
    assert names.count("a[0]") == 1, names
    assert r.blocks["a"].localized == ()
