"""What the torch and jax comparisons share once each framework has run its sides: the
results measured, the rules that need several runs (self-reference, dependence), the
reference's own check, and the report.

Neither framework is imported here; the arrays are float64 numpy arrays on the CPU.
"""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any

import numpy as np

from . import _lowprec, _policy
from ._lowprec_report import CompareReport, Sides
from ._norms import rms
from ._report import Report


@dataclass(frozen=True)
class Run:
    """One side's results at one point: outputs and input gradients by name (float64 numpy;
    a gradient None where the kernel gave none), and whether the reference's own code ran
    while the kernel computed them.
    """

    outputs: dict[str, np.ndarray]
    gradients: dict[str, np.ndarray | None]
    called_reference: bool = False


@dataclass(frozen=True)
class Pair:
    """The kernel under test and its reference."""

    fn: Callable[..., Any]
    reference: Callable[..., Any]


@dataclass(frozen=True)
class Setting:
    """What every comparison of one call shares: the dtype's name and unit roundoff, the
    allowed factors, the seed, where it ran, and when it started.
    """

    dtype: str
    unit: float
    factors: dict[str, float]
    seed: int
    framework: str
    device: str
    started: float


def reference_gradients(run: Run) -> dict[str, np.ndarray]:
    """A reference's gradients: never None, as its side gives zeros for an input its
    outputs do not use.
    """
    out = {}
    for name, g in run.gradients.items():
        assert g is not None, f"the reference's side gave no gradient {name}"
        out[name] = g
    return out


def measured(setting: Setting, truth: Run, baseline: Run, kernel: Run, rounded: Run) -> tuple:
    """``(blocks, sides)``: every output's and gradient's :class:`Agreement`, by name."""
    shared = truth.outputs.keys() & truth.gradients.keys()
    if shared:
        raise ValueError(
            f"an output and an input's gradient share the name {sorted(shared)[0]!r}: rename "
            "the output (a dict key) or the input"
        )
    blocks, sides = {}, {}
    for kind, part in (("output", "outputs"), ("gradient", "gradients")):
        for name, t in getattr(truth, part).items():
            s = Sides(
                truth=t,
                baseline=getattr(baseline, part)[name],
                kernel=getattr(kernel, part)[name],
                rounded=getattr(rounded, part)[name],
            )
            sides[name] = s
            measure = partial(_lowprec.measure, unit=setting.unit, factor=setting.factors[kind])
            blocks[name] = measure(name, kind, s)
    return _self_reference(blocks, sides, baseline, kernel), sides


def _self_reference(blocks: dict, sides: dict, baseline: Run, kernel: Run) -> dict:
    """A result that is bit for bit the baseline's while the kernel called the reference is
    the reference compared with itself: a gradient fails, an output gets a note (a kernel
    may reuse the reference's forward and bring its own backward).
    """
    if not kernel.called_reference:
        return blocks
    out = dict(blocks)
    for name, s in sides.items():
        if s.kernel is None or not np.array_equal(s.kernel, s.baseline, equal_nan=True):
            continue
        text = (
            "is the reference's own result: fn called the reference, and this is bit for bit "
            "what the reference gives in the same dtype, so it was compared with itself"
        )
        if blocks[name].kind == "gradient":
            out[name] = _lowprec.with_problem(blocks[name], text)
        else:
            out[name] = _lowprec.with_note(blocks[name], text + " (its comparison shows nothing)")
    return out


def depend(blocks: dict, moved: str, truth: Run, kernel: Run, truth_moved: Run, kernel_moved: Run):
    """The results that do not follow a move of input ``moved``: the truth and the kernel
    at the point, and with that input moved.
    """
    out = dict(blocks)
    for name, a in blocks.items():
        part = "outputs" if a.kind == "output" else "gradients"
        t0, t1 = getattr(truth, part)[name], getattr(truth_moved, part)[name]
        k0, k1 = getattr(kernel, part)[name], getattr(kernel_moved, part)[name]
        if k0 is None or k1 is None:
            continue
        # What rounding alone moves a result by: the baseline's error (or the floor); a
        # kernel's own large error is no excuse for not following the input.
        noise = max(a.baseline_error, a.floor) * rms(t0)
        followed = _lowprec.dependence(t1 - t0, k1 - k0, noise)
        if followed is not None and _lowprec.ignores(followed):
            moved_t = rms(t1 - t0) / max(rms(t0), np.finfo(float).tiny)
            out[name] = _lowprec.with_problem(
                a,
                f"does not depend on {moved} as it should: moving {moved} moved the truth's "
                f"{name} by {moved_t:.0%} of its RMS and the kernel's by {followed * moved_t:.2%}",
            )
    return out


