"""Verdicts that explain themselves: methods, noise, kinks, float32, diagnosis, step sweeps."""

import numpy as np
import pytest

import gradcheck

from . import models


def _smooth():
    x = np.array([0.3, -1.2, 2.0, 0.7])
    return (
        (lambda x: np.sum(np.exp(0.5 * x) * np.sin(x))),
        x,
        (np.exp(0.5 * x) * (0.5 * np.sin(x) + np.cos(x))),
    )


# ---------------------------------------------------------------- methods


def test_richardson_is_exact_for_quartics():
    # (4 D(h/2) - D(h)) / 3 cancels the h^2 term: exact up to degree 4, up to rounding.
    x = np.array([1.0, -2.0, 0.5])
    c = np.array([1.0, 0.5, -2.0])
    r = gradcheck.check(
        lambda x: c @ x**4 + x @ x**3,
        x,
        4 * c * x**3 + 4 * x**3,
        method="richardson",
        eps=2.0**-3,
        noise=False,
    )
    assert r.difference < 1e-14
    # Central differences at the same step are visibly off (error h^2 f''' / 6).
    central = gradcheck.check(
        lambda x: c @ x**4 + x @ x**3, x, 4 * c * x**3 + 4 * x**3, eps=2.0**-3, noise=False
    )
    assert central.difference > 1e-4


def test_richardson_is_more_accurate_than_central_on_a_smooth_function():
    f, x, g = _smooth()
    central = gradcheck.check(f, x, g, noise=False)
    richardson = gradcheck.check(f, x, g, method="richardson", noise=False)
    assert richardson.difference < central.difference / 3
    assert richardson.verdict == "pass"
    assert richardson.nfev == 1 + 4 * x.size


def test_complex_step_agrees_to_rounding():
    f, x, g = _smooth()
    r = gradcheck.check(f, x, g, method="complex", noise=False)
    assert r.difference < 1e-15
    assert r.verdict == "pass"
    assert r.tol == (1e-10, 1e-8)
    assert r.engine == "python"


def test_complex_step_catches_a_small_bug_central_cannot():
    f, x, g = _smooth()
    wrong = g * (1 + 1e-7)
    assert gradcheck.check(f, x, wrong, method="complex", noise=False).verdict == "fail"
    assert gradcheck.check(f, x, wrong, noise=False).verdict != "fail"


def test_complex_step_says_when_f_drops_the_imaginary_part():
    x = np.array([1.0, -2.0])
    with pytest.raises(ValueError, match="drops it somewhere"):
        gradcheck.check(lambda x: np.sum(np.abs(x) ** 2), x, 2 * x, method="complex")
    with pytest.raises(ValueError, match="drops it somewhere"):
        gradcheck.check(lambda x: float(np.sum(x.real**2)), x, 2 * x, method="complex")


def test_complex_step_self_test_flags_a_step_dependent_result():
    x = np.array([1.0, -2.0])

    def f(z):
        # Analytic part plus a term whose imaginary part grows like h^2 * 1e20: Im f / h
        # then depends on h, as a non-analytic operation would make it.
        if not np.iscomplexobj(z):
            return np.sum(z**2)
        return np.sum(z**2) + 1j * np.sum((z.imag * 1e10) ** 2)

    r = gradcheck.check(f, x, 2 * x, method="complex", noise=False)
    assert r.verdict in ("inconclusive", "fail")
    assert any("not complex-safe" in note for note in r.notes)


@pytest.mark.parametrize("engine", ["numba", "batched"])
def test_complex_step_runs_in_the_python_engine_only(engine):
    with pytest.raises(ValueError, match="method='complex' runs in the python engine"):
        gradcheck.check(
            models.cubic_flat,
            np.ones(3),
            models.cubic_grad(np.ones(3)),
            method="complex",
            engine=engine,
            batched=engine == "batched",
        )


# ---------------------------------------------------------------- noise


def test_a_nondeterministic_f_is_inconclusive_and_says_why():
    rng = np.random.default_rng(0)
    x = np.array([1.0, 2.0, 3.0])

    def f(x):
        return x @ x + 1e-6 * rng.standard_normal()  # dropout-like randomness

    r = gradcheck.check(f, x, 2 * x)
    assert r.verdict == "inconclusive"
    assert not r.passed
    assert any("not deterministic" in note for note in r.notes)
    assert "not deterministic" in str(r)


