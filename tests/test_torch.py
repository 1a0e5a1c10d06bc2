"""gradcheck.torch: custom autograd Functions and modules, float64 and float32, correct and
with planted backward bugs; names; the vmap path and its fallback; module state restored;
torch losses accepted by gradcheck.check."""

import numpy as np
import pytest

import gradcheck

from . import layers

torch = pytest.importorskip("torch")
gt = pytest.importorskip("gradcheck.torch")


_layer_norm, _layer_norm_backward = layers.layer_norm, layers.layer_norm_backward
layer_norm_function = layers.torch_layer_norm


def old_style_layer_norm(bug=None):
    """The same Function in the older ctx-in-forward style, which vmap refuses."""

    class LayerNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, bias):
            y, xhat, rstd = _layer_norm(x, weight, bias)
            ctx.save_for_backward(xhat, rstd, weight)
            return y

        @staticmethod
        def backward(ctx, g):
            xhat, rstd, weight = ctx.saved_tensors
            return _layer_norm_backward(g, xhat, rstd, weight, bug)

    return LayerNorm


def _ln_inputs(dtype=torch.float64, n=12, d=8):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, dtype=dtype, generator=gen, requires_grad=True)
    w = (1 + 0.1 * torch.randn(d, dtype=dtype, generator=gen)).requires_grad_(True)
    b = torch.randn(d, dtype=dtype, generator=gen, requires_grad=True)
    return x, w, b


class LinearFn(torch.autograd.Function):
    """y = x @ W.T + b; ``LinearFn.error`` plants a relative error in the weight gradient."""

    error = 0.0

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return x @ weight.T + bias

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        return g @ weight, (g.T @ x) * (1 + LinearFn.error), g.sum(0)


class MyLinear(torch.nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(n_out, n_in) / n_in**0.5)
        self.bias = torch.nn.Parameter(torch.randn(n_out))

    def forward(self, x):
        return LinearFn.apply(x, self.weight, self.bias)


def _net(dtype=torch.float64):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 6), torch.nn.Tanh(), MyLinear(6, 3), torch.nn.Softplus()
    ).to(dtype)


@pytest.fixture
def planted_linear_error():
    def plant(error):
        LinearFn.error = error

    yield plant
    LinearFn.error = 0.0


# --- Functions --------------------------------------------------------------------------------


def test_correct_function_passes_in_the_batched_path():
    report = gt.check(layer_norm_function().apply, _ln_inputs(), seed=0)
    assert report.verdict == "pass", str(report)
    assert list(report.blocks) == ["x", "weight", "bias"]  # forward's parameter names
    assert report.engine == "batched"
    assert report.tol == (1e-7, 1e-5)


@pytest.mark.parametrize(("bug", "name"), [("x", "x"), ("w", "weight")])
@pytest.mark.parametrize("style", [layer_norm_function, old_style_layer_norm])
def test_planted_bug_fails_exactly_that_input(style, bug, name):
    report = gt.check(style(bug).apply, _ln_inputs(), seed=0)
    assert report.failing == (name,), str(report)


def test_old_style_function_falls_back_to_the_loop_and_says_why():
    report = gt.check(old_style_layer_norm().apply, _ln_inputs(), seed=0)
    assert report.verdict == "pass", str(report)
    assert report.engine == "python"
    assert any("torch.func.vmap cannot run it" in n for n in report.notes)
    with pytest.raises(ValueError, match=r"batched=True, but torch\.func\.vmap cannot run"):
        gt.check(old_style_layer_norm().apply, _ln_inputs(), seed=0, batched=True)


def test_batched_and_loop_paths_give_the_same_gradapprox():
    fn = layer_norm_function().apply
    stacked = gt.check(fn, _ln_inputs(), seed=3)
    loop = gt.check(fn, _ln_inputs(), seed=3, batched=False)
    assert (stacked.engine, loop.engine) == ("batched", "python")
    np.testing.assert_allclose(stacked.gradapprox["x"], loop.gradapprox["x"], rtol=1e-6)
    np.testing.assert_array_equal(stacked.cotangent, loop.cotangent)


