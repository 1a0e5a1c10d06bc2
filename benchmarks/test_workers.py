"""The python engine's workers: a plain numpy f on every core against the serial engine.

One group, side by side in one run: the default (``workers=None``, every core for a check
this long) and ``workers=1``, on a 784-128-64-10 numpy MLP (batch 64; BLAS at one thread,
see conftest). The target: the default at least 1.7x the serial engine on 2 cores. Run for
real with ``python -m pytest benchmarks/test_workers.py --benchmark-enable``.
"""

import pytest

import gradcheck
from gradcheck import _workers

from . import workloads

GROUP = "python engine workers, numpy MLP 784-128-64-10 (batch 64)"
# Coordinates checked (a stratified sample): about 3 s serially here when timed, a few
# dozen in the normal test run, where each body runs once.
SAMPLE = {"enabled": 4_000, "disabled": 40}
ROUNDS = {"enabled": 5, "disabled": 1}


@pytest.fixture(scope="module")
def big_mlp():
    w = workloads.mlp((784, 128, 64, 10), 64, name="mnist-mlp")
    return w.loss, w.params, w.grad(w.params)


@pytest.mark.parametrize("workers", [None, 1], ids=["default", "serial"])
def test_python_engine_workers(benchmark, big_mlp, mode, workers):
    loss, params, grad = big_mlp
    benchmark.group = GROUP
    options = {"engine": "python", "sample": SAMPLE[mode], "seed": 0, "workers": workers}
    report = benchmark.pedantic(
        gradcheck.check,
        (loss, params, grad),
        options,
        rounds=ROUNDS[mode],
        iterations=1,
        warmup_rounds=1 if mode == "enabled" else 0,
    )
    assert report.passed
    benchmark.extra_info["workers"] = report.workers
    benchmark.extra_info["coordinates"] = report.checked
    if workers is None and mode == "enabled":
        assert report.workers == _workers.cores()  # a check this long runs on every core
