"""What a check could have missed (``BlockResult.reach``), its negative control
(``control=True``), and a budget's spare time spent on more directions.

The figures are bounds and chances from the judge's own rules; these tests hold them to
what the check really does: errors of the stated size planted in the gradient fail the
check, smaller ones need not, and the stated chances of a miss match the misses counted
over seeds.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

import gradcheck
from gradcheck import _chance, _policy
from gradcheck._chance import Spread

from .models import Separable
from .test_budget import CostlyModel
from .test_reading import demo_problem

README = Path(__file__).resolve().parents[1] / "README.md"


def _binomial_band(p: float, n: int, z: float = 4.0) -> tuple[float, float]:
    """Where a share of misses over ``n`` draws of chance ``p`` lies, ``z`` spreads wide."""
    spread = z * math.sqrt(max(p * (1 - p), 1 / n) / n)
    return p - spread, p + spread


def test_every_block_of_every_report_says_what_it_could_have_missed():
    f, params, grad = demo_problem(buggy=False)
    r = gradcheck.check(f, params, grad, seed=0)
    for b in r.blocks.values():
        assert b.reach is not None
        assert 0 < b.reach.factor < 1e-4  # the fail threshold 1e-5 on a difference ~ c / 2
        assert 0 < b.reach.entry < 1e-3
        assert b.reach.seen == 1.0  # every entry checked
    text = str(r)
    assert text.count("could have missed") == 1  # one line for a check of every entry
    assert "a factor within" in text
    data = json.loads(json.dumps(r.to_dict()))
    assert data["blocks"]["W1"]["reach"]["factor"] == pytest.approx(r.blocks["W1"].reach.factor)


def test_a_factor_of_the_stated_size_fails_and_half_of_it_does_not():
    f, params, grad = demo_problem(buggy=False)
    r = gradcheck.check(f, params, grad, seed=0)
    for name, b in r.blocks.items():
        c = b.reach.factor
        key = f"d{name}"
        caught = gradcheck.check(f, params, {**grad, key: grad[key] * (1 + c)}, seed=0)
        assert name in caught.failing, (name, c)
        half = gradcheck.check(f, params, {**grad, key: grad[key] * (1 + c / 2)}, seed=0)
        assert name not in half.failing, (name, c)


def test_one_entry_off_by_the_stated_error_fails_for_half_the_entries_at_least():
    # reach.entry is the smallest failing error of the median entry: at least half of the
    # entries that are not 0 fail at it.
    model = Separable({"W": 200})
    r = gradcheck.check(model.loss, model.params, model.grad(), seed=0)
    x = r.blocks["W"].reach.entry
    g = model.grad()
    failed = 0
    for i in range(0, 200, 5):
        planted = {"W": g["W"].copy()}
        planted["W"][i] *= 1 + x
        failed += gradcheck.check(model.loss, model.params, planted, seed=0).verdict == "fail"
    assert failed >= 40 // 2
    # A twentieth of it is lost in what the entries' noise and tolerance allow.
    planted = {"W": g["W"].copy()}
    planted["W"][:200:5] *= 1 + x / 20
    assert gradcheck.check(model.loss, model.params, planted, seed=0).verdict != "fail"


@pytest.mark.parametrize(
    ("options", "bad", "error"),
    [
        ({"sample": 100}, 8, 0.01),  # coordinates alone: the hypergeometric tail, exactly
        ({"directions": 1}, 1, 0.003),  # one direction, one entry off by 0.3% of the RMS
        ({"directions": 2}, 2, 0.001),
    ],
)
def test_the_stated_chance_of_a_miss_is_the_one_seen_over_seeds(options, bad, error):
    n, seeds = 1000, 80
    model = Separable({"W": n})
    g = model.grad()["W"]
    rms = float(np.sqrt(np.mean(g * g)))
    first = gradcheck.check(model.loss, model.params, {"W": g}, seed=0, noise=False, **options)
    b = first.blocks["W"]
    t = b.tol[1] + (b.direction_difference if b.directions else 0.0)
    spread = Spread.of(model.params["W"], g, absolute=False)
    stated = _chance.fraction_miss(n, b.checked, b.directions, t, bad, error, spread)
    missed = 0
    for seed in range(seeds):
        rng = np.random.default_rng(1000 + seed)
        planted = g.copy()
        planted[rng.choice(n, bad, replace=False)] += error * rms * rng.choice([-1, 1], bad)
        r = gradcheck.check(
            model.loss, model.params, {"W": planted}, seed=seed, noise=False, localize=0, **options
        )
        missed += r.verdict != "fail"
    low, high = _binomial_band(stated, seeds)
    assert 0.02 < stated < 0.98  # a chance a test can see either way
    assert low <= missed / seeds <= high, (stated, missed / seeds)


def test_one_wrong_entry_is_caught_as_often_as_the_report_says():
    n, seeds = 1000, 80
    model = Separable({"W": n})
    g = model.grad()["W"]
    rms = float(np.sqrt(np.mean(g * g)))
    options = {"sample": 30, "directions": 1, "noise": False, "localize": 0}
    first = gradcheck.check(model.loss, model.params, {"W": g}, seed=0, **options)
    reach = first.blocks["W"].reach
    caught = 0
    for seed in range(seeds):
        rng = np.random.default_rng(2000 + seed)
        planted = g.copy()
        planted[rng.integers(n)] += reach.error * rms * rng.choice([-1, 1])
        r = gradcheck.check(model.loss, model.params, {"W": planted}, seed=seed, **options)
        caught += r.verdict == "fail"
    low, high = _binomial_band(reach.single, seeds)
    assert 0.02 < reach.single < 0.98
    assert low <= caught / seeds <= high, (reach.single, caught / seeds)


def test_the_stated_fraction_is_caught_nineteen_times_in_twenty():
    n, seeds = 1000, 60
    model = Separable({"W": n})
    g = model.grad()["W"]
    rms = float(np.sqrt(np.mean(g * g)))
    r = gradcheck.check(model.loss, model.params, {"W": g}, seed=0, sample=40, noise=False)
    reach = r.blocks["W"].reach
    bad = math.ceil(reach.fraction * n)
    assert 0 < bad < n
    missed = 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        planted = g.copy()
        planted[rng.choice(n, bad, replace=False)] += reach.error * rms
        again = gradcheck.check(
            model.loss, model.params, {"W": planted}, seed=0, sample=40, noise=False
        )
        missed += again.verdict != "fail"
    assert missed / seeds <= _binomial_band(1 - _policy.REACH_PROBABILITY, seeds)[1]


def test_a_sampled_report_says_what_each_block_could_have_missed():
    model = Separable({"W": 5_000, "b": 10})
    r = gradcheck.check(model.loss, model.params, model.grad(), sample=100, seed=0)
    w = r.blocks["W"]
    assert w.reach.seen == pytest.approx(w.checked / 5_000)
    assert 0 < w.reach.fraction < 1
    text = str(r)
    assert (
        f"W could have missed: the block off by a factor within {w.reach.factor:.3g} of 1" in text
    )
    assert f"any error in the {5_000 - w.checked:,} of 5,000 entries not checked one by one" in text
    miss = 1 - w.reach.single
    assert (
        f"one wrong entry (off by 1% of the RMS entry) unseen with probability {miss:.2g}" in text
    )


def test_directions_alone_state_a_factor_and_a_fraction_but_no_entry():
    model = Separable({"W": 10_000})
    r = gradcheck.check(model.loss, model.params, model.grad(), directions=4, seed=0)
    reach = r.blocks["W"].reach
    assert reach.factor < 1e-4
    assert math.isnan(reach.entry)
    assert reach.seen == 0.0
    assert reach.fraction < 0.01
    assert "W (no entry checked one by one) could have missed" in str(r)


def test_the_directions_miss_chance_is_their_rule_simulated():
    # k Gaussian directions scaled by max(1, |x|), the block's own rule d <= t, counted.
    model = Separable({"W": 400})
    g, x = model.grad()["W"], model.params["W"]
    rms, scale = float(np.sqrt(np.mean(g * g))), np.maximum(1.0, np.abs(x))
    spread = Spread.of(x, g, absolute=False)
    rng = np.random.default_rng(0)
    t, draws = 1e-5, 4000
    for k, bad in ((1, 1), (2, 3), (4, 1)):
        missed = 0
        for _ in range(draws):
            e = np.zeros(g.size)
            e[rng.choice(g.size, bad, replace=False)] = 0.003 * rms * rng.choice([-1, 1], bad)
            z = rng.standard_normal((k, g.size)) * scale
            p, q = z @ (g + e), z @ g
            missed += np.linalg.norm(p - q) / (np.linalg.norm(p) + np.linalg.norm(q)) <= t
        stated = _chance.fraction_miss(g.size, 0, k, t, bad, 0.003, spread)
        low, high = _binomial_band(stated, draws)
        assert low <= missed / draws <= high, (k, bad, stated, missed / draws)


def test_betainc_is_the_regularised_incomplete_beta():
    special = pytest.importorskip("scipy.special")
    for a in (0.5, 1.0, 2.0, 8.0, 16.0):
        for x in (1e-9, 0.01, 0.3, 0.5, 0.8, 0.999):
            assert _chance.betainc(a, a, x) == pytest.approx(special.betainc(a, a, x), rel=1e-9)
    # One direction: the ratio of two independent normals is Cauchy.
    rho, t = 0.01, 1e-4
    expected = 2 / math.pi * math.atan(2 * t / ((1 - t) * rho))
    assert _chance.directions_miss(1, rho, t) == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- the negative control


def test_the_negative_control_fails_errors_of_the_stated_size_with_no_evaluation():
    f, params, grad = demo_problem(buggy=False)
    before = {k: v.copy() for k, v in grad.items()}
    plain = gradcheck.check(f, params, grad, seed=0)
    r = gradcheck.check(f, params, grad, seed=0, control=True)
    assert r.verdict == "pass"  # the control never changes the verdict
    assert r.nfev == plain.nfev  # judged on the differences already taken
    for name, b in r.blocks.items():
        kinds = {c.kind for c in b.controls}
        assert kinds == {"entry", "factor"}, name
        assert all(c.verdict == "fail" for c in b.controls), b.controls
    for k, v in before.items():
        np.testing.assert_array_equal(grad[k], v)  # the user's arrays untouched
        assert grad[k].flags.writeable
    assert "negative control: 12 of 12 errors planted" in str(r)
    assert json.loads(json.dumps(r.to_dict()))["blocks"]["W1"]["controls"][0]["verdict"] == "fail"
    assert all(not b.controls for b in plain.blocks.values())


def test_the_negative_control_covers_directions_and_skips_failing_blocks():
    model = Separable({"W": 2_000, "b": 10})
    grad = model.grad()
    grad["b"] = grad["b"] * 2
    r = gradcheck.check(model.loss, model.params, grad, directions=2, seed=0, control=True)
    assert r.failing == ("b",)
    assert r.blocks["b"].controls == ()
    (factor,) = r.blocks["W"].controls  # no entry checked one by one: no entry to plant
    assert factor.kind == "factor"
    assert factor.verdict == "fail"
    assert "no entry planted in W: none checked one by one" in str(r)


def test_control_must_be_a_bool():
    f, params, grad = demo_problem(buggy=False)
    with pytest.raises(TypeError, match="`control` must be True or False, got 'yes'"):
        gradcheck.check(f, params, grad, control="yes")


# ---------------------------------------------------------------- a budget's spare time


def test_a_passing_budget_spends_its_spare_time_on_directions(fake_clock, monkeypatch):
    model = CostlyModel(fake_clock, n=100_000)
    start = fake_clock.now
    r = gradcheck.check(model.loss, model.params, model.grad(), budget=5.0, seed=0)
    assert fake_clock.now - start <= 5.0
    assert r.verdict == "pass"
    assert r.directions > 4  # more than the plan's four
    assert r.blocks["W"].directions == r.directions
    monkeypatch.setattr(_policy, "MORE_DIRECTIONS", 0)
    planned = CostlyModel(fake_clock, n=100_000)
    lean = gradcheck.check(planned.loss, planned.params, planned.grad(), budget=5.0, seed=0)
    assert lean.directions <= 4
    # What the check could have missed shrinks with what it spent.
    assert r.blocks["W"].reach.fraction < lean.blocks["W"].reach.fraction


def test_a_failing_budget_spends_no_spare_rounds(fake_clock):
    model = CostlyModel(fake_clock, n=100_000)
    r = gradcheck.check(model.loss, model.params, model.grad(wrong=0.01), budget=5.0, seed=0)
    assert r.failing == ("W",)
    assert r.directions <= 4


def test_the_readme_example_prints_what_it_shows():
    text = README.read_text(encoding="utf-8")
    section = text.split("## What a check could have missed\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    (shown,) = re.findall(r"```text\n(.*?)```", section, re.S)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    printed = str(namespace["report"]).splitlines()
    # Every line, word for word; the numbers as this CPU's BLAS computes them (the sums'
    # order, and so their last digits, vary by CPU) and the time are left out.
    for line, want in zip(printed, shown.splitlines(), strict=True):
        assert _words(line) == _words(want)


def _words(line: str) -> str:
    return re.sub(r"[-+]?\d[\d,.]*(e[-+]?\d+)?%?", "#", line)


def test_a_block_passing_by_resolution_states_errors_that_fail_it():
    # s's gradient (~1e-10) lies below what the differences resolve next to w's large f:
    # the block passes by resolution whatever its difference, even with a fixed tol, so
    # only the entry rule can fail it, and its reach must say so (not the difference's).
    rng = np.random.default_rng(0)
    p = {"w": rng.standard_normal(20), "s": rng.standard_normal(5)}

    def f(p):
        return float(50 * np.sum(np.sin(3 * p["w"])) + 1e-10 * np.sum(p["s"] ** 2) / 2)

    g = {"w": 150 * np.cos(3 * p["w"]), "s": 1e-10 * p["s"]}
    r = gradcheck.check(f, p, g, tol=(1e-7, 1e-5), control=True, seed=0)
    s = r.blocks["s"]
    assert s.verdict == "pass"
    assert [c.verdict for c in s.controls] == ["fail", "fail"]
    scaled = {"w": g["w"], "s": g["s"] * (1 + s.reach.factor)}
    assert gradcheck.check(f, p, scaled, tol=(1e-7, 1e-5), seed=0).blocks["s"].verdict == "fail"


def test_entries_left_out_at_kinks_are_not_counted_as_seen():
    # Four of eight entries sit on ReLU's kink and are left out of the verdict: an error
    # there would not show, so the reach counts only the four judged.
    x = np.array([0, 0, 0, 0, 0.5, 1, -0.3, 0.8])

    def f(p):
        return float(np.sum(np.maximum(p, 0) * (1 + p)))

    r = gradcheck.check(f, x, np.where(x > 0, 1 + 2 * x, 0.0), seed=0)
    reach = r.blocks["params"].reach
    assert r.verdict == "pass"
    assert r.blocks["params"].kinks == 4
    assert reach.seen == pytest.approx(0.5)
    assert reach.single <= 0.5 + 1e-12
