"""The python engine on worker threads: the serial engine's numbers, bit for bit, and the
same count; the option's validation; a progress bar that moves by time in every pass."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest

import gradcheck
from gradcheck import Monitor, _policy, _workers
from gradcheck._problem import FunctionOutputError

from .models import mlp_data, mlp_grad, mlp_loss


@pytest.fixture
def mlp():
    X, y, params = mlp_data(seed=3)
    return (lambda p: mlp_loss(p, X, y)), params, mlp_grad(params, X, y)


def _same(a, b):
    """Two reports of the same check: every number the engine produced is the same.

    ``b`` may have run on workers: then it also evaluated again, serially, a few points of
    the trial and the entries its conclusions rest on (two points each, at most
    REPRODUCE_MOST plus PER_BLOCK per block).
    """
    trial = _workers.TRIAL_REPRODUCE * 2
    most = trial + 2 * (_policy.REPRODUCE_MOST + _policy.PER_BLOCK * len(a.blocks))
    assert a.nfev <= b.nfev <= a.nfev + most
    assert b.difference == a.difference
    assert b.verdict == a.verdict
    if isinstance(a.gradapprox, np.ndarray):
        assert np.array_equal(a.gradapprox, b.gradapprox, equal_nan=True)
    else:
        for name in a.gradapprox:
            assert np.array_equal(a.gradapprox[name], b.gradapprox[name], equal_nan=True), name
    assert [k.name for k in b.kinks] == [k.name for k in a.kinks]
    assert {n: r.localized for n, r in b.blocks.items()} == {
        n: r.localized for n, r in a.blocks.items()
    }


@pytest.mark.parametrize(
    "how",
    [{}, {"sample": 20}, {"directions": 3}, {"sample": 0.5, "directions": 2}],
    ids=["all", "sample", "directions", "both"],
)
def test_workers_give_the_serial_engine_s_numbers_bit_for_bit(mlp, how):
    f, params, grad = mlp
    serial = gradcheck.check(f, params, grad, engine="python", workers=1, seed=5, **how)
    threaded = gradcheck.check(f, params, grad, engine="python", workers=2, seed=5, **how)
    assert (serial.workers, threaded.workers) == (1, 2)
    _same(serial, threaded)


def test_kink_rechecks_and_the_directions_confirmation_run_serially(mlp):
    f, params, grad = mlp
    relu = np.array([0.0, 0.0, 0.7, -0.4, 0.0, 1.2])  # entries at the kink of max(x, 0)
    bad = {**grad, "dW1": grad["dW1"].copy()}
    bad["dW1"][1, 2] += 0.5  # one wrong entry: the directions' search must find it

    def loss(p):
        return f(p) + np.maximum(p["r"], 0).sum()

    params = {**params, "r": relu}
    bad["dr"] = (relu > 0).astype(float)
    seen = set()

    def watched(p):
        seen.add(threading.get_ident())
        time.sleep(1e-4)  # f this cheap could otherwise finish before the second thread starts
        return loss(p)

    # The main plan runs on the workers; what decides on a few points after it (the kink
    # re-checks, the directions and their confirmation) runs serially, on this thread: a
    # value from a race there could make a wrong entry look like a kink.
    for how, on_workers in (({"sample": 40}, 2), ({"directions": 4}, 0)):
        serial = gradcheck.check(loss, params, bad, engine="python", workers=1, seed=2, **how)
        seen.clear()
        threaded = gradcheck.check(watched, params, bad, engine="python", workers=2, seed=2, **how)
        _same(serial, threaded)
        assert len(seen - {threading.main_thread().ident}) == on_workers, how
    assert {k.name for k in threaded.kinks} >= {"r[0]"}
    assert threaded.blocks["W1"].localized == ("W1[1, 2]",)


def test_each_worker_perturbs_its_own_copy_through_its_own_views():
    seen = {}
    lock = threading.Lock()

    def f(p):
        with lock:
            seen.setdefault(threading.get_ident(), set()).add(p["a"].ctypes.data)
        time.sleep(1e-4)  # long enough for both threads to take pieces
        return float(p["a"] @ p["a"] + p["b"].sum())

    params = {"a": np.linspace(-1, 1, 30), "b": np.ones(4)}
    grad = {"a": 2 * params["a"], "b": np.ones(4)}
    report = gradcheck.check(f, params, grad, engine="python", workers=2, noise=False)
    assert report.passed
    workers = {t: a for t, a in seen.items() if t != threading.main_thread().ident}
    assert len(workers) == 2
    first, second = workers.values()
    assert len(first) == len(second) == 1
    assert first != second
    assert np.array_equal(params["a"], np.linspace(-1, 1, 30))  # the user's arrays untouched


def test_the_default_tries_the_workers_only_when_the_check_is_long(mlp, monkeypatch):
    f, params, grad = mlp
    short = gradcheck.check(f, params, grad, engine="python")
    assert short.workers == 1  # milliseconds: not worth the threads
    assert not any("workers" in n for n in short.notes)  # nothing measured, nothing said

    def sleepy(p):  # the GIL is released while it sleeps: threads pay on any machine
        time.sleep(2e-3)
        return f(p)

    monkeypatch.setattr(_workers, "cores", lambda: 3)
    monkeypatch.setattr(_workers, "WORKERS_SECONDS", 0.0)
    monkeypatch.setattr(_workers, "TRIAL_SECONDS", 0.0)  # slices by share, on any machine
    # Whether threads pay depends on the machine and its load (the benchmarks measure it);
    # here they are taken to, and the check must keep them.
    monkeypatch.setattr(_workers, "pays", lambda serial, threaded: True)
    long = gradcheck.check(sleepy, params, grad, engine="python")
    assert long.workers == 3
    assert "python engine, 3 workers" in str(long)
    assert long.to_dict()["workers"] == 3
    assert any(n.startswith("3 workers: ") and "as fast as serial" in n for n in long.notes)
    _same(short, long)
    # No more copies of theta than the memory allows: here room for two.
    monkeypatch.setattr(_workers, "WORKERS_BYTES", 2 * 8 * sum(a.size for a in params.values()))
    assert gradcheck.check(sleepy, params, grad, engine="python").workers == 2
    # The other engines are parallel in their own way (or batched): workers do not apply.
    assert gradcheck.check(f, params, grad, engine="python", method="complex").workers == 1


def test_workers_pay_only_when_clearly_faster():
    assert _workers.pays(1.0, 0.5)
    assert not _workers.pays(1.0, 1.0)
    assert not _workers.pays(1.0, 1.0 / _workers.PAYS)  # a few percent is within the noise
    assert not _workers.pays(0.5, 1.0)


def test_the_default_stays_serial_where_threads_do_not_pay(monkeypatch):
    x = np.linspace(-1, 1, 400)

    def python_loops(v):  # holds the GIL throughout: two threads can only take turns
        total = 0.0
        for _ in range(2000):
            total += 1e-300
        return float(v @ v) + total

    monkeypatch.setattr(_workers, "WORKERS_SECONDS", 0.0)
    monkeypatch.setattr(_workers, "TRIAL_SECONDS", 0.0)  # slices by share, on any machine
    monkeypatch.setattr(_workers, "cores", lambda: 2)
    monkeypatch.setattr(_workers, "pays", lambda serial, threaded: False)  # as measured
    report = gradcheck.check(python_loops, x, 2 * x, engine="python", seed=1)
    assert report.workers == 1
    assert report.passed
    assert any(n.startswith("checked serially: 2 workers were not faster") for n in report.notes)
    _same(gradcheck.check(python_loops, x, 2 * x, workers=1, seed=1), report)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2", (2,)])
def test_bad_workers_are_refused_by_name_with_the_value(mlp, bad):
    f, params, grad = mlp
    with pytest.raises(
        ValueError, match=r"`workers` must be a positive integer.*got " + re.escape(repr(bad))
    ):
        gradcheck.check(f, params, grad, workers=bad)
    with pytest.raises(ValueError, match="`workers`"):
        Monitor(every=1, budget=None, workers=bad)


def test_the_monitor_passes_workers_on_to_its_checks(mlp):
    f, params, grad = mlp
    monitor = Monitor(every=1, budget=None, sample=16, seed=0, workers=2, engine="python")
    report = monitor.step(0, f, params, grad)
    assert report is not None
    assert report.workers == 2


def test_an_error_in_f_on_a_worker_reaches_the_caller_as_f_raised_it():
    x = np.linspace(-1, 1, 64)

    def f(v):
        if v[50] != x[50]:
            raise ZeroDivisionError("from f")
        return float(v @ v)

    with pytest.raises(ZeroDivisionError, match="from f"):
        gradcheck.check(f, x, 2 * x, engine="python", workers=2, noise=False)

    def g(v):  # names the perturbation by its place in the whole plan, not in a piece
        return "oops" if v[50] != x[50] else float(v @ v)

    with pytest.raises(FunctionOutputError, match="at perturbation 50 "):
        gradcheck.check(g, x, 2 * x, engine="python", workers=2, noise=False)


def test_f_that_modifies_its_input_on_a_worker_is_caught():
    x = np.linspace(-1, 1, 40)

    def f(v):
        if v[30] != x[30]:
            v[0] = 9.0  # on the worker's own copy: the check must still see it
        return float(v @ v)

    with pytest.raises(ValueError, match="modified its input"):
        gradcheck.check(f, x, 2 * x, engine="python", workers=2, noise=False)


# ------------------------------------------------------------------ progress by time
def _percentages(err: str) -> set[int]:
    return {int(p) for p in re.findall(r"(\d+)%\|", err)}


@pytest.mark.parametrize("workers", [1, 2])
def test_the_bar_moves_during_a_check_of_a_few_seconds(capsys, workers):
    pytest.importorskip("tqdm")
    x = np.linspace(-1, 1, 60)

    def slow(v):
        time.sleep(0.01)
        return float(v @ v)

    gradcheck.check(slow, x, 2 * x, engine="python", workers=workers, noise=False, progress=True)
    shown = _percentages(capsys.readouterr().err)
    assert len(shown - {0, 100}) >= 3, shown  # not 0% for the whole run, then 100%
    assert 100 in shown


def test_the_bar_moves_through_the_directions(capsys):
    pytest.importorskip("tqdm")
    x = np.linspace(-1, 1, 10)

    def slow(v):
        time.sleep(0.02)
        return float(v @ v)

    gradcheck.check(slow, x, 2 * x, directions=25, noise=False, progress=True)
    shown = _percentages(capsys.readouterr().err)
    assert len(shown - {0, 100}) >= 3, shown
