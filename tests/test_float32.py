"""Verdicts to trust at float32, at zero and entry by entry (known answers and seed sweeps)."""

import re

import numpy as np
import pytest

import gradcheck

from . import models32

SEEDS = range(30)
BUG_SEEDS = range(10)


def _verdicts(make, bug=None, seeds=SEEDS, **options):
    f, params, grads = make(0, bug)
    return [gradcheck.check(f, params, grads, seed=s, **options) for s in seeds]


# ------------------------------------------------------------------ float32 that resolves
def test_a_correct_float32_layer_passes_on_every_seed():
    reports = _verdicts(models32.gelu_layer)
    assert sum(r.verdict == "pass" for r in reports) >= 29
    # f follows its input's dtype: evaluated on float64 copies, and the report says so;
    # the float32 gradient is held to what its own rounding leaves against them.
    assert all(r.tol == (1e-4, 1e-3) for r in reports)
    assert any("evaluated on float64 copies" in n for n in reports[0].notes)


@pytest.mark.slow
def test_a_correct_float32_mlp_passes_on_every_seed():
    reports = _verdicts(models32.tanh_mlp)
    assert sum(r.verdict == "pass" for r in reports) >= 29


@pytest.mark.parametrize(
    ("make", "bug", "block", "entry"),
    [
        (models32.gelu_layer, "W", "W", None),
        (models32.gelu_layer, "W2x", "W", None),
        (models32.gelu_layer, "x-entry", "x", "x[3, 5]"),
        (models32.tanh_mlp, "W1", "W1", None),
        (models32.tanh_mlp, "W1-2x", "W1", None),
        (models32.tanh_mlp, "W1-entry", "W1", "W1[7, 3]"),
        (models32.rnn, "Wx", "Wx", None),
    ],
)
def test_float32_bugs_fail_on_every_seed_naming_the_block(make, bug, block, entry):
    for r in _verdicts(make, bug, seeds=BUG_SEEDS):
        assert r.verdict == "fail"
        assert r.failing == (block,)
        if entry is not None:
            assert r.worst[0].name == entry
            assert entry in r.blocks[block].diagnosis


def test_f_that_pins_float32_keeps_the_float32_rules():
    # f casts to float32 inside: its float64 copies give the same loss, so no widening.
    rng = np.random.default_rng(0)
    x = rng.standard_normal(50).astype(np.float32)

    def f(v):
        v = v.astype(np.float32)
        return np.float32(0.5) * (v * v).sum()

    r = gradcheck.check(f, x, x, seed=0)
    assert r.verdict == "pass"
    assert not any("float64 copies" in n for n in r.notes)
    assert "6.06e-06" not in r.step  # the float32 step, not float64's
    with pytest.raises(ValueError, match="evaluate='float64' needs f to follow"):
        gradcheck.check(f, x, x, evaluate="float64")


def test_native_evaluation_keeps_float32():
    f, params, grads = models32.gelu_layer(0)
    native = gradcheck.check(f, params, grads, seed=0, evaluate="native")
    wide = gradcheck.check(f, params, grads, seed=0)
    assert native.verdict == wide.verdict == "pass"
    assert wide.difference < native.difference
    # Finding out costs one evaluation, and it is counted.
    calls = []

    def counted(p):
        calls.append(None)
        return f(p)

    assert gradcheck.check(counted, params, grads, seed=0, noise=False).nfev == len(calls)
    with pytest.raises(ValueError, match="`evaluate` must be one of"):
        gradcheck.check(f, params, grads, evaluate="double")


# ------------------------------------------------------------------ zero on both sides
def test_both_zero_blocks_and_unused_parameters_pass_with_finite_thresholds():
    params = {"w": np.linspace(0.5, 1.5, 5), "unused": np.zeros(3), "a": np.array([0.0])}

    def f(p):
        return p["w"] @ p["w"] + p["a"][0] ** 2

    grads = {"w": 2 * params["w"], "unused": np.zeros(3), "a": np.zeros(1)}
    r = gradcheck.check(f, params, grads, seed=0)
    assert r.verdict == "pass", str(r)
    for name in ("unused", "a"):
        block = r.blocks[name]
        assert block.verdict == "pass"
        assert block.difference == 0.0
        assert block.tol == (1e-7, 1e-5)
        assert block.zeros == block.size
        assert block.untested == 0
    assert "exactly 0 on both sides" in str(r)
    assert "untested" not in str(r)


def test_a_wrong_value_where_the_numeric_gradient_is_zero_fails():
    params = {"w": np.linspace(0.5, 1.5, 5), "unused": np.zeros(3)}
    grads = {"w": 2 * params["w"], "unused": np.array([0.0, 1e-3, 0.0])}
    r = gradcheck.check(lambda p: p["w"] @ p["w"], params, grads, seed=0)
    assert r.failing == ("unused",)


