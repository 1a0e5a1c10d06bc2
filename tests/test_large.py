"""Large models: stratified sampling, directions that localise, budgets, Dask."""

import numpy as np
import pytest

import gradcheck
from gradcheck import _budget, _policy, _sample

from .models import Separable
from .reference import reference_gradapprox


@pytest.fixture(scope="module")
def million():
    """A 1,000,000-parameter model whose W gradient is 50% off on 1% of its entries."""
    model = Separable({"W": 999_000, "b": 1_000})
    good = model.grad()
    bad = {k: v.copy() for k, v in good.items()}
    wrong = np.random.default_rng(1).choice(999_000, 9_990, replace=False)
    bad["W"][wrong] *= 1.5
    return model, good, bad, set(wrong.tolist())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sample_fails_a_one_percent_bug_for_every_seed(million, seed):
    model, _, bad, _ = million
    r = gradcheck.check(model.loss, model.params, bad, sample=1000, seed=seed, noise=False)
    assert r.verdict == "fail"
    assert r.failing == ("W",)
    assert r.checked == 1000
    assert r.kinks == ()
    # 2 per coordinate, plus 4 for each disagreeing entry looked at again (at most 64).
    assert 1 + 2 * 1000 < r.nfev <= 1 + 2 * 1000 + 4 * 64


def test_sample_passes_a_correct_gradient(million):
    model, good, _, _ = million
    r = gradcheck.check(model.loss, model.params, good, sample=1000, seed=0)
    assert r.passed
    assert "checked 1,000 of 1,000,000 coordinates in 2 blocks" in str(r)


def test_directions_fail_a_one_percent_bug_and_name_wrong_entries(million):
    model, _, bad, wrong = million
    r = gradcheck.check(model.loss, model.params, bad, directions=4, seed=0)
    assert r.verdict == "fail"
    assert r.failing == ("W",)
    assert r.checked == 0
    found = r.blocks["W"].localized
    assert len(found) == 8  # the default bound
    assert {int(name[2:-1]) for name in found} <= wrong
    # 2 evaluations per direction and block, plus about 4 log2(n) per entry found.
    assert r.nfev <= 1 + 2 * 4 * 2 + 8 * 4 * 2 * 20


def test_directions_pass_a_correct_gradient(million):
    model, good, _, _ = million
    r = gradcheck.check(model.loss, model.params, good, directions=4, seed=0, noise=False)
    assert r.passed
    assert r.nfev == 1 + 2 * 4 * 2
    assert all(b.localized == () for b in r.blocks.values())


def test_sampling_names_a_small_block_with_a_sign_error():
    model = Separable({"W": 200_000, "b": 10})
    grad = model.grad()
    grad["b"] = -grad["b"]
    r = gradcheck.check(model.loss, model.params, grad, sample=2000, seed=3)
    assert r.failing == ("b",)
    assert r.blocks["b"].checked == 10  # small blocks are checked whole
    assert r.blocks["W"].checked == 1990
    assert r.blocks["b"].difference == pytest.approx(1.0)


def test_localisation_finds_one_wrong_coordinate_cheaply():
    model = Separable({"W": 100_000})
    grad = model.grad()
    grad["W"][31_337] += 3.0
    r = gradcheck.check(model.loss, model.params, grad, directions=4, seed=5)
    assert r.blocks["W"].localized == ("W[31337]",)
    # A coordinate check of the block costs 200,000 evaluations; the search about 4 log2(n).
    assert r.nfev < 1 + 2 * 4 + 4 * 2 * 17
    assert r.failing == ("W",)


def test_localize_zero_turns_the_search_off():
    model = Separable({"W": 10_000})
    grad = model.grad()
    grad["W"][7] += 3.0
    r = gradcheck.check(
        model.loss, model.params, grad, directions=3, localize=0, seed=0, noise=False
    )
    assert r.failing == ("W",)
    assert r.blocks["W"].localized == ()
    assert r.nfev == 1 + 2 * 3


def test_same_seed_same_coordinates_and_result():
    model = Separable({"W": 5_000, "b": 20})
    grad = model.grad()
    a = gradcheck.check(model.loss, model.params, grad, sample=0.05, directions=2, seed=11)
    b = gradcheck.check(model.loss, model.params, grad, sample=0.05, directions=2, seed=11)
    assert a.difference == b.difference
    assert a.blocks["W"].direction_difference == b.blocks["W"].direction_difference
    np.testing.assert_array_equal(a.gradapprox["W"], b.gradapprox["W"])
    c = gradcheck.check(model.loss, model.params, grad, sample=0.05, seed=12)
    checked_a = np.flatnonzero(~np.isnan(a.gradapprox["W"]))
    checked_c = np.flatnonzero(~np.isnan(c.gradapprox["W"]))
    assert not np.array_equal(checked_a, checked_c)
    # The noise probe and the directions draw from streams of their own: turning them off
    # leaves the sampled coordinates as they were.
    d = gradcheck.check(model.loss, model.params, grad, sample=0.05, seed=11, noise=False)
    checked_d = np.flatnonzero(~np.isnan(d.gradapprox["W"]))
    np.testing.assert_array_equal(checked_a, checked_d)


