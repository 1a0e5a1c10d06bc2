"""``gradcheck.torch.compare``: a low-precision kernel against a float64 reference.

torch is imported when a function here is called, never by ``import gradcheck``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import (
    _frameworks,
    _lowprec,
    _lowprec_run,
    _modes,
    _projection,
    _reference_compare,
    _torch_modes,
)
from ._frameworks import short
from ._lowprec_report import CompareReport
from ._lowprec_run import Pair, Run, Setting
from ._report import Report
from ._torch_backend import Torch


def compare(
    fn: Callable[..., Any],
    reference: Callable[..., Any],
    inputs: Any,
    *,
    dtype: Any = None,
    cotangent: Any = None,
    seed: int | None = None,
    factor: Any = None,
    check_reference: bool = True,
    dependence: bool = True,
    **options: Any,
) -> CompareReport:
    """Compare a low-precision kernel's outputs and gradients with a float64 reference,
    relative to what the reference itself reaches in the kernel's dtype.

    Finite differences cannot check a bf16 or fp16 backward (at bf16, ``x + h == x`` for
    any step small enough to resolve a derivative). Three runs on the same inputs, rounded
    to ``dtype`` once, and the same cotangent: the **truth** (``reference`` in float64,
    forward and vector-Jacobian product), the **baseline** (``reference`` in ``dtype``:
    what torch's own ops reach there) and the **kernel** (``fn`` in ``dtype``). Each output
    and each input's gradient passes when the kernel's relative RMS error against the truth
    is within ``factor`` times the baseline's, and when its systematic part (the slope
    ``<g_k, g_t> / <g_t, g_t> - 1``) stays within what the baseline's slope and the
    rounding's spread allow. Non-vacuity rules fail a result whatever its error: all zero
    where the truth is not, NaN or infinity (named where), no gradient (None), a result
    that does not move when an input it depends on moves, and a gradient that is the
    reference's own (``fn`` calls ``reference`` and gives its very bits).

    Parameters
    ----------
    fn : callable
        The kernel, ``fn(*inputs)`` (``fn(**inputs)`` for a dict): a tensor, or a tuple /
        list / dict of tensors. A custom Function is passed as ``MyFunction.apply``.
    reference : callable
        The same function written plainly; it must follow its inputs' dtype (float64 in,
        float64 out).
    inputs : tensor, tuple / list, or dict
        The point. Floating tensors are cast to ``dtype`` once (so every run sees the same
        numbers) and, for the truth, to float64 from there; those with ``requires_grad``
        get gradients compared (every floating one when none has it). Gradients are named
        ``d`` + the input's name (dict key, or ``fn``'s parameter name).
    dtype : torch.dtype, optional
        Where the kernel and the baseline run: ``torch.bfloat16`` (default),
        ``torch.float16``, ``torch.float32``.
    cotangent : tensor or tuple of tensors, optional
        The output's cotangent; default standard normal, drawn from ``seed``. Rounded to
        ``dtype``, the same numbers go to every run.
    seed : int, optional
        Seeds the cotangent, the dependence moves and the reference's check.
    factor : float or (float, float), optional
        The ratio allowed over the baseline's error, for outputs and gradients; default
        (2, 3), the public practice of fused-kernel test suites.
    check_reference : bool
        First check the reference's float64 gradient by gradcheck's finite differences
        (:func:`gradcheck.torch.check`: every coordinate of up to 256, else 4 random
        directions per input, unless ``options`` say otherwise), so that a wrong reference
        is named as such.
    dependence : bool
        Move each input once and run the kernel and the truth again, to find results that
        do not depend on an input they should (one more run of each per input).
    **options
        Passed to the reference's check (``tol``, ``sample``, ``directions``, ...).

    Returns
    -------
    CompareReport
        ``verdict``, ``passed``, ``failing``, ``blocks`` (per result: errors, ratio, slopes,
        problems), ``worst``, ``reference`` (the check's Report), ``to_dict()`` and a table
        as ``str(report)``.

    Raises
    ------
    TypeError
        ``fn`` or ``reference`` not callable, no floating tensor in ``inputs``, an output
        that is not a tensor.
    ValueError
        A bad ``dtype``, ``factor`` or ``cotangent``; the kernel's outputs not matching the
        reference's; a reference that does not return float64 on float64 inputs.

    Examples
    --------
    >>> import torch, gradcheck.torch
    >>> x = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    >>> def softmax(x):
    ...     return torch.softmax(x, -1)
    >>> def kernel(x):
    ...     return torch.softmax(x.float(), -1).to(x.dtype)
    >>> gradcheck.torch.compare(kernel, softmax, (x,), seed=0).verdict
    'pass'
    """
    fw = Torch()
    torch = fw.torch
    started = time.perf_counter()
    _reference_compare.require_callable(fn, reference, short)
    dtype = torch.bfloat16 if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"`dtype` must be a floating torch.dtype, got {dtype!r}")
    factors = _lowprec.default_factor(factor)
    seed = _projection.resolve_seed(seed)
    asked = _reference_compare.asked(cotangent, check_reference, dependence, options)
    point = _point(fw, fn, reference, inputs, dtype)
    setting = Setting(
        dtype=str(dtype).removeprefix("torch."),
        unit=float(torch.finfo(dtype).eps) / 2,
        factors=factors,
        seed=seed,
        framework="torch",
        device=point.device,
        started=started,
    )
    runs = _Runs(fw, point, dtype)
    return _reference_compare.compare(runs, Pair(fn, reference), setting, asked)


@dataclass(frozen=True)
class _Point:
    """The inputs, rounded to the dtype once: names, values (tensors detached), which get
    gradients, how ``fn`` is called, and the device.
    """

    names: list[str]
    values: list  # in ``dtype`` where floating, other values as given
    checked: list[str]
    keyword: bool
    device: str


def assert_close_to_reference(
    fn: Callable[..., Any], reference: Callable[..., Any], inputs: Any, **options: Any
) -> CompareReport:
    """:func:`compare` for tests: the report, or AssertionError whose message is its table
    (its first line the headline pytest shows).

    Parameters
    ----------
    fn, reference, inputs, **options
        As :func:`compare` takes them.

    Returns
    -------
    CompareReport
        The passing report.

    Raises
    ------
    AssertionError
        The comparison did not pass.
    """
    return _lowprec_run.assert_passed(compare(fn, reference, inputs, **options))


def _point(
    fw: Torch, fn: Callable[..., Any], reference: Callable[..., Any], inputs: Any, dtype: Any
) -> _Point:
    torch = fw.torch
    inputs = fw.inputs(inputs)
    keyword = isinstance(inputs, Mapping)
    values = list(inputs.values()) if keyword else list(inputs)
    if keyword:
        names = [str(k) for k in inputs]
    else:
        names = fw.parameter_names(fn, len(values))
        if names[0] == "input0":  # fn's signature says nothing: the reference's may
            names = fw.parameter_names(reference, len(values))
    checked = fw.checked(names, values)
    cast = [_cast(torch, v, dtype) for v in values]
    device = next(str(v.device) for v in values if isinstance(v, torch.Tensor))
    return _Point(names, cast, checked, keyword, device)


def _cast(torch: Any, v: Any, dtype: Any) -> Any:
    """A private detached copy of a floating tensor in ``dtype``; anything else as given."""
    if isinstance(v, torch.Tensor) and v.is_floating_point():
        return v.detach().to(dtype).clone()
    return v


@dataclass(frozen=True)
class _Runs:
    """torch's runs of the comparison (``_reference_compare.Runs``) at ``point``, whose
    floating inputs are in ``dtype``.
    """

    fw: Torch
    point: _Point
    dtype: Any

    def _wide(self) -> _Point:
        float64 = self.fw.torch.float64
        return replace(
            self.point, values=[_cast(self.fw.torch, v, float64) for v in self.point.values]
        )

    def outputs(self, reference: Callable[..., Any]) -> dict:
        outs = self._outputs(_call(reference, self._wide(), None), "reference(*inputs)")
        for name, o in outs.items():
            if o.dtype != self.fw.torch.float64:
                raise ValueError(
                    f"`reference` must follow its inputs' dtype, but on float64 inputs its "
                    f"output {name} is {o.dtype}"
                )
        return outs

    def cotangent(self, given: Any, outputs: dict, seed: int) -> list:
        """The cotangent of each output, rounded to the dtype, on the outputs' device."""
        torch = self.fw.torch
        shapes = [tuple(o.shape) for o in outputs.values()]
        if given is None:
            arrays = _projection.draw_like(_projection.cotangent_rng(seed, 0), shapes)
        else:
            arrays = self.fw.cotangent(given, list(outputs.values()))
        return [
            torch.as_tensor(a, dtype=torch.float64, device=o.device).to(self.dtype)
            for a, o in zip(arrays, outputs.values(), strict=True)
        ]

    def side(self, f: Callable[..., Any], ct: list, *, wide: bool, reference: bool) -> Run:
        """``f`` at the point: its outputs and the vector-Jacobian product on ``ct``, as
        float64 numpy arrays. Where autograd gives no gradient, the kernel's is None (a rule
        judges it) and the reference's zeros (an input its output does not use).
        """
        torch = self.fw.torch
        point = self._wide() if wide else self.point
        ct = [c.double() for c in ct] if wide else ct
        index = {n: i for i, n in enumerate(point.names)}
        leaves = {n: point.values[index[n]].clone().requires_grad_(True) for n in point.checked}
        with torch.enable_grad():
            outs = self._outputs(_call(f, point, leaves), "the function")
            pairs = [(o, c) for o, c in zip(outs.values(), ct, strict=False) if o.requires_grad]
            grads = [None] * len(leaves)
            if pairs:
                results, cts = [o for o, _ in pairs], [c for _, c in pairs]
                grads = torch.autograd.grad(results, list(leaves.values()), cts, allow_unused=True)
        gradients = {}
        for (n, leaf), g in zip(leaves.items(), grads, strict=True):
            if g is None and reference:
                g = torch.zeros_like(leaf)
            gradients["d" + n] = None if g is None else self.numpy(g)
        return Run({n: self.numpy(o) for n, o in outs.items()}, gradients)

    def _outputs(self, out: Any, what: str) -> dict:
        """The floating tensors of ``out`` by name: ``out``, ``out[1]``, or the dict's keys."""
        tensor = self.fw.torch.Tensor
        if isinstance(out, tensor):
            items = {"out": out}
        elif isinstance(out, Mapping):
            items = {str(k): v for k, v in out.items()}
        elif isinstance(out, (tuple, list)):
            items = {f"out[{i}]": v for i, v in enumerate(out)}
        else:
            items = {}
        tensors = {k: v for k, v in items.items() if isinstance(v, tensor)}
        floating = {k: v for k, v in tensors.items() if v.is_floating_point()}
        if not floating:
            raise TypeError(
                f"`{what}` must return a floating tensor, or a tuple / list / dict of tensors, "
                f"got {type(out).__name__}: {short(out)}"
            )
        return floating

    def rounded(self, a: np.ndarray) -> np.ndarray:
        return self.fw.torch.from_numpy(a).to(self.dtype).double().numpy()

    def numpy(self, t: Any) -> np.ndarray:
        return t.detach().to(device="cpu").double().numpy()

    def inputs(self) -> Iterator[tuple[str, str]]:
        return ((name, name) for name in self.point.checked)

    def moved(self, where: str, rng: np.random.Generator) -> _Runs:
        """The runs with input ``where`` moved (signs and zeros kept)."""
        point = self.point
        i = point.names.index(where)
        x = point.values[i]
        factor = self.fw.torch.as_tensor(_lowprec_run.moved(rng, tuple(x.shape)), device=x.device)
        values = list(point.values)
        values[i] = (x.double() * factor).to(x.dtype)
        return replace(self, point=replace(point, values=values))

    def reference_check(
        self, reference: Callable[..., Any], outputs: dict, ct: list, seed: int, options: dict
    ) -> Report:
        """The reference's float64 gradient checked as :func:`gradcheck.torch.check` checks
        it, on the same cotangent.
        """
        truth, torch = self._wide(), self.fw.torch
        values = [
            v.clone().requires_grad_(n in truth.checked) if isinstance(v, torch.Tensor) else v
            for n, v in zip(truth.names, truth.values, strict=True)
        ]
        inputs = dict(zip(truth.names, values, strict=True)) if truth.keyword else tuple(values)
        cotangent = tuple(c.double() for c in ct)
        run = _frameworks.settings(
            time.perf_counter(),
            {**options, "seed": seed},
            evaluate="float64",
            projections=1,
            cotangent=cotangent if len(cotangent) > 1 else cotangent[0],
        )
        return _torch_modes.check_inputs(
            self.fw, reference, inputs, run, _modes.validate("auto", 1)
        )


def _call(f: Callable[..., Any], point: _Point, leaves: dict | None) -> Any:
    pairs = zip(point.names, point.values, strict=True)
    args = [leaves.get(n, v) if leaves else v for n, v in pairs]
    if point.keyword:
        return f(**dict(zip(point.names, args, strict=True)))
    return f(*args)
