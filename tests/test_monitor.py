"""gradcheck.Monitor: budgeted checks inside a training loop, alerts, history."""

import copy
import csv
import importlib.util
import logging
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import gradcheck
from gradcheck import GradientAlert, GradientError, Monitor, _monitor

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_with_monitor.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("train_with_monitor", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeClock:
    """Stands in for the monitor's ``time`` module: seconds pass only when told."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(_monitor, "time", types.SimpleNamespace(perf_counter=fake.perf_counter))
    return fake


# A small least-squares problem with two blocks, and a hand-written gradient.
RNG = np.random.default_rng(3)
X = RNG.standard_normal((40, 5))
Y = RNG.standard_normal(40)


def ls_loss(p):
    r = X @ p["w"] + p["b"] - Y
    return 0.5 * r @ r / len(Y)


def ls_grads(p, *, wrong_w=False, wrong_b=False):
    r = X @ p["w"] + p["b"] - Y
    return {
        "dw": X.T @ r / len(Y) * (1.5 if wrong_w else 1.0),
        "db": r.mean() * (3.0 if wrong_b else 1.0),
    }


def ls_params():
    return {"w": np.linspace(-1.0, 1.0, 5), "b": np.array(0.3)}


def run(monitor, steps, *, wrong_from=None, block="w", first=1):
    """Call monitor.step for `steps` steps of plain gradient descent; return the params."""
    params = ls_params()
    for step in range(first, first + steps):
        bad = wrong_from is not None and step >= wrong_from
        grads = ls_grads(params, wrong_w=bad and block == "w", wrong_b=bad and block == "b")
        monitor.step(step, ls_loss, params, grads)
        params = {"w": params["w"] - 0.05 * grads["dw"], "b": params["b"] - 0.05 * grads["db"]}
    return params


# ------------------------------------------------------------------ on a real training loop
def test_catches_a_gradient_that_goes_wrong_at_a_known_step(example):
    switch_at, every = 310, 50
    monitor = Monitor(every=every, budget=None, sample=16, directions=2, on_alert="raise", seed=0)
    with pytest.raises(GradientError) as caught:
        example.train(600, monitor=monitor, switch_at=switch_at)
    error = caught.value
    # Every block at each check, and a failure confirmed at once: the first check after
    # the bug alerts.
    assert error.step == 350
    history = monitor.history()
    before = [h for h in history if h["step"] < switch_at]
    assert sorted({h["step"] for h in before}) == [50, 100, 150, 200, 250, 300]
    assert [h["block"] for h in before[:6]] == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert all(h["verdict"] == "pass" for h in before), before  # no false alarm
    after = [h for h in history if h["step"] >= switch_at]
    failed = ", ".join(h["block"] for h in after[:6] if h["verdict"] == "fail")
    assert [h["why"] for h in after[6:]] == [f"confirming the failure of {failed}"] * len(after[6:])
    assert error.block == after[6]["block"]
    assert str(error.report) in str(error)
    assert monitor.alerts == [
        {"step": error.step, "block": "W1", "difference": after[-1]["difference"]}
    ]


def test_a_bug_in_one_block_is_checked_again_at_once_and_alerted(example):
    monitor = Monitor(every=20, budget=None, on_alert="warn", seed=1)
    X, Y = example.make_data(512)
    params = example.init_params()

    def train():
        nonlocal params
        for step in range(1, 301):
            _, grads = example.loss_and_grads(params, X[:128], Y[:128])
            if step >= 100:
                grads["db2"] = grads["db2"] * 1.1  # a 10% error in one bias
            monitor.step(step, lambda p: example.loss(p, X[:128], Y[:128]), params, grads)
            params = {k: v - 0.1 * grads[f"d{k}"] for k, v in params.items()}

    with pytest.warns(GradientAlert, match="block b2 failed 2 consecutive checks"):
        train()
    history = monitor.history()
    fails = [h for h in history if h["verdict"] == "fail"]
    # The first check after the bug fails b2 and confirms it at once, at the same step.
    assert [(h["step"], h["block"]) for h in fails[:2]] == [(100, "b2"), (100, "b2")]
    assert fails[1]["why"] == "confirming the failure of b2"
    assert all(h["verdict"] == "pass" for h in history if h["block"] != "b2")
    # After the alert the checks go on, every block each time.
    assert [h["block"] for h in history if h["step"] == 120] == list(params)


# Fake seconds (tests/clock.py) one SGD step of the example and one evaluation of its loss
# cost: their ratio as measured on this project's machine (about 20 ms and 6 ms under load,
# 2 ms and 0.6 ms quiet), so the monitor faces the same arithmetic on any machine.
STEP_SECONDS = 2e-3
LOSS_SECONDS = 6e-4


def test_the_example_script_stays_under_its_budget(example, fake_clock, monkeypatch, capsys):
    """The example's own measurement (time in monitor.step over the rest of the loop), on a
    clock where only the training steps and the loss take time: what the monitor decides
    to check under a 5% budget, not how fast this machine is.
    """
    step, loss = example.loss_and_grads, example.loss

    def timed_step(*args, **kwargs):
        fake_clock.spend(STEP_SECONDS)
        return step(*args, **kwargs)

    def timed_loss(*args, **kwargs):
        fake_clock.spend(LOSS_SECONDS)
        return loss(*args, **kwargs)

    monkeypatch.setattr(example, "loss_and_grads", timed_step)
    monkeypatch.setattr(example, "loss", timed_loss)
    assert example.main(["--steps", "600", "--every", "100", "--budget", "0.05"]) == 0
    out = capsys.readouterr().out
    found = re.search(
        r"in (\d+) checks \((\d+) put off by the budget\): overhead ([\d.]+)% \(budget 5%\)",
        out,
    )
    assert found, out
    checks, overhead = int(found.group(1)), float(found.group(3)) / 100
    # Unbudgeted (--budget 10) the same run spends 17% on its checks: the budget keeps it
    # under 5%.
    assert overhead < 0.05, out
    assert checks >= 2, out  # it did check, not just stay idle
    assert "ALERT" not in out
    assert " fail" not in out


def test_the_example_reports_a_planted_bug():
    proc = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--steps",
            "400",
            "--every",
            "50",
            "--budget",
            "10",
            "--switch-at",
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(
        r"ALERT: gradcheck monitor: block \w+ failed 2 consecutive checks "
        r"\(steps 150, 150\)",
        proc.stdout,
    ), proc.stdout


# ------------------------------------------------------------------ the budget
def test_the_budget_holds_with_a_deterministic_clock(clock):
    """Training steps cost 1 s and each evaluation of f 0.1 s: checks must ration."""

    def slow_loss(p):
        clock.now += 0.1
        return ls_loss(p)

    monitor = Monitor(every=10, budget=0.05, sample=16, directions=2, seed=0)
    params = ls_params()
    for step in range(1, 3001):
        clock.now += 1.0  # the training step
        monitor.step(step, slow_loss, params, ls_grads(params))
    history = monitor.history()
    assert monitor.training_seconds == pytest.approx(2999.0)
    assert monitor.overhead <= 0.05
    assert monitor.overhead > 0.02  # it spends its budget rather than sitting idle
    assert monitor.deferred > 0
    assert all(h["why"] for h in history)  # each check says what it covered and why
    steps = sorted({h["step"] for h in history})
    assert min(np.diff(steps)) >= 10
    # Each check's cost was measured on the clock: 0.1 s per evaluation of f.
    assert all(h["seconds"] == pytest.approx(0.1 * h["nfev"]) for h in history)


def test_a_check_that_costs_too_much_is_put_off_then_shrunk(clock):
    def slow_loss(p):
        clock.now += 0.5
        return 0.5 * p["w"] @ p["w"] + p["b"] ** 2

    params = {"w": np.linspace(-1.0, 1.0, 300), "b": np.array(0.5)}
    grads = {"w": params["w"], "b": 2 * params["b"]}
    monitor = Monitor(every=5, budget=0.1, sample=16, directions=2, seed=0)
    reports = []
    for step in range(1, 1500):
        clock.now += 1.0
        reports.append(monitor.step(step, slow_loss, params, grads))
    history = monitor.history()
    assert history[0]["step"] > 100  # put off: a check costs dozens of training steps
    assert history[0]["reduced"]  # then shrunk to fit: one direction, no coordinates
    assert reports[history[0]["step"] - 1].directions == 1
    assert reports[history[0]["step"] - 1].checked == 0
    assert len(history) >= 5
    assert monitor.overhead <= 0.1
    assert monitor.deferred >= 1  # the first check at least waited for its credit


def test_a_check_is_one_seed_however_many_rows_it_has(clock):
    # A check of every block has a row per block in the history, all with its seed: checks
    # are counted by seed (summing the rows' "reduced" flags counted 161 of 151 checks).
    def slow_loss(p):
        clock.now += 0.5
        return 0.5 * p["w"] @ p["w"] + p["b"] ** 2

    params = {"w": np.linspace(-1.0, 1.0, 300), "b": np.array(0.5)}
    grads = {"w": params["w"], "b": 2 * params["b"]}
    monitor = Monitor(every=5, budget=0.1, sample=16, directions=2, seed=0)
    for step in range(1, 1500):
        clock.now += 1.0
        monitor.step(step, slow_loss, params, grads)
    history = monitor.history()
    assert len({h["seed"] for h in history}) == monitor.checks
    reduced = [h for h in history if h["reduced"]]
    assert 0 < len({h["seed"] for h in reduced}) < len(reduced)  # two rows a check


def test_without_a_budget_it_checks_every_interval(clock):
    monitor = Monitor(every=7, budget=None, seed=0)
    run(monitor, 50)
    # Every block at every check.
    assert [h["step"] for h in monitor.history()] == [s for s in range(7, 50, 7) for _ in "wb"]
    assert [h["block"] for h in monitor.history()] == ["w", "b"] * 7
    assert monitor.checks == 7
    assert not any(h["reduced"] for h in monitor.history())


def test_the_first_check_waits_for_the_first_multiple(clock):
    monitor = Monitor(every=10, budget=None, seed=0)
    run(monitor, 25, first=13)
    assert sorted({h["step"] for h in monitor.history()}) == [20, 30]


def test_training_time_is_measured_between_calls(clock):
    monitor = Monitor(every=1000, budget=0.5)
    params = ls_params()
    for step in range(5):
        clock.now += 2.0
        monitor.step(step, ls_loss, params, ls_grads(params))
    assert monitor.training_seconds == 8.0  # the time before the first call is not seen
    assert monitor.monitor_seconds == 0.0
    assert monitor.overhead == 0.0
    assert np.isnan(Monitor().overhead)


# ------------------------------------------------------------------ alerts
def test_alerts_after_two_consecutive_failures_only():
    seen = []
    monitor = Monitor(every=1, budget=None, on_alert=lambda name, r: seen.append((name, r)), seed=0)
    run(monitor, 8, wrong_from=5, block="b")
    verdicts = [(h["step"], h["block"], h["verdict"]) for h in monitor.history()]
    # b fails at step 5, is checked again at once, fails again: alert; then every block on.
    assert verdicts[8:12] == [
        (5, "w", "pass"),
        (5, "b", "fail"),
        (5, "b", "fail"),
        (6, "w", "pass"),
    ]
    assert len(seen) == 1
    name, report = seen[0]
    assert name == "b"
    assert report.verdict == "fail"
    assert report.failing == ("b",)
    assert monitor.alerts[0]["step"] == 5


def test_one_failure_then_a_pass_is_no_alert():
    calls = []

    def flaky(p):  # wrong at its first call only: what a kink crossing looks like once
        calls.append(1)
        g = ls_grads(p)
        return {"dw": g["dw"] * (2.0 if len(calls) == 1 else 1.0), "db": g["db"]}

    seen = []
    monitor = Monitor(every=1, budget=None, on_alert=lambda *a: seen.append(a), seed=0)
    params = ls_params()
    monitor.step(1, ls_loss, params, flaky)
    monitor.step(2, ls_loss, params, flaky)
    # The failure at step 1 is confirmed at once, on other draws: it passes, no alert.
    assert [(h["step"], h["block"], h["verdict"]) for h in monitor.history()] == [
        (1, "w", "fail"),
        (1, "b", "pass"),
        (1, "w", "pass"),
        (2, "w", "pass"),
        (2, "b", "pass"),
    ]
    assert seen == []
    assert monitor.alerts == []


def test_a_persistent_bug_alerts_once_per_run_of_failures():
    seen = []
    monitor = Monitor(every=1, budget=None, on_alert=lambda *a: seen.append(a), seed=0)
    run(monitor, 10, wrong_from=1, block="w")
    assert len(seen) == 1


def test_on_alert_warn_points_at_the_callers_line():
    monitor = Monitor(every=1, budget=None, on_alert="warn", seed=0)
    params, grads = ls_params(), ls_grads(ls_params(), wrong_w=True)
    with pytest.warns(GradientAlert) as record:
        monitor.step(1, ls_loss, params, grads)
    (warning,) = record
    assert warning.filename == __file__
    assert "block w failed 2 consecutive checks (steps 1, 1)" in str(warning.message)
    assert "gradcheck: FAIL" in str(warning.message)
    assert issubclass(GradientAlert, UserWarning)


def test_on_alert_log_logs_an_error_on_the_gradcheck_logger(caplog):
    monitor = Monitor(every=1, budget=None, on_alert="log", seed=0)
    params, grads = ls_params(), ls_grads(ls_params(), wrong_b=True)
    with caplog.at_level(logging.ERROR, logger="gradcheck"):
        for step in range(4):
            monitor.step(step, ls_loss, params, grads)
    (record,) = caplog.records
    assert record.name == "gradcheck"
    assert record.levelno == logging.ERROR
    assert "block b failed 2 consecutive checks" in record.getMessage()
    assert "1 of 1 blocks fails: b" in record.getMessage()


def test_on_alert_raise_raises_an_assertion_error_with_the_table():
    monitor = Monitor(every=1, budget=None, on_alert="raise", seed=0)
    params, grads = ls_params(), ls_grads(ls_params(), wrong_w=True)
    with pytest.raises(AssertionError) as caught:
        monitor.step(1, ls_loss, params, grads)
    assert isinstance(caught.value, GradientError)
    assert caught.value.block == "w"
    assert caught.value.step == 1
    assert str(caught.value.report) in str(caught.value)
    assert monitor.history()[-1]["verdict"] == "fail"  # recorded before raising


# ------------------------------------------------------------------ the user's data
def test_params_and_grads_are_never_modified(example):
    X, Y = example.make_data(256)
    params = example.init_params()
    _, grads = example.loss_and_grads(params, X, Y, bug=True)
    grads["dZ_extra"] = np.ones(3)  # extra keys are ignored, and left alone
    keep_p, keep_g = copy.deepcopy(params), copy.deepcopy(grads)
    ids = {k: id(v) for k, v in params.items()}
    monitor = Monitor(every=1, budget=None, on_alert=lambda *a: None, seed=0)
    for step in range(8):
        monitor.step(step, lambda p: example.loss(p, X, Y), params, grads)
    assert monitor.checks == 8 + 1  # and one confirmation of the first failure
    assert monitor.alerts
    assert list(params) == list(keep_p)
    assert list(grads) == list(keep_g)
    assert {k: id(v) for k, v in params.items()} == ids
    for k in keep_p:
        assert params[k].tobytes() == keep_p[k].tobytes()
    for k in keep_g:
        assert grads[k].tobytes() == keep_g[k].tobytes()


def test_a_list_a_tuple_and_a_single_array():
    A = np.array([[2.0, 0.5], [0.5, 1.0]])
    x, y = np.array([1.0, -2.0]), np.array([0.5])

    def f(p):
        return 0.5 * p[0] @ A @ p[0] + np.sum(p[1] ** 2) * p[0][0]

    grad = [A @ x + np.array([y[0] ** 2, 0.0]), 2 * y * x[0]]
    for params in ([x, y], (x, y)):
        monitor = Monitor(every=1, budget=None, seed=0)
        for step in range(1, 3):
            monitor.step(step, f, params, type(params)(grad))
        assert [(h["block"], h["verdict"]) for h in monitor.history()] == [
            ("[0]", "pass"),
            ("[1]", "pass"),
        ] * 2
    monitor = Monitor(every=1, budget=None, sample=None, directions=None, seed=0)
    monitor.step(1, lambda v: 0.5 * v @ A @ v, x, A @ x)
    assert monitor.history()[0]["block"] == "params"
    assert monitor.history()[0]["checked"] == 2


def test_grad_none_and_callable_grad():
    def loss_and_grad(p):
        return ls_loss(p), ls_grads(p)

    monitor = Monitor(every=1, budget=None, seed=0)
    params = ls_params()
    monitor.step(1, loss_and_grad, params)
    monitor.step(2, ls_loss, params, ls_grads)
    assert [h["verdict"] for h in monitor.history()] == ["pass"] * 4


def test_a_missing_gradient_entry_names_it():
    monitor = Monitor(every=1, budget=None)
    with pytest.raises(ValueError, match=r"`grad` has no entry 'b' or 'db'; its keys are \['dw'\]"):
        monitor.step(1, ls_loss, {"b": np.array(0.3), "w": np.zeros(5)}, {"dw": np.zeros(5)})


# ------------------------------------------------------------------ history
def test_history_and_csv(tmp_path):
    monitor = Monitor(every=2, budget=None, on_alert=lambda *a: None, seed=7)
    run(monitor, 9, wrong_from=5, block="w")
    history = monitor.history()
    # Every block per check; the failure at 6 confirmed at once.
    steps = [2, 2, 4, 4, 6, 6, 6, 8, 8]
    assert [h["step"] for h in history] == steps
    assert set(history[0]) == {
        "step",
        "block",
        "difference",
        "verdict",
        "seconds",
        "checked",
        "directions",
        "nfev",
        "reduced",
        "seed",
        "why",
    }
    assert monitor.history("b") == [h for h in history if h["block"] == "b"]
    history[0]["verdict"] = "edited"  # a copy: the monitor's own record is untouched
    assert monitor.history()[0]["verdict"] == "pass"
    # The seed replays the check.
    last = monitor.history()[-2]
    assert last["verdict"] == "fail"
    assert last["block"] == "w"
    last = monitor.history()[-1]
    assert monitor.last_report.seed == last["seed"]

    path = monitor.to_csv(tmp_path / "history.csv")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == steps
    assert [r["verdict"] for r in rows] == [h["verdict"] for h in monitor.history()]
    assert [float(r["difference"]) for r in rows] == [h["difference"] for h in monitor.history()]
    assert repr(monitor).startswith("Monitor(every=2, budget=None")


# ------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every": 0}, "`every` must be a positive integer (steps), got 0"),
        ({"every": 2.5}, "`every` must be a positive integer (steps), got 2.5"),
        ({"budget": 0}, "`budget` must be a positive fraction of the training time or None, got 0"),
        ({"budget": True}, "got True"),
        ({"sample": 0}, "`sample` must be a positive int, a float in (0, 1] or None, got 0"),
        ({"directions": 0}, "`directions` must be a positive integer or None, got 0"),
        ({"on_alert": "email"}, "`on_alert` must be one of ('log', 'warn', 'raise')"),
        ({"seed": -1}, "`seed` must be a non-negative integer or None, got -1"),
    ],
)
def test_bad_arguments_name_the_argument_and_value(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Monitor(**kwargs)


def test_options_of_check_pass_through_and_others_are_refused():
    monitor = Monitor(every=1, budget=None, method="forward", tol=1e-4, seed=0)
    run(monitor, 1)
    assert monitor.last_report.method == "forward"
    assert monitor.last_report.tol == (1e-4, 1e-4)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['colour'\]"):
        Monitor(colour="red")
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['batched'\]"):
        Monitor(batched=True)


def test_a_bad_step_is_refused():
    with pytest.raises(TypeError, match=r"`step` must be an integer, got float: 1.5"):
        Monitor().step(1.5, ls_loss, ls_params(), ls_grads(ls_params()))


def test_the_public_names():
    assert {"Monitor", "GradientAlert", "GradientError"} <= set(gradcheck.__all__)


# ------------------------------------------------------------------ issue 13: checks that catch
def test_a_bug_is_caught_soon_within_a_five_percent_budget(clock):
    """The schedule of the 1.86M-parameter run (examples/train_large_with_monitor.py) on a
    clock: a training step costs 1 s and an evaluation of f 0.065 s (1.6 ms against 25 ms
    there), six blocks, and from step 700 on db2 loses its 1/n (32 times too large). The
    first call of f pays a one-time cost of 30 training steps (imports, a compile), as the
    first check there did.
    """
    calls = []
    shapes = {"W1": (20, 8), "b1": (8,), "W2": (8, 8), "b2": (8,), "W3": (8, 3), "b3": (3,)}
    rng = np.random.default_rng(0)
    params = {k: rng.standard_normal(s) for k, s in shapes.items()}
    scale = {k: rng.uniform(0.5, 2.0, s) for k, s in shapes.items()}

    def loss(p):
        calls.append(1)
        clock.now += 30.0 if len(calls) == 1 else 0.065
        return 0.5 * sum(float(np.sum(scale[k] * p[k] ** 2)) for k in p)

    monitor = Monitor(
        every=100, budget=0.05, sample=16, directions=2, seed=0, on_alert=lambda *a: None
    )
    for step in range(1, 1501):
        clock.now += 1.0
        grads = {k: scale[k] * v for k, v in params.items()}
        if step >= 700:
            grads["b2"] = grads["b2"] * 32
        monitor.step(step, loss, params, grads)
    alerts = [a["step"] for a in monitor.alerts]
    assert alerts, monitor.history()
    assert 700 <= alerts[0] <= 1100  # none before the bug, and soon after it
    assert monitor.overhead <= 0.05
    assert all(h["verdict"] == "pass" for h in monitor.history() if h["step"] < 700)


def test_a_slow_first_check_does_not_starve_the_rest(clock):
    """The first check pays one-time costs (here 30 s of training time); the estimate of
    the next ones must not keep that cost, or a 5% budget would wait 600 steps each time.
    """
    calls = []

    def loss(p):
        calls.append(1)
        clock.now += 30.0 if len(calls) == 1 else 0.01
        return ls_loss(p)

    monitor = Monitor(every=20, budget=0.05, sample=4, directions=1, seed=0)
    params = ls_params()
    for step in range(1, 2001):
        clock.now += 1.0
        monitor.step(step, loss, params, ls_grads(params))
    steps = sorted({h["step"] for h in monitor.history()})
    assert len(steps) >= 40  # about every 20 steps once the first check is paid off
    assert monitor.overhead <= 0.05


def test_each_check_is_logged_at_info(caplog):
    monitor = Monitor(every=1, budget=None, seed=0)
    with caplog.at_level(logging.INFO, logger="gradcheck"):
        run(monitor, 2)
    records = [r for r in caplog.records if r.name == "gradcheck" and r.levelno == logging.INFO]
    assert len(records) == 4  # two blocks, two checks
    assert "step 1, w: pass" in records[0].getMessage()
    assert "every block" in records[0].getMessage()
