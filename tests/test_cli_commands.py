"""The CLI commands info, bench and check, each run in a subprocess."""

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
import scipy

import gradcheck

PROBLEMS = """
import numpy as np

A = np.array([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]])
X = np.linspace(-1.0, 1.0, 300)


def quadratic(x):
    return 0.5 * x @ A @ x


def right():
    x = np.array([0.5, -1.0, 2.0])
    return quadratic, x, A @ x


def wrong():
    x = np.array([0.5, -1.0, 2.0])
    g = A @ x
    g[1] *= 2
    return quadratic, x, g


def blocks():
    params = {"w": X.copy(), "b": np.array([0.5, -0.25])}
    def f(p):
        return np.sum(p["w"] ** 3) + p["b"] @ p["b"]
    return f, params, {"dw": 3 * X**2, "db": 2 * params["b"]}


def pair():
    x = np.array([1.0, 2.0])
    return (lambda x: (np.sum(x**2), 2 * x)), x, None


def noisy():
    rng = np.random.default_rng()
    x = np.array([1.0, 2.0])
    return (lambda x: np.sum(x**2) + 1e-3 * rng.standard_normal()), x, 2 * x


def mismatched():
    x = np.array([1.0, 2.0, 3.0])
    return quadratic, x, np.zeros(5)


def raises():
    raise RuntimeError("the data file is missing")


def f_raises_value_error():
    def f(x):
        return np.dot(x, np.ones(4))  # a shape mistake in the user's own loss
    x = np.array([1.0, 2.0, 3.0])
    return f, x, x


def not_a_triple():
    return 1, 2


NOT_A_FUNCTION = 3
"""


def _run(*args, cwd=None, timeout=180):
    # The gradcheck these tests imported, not whichever an installation points at.
    env = {**os.environ, "PYTHONPATH": str(Path(gradcheck.__file__).resolve().parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "gradcheck", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        check=False,
    )


@pytest.fixture
def project(tmp_path):
    """A directory holding the user's module, as the current directory of the command."""
    (tmp_path / "problems.py").write_text(PROBLEMS)
    return tmp_path


# ------------------------------------------------------------------------------------ info
def test_info_prints_the_versions_and_the_numba_set_up():
    proc = _run("info")
    assert proc.returncode == 0, proc.stderr
    lines = dict(
        re.match(r"(\S.*?)\s{2,}(.*)$", line).groups() for line in proc.stdout.splitlines()
    )
    assert lines["gradcheck"].startswith(gradcheck.__version__)
    assert lines["numpy"] == np.__version__
    assert lines["scipy"] == scipy.__version__
    assert lines["numba"] == numba.__version__
    assert lines["python"].startswith(platform.python_version())
    assert lines["numba threads"].startswith(str(numba.get_num_threads()))
    assert lines["threading layer"].split()[0] in ("omp", "tbb", "workqueue")
    assert lines["numba cache"].strip()  # a location, or why there is none


def test_info_runs_without_scipy():
    # scipy is optional: gradcheck imports it nowhere, and info says when it is missing.
    code = (
        "import sys; sys.modules['scipy'] = None; "  # import scipy now raises ImportError
        "from gradcheck.__main__ import main; sys.exit(main(['info']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^scipy +not installed \(optional", proc.stdout, re.M), proc.stdout


def test_scipy_is_not_a_dependency():
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith("scipy")]
    assert any(d.startswith("scipy") for d in project["optional-dependencies"]["test"])


def test_info_says_when_the_cache_is_off():
    env = {**os.environ, "GRADCHECK_NUMBA_CACHE": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "gradcheck", "info"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "numba cache      off (GRADCHECK_NUMBA_CACHE=0)" in proc.stdout


# ----------------------------------------------------------------------------------- bench
def test_bench_prints_a_table_of_contenders():
    proc = _run("bench", "--repeats", "1", "--size", "300")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if "params" in line]
    assert len(rows) == 5, proc.stdout
    assert sum("demo network, 47 params" in r for r in rows) == 2
    assert sum("jitted flat loss, 300 params" in r for r in rows) == 3
    assert any("gradcheck, numba engine" in r for r in rows)
    assert any("course loop (copies theta per coordinate)" in r for r in rows)
    # Every contender gets the gradient right: the difference column.
    differences = [float(r.split()[-1]) for r in rows]
    assert all(d < 1e-6 for d in differences), rows
    # The course loop and gradcheck with the course's step agree on the demo network.
    assert differences[0] == pytest.approx(differences[1], rel=1e-6)
    assert "Median of 1 runs each" in proc.stdout


def test_bench_refuses_a_bad_repeat_count():
    proc = _run("bench", "--repeats", "0")
    assert proc.returncode == 2
    assert "argument --repeats: must be a positive integer, got 0" in proc.stderr


