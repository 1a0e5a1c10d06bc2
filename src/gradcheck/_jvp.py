"""Forward mode: check a Jacobian-vector product, and a Hessian-vector product as one.

A forward rule ``jvp(x, t)`` gives ``J t``. Projected on a cotangent ``c``, ``<c, J t>`` is
the derivative of ``eps -> <c, f(x + eps t)>`` at 0: a scalar loss of one number ``eps``
whose gradient is known. With one tangent ``t_k`` per input block, the loss of the numbers
``eps_k`` (``f`` at ``x + sum_k eps_k t_k``) has the gradient ``<c, jvp(x, t_k)>``, and
:func:`gradcheck.check` tests it unchanged: its steps, noise probe, thresholds and report
apply, and each ``eps_k`` is a block named after its input, so a wrong rule for one input
fails that input alone. A wrong ``jvp`` differs from ``J`` by a nonzero ``E``; Gaussian
``c`` and ``t_k`` make ``<c, E t_k> = 0`` with probability zero.

The Hessian-vector product of a loss is the forward derivative of its gradient:
:func:`check_hvp` is :func:`check_jvp` of ``grad`` with ``hvp`` as its rule.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from . import _layout, _projection, _vjp
from ._check import check
from ._report import Report

# The tangents come from a stream of their own, keyed off the seed, apart from the
# cotangents' (_projection.COTANGENT_STREAM) and check's own streams: "tan".
TANGENT_STREAM = 0x74616E


@dataclass(frozen=True)
class TangentReport(_projection.ProjectedReport):
    """A :class:`Report` of a forward-mode check: one block per input, each the derivative
    of the projection ``<cotangent, f>`` along that input's tangent.

    Attributes
    ----------
    tangent : array or structure of arrays
        The tangents, in the structure of the inputs (block ``k``'s tangent is its part);
        pass it back as ``tangent=`` (or the same ``seed=``) to replay the check.
    """

    tangent: Any = None


def check_jvp(
    f: Callable[[Any], Any],
    inputs: Any,
    jvp: Callable[[Any, Any], Any],
    *,
    tangent: Any = None,
    **options: Any,
) -> Report:
    """Check a Jacobian-vector product (a forward-mode rule) against finite differences.

    Parameters
    ----------
    f : callable
        ``f(inputs)`` returns an array of any shape, or a dict / list / tuple (nested) of
        arrays.
    inputs : ndarray, or dict / list / tuple (nested) of ndarrays
        The point; copied, never modified. The report has one block per input array, named
        as :func:`gradcheck.check` names the blocks of ``params``.
    jvp : callable
        ``jvp(inputs, tangent)`` returns ``J(inputs) @ tangent`` in the structure of the
        output; ``tangent`` has the structure of ``inputs``. It is what is under test.
    tangent : same structure as ``inputs``, optional
        The tangents, one per input array (each is checked on its own). Default: standard
        normal entries scaled by ``max(1, |x|)``, drawn from ``seed``.
    **options
        The options of :func:`gradcheck.check` (``seed``, ``eps``, ``method`` "central",
        "forward" or "richardson", ``tol``, ``noise``, ...); ``batched`` and the complex
        step are not supported here.

    Returns
    -------
    Report
        One block per input: the scalar ``<cotangent, jvp(inputs, t_k)>`` against the
        central difference of ``<cotangent, f>`` along ``t_k``. ``report.cotangent`` and
        ``report.tangent`` record the projection and the tangents for replay.

    Raises
    ------
    TypeError
        ``f`` or ``jvp`` not callable, outputs that are not real arrays, a ``jvp`` result or
        ``tangent`` that does not mirror the output or the inputs.
    ValueError
        A bad option, a non-finite tangent, or what :func:`gradcheck.check` raises.

    Examples
    --------
    >>> import numpy as np, gradcheck
    >>> W = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> def layer(p):
    ...     return np.tanh(W @ p["x"]) * p["s"]
    >>> def layer_jvp(p, t):
    ...     y = np.tanh(W @ p["x"])
    ...     return (1 - y**2) * (W @ t["x"]) * p["s"] + y * t["s"]
    >>> p = {"x": np.array([0.5, -1.0]), "s": np.array(2.0)}
    >>> gradcheck.check_jvp(layer, p, layer_jvp, seed=0).verdict
    'pass'
    """
    for name, fn in (("f", f), ("jvp", jvp)):
        if not callable(fn):
            raise TypeError(f"`{name}` must be callable, got {type(fn).__name__}: {fn!r:.80}")
    return _forward(f, inputs, jvp, tangent, options, _JVP)


def check_hvp(
    grad: Callable[[Any], Any],
    params: Any,
    hvp: Callable[[Any, Any], Any],
    **options: Any,
) -> Report:
    """Check a Hessian-vector product: the forward derivative of the gradient.

    Parameters
    ----------
    grad : callable
        ``grad(params)`` returns the gradient of the loss, in the structure of ``params``
        (it is differenced, so it should itself be right: check it with
        :func:`gradcheck.check` first).
    params : ndarray, or dict / list / tuple (nested) of ndarrays
        The point; one report block per array.
    hvp : callable
        ``hvp(params, v)`` returns the Hessian at ``params`` times ``v`` (the structure of
        ``params``). It is what is under test.
    **options
        As for :func:`check_jvp` (``tangent``, ``seed``, ``tol``, ...).

    Returns
    -------
    Report
        As :func:`check_jvp` returns it: block ``k`` is ``<c, H t_k>`` against the
        difference of ``<c, grad>`` along ``t_k``, a tangent on block ``k``.

    Examples
    --------
    >>> import numpy as np, gradcheck
    >>> A = np.array([[3.0, 1.0], [1.0, 2.0]])
    >>> report = gradcheck.check_hvp(lambda x: A @ x + np.cos(x), np.array([0.5, -1.0]),
    ...                              lambda x, v: A @ v - np.sin(x) * v, seed=0)
    >>> report.verdict
    'pass'
    """
    for name, fn in (("grad", grad), ("hvp", hvp)):
        if not callable(fn):
            raise TypeError(f"`{name}` must be callable, got {type(fn).__name__}: {fn!r:.80}")
    tangent = options.pop("tangent", None)
    return _forward(grad, params, hvp, tangent, options, _HVP)


@dataclass(frozen=True)
class _Words:
    """How a report and its errors name what was checked."""

    what: str  # the kind of check, in the report's note
    output: str  # the differenced function's call
    rule: str  # the rule's call


_JVP = _Words("forward mode", "f(inputs)", "jvp(inputs, tangent)")
_HVP = _Words(
    "second order (the forward derivative of grad)", "grad(params)", "hvp(params, tangent)"
)


def _forward(f, inputs, rule, tangent, options: dict, words: _Words) -> TangentReport:
    """Check ``rule`` as the forward derivative of ``f``: one block per input array."""
    started = time.perf_counter()
    if options.get("batched"):
        raise ValueError(
            "check_jvp does not take batched=True: it differences f one point at a time"
        )
    if options.get("method") == "complex":
        raise ValueError("check_jvp does not take method='complex'; use 'central'")
    seed = _projection.resolve_seed(options.pop("seed", None))
    layout, x = _layout.build(inputs)
    x64 = x.astype(np.float64)
    out_layout, _ = _vjp._output_layout(f(layout.structure(x.copy())), False)
    float32 = all(b.dtype == np.float32 for b in out_layout.blocks)
    rng = _projection.cotangent_rng(seed, 0)
    c = np.concatenate(
        [a.ravel() for a in _projection.draw_like(rng, [b.shape for b in out_layout.blocks])]
    )
    t = _tangents(layout, x64, tangent, seed)
    blocks = [b for b in layout.blocks if b.size]

    analytic = {}
    for b in blocks:
        part = np.zeros(layout.n)
        part[b.offset : b.offset + b.size] = t[b.offset : b.offset + b.size]
        out = rule(layout.structure(x.copy()), layout.structure(part))
        analytic[b.name] = np.array(c @ out_layout.flatten(out, what=words.rule))

    def projected(eps):
        point = x64.copy()
        for b in blocks:
            where = slice(b.offset, b.offset + b.size)
            point[where] += float(eps[b.name]) * t[where]
        y = out_layout.flatten(f(layout.structure(point.astype(x.dtype))), what=words.output)
        total = float(y @ c)
        return np.float32(total) if float32 else total

    # Each eps_k in the inputs' dtype: float32 inputs keep float32's steps and thresholds.
    zeros = {b.name: np.zeros((), dtype=x.dtype) for b in blocks}
    report = check(projected, zeros, analytic, seed=seed, **options)
    note = (
        f"{words.what}: the derivative of <c, {words.output}> along a tangent per input "
        f"(seed {seed}) against <c, {words.rule}>, c a random standard normal cotangent "
        "(report.cotangent, report.tangent)"
    )
    base = {fld.name: getattr(report, fld.name) for fld in fields(Report)}
    base.update(notes=(*report.notes, note), seconds=time.perf_counter() - started)
    return TangentReport(
        **base,
        cotangent=out_layout.structure(c),
        projections=1,
        tangent=layout.structure(t),
    )


def _tangents(layout: _layout.Layout, x64: np.ndarray, tangent: Any, seed: int) -> np.ndarray:
    """The flat tangent: the user's, validated, or drawn from ``seed`` (standard normal,
    scaled by ``max(1, |x|)`` so that every entry moves by its own size's share).
    """
    if tangent is None:
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(TANGENT_STREAM,)))
        return rng.standard_normal(layout.n) * np.maximum(1.0, np.abs(x64))
    t = layout.flatten(tangent, what="tangent")
    if not np.isfinite(t).all():
        i = int(np.flatnonzero(~np.isfinite(t))[0])
        raise ValueError(f"`tangent` must be finite, but {layout.entry_name(i)} is {t[i]!r}")
    return t
