"""The check command's newer flags and messages: --args, --workers, --progress, a missing
function named with what the module has, and an exception at a perturbed point named by
its coordinate and step."""

import json

import pytest

from .test_cli_commands import _run

TARGETS = """
import numpy as np

A = np.array([[3.0, 1.0], [1.0, 2.0]])
DATA = (A,)


def f(x, A):
    return 0.5 * x @ A @ x


def with_args():
    x = np.array([0.5, -1.0])
    return f, x, lambda x, A: A @ x


def four():
    x = np.array([0.5, -1.0])
    return f, x, A @ x, (A,)


def data():
    return (A,)


def big():
    x = np.linspace(-1.0, 1.0, 400)
    return (lambda x: float(np.sum(x**3))), x, 3 * x**2


def breaks_at_a_step():
    x = np.array([1.0, 2.0, 3.0])
    start = x.copy()

    def g(x):
        if abs(x[2] - start[2]) > 1e-6:  # the coordinate's step, not the noise probe's
            raise ZeroDivisionError("the model blows up")
        return float(x @ x)

    return g, x, 2 * x


def _hidden():
    pass
"""


@pytest.fixture
def targets(tmp_path):
    (tmp_path / "targets.py").write_text(TARGETS)
    return tmp_path


def test_args_name_a_tuple_or_a_function_in_the_module(targets):
    for name in ("DATA", "data"):
        proc = _run("check", "targets:with_args", "--args", name, cwd=targets)
        assert proc.returncode == 0, proc.stderr
        assert "gradcheck: PASS" in proc.stdout


def test_a_target_may_return_its_args_as_a_fourth_item(targets):
    proc = _run("check", "targets:four", cwd=targets)
    assert proc.returncode == 0, proc.stderr


def test_a_missing_args_name_is_a_usage_error(targets):
    proc = _run("check", "targets:with_args", "--args", "nothing", cwd=targets)
    assert proc.returncode == 2
    assert "--args: 'targets' has no 'nothing'" in proc.stderr


def test_workers_and_progress_reach_the_check(targets):
    proc = _run("check", "targets:big", "--workers", "1", "--no-progress", "--json", cwd=targets)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["workers"] == 1
    proc = _run("check", "targets:big", "--workers", "2", "--progress", cwd=targets)
    assert proc.returncode == 0, proc.stderr
    assert "it/s" in proc.stderr or "%" in proc.stderr  # the bar, on stderr


def test_a_missing_function_lists_what_the_module_has(targets):
    proc = _run("check", "targets:nope", cwd=targets)
    assert proc.returncode == 2
    assert "found: none" not in proc.stderr
    assert "'targets' has no function 'nope'" in proc.stderr
    assert "its functions: big, breaks_at_a_step, data, f, four, with_args" in proc.stderr


def test_an_exception_at_a_perturbed_point_names_the_coordinate_and_step(targets):
    proc = _run("check", "targets:breaks_at_a_step", "--workers", "1", cwd=targets)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "ZeroDivisionError: the model blows up" in last
    assert "at the perturbed point params[2] with step +" in last, last