def moved(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """The factor an input is multiplied by to move it: signs and zeros stay."""
    return 1.0 + _policy.DEPEND_MOVE * rng.uniform(-1.0, 1.0, shape)


def depend_rng(seed: int) -> np.random.Generator:
    # A stream apart from the cotangent's (key "dep"), so the moves never repeat it.
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x646570,)))


def report(
    setting: Setting, blocks: dict, sides: dict, reference: Report | None, cotangent: Any
) -> CompareReport:
    """The frozen report of one comparison."""
    notes = []
    if reference is not None and reference.verdict not in ("pass", "fail"):
        notes.append(
            f"the reference's own check is {reference.verdict}: "
            f"{'; '.join(reference.notes) or 'see report.reference'}"
        )
    return CompareReport(
        verdict=_lowprec.verdict_of(blocks, reference),
        blocks=MappingProxyType(blocks),
        worst=_lowprec.worst_entries(blocks, sides),
        dtype=setting.dtype,
        framework=setting.framework,
        device=setting.device,
        seed=setting.seed,
        cotangent=cotangent,
        reference=reference,
        notes=tuple(notes),
        seconds=time.perf_counter() - setting.started,
    )


def reference_options(n: int, options: dict) -> dict:
    """The reference check's options: the user's, with random directions when the inputs
    hold more than ``_policy.REFERENCE_ENTRIES`` entries and the user chose no coverage.
    """
    chosen = {"budget", "sample", "directions"} & options.keys()
    if n > _policy.REFERENCE_ENTRIES and not chosen:
        return {**options, "directions": _policy.REFERENCE_DIRECTIONS}
    return dict(options)


def assert_passed(report: CompareReport) -> CompareReport:
    """``report``, or AssertionError whose message is its table (headline first)."""
    if not report.passed:
        raise AssertionError(str(report))
    return report


# --- did the kernel call the reference? --------------------------------------------------------


def code_objects(target: Any) -> frozenset:
    """The Python code objects calling ``target`` runs first: a function's, a bound
    method's, a partial's, a wrapped function's (``jax.jit``, ``functools.wraps``), a
    Module's ``forward``, a Function's ``forward`` and ``backward``; empty for builtins
    (which cannot be told apart from their other uses).
    """
    found = set()
    for _ in range(8):  # unwrap partials and decorators, a few layers deep
        inner = target.func if isinstance(target, partial) else getattr(target, "__wrapped__", None)
        if inner is None:
            break
        found |= code_objects_of(target)
        target = inner
    owner = getattr(target, "__self__", None)
    candidates = [target, getattr(target, "__func__", None), type(target).__dict__.get("__call__")]
    if isinstance(owner, type):  # torch.autograd.Function.apply: its own methods
        candidates += [getattr(owner, "forward", None), getattr(owner, "backward", None)]
    if hasattr(type(target), "forward"):  # an nn.Module
        candidates.append(type(target).forward)
    for c in candidates:
        found |= code_objects_of(c)
    return frozenset(found)


def code_objects_of(c: Any) -> set:
    code = getattr(getattr(c, "__func__", c), "__code__", None)
    return {code} if isinstance(code, types.CodeType) else set()


@contextmanager
def watching(codes: frozenset) -> Iterator[Callable[[], bool]]:
    """Within, record whether any of ``codes`` is called on this thread; yields the
    question. Under another profiler (cProfile, a debugger's), nothing is recorded: that
    profiler is left alone, and only ``fn is reference`` is caught.
    """
    seen = [False]

    def hook(frame, event, arg):
        if event == "call" and frame.f_code in codes:
            seen[0] = True

    watch = bool(codes) and sys.getprofile() is None
    if watch:
        sys.setprofile(hook)
    try:
        yield lambda: seen[0]
    finally:
        if watch:
            sys.setprofile(None)
