"""More derivatives, side by side in one run: the Taylor test against ``gradcheck.check`` on
the same losses, and order 2 against the frameworks' own second-order checkers.

Timed for real with:

    python -m pytest benchmarks/test_derivatives.py \
        --benchmark-enable --benchmark-json=.benchmarks/derivatives.json

- Taylor test against check: a linear-solve loss and its adjoint (``u = A^-1 x``,
  ``J = sum(u^3) / 3``, 200 parameters: the issue's example) and a tanh regression (2,000
  parameters in two blocks), each with its right gradient (timed) and a planted wrong one
  (run once, untimed: ``extra_info["caught"]`` records what each said). ``extra_info``
  holds the evaluations of f each spent.
- Order 2: a custom ``torch.autograd.Function`` (softplus, 48x48, float64) checked by
  ``gradcheck.torch.check(order=2)`` and ``torch.autograd.gradgradcheck``, and a
  ``jax.custom_vjp`` softplus checked by ``gradcheck.jax.check(order=2)`` and
  ``jax.test_util.check_grads(order=2, modes=("rev",))``; the planted bug computes the
  backward on a detached input (jax: ``stop_gradient``), right to first order.

In the normal test run every body runs once on small stand-ins.
"""

import contextlib

import numpy as np
import pytest

import gradcheck

ROUNDS = {"rounds": 5, "iterations": 1, "warmup_rounds": 1}


@pytest.fixture(scope="module")
def big(mode):
    return mode == "enabled"


# --- Taylor test against check ----------------------------------------------------------------


def solve_problem(n):
    rng = np.random.default_rng(0)
    a = np.eye(n) * 4 + rng.standard_normal((n, n)) / np.sqrt(n)
    x = rng.standard_normal(n)

    def loss(v):
        return np.sum(np.linalg.solve(a, v) ** 3) / 3

    def right(v):
        return np.linalg.solve(a.T, np.linalg.solve(a, v) ** 2)

    def wrong(v):
        return np.linalg.solve(a, np.linalg.solve(a, v) ** 2)  # A, not A^T

    return loss, x, right, wrong


def regression_problem(n):
    rng = np.random.default_rng(1)
    rows = 64
    features = rng.standard_normal((rows, n)) / np.sqrt(n)
    y = rng.standard_normal(rows)
    params = {"w": rng.standard_normal(n), "b": rng.standard_normal(rows)}

    def loss(p):
        r = np.tanh(features @ p["w"] + p["b"]) - y
        return 0.5 * r @ r

    def right(p):
        t = np.tanh(features @ p["w"] + p["b"])
        r = (t - y) * (1 - t**2)
        return {"w": features.T @ r, "b": r}

    def wrong(p):
        g = right(p)
        return {"w": g["w"], "b": 1.1 * g["b"]}  # a 10% error in one block

    return loss, params, right, wrong


PROBLEMS = {
    "linear solve": (solve_problem, 200, 20),
    "tanh regression": (regression_problem, 2000, 40),
}


def _taylor(loss, params, grad):
    result = gradcheck.taylor_test(loss, params, grad, seed=0)
    return result, result.verdict, result.nfev


def _check(loss, params, grad):
    report = gradcheck.check(loss, params, grad, seed=0, workers=1)
    return report, report.verdict, report.nfev


@pytest.mark.parametrize("contender", ["taylor_test", "check"])
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_taylor_test_against_check(benchmark, big, problem, contender):
    make, n_full, n_small = PROBLEMS[problem]
    loss, params, right, wrong = make(n_full if big else n_small)
    run = _taylor if contender == "taylor_test" else _check
    benchmark.group = f"taylor_test vs check: {problem} (n={n_full if big else n_small})"
    benchmark.extra_info["contender"] = contender
    _, caught, _ = run(loss, params, wrong)
    benchmark.extra_info["caught: planted wrong gradient"] = caught
    _, said, nfev = benchmark.pedantic(run, args=(loss, params, right), **ROUNDS)
    benchmark.extra_info["evaluations"] = nfev
    assert said == "pass", said
    assert caught == "fail", caught


# --- order 2 against the frameworks' checkers --------------------------------------------------


def torch_softplus(detached):
    torch = pytest.importorskip("torch")

    class Softplus(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.nn.functional.softplus(x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * torch.sigmoid(x.detach() if detached else x)

    return Softplus.apply


def _torch_run(name):
    torch = pytest.importorskip("torch")
    adapter = pytest.importorskip("gradcheck.torch")
    if name.startswith("gradcheck"):

        def run(fn, x):
            report = adapter.check(fn, (x,), seed=0, order=2)
            return report, ",".join(report.failing) or report.verdict

        return run

    def run(fn, x):
        ok = torch.autograd.gradgradcheck(fn, (x,), raise_exception=False)
        return ok, "passed" if ok else "raised"

    return run


@pytest.mark.parametrize("contender", ["gradcheck.torch order=2", "torch gradgradcheck"])
def test_torch_order_two(benchmark, big, contender):
    torch = pytest.importorskip("torch")
    shape = (48, 48) if big else (6, 4)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, generator=gen, requires_grad=True)
    run = _torch_run(contender)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        benchmark.group = f"order 2, torch softplus {shape[0]}x{shape[1]} (float64)"
        benchmark.extra_info["contender"] = contender
        caught = run(torch_softplus(detached=True), x)[1]
        benchmark.extra_info["caught: backward on a detached input"] = caught
        _, said = benchmark.pedantic(run, args=(torch_softplus(detached=False), x), **ROUNDS)
    finally:
        torch.set_num_threads(before)
    assert said in ("pass", "passed"), said
    assert caught in ("x", "raised"), caught


def jax_softplus(stop):
    jax = pytest.importorskip("jax")

    @jax.custom_vjp
    def softplus(x):
        return jax.numpy.logaddexp(0.0, x)

    def fwd(x):
        return softplus(x), x

    def bwd(x, g):
        return (g * jax.nn.sigmoid(jax.lax.stop_gradient(x) if stop else x),)

    softplus.defvjp(fwd, bwd)
    return softplus


def _jax_run(name):
    adapter = pytest.importorskip("gradcheck.jax")
    if name.startswith("gradcheck"):

        def run(fn, x):
            report = adapter.check(fn, (x,), seed=0, order=2)
            return report, ",".join(report.failing) or report.verdict

        return run
    from jax.test_util import check_grads

    def run(fn, x):
        try:
            check_grads(fn, (x,), order=2, modes=("rev",))
        except AssertionError:
            return False, "raised"
        return True, "passed"

    return run


@pytest.mark.parametrize("contender", ["gradcheck.jax order=2", "jax check_grads (rev, order 2)"])
def test_jax_order_two(benchmark, big, contender):
    jax = pytest.importorskip("jax")
    shape = (48, 48) if big else (6, 4)
    x = np.random.default_rng(0).standard_normal(shape)
    run = _jax_run(contender)
    x64 = getattr(jax, "enable_x64", None)
    with x64(True) if x64 is not None else contextlib.nullcontext():
        xj = jax.numpy.asarray(x)
        benchmark.group = f"order 2, jax softplus {shape[0]}x{shape[1]} (float64)"
        benchmark.extra_info["contender"] = contender
        caught = run(jax_softplus(stop=True), xj)[1]
        benchmark.extra_info["caught: backward with stop_gradient"] = caught
        f = jax_softplus(stop=False)
        run(f, xj)  # compile outside the timing
        _, said = benchmark.pedantic(run, args=(f, xj), **ROUNDS)
    assert said in ("pass", "passed"), said
    assert caught in ("x", "raised"), caught
