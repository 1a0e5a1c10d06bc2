"""The pytest plugin: --gradcheck-mode=sample|full and the gradcheck_options fixture."""

import re
from importlib.metadata import entry_points

import numpy as np
import pytest

from gradcheck.pytest_plugin import GradcheckOptions

pytest_plugins = ["pytester"]

INNER = """
import numpy as np

X = np.linspace(-1.0, 1.0, 1000)


def test_right(gradcheck_options):
    report = gradcheck_options.assert_gradient(lambda x: np.sum(x**3), X, 3 * X**2, seed=0)
    print(f"MODE={gradcheck_options.mode} CHECKED={report.checked} DIRS={report.directions}")


def test_wrong(gradcheck_options):
    grad = 3 * X**2
    grad[::10] *= 1.5  # one entry in ten is wrong
    gradcheck_options.assert_gradient(lambda x: np.sum(x**3), X, grad, seed=0)
"""


def _run(pytester, *args):
    pytester.makepyfile(test_inner=INNER)
    return pytester.runpytest("-s", "-p", "no:cacheprovider", *args)


def _checked(result):
    found = re.search(r"MODE=(\w+) CHECKED=(\d+) DIRS=(\d+)", result.stdout.str())
    assert found, result.stdout.str()
    return found.group(1), int(found.group(2)), int(found.group(3))


def test_the_plugin_is_registered_as_a_pytest11_entry_point():
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("gradcheck") == "gradcheck.pytest_plugin"


def test_full_mode_is_the_default_and_checks_every_coordinate(pytester):
    result = _run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    assert _checked(result) == ("full", 1000, 0)
    assert "gradcheck: --gradcheck-mode=full" in result.stdout.str()
    # The failing test shows the report's table, not the plugin's frames.
    result.stdout.fnmatch_lines(["*gradcheck: FAIL*"])


def test_sample_mode_checks_a_sample_and_two_directions(pytester):
    result = _run(pytester, "--gradcheck-mode=sample")
    result.assert_outcomes(passed=1, failed=1)  # a wrong gradient still fails
    assert _checked(result) == ("sample", 200, 2)


def test_full_mode_asked_for_explicitly(pytester):
    result = _run(pytester, "--gradcheck-mode=full")
    result.assert_outcomes(passed=1, failed=1)
    assert _checked(result)[1] == 1000


def test_the_sample_size_comes_from_the_ini_option(pytester):
    pytester.makeini("[pytest]\ngradcheck_sample = 50\n")
    result = _run(pytester, "--gradcheck-mode=sample")
    assert _checked(result) == ("sample", 50, 2)


def test_a_bad_ini_sample_is_a_usage_error(pytester):
    pytester.makeini("[pytest]\ngradcheck_sample = many\n")
    result = _run(pytester, "--gradcheck-mode=sample")
    assert "gradcheck_sample must be a positive integer, got 'many'" in (
        result.stdout.str() + result.stderr.str()
    )
    assert result.ret != 0


def test_an_unknown_mode_is_a_usage_error(pytester):
    result = _run(pytester, "--gradcheck-mode=some")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "invalid choice: 'some'" in result.stderr.str()


def test_explicit_options_win_over_the_mode():
    x = np.linspace(-1.0, 1.0, 300)
    options = GradcheckOptions("sample", sample=100)
    assert options.options == {"sample": 100, "directions": 2}
    assert options.check(lambda v: np.sum(v**2), x, 2 * x, seed=1).checked == 100
    assert options.check(lambda v: np.sum(v**2), x, 2 * x, sample=40, seed=1).checked == 40
    assert GradcheckOptions("full").options == {}


def test_a_bad_mode_names_the_value():
    with pytest.raises(ValueError, match=r"`mode` must be one of \('sample', 'full'\), got 'most'"):
        GradcheckOptions("most")