def test_float32_native_rules_and_float64_evaluation():
    fn = layer_norm_function().apply
    native = gt.check(fn, _ln_inputs(torch.float32), seed=0, evaluate="native")
    assert native.verdict == "pass", str(native)
    assert native.tol == (1e-3, 1e-2)
    auto = gt.check(fn, _ln_inputs(torch.float32), seed=0)
    assert auto.verdict == "pass", str(auto)
    assert auto.tol == (1e-4, 1e-3)
    assert any("float64 copies" in n for n in auto.notes)
    wide = gt.check(fn, _ln_inputs(torch.float32), seed=0, evaluate="float64")
    assert wide.verdict == "pass", str(wide)
    assert wide.tol == (1e-7, 1e-5)
    bad = gt.check(layer_norm_function("x").apply, _ln_inputs(torch.float32), seed=0)
    assert bad.failing == ("x",), str(bad)


def _gelu_input(seed):
    return torch.randn(8, 16, dtype=torch.float32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("error", [0.01, 0.005])
def test_float32_backward_a_percent_or_half_off_fails(error):
    # The numeric side on float64 copies (the function follows its inputs' dtype), the
    # backward on the float32 inputs: float32's own thresholds would say "warn".
    for seed in range(3):
        report = gt.check(layers.torch_gelu(error).apply, (_gelu_input(seed),), seed=seed)
        assert report.verdict == "fail", str(report)


def test_correct_float32_backward_passes_on_every_seed():
    fn = layers.torch_gelu().apply
    for seed in range(5):
        report = gt.check(fn, (_gelu_input(seed),), seed=seed)
        assert report.verdict == "pass", str(report)


def test_float32_that_cannot_widen_says_what_to_do_when_entries_disagree():
    # The forward computes in float32 whatever it is given: float32 differences, where a
    # 1% error is only "warn", and the report says how to resolve it.
    report = gt.check(layers.torch_gelu(0.01, pin=True).apply, (_gelu_input(0),), seed=0)
    assert report.verdict == "warn", str(report)
    assert report.tol == (1e-3, 1e-2)
    assert any("evaluate='float64'" in n and "only 'warn'" in n for n in report.notes)
    # A correct one gets no such advice.
    correct = gt.check(layers.torch_gelu(pin=True).apply, (_gelu_input(0),), seed=0)
    assert correct.verdict == "pass"
    assert not any("only 'warn'" in n for n in correct.notes)


def test_float64_evaluation_refuses_code_that_ignores_the_dtype():
    def hard_coded(x):
        return (x.float() ** 2).float()

    x = torch.randn(4, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"evaluate='float64'.*returned torch.float32"):
        gt.check(hard_coded, (x,), evaluate="float64")


def test_fused_linear_gelu_with_a_subtle_derivative_bug_fails():
    # Subtly wrong: 0.13 where the derivative of the cubic term gives 3 * 0.044715.
    LinearGelu = layers.torch_linear_gelu("cubic")

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(4, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    report = gt.check(LinearGelu.apply, (x, w), seed=0)
    assert set(report.failing) == {"x", "weight"}, str(report)


def test_names_from_signature_dict_keys_or_positions():
    def f(a, scale, *, unused=None):
        return a.sin() * scale

    a = torch.randn(3, dtype=torch.float64)
    assert list(gt.check(f, (a, 2.0), seed=0).blocks) == ["a"]
    assert list(gt.check(lambda *t: t[0].sin() * t[1], (a, a), seed=0).blocks) == [
        "input0",
        "input1",
    ]
    report = gt.check(lambda a, b: a * b, {"a": a, "b": a.cos()}, seed=0)
    assert list(report.blocks) == ["a", "b"]


def test_only_inputs_that_require_grad_are_checked():
    x, w, b = _ln_inputs()
    w = w.detach()
    report = gt.check(layer_norm_function().apply, (x, w, b), seed=0)
    assert list(report.blocks) == ["x", "bias"]


def test_user_tensors_and_their_grad_are_left_alone():
    x, w, b = _ln_inputs()
    before = [t.detach().clone() for t in (x, w, b)]
    gt.check(layer_norm_function().apply, (x, w, b), seed=0)
    for t, saved in zip((x, w, b), before, strict=True):
        assert torch.equal(t, saved)
        assert t.grad is None


def test_recorded_cotangent_replays_the_check():
    fn = layer_norm_function("w").apply
    first = gt.check(fn, _ln_inputs(), seed=11)
    assert isinstance(first.cotangent, np.ndarray)
    assert first.cotangent.shape == (12, 8)
    again = gt.check(fn, _ln_inputs(), cotangent=torch.from_numpy(first.cotangent), seed=2)
    assert again.difference == pytest.approx(first.difference, rel=1e-6)


def test_the_function_sees_the_inputs_device_and_dtype():
    seen = set()

    def f(x):
        seen.add((x.device.type, x.dtype, x.requires_grad))
        return x.exp()

    x = torch.randn(5, dtype=torch.float32)
    report = gt.check(f, (x,), seed=0, evaluate="native")
    assert report.engine == "batched"
    assert {(d, t) for d, t, _ in seen} == {("cpu", torch.float32)}
    # By default the finite differences of a function that follows its inputs' dtype run
    # on float64 copies (the analytic side on the float32 inputs), on the same device.
    seen.clear()
    gt.check(f, (x,), seed=0)
    assert {(d, t) for d, t, _ in seen} == {("cpu", torch.float32), ("cpu", torch.float64)}
    assert ("cpu", torch.float32, True) in seen
    # Numeric evaluations run without autograd: only the analytic call records a graph.
    assert (x.device.type, torch.float32, False) in seen


def test_bad_arguments_name_themselves():
    x = torch.randn(3, dtype=torch.float64)
    with pytest.raises(TypeError, match="`fn` must be callable, got int"):
        gt.check(3, (x,))
    with pytest.raises(TypeError, match="holds no floating-point tensor"):
        gt.check(lambda n: n * 1.0, (torch.arange(3),))
    with pytest.raises(
        ValueError, match=r"`evaluate` must be one of \('auto', 'native', 'float64'\)"
    ):
        gt.check(torch.sin, (x,), evaluate="double")
    with pytest.raises(ValueError, match="no grad_fn"):
        gt.check(lambda t: torch.from_numpy(t.detach().numpy() ** 2), (x,))
    with pytest.raises(ValueError, match="mix dtypes"):
        gt.check(lambda a, b: a * b, (x, x.float()))
    with pytest.raises(ValueError, match="method='complex' is not supported"):
        gt.check(torch.sin, (x,), method="complex")
    with pytest.raises(ValueError, match=r"`cotangent` must be real with the output's shape"):
        gt.check(torch.sin, (x,), cotangent=torch.ones(4))


# --- modules ----------------------------------------------------------------------------------


def test_module_with_a_custom_function_passes_with_parameter_names():
    net = _net()
    x = torch.randn(7, 5, dtype=torch.float64)
    report = gt.check_module(net, (x,), seed=0)
    assert report.verdict == "pass", str(report)
    assert list(report.blocks) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert report.engine == "python"  # LinearFn is old-style: the loop
    loss = gt.check_module(net, (x,), loss=lambda y: (y**2).mean(), seed=0)
    assert loss.verdict == "pass", str(loss)
    assert loss.cotangent is None


# A subtle 0.1% error in float64; float32 cannot resolve that, so 5% there.
@pytest.mark.parametrize(("dtype", "error"), [(torch.float64, 1e-3), (torch.float32, 0.05)])
def test_module_planted_bug_fails_exactly_that_parameter(planted_linear_error, dtype, error):
    net = _net(dtype)
    x = torch.randn(7, 5, dtype=dtype)
    planted_linear_error(error)
    report = gt.check_module(net, (x,), seed=0)
    assert report.failing == ("2.weight",), str(report)
    planted_linear_error(0.0)
    assert gt.check_module(net, (x,), seed=0).verdict == "pass"


def test_module_nested_names_and_batched_path():
    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(4, 3)
            self.fc2 = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.fc2(torch.tanh(self.fc1(x)))

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = Encoder()

        def forward(self, x):
            return self.encoder(x)

    torch.manual_seed(1)
    model = Model()
    model.encoder.fc2.bias.requires_grad_(False)
    report = gt.check_module(model, torch.randn(5, 4), seed=0)
    assert list(report.blocks) == ["encoder.fc1.weight", "encoder.fc1.bias", "encoder.fc2.weight"]
    assert report.engine == "batched"
    assert report.verdict == "pass", str(report)


def _state(module):
    return (
        [
            (n, p.detach().clone(), None if p.grad is None else p.grad.clone())
            for n, p in module.named_parameters()
        ],
        [(n, b.clone()) for n, b in module.named_buffers()],
        [m.training for m in module.modules()],
    )


def _assert_same_state(module, state):
    params, buffers, modes = state
    for (n, p), (n0, value, grad) in zip(module.named_parameters(), params, strict=True):
        assert n == n0
        assert torch.equal(p, value), n
        assert (p.grad is None) == (grad is None)
        if grad is not None:
            assert torch.equal(p.grad, grad)
    for (n, b), (n0, value) in zip(module.named_buffers(), buffers, strict=True):
        assert n == n0
        assert torch.equal(b, value), n
    assert [m.training for m in module.modules()] == modes


def test_module_state_is_left_unchanged():
    torch.manual_seed(2)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.Tanh(), torch.nn.Linear(6, 2)
    ).double()
    net.train()
    net[3].eval()  # mixed modes must come back mixed
    x = torch.randn(8, 4, dtype=torch.float64)
    net(x).sum().backward()  # some .grad to keep; the batch-norm statistics move once
    state = _state(net)
    report = gt.check_module(net, (x,), seed=0)
    assert report.verdict in ("pass", "inconclusive"), str(report)  # 0.bias: no gradient
    assert "1.weight" in report.blocks
    _assert_same_state(net, state)


class Meddling(torch.nn.Module):
    """A forward that switches its own mode, may write to its weight, and raises late."""

    def __init__(self, write=False, fail_after=3):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)
        self.write = write
        self.fail_after = fail_after
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        self.train(False)
        if self.write:
            with torch.no_grad():
                self.fc.weight.add_(1.0)
        if self.calls > self.fail_after:
            raise RuntimeError("boom")
        return self.fc(x)


