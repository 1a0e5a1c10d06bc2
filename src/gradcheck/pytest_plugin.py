"""pytest plugin: ``--gradcheck-mode=sample|full``, ``--gradcheck-seed`` and the
``gradcheck_options`` fixture.

Registered through the ``pytest11`` entry point, so it is active wherever gradcheck is
installed. A test asks for the fixture and checks through it::

    def test_backward(gradcheck_options):
        gradcheck_options.assert_gradient(loss, params, grads)

``pytest --gradcheck-mode=sample`` (for pull requests) checks a stratified sample of
coordinates and two random directions per block; ``--gradcheck-mode=full`` (the default, for
nightly runs) checks every coordinate. The sample size comes from the ``gradcheck_sample``
ini option (default 200). ``--gradcheck-seed=N`` (or the ``gradcheck_seed`` ini option) seeds
every check, so that a run can be repeated exactly; without it each check draws its own seed
and the report of a failure shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from . import _options
from ._check import assert_gradient, check
from ._options import parse_seed
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
    seed : int or None
        The seed of every check (``--gradcheck-seed`` or the ``gradcheck_seed`` ini
        option); None: each check draws its own.
    options : dict
        The keyword arguments given to :func:`gradcheck.check`: ``sample`` and
        ``directions`` in "sample" mode, none in "full" mode; ``seed`` when one is set.
    """

    mode: str
    sample: int = DEFAULT_SAMPLE
    directions: int = SAMPLE_DIRECTIONS
    seed: int | None = None
    options: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}, got {self.mode!r}")
        _options.seed(self.seed)
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
    group.addoption(
        "--gradcheck-seed",
        default=None,
        metavar="N",
        help="seed every gradient check with N (a non-negative integer), so that the run can "
        "be repeated exactly; default: the gradcheck_seed ini option, else a fresh seed per check",
    )
    parser.addini(
        "gradcheck_sample",
        help=f"coordinates checked per test in --gradcheck-mode=sample (default {DEFAULT_SAMPLE})",
        default=str(DEFAULT_SAMPLE),
    )
    parser.addini(
        "gradcheck_seed",
        help="seed of every gradient check (--gradcheck-seed wins); default: none",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Refuse a bad seed before any test runs."""
    _seed(config)


def pytest_report_header(config: pytest.Config) -> str:
    """Say which mode the gradient checks run in, and with which seed."""
    seed = _seed(config)
    header = f"gradcheck: --gradcheck-mode={config.getoption('gradcheck_mode')}"
    return header + (f", --gradcheck-seed={seed}" if seed is not None else "")


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
        config.getoption("gradcheck_mode"), sample=sample, seed=_seed(config)
    )
