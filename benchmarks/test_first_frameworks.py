"""The first check in a process, and the second, through the torch and jax adapters and
their frameworks' own checkers, each contender in a fresh Python process.

gradcheck compiles its numba kernels without numba's disk cache here
(``GRADCHECK_NUMBA_CACHE=0``): what a first run on a new machine pays. Phases as in
``test_first_call.py``: ``import`` (the modules and the problem), ``first`` (the first
check, with any compiling it triggers) and ``steady`` (the same check again, which reuses
what the first compiled).

- softmax over 4x6 (24 inputs): a small first check, float64 for torch, float32 for jax;
- LayerNorm 48x48 with a weight (2,400 inputs) as a ``jax.custom_vjp`` rule, float64:
  ``gradcheck.jax.check`` (every coordinate) against ``check_grads`` (one random
  direction per order), side by side.
"""

import pytest

from .test_first_call import run_child

TORCH_SOFTMAX = (
    "import torch, gradcheck.torch\n"
    "X = torch.linspace(-1.0, 1.0, 24, dtype=torch.float64).reshape(4, 6)\n"
    "F = lambda x: torch.softmax(x, -1)"
)
JAX_SOFTMAX = (
    "import jax, jax.numpy as jnp, gradcheck.jax\n"
    "from jax.test_util import check_grads\n"
    "X = jnp.linspace(-1.0, 1.0, 24, dtype=jnp.float32).reshape(4, 6)\n"
    "F = lambda x: jax.nn.softmax(x, -1)"
)
JAX_LAYER_NORM = (
    "import jax, numpy as np, gradcheck.jax\n"
    "from jax.test_util import check_grads\n"
    "from tests import layers\n"
    "jax.config.update('jax_enable_x64', True)\n"
    "rng = np.random.default_rng(0)\n"
    "X = jax.numpy.asarray(rng.standard_normal((48, 48)))\n"
    "W = jax.numpy.asarray(1 + 0.1 * rng.standard_normal(48))\n"
    "F = layers.jax_layer_norm()"
)
COLD = {"GRADCHECK_NUMBA_CACHE": "0"}

# contender: (workload, set-up lines, check to run twice, framework that must exist)
CASES = {
    "gradcheck.torch (batched)": (
        "softmax 4x6",
        TORCH_SOFTMAX,
        "gradcheck.torch.check(F, (X,), seed=0)",
        "torch",
    ),
    "gradcheck.torch (batched=False)": (
        "softmax 4x6",
        TORCH_SOFTMAX,
        "gradcheck.torch.check(F, (X,), seed=0, batched=False)",
        "torch",
    ),
    "torch.autograd.gradcheck": (
        "softmax 4x6",
        TORCH_SOFTMAX,
        "torch.autograd.gradcheck(F, (X.clone().requires_grad_(),))",
        "torch",
    ),
    "gradcheck.jax (float32)": (
        "softmax 4x6",
        JAX_SOFTMAX,
        "gradcheck.jax.check(F, (X,), seed=0)",
        "jax",
    ),
    "jax check_grads (float32, rev)": (
        "softmax 4x6",
        JAX_SOFTMAX,
        "check_grads(F, (X,), order=1, modes=('rev',), atol=1e-2, rtol=1e-2)",
        "jax",
    ),
    "gradcheck.jax": (
        "LayerNorm 48x48",
        JAX_LAYER_NORM,
        "gradcheck.jax.check(F, (X, W), seed=0)",
        "jax",
    ),
    "jax check_grads (rev)": (
        "LayerNorm 48x48",
        JAX_LAYER_NORM,
        "check_grads(F, (X, W), order=1, modes=('rev',))",
        "jax",
    ),
}


@pytest.mark.parametrize("contender", list(CASES))
def test_first_framework_check(benchmark, mode, contender):
    workload, setup, check, needs = CASES[contender]
    pytest.importorskip(needs)
    rounds = []

    def child():
        rounds.append(run_child(setup, check, COLD))

    benchmark.group = f"first check, fresh process: {workload}"
    benchmark.extra_info.update(contender=contender, workload=workload, kind="first call")
    benchmark.pedantic(child, rounds=3 if mode == "enabled" else 1)
    for phase in rounds[-1]:
        benchmark.extra_info[f"{phase}_seconds"] = min(r[phase] for r in rounds)
    assert all(r["first"] > 0 for r in rounds)
