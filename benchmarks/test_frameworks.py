"""The framework adapters against the frameworks' own checkers, on the same native functions.

Timed for real with:

    python -m pytest benchmarks/test_frameworks.py \
        --benchmark-enable --benchmark-json=.benchmarks/frameworks.json

(The batched engine used to build its stacks with a parallel kernel whose OpenMP threads
spun after each call and took the core torch's vmapped call needed: the batched check took
1.10 s that way in a loaded suite. It builds them serially now.)

- torch: a LayerNorm written as a custom ``torch.autograd.Function`` (48x48 input, its
  weight and bias; float64) checked by ``gradcheck.torch.check`` (batched through
  ``torch.func.vmap``, and the one-point loop) and by ``torch.autograd.gradcheck`` in slow
  and fast mode.
- jax: the same LayerNorm as a ``jax.custom_vjp`` rule, checked by ``gradcheck.jax.check``
  and by ``jax.test_util.check_grads`` (reverse mode, order 1), both in float64.

Besides the time of a correct check, every contender is run once (untimed) on versions with
planted bugs, and ``extra_info["caught"]`` records what it said: for gradcheck the failing
blocks, for the peers whether they raised. torch runs on one intra-op thread, as the other
benchmarks hold BLAS to one (see conftest.py): on this shared 2-core machine two threads
made each vmapped LayerNorm call several times slower. In the normal test run every body
runs once on a small stand-in (12x8).
"""

import contextlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")

from tests import layers  # noqa: E402

import gradcheck.jax  # noqa: E402
import gradcheck.torch  # noqa: E402

# A check here takes 0.05-2 s: five timed rounds after a warm-up, the fastest reported.
ROUNDS = {"rounds": 5, "iterations": 1, "warmup_rounds": 1}


@pytest.fixture(scope="module")
def size(mode):
    return (48, 48) if mode == "enabled" else (12, 8)


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- torch: LayerNorm as a custom Function ----------------------------------------------------


def torch_layer_norm(bug=None):
    """``bug="term"``: dx misses the term through the variance (the issue's example)."""
    return layers.torch_layer_norm("x" if bug == "term" else bug).apply


def torch_linear_gelu(bug=None):
    """A fused Linear+GELU (tanh form); ``bug="cubic"``: 0.13 for 3 * 0.044715 in dz."""
    return layers.torch_linear_gelu(bug).apply


def _torch_inputs(size):
    gen = torch.Generator().manual_seed(0)
    n, d = size
    x = torch.randn(n, d, dtype=torch.float64, generator=gen, requires_grad=True)
    w = (1 + 0.1 * torch.randn(d, dtype=torch.float64, generator=gen)).requires_grad_(True)
    b = torch.randn(d, dtype=torch.float64, generator=gen, requires_grad=True)
    return x, w, b


def _gelu_inputs(size):
    gen = torch.Generator().manual_seed(1)
    n, d = size
    x = torch.randn(n, d, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(d // 2, d, dtype=torch.float64, generator=gen, requires_grad=True)
    return x, w


def _torch_contender(name):
    """``run(fn, inputs) -> what it caught``: failing blocks, or 'raised'/'passed'."""
    if name.startswith("gradcheck"):
        batched = None if "batched" in name else False

        def run(fn, inputs):
            report = gradcheck.torch.check(fn, inputs, seed=0, batched=batched)
            return report, ",".join(report.failing) or report.verdict

        return run
    fast = "fast" in name

    def run(fn, inputs):
        ok = torch.autograd.gradcheck(fn, inputs, fast_mode=fast, raise_exception=False)
        return ok, "passed" if ok else "raised"

    return run


TORCH = [
    "gradcheck.torch batched",
    "gradcheck.torch loop",
    "torch gradcheck (slow)",
    "torch gradcheck (fast)",
]


@pytest.mark.parametrize("contender", TORCH)
def test_torch_layer_norm(benchmark, size, contender):
    run = _torch_contender(contender)
    inputs = _torch_inputs(size)
    benchmark.group = f"torch LayerNorm {size[0]}x{size[1]} (float64)"
    benchmark.extra_info["contender"] = contender
    benchmark.extra_info["caught: missing variance term"] = run(torch_layer_norm("term"), inputs)[1]
    gelu = _gelu_inputs(size)
    benchmark.extra_info["caught: linear+gelu cubic slip"] = run(torch_linear_gelu("cubic"), gelu)[
        1
    ]
    result, said = benchmark.pedantic(run, args=(torch_layer_norm(), inputs), **ROUNDS)
    assert said in ("pass", "passed"), said
    if contender == "gradcheck.torch batched":
        assert result.engine == "batched"


# --- jax: LayerNorm as a custom_vjp rule -------------------------------------------------------


jax_layer_norm = layers.jax_layer_norm  # bug="n": the backward misses a 1/n


def _jax_contender(name):
    if name.startswith("gradcheck"):

        def run(fn, args):
            report = gradcheck.jax.check(fn, args, seed=0)
            return report, ",".join(report.failing) or report.verdict

        return run
    from jax.test_util import check_grads

    def run(fn, args):
        try:
            check_grads(fn, args, order=1, modes=("rev",))
        except AssertionError:
            return False, "raised"
        return True, "passed"

    return run


@pytest.mark.parametrize("contender", ["gradcheck.jax", "jax check_grads (rev)"])
def test_jax_layer_norm(benchmark, size, contender):
    run = _jax_contender(contender)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(size)
    w = 1 + 0.1 * rng.standard_normal(size[1])
    # check_grads needs 64-bit jax for float64; gradcheck.jax turns it on by itself.
    x64 = getattr(jax, "enable_x64", None)
    with x64(True) if x64 is not None else contextlib.nullcontext():
        args = (jax.numpy.asarray(x), jax.numpy.asarray(w))
        benchmark.group = f"jax LayerNorm {size[0]}x{size[1]} (float64)"
        benchmark.extra_info["contender"] = contender
        benchmark.extra_info["caught: missing 1/n"] = run(jax_layer_norm("n"), args)[1]
        f = jax_layer_norm()
        run(f, args)  # compile outside the timing, as a second check in a session would
        _, said = benchmark.pedantic(run, args=(f, args), **ROUNDS)
    assert said in ("pass", "passed"), said
