"""pytest plugin: ``--gradcheck-mode=sample|full``, ``--gradcheck-seed`` and the
``gradcheck_options`` fixture.

Registered through the ``pytest11`` entry point, so it is active wherever gradcheck is
installed. A test asks for the fixture and checks through it::

    def test_backward(gradcheck_options):
        gradcheck_options.assert_gradient(loss, params, grads)

``pytest --gradcheck-mode=sample`` (for pull requests) checks a stratified sample of
coordinates and two random directions per block (every coordinate and no directions for a
model no larger than the sample, which then costs no more than the full check);
``--gradcheck-mode=full`` (the default, for nightly runs) checks every coordinate. The
sample size comes from the ``gradcheck_sample`` ini option (default 200).
``--gradcheck-seed=N`` (or the ``gradcheck_seed`` ini option) seeds every check, so that a
run can be repeated exactly; without it each check draws its own seed and the report of a
failure shows it.

A test run never takes hours in silence: in "full" mode each check first times one
evaluation of ``f``, and when every coordinate would take longer than
``--gradcheck-max-seconds`` (the ``gradcheck_max_seconds`` ini option, default 60; 0: no
limit) it checks a sample as "sample" mode does, with a :class:`GradcheckTimeLimit`
warning that pytest shows in its summary (an error under ``-W error``, which stops the
test at once with the same message).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import pytest

from . import _layout, _options, _plan
from ._check import check
from ._options import parse_seed
from ._report import Report

MODES = ("sample", "full")
DEFAULT_SAMPLE = 200
SAMPLE_DIRECTIONS = 2
# A full check expected to take longer than this many seconds checks a sample instead:
# a test suite is run often, and hours without a word look like a hang.
DEFAULT_MAX_SECONDS = 60.0


class GradcheckTimeLimit(UserWarning):
    """A full check would take longer than ``--gradcheck-max-seconds``: a sample was checked."""


@dataclass(frozen=True)
class GradcheckOptions:
    """The options the ``--gradcheck-mode`` of this pytest run gives to every check.

    Attributes
    ----------
    mode : {"sample", "full"}
        From ``--gradcheck-mode``.
    sample : int
        Coordinates checked in "sample" mode (the ``gradcheck_sample`` ini option).
    directions : int
        Random directions per block in "sample" mode.
    seed : int or None
        The seed of every check (``--gradcheck-seed`` or the ``gradcheck_seed`` ini
        option); None: each check draws its own.
    max_seconds : float or None
        In "full" mode, a check expected to take longer (one evaluation of ``f`` timed,
        times the evaluations of a full check) checks a sample as "sample" mode does and
        warns (:class:`GradcheckTimeLimit`); None: no limit. Not applied when the call
        gives ``sample``, ``directions`` or ``budget`` itself.
    options : dict
        The keyword arguments given to :func:`gradcheck.check`: ``sample`` and
        ``directions`` in "sample" mode, none in "full" mode; ``seed`` when one is set.
    """

    mode: str
    sample: int = DEFAULT_SAMPLE
    directions: int = SAMPLE_DIRECTIONS
    seed: int | None = None
    max_seconds: float | None = DEFAULT_MAX_SECONDS
    options: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}, got {self.mode!r}")
        _options.seed(self.seed)
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(
                f"`max_seconds` must be a positive number or None, got {self.max_seconds!r}"
            )
        options: dict[str, Any] = {}
        if self.mode == "sample":
            options.update(sample=self.sample, directions=self.directions)
        if self.seed is not None:
            options["seed"] = self.seed
        object.__setattr__(self, "options", options)

    def check(self, f: Any, params: Any, grad: Any = None, **options: Any) -> Report:
        """:func:`gradcheck.check` with this run's options (explicit ``options`` win).

        Parameters
        ----------
        f, params, grad, **options
            As for :func:`gradcheck.check`.

        Returns
        -------
        Report
            The report.
        """
        return check(f, params, grad, **self._within_limit(f, params, grad, options))

    def assert_gradient(self, f: Any, params: Any, grad: Any = None, **options: Any) -> Report:
        """:func:`gradcheck.assert_gradient` with this run's options (explicit ones win).

        Parameters
        ----------
        f, params, grad, **options
            As for :func:`gradcheck.check`.

        Returns
        -------
        Report
            The report, when the check passes.

        Raises
        ------
        AssertionError
            When a block fails or the check is inconclusive; the message is the table.
        """
        __tracebackhide__ = True
        report = self.check(f, params, grad, **options)
        if not report.passed:
            # The first line is the headline (what failed): pytest's one-line summary shows it.
            raise AssertionError(str(report))
        return report

    def _within_limit(self, f: Any, params: Any, grad: Any, given: dict) -> dict[str, Any]:
        """The options of one check: this run's, the call's (which win), and in "full" mode
        a sample instead when every coordinate would take longer than ``max_seconds``.
        """
        options = {**self.options, **given}
        if self.mode == "sample" and not {"sample", "directions"} & set(given):
            if _layout.build(params)[0].n <= self.sample:
                # A model no larger than the sample: every coordinate, one by one, without
                # directions over the same entries (they would only add evaluations).
                options.pop("sample")
                options.pop("directions")
            return options
        if (
            self.mode != "full"
            or self.max_seconds is None
            or any(options.get(k) is not None for k in ("sample", "directions", "budget"))
        ):
            return options
        seconds, n = _time_one(f, params, grad, options)
        method = options.get("method", "central")
        evaluations = n * len(_plan.METHODS[method].offsets) if method in _plan.METHODS else n
        expected = seconds * evaluations
        if expected <= self.max_seconds:
            return options
        warnings.warn(
            GradcheckTimeLimit(
                f"gradcheck: every coordinate of {n:,} would take about {_duration(expected)} "
                f"({evaluations:,} evaluations of f at {_duration(seconds)} each), more than "
                f"--gradcheck-max-seconds={self.max_seconds:g}: checking {self.sample:,} "
                f"coordinates and {self.directions} random directions per block instead, as "
                "--gradcheck-mode=sample does. For every coordinate, raise the limit "
                "(--gradcheck-max-seconds=0: none) or pass sample=1.0."
            ),
            stacklevel=3,
        )
        return {**options, "sample": self.sample, "directions": self.directions}


def _time_one(f: Any, params: Any, grad: Any, options: dict) -> tuple[float, int]:
    """``(seconds, n)``: one evaluation of ``f`` on a private copy of ``params`` (the faster
    of two, so a JIT compile on the first is not counted), and the number of parameters.
    """
    layout, buffer = _layout.build(params)
    args = options.get("args", ())
    if options.get("batched"):
        point = layout.structure(buffer.reshape(1, -1), batch=1)
    else:
        point = layout.structure(buffer)
    times = []
    for _ in range(2):
        started = time.perf_counter()
        f(point, *args)
        times.append(time.perf_counter() - started)
    return min(times), layout.n


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    if seconds >= 1:
        return f"{seconds:.1f} s"
    return f"{seconds * 1e3:.2g} ms"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--gradcheck-mode`` and the ``gradcheck_sample`` ini option."""
    group = parser.getgroup("gradcheck", "gradient checks (gradcheck)")
    group.addoption(
        "--gradcheck-mode",
        choices=MODES,
        default="full",
        help="sample: check a stratified sample of coordinates and 2 random directions per "
        "block (quick, for pull requests); full: every coordinate (default)",
    )
    group.addoption(
        "--gradcheck-seed",
        default=None,
        metavar="N",
        help="seed every gradient check with N (a non-negative integer), so that the run can "
        "be repeated exactly; default: the gradcheck_seed ini option, else a fresh seed per check",
    )
    group.addoption(
        "--gradcheck-max-seconds",
        default=None,
        metavar="S",
        help="in full mode, a check expected to take longer than S seconds checks a sample "
        f"instead and warns (default: the gradcheck_max_seconds ini option, else "
        f"{DEFAULT_MAX_SECONDS:g}; 0: no limit)",
    )
    parser.addini(
        "gradcheck_sample",
        help=f"coordinates checked per test in --gradcheck-mode=sample (default {DEFAULT_SAMPLE})",
        default=str(DEFAULT_SAMPLE),
    )
    parser.addini(
        "gradcheck_max_seconds",
        help="seconds a full check may take before a sample is checked instead "
        f"(--gradcheck-max-seconds wins; default {DEFAULT_MAX_SECONDS:g}; 0: no limit)",
        default="",
    )
    parser.addini(
        "gradcheck_seed",
        help="seed of every gradient check (--gradcheck-seed wins); default: none",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Refuse a bad seed or time limit before any test runs."""
    _seed(config)
    _max_seconds(config)


def pytest_report_header(config: pytest.Config) -> str:
    """Say which mode the gradient checks run in, and with which seed."""
    seed = _seed(config)
    mode = config.getoption("gradcheck_mode")
    header = f"gradcheck: --gradcheck-mode={mode}"
    header += f", --gradcheck-seed={seed}" if seed is not None else ""
    limit = _max_seconds(config)
    if mode == "full":
        header += f", --gradcheck-max-seconds={0 if limit is None else limit:g}"
    return header


def _max_seconds(config: pytest.Config) -> float | None:
    """The time limit of a full check: the flag, else the ini option, else the default;
    None for 0 (no limit).
    """
    text = config.getoption("gradcheck_max_seconds")
    where = "--gradcheck-max-seconds"
    if text is None:
        text = config.getini("gradcheck_max_seconds").strip()
        where = "ini option gradcheck_max_seconds"
        if not text:
            return DEFAULT_MAX_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise pytest.UsageError(
            f"{where} must be a number of seconds >= 0 (0: no limit), got {text!r}"
        )
    return value or None


def _seed(config: pytest.Config) -> int | None:
    """The seed from ``--gradcheck-seed``, else from the ini option, else None."""
    text = config.getoption("gradcheck_seed")
    where = "--gradcheck-seed"
    if text is None:
        text, where = config.getini("gradcheck_seed").strip(), "ini option gradcheck_seed"
        if not text:
            return None
    try:
        return parse_seed(text)
    except ValueError as exc:
        raise pytest.UsageError(f"{where} {exc}") from None


@pytest.fixture
def gradcheck_options(request: pytest.FixtureRequest) -> GradcheckOptions:
    """The run's gradient-check options, with ``check`` and ``assert_gradient`` helpers."""
    config = request.config
    text = config.getini("gradcheck_sample")
    try:
        sample = int(text)
    except ValueError:
        sample = 0
    if sample < 1:
        raise pytest.UsageError(
            f"ini option gradcheck_sample must be a positive integer, got {text!r}"
        )
    return GradcheckOptions(
        config.getoption("gradcheck_mode"),
        sample=sample,
        seed=_seed(config),
        max_seconds=_max_seconds(config),
    )