def test_a_spread_of_a_few_roundings_is_noise_not_nondeterminism():
    # Threaded reductions sum in varying order: f(params) moves in its last bits.
    calls = iter(range(10**6))
    x = np.array([1.0, 2.0, 3.0])

    def f(x):
        return x @ x * (1 + 4e-16 * (next(calls) % 3))

    r = gradcheck.check(f, x, 2 * x, seed=0)
    assert r.passed
    assert not r.notes


def test_coarsest_is_the_difference_a_five_percent_error_makes():
    from gradcheck import _policy
    from gradcheck._judge import Judge

    g = np.linspace(1.0, 2.0, 7)
    assert gradcheck.relative_difference(g, 1.05 * g) == pytest.approx(_policy.COARSEST)
    # Thresholds raised to 0.03 would let that error through: the verdict cannot be "pass".
    e_pred = 0.03 / _policy.RESOLVE
    judge = Judge.build(np.dtype(np.float64), "central", None, noise_f=0.0)
    # Norms of 1 on each side: the noise's bound over their sum is e_pred.
    verdict, shown = judge.block(_policy.COARSEST, 2 * e_pred, 1.0, 1.0)
    assert shown[1] == pytest.approx(0.03)
    assert verdict == "inconclusive"


def test_the_noise_probe_starts_at_the_loss_dtype_resolution():
    from gradcheck import _evaluator, _noise, _problem

    x = np.linspace(0.5, 1.5, 40)  # float64 parameters, a float32 loss

    def f(v):
        return np.float32(0.5) * (v.astype(np.float32) ** 2).sum()

    problem = _problem.build(f, x, x, batched=False)
    assert problem.dtype == np.float32
    evaluator = _evaluator.Evaluator(problem)
    rounding = _noise.rounding(problem.f0, np.dtype(np.float32))
    found = _noise.measure(problem, evaluator, np.random.default_rng(0))
    # The repeats, one line at the float32 spacing and its finer twin: no retries.
    assert evaluator.nfev - 1 == 2 + 8 + 8
    assert rounding <= found.level < 1e3 * rounding


def _jitter(x, level):
    """Deterministic noise of size ``level``: the same x always gives the same value, any
    other x an unrelated one, as an inner solver stopped at a tolerance does."""
    seed = int.from_bytes(np.ascontiguousarray(x).tobytes()[-16:], "little") % 2**63
    return level * np.random.default_rng(seed).uniform(-1, 1)


def _noisy(x):
    return 0.5 * x @ x + _jitter(x, 1e-9)


def test_thresholds_follow_a_noisy_loss():
    x = np.linspace(-1, 1, 20)
    fixed = gradcheck.check(_noisy, x, x, noise=False)
    probed = gradcheck.check(_noisy, x, x, seed=1)
    assert probed.noise > 1e-10  # found well above rounding (u |f| ~ 4e-16)
    assert fixed.verdict == "fail"  # rounding-only thresholds call a correct gradient wrong
    assert probed.passed
    assert probed.blocks["params"].tol[1] > 1e-5
    # A 5% error is still told apart.
    assert gradcheck.check(_noisy, x, 1.05 * x, seed=1).verdict == "fail"


def test_too_noisy_to_judge_is_inconclusive():
    x = np.linspace(-1, 1, 5)

    def f(x):
        return 0.5 * x @ x + _jitter(x, 1e-4)

    r = gradcheck.check(f, x, x, seed=0)
    assert r.verdict == "inconclusive"


# Odd functions summed over points symmetric about 0: f(params) ~ 0 by cancellation, while
# the rounding of f comes from its terms (~1e-15, not u |f0| ~ 1e-29).
SYMMETRIC = {
    "x**3": (lambda x: np.sum(x**3), lambda x: 3 * x**2),
    "sin": (lambda x: np.sum(np.sin(x)), np.cos),
    "x**5 - 2x**3": (lambda x: np.sum(x**5 - 2 * x**3), lambda x: 5 * x**4 - 6 * x**2),
    "tanh(3x)": (lambda x: np.sum(np.tanh(3 * x)), lambda x: 3 / np.cosh(3 * x) ** 2),
    "x exp(-x^2)": (
        lambda x: np.sum(x * np.exp(-x * x)),
        lambda x: (1 - 2 * x * x) * np.exp(-x * x),
    ),
}


def test_a_correct_gradient_of_a_sum_that_cancels_to_zero_passes():
    x = np.linspace(-1, 1, 2000)
    r = gradcheck.check(lambda x: np.sum(x**3), x, 3 * x**2, seed=0)
    assert abs(np.sum(x**3)) < 1e-12
    assert r.verdict == "pass", str(r)
    # The probe read the terms' rounding, far above u |f0|.
    assert r.noise > 1e-16


