"""The torch adapter's modes and orders (see ``_modes``): forward mode through torch's
forward AD (a Function's ``jvp`` is what is tested), the adjoint identity between the two
rules, and order 2, the reverse derivative of the function's own VJP (double backward);
and :func:`check_inputs`, a function of its inputs checked in the modes asked for.

torch comes in held by a ``_torch_backend.Torch``, never imported here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from . import _jvp, _modes, _options, _projection
from ._projection import Run
from ._report import Report
from ._torch_backend import Projection, Torch, numpy


def check_inputs(
    fw: Torch, fn: Callable[..., Any], inputs: Any, run: Run, asked: _modes.Modes
) -> Report:
    """``fn(*inputs)`` (or ``fn(**inputs)``) checked at ``inputs`` in the modes ``asked``:
    :func:`gradcheck.torch.check` once its arguments are validated, and the check of a
    low-precision comparison's reference.
    """
    projection = Projection.of_function(fw, fn, inputs, run)
    return run_modes(projection, run, asked, rule=fw.forward_rule(fn))


def run_modes(p: Projection, settings: Run, modes: _modes.Modes, *, rule: bool) -> Report:
    """The check of ``p.g`` at ``p.point`` in the modes asked for, as one report; ``rule``:
    the function defines a forward rule of its own.
    """
    chosen = _modes.resolve(modes, rule)
    if modes.order == 2:
        p = replace(p, g=second_order(p, settings))
        # The outer projection is of the VJP's output (the inputs' gradients): drawn, and
        # evaluated point by point (vmap does not run autograd.grad inside).
        batched = False if settings.batched is None else settings.batched
        settings = replace(settings, loss=None, cotangent=None, batched=batched)
    return _modes.run(
        chosen,
        modes.order,
        lambda: _projection.check(p, settings),
        lambda: forward(p, settings),
        lambda fwd: identity(p, settings, fwd),
    )


def _outputs(fw: Torch, settings: Run, y: Any) -> list:
    if settings.loss is not None:
        return [settings.loss(y).reshape(())]
    return fw.outputs(y, "fn(*inputs)")


def _tensors(fw: Torch, point: dict) -> Callable[[Any], dict]:
    """The numpy structures as tensors on the point's devices and dtypes."""
    where = {n: (t.device, t.dtype) for n, t in point.items()}
    torch = fw.torch

    def tensors(struct):
        return {
            n: torch.as_tensor(np.asarray(struct[n])).to(device=d, dtype=dt)
            for n, (d, dt) in where.items()
        }

    return tensors


def forward(p: Projection, settings: Run) -> _jvp.TangentReport:
    """:func:`gradcheck.check_jvp` of ``p.g``, the analytic side by torch's forward AD."""
    torch, g = p.fw.torch, p.g
    ad = p.fw.forward_ad()
    tensors = _tensors(p.fw, p.point)
    params = {n: t.detach().cpu().numpy().copy() for n, t in p.point.items()}

    def f(struct):
        with torch.no_grad():
            return tuple(numpy(o) for o in _outputs(p.fw, settings, g(tensors(struct))))

    def jvp(struct, tangent):
        with ad.dual_level():
            primal, tan = tensors(struct), tensors(tangent)
            duals = {n: ad.make_dual(primal[n], tan[n]) for n in primal}
            ys = _outputs(p.fw, settings, g(duals))
            found = [ad.unpack_dual(y).tangent for y in ys]
            return tuple(
                np.zeros(tuple(y.shape)) if t is None else numpy(t)
                for y, t in zip(ys, found, strict=True)
            )

    options = {"workers": 1, **_options.keywords(settings.options), "seed": settings.seed}
    return _jvp._forward(f, params, jvp, None, options, _jvp._JVP)


def identity(p: Projection, settings: Run, fwd: _jvp.TangentReport) -> _modes.Adjoint:
    """The adjoint identity ``<J t, c> = <t, J^T c>`` on the forward check's tangent and
    cotangent: the forward rule on one side, the reverse rule on the other.
    """
    torch, g, point = p.fw.torch, p.g, p.point
    ad = p.fw.forward_ad()
    tangent = {n: torch.as_tensor(np.asarray(v)) for n, v in fwd.tangent.items()}
    cotangent = [torch.as_tensor(np.asarray(c)) for c in fwd.cotangent]
    with ad.dual_level():
        duals = {
            n: ad.make_dual(t.detach().clone(), tangent[n].to(device=t.device, dtype=t.dtype))
            for n, t in point.items()
        }
        ys = _outputs(p.fw, settings, g(duals))
        found = [ad.unpack_dual(y).tangent for y in ys]
        forward_side = sum(
            float((t.detach().double().cpu() * c).sum())
            for t, c in zip(found, cotangent, strict=True)
            if t is not None
        )
    leaves = {n: t.detach().clone().requires_grad_(True) for n, t in point.items()}
    with torch.enable_grad():
        ys = _outputs(p.fw, settings, g(leaves))
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


def second_order(p: Projection, settings: Run) -> Callable[[dict], tuple]:
    """The VJP of ``g`` as a function of the inputs, ``x -> J(x)^T c``, with ``c`` the
    user's cotangent or one drawn from the seed (or the gradient of the user's loss).

    Evaluated with grad enabled (the numeric side included); under an outer graph the
    backward is built with ``create_graph`` so that autograd can differentiate it: double
    backward. A gradient that does not depend on the inputs through autograd (a backward
    computed on a detached input) is kept in the graph as a constant, so that its second
    derivative reads as zero and the check shows where it is not.
    """
    torch, g, fw, loss = p.fw.torch, p.g, p.fw, settings.loss
    inner = None
    if loss is None:
        with torch.no_grad():
            outs = fw.outputs(g(p.point), "fn(*inputs)")
        if settings.cotangent is not None:
            arrays = fw.cotangent(settings.cotangent, outs)
        else:
            rng = _projection.cotangent_rng(settings.seed, _modes.INNER_COTANGENT)
            arrays = _projection.draw_like(rng, [tuple(o.shape) for o in outs])
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
            if loss is not None:
                projection = loss(y).reshape(()).double()
            else:
                ys = fw.outputs(y, "fn(*inputs)")
                pairs = zip(ys, inner or (), strict=True)
                projection = sum((o.double() * c).sum() for o, c in pairs)
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
