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


SEEDED = """
def test_seed(gradcheck_options):
    import numpy as np

    x = np.linspace(-1.0, 1.0, 50)
    report = gradcheck_options.check(lambda v: np.sum(v**2), x, 2 * x)
    explicit = gradcheck_options.check(lambda v: np.sum(v**2), x, 2 * x, seed=99)
    print(f"SEED={report.seed} EXPLICIT={explicit.seed}")
"""


def _seeds(pytester, *args):
    pytester.makepyfile(test_seeded=SEEDED)
    result = pytester.runpytest("-s", "-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=1)
    found = re.search(r"SEED=(\d+) EXPLICIT=(\d+)", result.stdout.str())
    return int(found.group(1)), int(found.group(2)), result


def test_the_seed_option_seeds_every_check(pytester):
    seed, explicit, result = _seeds(pytester, "--gradcheck-seed=7")
    assert (seed, explicit) == (7, 99)  # the test's own seed= still wins
    assert "gradcheck: --gradcheck-mode=full, --gradcheck-seed=7" in result.stdout.str()
    assert _seeds(pytester, "--gradcheck-seed=7", "--gradcheck-mode=sample")[0] == 7


def test_the_seed_comes_from_the_ini_option_and_the_flag_wins(pytester):
    pytester.makeini("[pytest]\ngradcheck_seed = 3\n")
    assert _seeds(pytester)[0] == 3
    assert _seeds(pytester, "--gradcheck-seed=5")[0] == 5


def test_without_a_seed_each_check_draws_its_own(pytester):
    first, _, result = _seeds(pytester)
    second, _, _ = _seeds(pytester)
    assert first != second
    assert "--gradcheck-seed" not in result.stdout.str()


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (
            ["--gradcheck-seed=-1"],
            None,
            "--gradcheck-seed must be a non-negative integer, got '-1'",
        ),
        ([], "gradcheck_seed = soon", "ini option gradcheck_seed must be a non-negative integer"),
    ],
)
def test_a_bad_seed_is_a_usage_error(pytester, args, ini, message):
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_seeded=SEEDED)
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stdout.str() + result.stderr.str()


SLOW = """
import time

import numpy as np

X = np.linspace(0.5, 1.5, 2000)


def slow(x):
    time.sleep(0.002)  # 2,000 coordinates: 8 s for a full check, 4,000 evaluations
    return float(np.sum(x**3))


def test_slow(gradcheck_options):
    report = gradcheck_options.assert_gradient(slow, X, 3 * X**2, seed=0)
    print(f"CHECKED={report.checked}")
"""


# This suite turns warnings into errors, and the inner run inherits that: shown instead.
_SHOWN = "default::gradcheck.pytest_plugin.GradcheckTimeLimit"


def test_a_full_check_past_the_time_limit_checks_a_sample_and_says_so(pytester):
    pytester.makepyfile(test_slow=SLOW)
    result = pytester.runpytest(
        "-s", "-p", "no:cacheprovider", "--gradcheck-max-seconds=1", "-W", _SHOWN
    )
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "CHECKED=200" in out
    # pytest shows why, with the estimate and how to check every coordinate.
    assert "GradcheckTimeLimit" in out
    assert "every coordinate of 2,000 would take about" in out
    assert "--gradcheck-max-seconds=0" in out
    assert "--gradcheck-max-seconds=1" in out  # the header says the limit


def test_the_time_limit_under_warnings_as_errors_fails_fast_saying_how_to_opt_in(pytester):
    pytester.makepyfile(test_slow=SLOW)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--gradcheck-max-seconds=1", "-W", "error"
    )
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "GradcheckTimeLimit" in out
    assert "--gradcheck-max-seconds=0: none" in out


def test_without_a_limit_the_full_check_runs(pytester):
    pytester.makepyfile(test_slow=SLOW.replace("0.002", "0.0"))
    result = pytester.runpytest("-s", "-p", "no:cacheprovider", "--gradcheck-max-seconds=0")
    result.assert_outcomes(passed=1)
    assert "CHECKED=2000" in result.stdout.str()


def test_a_bad_time_limit_is_a_usage_error(pytester):
    pytester.makepyfile(test_slow=SLOW)
    result = pytester.runpytest("-p", "no:cacheprovider", "--gradcheck-max-seconds=soon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--gradcheck-max-seconds must be a number of seconds >= 0" in result.stderr.str()


def test_an_80_column_summary_names_the_failing_block(pytester, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = _run(pytester, "-q", "-rf")
    summary = [line for line in result.stdout.lines if line.startswith("FAILED ")]
    assert len(summary) == 1, result.stdout.str()
    assert "gradcheck: FAIL in params" in summary[0], summary[0]


def test_a_failure_is_short_and_its_first_line_is_the_headline(pytester, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # the summary line is cut to the terminal's width
    result = _run(pytester, "-q", "-rf")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    # The one-line summary carries the verdict and the failing block, not an empty message.
    summary = [line for line in out.splitlines() if line.startswith("FAILED ")]
    assert len(summary) == 1, out
    assert re.match(
        r"FAILED test_inner.py::test_wrong - AssertionError: gradcheck: FAIL in params "
        r"\(difference \S+\)",
        summary[0],
    ), summary[0]
    # gradcheck's own frames (its source and docstrings) are hidden: the test's line shows.
    failure = out[out.index("_ test_wrong _") : out.index("short test summary")]
    assert "def assert_gradient" not in failure
    assert "Check a gradient and raise" not in failure
    assert "report = check(" not in failure
    assert "gradcheck_options.assert_gradient(lambda x: np.sum(x**3), X, grad" in failure
    assert len(failure.splitlines()) < 45, failure


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
    assert GradcheckOptions("full", seed=4).options == {"seed": 4}
    assert GradcheckOptions("sample", sample=9, seed=0).options == {
        "sample": 9,
        "directions": 2,
        "seed": 0,
    }


def test_a_bad_seed_names_the_value():
    with pytest.raises(ValueError, match=r"`seed` must be a non-negative integer or None, got -2"):
        GradcheckOptions("full", seed=-2)


def test_a_bad_mode_names_the_value():
    with pytest.raises(ValueError, match=r"`mode` must be one of \('sample', 'full'\), got 'most'"):
        GradcheckOptions("most")