@pytest.mark.parametrize("batched", [False, None])
def test_module_state_is_restored_when_forward_raises(batched):
    torch.manual_seed(3)
    module = Meddling().train()
    module(torch.randn(4, 3)).sum().backward()
    module.train()
    module.calls = 0
    state = _state(module)
    with pytest.raises(RuntimeError, match="boom"):
        gt.check_module(module, (torch.randn(4, 3),), seed=0, batched=batched)
    _assert_same_state(module, state)


def test_forward_that_writes_its_parameters_is_caught_and_undone():
    torch.manual_seed(4)
    module = Meddling(write=True, fail_after=10**6)
    state = _state(module)
    with pytest.raises(ValueError, match=r"modified its input in place: fc\.weight\[0, 0\]"):
        gt.check_module(module, (torch.randn(4, 3),), seed=0)
    _assert_same_state(module, state)


def test_check_module_bad_arguments():
    with pytest.raises(TypeError, match=r"`module` must be a torch\.nn\.Module, got function"):
        gt.check_module(lambda x: x, (torch.ones(2),))
    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter that requires grad"):
        gt.check_module(frozen, (torch.ones(1, 2),))
    with pytest.raises(ValueError, match="`loss` makes the output scalar"):
        gt.check_module(torch.nn.Linear(2, 2), (torch.ones(1, 2),), loss=torch.sum, projections=2)


