"""Modes and orders in the adapters: a wrong forward rule (a torch Function's jvp, a jax
custom_jvp) fails and names its input; the adjoint identity on a line of its own; a
backward computed on a detached input passes at order 1 and fails at order 2."""

import json

import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
gt = pytest.importorskip("gradcheck.torch")
gj = pytest.importorskip("gradcheck.jax")
jnp = jax.numpy


def shifted_product(jvp_offset=0.75):
    """(x, y) -> x * y - 0.75 y, with a jvp whose y term uses ``x - jvp_offset``: -0.75 is
    the sign slip ``x - -0.75`` of a real accelerator-physics Function.
    """

    class ShiftedProduct(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, y):
            ctx.save_for_backward(x, y)
            ctx.save_for_forward(x, y)
            return x * y - 0.75 * y

        @staticmethod
        def backward(ctx, g):
            x, y = ctx.saved_tensors
            return g * y, g * (x - 0.75)

        @staticmethod
        def jvp(ctx, tx, ty):
            x, y = ctx.saved_tensors
            return tx * y + ty * (x - jvp_offset)

    return ShiftedProduct


def cube(detached):
    class Cube(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x**3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            # The detached bug: right values, but no graph for double backward.
            return 3 * g * (x.detach() if detached else x) ** 2

    return Cube


def _xy(dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, dtype=dtype, generator=gen, requires_grad=True)
    y = torch.randn(5, dtype=dtype, generator=gen, requires_grad=True)
    return x, y


def test_torch_a_wrong_jvp_fails_under_auto_and_names_the_input():
    x, y = _xy()
    report = gt.check(shifted_product(-0.75).apply, (x, y), seed=0)
    assert report.verdict == "fail", str(report)
    assert "y (fwd)" in report.failing
    assert "x (fwd)" not in report.failing
    assert report.blocks["x"].verdict == "pass"  # the backward is right
    assert report.blocks["y"].verdict == "pass"
    assert report.blocks["adjoint"].verdict == "fail"
    assert any(n.startswith("adjoint identity (no finite differences)") for n in report.notes)
    assert set(report.modes) == {"rev", "fwd"}
    json.dumps(report.to_dict(), allow_nan=False)


def test_torch_a_right_jvp_passes_with_the_adjoint_identity():
    x, y = _xy()
    report = gt.check(shifted_product().apply, (x, y), seed=0)
    assert report.verdict == "pass", str(report)
    assert list(report.blocks) == ["x", "y", "x (fwd)", "y (fwd)", "adjoint"]
    forward, reverse = report.adjoint
    assert forward == pytest.approx(reverse, rel=1e-12)


def test_torch_modes_rev_skips_the_forward_rule_and_fwd_checks_it_alone():
    x, y = _xy()
    function = shifted_product(-0.75).apply
    assert gt.check(function, (x, y), seed=0, modes="rev").verdict == "pass"
    alone = gt.check(function, (x, y), seed=0, modes="fwd")
    assert alone.failing == ("y",)


def test_torch_a_plain_function_is_checked_in_reverse_only_under_auto():
    x, _ = _xy()
    report = gt.check(torch.sin, (x,), seed=0)
    assert not any(name.endswith("(fwd)") for name in report.blocks)
    assert not hasattr(report, "modes")
    assert gt.check(torch.sin, (x,), seed=0, modes=("rev", "fwd")).verdict == "pass"


def test_torch_a_detached_backward_passes_order_one_and_fails_order_two():
    x, _ = _xy()
    assert gt.check(cube(detached=True).apply, (x,), seed=0).verdict == "pass"
    report = gt.check(cube(detached=True).apply, (x,), seed=0, order=2)
    assert report.failing == ("x",), str(report)
    assert report.order == 2
    assert gt.check(cube(detached=False).apply, (x,), seed=0, order=2).verdict == "pass"


def test_torch_module_order_two_and_forward_mode():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh()).double()
    inputs = torch.randn(2, 3, dtype=torch.float64)
    before = [p.detach().clone() for p in net.parameters()]
    assert gt.check_module(net, inputs, order=2, seed=0).verdict == "pass"
    both = gt.check_module(net, inputs, modes=("rev", "fwd"), seed=0, batched=False)
    assert both.verdict == "pass"
    assert "0.weight (fwd)" in both.blocks
    assert all(torch.equal(p, b) for p, b in zip(net.parameters(), before, strict=True))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"modes": "sideways"}, "`modes` must be"),
        ({"modes": ()}, "`modes` must be"),
        ({"order": 3}, "`order` must be 1 or 2"),
        ({"order": 2, "modes": "fwd"}, "order=2"),
    ],
)
def test_bad_modes_and_orders_are_refused_by_name(kwargs, words):
    x, _ = _xy()
    with pytest.raises(ValueError, match=words):
        gt.check(torch.sin, (x,), **kwargs)
    with pytest.raises(ValueError, match=words):
        gj.check(jnp.sin, (jnp.arange(3.0),), **kwargs)


def _sin_times(sign):
    @jax.custom_jvp
    def sin_times(x, y):
        return jnp.sin(x) * y

    def rule(primals, tangents):
        x, y = primals
        tx, ty = tangents
        return sin_times(x, y), jnp.cos(x) * y * tx + sign * jnp.sin(x) * ty

    sin_times.defjvp(rule)
    return sin_times


def test_jax_a_wrong_custom_jvp_fails_and_names_the_input():
    x, y = jnp.arange(4.0) / 3, jnp.linspace(0.5, 1.5, 4)
    assert gj.check(_sin_times(1.0), (x, y), seed=0).verdict == "pass"
    report = gj.check(_sin_times(-1.0), (x, y), seed=0)
    assert "y (fwd)" in report.failing, str(report)
    assert "x (fwd)" not in report.failing
    # jax transposes the jvp rule for the vjp: the identity holds, the reverse check fails too.
    assert report.blocks["adjoint"].verdict == "pass"


def test_jax_a_function_calling_a_custom_jvp_inside_gets_forward_mode_under_auto():
    inner = _sin_times(-1.0)

    def outer(x, y):
        return 2 * inner(x, y) + x

    report = gj.check(outer, (jnp.arange(3.0), jnp.ones(3)), seed=0)
    assert "y (fwd)" in report.blocks
    assert gj.check(jnp.sin, (jnp.arange(3.0),), seed=0).blocks.keys() == {"x"}


def _cube(stop):
    @jax.custom_vjp
    def cube_(x):
        return x**3

    def fwd(x):
        return cube_(x), x

    def bwd(x, g):
        return (3 * g * (jax.lax.stop_gradient(x) if stop else x) ** 2,)

    cube_.defvjp(fwd, bwd)
    return cube_


def test_jax_a_stopped_backward_passes_order_one_and_fails_order_two():
    x = jnp.linspace(-1.0, 1.0, 5)
    assert gj.check(_cube(stop=True), (x,), seed=0).verdict == "pass"
    assert gj.check(_cube(stop=True), (x,), seed=0, order=2).failing == ("x",)
    assert gj.check(_cube(stop=False), (x,), seed=0, order=2).verdict == "pass"
