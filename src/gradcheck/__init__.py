"""gradcheck: check hand-written gradients against finite differences, and say where they
are wrong.

>>> import numpy as np, gradcheck
>>> report = gradcheck.check(lambda x: np.sum(x**3), np.array([1.0, 2.0]), np.array([3.0, 12.0]))
>>> report.passed
True

Adapters for torch and jax live in ``gradcheck.torch`` and ``gradcheck.jax``, imported on
demand: ``import gradcheck`` loads neither framework.
"""

from ._check import assert_gradient, check
from ._jvp import check_hvp, check_jvp
from ._lowprec_report import CompareReport
from ._monitor import GradientAlert, GradientError, Monitor
from ._norms import relative_change, relative_difference
from ._projection import ProjectedReport
from ._report import Report
from ._results import BlockResult, Control, Entry, Kink, Reach, Replay, Verdict
from ._sweep import StepSweep, step_sweep
from ._taylor import taylor_test
from ._taylor_results import TaylorTest
from ._vjp import check_vjp

__version__ = "0.1.0"

# The public API: everything else is private and may change. The records a report hands
# out (its blocks, entries, kinks, replay data and verdicts) are public so they can be named
# in user code and type annotations.
__all__ = [
    "BlockResult",
    "CompareReport",
    "Control",
    "Entry",
    "GradientAlert",
    "GradientError",
    "Kink",
    "Monitor",
    "ProjectedReport",
    "Reach",
    "Replay",
    "Report",
    "StepSweep",
    "TaylorTest",
    "Verdict",
    "assert_gradient",
    "check",
    "check_hvp",
    "check_jvp",
    "check_vjp",
    "relative_change",
    "relative_difference",
    "step_sweep",
    "taylor_test",
]
