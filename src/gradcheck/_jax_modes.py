"""The jax adapter's modes and orders (see ``_modes``): forward mode through ``jax.jvp`` (a
``custom_jvp`` rule is what is tested), the adjoint identity between ``jax.jvp`` and
``jax.vjp``, and order 2, the reverse derivative of the function's own projected VJP
(``jax.grad`` of it, through a ``custom_vjp``'s backward); and :func:`check_args`, a
function of its arguments checked in the modes asked for.

jax comes in held by a ``_jax_backend.Jax``, never imported here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from . import _jvp, _modes, _options, _projection
from ._jax_backend import Args, Jax, Projection
from ._projection import Run
from ._report import Report

# The primitive a custom_jvp function becomes in a jaxpr.
CUSTOM_JVP = "custom_jvp_call"


def check_args(
    fw: Jax,
    fn: Callable[..., Any],
    args: Any,
    run: Run,
    asked: _modes.Modes,
    argnums: Callable[[int], set[int]] | None = None,
) -> Report:
    """``fn(*args)`` (or ``fn(**args)``) checked at ``args`` in the modes ``asked``:
    :func:`gradcheck.jax.check` once its arguments are validated (``argnums(count)``: the
    positions to check, validated; None: all), and the check of a low-precision
    comparison's reference.
    """
    flat = Args.of(fw, fn, args, argnums)
    # A float64 input turns 64-bit jax on for the check, so that jax does not round it.
    run = replace(run, wide=run.wide or np.dtype(np.float64) in flat.dtypes())
    with fw.x64() if run.wide else contextlib.nullcontext():
        projection = Projection.at(fw, flat, run.wide)
        return run_modes(projection, run, asked)


def run_modes(p: Projection, settings: Run, modes: _modes.Modes) -> Report:
    """The check of ``p.args.fn`` in the modes asked for, as one report."""
    point = p.put(p.point)
    # Only "auto" at order 1 asks whether there is a forward rule (finding out traces fn).
    wanted = modes.modes == "auto" and modes.order == 1
    chosen = _modes.resolve(modes, wanted and _detected(p, point))
    if modes.order == 2:
        p = replace(p, args=replace(p.args, fn=_vjp_function(p, point, settings)))
        settings = replace(settings, cotangent=None)
    return _modes.run(
        chosen,
        modes.order,
        lambda: _projection.check(p, settings),
        lambda: forward(p, settings),
        lambda fwd: identity(p, p.put(p.point), fwd),
    )


# Whether a function calls a custom_jvp rule, per function, argument structure and shapes:
# finding out traces the function, which a later check of the same function and shapes need
# not do again (the projections it compiles are reused the same way, see
# _jax_backend.Projection).
_DETECTED: dict = {}
_DETECTED_MOST = 32


def _detected(p: Projection, point: dict) -> bool:
    """``_has_custom_jvp``, remembered for the same function, structure and shapes."""
    held, statics = p.held()
    if statics is None:  # unhashable static leaves: this check's own, not remembered
        return _has_custom_jvp(p, point)
    shapes: tuple = tuple((n, tuple(a.shape), str(a.dtype)) for n, a in sorted(point.items()))
    shapes += tuple((tuple(np.shape(a)), str(a.dtype)) for a in held)
    key = (*p.args.key(), statics, shapes)
    if key not in _DETECTED:
        while len(_DETECTED) >= _DETECTED_MOST:
            _DETECTED.pop(next(iter(_DETECTED)))
        _DETECTED[key] = _has_custom_jvp(p, point)
    return _DETECTED[key]


def _has_custom_jvp(p: Projection, point: dict) -> bool:
    """Whether ``p.g``'s jaxpr calls a ``custom_jvp`` function, at any depth."""
    try:
        jaxpr = p.fw.jax.make_jaxpr(p.g)(point)
    except Exception:  # a function jax cannot trace has no rule gradcheck could check
        return False
    return _calls(jaxpr.jaxpr, CUSTOM_JVP)


def _calls(jaxpr: Any, name: str) -> bool:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == name:
            return True
        for value in eqn.params.values():
            inner = getattr(value, "jaxpr", None)  # a ClosedJaxpr, or a Jaxpr's own
            inner = value if hasattr(value, "eqns") else inner
            if inner is not None and hasattr(inner, "eqns") and _calls(inner, name):
                return True
    return False


