"""gradcheck for torch: check custom ``torch.autograd.Function`` s and ``nn.Module`` s.

The analytic side is torch's own autograd through your code, so your ``backward`` is what
is tested; the numeric side is gradcheck's finite differences of the same scalar
projection ``<cotangent, fn(*inputs)>``, evaluated under ``torch.no_grad()``, batched
through ``torch.func.vmap`` when your function allows it, on the inputs' own device.

torch is imported when one of these functions is called, never by ``import gradcheck``.

>>> import torch, gradcheck.torch
>>> x = torch.randn(5, dtype=torch.float64)
>>> gradcheck.torch.check(torch.sin, (x,), seed=0).verdict
'pass'
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from . import _frameworks, _modes, _torch_modes, _vjp
from ._frameworks import short as _short
from ._report import Report

__all__ = ["assert_close_to_reference", "check", "check_module", "compare"]


def check(
    fn: Callable[..., Any],
    inputs: Any,
    *,
    cotangent: Any = None,
    evaluate: str = "auto",
    projections: int = 1,
    modes: str | tuple[str, ...] = "auto",
    order: int = 1,
    **options: Any,
) -> Report:
    """Check the gradients torch's autograd computes through ``fn`` (your custom
    ``backward`` included) against finite differences.

    Parameters
    ----------
    fn : callable
        ``fn(*inputs)`` (or ``fn(**inputs)`` for a dict) returns a tensor of any shape, or a
        tuple / list of tensors (those of floating dtype are checked). A custom Function is
        passed as ``MyFunction.apply``.
    inputs : tensor, tuple / list of tensors and other values, or dict
        The point at which to check. Floating tensors with ``requires_grad`` are checked;
        when none has it, every floating tensor is. Other values are passed through
        unchanged. Blocks are named by the dict keys; for positional inputs, by ``fn``'s
        parameter names when ``inspect.signature`` can read them (a Function's
        ``forward``'s, for ``MyFunction.apply``), else ``input0``, ``input1``, ...
        Your tensors (and their ``.grad``) are never modified.
    cotangent : tensor or tuple of tensors, optional
        The direction ``c`` of the projection ``<c, fn(*inputs)>`` whose gradient is
        checked. Default: standard normal entries drawn from ``seed``.
    evaluate : {"auto", "native", "float64"}
        "auto" (default): float32 inputs' backward as given, the finite differences on
        float64 copies where ``fn`` follows their dtype (pass <= 1e-4, fail > 1e-3), else
        as "native": ``fn`` in the inputs' own dtype, float32 steps and
        thresholds (pass <= 1e-3, fail > 1e-2). "float64" runs both sides (your forward and
        your backward) on float64 copies, as torch's own docs recommend for gradient
        checks: a wrong formula then shows at float64's resolution (thresholds 1e-7 and
        1e-5). It needs ``fn`` to follow its inputs' dtype; a bug that exists only in
        float32 (an overflow, a hard-coded dtype) needs "native".
    projections : int
        How many random cotangents to check (when ``cotangent`` is None); the report is the
        worst.
    modes, order : str or sequence of str, and int
        ``modes`` "rev" (the ``backward``), "fwd" (a Function's ``jvp``, along a tangent per
        input: blocks ``"x (fwd)"``; with both, the adjoint identity, block ``"adjoint"``)
        or "auto" ("rev", plus "fwd" for a Function that defines ``jvp``); ``order=2``
        checks the VJP ``x -> J(x)^T c`` in reverse mode (double backward).
    **options
        Every option of :func:`gradcheck.check` (``seed``, ``tol``, ``sample``,
        ``directions``, ``method``, ...). ``batched``: None (default) evaluates the
        perturbed points in batches through ``torch.func.vmap`` when ``fn`` allows it (a
        custom Function needs ``setup_context`` and ``generate_vmap_rule = True``) and one
        by one otherwise; True requires vmap; False never uses it.

    Returns
    -------
    Report
        As :func:`gradcheck.check` returns, blocks named after the inputs, with
        ``report.cotangent`` (numpy arrays, the output's structure) for replay.

    Raises
    ------
    TypeError
        ``fn`` is not callable, ``inputs`` holds no floating tensor, or ``fn`` returns no
        tensor.
    ValueError
        A bad option, an output that autograd cannot differentiate (no ``grad_fn``),
        ``evaluate="float64"`` on a function that does not follow its inputs' dtype, or
        any error :func:`gradcheck.check` raises.

    Examples
    --------
    >>> import torch, gradcheck.torch
    >>> class Cube(torch.autograd.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x**3
    ...     @staticmethod
    ...     def backward(ctx, g):
    ...         (x,) = ctx.saved_tensors
    ...         return 2 * g * x**2          # a planted bug: 3, not 2
    >>> x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    >>> gradcheck.torch.check(Cube.apply, (x,), seed=0).failing
    ('x',)
    """
    torch = _torch()
    started = time.perf_counter()
    if not callable(fn):
        raise TypeError(f"`fn` must be callable, got {type(fn).__name__}: {fn!r:.80}")
    asked = _modes.validate(modes, order)
    run = _frameworks.settings(
        started, options, evaluate=evaluate, projections=projections, cotangent=cotangent
    )
    inputs = _inputs(torch, inputs)
    keyword = isinstance(inputs, Mapping)
    names = [str(k) for k in inputs] if keyword else _parameter_names(fn, len(inputs))
    values = list(inputs.values()) if keyword else list(inputs)
    checked = _checked(torch, names, values)
    # Private copies, detached: the user's tensors and their .grad are never touched.
    pairs = list(zip(names, values, strict=True))
    point = {n: _prepared(torch, v, run.wide) for n, v in pairs if n in checked}
    fixed = [_prepared(torch, v, run.wide) if n not in checked else None for n, v in pairs]
    # Held fixed, float64 copies go with the numeric side's float64 points ("auto").
    wide = _frameworks.wide_copies(torch, point, run, fixed, _prepared)

    def g(tensors):
        held = wide if _frameworks.widened(tensors, point) else fixed
        args = [tensors[n] if n in checked else c for n, c in zip(names, held, strict=True)]
        return fn(**dict(zip(names, args, strict=True))) if keyword else fn(*args)

    return _torch_modes.run(torch, g, point, run, asked, rule=_torch_modes.forward_rule(torch, fn))


def check_module(
    module: Any,
    inputs: Any,
    *,
    loss: Callable[[Any], Any] | None = None,
    cotangent: Any = None,
    evaluate: str = "auto",
    projections: int = 1,
    modes: str | tuple[str, ...] = "auto",
    order: int = 1,
    **options: Any,
) -> Report:
    """Check the gradients of an ``nn.Module`` 's parameters that autograd computes through
    its forward (custom Functions inside it included) against finite differences.

    Parameters
    ----------
    module : torch.nn.Module
        The module; its parameters that require grad are checked, one block each, named as
        ``named_parameters()`` names them (``"0.weight"``, ``"encoder.fc1.bias"``). It is
        run in the mode it is in (call ``module.eval()`` first when dropout would make it
        random); it is called through ``torch.func.functional_call`` with private copies
        of its parameters and buffers.
    inputs : tensor, tuple / list, or dict
        ``module(*inputs)`` (or ``module(**inputs)``); held fixed.
    loss : callable, optional
        ``loss(module(*inputs))`` returns the scalar whose gradient is checked (a 0-d
        tensor). Default: a random projection ``<cotangent, module(*inputs)>``.
    cotangent : tensor or tuple of tensors, optional
        The projection's direction when ``loss`` is None; default drawn from ``seed``.
    evaluate : {"auto", "native", "float64"}
        As for :func:`check`, the copies being of the parameters, buffers and inputs.
    projections : int
        How many random cotangents to check (``loss`` and ``cotangent`` None).
    modes, order : as for :func:`check` ("auto" is "rev": a module has no forward rule).
    **options
        Every option of :func:`gradcheck.check`; ``batched`` as for :func:`check`.

    Returns
    -------
    Report
        Blocks named by the parameters' names; ``report.cotangent`` records the projection.

    Raises
    ------
    TypeError
        ``module`` is not an ``nn.Module`` or ``loss`` is not callable.
    ValueError
        The module has no parameter that requires grad, ``loss`` with ``cotangent``, or
        as for :func:`check`.

    Notes
    -----
    The module is left as it was, even when its forward raises: its parameters' values,
    their ``.grad``, its buffers (batch-norm running statistics) and every submodule's
    ``training`` flag.

    Examples
    --------
    >>> import torch, gradcheck.torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh()).double()
    >>> report = gradcheck.torch.check_module(net, torch.randn(2, 3, dtype=torch.float64))
    >>> list(report.blocks), report.verdict
    (['0.weight', '0.bias'], 'pass')
    """
    torch = _torch()
    started = time.perf_counter()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(
            f"`module` must be a torch.nn.Module, got {type(module).__name__}: {_short(module)}"
        )
    if loss is not None and not callable(loss):
        raise TypeError(f"`loss` must be callable or None, got {type(loss).__name__}: {loss!r:.80}")
    if loss is not None and (cotangent is not None or projections != 1):
        raise ValueError("`loss` makes the output scalar: it takes no `cotangent` or `projections`")
    asked = _modes.validate(modes, order)
    run = _frameworks.settings(
        started, options, evaluate=evaluate, projections=projections, cotangent=cotangent, loss=loss
    )
    inputs = _inputs(torch, inputs)
    if isinstance(inputs, Mapping):
        args, kwargs = (), {k: _prepared(torch, v, run.wide) for k, v in inputs.items()}
    else:
        args, kwargs = tuple(_prepared(torch, v, run.wide) for v in inputs), {}
    named = dict(module.named_parameters())
    trained = [n for n, p in named.items() if p.requires_grad]
    if not trained:
        raise ValueError(
            f"`module` ({type(module).__name__}) has no parameter that requires grad: nothing "
            "to check"
        )

    with _frameworks.module_kept(torch, module):
        point = {n: _prepared(torch, named[n], run.wide) for n in trained}
        # Frozen parameters and buffers go in as private copies too: functional_call then
        # never touches the module's own tensors (batch norm updates its copies' statistics).
        fixed = {n: _prepared(torch, p, run.wide) for n, p in named.items() if n not in point}
        fixed.update({n: _prepared(torch, b, run.wide) for n, b in module.named_buffers()})
        functional_call = torch.func.functional_call
        plain = (fixed, args, kwargs)
        wide = _frameworks.wide_copies(torch, point, run, plain, _prepared)

        def g(tensors):
            held, a, kw = wide if _frameworks.widened(tensors, point) else plain
            return functional_call(module, {**held, **tensors}, a, kw)

        return _torch_modes.run(torch, g, point, run, asked, rule=False)


# --- the shared core: a function of named tensors, checked through a projection --------------


@dataclass(frozen=True)
class _Traced:
    """The first call through autograd: what every projection of one check shares."""

    g: Callable[[dict], Any]  # the function of the named checked tensors
    point: dict  # the checked tensors (private copies)
    params: dict  # ... as numpy arrays: the point gradcheck.check differences at
    leaves: dict  # clones of ``point`` that require grad, for the analytic side
    out: Any  # g(leaves)
    outs: list  # its floating tensors
    float32: bool  # the loss gradcheck.check sees is float32
    follows: bool = False  # on float64 copies of the float32 point, g computes in float64


def _run(torch, g, point, run) -> Report:
    """Check ``g(point)``'s projection: the analytic side by autograd, the numeric side by
    ``gradcheck.check`` on numpy copies of ``point``.
    """
    traced = _trace(torch, g, point, run)
    shapes = [tuple(o.shape) for o in traced.outs]
    given = partial(_frameworks.torch_cotangent, torch, run.cotangent, traced.outs)
    cotangents = _frameworks.cotangents(run, shapes, given)

    def record(ct):
        if ct is None:
            return None
        return ct[0] if isinstance(traced.out, torch.Tensor) else tuple(ct)

    one = partial(_projection, torch, traced, run)
    return _vjp.worst_of(one, cotangents, run.started, drawn=run.drawn, record=record)


def _trace(torch, g, point, run) -> _Traced:
    """Call ``g`` once through autograd, refusing outputs the check cannot project."""
    _frameworks.validate_tensor_dtypes(torch, point)
    leaves = {n: t.clone().requires_grad_(True) for n, t in point.items()}
    with torch.enable_grad():
        out = g(leaves)
    outs = _outputs(torch, out, "fn(*inputs)" if run.loss is None else "module(*inputs)")
    if run.wide:
        _frameworks.require_float64((str(o.dtype) for o in outs), str(torch.float64))
    if run.loss is None:
        float32 = all(o.dtype != torch.float64 for o in outs)
    else:
        scalar = run.loss(out)
        if not isinstance(scalar, torch.Tensor) or scalar.numel() != 1:
            raise TypeError(
                f"`loss` must return a one-element tensor, got {type(scalar).__name__}: "
                f"{_short(scalar)}"
            )
        float32 = scalar.dtype != torch.float64
    params = {n: _numpy(t) for n, t in point.items()}
    follows = _frameworks.follows(torch, g, point, run, _outputs)
    return _Traced(g, point, params, leaves, out, outs, float32, follows)


def _projection(torch, traced: _Traced, run, ct) -> Report:
    """The check of one projection: on cotangent ``ct``, or through ``run.loss`` (None)."""
    cts = None
    if ct is not None:
        # Rounded to the output's dtype, as autograd hands it to the backward, then
        # widened: both sides project on the very same numbers.
        cts = [
            torch.as_tensor(c, dtype=o.dtype, device=o.device).double()
            for c, o in zip(ct, traced.outs, strict=True)
        ]

    def project(y):
        if cts is None:
            return run.loss(y).reshape(()).double()
        total = 0.0
        for o, c in zip(_outputs(torch, y, "fn(*inputs)"), cts, strict=True):
            # float64 accumulation of <c, y>, whatever the output's dtype.
            total = total + (o.double() * c).sum()
        return total

    leaves = traced.leaves
    with torch.enable_grad():
        value = project(traced.g(leaves))
    if not value.requires_grad:
        raise ValueError(
            "the output does not depend on the checked inputs through autograd (it has "
            "no grad_fn): does the function detach, call .numpy() or run under no_grad?"
        )
    grads = torch.autograd.grad(value, list(leaves.values()), allow_unused=True)
    analytic = {
        # An input the output does not use has a zero gradient (autograd says None).
        n: _numpy(torch.zeros_like(t) if gr is None else gr)
        for (n, t), gr in zip(leaves.items(), grads, strict=True)
    }
    if cts is None:
        scale = abs(float(value.detach()))
    else:
        pairs = zip(traced.outs, cts, strict=True)
        scale = float(sum((o.detach().double().abs() * c.abs()).sum() for o, c in pairs))
    numeric = _numeric(torch, traced, project, scale, run.batched)
    return _frameworks.check_numeric(numeric, traced.params, analytic, run)


def _numeric(torch, traced: _Traced, project, scale: float, batched: bool | None):
    """The numpy loss ``gradcheck.check`` differences: ``(f, batched, note)``.

    A vmapped ``f`` evaluating stacks of points is tried once on two rows and kept when it
    runs and agrees with the one-point ``f``; otherwise the points are evaluated one by one
    and ``note`` says why.
    """
    g, params = traced.g, traced.params
    where = {n: (t.device, t.dtype) for n, t in traced.point.items()}
    # float64 values where g follows its inputs' dtype: gradcheck.check then widens.
    loss_dtype = np.float32 if traced.float32 and not traced.follows else np.float64

    def tensors(struct):
        # On the inputs' own device and dtype (or float64, where g follows it); on the CPU
        # in the same dtype, views of check's buffer (so a write to its input is caught).
        return {
            n: torch.from_numpy(struct[n]).to(device=d, dtype=None if traced.follows else dt)
            for n, (d, dt) in where.items()
        }

    def one(struct):
        with torch.no_grad():
            return loss_dtype(project(g(tensors(struct))).item())

    vmapped = torch.func.vmap(lambda t: project(g(t)))

    def call(part):
        with torch.no_grad():
            return vmapped(tensors(part)).double().cpu().numpy()

    rows = _frameworks.vmap_rows(params, sum(o.numel() for o in traced.outs))
    return _frameworks.vmap_or_loop(
        one,
        _frameworks.stacked(call, rows, loss_dtype),
        params,
        lambda: float(one(params)),
        batched=batched,
        tol=_frameworks.agreement(loss_dtype, scale),
        refusal=_refusal,
    )


def _refusal(exc, got, want) -> _frameworks.Refusal:
    if exc is not None:
        return _frameworks.refused("torch.func.vmap", "run", _frameworks.why(exc), exc)
    why = f"torch.func.vmap gave {float(got[0])!r} at the inputs, one call {want!r}"
    return _frameworks.Refusal(why, why)


# --- helpers ----------------------------------------------------------------------------------


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - the tests run with torch installed
        raise ImportError("gradcheck.torch needs PyTorch: pip install 'gradcheck[torch]'") from exc
    return torch


def _inputs(torch, inputs: Any) -> Any:
    """``inputs`` as a dict or a tuple / list of inputs (a lone tensor: a 1-tuple)."""
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    if isinstance(inputs, (Mapping, tuple, list)):
        return inputs
    raise TypeError(
        "`inputs` must be a tensor, a tuple / list of inputs or a dict, got "
        f"{type(inputs).__name__}: {_short(inputs)}"
    )


def _parameter_names(fn: Any, count: int) -> list[str]:
    """The names of ``fn``'s first ``count`` positional parameters, else input0, input1, ..."""
    torch = _torch()
    target, skip = fn, 0
    owner = getattr(fn, "__self__", None)
    if (
        isinstance(owner, type)
        and issubclass(owner, torch.autograd.Function)
        and getattr(fn, "__name__", "") == "apply"
    ):
        # MyFunction.apply(*args): forward's names, less ctx unless setup_context takes it.
        function: Any = owner  # a torch.autograd.Function subclass
        target = function.forward
        skip = int(function.setup_context is torch.autograd.Function.setup_context)
    elif isinstance(fn, torch.nn.Module):
        target = fn.forward
    return _frameworks.parameter_names(target, count, skip=skip)


def _checked(torch, names: list[str], values: list) -> list[str]:
    """The inputs to check: floating tensors with requires_grad, or all floating tensors."""
    floating = [n for n, v in zip(names, values, strict=True) if _floating(torch, v)]
    for n, v in zip(names, values, strict=True):
        if isinstance(v, torch.Tensor) and v.is_complex() and v.requires_grad:
            raise TypeError(
                f"input `{n}` is complex: gradcheck checks real inputs; pass the real and "
                "imaginary parts as separate tensors"
            )
    if not floating:
        raise TypeError(
            "`inputs` holds no floating-point tensor to check; got "
            + ", ".join(f"{n}: {type(v).__name__}" for n, v in zip(names, values, strict=True))
        )
    wanted = [n for n, v in zip(names, values, strict=True) if n in floating and v.requires_grad]
    return wanted or floating


def _floating(torch, v: Any) -> bool:
    return isinstance(v, torch.Tensor) and v.is_floating_point()


def _prepared(torch, v: Any, wide: bool) -> Any:
    """A private, detached copy of a tensor (float64 when ``wide`` and floating)."""
    if not isinstance(v, torch.Tensor):
        return v
    t = v.detach()
    if wide and t.is_floating_point():
        t = t.to(torch.float64)
    return t.clone()


def _outputs(torch, out: Any, what: str) -> list:
    """The floating tensors of ``out`` (a tensor, or a tuple / list of them)."""
    items = [out] if isinstance(out, torch.Tensor) else out
    if isinstance(items, (tuple, list)):
        tensors = [o for o in items if isinstance(o, torch.Tensor) and o.is_floating_point()]
        if tensors:
            return tensors
    raise TypeError(
        f"`{what}` must return a floating tensor or a tuple of tensors, got "
        f"{type(out).__name__}: {_short(out)}"
    )


def _numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy()


# The low-precision comparison lives in its own module; it is part of this adapter's face.
from ._torch_compare import assert_close_to_reference, compare  # noqa: E402
