"""The low-precision comparison (``gradcheck.torch.compare``, ``gradcheck.jax.compare``):
correct bf16 kernels pass on several shapes and seeds, planted bugs fail in their own words,
a wrong reference is named as such."""

import json
import math

import numpy as np
import pytest

from tests import layers

torch = pytest.importorskip("torch")

import gradcheck  # noqa: E402
import gradcheck.torch  # noqa: E402
from gradcheck import _lowprec, _lowprec_report, _policy  # noqa: E402

SHAPES = [(4, 128), (16, 1000), (2, 4, 64, 64), (1, 16)]


def _x(shape, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (2 * torch.randn(shape, generator=gen)).to(dtype)


def _ln_inputs(shape, seed):
    gen = torch.Generator().manual_seed(seed)
    d = shape[-1]
    x = 3 * torch.randn(shape, generator=gen) + 1
    w = 1 + 0.1 * torch.randn(d, generator=gen)
    b = torch.randn(d, generator=gen)
    return x, w, b


def _problems(report, name):
    return " ".join(report.blocks[name].problems)


# --- torch: correct kernels pass --------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_correct_bf16_softmax_passes(shape, seed):
    report = gradcheck.torch.compare(
        layers.torch_lowprec_softmax(),
        layers.torch_softmax,
        (_x(shape, seed),),
        seed=seed,
        check_reference=False,
    )
    assert report.verdict == "pass", str(report)
    assert list(report.blocks) == ["out", "dx"]


@pytest.mark.parametrize("shape", [(8, 64), (64, 48), (2, 3, 256)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_correct_bf16_layer_norm_passes(shape, seed):
    report = gradcheck.torch.compare(
        layers.torch_lowprec_layer_norm(),
        layers.torch_layer_norm_reference,
        _ln_inputs(shape, seed),
        seed=seed,
        check_reference=False,
    )
    assert report.verdict == "pass", str(report)
    assert list(report.blocks) == ["out", "dx", "dweight", "dbias"]


def test_float32_kernels_and_the_reference_check_pass():
    report = gradcheck.torch.compare(
        layers.torch_lowprec_layer_norm(),
        layers.torch_layer_norm_reference,
        _ln_inputs((8, 32), 0),
        dtype=torch.float32,
        seed=0,
    )
    assert report.verdict == "pass", str(report)
    assert report.dtype == "float32"
    assert report.reference is not None
    assert report.reference.verdict == "pass"


# --- torch: bugs fail, each in its own words ----------------------------------------------------


def test_a_2_percent_error_fails_naming_the_input_with_ratio_and_slope():
    report = gradcheck.torch.compare(
        layers.torch_lowprec_softmax("scale"), layers.torch_softmax, (_x((4, 128), 0),), seed=0
    )
    assert report.failing == ("dx",), str(report)
    dx = report.blocks["dx"]
    assert dx.ratio > dx.factor
    assert dx.slope == pytest.approx(0.02, abs=0.003)
    assert abs(dx.slope) > dx.slope_allowed
    text = str(report)
    assert "FAIL" in text.splitlines()[0]
    assert "dx" in text.splitlines()[0]
    assert "the baseline's" in text
    assert "systematic error" in text


def test_the_slope_catches_a_scale_error_that_a_loose_ratio_lets_through():
    # With factor 20 for gradients the ratio rule passes dx; the slope still fails it.
    report = gradcheck.torch.compare(
        layers.torch_lowprec_layer_norm("scale"),
        layers.torch_layer_norm_reference,
        _ln_inputs((16, 256), 1),
        seed=1,
        factor=(2, 20),
        check_reference=False,
    )
    dx = report.blocks["dx"]
    assert dx.ratio <= 20
    assert report.failing == ("dx",), str(report)
    assert "systematic error" in _problems(report, "dx")


def test_an_all_zero_gradient_fails_in_its_words():
    report = gradcheck.torch.compare(
        layers.torch_lowprec_softmax("zero"),
        layers.torch_softmax,
        (_x((4, 32), 0),),
        seed=0,
        check_reference=False,
    )
    assert report.failing == ("dx",)
    assert "all zero where the truth is not" in _problems(report, "dx")


def test_a_nan_fails_saying_where():
    report = gradcheck.torch.compare(
        layers.torch_lowprec_softmax("nan"),
        layers.torch_softmax,
        (_x((4, 32), 0),),
        seed=0,
        check_reference=False,
    )
    assert report.failing == ("dx",)
    assert "not finite at dx[0, 0] (nan)" in _problems(report, "dx")
    assert json.dumps(report.to_dict(), allow_nan=False)


def test_a_gradient_computed_by_the_reference_itself_fails():
    report = gradcheck.torch.compare(
        layers.torch_lowprec_softmax("self"),
        layers.torch_softmax,
        (_x((4, 32), 0),),
        seed=0,
        check_reference=False,
    )
    assert report.failing == ("dx",), str(report)
    assert "the reference's own result" in _problems(report, "dx")


def test_the_reference_compared_with_itself_fails():
    report = gradcheck.torch.compare(
        layers.torch_softmax,
        layers.torch_softmax,
        (_x((4, 32), 0),),
        seed=0,
        check_reference=False,
    )
    assert report.failing == ("dx",)
    assert "compared with itself" in _problems(report, "dx")
    assert "compared with itself" in " ".join(report.blocks["out"].notes)


def test_a_correct_kernel_that_matches_the_reference_bit_for_bit_is_no_self_reference():
    # Torch's CPU bf16 softmax computes in float32 too: the same bits, but fn never calls
    # the reference.
    report = gradcheck.torch.compare(
        layers.torch_lowprec_softmax(),
        layers.torch_softmax,
        (_x((4, 32), 0),),
        seed=0,
        check_reference=False,
    )
    assert report.passed, str(report)


def test_a_gradient_that_ignores_an_input_fails():
    report = gradcheck.torch.compare(
        layers.torch_lowprec_layer_norm("w"),
        layers.torch_layer_norm_reference,
        _ln_inputs((8, 64), 0),
        seed=0,
        check_reference=False,
    )
    assert "dx" in report.failing, str(report)
    assert "does not depend on weight" in _problems(report, "dx")


def test_no_gradient_fails():
    report = gradcheck.torch.compare(
        layers.torch_lowprec_layer_norm("none"),
        layers.torch_layer_norm_reference,
        _ln_inputs((8, 64), 0),
        seed=0,
        check_reference=False,
    )
    assert report.failing == ("dbias",)
    assert "no gradient (None)" in _problems(report, "dbias")


def test_a_wrong_reference_is_named_as_such():
    wrong = layers.torch_layer_norm("x").apply  # float64 Function missing a term in dx
    report = gradcheck.torch.compare(
        layers.torch_lowprec_layer_norm(), wrong, _ln_inputs((8, 16), 0), seed=0
    )
    assert report.failing[0] == "reference", str(report)
    assert report.reference.failing == ("x",)
    assert "The reference is wrong" in str(report)


# --- torch: the report and the API ---------------------------------------------------------------


def test_the_report_is_strict_json_and_names_its_worst_entries():
    report = gradcheck.torch.compare(
        layers.torch_lowprec_softmax("scale"), layers.torch_softmax, (_x((4, 128), 0),), seed=0
    )
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["verdict"] == "fail"
    assert data["failing"] == ["dx"]
    assert set(data["blocks"]["dx"]) >= {"error", "baseline_error", "ratio", "slope"}
    assert report.worst[0].name.startswith("dx[")
    assert report.worst[0].score > 1
    assert report.blocks["dx"].max_abs_error_at.startswith("dx[")


def test_assert_close_to_reference_raises_with_the_table():
    x = (_x((4, 32), 0),)
    gradcheck.torch.assert_close_to_reference(
        layers.torch_lowprec_softmax(), layers.torch_softmax, x, seed=0, check_reference=False
    )
    with pytest.raises(AssertionError, match=r"gradcheck compare: FAIL .*failing: dx"):
        gradcheck.torch.assert_close_to_reference(
            layers.torch_lowprec_softmax("scale"), layers.torch_softmax, x, seed=0
        )


def test_the_users_tensors_are_left_alone_and_several_outputs_are_named():
    x = _x((4, 16), 0).requires_grad_(True)
    saved = x.detach().clone()

    def two(x):
        return x.softmax(-1), {"sum": x.sum(-1)}

    def pair(x):
        return x.float().softmax(-1).to(x.dtype), x.float().sum(-1).to(x.dtype)

    report = gradcheck.torch.compare(pair, lambda x: (*two(x)[0:1], two(x)[1]["sum"]), (x,), seed=0)
    assert list(report.blocks) == ["out[0]", "out[1]", "dx"]
    assert torch.equal(x.detach(), saved)
    assert x.grad is None


def test_same_seed_same_report():
    args = (layers.torch_lowprec_softmax(), layers.torch_softmax, (_x((4, 32), 0),))
    a = gradcheck.torch.compare(*args, seed=3, check_reference=False)
    b = gradcheck.torch.compare(*args, seed=3, check_reference=False)
    assert a.blocks["dx"].error == b.blocks["dx"].error
    np.testing.assert_array_equal(a.cotangent[0], b.cotangent[0])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dtype": torch.int32}, ValueError, "`dtype` must be a floating"),
        ({"factor": 0.5}, ValueError, "`factor` must be"),
        ({"factor": (2, 3, 4)}, ValueError, "`factor` must be"),
        ({"check_reference": "yes"}, TypeError, "`check_reference`"),
        ({"cotangent": torch.ones(3)}, ValueError, "`cotangent`"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs, error, match):
    with pytest.raises(error, match=match):
        gradcheck.torch.compare(torch.softmax, layers.torch_softmax, (_x((4, 8), 0),), **kwargs)


def test_a_reference_that_does_not_follow_the_dtype_is_refused():
    with pytest.raises(ValueError, match="must follow its inputs' dtype"):
        gradcheck.torch.compare(
            layers.torch_softmax, lambda x: x.float().softmax(-1), (_x((4, 8), 0),)
        )


# --- the statistics alone ---------------------------------------------------------------------


def _sides(t, k, b=None, unit=2.0**-8):
    b = t if b is None else b
    return _lowprec_report.Sides(truth=t, baseline=b, kernel=k, rounded=t)


def test_the_slope_of_a_pure_scale_error_is_the_scale():
    t = np.random.default_rng(0).standard_normal((32, 16))
    a = _lowprec.measure("dx", "gradient", _sides(t, 1.05 * t), unit=2.0**-8, factor=3.0)
    assert a.slope == pytest.approx(0.05)
    assert a.verdict == "fail"
    assert "systematic error" in " ".join(a.problems)


def test_an_exact_baseline_leaves_the_kernel_the_floor():
    t = np.arange(1.0, 9.0)
    k = t * (1 + 2.0**-10 * np.array([1, -1] * 4))  # a quarter ulp of bf16, either way
    a = _lowprec.measure("out", "output", _sides(t, k), unit=2.0**-8, factor=2.0)
    assert a.baseline_error == 0
    assert a.floor == pytest.approx(_policy.EXACT_FLOOR * 2.0**-8)
    assert math.isfinite(a.ratio)
    assert a.verdict == "pass", a.problems


def test_a_zero_truth_and_a_zero_kernel_agree():
    t = np.zeros(5)
    a = _lowprec.measure("db", "gradient", _sides(t, t.copy()), unit=2.0**-8, factor=3.0)
    assert a.verdict == "pass"
    assert a.error == 0


def _judge(t, b, k):
    return _lowprec.measure("dx", "gradient", _sides(t, k, b), unit=2.0**-8, factor=3.0)


@pytest.mark.parametrize("seed", range(20))
def test_noise_twice_the_baselines_passes_and_a_1_percent_lean_fails(seed):
    rng = np.random.default_rng(seed)
    t = rng.standard_normal((64, 128))
    b = t + 5e-3 * rng.standard_normal(t.shape)
    noisy = _judge(t, b, t + 1e-2 * rng.standard_normal(t.shape))
    assert noisy.verdict == "pass", noisy.problems
    leaning = _judge(t, b, 1.01 * t + 5e-3 * rng.standard_normal(t.shape))
    assert leaning.ratio < 3  # the ratio rule alone would pass it
    assert leaning.verdict == "fail"
    assert "systematic error" in " ".join(leaning.problems)


@pytest.mark.parametrize("seed", range(50))
def test_errors_shared_along_rows_do_not_cry_wolf(seed):
    # Each row off by its own factor (a row's sum rounded once): the slope scatters by
    # about 1e-2 / sqrt(16), far beyond what independent entries would give.
    rng = np.random.default_rng(seed)
    t = rng.standard_normal((16, 256))
    b = t * (1 + 1e-2 * rng.standard_normal((16, 1)))
    k = t * (1 + 1e-2 * rng.standard_normal((16, 1)))
    assert _judge(t, b, k).verdict == "pass", _judge(t, b, k).problems


# --- jax ---------------------------------------------------------------------------------------


jax = pytest.importorskip("jax")
import gradcheck.jax  # noqa: E402


def _jx(shape, seed):
    return 2 * jax.random.normal(jax.random.key(seed), shape)


# Each new shape costs jax a compilation of every op: two shapes, three seeds.
@pytest.mark.parametrize(("shape", "seed"), [((4, 128), 0), ((4, 128), 1), ((2, 8, 64), 2)])
def test_jax_a_correct_bf16_softmax_passes(shape, seed):
    report = gradcheck.jax.compare(
        layers.jax_lowprec_softmax(),
        layers.jax_softmax,
        (_jx(shape, seed),),
        seed=seed,
        check_reference=seed == 0,
    )
    assert report.verdict == "pass", str(report)
    assert list(report.blocks) == ["out", "dx"]
    assert not jax.config.jax_enable_x64  # left as it was


@pytest.mark.parametrize(
    ("bug", "words"),
    [
        ("scale", "systematic error"),
        ("zero", "all zero where the truth is not"),
        ("nan", "not finite at dx[0, 0] (nan)"),
        ("self", "the reference's own result"),
    ],
)
def test_jax_bugs_fail_in_their_own_words(bug, words):
    report = gradcheck.jax.compare(
        layers.jax_lowprec_softmax(bug),
        layers.jax_softmax,
        (_jx((4, 128), 0),),
        seed=0,
        check_reference=False,
        dependence=False,
    )
    assert report.failing == ("dx",), str(report)
    assert words in _problems(report, "dx")


def test_jax_a_wrong_reference_is_named_as_such():
    wrong = layers.jax_layer_norm("n")

    def kernel(x, w):
        return wrong(x.astype("float32"), w.astype("float32")).astype(x.dtype)

    x = _jx((8, 16), 0)
    w = 1 + 0.1 * _jx((16,), 1)
    report = gradcheck.jax.compare(kernel, wrong, (x, w), seed=0, dependence=False)
    assert report.failing[0] == "reference", str(report)
    assert "The reference is wrong" in str(report)


def test_jax_bf16_inputs_dict_arguments_and_float16():
    x = _jx((4, 64), 3).astype(jax.numpy.bfloat16)
    report = gradcheck.jax.compare(
        lambda x: layers.jax_lowprec_softmax()(x),
        layers.jax_softmax,
        {"x": x},
        dtype=jax.numpy.float16,
        seed=0,
        check_reference=False,
    )
    assert report.dtype == "float16"
    assert list(report.blocks) == ["out", "dx"]
    assert report.passed, str(report)


def test_torch_float16_and_dict_inputs_name_the_gradients():
    def attention(q, k, v):
        return (q @ k.transpose(-2, -1) / 4).softmax(-1) @ v

    def kernel(q, k, v):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=0.25)

    gen = torch.Generator().manual_seed(0)
    qkv = {n: torch.randn(2, 32, 16, generator=gen) for n in "qkv"}
    report = gradcheck.torch.compare(kernel, attention, qkv, dtype=torch.float16, seed=0)
    assert list(report.blocks) == ["out", "dq", "dk", "dv"]
    assert report.passed, str(report)


def test_no_gradient_for_an_input_the_output_does_not_use_passes():
    class FirstOnly(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, unused):
            y = x.float().softmax(-1).to(x.dtype)
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            gf, yf = g.float(), y.float()
            return (yf * (gf - (gf * yf).sum(-1, keepdim=True))).to(g.dtype), None

    x, unused = _x((4, 32), 0), _x((3,), 1)
    report = gradcheck.torch.compare(
        FirstOnly.apply, lambda x, unused: x.softmax(-1), (x, unused), seed=0
    )
    assert report.passed, str(report)
    assert "right, the truth is 0 here" in " ".join(report.blocks["dunused"].notes)


def test_jax_a_gradient_that_ignores_an_input_fails():
    jnp = jax.numpy

    @jax.custom_vjp
    def scaled_softmax(x, w):
        return (jax.nn.softmax(x.astype(jnp.float32), axis=-1) * w).astype(x.dtype)

    def fwd(x, w):
        y = jax.nn.softmax(x.astype(jnp.float32), axis=-1)
        return (y * w).astype(x.dtype), (y, w)

    def bwd(res, g):
        y, w = res
        gw = g.astype(jnp.float32)  # the planted bug: g * w, with w left out
        dx = y * (gw - (gw * y).sum(-1, keepdims=True))
        return dx.astype(g.dtype), (g * y).sum(0).astype(w.dtype)

    scaled_softmax.defvjp(fwd, bwd)

    def reference(x, w):
        return jax.nn.softmax(x, axis=-1) * w

    x, w = _jx((4, 128), 0), 1 + 0.5 * _jx((128,), 1)
    report = gradcheck.jax.compare(scaled_softmax, reference, (x, w), seed=0, check_reference=False)
    assert "dx" in report.failing, str(report)
    assert "does not depend on w" in _problems(report, "dx")


def test_an_output_named_like_a_gradient_is_refused():
    def f(x):
        return {"dx": x.softmax(-1)}

    with pytest.raises(ValueError, match="share the name 'dx'"):
        gradcheck.torch.compare(f, f, (_x((2, 4), 0),), check_reference=False)
