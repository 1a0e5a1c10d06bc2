"""The torch adapter's modes and orders (see ``_modes``): forward mode through torch's
forward AD (a Function's ``jvp`` is what is tested), the adjoint identity between the two
rules, and order 2, the reverse derivative of the function's own VJP (double backward).

torch is passed in, never imported here.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import replace
from typing import Any

import numpy as np

from . import _frameworks, _jvp, _modes, _options, _vjp
from ._report import Report


def forward_rule(torch, fn: Any) -> bool:
    """Whether ``fn`` is a custom Function's ``apply`` whose class defines ``jvp``."""
    owner = getattr(fn, "__self__", None)
    return (
        isinstance(owner, type)
        and issubclass(owner, torch.autograd.Function)
        and getattr(fn, "__name__", "") == "apply"
        # torch comes in as a value, so no type says owner is a Function: look jvp up by name
        and getattr(owner, "jvp", None) is not torch.autograd.Function.jvp
    )


def run(torch, g, point: dict, settings, modes: _modes.Modes, *, rule: bool) -> Report:
    """The check of ``g`` at ``point`` in the modes asked for, as one report; ``rule``:
    the function defines a forward rule of its own.
    """
    from . import torch as adapter

    chosen = _modes.resolve(modes, rule)
    if modes.order == 2:
        g = second_order(torch, g, point, settings)
        # The outer projection is of the VJP's output (the inputs' gradients): drawn, and
        # evaluated point by point (vmap does not run autograd.grad inside).
        batched = False if settings.batched is None else settings.batched
        settings = replace(settings, loss=None, cotangent=None, batched=batched)
    parts: dict[str, Report] = {}
    if "rev" in chosen:
        parts["rev"] = adapter._run(torch, g, point, settings)
    fwd = forward(torch, g, point, settings) if "fwd" in chosen else None
    if fwd is not None:
        parts["fwd"] = fwd
    adjoint = None
    if "rev" in parts and fwd is not None:
        adjoint = identity(torch, g, point, settings, fwd)
    return _modes.combine(parts, adjoint, modes.order)


def _outputs(torch, settings, y) -> list:
    from . import torch as adapter

    if settings.loss is not None:
        return [settings.loss(y).reshape(())]
    return adapter._outputs(torch, y, "fn(*inputs)")


def _tensors(torch, point: dict):
    """The numpy structures as tensors on the point's devices and dtypes."""
    where = {n: (t.device, t.dtype) for n, t in point.items()}

    def tensors(struct):
        return {
            n: torch.as_tensor(np.asarray(struct[n])).to(device=d, dtype=dt)
            for n, (d, dt) in where.items()
        }

    return tensors


def _forward_ad(torch):
    """``torch.autograd.forward_ad``, its decompositions loaded.

    torch loads them on the first dual tensor, through ``torch.jit.script``, which recent
    versions deprecate with a warning at every first use: a warning about torch's own
    internals, which a test suite that treats warnings as errors would fail on. They are
    loaded here once, that one warning silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
        importlib.import_module("torch._decomp.decompositions_for_jvp")
    return torch.autograd.forward_ad


def forward(torch, g, point: dict, settings) -> _jvp.TangentReport:
    """:func:`gradcheck.check_jvp` of ``g``, the analytic side by torch's forward AD."""
    fw = _forward_ad(torch)
    tensors = _tensors(torch, point)
    params = {n: t.detach().cpu().numpy().copy() for n, t in point.items()}

    def f(struct):
        with torch.no_grad():
            return tuple(_numpy(o) for o in _outputs(torch, settings, g(tensors(struct))))

    def jvp(struct, tangent):
        with fw.dual_level():
            primal, tan = tensors(struct), tensors(tangent)
            duals = {n: fw.make_dual(primal[n], tan[n]) for n in primal}
            ys = _outputs(torch, settings, g(duals))
            found = [fw.unpack_dual(y).tangent for y in ys]
            return tuple(
                np.zeros(tuple(y.shape)) if t is None else _numpy(t)
                for y, t in zip(ys, found, strict=True)
            )

    options = {"workers": 1, **_options.keywords(settings.options), "seed": settings.seed}
    return _jvp._forward(f, params, jvp, None, options, _jvp._JVP)


