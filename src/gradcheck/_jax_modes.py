"""The jax adapter's modes and orders (see ``_modes``): forward mode through ``jax.jvp`` (a
``custom_jvp`` rule is what is tested), the adjoint identity between ``jax.jvp`` and
``jax.vjp``, and order 2, the reverse derivative of the function's own projected VJP
(``jax.grad`` of it, through a ``custom_vjp``'s backward).

jax is passed in, never imported here.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np

from . import _jvp, _modes, _options, _vjp
from ._report import Report

# The primitive a custom_jvp function becomes in a jaxpr.
CUSTOM_JVP = "custom_jvp_call"


def run(jax, args, settings, modes: _modes.Modes) -> Report:
    """The check of ``args.fn`` in the modes asked for, as one report."""
    from . import jax as adapter

    point, device = adapter._point(jax, args, settings.wide)

    def put(named):
        return {n: jax.device_put(a, device) for n, a in named.items()}

    g = partial(adapter._call, jax, args)
    # Only "auto" at order 1 asks whether there is a forward rule (finding out traces fn).
    wanted = modes.modes == "auto" and modes.order == 1
    chosen = _modes.resolve(modes, wanted and _detected(jax, args, g, put(point)))
    if modes.order == 2:
        args = replace(args, fn=_vjp_function(jax, args, g, put(point), settings))
        g = partial(adapter._call, jax, args)
        settings = replace(settings, cotangent=None)
    parts: dict[str, Report] = {}
    if "rev" in chosen:
        parts["rev"] = adapter._run(jax, args, settings)
    fwd = forward(jax, g, put, point, settings) if "fwd" in chosen else None
    if fwd is not None:
        parts["fwd"] = fwd
    adjoint = None
    if "rev" in parts and fwd is not None:
        adjoint = identity(jax, g, put(point), fwd)
    return _modes.combine(parts, adjoint, modes.order)


# Whether a function calls a custom_jvp rule, per function, argument structure and shapes:
# finding out traces the function, which a later check of the same function and shapes need
# not do again (the projections it compiles are reused the same way, see jax._projections).
_DETECTED: dict = {}
_DETECTED_MOST = 32


def _detected(jax, args, g, point: dict) -> bool:
    """``_has_custom_jvp``, remembered for the same function, structure and shapes."""
    from . import jax as adapter

    held, statics = adapter._held(jax, args)
    if statics is None:  # unhashable static leaves: this check's own, not remembered
        return _has_custom_jvp(jax, g, point)
    shapes: tuple = tuple((n, tuple(a.shape), str(a.dtype)) for n, a in sorted(point.items()))
    shapes += tuple((tuple(np.shape(a)), str(a.dtype)) for a in held)
    treedefs = tuple(treedef for _, treedef in args.flat)
    checked = tuple(args.checked.items())
    key = (args.fn, args.keyword, tuple(args.names), treedefs, checked, statics, shapes)
    if key not in _DETECTED:
        while len(_DETECTED) >= _DETECTED_MOST:
            _DETECTED.pop(next(iter(_DETECTED)))
        _DETECTED[key] = _has_custom_jvp(jax, g, point)
    return _DETECTED[key]


def _has_custom_jvp(jax, g, point: dict) -> bool:
    """Whether ``g``'s jaxpr calls a ``custom_jvp`` function, at any depth."""
    try:
        jaxpr = jax.make_jaxpr(g)(point)
    except Exception:  # a function jax cannot trace has no rule gradcheck could check
        return False
    return _calls(jaxpr.jaxpr, CUSTOM_JVP)


def _calls(jaxpr, name: str) -> bool:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == name:
            return True
        for value in eqn.params.values():
            inner = getattr(value, "jaxpr", None)  # a ClosedJaxpr, or a Jaxpr's own
            inner = value if hasattr(value, "eqns") else inner
            if inner is not None and hasattr(inner, "eqns") and _calls(inner, name):
                return True
    return False


def _floating(jax, leaves) -> list[int]:
    return [k for k, o in enumerate(leaves) if jax.numpy.issubdtype(o.dtype, jax.numpy.floating)]


def forward(jax, g, put, point: dict, settings) -> _jvp.TangentReport:
    """:func:`gradcheck.check_jvp` of ``g``, the analytic side by ``jax.jvp``."""
    jitted = jax.jit(g)

    def floating(out):
        leaves = jax.tree_util.tree_leaves(out)
        return tuple(np.asarray(leaves[k]) for k in _floating(jax, leaves))

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
    return _jvp._forward(f, point, jvp, None, options, _jvp._JVP)


def identity(jax, g, point: dict, fwd: _jvp.TangentReport):
    """``<J t, c> = <t, J^T c>`` on the forward check's tangent and cotangent, by
    ``jax.jvp`` on one side and ``jax.vjp`` on the other.
    """
    tangent = {n: np.asarray(fwd.tangent[n], dtype=point[n].dtype) for n in point}
    cotangent = list(fwd.cotangent)
    out, jt = jax.jvp(g, (point,), (jax.tree_util.tree_map(jax.numpy.asarray, tangent),))
    out_leaves, tree = jax.tree_util.tree_flatten(out)
    projected = _floating(jax, out_leaves)
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


def _vjp_function(jax, args, g, point: dict, settings):
    """``fn`` replaced by its VJP on a fixed cotangent, ``x -> J(x)^T c``, as a function of
    the same arguments: its reverse derivative is ``jax.grad`` of the projected VJP, which
    runs a ``custom_vjp``'s backward through autodiff (double backward).
    """
    out = jax.eval_shape(g, point)
    leaves, tree = jax.tree_util.tree_flatten(out)
    projected = _floating(jax, leaves)
    if settings.cotangent is not None:
        given, given_tree = jax.tree_util.tree_flatten(settings.cotangent)
        if given_tree != tree:
            raise ValueError(
                f"`cotangent` must have the output's structure {tree}, got {given_tree}"
            )
        arrays = [np.asarray(given[k], dtype=np.float64) for k in projected]
    else:
        rng = _vjp.cotangent_rng(settings.seed, _modes.INNER_COTANGENT)
        arrays = _vjp.draw_like(rng, [tuple(leaves[k].shape) for k in projected])
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