# ----------------------------------------------------------------------------------- check
def test_check_passes_a_right_gradient(project):
    proc = _run("check", "problems:right", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "gradcheck: PASS" in proc.stdout


def test_check_fails_a_wrong_gradient_with_exit_status_1(project):
    proc = _run("check", "problems:wrong", cwd=project)
    assert proc.returncode == 1, proc.stderr
    assert "gradcheck: FAIL" in proc.stdout
    assert "params[1]" in proc.stdout  # the wrong entry, by name


def test_check_control_plants_errors_and_shows_they_fail(project):
    proc = _run("check", "problems:right", "--control", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "could have missed" in proc.stdout
    assert "negative control: 2 of 2 errors planted" in proc.stdout


def test_check_inconclusive_exits_1(project):
    proc = _run("check", "problems:noisy", cwd=project)
    assert proc.returncode == 1, proc.stdout
    assert "gradcheck: INCONCLUSIVE" in proc.stdout
    assert "f is not deterministic" in proc.stdout


def test_check_json_is_the_report_as_data(project):
    proc = _run("check", "problems:wrong", "--json", "--seed", "11", cwd=project)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["verdict"] == "fail"
    assert data["passed"] is False
    assert data["seed"] == 11
    assert data["n"] == 3
    assert data["checked"] == 3


def _strict(text):
    """json.loads that refuses NaN and Infinity, as strict parsers (JavaScript, jq) do."""

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_check_json_is_strict_and_says_why(project):
    # Directions only: no coordinate is checked, so max |error| is NaN in every block.
    proc = _run("check", "problems:noisy", "--json", "--directions", "2", cwd=project)
    assert proc.returncode == 1, proc.stderr
    data = _strict(proc.stdout)
    assert data["verdict"] == "inconclusive"
    assert data["blocks"]["params"]["max_abs_error"] is None
    assert any("f is not deterministic" in note for note in data["notes"])
    assert data["directions"] == 2
    assert {"kinks", "noise", "budget"} <= set(data)


def test_version_prints_the_version_and_exits_0():
    proc = _run("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"gradcheck {gradcheck.__version__}"


def test_check_help_names_both_forms_of_the_target():
    proc = _run("check", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "path/to/file.py:" in proc.stdout
    assert "module:function" in proc.stdout


def test_check_passes_the_options_on(project):
    proc = _run(
        "check",
        "problems:blocks",
        "--json",
        "--sample",
        "40",
        "--directions",
        "2",
        "--seed",
        "5",
        "--method",
        "forward",
        "--engine",
        "python",
        "--tol",
        "1e-4,1e-3",
        cwd=project,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["n"] == 302
    assert data["checked"] == 40
    assert data["blocks"]["w"]["directions"] == 2
    assert data["seed"] == 5
    assert data["method"] == "forward"
    assert data["engine"] == "python"
    assert data["tol"] == [1e-4, 1e-3]

    proc = _run("check", "problems:blocks", "--json", "--eps", "1e-6", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["step"] == "absolute step eps=1e-06"

    proc = _run(
        "check", "problems:blocks", "--json", "--sample", "0.5", "--tol", "1e-6", cwd=project
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["checked"] == 151
    assert data["tol"] == [1e-6, 1e-6]

    proc = _run("check", "problems:blocks", "--budget", "5", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "(budget 5 s)" in proc.stdout


def test_check_with_f_returning_loss_and_grad(project):
    proc = _run("check", "problems:pair", cwd=project)
    assert proc.returncode == 0, proc.stderr


def test_check_takes_a_file_path(project):
    proc = _run("check", str(project / "problems.py") + ":right")  # not from its directory
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nowhere:right", "cannot import 'nowhere'"),
        ("problems:missing", "'problems' has no function 'missing' (its functions: blocks,"),
        (
            "problems:NOT_A_FUNCTION",
            "has no function 'NOT_A_FUNCTION' (found: int, not a function)",
        ),
        ("problems", "the target must be module:function"),
        ("problems:not_a_triple", "problems:not_a_triple() must return (f, params, grad)"),
        ("problems:raises", "problems:raises() raised RuntimeError: the data file is missing"),
        ("problems:mismatched", "`grad` for block `params` has shape (5,)"),
        ("missing.py:right", "cannot import 'missing.py'"),
    ],
)
def test_check_usage_errors_exit_2(project, target, message):
    proc = _run("check", target, cwd=project)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert proc.stdout == ""


def test_a_value_error_in_the_users_f_is_not_a_usage_error(project):
    proc = _run("check", "problems:f_raises_value_error", cwd=project)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    # The user's error, with its traceback and where it was raised: not a bad argument.
    assert "Traceback (most recent call last)" in proc.stderr
    assert 'problems.py", line' in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("gradcheck check: error: problems:f_raises_value_error: the check")
    assert "could not run: ValueError: shapes (3,) and (4,) not aligned" in last
    assert "raised in " in last
    # A bad argument is still one line, without a traceback.
    proc = _run("check", "problems:mismatched", cwd=project)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--eps", "-1", "argument --eps: must be a positive number, got -1"),
        (
            "--sample",
            "1.5",
            "argument --sample: must be a positive integer or a fraction in (0, 1]",
        ),
        ("--directions", "0", "argument --directions: must be a positive integer, got 0"),
        ("--seed", "-3", "argument --seed: must be a non-negative integer, got '-3'"),
        ("--tol", "1e-5,1e-7", "must be one number or pass,fail with pass <= fail"),
        ("--method", "backward", "argument --method: invalid choice: 'backward'"),
        ("--engine", "dask", "argument --engine: invalid choice: 'dask'"),
    ],
)
def test_check_bad_flags_exit_2(project, flag, value, message):
    proc = _run("check", "problems:right", flag, value, cwd=project)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_the_installed_script_runs_the_same_commands(project):
    script = shutil.which("gradcheck", path=str(Path(sys.executable).parent)) or shutil.which(
        "gradcheck"
    )
    assert script, "the gradcheck console script is not installed: pip install -e ."
    proc = subprocess.run(
        [script, "check", "problems:wrong"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=project,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "gradcheck: FAIL" in proc.stdout