# ------------------------------------------------------------------ entry by entry
def test_one_entry_five_percent_off_among_200_fails_its_block_and_leads_the_worst():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(200)
    grad = np.cos(x)
    grad[123] *= 1.05

    r = gradcheck.check(lambda v: np.sin(v).sum(), x, grad, seed=0)
    assert r.blocks["params"].difference < 1e-3  # the block's norm alone would not fail
    assert r.verdict == "fail"
    assert r.worst[0].name == "params[123]"
    assert "params[123] is wrong" in r.blocks["params"].diagnosis


def test_kinks_still_do_not_fail_a_block():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(40)
    x[:5] = rng.uniform(-2e-6, 2e-6, 5)  # within the step of the kink at 0

    def f(v):
        return np.maximum(v, 0).sum() + 0.5 * v @ v

    r = gradcheck.check(f, x, (x > 0) + x, seed=0)
    assert r.verdict == "pass", str(r)
    assert r.kinks


# ------------------------------------------------------------------ kinks that are not there
def test_no_kink_is_reported_on_a_smooth_curved_f():
    # exp(3000 x) is smooth but so curved that the default step's truncation error flags
    # entries: a tenth of the step removes it a hundredfold, which is no kink.
    x = np.linspace(-1e-3, 1e-3, 12)

    def f(v):
        return np.exp(3000 * v).sum()

    r = gradcheck.check(f, x, 3000 * np.exp(3000 * x), seed=0)
    assert r.verdict == "pass", str(r)
    assert r.kinks == ()
    assert any("truncation error of a curved f" in n for n in r.notes)


# ------------------------------------------------------------------ thresholds and words
def test_no_threshold_above_one_is_ever_applied_or_shown():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(30)

    def f(v):  # deterministic, but rough at the scale of the step
        return 1e-9 * (v @ v) + 1e-7 * np.sin(1e9 * v).sum()

    r = gradcheck.check(f, x, 2e-9 * x, seed=0)
    assert all(t <= 1.0 for b in r.blocks.values() for t in b.tol)
    shown = [float(t) for t in re.findall(r"(?:pass <=|fail >) ([0-9.e+-]+)", str(r))]
    assert shown
    assert max(shown) <= 1.0


def test_an_inconclusive_block_says_why_in_words():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(30)

    def f(v):  # a float32 loss far from zero: its rounding swamps the differences
        return np.float32(1e4 + 0.5 * v @ v)

    r = gradcheck.check(f, x, 1.03 * x, seed=0)
    block = r.blocks["params"]
    assert block.verdict == "inconclusive", str(r)
    assert "cannot tell" in block.diagnosis
    assert "params could not be judged" in str(r)


def test_an_added_term_is_not_called_a_factor():
    # A small regulariser beside a large data term: the best-fitting factor (about 0.98)
    # matches the gradient to 2%, but leaves most of the error unexplained.
    rng = np.random.default_rng(4)
    w = rng.standard_normal(50)
    data = rng.standard_normal(50)
    lam = 0.05

    def f(p):
        return data @ p + 0.5 * lam * p @ p

    halved = data + 0.5 * lam * w  # the regulariser's derivative halved
    r = gradcheck.check(f, w, halved, seed=0)
    assert r.verdict == "fail"
    assert "factor" not in (r.blocks["params"].diagnosis or "")
    doubled = gradcheck.check(f, w, 2 * (data + lam * w), seed=0)
    assert "2.00 x numeric (a wrong factor)" in doubled.blocks["params"].diagnosis


def test_user_thresholds_are_shown_as_given():
    # A fixed fail threshold above 1 is the user's to choose: not clipped, and no sentence
    # about noise (which did not raise it).
    x = np.linspace(0.5, 1.5, 6)
    r = gradcheck.check(lambda v: v @ v, x, 2 * x, tol=(0.5, 2.0), seed=0)
    assert r.blocks["params"].tol == (0.5, 2.0)
    assert "noise in f" not in str(r)


@pytest.mark.parametrize("error", [0.01, 0.005])
def test_float32_gradient_a_percent_or_half_off_fails_against_float64_differences(error):
    f, params, grads = models32.gelu_layer(0)
    off = {k: (g * np.float32(1 + error)).astype(np.float32) for k, g in grads.items()}
    for seed in range(3):
        r = gradcheck.check(f, params, off, seed=seed)
        assert r.verdict == "fail", str(r)


def test_float32_differences_that_leave_disagreeing_entries_at_warn_say_what_to_do():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(16).astype(np.float32)

    def f(v):
        v = v.astype(np.float32)  # pins float32: no widening
        return (np.tanh(v) * v).sum(dtype=np.float32)

    slope = np.tanh(x) + x * (1 - np.tanh(x) ** 2)
    r = gradcheck.check(f, x, (slope * np.float32(1.01)).astype(np.float32), seed=0)
    assert r.verdict == "warn", str(r)
    assert any("only 'warn'" in n and "evaluate='float64'" in n for n in r.notes)
    right = gradcheck.check(f, x, slope.astype(np.float32), seed=0)
    assert not any("only 'warn'" in n for n in right.notes)
