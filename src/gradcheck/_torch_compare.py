"""``gradcheck.torch.compare``: a low-precision kernel against a float64 reference.

torch is imported when a function here is called, never by ``import gradcheck``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import _frameworks, _lowprec, _lowprec_run, _modes, _projection, _torch_modes
from ._frameworks import short as _short
from ._lowprec import CompareReport
from ._lowprec_run import Pair, Run, Setting
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
    for label, f in (("fn", fn), ("reference", reference)):
        if not callable(f):
            raise TypeError(f"`{label}` must be callable, got {type(f).__name__}: {_short(f)}")
    dtype = torch.bfloat16 if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"`dtype` must be a floating torch.dtype, got {dtype!r}")
    factors = _lowprec.default_factor(factor)
    seed = _projection.resolve_seed(seed)
    for label, flag in (("check_reference", check_reference), ("dependence", dependence)):
        if not isinstance(flag, bool):
            raise TypeError(f"`{label}` must be True or False, got {flag!r}")
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
    asked = _Asked(cotangent, check_reference, dependence, options)
    return _compare(fw, Pair(fn, reference), point, setting, asked)


@dataclass(frozen=True)
class _Asked:
    """What the caller asked for beyond the point: the cotangent, the reference's check (and
    its options), the dependence runs.
    """

    cotangent: Any
    check_reference: bool
    dependence: bool
    options: dict


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


def _compare(
    fw: Torch, pair: Pair, point: _Point, setting: Setting, asked: _Asked
) -> CompareReport:
    """The three runs, the rules, the reference's check and the report."""
    torch = fw.torch
    dtype = point.values[point.names.index(point.checked[0])].dtype
    truth_point = replace(point, values=[_cast(torch, v, torch.float64) for v in point.values])
    outs = _outputs(torch, _call(pair.reference, truth_point, None), "reference(*inputs)")
    for name, o in outs.items():
        if o.dtype != torch.float64:
            raise ValueError(
                f"`reference` must follow its inputs' dtype, but on float64 inputs its output "
                f"{name} is {o.dtype}"
            )
    ct = _cotangent(fw, asked.cotangent, outs, setting.seed, dtype)
    truth = _side(torch, pair.reference, truth_point, [c.double() for c in ct], reference=True)
    baseline = _side(torch, pair.reference, point, ct, reference=True)
    codes = _lowprec_run.code_objects(pair.reference)
    with _lowprec_run.watching(codes) as called:
        kernel = _side(torch, pair.fn, point, ct)
    same = pair.fn is pair.reference
    kernel = replace(kernel, called_reference=called() or same)
    _same_layout(truth, kernel)
    gradients = _lowprec_run.reference_gradients(truth)
    rounded = Run(
        {n: _rounded(torch, a, dtype) for n, a in truth.outputs.items()},
        {n: _rounded(torch, a, dtype) for n, a in gradients.items()},
    )
    blocks, sides = _lowprec_run.measured(setting, truth, baseline, kernel, rounded)
    if asked.dependence:
        rng = _lowprec_run.depend_rng(setting.seed)
        for name in point.checked:
            moved = _moved(torch, pair, point, name, ct, rng)
            blocks = _lowprec_run.depend(blocks, name, truth, kernel, *moved)
    checked = _reference_check(fw, pair.reference, truth_point, ct, setting, asked)
    cotangent = [c.double().cpu().numpy() for c in ct]
    return _lowprec_run.report(setting, blocks, sides, checked, cotangent)


def _point(fw: Torch, fn, reference, inputs, dtype) -> _Point:
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


def _cast(torch, v: Any, dtype) -> Any:
    """A private detached copy of a floating tensor in ``dtype``; anything else as given."""
    if isinstance(v, torch.Tensor) and v.is_floating_point():
        return v.detach().to(dtype).clone()
    return v


def _call(f, point: _Point, leaves: dict | None):
    pairs = zip(point.names, point.values, strict=True)
    args = [leaves.get(n, v) if leaves else v for n, v in pairs]
    if point.keyword:
        return f(**dict(zip(point.names, args, strict=True)))
    return f(*args)


