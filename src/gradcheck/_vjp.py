"""Vector-valued functions: check a vector-Jacobian product through a scalar projection.

A layer's author holds ``vjp(x, c)``, the gradient of ``<c, f(x)>``, not the gradient of a
loss. For a fixed cotangent ``c`` the projection ``x -> <c, f(x)>`` is an ordinary scalar
loss whose gradient is ``vjp(x, c)``, so :func:`gradcheck.check` tests it unchanged: every
option, engine and verdict applies. A wrong ``vjp`` differs from the true one by a nonzero
matrix ``E`` (``vjp(x, c) - J^T c = E c``), and a Gaussian ``c`` makes ``E c = 0`` with
probability zero, so one random projection finds any error; more projections make a small
one less likely to be drawn weak.

The steps are ``_projection``'s, shared with the torch and jax adapters; this module is its
numpy backend: ``f`` and ``vjp`` called as the user wrote them, on the layout's arrays.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _layout, _options, _projection
from ._projection import Run, Sides, Traced
from ._report import Report


def check_vjp(
    f: Callable[[Any], Any],
    inputs: Any,
    vjp: Callable[[Any, Any], Any],
    *,
    cotangent: Any = None,
    projections: int = 1,
    **options: Any,
) -> Report:
    """Check a vector-Jacobian product against finite differences of a projection.

    Parameters
    ----------
    f : callable
        ``f(inputs)`` returns an array of any shape, or a dict / list / tuple (nested) of
        arrays. With ``batched=True`` it receives every input with a leading batch axis and
        returns every output with one.
    inputs : ndarray, or dict / list / tuple (nested) of ndarrays
        The point at which to check, as for :func:`gradcheck.check`'s ``params``; the
        report's blocks are named after it (dict keys, positions). Copied, never modified.
    vjp : callable
        ``vjp(inputs, cotangent)`` returns the gradient of ``<cotangent, f(inputs)>`` with
        respect to ``inputs``, in the structure of ``inputs`` (course-style ``d``-prefixed
        keys are accepted, as for ``check``'s ``grad``; for dict inputs also a tuple in
        their order, as cs231n's backward functions return ``(dx, dgamma, dbeta)``). It is
        what is under test.
    cotangent : same structure as ``f(inputs)``, optional
        The direction to project the output on. Default: standard normal entries drawn
        from ``seed``, so the same seed replays the same check.
    projections : int
        How many random cotangents to check (only when ``cotangent`` is None); the report is
        the worst of them and says so in its notes.
    **options
        Every option of :func:`gradcheck.check` (``eps``, ``method``, ``seed``, ``engine``,
        ``batched``, ``tol``, ``sample``, ``directions``, ...). ``method="complex"`` works
        when ``f`` carries complex input through (the projection is linear in ``f``).

    Returns
    -------
    Report
        The report of ``check`` on the projection, with two more attributes:
        ``report.cotangent`` (the cotangent that was checked, in the structure of the
        output, to pass back as ``cotangent=``) and ``report.projections``.

    Raises
    ------
    TypeError
        ``f`` or ``vjp`` is not callable, ``f`` returns something other than real arrays,
        or ``cotangent`` does not mirror the output.
    ValueError
        A cotangent of the wrong shape or not finite, a bad option, or any error
        :func:`gradcheck.check` raises.

    Notes
    -----
    For a fixed cotangent ``c`` the projection ``x -> <c, f(x)>`` is a scalar loss whose
    gradient is ``J(x)^T c``, the vector-Jacobian product. A wrong ``vjp`` differs from
    ``J^T`` by a nonzero matrix ``E``; a Gaussian ``c`` gives ``E c = 0`` with probability
    zero, so one random projection catches any error, and the per-block verdicts name the
    inputs whose gradient is wrong. The projection is accumulated in float64; a float32
    output keeps float32's steps and thresholds.

    Examples
    --------
    >>> import numpy as np, gradcheck
    >>> W = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> x = np.array([0.5, -1.0])
    >>> def layer(p):
    ...     return np.tanh(W @ p)
    >>> def layer_vjp(p, c):
    ...     return W.T @ (c * (1 - np.tanh(W @ p) ** 2))
    >>> report = gradcheck.check_vjp(layer, x, layer_vjp, seed=0)
    >>> report.verdict
    'pass'
    """
    started = time.perf_counter()
    for name, fn in (("f", f), ("vjp", vjp)):
        if not callable(fn):
            raise TypeError(f"`{name}` must be callable, got {type(fn).__name__}: {fn!r:.80}")
    projections = _projection.validate_projections(projections, cotangent)
    seed = _projection.resolve_seed(options.pop("seed", None))
    checked = _options.validate(**options, seed=seed)
    # batched=False: numpy has no vmap of its own; the options say whether f takes batches.
    run = Run(started, cotangent, projections, seed, False, False, checked)
    return _projection.check(_Numpy(f, inputs, vjp, checked.batched), run)


@dataclass(frozen=True)
class _Traced(Traced):
    """The first call: the inputs' layout and the output's."""

    in_layout: _layout.Layout
    out_layout: _layout.Layout
    float32: bool  # every output is float32: the projection is too


@dataclass(frozen=True)
class _Numpy:
    """The pipeline's numpy backend: ``f`` and the ``vjp`` under test, at ``inputs``;
    ``batched``: ``f`` takes every input with a leading batch axis.
    """

    f: Callable[[Any], Any]
    inputs: Any
    vjp: Callable[[Any, Any], Any]
    batched: bool

    def trace(self, run: Run) -> _Traced:
        # One call at a private copy of the inputs tells the output's structure, shapes and
        # dtype; the user's arrays are never handed to f.
        in_layout, in_buffer = _layout.build(self.inputs)
        if self.batched:
            out = self.f(in_layout.structure(in_buffer.reshape(1, -1), batch=1))
        else:
            out = self.f(in_layout.structure(in_buffer))
        out_layout, _ = _output_layout(out, self.batched)
        float32 = all(b.dtype == np.float32 for b in out_layout.blocks)
        shapes = [b.shape for b in out_layout.blocks]
        return _Traced(self.inputs, shapes, in_layout, out_layout, float32)

    def given(self, traced: _Traced, cotangent: Any) -> list[np.ndarray]:
        out_layout = traced.out_layout
        flat = out_layout.flatten(cotangent, what="cotangent")
        if not np.isfinite(flat).all():
            i = int(np.flatnonzero(~np.isfinite(flat))[0])
            raise ValueError(
                f"`cotangent` must be finite, but its entry {_output_entry(out_layout, i)} "
                f"is {float(flat[i])!r}"
            )
        return [flat[b.offset : b.offset + b.size].reshape(b.shape) for b in out_layout.blocks]

    def record(self, traced: _Traced, ct: list[np.ndarray] | None) -> Any:
        return traced.out_layout.structure(np.concatenate([c.ravel() for c in ct or []]))

    def sides(self, traced: _Traced, run: Run, ct: list[np.ndarray] | None) -> Sides:
        f, batched, float32 = self.f, self.batched, traced.float32
        blocks = traced.out_layout.blocks
        ct_leaves = [np.asarray(c, dtype=np.float64).reshape(-1) for c in ct or []]

        def projected(x):
            y = f(x)
            total = 0.0
            for b, c in zip(blocks, ct_leaves, strict=True):
                leaf = np.asarray(_lookup(y, b), dtype=None)
                want = ((leaf.shape[0],) if batched else ()) + b.shape
                if leaf.shape != want:
                    raise ValueError(
                        f"`f` returned {b.name} of shape {leaf.shape}, but at the inputs it "
                        f"had shape {want}: the output's shape must not depend on the inputs"
                    )
                # float64 (complex128 for the complex step) accumulation of <c, y>.
                wide = leaf.astype(np.result_type(leaf.dtype, np.float64), copy=False)
                if batched:
                    total = total + wide.reshape(wide.shape[0], -1) @ c
                else:
                    total = total + wide.reshape(-1) @ c
            if batched:
                return total.astype(np.float32) if float32 else total
            if np.iscomplexobj(total):
                return total
            return np.float32(total) if float32 else float(total)

        ct_struct = self.record(traced, ct)
        analytic = _analytic(self.vjp, ct_struct, traced.in_layout, self.inputs)
        return Sides(analytic, projected)


def _analytic(vjp: Callable, ct: Any, in_layout, inputs: Any) -> Callable[[Any], Any]:
    """``grad(x)``: ``vjp(x, ct)`` in the structure of the inputs, or an error that names
    ``vjp`` (not ``grad``) and says what it returned without printing its numbers.

    A tuple for dict inputs is taken by position, in the inputs' order: cs231n's backward
    functions return ``(dx, dgamma, dbeta)``.
    """
    keys = list(inputs) if isinstance(inputs, Mapping) else None
    what = "vjp(inputs, cotangent)"

    def grad(x):
        got = vjp(x, ct)
        if keys is not None and isinstance(got, (tuple, list)) and not hasattr(got, "_fields"):
            if len(got) != len(keys):
                raise ValueError(
                    f"`{what}` returned {_layout.describe(got)}, but there are {len(keys)} "
                    f"inputs {tuple(keys)}: return one gradient per input, by position or "
                    "by key"
                )
            got = dict(zip(keys, got, strict=True))
        flat = in_layout.flatten(got, what=what)
        return in_layout.structure(flat)

    return grad


def _output_layout(out: Any, batched: bool):
    """The layout of one output (the first row's, when batched), refusing non-arrays."""
    try:
        out_layout, buffer = _layout.build(
            _first_row(out) if batched else out, words=_layout.OUTPUT
        )
    except TypeError as exc:
        raise TypeError(
            f"`f(inputs)` must return float arrays (or a structure of them): {exc}"
        ) from None
    except ValueError as exc:
        raise ValueError(f"`f(inputs)` at the inputs: {exc}") from None
    return out_layout, buffer


def _first_row(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {k: _first_row(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        rows = [_first_row(v) for v in tree]
        return type(tree)(*rows) if hasattr(tree, "_fields") else type(tree)(rows)
    arr = np.asarray(tree)
    if arr.ndim == 0:
        raise ValueError(
            "with batched=True, `f` must return arrays with a leading batch axis, got a scalar"
        )
    return arr[0]


def _lookup(tree: Any, block) -> Any:
    return _layout.lookup(tree, block.path, what="f(inputs)") if block.path else tree


def _output_entry(out_layout, i: int) -> str:
    # A bare array output is "params" to the layout: name its entries by index alone.
    name = out_layout.entry_name(i)
    if out_layout.blocks[0].path == ():
        return name.removeprefix("params") or "()"
    return name
