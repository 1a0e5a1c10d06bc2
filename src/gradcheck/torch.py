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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from . import _frameworks, _modes, _torch_backend, _torch_modes
from ._frameworks import short
from ._report import Report
from ._torch_compare import assert_close_to_reference, compare

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
    fw = _torch_backend.Torch()
    started = time.perf_counter()
    if not callable(fn):
        raise TypeError(f"`fn` must be callable, got {type(fn).__name__}: {fn!r:.80}")
    asked = _modes.validate(modes, order)
    run = _frameworks.settings(
        started, options, evaluate=evaluate, projections=projections, cotangent=cotangent
    )
    return _torch_modes.check_inputs(fw, fn, inputs, run, asked)


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
    fw = _torch_backend.Torch()
    torch = fw.torch
    started = time.perf_counter()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(
            f"`module` must be a torch.nn.Module, got {type(module).__name__}: {short(module)}"
        )
    if loss is not None and not callable(loss):
        raise TypeError(f"`loss` must be callable or None, got {type(loss).__name__}: {loss!r:.80}")
    if loss is not None and (cotangent is not None or projections != 1):
        raise ValueError("`loss` makes the output scalar: it takes no `cotangent` or `projections`")
    asked = _modes.validate(modes, order)
    run = _frameworks.settings(
        started, options, evaluate=evaluate, projections=projections, cotangent=cotangent, loss=loss
    )
    inputs = fw.inputs(inputs)
    if isinstance(inputs, Mapping):
        args, kwargs = (), {k: fw.prepared(v, run.wide) for k, v in inputs.items()}
    else:
        args, kwargs = tuple(fw.prepared(v, run.wide) for v in inputs), {}
    named = dict(module.named_parameters())
    trained = [n for n, p in named.items() if p.requires_grad]
    if not trained:
        raise ValueError(
            f"`module` ({type(module).__name__}) has no parameter that requires grad: nothing "
            "to check"
        )

    with _kept(torch, module):
        point = {n: fw.prepared(named[n], run.wide) for n in trained}
        # Frozen parameters and buffers go in as private copies too: functional_call then
        # never touches the module's own tensors (batch norm updates its copies' statistics).
        fixed = {n: fw.prepared(p, run.wide) for n, p in named.items() if n not in point}
        fixed.update({n: fw.prepared(b, run.wide) for n, b in module.named_buffers()})
        functional_call = torch.func.functional_call
        plain = (fixed, args, kwargs)
        wide = fw.wide_copies(point, run, plain)

        def g(tensors):
            held, a, kw = wide if _torch_backend.widened(tensors, point) else plain
            return functional_call(module, {**held, **tensors}, a, kw)

        projection = _torch_backend.Projection(fw, g, point)
        return _torch_modes.run_modes(projection, run, asked, rule=False)


# --- the module's state, which check_module leaves as it found it -------------------------------


@contextmanager
def _kept(torch: Any, module: Any) -> Iterator[None]:
    """Put ``module`` back as it was on leaving, even when its forward raised."""
    saved = _save_module(torch, module)
    try:
        yield
    finally:
        _restore_module(torch, saved)


def _save_module(torch: Any, module: Any) -> dict:
    """What check_module must put back: parameter values, .grad, buffers, modes."""
    with torch.no_grad():
        return {
            "params": [
                (p, p.detach().clone(), p.grad, None if p.grad is None else p.grad.clone())
                for p in module.parameters()
            ],
            "buffers": [(b, b.detach().clone()) for b in module.buffers()],
            "modes": [(m, m.training) for m in module.modules()],
        }


def _restore_module(torch: Any, saved: dict) -> None:
    with torch.no_grad():
        for p, value, grad, grad_value in saved["params"]:
            if not _same(torch, p, value):
                p.copy_(value)
            p.grad = grad
            if grad is not None and not _same(torch, grad, grad_value):
                grad.copy_(grad_value)
        for b, value in saved["buffers"]:
            if not _same(torch, b, value):
                b.copy_(value)
    for m, training in saved["modes"]:
        m.training = training


def _same(torch: Any, a: Any, b: Any) -> bool:
    # Bitwise, so that NaN equals NaN and a restored value is the very same number.
    return (
        a.shape == b.shape
        and a.dtype == b.dtype
        and torch.equal(
            a.detach().reshape(-1).view(torch.uint8), b.detach().reshape(-1).view(torch.uint8)
        )
    )
