"""The Report: frozen, read-only gradapprox in the caller's structure, JSON form, readable
table, per-block verdicts, thresholds, worst entries, seed; and assert_gradient."""

import dataclasses
import json
import math
import re

import numpy as np
import pytest

import gradcheck

from . import models
from .reference import flat, reference_gradapprox, reference_relative_difference


@pytest.fixture(scope="module")
def mlp():
    X, y, params = models.mlp_data()
    return X, y, params, models.mlp_grad(params, X, y)


def _mlp_check(mlp, grads=None, **options):
    X, y, params, good = mlp
    return gradcheck.check(lambda p: models.mlp_loss(p, X, y), params, grads or good, **options)


def _broken(mlp):
    """The MLP's gradients with dW1[3, 2] clearly wrong and db1[1] slightly wrong."""
    grads = {k: v.copy() for k, v in mlp[3].items()}
    grads["dW1"][3, 2] += 1.0
    grads["db1"][1] *= 1.01
    return grads


def _quadratic(e):
    """f = c @ x**2 at small integers with eps = 2**-4: central differences are exact, so
    gradapprox is exactly 2 c x and a gradient (1 + e) * 2 c x is e / (2 + e) away.
    """
    x = np.array([1.0, -2.0, 3.0])
    c = np.array([2.0, -1.0, 0.5])
    return (lambda x: c @ x**2), x, (1.0 + e) * 2 * c * x


# ---------------------------------------------------------------- frozen and read-only