def identity(torch, g, point: dict, settings, fwd: _jvp.TangentReport):
    """The adjoint identity ``<J t, c> = <t, J^T c>`` on the forward check's tangent and
    cotangent: the forward rule on one side, the reverse rule on the other.
    """
    fw = _forward_ad(torch)
    tangent = {n: torch.as_tensor(np.asarray(v)) for n, v in fwd.tangent.items()}
    cotangent = [torch.as_tensor(np.asarray(c)) for c in fwd.cotangent]
    with fw.dual_level():
        duals = {
            n: fw.make_dual(t.detach().clone(), tangent[n].to(device=t.device, dtype=t.dtype))
            for n, t in point.items()
        }
        ys = _outputs(torch, settings, g(duals))
        found = [fw.unpack_dual(y).tangent for y in ys]
        forward_side = sum(
            float((t.detach().double().cpu() * c).sum())
            for t, c in zip(found, cotangent, strict=True)
            if t is not None
        )
    leaves = {n: t.detach().clone().requires_grad_(True) for n, t in point.items()}
    with torch.enable_grad():
        ys = _outputs(torch, settings, g(leaves))
        projection = sum(
            (y.double() * c.to(y.device)).sum() for y, c in zip(ys, cotangent, strict=True)
        )
        grads = torch.autograd.grad(projection, list(leaves.values()), allow_unused=True)
    reverse_side = sum(
        float((gr.detach().double().cpu() * tangent[n]).sum())
        for n, gr in zip(leaves, grads, strict=True)
        if gr is not None
    )
    dtype = np.dtype(np.float32) if ys[0].dtype == torch.float32 else np.dtype(np.float64)
    block, line = _modes.adjoint_block(forward_side, reverse_side, dtype)
    return block, line, (forward_side, reverse_side)


def second_order(torch, g, point: dict, settings):
    """The VJP of ``g`` as a function of the inputs, ``x -> J(x)^T c``, with ``c`` the
    user's cotangent or one drawn from the seed (or the gradient of the user's loss).

    Evaluated with grad enabled (the numeric side included); under an outer graph the
    backward is built with ``create_graph`` so that autograd can differentiate it: double
    backward. A gradient that does not depend on the inputs through autograd (a backward
    computed on a detached input) is kept in the graph as a constant, so that its second
    derivative reads as zero and the check shows where it is not.
    """
    from . import torch as adapter

    inner = None
    if settings.loss is None:
        with torch.no_grad():
            outs = adapter._outputs(torch, g(point), "fn(*inputs)")
        if settings.cotangent is not None:
            arrays = _frameworks.torch_cotangent(torch, settings.cotangent, outs)
        else:
            rng = _vjp.cotangent_rng(settings.seed, _modes.INNER_COTANGENT)
            arrays = _vjp.draw_like(rng, [tuple(o.shape) for o in outs])
        inner = [
            torch.as_tensor(a, dtype=o.dtype, device=o.device).double()
            for a, o in zip(arrays, outs, strict=True)
        ]

    def vjp_of_g(tensors):
        outer = torch.is_grad_enabled()
        with torch.enable_grad():
            xs = {
                n: t if t.requires_grad else t.detach().requires_grad_(True)
                for n, t in tensors.items()
            }
            y = g(xs)
            if inner is None:
                projection = settings.loss(y).reshape(()).double()
            else:
                ys = adapter._outputs(torch, y, "fn(*inputs)")
                projection = sum((o.double() * c).sum() for o, c in zip(ys, inner, strict=True))
            grads = torch.autograd.grad(
                projection, list(xs.values()), create_graph=outer, allow_unused=True
            )
        result = []
        for x, gr in zip(xs.values(), grads, strict=True):
            gr = torch.zeros_like(x) if gr is None else gr
            if outer and not gr.requires_grad:
                gr = gr + 0 * x  # constant in x as autograd sees it: its derivative is 0
            result.append(gr if outer else gr.detach())
        return tuple(result)

    return vjp_of_g


def _numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy()
