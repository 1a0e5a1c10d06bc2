"""An f that shares state between calls, as course models do, under the default options.

The course's model API (``model.params = p; model.loss(X, y)``) writes every call's
parameters into one object: two threads calling ``f`` at once race, and their values mix
up the perturbations. No verdict may come from such values: whatever the workers did, a
correct gradient passes and a wrong one fails naming its block, and the report says the
check ran serially because of it.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcheck
from gradcheck import _workers

from .course import course_problem

SMALL = (20, 16, 12, 5)  # 613 parameters: a check of a second or so


@pytest.fixture
def engaged(monkeypatch):
    """The default's workers engaged on a check this short (2 cores, whatever the
    machine), and kept past the trial, as on a machine where they seemed to pay: the
    worst case, where only the serial re-evaluation stands between a race and a verdict.
    """
    monkeypatch.setattr(_workers, "WORKERS_SECONDS", 0.0)
    monkeypatch.setattr(_workers, "TRIAL_SECONDS", 0.0)
    monkeypatch.setattr(_workers, "cores", lambda: 2)
    monkeypatch.setattr(_workers, "pays", lambda serial, threaded: True)


def _racing(bug=None):
    """The course model with a forward pass that waits after each layer (as one that logs
    or reads from a loader would): a race every time two threads call it at once.
    """
    return course_problem(SMALL, n=8, bug=bug, pause=2e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_course_model_passes_with_the_default_options(engaged, seed):
    f, params, grads = course_problem(SMALL, n=8)
    report = gradcheck.check(f, params, grads, seed=seed)
    assert report.verdict == "pass", str(report)
    serial = gradcheck.check(f, params, grads, seed=seed, workers=1)
    assert report.difference == serial.difference


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_racing_f_is_checked_serially_and_the_report_says_why(engaged, seed):
    f, params, grads = _racing()
    report = gradcheck.check(f, params, grads, seed=seed)
    assert report.verdict == "pass", str(report)
    assert report.workers == 1
    assert any(
        n.startswith("f gave different values on 2 threads than serially")
        and "checked serially" in n
        for n in report.notes
    ), report.notes
    serial = gradcheck.check(f, params, grads, seed=seed, workers=1)
    for name in params:  # every value the verdict rests on is the serial engine's
        assert np.array_equal(report.gradapprox[name], serial.gradapprox[name]), name


def test_an_explicit_workers_count_is_held_to_the_same_rule():
    f, params, grads = _racing()
    report = gradcheck.check(f, params, grads, seed=0, workers=2)
    assert report.verdict == "pass", str(report)
    assert any(n.startswith("f gave different values on 2 threads") for n in report.notes)


@pytest.mark.parametrize("bug", ["W2", "b1"])
def test_a_wrong_gradient_still_fails_naming_its_block(engaged, bug):
    for f, params, grads in (course_problem(SMALL, n=8, bug=bug), _racing(bug)):
        report = gradcheck.check(f, params, grads, seed=0)
        assert report.failing == (bug,), str(report)
        assert report.worst[0].name.startswith(bug + "[")
