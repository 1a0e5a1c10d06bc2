"""check_vjp: numpy layers with a hand-written VJP (cs231n's affine and tanh layers, a
structured output), correct and with planted bugs; replay; bad input; and the adapters
loaded lazily."""

import subprocess
import sys

import numpy as np
import pytest

import gradcheck


def _affine():
    rng = np.random.default_rng(0)
    inputs = {
        "x": rng.standard_normal((4, 2, 3)),
        "w": rng.standard_normal((6, 5)),
        "b": rng.standard_normal(5),
    }

    def forward(p):
        return p["x"].reshape(p["x"].shape[0], -1) @ p["w"] + p["b"]

    def backward(p, dout, bug=None):
        x2 = p["x"].reshape(p["x"].shape[0], -1)
        dx = (dout @ p["w"].T).reshape(p["x"].shape)
        dw = x2.T @ dout
        db = dout.sum(axis=0)
        if bug == "w":
            dw = dw.T.reshape(dw.shape)  # the classic slip: the transposed product
        if bug == "b":
            db = dout.mean(axis=0)
        return {"dx": dx, "dw": dw, "db": db}

    return forward, inputs, backward


def _snapshot(tree):
    return {k: v.tobytes() for k, v in tree.items()}


def test_correct_affine_backward_passes():
    forward, inputs, backward = _affine()
    report = gradcheck.check_vjp(forward, inputs, backward, seed=1)
    assert report.verdict == "pass", str(report)
    assert list(report.blocks) == ["x", "w", "b"]
    assert report.seed == 1
    assert report.cotangent.shape == (4, 5)


@pytest.mark.parametrize("bug", ["w", "b"])
def test_planted_bug_fails_exactly_that_input(bug):
    forward, inputs, backward = _affine()
    report = gradcheck.check_vjp(forward, inputs, lambda p, c: backward(p, c, bug), seed=1)
    assert report.failing == (bug,), str(report)


def test_same_seed_and_recorded_cotangent_replay_the_check():
    forward, inputs, backward = _affine()
    bad = lambda p, c: backward(p, c, "b")  # noqa: E731
    first = gradcheck.check_vjp(forward, inputs, bad, seed=7)
    again = gradcheck.check_vjp(forward, inputs, bad, seed=7)
    other = gradcheck.check_vjp(forward, inputs, bad, seed=8)
    np.testing.assert_array_equal(first.cotangent, again.cotangent)
    assert first.difference == again.difference
    assert not np.array_equal(first.cotangent, other.cotangent)
    given = gradcheck.check_vjp(forward, inputs, bad, cotangent=first.cotangent, seed=3)
    assert given.difference == pytest.approx(first.difference, rel=1e-9)
    assert not any("drawn from seed" in n for n in given.notes)
    assert any("drawn from seed 7" in n for n in first.notes)


def test_structured_output_and_several_projections():
    rng = np.random.default_rng(2)
    W = rng.standard_normal((3, 4))
    inputs = (rng.standard_normal(4), rng.standard_normal(3))

    def f(p):
        x, b = p
        h = W @ x + b
        return {"h": h, "t": np.tanh(h)}

    def vjp(p, c, bug=False):
        x, b = p
        h = W @ x + b
        dh = c["h"] + c["t"] * (1 - np.tanh(h) ** 2) * (2.0 if bug else 1.0)
        return [W.T @ dh, dh]

    ok = gradcheck.check_vjp(f, inputs, vjp, seed=0, projections=3)
    assert ok.verdict == "pass", str(ok)
    assert ok.projections == 3
    assert set(ok.cotangent) == {"h", "t"}
    single = gradcheck.check_vjp(f, inputs, vjp, seed=0)
    assert ok.nfev > 2 * single.nfev  # all three projections were evaluated
    bad = gradcheck.check_vjp(f, inputs, lambda p, c: vjp(p, c, True), seed=0, projections=2)
    assert set(bad.failing) == {"[0]", "[1]"}
    assert any("2 random projections" in n for n in bad.notes)


