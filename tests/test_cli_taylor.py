"""The CLI's taylor command: module:function's (f, params, grad) through the Taylor test,
the exit status its verdict, --json strict; run in-process on this checkout's code."""

import json
import sys

import pytest

from gradcheck.__main__ import main

PROBLEMS = """
import numpy as np

X = np.array([0.5, -1.0, 2.0])


def loss(x):
    return np.sum(np.sin(x)) + 0.5 * x @ x


def right():
    return loss, X.copy(), np.cos(X) + X


def wrong():
    return loss, X.copy(), 1.5 * (np.cos(X) + X)


def flat():
    return (lambda x: 1.0 + 1e-17 * (x @ x)), X.copy(), 2e-17 * X


def raises_in_f():
    def f(x):
        raise RuntimeError("the solver diverged")
    return f, X.copy(), X
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    name = f"taylor_problems_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(PROBLEMS)
    monkeypatch.chdir(tmp_path)
    yield name
    sys.modules.pop(name, None)


def test_a_right_gradient_exits_0_and_prints_the_rates(project, capsys):
    assert main(["taylor", f"{project}:right", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("taylor test: PASS  expected rate 2")
    assert "2.00" in out


def test_a_wrong_gradient_exits_1(project, capsys):
    assert main(["taylor", f"{project}:wrong", "--seed", "0", "--directions", "2"]) == 1
    out = capsys.readouterr().out
    assert "taylor test: FAIL" in out
    assert "whole 2" in out


def test_no_converging_range_exits_1_and_json_is_strict(project, capsys):
    assert main(["taylor", f"{project}:flat", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "inconclusive"
    assert data["directions"][0]["rate"] is None
    assert "no converging range" in data["directions"][0]["reason"]


def test_an_exception_in_f_exits_2_saying_where(project, capsys):
    assert main(["taylor", f"{project}:raises_in_f"]) == 2
    err = capsys.readouterr().err
    assert "the solver diverged" in err
    assert "raised in" in err
