"""gradcheck.jax: custom_vjp rules, correct and with planted bugs, float32 and float64;
pytree names; the vmap path and its fallbacks; jax losses accepted by gradcheck.check."""

import numpy as np
import pytest

import gradcheck

from . import layers

jax = pytest.importorskip("jax")
gj = pytest.importorskip("gradcheck.jax")
jnp = jax.numpy


layer_norm = layers.jax_layer_norm


def _inputs(dtype=np.float32):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 8)).astype(dtype)
    w = (1 + 0.1 * rng.standard_normal(8)).astype(dtype)
    return x, w


def test_correct_rule_passes_batched_with_float32_rules():
    x, w = _inputs()
    report = gj.check(layer_norm(), (jnp.asarray(x), jnp.asarray(w)), seed=0, evaluate="native")
    assert report.verdict == "pass", str(report)
    assert list(report.blocks) == ["x", "w"]
    assert report.engine == "batched"
    assert report.tol == (1e-3, 1e-2)


def test_float32_rule_differenced_on_float64_copies_by_default():
    x, w = _inputs()
    report = gj.check(layer_norm(), (jnp.asarray(x), jnp.asarray(w)), seed=0)
    assert report.verdict == "pass", str(report)
    assert report.engine == "batched"
    assert report.tol == (1e-4, 1e-3)
    assert any("float64 copies" in n for n in report.notes)
    assert not jax.config.jax_enable_x64  # 64-bit mode was on for the differences alone


def _gelu_input(seed):
    return jax.random.normal(jax.random.PRNGKey(seed), (8, 16))


@pytest.mark.parametrize("error", [0.01, 0.005])
def test_float32_rule_a_percent_or_half_off_fails(error):
    # float32 inputs with 64-bit jax off: the VJP on them, the differences on float64
    # copies; float32's own thresholds would say "warn".
    for seed in range(3):
        x = _gelu_input(seed)
        assert x.dtype == jnp.float32
        report = gj.check(layers.jax_gelu(error), (x,), seed=seed)
        assert report.verdict == "fail", str(report)


def test_correct_float32_rule_passes_on_every_seed():
    for seed in range(5):
        report = gj.check(layers.jax_gelu(), (_gelu_input(seed),), seed=seed)
        assert report.verdict == "pass", str(report)


@pytest.mark.parametrize(("bug", "name"), [("n", "x"), ("w", "w")])
@pytest.mark.parametrize("evaluate", ["native", "float64"])
def test_planted_bug_fails_exactly_that_input(bug, name, evaluate):
    x, w = _inputs()
    report = gj.check(layer_norm(bug), (x, w), seed=0, evaluate=evaluate)
    assert report.failing == (name,), str(report)


def test_float64_evaluation_leaves_the_global_setting_alone():
    before = jax.config.jax_enable_x64
    x, w = _inputs()
    report = gj.check(layer_norm(), (x, w), seed=0, evaluate="float64")
    assert report.verdict == "pass", str(report)
    assert report.tol == (1e-7, 1e-5)
    assert jax.config.jax_enable_x64 == before
    # float64 inputs turn 64-bit mode on for the check in either mode.
    assert gj.check(layer_norm(), _inputs(np.float64), seed=0).tol == (1e-7, 1e-5)


def test_pytree_paths_name_the_blocks_and_integers_are_held_fixed():
    rng = np.random.default_rng(1)
    params = {"w": rng.standard_normal((3, 2)), "layers": [rng.standard_normal(2)]}

    def model(params, x, power):
        h = jnp.tanh(x @ params["w"] + params["layers"][0])
        return h**power

    x = rng.standard_normal((4, 3))
    report = gj.check(model, (params, x, 3), seed=0)
    assert report.verdict == "pass", str(report)
    assert list(report.blocks) == ["params.layers[0]", "params.w", "x"]


def test_function_vmap_cannot_run_falls_back_to_the_loop_and_says_so():
    # A numpy kernel behind pure_callback, differentiated by its own custom_vjp: jit runs
    # it, vmap refuses a callback that declares no vmap_method.
    def host_sin(x):
        shape = jax.ShapeDtypeStruct(x.shape, x.dtype)
        return jax.pure_callback(lambda v: np.sin(np.asarray(v)), shape, x)

    @jax.custom_vjp
    def f(x):
        return host_sin(x)

    f.defvjp(lambda x: (host_sin(x), x), lambda x, g: (g * jnp.cos(x),))
    x = np.array([0.5, 1.0, 1.5])
    report = gj.check(f, (x,), seed=0)
    assert report.verdict == "pass", str(report)
    assert report.engine == "python"
    assert any("jax.vmap cannot run it" in n for n in report.notes)
    with pytest.raises(ValueError, match=r"batched=True, but jax\.vmap cannot"):
        gj.check(f, (x,), seed=0, batched=True)


def test_batched_and_loop_agree_and_cotangent_replays():
    x, w = _inputs(np.float64)
    f = layer_norm("w")
    stacked = gj.check(f, (x, w), seed=5)
    loop = gj.check(f, (x, w), seed=5, batched=False)
    assert (stacked.engine, loop.engine) == ("batched", "python")
    np.testing.assert_allclose(stacked.gradapprox["w"], loop.gradapprox["w"], rtol=1e-7)
    replay = gj.check(f, (x, w), cotangent=stacked.cotangent, seed=1)
    assert replay.difference == pytest.approx(stacked.difference, rel=1e-6)


def test_structured_output_gets_a_structured_cotangent():
    def two(x):
        return {"s": jnp.sin(x), "c": jnp.cos(x)}

    report = gj.check(two, (np.linspace(0.1, 1.0, 5),), seed=0)
    assert report.verdict == "pass", str(report)
    assert set(report.cotangent) == {"s", "c"}


def test_bad_arguments_name_themselves():
    x = np.ones(3)
    with pytest.raises(TypeError, match="`fn` must be callable"):
        gj.check(None, (x,))
    with pytest.raises(TypeError, match="holds no floating-point array"):
        gj.check(lambda n: n * 1.0, (np.arange(3),))
    with pytest.raises(ValueError, match="`cotangent` must have the output's structure"):
        gj.check(jnp.sin, (x,), cotangent=(np.ones(3), np.ones(3)))


@pytest.mark.parametrize("shape", [(), (1,)])
def test_check_accepts_a_one_element_jax_loss(shape):
    x = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    report = gradcheck.check(lambda p: jnp.sum(jnp.asarray(p) ** 3).reshape(shape), x, 3 * x**2)
    assert report.verdict == "pass", str(report)
    assert report.tol == (1e-3, 1e-2)
    bad = gradcheck.check(lambda p: jnp.sum(jnp.asarray(p) ** 3).reshape(shape), x, 2 * x**2)
    assert bad.verdict == "fail"
