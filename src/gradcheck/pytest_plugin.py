"""pytest plugin: ``--gradcheck-mode=sample|full`` and the ``gradcheck_options`` fixture.

Registered through the ``pytest11`` entry point, so it is active wherever gradcheck is
installed. A test asks for the fixture and checks through it::

    def test_backward(gradcheck_options):
        gradcheck_options.assert_gradient(loss, params, grads)

``pytest --gradcheck-mode=sample`` (for pull requests) checks a stratified sample of
coordinates and two random directions per block; ``--gradcheck-mode=full`` (the default, for
nightly runs) checks every coordinate. The sample size comes from the ``gradcheck_sample``
ini option (default 200).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from ._check import assert_gradient, check
from ._report import Report

MODES = ("sample", "full")
DEFAULT_SAMPLE = 200
SAMPLE_DIRECTIONS = 2


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
    options : dict
        The keyword arguments given to :func:`gradcheck.check`: ``sample`` and
        ``directions`` in "sample" mode, none in "full" mode.
    """

    mode: str
    sample: int = DEFAULT_SAMPLE
    directions: int = SAMPLE_DIRECTIONS
    options: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}, got {self.mode!r}")
        sampled = {"sample": self.sample, "directions": self.directions}
        object.__setattr__(self, "options", sampled if self.mode == "sample" else {})

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
        return check(f, params, grad, **{**self.options, **options})

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
        return assert_gradient(f, params, grad, **{**self.options, **options})


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
    parser.addini(
        "gradcheck_sample",
        help=f"coordinates checked per test in --gradcheck-mode=sample (default {DEFAULT_SAMPLE})",
        default=str(DEFAULT_SAMPLE),
    )


def pytest_report_header(config: pytest.Config) -> str:
    """Say which mode the gradient checks run in."""
    return f"gradcheck: --gradcheck-mode={config.getoption('gradcheck_mode')}"


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
    return GradcheckOptions(config.getoption("gradcheck_mode"), sample=sample)