def _side(torch, f, point: _Point, ct: list, *, reference: bool = False) -> Run:
    """``f`` at ``point``: its outputs and the vector-Jacobian product on ``ct``, as float64
    numpy arrays. Where autograd gives no gradient, the kernel's is None (a rule judges
    it) and the reference's zeros (an input its output does not use).
    """
    index = {n: i for i, n in enumerate(point.names)}
    leaves = {n: point.values[index[n]].clone().requires_grad_(True) for n in point.checked}
    with torch.enable_grad():
        outs = _outputs(torch, _call(f, point, leaves), "the function")
        pairs = [(o, c) for o, c in zip(outs.values(), ct, strict=False) if o.requires_grad]
        grads = [None] * len(leaves)
        if pairs:
            results, cts = [o for o, _ in pairs], [c for _, c in pairs]
            grads = torch.autograd.grad(results, list(leaves.values()), cts, allow_unused=True)
    gradients = {}
    for (n, leaf), g in zip(leaves.items(), grads, strict=True):
        if g is None and reference:
            g = torch.zeros_like(leaf)
        gradients["d" + n] = None if g is None else _numpy(g)
    return Run({n: _numpy(o) for n, o in outs.items()}, gradients)


def _outputs(torch, out: Any, what: str) -> dict:
    """The floating tensors of ``out`` by name: ``out``, ``out[1]``, or the dict's keys."""
    if isinstance(out, torch.Tensor):
        items = {"out": out}
    elif isinstance(out, Mapping):
        items = {str(k): v for k, v in out.items()}
    elif isinstance(out, (tuple, list)):
        items = {f"out[{i}]": v for i, v in enumerate(out)}
    else:
        items = {}
    tensors = {k: v for k, v in items.items() if isinstance(v, torch.Tensor)}
    floating = {k: v for k, v in tensors.items() if v.is_floating_point()}
    if not floating:
        raise TypeError(
            f"`{what}` must return a floating tensor, or a tuple / list / dict of tensors, got "
            f"{type(out).__name__}: {_short(out)}"
        )
    return floating


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


def _cotangent(fw: Torch, given, outs: dict, seed: int, dtype) -> list:
    """The cotangent of each output, rounded to ``dtype``, on the outputs' device."""
    torch = fw.torch
    shapes = [tuple(o.shape) for o in outs.values()]
    if given is None:
        arrays = _projection.draw_like(_projection.cotangent_rng(seed, 0), shapes)
    else:
        arrays = fw.cotangent(given, list(outs.values()))
    return [
        torch.as_tensor(a, dtype=torch.float64, device=o.device).to(dtype)
        for a, o in zip(arrays, outs.values(), strict=True)
    ]


def _rounded(torch, a: np.ndarray, dtype) -> np.ndarray:
    return torch.from_numpy(a).to(dtype).double().numpy()


def _numpy(t) -> np.ndarray:
    return t.detach().to(device="cpu").double().numpy()


def _moved(torch, pair: Pair, point: _Point, name: str, ct, rng) -> tuple[Run, Run]:
    """The truth and the kernel with input ``name`` moved (signs and zeros kept)."""
    i = point.names.index(name)
    x = point.values[i]
    factor = torch.as_tensor(_lowprec_run.moved(rng, tuple(x.shape)), device=x.device)
    values = list(point.values)
    values[i] = (x.double() * factor).to(x.dtype)
    there = replace(point, values=values)
    wide = replace(there, values=[_cast(torch, v, torch.float64) for v in values])
    truth = _side(torch, pair.reference, wide, [c.double() for c in ct], reference=True)
    return truth, _side(torch, pair.fn, there, ct)


def _reference_check(fw: Torch, reference, truth_point: _Point, ct, setting: Setting, asked):
    """The reference's float64 gradient checked by finite differences, or None: as
    :func:`gradcheck.torch.check` checks it.
    """
    if not asked.check_reference:
        return None
    torch = fw.torch
    values = [
        v.clone().requires_grad_(n in truth_point.checked) if isinstance(v, torch.Tensor) else v
        for n, v in zip(truth_point.names, truth_point.values, strict=True)
    ]
    pairs = zip(values, truth_point.names, strict=True)
    n = sum(v.numel() for v, name in pairs if name in truth_point.checked)
    options = _lowprec_run.reference_options(n, asked.options)
    inputs = dict(zip(truth_point.names, values, strict=True)) if truth_point.keyword else values
    cotangent = tuple(c.double() for c in ct)
    run = _frameworks.settings(
        time.perf_counter(),
        {**options, "seed": setting.seed},
        evaluate="float64",
        projections=1,
        cotangent=cotangent if len(cotangent) > 1 else cotangent[0],
    )
    given = inputs if truth_point.keyword else tuple(inputs)
    return _torch_modes.check_inputs(fw, reference, given, run, _modes.validate("auto", 1))