def test_sampled_entries_match_the_reference():
    model = Separable({"W": 300, "b": 5}, seed=2)
    r = gradcheck.check(model.loss, model.params, model.grad(), sample=40, seed=4)
    full = reference_gradapprox(model.loss, model.params)
    got = np.concatenate([r.gradapprox["W"], r.gradapprox["b"]])
    mask = ~np.isnan(got)
    assert mask.sum() == 40
    np.testing.assert_allclose(got[mask], full[mask], rtol=1e-12)


def test_sample_sizes_are_stratified():
    sizes = np.array([10, 200_000, 31, 5_000_000])
    take = _sample.sample_sizes(sizes, 2000)
    assert take[0] == 10
    assert take[2] == 31
    assert take.sum() == 2000
    # Beyond the floors and the biases, the rest goes in proportion to size (25:1).
    assert 20 * take[1] < take[3] < 30 * take[1]
    assert _sample.sample_sizes(sizes, 1.0).tolist() == sizes.tolist()
    # A total too small for 4 coordinates per block pools the blocks: still 3 in all.
    assert _sample.sample_sizes(sizes, 3).sum() == 3
    # 0.07 * 300 is 21.000000000000004 in binary: still 21 coordinates, not 22.
    assert _sample.sample_sizes(np.array([300]), 0.07).tolist() == [21]
    assert _sample.sample_sizes(np.array([600]), 0.07).tolist() == [42]


def _six_blocks():
    # Biases of up to 32 entries: the old rule checked them whole and left one coordinate
    # each to the weights.
    sizes = {"W1": (20, 32), "b1": (32,), "W2": (32, 32), "b2": (32,), "W3": (32, 10)}
    sizes["b3"] = (10,)
    rng = np.random.default_rng(0)
    params = {k: rng.standard_normal(s) for k, s in sizes.items()}
    return params, {k: 2 * v for k, v in params.items()}


def test_sample_is_shared_so_that_no_block_starves():
    params, grad = _six_blocks()
    r = gradcheck.check(
        lambda p: sum((v**2).sum() for v in p.values()),
        params,
        grad,
        sample=50,
        seed=0,
        noise=False,
    )
    assert r.checked <= 60
    assert min(b.checked for b in r.blocks.values()) >= 4
    assert max(b.miss_probability(0.01) for b in r.blocks.values()) < 0.96


def test_sample_over_many_tiny_blocks_pools_them():
    params = [np.array([1 + k / 10_000]) for k in range(10_000)]
    grad = [2 * p for p in params]
    r = gradcheck.check(
        lambda p: sum(float(v[0]) ** 2 for v in p), params, grad, sample=100, seed=0, noise=False
    )
    assert r.passed
    assert 100 <= r.checked <= 200
    # Which tiny blocks are looked at is random: another seed, others.
    again = gradcheck.check(
        lambda p: sum(float(v[0]) ** 2 for v in p), params, grad, sample=100, seed=1, noise=False
    )
    assert not np.array_equal(r.replay.indices, again.replay.indices)


def test_directions_lower_the_miss_probability():
    model = Separable({"W": 1_000})
    alone = gradcheck.check(model.loss, model.params, model.grad(), directions=2, seed=0)
    b = alone.blocks["W"]
    assert b.checked == 0
    # Two directions miss together while |Ve|^2 / (|Ve|^2 + |Vg|^2), Beta(1, 1) (uniform),
    # stays below w = r^2 / (1 + r^2), r = 2 t / ((1 - t) sqrt(q)), t = 1e-5, q = 0.01.
    # (Taking each direction to miss on its own, ((2 / pi) atan r)^2, was 2.5 times lower.)
    t = b.tol[1]
    r = 2 * t / ((1 - t) * 0.1)
    assert b.miss_probability(0.01) == pytest.approx(r * r / (1 + r * r), rel=1e-9)
    assert b.miss_probability(0.01) < 1e-6
    row = next(line for line in str(alone).splitlines() if line.strip().startswith("W "))
    assert "nan" not in row  # no entry compared one by one: "-", not a NaN error