@pytest.mark.parametrize("field", ["verdict", "difference", "blocks", "seed", "gradapprox"])
def test_report_is_frozen(mlp, field):
    report = _mlp_check(mlp)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(report, field, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(report, field)


def test_blocks_and_entries_cannot_be_changed(mlp):
    report = _mlp_check(mlp, _broken(mlp))
    with pytest.raises(TypeError):
        report.blocks["W1"] = report.blocks["b1"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.blocks["W1"].verdict = "pass"
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.worst[0].score = 0.0
    assert report.blocks["W1"].verdict == "fail"


def test_gradapprox_has_the_params_structure_and_is_read_only():
    params = {
        "layer": [np.arange(6.0).reshape(2, 3) / 7, (np.array([0.5, -1.0, 2.0]), np.array(1.5))],
        "scale": np.array([[2.0]]),
    }

    def f(p):
        W, (b, s) = p["layer"]
        return float(s * np.sum(W**2) + np.sum(b**3) + p["scale"][0, 0] * s)

    W, (b, s) = params["layer"]
    grads = {
        "layer": [2 * s * W, (3 * b**2, np.sum(W**2) + params["scale"][0, 0])],
        "scale": np.array([[s]]),
    }
    report = gradcheck.check(f, params, grads)
    assert report.verdict == "pass"
    g = report.gradapprox
    assert type(g) is dict
    assert list(g) == ["layer", "scale"]
    assert type(g["layer"]) is list
    assert len(g["layer"]) == 2
    assert type(g["layer"][1]) is tuple
    assert len(g["layer"][1]) == 2
    leaves = [g["layer"][0], g["layer"][1][0], g["layer"][1][1], g["scale"]]
    expected = [grads["layer"][0], grads["layer"][1][0], grads["layer"][1][1], grads["scale"]]
    for got, want in zip(leaves, expected, strict=True):
        assert isinstance(got, np.ndarray)
        assert got.shape == np.shape(want)
        assert got.dtype == np.float64
        assert not got.flags.writeable
        np.testing.assert_allclose(got, want, rtol=1e-8)
        with pytest.raises(ValueError, match="read-only"):
            got[...] = 0.0
    np.testing.assert_allclose(flat(g, params), reference_gradapprox(f, params), rtol=1e-12)


def test_gradapprox_of_float32_params_is_float64():
    x = np.array([1.0, -2.0, 0.5], dtype=np.float32)
    report = gradcheck.check(lambda x: np.float32(0.5) * x @ x, x, x.astype(np.float64))
    assert report.gradapprox.dtype == np.float64
    assert report.gradapprox.shape == x.shape
    assert not report.gradapprox.flags.writeable


# ---------------------------------------------------------------- JSON


def _roundtrip(report):
    text = json.dumps(report.to_dict(), allow_nan=False)  # strict JSON: no NaN or Infinity
    return json.loads(text)


def test_to_dict_survives_json(mlp):
    report = _mlp_check(mlp, _broken(mlp), seed=11)
    data = _roundtrip(report)
    assert data["verdict"] == "fail"
    assert data["passed"] is False
    assert data["difference"] == report.difference
    assert data["seed"] == 11
    assert data["nfev"] == report.nfev
    assert data["tol"] == list(report.tol)
    assert list(data["blocks"]) == list(report.blocks)
    assert data["blocks"]["W1"]["shape"] == [5, 6]
    assert data["blocks"]["W1"]["difference"] == report.blocks["W1"].difference
    assert data["blocks"]["W1"]["max_abs_error_at"] == "W1[3, 2]"
    assert [e["name"] for e in data["worst"]] == [e.name for e in report.worst]


def test_to_dict_with_nan_values_survives_json(mlp):
    grads = {k: v.copy() for k, v in mlp[3].items()}
    grads["db2"][0] = np.nan
    report = _mlp_check(mlp, grads)
    assert math.isnan(report.difference)
    assert report.failing == ("b2",)
    data = _roundtrip(report)
    # Strict JSON: NaN and infinity are null, never strings a reader must special-case.
    assert data["difference"] is None
    assert data["blocks"]["b2"]["difference"] is None
    assert data["blocks"]["b2"]["verdict"] == "fail"
    assert data["blocks"]["W1"]["difference"] == report.blocks["W1"].difference
    assert data["worst"][0]["name"] == "b2[0]"
    assert data["worst"][0]["score"] is None


def test_to_dict_of_an_inconclusive_report_survives_json():
    x = np.array([1.0, 1e-9, 2.0])

    def f(x):
        with np.errstate(invalid="ignore"):
            return np.log(x).sum()

    report = gradcheck.check(f, x, 1 / x)
    data = _roundtrip(report)
    assert data["verdict"] == "inconclusive"
    assert data["blocks"]["params"]["nonfinite"] == ["params[1]"]


def test_to_dict_says_why_a_check_is_inconclusive():
    rng = np.random.default_rng(0)
    x = np.array([1.0, 2.0])

    def noisy(x):  # not deterministic: the check cannot judge it
        return np.sum(x**2) + 1e-3 * rng.standard_normal()

    report = gradcheck.check(noisy, x, 2 * x, seed=3, directions=2, budget=30.0)
    data = _roundtrip(report)
    assert data["verdict"] == "inconclusive"
    assert data["notes"] == list(report.notes)
    assert any("f is not deterministic" in note for note in data["notes"])
    assert data["noise"] == report.noise > 0
    assert data["directions"] == 2
    assert data["budget"] == 30.0


def test_to_dict_lists_the_kinks():
    x = np.array([0.0, 1.0, -2.0, 0.5, 3e-7, -1e-7])

    def f(x):
        return np.maximum(x, 0).sum() + 0.5 * x @ x

    report = gradcheck.check(f, x, (x > 0) + x, seed=0)
    data = _roundtrip(report)
    assert [k["name"] for k in data["kinks"]] == [k.name for k in report.kinks]
    at = next(k for k in data["kinks"] if k["name"] == "params[0]")
    assert at["kind"] == "at"
    assert set(at) == {"name", "kind", "analytic", "numeric", "left", "right"}
    assert data["directions"] == 0
    assert data["budget"] is None
    assert data["notes"] == []


def test_to_dict_with_a_numpy_integer_seed_survives_json():
    # check() accepts any Integral seed (np.int64 included) and stores it unconverted, so
    # json.dumps(report.to_dict()) raises "Object of type int64 is not JSON serializable".
    f, x, g = _quadratic(0.0)
    report = gradcheck.check(f, x, g, seed=np.int64(7))
    assert _roundtrip(report)["seed"] == 7


# ---------------------------------------------------------------- the readable table


def test_str_of_a_failing_report(mlp):
    report = _mlp_check(mlp, _broken(mlp))
    text = str(report)
    assert text.startswith("gradcheck: FAIL")
    # The headline names the failing blocks: pytest's one-line summary shows only it.
    assert text.splitlines()[0].startswith("gradcheck: FAIL in W1, b1 (difference ")
    for name in ("W1", "b1", "W2", "b2"):
        assert re.search(rf"^  {name} ", text, re.M), name
    assert set(report.failing) == {"W1", "b1"}
    assert "2 of 4 blocks fail: W1, b1" in text
    for entry in report.worst[:5]:
        assert re.search(rf"^  {re.escape(entry.name)} ", text, re.M), entry.name
    # The table's "score" column is explained under it.
    worst_table = text.split("worst entries", 1)[1]
    assert re.search(
        r"^  score: \|error\| over what .* allow; above 1 it disagrees$", worst_table, re.M
    )
    assert "W1[3, 2]" in text
    assert "b1[1]" in text


def test_str_of_passing_warning_and_inconclusive_reports(mlp):
    text = str(_mlp_check(mlp))
    assert text.startswith("gradcheck: PASS")
    assert "Every block passes." not in text  # the headline says it
    f, x, g = _quadratic(2.0**-18)
    text = str(gradcheck.check(f, x, g, eps=2.0**-4))
    assert text.startswith("gradcheck: WARN")
    assert "pass <= 1e-07, fail > 1e-05" in text
    x = np.array([1.0, 1e-9, 2.0])

    def log(x):
        with np.errstate(invalid="ignore"):
            return np.log(x).sum()

    text = str(gradcheck.check(log, x, 1 / x))
    assert text.startswith("gradcheck: INCONCLUSIVE")
    assert text.splitlines()[0].startswith("gradcheck: INCONCLUSIVE in params (difference ")
    assert "f was not finite at perturbed points of params: params[1]" in text


def test_str_prints_the_thresholds_that_were_applied():
    # Once printed with one digit (:.0e): "pass <= 1e-07, fail > 3e-05" for these.
    f, x, g = _quadratic(0.0)
    text = str(gradcheck.check(f, x, g, eps=2.0**-4, tol=(1.5e-7, 2.5e-5)))
    assert "1.5e-07" in text
    assert "2.5e-05" in text


# ---------------------------------------------------------------- verdicts


def test_one_small_failing_block_fails_although_the_global_difference_is_small():
    rng = np.random.default_rng(3)
    params = {"big": 0.01 * rng.standard_normal(20_000), "small": np.array([0.7])}
    c = 1e-5

    def f(p):
        return 0.5 * (p["big"] @ p["big"]) + c * p["small"][0]

    grads = {"big": params["big"].copy(), "small": np.array([-c])}  # wrong sign
    report = gradcheck.check(f, params, grads, engine="python")
    # Globally the wrong entry is diluted: about 2c / (2 ||big||) = 7e-6, below the fail
    # threshold 1e-5 (it would have been "warn", which passes)...
    expected = reference_relative_difference(flat(grads, params), flat(report.gradapprox, params))
    assert report.difference == pytest.approx(expected, rel=1e-9, abs=0)
    assert report.tol[0] < report.difference <= report.tol[1]
    # ...but per block it is plain: small's gradient has the wrong sign.
    assert report.blocks["small"].difference == pytest.approx(1.0, rel=1e-6, abs=0)
    assert report.blocks["big"].verdict == "pass"
    assert report.verdict == "fail"
    assert report.failing == ("small",)
    assert not report.passed


@pytest.mark.parametrize(
    ("tol", "verdict", "thresholds"),
    [
        (None, "warn", (1e-7, 1e-5)),  # float64 default band
        ((1e-7, 1e-5), "warn", (1e-7, 1e-5)),
        ((1e-7, 1e-6), "fail", (1e-7, 1e-6)),
        ((2e-6, 1e-5), "pass", (2e-6, 1e-5)),
        (1e-5, "pass", (1e-5, 1e-5)),  # one threshold: no warn band
        (1e-6, "fail", (1e-6, 1e-6)),
    ],
)
def test_thresholds(tol, verdict, thresholds):
    e = 2.0**-18
    f, x, g = _quadratic(e)
    report = gradcheck.check(f, x, g, eps=2.0**-4, tol=tol)
    assert report.difference == pytest.approx(e / (2 + e), rel=1e-14, abs=0)  # ~1.9e-6
    assert report.tol == thresholds
    assert report.verdict == verdict
    assert report.passed == (verdict in ("pass", "warn"))
    assert report.failing == (("params",) if verdict == "fail" else ())


def test_a_single_threshold_never_warns():
    f, x, _ = _quadratic(0.0)
    for e in (2.0**-30, 2.0**-20, 2.0**-17, 2.0**-10):
        g = (1.0 + e) * 2 * np.array([2.0, -1.0, 0.5]) * x
        report = gradcheck.check(f, x, g, eps=2.0**-4, tol=1e-6)
        assert report.verdict == ("pass" if e / (2 + e) <= 1e-6 else "fail")


def test_warn_is_passed():
    f, x, g = _quadratic(2.0**-18)
    report = gradcheck.check(f, x, g, eps=2.0**-4)
    assert report.verdict == "warn"
    assert report.passed
    assert report.failing == ()
    assert gradcheck.assert_gradient(f, x, g, eps=2.0**-4).verdict == "warn"


def test_an_empty_block_does_not_fail():
    # A (0, 3) parameter has nothing to check (once a bug: d = NaN was judged "fail" and the
    # table told the user to look at its backward pass).
    params = {"W": np.zeros((0, 3)), "b": np.array([1.0, 2.0])}

    def f(p):
        return np.sum(p["b"] ** 2) + np.sum(p["W"])

    report = gradcheck.check(f, params, {"W": np.zeros((0, 3)), "b": 2 * params["b"]})
    assert report.blocks["b"].verdict == "pass"
    assert report.blocks["W"].verdict != "fail"
    assert report.blocks["W"].checked == 0
    assert report.failing == ()
    assert report.passed


# ---------------------------------------------------------------- assert_gradient


def test_assert_gradient_raises_naming_the_failing_block(mlp):
    X, y, params, _ = mlp
    grads = _broken(mlp)
    with pytest.raises(AssertionError) as info:
        gradcheck.assert_gradient(lambda p: models.mlp_loss(p, X, y), params, grads)
    message = str(info.value)
    assert "gradcheck: FAIL" in message
    assert "2 of 4 blocks fail: W1, b1" in message
    assert "W1[3, 2]" in message


def test_assert_gradient_raises_when_inconclusive():
    x = np.array([1.0, 1e-9, 2.0])

    def f(x):
        with np.errstate(invalid="ignore"):
            return np.log(x).sum()

    with pytest.raises(AssertionError, match="could not be judged"):
        gradcheck.assert_gradient(f, x, 1 / x)


def test_assert_gradient_returns_the_report_when_passing(mlp):
    X, y, params, grads = mlp
    report = gradcheck.assert_gradient(lambda p: models.mlp_loss(p, X, y), params, grads, seed=5)
    assert isinstance(report, gradcheck.Report)
    assert report.verdict == "pass"
    assert report.seed == 5


def test_assert_gradient_passes_options_through():
    f, x, g = _quadratic(2.0**-18)
    # Default band: warn, which passes; a tighter single threshold fails.
    gradcheck.assert_gradient(f, x, g, eps=2.0**-4)
    with pytest.raises(AssertionError, match="1 of 1 blocks fails: params"):
        gradcheck.assert_gradient(f, x, g, eps=2.0**-4, tol=1e-6)


# ---------------------------------------------------------------- worst entries, seed, counts


def test_worst_entries_are_sorted_and_named(mlp):
    grads = _broken(mlp)
    report = _mlp_check(mlp, grads)
    worst = report.worst
    assert len(worst) == 10
    scores = [e.score for e in worst]
    assert scores == sorted(scores, reverse=True)
    assert worst[0].name == "W1[3, 2]"
    assert worst[0].block == "W1"
    assert worst[0].analytic == grads["dW1"][3, 2]
    assert worst[0].numeric == report.gradapprox["W1"][3, 2]
    assert worst[0].abs_error == abs(worst[0].analytic - worst[0].numeric)
    assert worst[0].score > 1
    assert worst[1].name == "b1[1]"
    assert worst[1].score > 1
    assert all(e.score <= 1 for e in worst[2:])
    names = {e.name for e in worst}
    assert len(names) == 10
    for e in worst:
        assert re.fullmatch(r"(W1|W2)\[\d+, \d+\]|(b1|b2)\[\d+\]", e.name), e.name
        assert e.name.startswith(e.block + "[")


def test_given_seed_is_recorded(mlp):
    assert _mlp_check(mlp, seed=12345).seed == 12345
    assert _mlp_check(mlp, seed=0).seed == 0


def test_missing_seed_is_drawn_and_recorded(mlp):
    seeds = {_mlp_check(mlp).seed for _ in range(3)}
    for seed in seeds:
        assert type(seed) is int
        assert 0 <= seed < 2**63
    assert len(seeds) == 3  # drawn afresh each time (a collision has probability ~1e-18)


@pytest.mark.parametrize(("method", "per_coordinate"), [("central", 2), ("forward", 1)])
def test_nfev_counts_every_evaluation_of_f(method, per_coordinate):
    calls = []
    A, b, x = models.quad_data()

    def f(x):
        calls.append(None)
        return models.quad_loss(x, A, b)

    report = gradcheck.check(f, x, models.quad_grad(x, A, b), method=method, noise=False)
    assert report.nfev == len(calls) == 1 + per_coordinate * x.size
    calls.clear()
    probed = gradcheck.check(f, x, models.quad_grad(x, A, b), method=method)
    # The noise probe: 2 repeats at params and 8 points on a line (up to 3 attempts).
    assert probed.nfev == len(calls)
    assert probed.nfev - report.nfev in (10, 18, 26)
    assert report.n == report.checked == x.size
    assert report.method == method
    assert report.loss == models.quad_loss(x, A, b)


def test_the_json_replays_a_sampled_check():
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((10, 10)), "b": rng.standard_normal(3)}
    grads = {"W": 2 * params["W"], "b": 3 * params["b"] ** 2}

    def f(p):
        return np.sum(p["W"] ** 2) + np.sum(p["b"] ** 3)

    report = gradcheck.check(f, params, grads, sample=7, seed=3)
    assert report.checked < report.n
    data = json.loads(json.dumps(report.to_dict()))
    again = gradcheck.check(f, params, grads, sample=7, seed=data["seed"])
    assert data["replay"]["indices"] == again.replay.indices.tolist()
    assert len(data["replay"]["indices"]) == report.checked
    assert data["replay"]["steps"] == again.replay.steps.tolist()
    assert not report.replay.indices.flags.writeable
    full = gradcheck.check(f, params, grads, seed=3).to_dict()
    assert full["replay"] == {"indices": None, "steps": None}


def _many_blocks(wrong=0):
    params = [np.array([1 + k / 2000]) for k in range(2000)]
    grad = [2 * p for p in params]
    for k in range(wrong):
        grad[k] = 3 * params[k]

    def f(p):
        return float(np.sum(np.concatenate(p) ** 2))

    return f, params, grad


@pytest.mark.parametrize("wrong", [0, 2000])
def test_a_report_of_many_blocks_stays_short(wrong):
    f, params, grad = _many_blocks(wrong)
    report = gradcheck.check(f, params, grad, sample=200, seed=0, noise=False)
    text = str(report)
    assert len(text.splitlines()) <= 100, text
    assert "report.table(full=True) lists every block" in text
    if wrong:
        assert report.verdict == "fail"
        assert text.count("FAIL") >= 20  # the failing blocks are the ones listed
    # The whole table on request: a row per block.
    full = report.table(full=True)
    assert len(full.splitlines()) > 2000
    assert format(report, "full") == full
    assert f"{report}" == text
    with pytest.raises(ValueError, match="unknown format"):
        format(report, "short")


def test_the_records_a_report_hands_out_are_exported():
    x = np.array([0.0, 1.0, 2.0])
    grad = np.array([1.0, 2.0, 4.5])  # params[2] wrong

    def f(v):
        return float(np.maximum(v, 0).sum() + 0.5 * v @ v)

    r = gradcheck.check(f, x, grad, seed=0)
    assert isinstance(r.blocks["params"], gradcheck.BlockResult)
    assert isinstance(r.worst[0], gradcheck.Entry)
    assert isinstance(r.replay, gradcheck.Replay)
    assert r.verdict == gradcheck.Verdict.FAIL
    assert all(isinstance(k, gradcheck.Kink) for k in r.kinks)
    assert r.kinks, "params[0] sits on the kink of max(v, 0)"
    exported = {"BlockResult", "Entry", "Kink", "ProjectedReport", "Replay", "Verdict"}
    assert exported <= set(gradcheck.__all__)