def test_float32_layer_gets_float32_rules():
    rng = np.random.default_rng(3)
    W = rng.standard_normal((5, 4)).astype(np.float32)
    x = rng.standard_normal(4).astype(np.float32)
    report = gradcheck.check_vjp(
        lambda x: np.tanh(W @ x), x, lambda x, c: W.T @ (c * (1 - np.tanh(W @ x) ** 2)), seed=0
    )
    assert report.verdict == "pass", str(report)
    assert report.tol == (1e-3, 1e-2)


def test_batched_layer_agrees_with_the_loop():
    forward, inputs, backward = _affine()

    def batched(p):  # every input with a leading batch axis; outputs too
        x2 = p["x"].reshape(p["x"].shape[0], p["x"].shape[1], -1)
        return x2 @ p["w"] + p["b"][:, None, :]

    loop = gradcheck.check_vjp(forward, inputs, backward, seed=4)
    stacked = gradcheck.check_vjp(batched, inputs, backward, seed=4, batched=True)
    assert stacked.engine == "batched"
    assert stacked.verdict == "pass", str(stacked)
    np.testing.assert_allclose(stacked.gradapprox["w"], loop.gradapprox["w"], rtol=1e-8)


def test_options_pass_through_to_check():
    forward, inputs, backward = _affine()
    report = gradcheck.check_vjp(forward, inputs, backward, seed=0, directions=2, tol=1e-6)
    assert report.checked == 0
    assert report.directions == 2
    assert report.tol == (1e-6, 1e-6)
    assert report.verdict == "pass", str(report)


def test_inputs_never_modified_even_when_f_raises():
    forward, inputs, backward = _affine()
    before = _snapshot(inputs)
    calls = []

    def flaky(p):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("boom")
        return forward(p)

    with pytest.raises(RuntimeError, match="boom"):
        gradcheck.check_vjp(flaky, inputs, backward, seed=0)
    assert _snapshot(inputs) == before


def test_vjp_that_writes_to_its_input_is_refused():
    forward, inputs, backward = _affine()

    def writes(p, c):
        p["b"][0] += 1.0
        return backward(p, c)

    with pytest.raises(ValueError, match=r"modified its input in place: b\[0\]"):
        gradcheck.check_vjp(forward, inputs, writes, seed=0)


def test_bad_arguments_name_themselves():
    forward, inputs, backward = _affine()
    with pytest.raises(TypeError, match="`vjp` must be callable, got int"):
        gradcheck.check_vjp(forward, inputs, 3)
    shape = r"`cotangent` has shape \(5,\), but the output has shape \(4, 5\)"
    with pytest.raises(ValueError, match=shape):
        gradcheck.check_vjp(forward, inputs, backward, cotangent=np.ones(5))
    with pytest.raises(ValueError, match=r"must be finite, but its entry \[0, 0\] is nan"):
        gradcheck.check_vjp(forward, inputs, backward, cotangent=np.full((4, 5), np.nan))
    with pytest.raises(ValueError, match="`projections` must be a positive integer, got 0"):
        gradcheck.check_vjp(forward, inputs, backward, projections=0)
    with pytest.raises(ValueError, match="with a given `cotangent` there is only one"):
        gradcheck.check_vjp(forward, inputs, backward, cotangent=np.ones((4, 5)), projections=2)
    with pytest.raises(ValueError, match="`seed` must be a non-negative integer or None, got -1"):
        gradcheck.check_vjp(forward, inputs, backward, seed=-1)
    with pytest.raises(TypeError, match=r"`f\(inputs\)` must return float arrays.*got str"):
        gradcheck.check_vjp(lambda p: "y", inputs, backward)


def test_check_vjp_is_public():
    assert "check_vjp" in gradcheck.__all__
    assert gradcheck.check_vjp.__doc__


def test_import_gradcheck_loads_neither_framework():
    code = (
        "import sys, gradcheck, gradcheck.torch, gradcheck.jax\n"
        "gradcheck.check_vjp(lambda x: x * 2, __import__('numpy').ones(2), lambda x, c: 2 * c)\n"
        "loaded = [m for m in ('torch', 'jax', 'jaxlib') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