def test_miss_probability_is_the_hypergeometric_tail():
    model = Separable({"W": 1_000})
    r = gradcheck.check(model.loss, model.params, model.grad(), sample=100, seed=0)
    block = r.blocks["W"]
    # 10 bad entries among 1000, 100 drawn without replacement: prod (890 - i) / (1000 - i).
    expected = np.prod([(990 - i) / (1000 - i) for i in range(100)])
    assert block.miss_probability(0.01) == pytest.approx(expected, rel=1e-10)
    assert block.miss_probability(0.01) < 0.99**100  # below the with-replacement bound


def _costing(clock, f, seconds):
    """``f`` at ``seconds`` a call on the test's fake clock (tests/clock.py)."""

    def costly(p):
        clock.spend(seconds)
        return f(p)

    return costly


def test_budget_fits_the_check_and_says_so(fake_clock):
    model = Separable({"W": 200_000, "b": 10})
    loss = _costing(fake_clock, model.loss, 0.01)
    r = gradcheck.check(loss, model.params, model.grad(), budget=2.0, seed=0)
    assert r.budget == 2.0
    assert 0 < r.checked < 200_010
    assert r.directions >= 1
    assert "budget 2 s" in str(r)
    # A full check would take 400,000 evaluations, over an hour at 10 ms; the budget holds
    # the whole call.
    assert r.seconds <= 2.0
    small = Separable({"W": 20})
    r = gradcheck.check(
        _costing(fake_clock, small.loss, 0.01), small.params, small.grad(), budget=10.0
    )
    assert r.checked == 20
    assert r.directions == 0


def test_ten_million_parameters_fit_in_memory():
    model = Separable({"W": 10_000_000})
    r = gradcheck.check(model.loss, model.params, model.grad(), sample=50, directions=2, seed=0)
    assert r.passed
    assert r.checked == 50


@pytest.mark.parametrize(
    "bad_option",
    [
        {"sample": 0},
        {"sample": 1.5},
        {"sample": -3},
        {"directions": 0},
        {"localize": -1},
        {"budget": 0},
        {"progress": "yes"},
    ],
)
def test_bad_large_options(bad_option):
    with pytest.raises((ValueError, TypeError), match=next(iter(bad_option))):
        gradcheck.check(lambda x: x @ x, np.ones(3), 2 * np.ones(3), **bad_option)


def test_progress_bar_writes_to_stderr(capsys):
    pytest.importorskip("tqdm")
    x = np.linspace(-1, 1, 50)
    gradcheck.check(lambda x: x @ x, x, 2 * x, progress=True)
    assert "gradcheck" in capsys.readouterr().err


def test_budget_plans_what_one_evaluation_time_allows(fake_clock, monkeypatch):
    # 10 ms an evaluation on the test's clock, whatever the machine: 20 s buy 2,000 of them,
    # and the deadline never cuts the check short. The plan alone: no rounds of directions
    # on the time it leaves (test_reach sees those).
    monkeypatch.setattr(_policy, "MORE_DIRECTIONS", 0)
    model = Separable({"W": 200_000, "b": 10})
    loss = _costing(fake_clock, model.loss, 0.01)
    r = gradcheck.check(loss, model.params, model.grad(), budget=20.0, seed=0)
    # The first call, three timings, a direction's point and the noise probe are paid
    # first; the plan may take 80% of what they leave (the rest is kept for the passes
    # after it): 4 directions per block (16 evaluations), time kept for localising one
    # wrong entry of W (search), the rest coordinates, 2 each.
    assert r.directions == 4
    search = _budget.search_cost(200_000, 8)
    # Nothing was cut short (the only note may say whether the plan ran on workers: on
    # this clock they never pay).
    assert [n for n in r.notes if "workers" not in n] == []
    first = 1 + 3 + 1
    assert r.nfev <= first + _policy.NOISE_MOST + 1600
    planned = 0.8 * (2000 - first - _policy.NOISE_MOST) - 16 - search
    assert (1600 - 16 - search) // 2 >= r.checked >= planned // 2
    richardson = gradcheck.check(
        loss, model.params, model.grad(), budget=20.0, seed=0, method="richardson"
    )
    # Four evaluations a coordinate: half as many checked (the same time paid before the
    # plan, to the evaluation).
    assert richardson.checked == r.checked // 2


