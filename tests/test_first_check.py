"""A small first check does not wait for a compiler: a batched check (numpy, torch) builds
its stacks without numba until compiling pays, and jax reuses what it compiled."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gradcheck
from gradcheck import _jit

SRC = str(Path(gradcheck.__file__).resolve().parents[1])


def _child(code: str) -> dict:
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop("NUMBA_DISABLE_JIT", None)
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_small_batched_check_does_not_load_numba():
    code = """
import json, sys
import numpy as np, gradcheck
x = np.linspace(-1.0, 1.0, 24)
r = gradcheck.check(lambda X: np.sum(X**3, axis=-1), x, 3 * x**2, batched=True, seed=0)
print(json.dumps({"verdict": r.verdict, "engine": r.engine, "numba": "numba" in sys.modules}))
"""
    assert _child(code) == {"verdict": "pass", "engine": "batched", "numba": False}


def test_a_small_batched_check_compiles_nothing_when_numba_is_loaded_anyway():
    code = """
import json, sys
import numba, numpy as np, gradcheck
from gradcheck import _jit

@numba.njit
def user_code(x):  # the user's own jitted code loads numba
    return x.sum()

user_code(np.ones(3))
x = np.linspace(-1.0, 1.0, 24)
r = gradcheck.check(lambda X: np.sum(X**3, axis=-1), x, 3 * x**2, batched=True, seed=0)
print(json.dumps({"verdict": r.verdict, "compiled": sorted(map(list, _jit._built))}))
"""
    assert _child(code) == {"verdict": "pass", "compiled": []}


def test_the_stack_builder_compiles_once_that_pays(monkeypatch):
    monkeypatch.setattr(_jit, "PLAIN_ENTRIES", 100)
    build = _jit._PlainUntilItPays("build_batch", False)
    theta, idx, values = np.ones(10), np.arange(10), np.zeros((10, 2))
    calls = []
    monkeypatch.setitem(_jit.PLAIN, "build_batch", lambda *a: calls.append(1))
    for _ in range(3):
        build(theta, idx, values, 0, np.empty((6, 10)))
    # 60 entries, then 120: the third call has passed the mark and goes to the kernel.
    assert len(calls) == 2


def test_a_small_batched_torch_check_does_not_load_numba():
    pytest.importorskip("torch")
    code = """
import json, sys
import torch, gradcheck.torch
x = torch.linspace(-1.0, 1.0, 24, dtype=torch.float64).reshape(4, 6)
r = gradcheck.torch.check(lambda x: torch.softmax(x, -1), (x,), seed=0)
print(json.dumps({"verdict": r.verdict, "engine": r.engine, "numba": "numba" in sys.modules}))
"""
    assert _child(code) == {"verdict": "pass", "engine": "batched", "numba": False}


def test_the_plain_stack_builder_matches_the_kernel_bit_for_bit():
    rng = np.random.default_rng(0)
    theta = rng.standard_normal(50)
    idx = np.sort(rng.choice(50, 20, replace=False)).astype(np.int64)
    values = rng.standard_normal((20, 2))
    for start, rows in ((0, 40), (7, 13), (39, 1)):
        plain = np.empty((rows, 50))
        kernel = np.empty((rows, 50))
        _jit.PLAIN["build_batch"](theta, idx, values, start, plain)
        _jit.compiled_kernel("build_batch")(theta, idx, values, start, kernel)
        assert np.array_equal(plain, kernel)


def test_jax_reuses_what_it_compiled_for_the_same_function_and_shapes():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    import gradcheck.jax

    traced = []

    def loss(w, X):
        traced.append(1)  # runs when jax traces (jit, vmap, vjp), not when it replays
        return jnp.tanh(X @ w)

    rng = np.random.default_rng(0)
    w = rng.standard_normal(3)
    with jax.enable_x64(True):
        X1 = jnp.asarray(rng.standard_normal((5, 3)))
        X2 = jnp.asarray(rng.standard_normal((5, 3)))
        first = gradcheck.jax.check(loss, (jnp.asarray(w), X1), argnums=0, seed=0)
        before = len(traced)
        second = gradcheck.jax.check(loss, (jnp.asarray(w), X2), argnums=0, seed=1)
        again = len(traced) - before
        # Held-fixed data is an argument of what was compiled, not a constant baked into it.
        pullback = jax.vjp(lambda v: loss(v, X2), jnp.asarray(w))[1]
        expected = np.asarray(pullback(jnp.asarray(second.cotangent))[0])
    assert first.verdict == second.verdict == "pass"
    assert first.nfev > 10
    # The second check traces only jax.vjp's call (the analytic side): the numeric side's
    # jit and vmap were compiled by the first check.
    assert again == 1, again
    assert np.allclose(second.gradapprox["w"], expected, rtol=1e-6)