def forward(p: Projection, settings: Run) -> _jvp.TangentReport:
    """:func:`gradcheck.check_jvp` of ``p.g``, the analytic side by ``jax.jvp``."""
    jax, g, put = p.fw.jax, p.g, p.put
    jitted = jax.jit(g)

    def floating(out):
        leaves = jax.tree_util.tree_leaves(out)
        return tuple(np.asarray(leaves[k]) for k in p.fw.floating(leaves))

    def f(struct):
        return floating(jitted(put(struct)))

    @jax.jit
    def tangents(primal, tangent):
        return jax.jvp(g, (primal,), (tangent,))[1]

    def jvp(struct, tangent):
        primal = put(struct)
        cast = {n: np.asarray(tangent[n], dtype=primal[n].dtype) for n in primal}
        return floating(tangents(primal, put(cast)))

    options = {"workers": 1, **_options.keywords(settings.options), "seed": settings.seed}
    return _jvp._forward(f, p.point, jvp, None, options, _jvp._JVP)


def identity(p: Projection, point: dict, fwd: _jvp.TangentReport) -> _modes.Adjoint:
    """``<J t, c> = <t, J^T c>`` on the forward check's tangent and cotangent, by
    ``jax.jvp`` on one side and ``jax.vjp`` on the other.
    """
    jax, g = p.fw.jax, p.g
    tangent = {n: np.asarray(fwd.tangent[n], dtype=point[n].dtype) for n in point}
    cotangent = list(fwd.cotangent)
    out, jt = jax.jvp(g, (point,), (jax.tree_util.tree_map(jax.numpy.asarray, tangent),))
    out_leaves, tree = jax.tree_util.tree_flatten(out)
    projected = p.fw.floating(out_leaves)
    jt_leaves = jax.tree_util.tree_leaves(jt)
    forward_side = sum(
        float(np.sum(np.asarray(jt_leaves[k], np.float64) * c))
        for k, c in zip(projected, cotangent, strict=True)
    )
    it = iter(cotangent)
    full = [
        np.asarray(next(it), dtype=o.dtype)
        if k in projected
        else np.zeros(o.shape, jax.dtypes.float0)
        for k, o in enumerate(out_leaves)
    ]
    _, pullback = jax.vjp(g, point)
    (grads,) = pullback(jax.tree_util.tree_unflatten(tree, full))
    reverse_side = sum(
        float(np.sum(np.asarray(grads[n], np.float64) * tangent[n].astype(np.float64)))
        for n in point
    )
    dtype = np.dtype(out_leaves[projected[0]].dtype)
    block, line = _modes.adjoint_block(forward_side, reverse_side, dtype)
    return block, line, (forward_side, reverse_side)


def _vjp_function(p: Projection, point: dict, settings: Run) -> Callable[..., Any]:
    """``fn`` replaced by its VJP on a fixed cotangent, ``x -> J(x)^T c``, as a function of
    the same arguments: its reverse derivative is ``jax.grad`` of the projected VJP, which
    runs a ``custom_vjp``'s backward through autodiff (double backward).
    """
    jax, g, args = p.fw.jax, p.g, p.args
    out = jax.eval_shape(g, point)
    leaves, tree = jax.tree_util.tree_flatten(out)
    projected = p.fw.floating(leaves)
    if settings.cotangent is not None:
        given, given_tree = jax.tree_util.tree_flatten(settings.cotangent)
        if given_tree != tree:
            raise ValueError(
                f"`cotangent` must have the output's structure {tree}, got {given_tree}"
            )
        arrays = [np.asarray(given[k], dtype=np.float64) for k in projected]
    else:
        rng = _projection.cotangent_rng(settings.seed, _modes.INNER_COTANGENT)
        arrays = _projection.draw_like(rng, [tuple(leaves[k].shape) for k in projected])
    it = iter(arrays)
    inner = jax.tree_util.tree_unflatten(
        tree,
        [
            np.asarray(next(it), dtype=o.dtype)
            if k in projected
            else np.zeros(o.shape, jax.dtypes.float0)
            for k, o in enumerate(leaves)
        ],
    )

    def vjp_of_fn(*values, **keywords):
        given = [keywords[n] for n in args.names] if args.keyword else list(values)
        named = {}
        for (i, j), name in args.checked.items():
            named[name] = jax.tree_util.tree_leaves(given[i])[j]
        _, pullback = jax.vjp(g, named)
        return pullback(inner)[0]

    return vjp_of_fn
