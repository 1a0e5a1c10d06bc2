"""The low-precision comparison on an attention-sized problem, beside torch's own checker.

Timed for real with:

    python -m pytest benchmarks/test_compare.py \
        --benchmark-enable --benchmark-json=.benchmarks/compare.json

The subject is torch's ``scaled_dot_product_attention`` (the kernel) against a plain
``softmax(q k^T / sqrt(d)) v`` (the reference); q, k and v of shape (batch 2, 4 heads, 128
tokens, head 64), 196,608 entries in all.

- ``gradcheck.torch.compare`` in bf16 (truth in float64, baseline and kernel in bf16),
  with the reference's float64 gradient checked along 4 random directions per input and
  the three dependence runs (the default), and without either (``bare``).
- ``torch.autograd.gradcheck`` in float64 on the same function, fast mode (one random
  projection per input) at the same size. Its slow mode builds the whole Jacobian, 196,608
  x 65,536 entries (about 100 GB) by 393,216 evaluations: out of reach, so it is timed on a
  size it can finish in a few seconds, (1, 2, 16, 16), beside the comparison at that size.

Neither torch checker can run in bf16: finite differences resolve nothing there. torch
runs on one intra-op thread, as in the other framework benchmarks. In the normal test run
every body runs once on small stand-ins.
"""

import math

import pytest

torch = pytest.importorskip("torch")

import gradcheck.torch  # noqa: E402

ROUNDS = {"rounds": 3, "iterations": 1, "warmup_rounds": 1}
SIZES = {
    "enabled": {"attention": (2, 4, 128, 64), "slow": (1, 2, 16, 16)},
    "disabled": {"attention": (1, 2, 16, 8), "slow": (1, 1, 4, 4)},
}


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def attention(q, k, v):
    """The reference: attention written plainly."""
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return s.softmax(-1) @ v


kernel = torch.nn.functional.scaled_dot_product_attention


def _inputs(shape, dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    return tuple(torch.randn(shape, generator=gen, dtype=dtype) for _ in range(3))


CONTENDERS = [
    "gradcheck.torch.compare (bf16)",
    "gradcheck.torch.compare (bf16, bare)",
    "torch gradcheck (fast, float64)",
    "torch gradcheck (slow, float64)",
    "gradcheck.torch.compare (bf16) at the slow size",
]


def _run(contender):
    if contender.startswith("gradcheck"):
        bare = {"check_reference": False, "dependence": False} if "bare" in contender else {}

        def run(inputs):
            report = gradcheck.torch.compare(kernel, attention, inputs, seed=0, **bare)
            return report.verdict

        return run, torch.float32
    fast = "fast" in contender

    def run(inputs):
        ok = torch.autograd.gradcheck(kernel, inputs, fast_mode=fast, raise_exception=False)
        return "pass" if ok else "fail"

    return run, torch.float64


@pytest.mark.parametrize("contender", CONTENDERS)
def test_attention(benchmark, mode, contender):
    sizes = SIZES[mode]
    shape = sizes["slow" if "slow" in contender else "attention"]
    run, dtype = _run(contender)
    inputs = tuple(t.requires_grad_(True) for t in _inputs(shape, dtype))
    benchmark.group = f"attention {'x'.join(map(str, sizes['attention']))} (compare)"
    benchmark.extra_info["contender"] = contender
    benchmark.extra_info["shape"] = list(shape)
    said = benchmark.pedantic(run, args=(inputs,), **ROUNDS)
    assert said == "pass", said