@pytest.mark.parametrize("wrong", ["one entry near 0", "a factor 1.001"])
def test_a_wrong_gradient_of_a_sum_that_cancels_to_zero_still_fails(wrong):
    x = np.linspace(-1, 1, 2000)
    g = 3 * x**2
    if wrong == "one entry near 0":
        g[1000] *= 1.5  # 7.5e-7 -> 1.1e-6, where the terms' rounding is largest
    else:
        g *= 1.001
    r = gradcheck.check(lambda x: np.sum(x**3), x, g, seed=0)
    assert r.verdict == "fail", str(r)
    if wrong == "one entry near 0":
        assert r.worst[0].name == "params[1000]"


@pytest.mark.parametrize("name", list(SYMMETRIC))
@pytest.mark.parametrize(("n", "scale"), [(501, 1.0), (4000, 3.0)])
def test_odd_functions_summed_to_zero_pass_right_and_fail_wrong(name, n, scale):
    f, grad = SYMMETRIC[name]
    x = np.linspace(-scale, scale, n)
    g = grad(x)
    right = gradcheck.check(f, x, g, seed=n)
    assert right.verdict == "pass", str(right)
    wrong = g.copy()
    wrong[n // 2 + 1] += 1e-3 * np.abs(g).max()  # next to 0, where f's rounding dominates
    assert gradcheck.check(f, x, wrong, seed=n).verdict == "fail"


def test_ecnoise_reads_a_line_through_zero_by_its_bends_not_by_abs_f():
    from gradcheck import _noise

    t = np.arange(-4, 5)
    noise = 1e-15 * np.random.default_rng(0).standard_normal(9)
    line = (3e-10 * t + noise).tolist()  # f crosses 0 on it: no line is flat against |f|
    assert _noise.crosses_zero(line)
    assert _noise.ecnoise(line) == (None, "too large")
    level, verdict = _noise.ecnoise(line, flat=False)
    assert verdict == "ok"
    assert level is not None
    assert 1e-16 < level < 1e-14
    # A line straight to the last bit shows the slope moving in steps of its rounding: no
    # level to read there, and the coarser reading stands.
    assert _noise.ecnoise((2.0**-40 * t).tolist(), flat=False) == (None, "too small")


# ---------------------------------------------------------------- kinks


def test_relu_at_and_near_its_kink_is_not_a_bug():
    x = np.array([0.0, 1.0, -2.0, 0.5, 3e-7, -1e-7])

    def f(x):
        return np.maximum(x, 0).sum() + 0.5 * x @ x

    r = gradcheck.check(f, x, (x > 0) + x)
    assert r.verdict == "pass"
    kinds = {k.name: k.kind for k in r.kinks}
    assert kinds == {"params[0]": "at", "params[4]": "crossed", "params[5]": "crossed"}
    assert r.blocks["params"].kinks == 3
    assert "disagree only at kinks" in str(r)


def test_a_real_bug_next_to_kinks_still_fails():
    x = np.array([0.0, 1.0, -2.0, 0.5, 3e-7, -1e-7])
    g = (x > 0) + x
    g[1] += 0.01

    def f(x):
        return np.maximum(x, 0).sum() + 0.5 * x @ x

    r = gradcheck.check(f, x, g)
    assert r.failing == ("params",)
    assert r.worst[0].name == "params[1]"
    assert "params[1]" not in {k.name for k in r.kinks}


def _zero_sample_relu_net():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((4, 8))
    X[:, 0] = 0.0  # a zero sample: every first-layer unit sits exactly on its kink
    p = {"W1": rng.standard_normal((6, 4)), "b1": np.zeros(6), "w2": rng.standard_normal(6)}

    def f(p):
        return np.sum(p["w2"] @ np.maximum(p["W1"] @ X + p["b1"][:, None], 0))

    def grad(p):
        z = p["W1"] @ X + p["b1"][:, None]
        mask = (z > 0) * p["w2"][:, None]
        return {"W1": mask @ X.T, "b1": mask.sum(axis=1), "w2": np.maximum(z, 0).sum(axis=1)}

    return f, p, grad


def test_relu_network_with_a_zero_sample_passes_where_f_is_smooth():
    f, p, grad = _zero_sample_relu_net()
    r = gradcheck.check(f, p, grad(p), seed=0)
    assert r.blocks["W1"].verdict == r.blocks["w2"].verdict == "pass"
    # Every entry of b1 sits on a kink: lying between the one-sided slopes is all its
    # values show, so b1 is not called right.
    assert {k.name: k.kind for k in r.kinks} == {f"b1[{i}]": "at" for i in range(6)}
    assert r.blocks["b1"].verdict == "inconclusive"
    assert "sits on a kink" in r.blocks["b1"].diagnosis
    assert not r.failing
    wrong = grad(p)
    wrong["w2"] = wrong["w2"] * 1.1
    assert gradcheck.check(f, p, wrong, seed=0).failing == ("w2",)


def test_a_wrong_value_between_the_slopes_of_a_kink_is_not_passed():
    f, p, grad = _zero_sample_relu_net()
    wrong = grad(p)
    r = gradcheck.check(f, p, wrong, seed=0)
    left = np.array([k.left for k in r.kinks])
    right = np.array([k.right for k in r.kinks])
    # Neither one-sided derivative, nor their mean (which the central difference gives).
    wrong["b1"] = 0.8 * left + 0.2 * right
    r = gradcheck.check(f, p, wrong, seed=0)
    assert r.blocks["b1"].verdict == "inconclusive"
    assert not r.passed


def test_a_block_whose_entries_only_crossed_kinks_passes():
    x = np.array([3e-7, -1e-7, 2e-7])

    def f(x):
        return np.abs(x).sum()

    b = np.array([1.0, 2.0])
    r = gradcheck.check(
        lambda p: f(p["a"]) + p["b"] @ p["b"], {"a": x, "b": b}, {"a": np.sign(x), "b": 2 * b}
    )
    assert {k.kind for k in r.kinks} == {"crossed"}
    assert r.blocks["a"].kinks == 3
    assert r.verdict == "pass"


def test_a_wrong_value_between_the_slopes_at_h10_but_not_at_h100_fails():
    # A kink 3e-7 to the right of 0: the step h ~ 6e-6 and h/10 cross it, h/100 does not.
    # 0.3 lies between the slopes over h/10 (0 and 0.5) but the true derivative is 0.
    x = np.array([0.0, 1.0, 2.0])

    def f(x):
        return max(x[0] - 3e-7, 0.0) + 0.5 * x[1:] @ x[1:]

    r = gradcheck.check(f, x, np.array([0.3, 1.0, 2.0]), seed=0)
    assert r.failing == ("params",)
    assert not r.kinks
    assert gradcheck.check(f, x, np.array([0.0, 1.0, 2.0]), seed=0).passed


def test_an_error_that_shrinks_less_than_tenfold_is_no_kink():
    # exp(k x) with a large k: the central difference at h is off by ~2e-5 (truncation),
    # at h/10 by ~2e-7. A bug of -1.5e-5 stays: within the entry tolerance at h/10, but the
    # error did not fall tenfold, so it is no kink and its block fails.
    k = 1800.0
    p = {"a": np.array([1e-3]), "b": np.array([0.5, 1.5])}

    def f(p):
        return np.exp(k * p["a"][0]) / k**2 + 0.5 * p["b"] @ p["b"]

    g = {"a": np.exp(k * p["a"]) / k * (1 - 1.5e-5), "b": p["b"].copy()}
    r = gradcheck.check(f, p, g, seed=0)
    assert not r.kinks
    assert r.failing == ("a",)


def test_an_infinite_analytic_entry_is_a_bug_not_a_kink():
    x = np.linspace(0.5, 2.0, 8)
    g = x.copy()
    g[3] = np.inf
    r = gradcheck.check(lambda x: 0.5 * x @ x, x, g, seed=0)
    assert r.failing == ("params",)
    assert not r.kinks


def test_a_user_step_that_vanishes_at_h100_still_tells_a_kink():
    # ulp(1e8) is 1.5e-8: eps/10 still moves x[0], eps/100 rounds away.
    x = np.array([1e8, 1.0, 2.0])

    def f(x):
        return 3.0 * max(x[0] - 1e8, 0.0) + 0.5 * x[1:] @ x[1:]

    r = gradcheck.check(f, x, np.array([0.0, 1.0, 2.0]), eps=1e-7, seed=0, noise=False)
    assert r.passed
    assert [(k.name, k.kind) for k in r.kinks] == [("params[0]", "at")]


def test_a_correct_relu_layer_with_more_crossings_than_one_round_passes(monkeypatch):
    from gradcheck import _policy

    monkeypatch.setattr(_policy, "PER_BLOCK", 4)
    rng = np.random.default_rng(0)
    x = rng.choice([-1, 1], 40) * rng.uniform(1e-7, 4e-6, 40)  # within the step of 0

    def f(x):
        return np.maximum(x, 0).sum() + 0.5 * x @ x

    r = gradcheck.check(f, x, (x > 0) + x, seed=0)
    assert len(r.kinks) > 4
    assert r.passed
    g = (x > 0) + x
    g[np.argmax(np.abs(x) > 2e-6)] += 0.5  # one wrong entry among the crossings
    assert gradcheck.check(f, x, g, seed=0).failing == ("params",)


# ---------------------------------------------------------------- float32


def _float32_mlp():
    X, y, params = models.mlp_data(seed=5)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    X32, y32 = X.astype(np.float32), y.astype(np.float32)

    def f(p):
        return models.mlp_loss(p, X32, y32)

    # The analytic gradient in float64 at the float32 point.
    grads = models.mlp_grad({k: v.astype(np.float64) for k, v in p32.items()}, X32, y32)
    return f, p32, grads


def test_a_correct_float32_model_passes_with_defaults():
    f, p32, grads = _float32_mlp()
    r = gradcheck.check(f, p32, grads)
    assert r.passed
    # f follows its input's dtype: float64 differences, a float32 gradient's thresholds.
    assert r.tol == (1e-4, 1e-3)


def test_a_five_percent_error_in_one_float32_block_fails_and_is_named():
    f, p32, grads = _float32_mlp()
    grads = dict(grads, dW1=1.05 * grads["dW1"])
    r = gradcheck.check(f, p32, grads)
    assert r.failing == ("W1",)
    assert "W1 = 1.05 x numeric" in str(r)


# ---------------------------------------------------------------- diagnosis


@pytest.mark.parametrize(
    ("wrong", "words"),
    [
        (lambda g: 4.0 * g, "W = 4.00 x numeric"),
        (lambda g: -g, "sign flipped"),
        (lambda g: g.T, "transposed"),
        (lambda g: 0 * g, "analytic gradient of W is zero"),
    ],
)
def test_diagnosis_in_plain_words(wrong, words):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((3, 3))

    def f(p):
        return np.sum(A * p["W"] ** 2) + np.sum(p["v"] ** 2)

    p = {"W": rng.standard_normal((3, 3)), "v": rng.standard_normal(2)}
    g = {"W": 2 * A * p["W"], "v": 2 * p["v"]}
    r = gradcheck.check(f, p, {"W": wrong(g["W"]), "v": g["v"]})
    assert r.failing == ("W",)
    assert words in r.blocks["W"].diagnosis
    assert words in str(r)


def test_f_that_ignores_a_block_is_diagnosed():
    x = {"a": np.array([1.0, 2.0]), "b": np.array([3.0])}
    r = gradcheck.check(lambda p: p["a"] @ p["a"], x, {"a": 2 * x["a"], "b": np.array([1.0])})
    assert r.failing == ("b",)
    assert "does f use b?" in r.blocks["b"].diagnosis


# ---------------------------------------------------------------- step sweep


def test_step_sweep_draws_the_v():
    f, x, g = _smooth()
    sweep = gradcheck.step_sweep(f, x, g)
    d = sweep.differences
    best = sweep.best
    assert 0 < best < d.size - 1  # a minimum inside the range
    assert d[0] > 100 * sweep.best_difference  # truncation on the large-step side
    assert d[-1] > 100 * sweep.best_difference  # rounding on the small-step side
    assert sweep.best_difference < 1e-10
    assert 1e-7 < sweep.best_step < 1e-3  # near cbrt(eps) = 6e-6


def test_step_sweep_in_float32_has_its_bottom_at_larger_steps():
    f, x, g = _smooth()
    sweep64 = gradcheck.step_sweep(f, x, g)
    x32 = x.astype(np.float32)
    sweep32 = gradcheck.step_sweep(f, x32, g)
    assert sweep32.best_step > 10 * sweep64.best_step
    assert np.isnan(sweep32.differences[-1])  # 1e-12 is below float32's resolution at |x| ~ 1


def test_step_sweep_rejects_bad_steps():
    f, x, g = _smooth()
    with pytest.raises(ValueError, match="`steps` must be positive"):
        gradcheck.step_sweep(f, x, g, steps=[1e-3, -1.0])