# --- gradcheck.check with torch losses --------------------------------------------------------


@pytest.mark.parametrize("shape", [(), (1,), (1, 1)])
def test_check_accepts_a_one_element_tensor_loss(shape):
    x = np.array([0.5, -1.0, 2.0])
    report = gradcheck.check(lambda p: (torch.from_numpy(p) ** 3).sum().reshape(shape), x, 3 * x**2)
    assert report.verdict == "pass", str(report)
    bad = gradcheck.check(lambda p: (torch.from_numpy(p) ** 3).sum().reshape(shape), x, 2 * x**2)
    assert bad.verdict == "fail"


def test_check_takes_a_float32_tensor_loss_with_float32_rules():
    x = np.array([0.5, -1.0, 2.0])
    report = gradcheck.check(lambda p: torch.from_numpy(p).float().pow(2).sum(), x, 2 * x)
    assert report.tol == (1e-3, 1e-2)
    assert report.verdict == "pass", str(report)


def test_check_still_refuses_a_vector_tensor():
    x = np.array([0.5, -1.0])
    with pytest.raises(
        TypeError, match=r"one real number, got Tensor of shape torch.Size\(\[2\]\)"
    ):
        gradcheck.check(lambda p: torch.from_numpy(p) * 2, x, 2 * x)