def _relu_near_zero(n=4096, seed=0):
    """sum(relu(x)) + x.x/2 with five entries within the step of their kink."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 2, n) * rng.choice([-1, 1], n)
    near = rng.choice(n, 5, replace=False)
    x[near] = rng.choice([-1, 1], 5) * 1e-7

    def f(x):
        return np.maximum(x, 0).sum() + 0.5 * x @ x

    return f, x, (x > 0) + x, near


@pytest.mark.parametrize("seed", range(3))
def test_the_search_names_the_bug_not_the_kinks(seed):
    f, x, g, _ = _relu_near_zero()
    g[1000] += 1.0
    r = gradcheck.check(f, x, g, directions=4, seed=seed)
    assert r.failing == ("params",)
    assert r.blocks["params"].localized == ("params[1000]",)


@pytest.mark.parametrize("seed", range(3))
def test_directions_that_disagree_only_at_kinks_do_not_fail(seed):
    f, x, g, near = _relu_near_zero()
    r = gradcheck.check(f, x, g, directions=4, seed=seed)
    assert r.verdict == "inconclusive"
    assert r.blocks["params"].localized == ()
    assert "sits at or near a kink" in r.blocks["params"].diagnosis
    assert {k.name for k in r.kinks} <= {f"params[{i}]" for i in near}
    # Coordinates judge what the directions cannot: the kinks are found and left out.
    assert gradcheck.check(f, x, g, sample=None, seed=seed).passed


@pytest.mark.parametrize("seed", range(3))
def test_the_search_does_not_name_entries_where_f_is_not_finite(seed):
    # f is NaN once x[5] turns negative. The whole block's direction, normalised over 2048
    # entries, moves x[5] by about 1.3e-7 and mostly keeps f finite; directions over the
    # short ranges the search splits [0, 64) into move it further and meet NaN.
    x = np.linspace(1.0, 2.0, 2048)
    x[5] = 4e-7
    g = x.copy()
    g[40] += 1.0

    def f(x):
        return 0.5 * x @ x + (np.nan if x[5] < 0 else 0.0)

    r = gradcheck.check(f, x, g, directions=4, seed=seed)
    assert r.failing == ("params",)
    assert r.blocks["params"].localized == ("params[40]",)


@pytest.mark.parametrize("method", ["forward", "richardson", "complex"])
def test_directions_use_central_steps_whatever_the_method(method):
    x = np.linspace(0.5, 2.0, 50)

    def f(x):
        return np.sum(x**3)

    central = gradcheck.check(f, x, 3 * x**2, directions=3, seed=0)
    r = gradcheck.check(f, x, 3 * x**2, method=method, directions=3, seed=0)
    assert r.verdict == "pass"
    assert r.blocks["params"].direction_difference == central.blocks["params"].direction_difference
    g = 3 * x**2
    g[7] *= 1.05
    assert gradcheck.check(f, x, g, method=method, directions=3, seed=0).failing == ("params",)


@pytest.mark.parametrize("seed", range(3))
def test_a_search_stopped_by_kinks_still_fails_the_bug_behind_them(seed):
    # Twelve near-kink entries before the bug: the search stops at its 8 before reaching it.
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 2, 4096) * rng.choice([-1, 1], 4096)
    near = np.arange(100, 1300, 100)
    x[near] = rng.choice([-1, 1], near.size) * 1e-7

    def f(x):
        return np.maximum(x, 0).sum() + 0.5 * x @ x

    g = (x > 0) + x
    g[3000] += 1.0
    r = gradcheck.check(f, x, g, directions=4, seed=seed)
    assert r.failing == ("params",)
    assert "raise localize=" in r.blocks["params"].diagnosis
    found = gradcheck.check(f, x, g, directions=4, seed=seed, localize=32)
    assert "params[3000]" in found.blocks["params"].localized


@pytest.mark.parametrize("seed", range(3))
def test_the_search_confirms_entries_by_the_tolerance_the_user_gave(seed):
    x = np.linspace(0.5, 2.0, 64)
    g = np.exp(x)
    g[10] *= 1 + 2e-6
    f = lambda x: np.sum(np.exp(x))  # noqa: E731
    r = gradcheck.check(f, x, g, tol=(1e-9, 1e-8), directions=4, seed=seed)
    assert r.failing == ("params",)
    assert r.blocks["params"].localized == ("params[10]",)


def test_directions_of_a_complex_step_check_are_held_to_real_thresholds():
    # A 3e-8 relative error: within the central thresholds (warn at most), far outside the
    # complex step's 1e-8. Directions take central steps, so they must judge like them.
    x = np.linspace(0.5, 2.0, 50)
    g = 3 * x**2 * (1 + 3e-8)
    r = gradcheck.check(lambda x: np.sum(x**3), x, g, method="complex", directions=3, seed=0)
    assert r.checked == 0
    assert r.passed
