"""The low-precision comparison's steps (``gradcheck.torch.compare``,
``gradcheck.jax.compare``), written once over the frameworks' runs.

The truth (the reference in float64), the baseline (the reference in the kernel's dtype)
and the kernel run at the same point on the same cotangent; the rules (``_lowprec_run``)
measure each result, the dependence runs move one input at a time, and the reference's own
gradient is checked by finite differences. A framework supplies the runs
(:class:`Runs`); the order and the rules are here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from . import _lowprec_run
from ._lowprec_report import CompareReport
from ._lowprec_run import Pair, Run, Setting
from ._report import Report


@dataclass(frozen=True)
class Asked:
    """What the caller asked for beyond the point: the cotangent, the reference's check (and
    its options), the dependence runs.
    """

    cotangent: Any
    check_reference: bool
    dependence: bool
    options: dict


def asked(cotangent: Any, check_reference: Any, dependence: Any, options: dict) -> Asked:
    """:class:`Asked`, its flags validated (the errors name them)."""
    for label, flag in (("check_reference", check_reference), ("dependence", dependence)):
        if not isinstance(flag, bool):
            raise TypeError(f"`{label}` must be True or False, got {flag!r}")
    return Asked(cotangent, check_reference, dependence, options)


def require_callable(fn: Any, reference: Any, short: Callable[[Any], str]) -> None:
    for label, f in (("fn", fn), ("reference", reference)):
        if not callable(f):
            raise TypeError(f"`{label}` must be callable, got {type(f).__name__}: {short(f)}")


class Runs(Protocol):
    """A framework's runs at the point (its inputs rounded to the kernel's dtype once);
    ``ct`` is the cotangent as the framework holds it, rounded to that dtype.
    """

    def outputs(self, reference: Callable[..., Any]) -> Any:
        """The reference's outputs on float64 copies of the point, refusing a reference that
        does not return float64 there.
        """
        ...

    def cotangent(self, given: Any, outputs: Any, seed: int) -> list:
        """The user's cotangent, validated, or one drawn from ``seed``, in the dtype."""
        ...

    def side(self, f: Callable[..., Any], ct: list, *, wide: bool, reference: bool) -> Run:
        """``f``'s outputs and vector-Jacobian product on ``ct``, as float64 numpy arrays:
        at the point, or on float64 copies of it (``wide``). Where no gradient flows, a
        ``reference``'s is zeros and a kernel's None.
        """
        ...

    def rounded(self, a: np.ndarray) -> np.ndarray:
        """float64 values rounded to the dtype (and back to float64)."""
        ...

    def inputs(self) -> Iterator[tuple[Any, str]]:
        """Each input that gets a gradient: where it is in the point, and its name."""
        ...

    def moved(self, where: Any, rng: np.random.Generator) -> Runs:
        """The runs with the input at ``where`` moved (signs and zeros kept)."""
        ...

    def reference_check(
        self, reference: Callable[..., Any], outputs: Any, ct: list, seed: int, options: dict
    ) -> Report:
        """The reference's float64 gradient checked by finite differences."""
        ...

    def numpy(self, c: Any) -> np.ndarray:
        """A cotangent's array as float64 numpy, for the report."""
        ...


def compare(runs: Runs, pair: Pair, setting: Setting, asked: Asked) -> CompareReport:
    """The three runs, the rules, the reference's check and the report."""
    outputs = runs.outputs(pair.reference)
    ct = runs.cotangent(asked.cotangent, outputs, setting.seed)
    truth = runs.side(pair.reference, ct, wide=True, reference=True)
    baseline = runs.side(pair.reference, ct, wide=False, reference=True)
    with _lowprec_run.watching(_lowprec_run.code_objects(pair.reference)) as called:
        kernel = runs.side(pair.fn, ct, wide=False, reference=False)
    kernel = replace(kernel, called_reference=called() or pair.fn is pair.reference)
    _same_layout(truth, kernel)
    gradients = _lowprec_run.reference_gradients(truth)
    rounded = Run(
        {n: runs.rounded(a) for n, a in truth.outputs.items()},
        {n: runs.rounded(a) for n, a in gradients.items()},
    )
    blocks, sides = _lowprec_run.measured(setting, truth, baseline, kernel, rounded)
    if asked.dependence:
        rng = _lowprec_run.depend_rng(setting.seed)
        for where, name in runs.inputs():
            there = runs.moved(where, rng)
            moved_truth = there.side(pair.reference, ct, wide=True, reference=True)
            moved_kernel = there.side(pair.fn, ct, wide=False, reference=False)
            blocks = _lowprec_run.depend(blocks, name, truth, kernel, moved_truth, moved_kernel)
    checked = None
    if asked.check_reference:
        n = sum(gradient.size for gradient in gradients.values())
        options = _lowprec_run.reference_options(n, asked.options)
        checked = runs.reference_check(pair.reference, outputs, ct, setting.seed, options)
    cotangent = [runs.numpy(c) for c in ct]
    return _lowprec_run.report(setting, blocks, sides, checked, cotangent)


def _same_layout(truth: Run, kernel: Run) -> None:
    want = {n: a.shape for n, a in truth.outputs.items()}
    got = {n: a.shape for n, a in kernel.outputs.items()}
    if want != got:
        raise ValueError(
            f"`fn` and `reference` must return the same outputs: the reference gives "
            f"{_shapes(want)}, fn {_shapes(got)}"
        )


def _shapes(shapes: dict) -> str:
    return ", ".join(f"{n} {tuple(s)}" for n, s in shapes.items())
