"""First-call cost: import plus the first check, each contender in a fresh Python process.

The child process reports its own phases on its last line of output (JSON):
``import`` (the contender's modules), ``first`` (the first check, on the course net, with
any compiling or cache loading it triggers) and ``steady`` (the same check again). Building
the workload, and compiling the user's own jitted loss, happen between ``import`` and
``first`` and are in neither. The benchmark's own time is the whole child process, Python's
start-up included. Timed runs make one untimed child first, so that "cached kernels" finds
numba's on-disk cache written.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import BLAS_THREADS

ROOT = Path(__file__).resolve().parent.parent

# contender: (import lines, check to run twice, extra environment, module that must exist)
CASES = {
    "gradcheck python": (
        "import gradcheck",
        "gradcheck.check(w.loss, w.params, grads, engine='python')",
        {},
        None,
    ),
    "gradcheck numba (cached kernels)": (
        "import gradcheck, numba",
        "gradcheck.check(w.flat, theta, g, engine='numba')",
        {},
        None,
    ),
    "gradcheck numba (cold compile)": (
        "import gradcheck, numba",
        "gradcheck.check(w.flat, theta, g, engine='numba')",
        # gradcheck compiles its kernels without numba's disk cache: a first run anywhere.
        {"GRADCHECK_NUMBA_CACHE": "0"},
        None,
    ),
    "gradcheck batched": (
        "import gradcheck",
        "gradcheck.check(w.batched, w.params, grads, batched=True)",
        {},
        None,
    ),
    "scipy approx_derivative 3-point": (
        "from scipy.optimize._numdiff import approx_derivative",
        "approx_derivative(w.flat_numpy, theta, method='3-point')",
        {},
        None,
    ),
    "numdifftools Gradient": (
        "import numdifftools",
        "numdifftools.Gradient(w.flat_numpy)(theta)",
        {},
        None,
    ),
    "torch gradcheck (slow)": (
        "import torch",
        "contenders.PEERS['torch gradcheck (slow)'][0](w.flat_numpy, w.flat_grad, theta, g)",
        {},
        "torch",
    ),
    "jax check_grads (rev)": (
        "import jax; jax.config.update('jax_enable_x64', True); import jax.test_util",
        "contenders.PEERS['jax check_grads (rev)'][0](w.flat_numpy, w.flat_grad, theta, g)",
        {},
        "jax",
    ),
}

CHILD = """
import time
t0 = time.perf_counter()
{imports}
t1 = time.perf_counter()
import json
from benchmarks import contenders, workloads
w = workloads.make("course net")
theta, g, grads = w.theta(), w.flat_grad(), w.grad(w.params)
w.flat(theta)  # the user's own jitted loss: the user's compile, not the checker's
t2 = time.perf_counter()
{check}
t3 = time.perf_counter()
{check}
t4 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "first": t3 - t2, "steady": t4 - t3}}))
"""


def run_child(imports: str, check: str, env: dict) -> dict:
    code = textwrap.dedent(CHILD).format(imports=imports, check=check)
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        # The same BLAS threads as the parent (see conftest.py); set before numpy loads.
        "OPENBLAS_NUM_THREADS": str(BLAS_THREADS),
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("contender", list(CASES))
def test_first_call(benchmark, mode, contender):
    imports, check, env, needs = CASES[contender]
    if needs:
        pytest.importorskip(needs)
    rounds = []

    def child():
        rounds.append(run_child(imports, check, env))

    benchmark.group = "first call: fresh process, course net"
    benchmark.extra_info.update(contender=contender, workload="course net", kind="first call")
    benchmark.pedantic(child, rounds=3, warmup_rounds=1 if mode == "enabled" else 0)
    # Each phase's fastest round (as the benchmark's own "min"); the JSON keeps them.
    for phase in rounds[-1]:
        benchmark.extra_info[f"{phase}_seconds"] = min(r[phase] for r in rounds)
    assert all(r["first"] > 0 for r in rounds)
